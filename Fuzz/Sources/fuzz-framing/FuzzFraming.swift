// fuzz-framing: ChannelData (RFC 8656 §12.4) and the framing of STUN and ChannelData on a TCP or
// TLS byte stream (RFC 8656 §3.1): `StreamFraming.nextFrame` driven the way
// `StreamConnection.processFrames` (TURNRelay) drives it, and `ChannelData.parse`.
//
// Invariant: the frames cut from a byte stream do not depend on how the stream was read. Two
// streams are made from the input: the input itself, and an "expanded" stream whose frames
// take the sizes their headers announce (up to 64 KiB) with bodies filled from the input, so
// that large frames are reached from small inputs. Each stream is fed to a reader modelled on
// StreamConnection (a fixed buffer of its inbound capacity, framing after every read, unframed
// bytes moved to the front) whole, in pieces whose sizes are derived from the input, and one
// byte at a time (streams up to 4 KiB), with or without the legacy channel range (a bit of the
// input's hash). Every way
// must give the same frames (offset, length, kind) and end the same way (the same bytes left
// unframed, or invalid at the same offset). Also, after every read:
//  - a frame has the size its header announces (STUN: 20 + length, a multiple of 4;
//    ChannelData: 4 + length padded to 4), and its bytes are the stream's;
//  - a ChannelData frame parses, with its payload inside the frame, as long as its header says;
//  - `.needMore` never leaves the buffer full (a read into no space returns 0, which the
//    connection would take for the client closing);
// and the input taken as a UDP datagram is classified and parsed as ChannelData without reading
// past it, `ChannelData.parse` failing exactly when RFC 8656 §12.4 says it must.
import FuzzSupport
import STUNCodec

#if canImport(Glibc)
    import Glibc
#endif

/// `StreamConnection.inboundCapacity` (internal to TURNRelay): 64 KiB plus two STUN headers.
let inboundCapacity = 65_536 + 2 * stunHeaderSize
/// The largest frame: a STUN message with a 65532-byte body (ChannelData tops out at 65540).
let largestFrame = stunHeaderSize + 0xFFFC

/// One reader's buffer, allocated once: the fuzzer runs one input at a time.
nonisolated(unsafe) let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: inboundCapacity, alignment: 16)

struct Frame: Equatable {
    var offset: Int
    var length: Int
    var kind: ChannelData.Kind
}

/// How a reader finished: the frames it cut, and the unframed bytes left or where the stream
/// turned invalid.
struct Outcome: Equatable {
    var frames: [Frame] = []
    var leftover = 0
    var invalidAt: Int?
}

/// StreamConnection's read loop without the socket.
struct Reader {
    let stream: UnsafeRawBufferPointer
    let legacy: Bool
    var count = 0
    /// Stream offset of `buffer[0]`.
    var consumed = 0
    var outcome = Outcome()

    init(stream: UnsafeRawBufferPointer, legacy: Bool) {
        self.stream = stream
        self.legacy = legacy
    }

    /// One read of up to `n` bytes (less when the buffer has less room, as recv would).
    mutating func read(_ n: Int, from position: inout Int) {
        let space = inboundCapacity - count
        invariant(space > 0, "buffer full with \(count) bytes and no frame")
        let k = min(space, n, stream.count - position)
        UnsafeMutableRawBufferPointer(rebasing: buffer[count..<(count + k)]).copyMemory(
            from: UnsafeRawBufferPointer(rebasing: stream[position..<(position + k)]))
        count += k
        position += k
        processFrames()
    }

    mutating func processFrames() {
        var offset = 0
        loop: while offset < count {
            let rest = UnsafeRawBufferPointer(rebasing: buffer[offset..<count])
            switch StreamFraming.nextFrame(in: rest, legacyRange: legacy) {
            case .needMore:
                invariant(rest.count < largestFrame, "needMore with \(rest.count) bytes")
                break loop
            case .invalid:
                outcome.invalidAt = consumed + offset
                outcome.leftover = 0  // the connection closes: nothing is left to frame
                return
            case .complete(let length, let kind):
                let frame = UnsafeRawBufferPointer(rebasing: rest[0..<min(length, rest.count)])
                invariant(length > 0 && length <= rest.count, "frame of \(length) in \(rest.count) bytes")
                check(frame, kind: kind, at: consumed + offset)
                outcome.frames.append(Frame(offset: consumed + offset, length: length, kind: kind))
                offset += length
            }
        }
        if offset > 0 {
            count -= offset
            if count > 0 { buffer.baseAddress!.copyMemory(from: buffer.baseAddress! + offset, byteCount: count) }
            consumed += offset
        }
        outcome.leftover = count
    }

    func check(_ frame: UnsafeRawBufferPointer, kind: ChannelData.Kind, at offset: Int) {
        invariant(
            memcmp(frame.baseAddress!, stream.baseAddress! + offset, frame.count) == 0,
            "frame bytes at \(offset) differ from the stream's")
        let declared = Int(frame.be16(2))
        switch kind {
        case .stun:
            invariant(frame[0] < 4, "STUN frame starting with \(frame[0])")
            invariant(declared & 3 == 0 && frame.count == stunHeaderSize + declared, "STUN frame size")
        case .channelData:
            invariant(frame.count == ChannelData.streamFrameSize(payloadLength: declared), "ChannelData frame size")
            do {
                let data = try ChannelData.parse(frame, legacyRange: legacy)
                invariant(data.channel == frame.be16(0), "channel number")
                invariant(
                    data.payload.count == declared && data.payload.baseAddress == frame.baseAddress! + 4,
                    "ChannelData payload")
            } catch {
                fatalError("invariant broken: a ChannelData frame does not parse (\(error))")
            }
        case .other:
            fatalError("invariant broken: a complete frame of kind .other")
        }
    }
}

/// Reads `stream` in pieces whose sizes `next` gives; returns how the reader finished.
func frames(of stream: UnsafeRawBufferPointer, legacy: Bool, pieces next: () -> Int) -> Outcome {
    var reader = Reader(stream: stream, legacy: legacy)
    var position = 0
    while position < stream.count && reader.outcome.invalidAt == nil {
        reader.read(max(1, next()), from: &position)
    }
    return reader.outcome
}

func checkSplits(_ stream: UnsafeRawBufferPointer, seed: UInt64) {
    var g = SplitMix64(seed: seed)
    let legacy = g.next() & 1 == 1
    let whole = frames(of: stream, legacy: legacy) { stream.count }
    if whole.invalidAt == nil {
        let framed = whole.frames.last.map { $0.offset + $0.length } ?? 0
        invariant(framed + whole.leftover == stream.count, "bytes lost: \(framed) + \(whole.leftover)")
    }
    let pieces = frames(of: stream, legacy: legacy) {
        switch g.next() % 4 {
        case 0: Int(g.next() % 8) + 1
        case 1: Int(g.next() % 64) + 1
        case 2: Int(g.next() % 1500) + 1
        default: Int(g.next() % 70_000) + 1
        }
    }
    invariant(pieces == whole, "split reads gave other frames (legacy \(legacy))")
    if stream.count <= 4096 {
        let bytewise = frames(of: stream, legacy: legacy) { 1 }
        invariant(bytewise == whole, "byte-by-byte reads gave other frames (legacy \(legacy))")
    }
}

/// Room for the expanded stream: it stops growing past two largest frames, plus the last one
/// (at most a STUN header announcing 65535 bytes).
let expandedCapacity = 2 * largestFrame + stunHeaderSize + 0xFFFF
nonisolated(unsafe) let expandedStorage = UnsafeMutableRawBufferPointer.allocate(
    byteCount: expandedCapacity, alignment: 16)

/// Frames whose bodies take the sizes their headers announce, filled from the input, then zeros.
func expanded(_ input: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
    var n = 0
    var i = FuzzInput(input)
    while !i.isAtEnd && n < 2 * largestFrame {
        let header = [i.byte(), i.byte(), i.byte(), i.byte()]
        let declared = Int(header[2]) << 8 | Int(header[3])
        let body: Int
        switch ChannelData.classify(firstByte: header[0], legacyRange: true) {
        case .stun: body = stunHeaderSize - 4 + declared
        case .channelData: body = ChannelData.streamFrameSize(payloadLength: declared) - 4
        case .other: body = 0
        }
        for b in header {
            expandedStorage[n] = b
            n += 1
        }
        let fill = i.take(body)
        let out = UnsafeMutableRawBufferPointer(rebasing: expandedStorage[n..<(n + body)])
        out.initializeMemory(as: UInt8.self, repeating: 0)
        if let from = fill.baseAddress { out.baseAddress!.copyMemory(from: from, byteCount: fill.count) }
        n += body
    }
    return UnsafeRawBufferPointer(rebasing: expandedStorage[0..<n])
}

/// The input as a UDP datagram (RFC 8656 §12.4: the length may be shorter than the datagram).
func checkDatagram(_ d: UnsafeRawBufferPointer) {
    guard let first = d.first else { return }
    for legacy in [false, true] {
        guard ChannelData.classify(firstByte: first, legacyRange: legacy) == .channelData else { continue }
        let range = legacy ? ChannelData.legacyChannelRange : ChannelData.channelRange
        do throws(ChannelData.ParseError) {
            let data = try ChannelData.parse(d, legacyRange: legacy)
            invariant(range.contains(data.channel), "channel \(data.channel) out of range accepted")
            invariant(4 + data.payload.count <= d.count && data.payload.count == Int(d.be16(2)), "payload size")
        } catch {
            switch error {
            case .truncated:
                invariant(d.count < 4, "\(d.count) bytes called truncated")
            case .channelOutOfRange:
                invariant(!range.contains(d.be16(0)), "channel \(d.be16(0)) called out of range")
            case .lengthPastEnd:
                invariant(4 + Int(d.be16(2)) > d.count, "length \(d.be16(2)) in \(d.count) bytes called past end")
            }
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    let seed = fnv1a(input)
    checkDatagram(input)
    checkSplits(input, seed: seed)
    checkSplits(expanded(input), seed: seed &+ 1)
    return 0
}

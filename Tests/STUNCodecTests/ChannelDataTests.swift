import STUNCodec
import Testing

@Suite("ChannelData and stream framing")
struct ChannelDataTests {
    func parse(_ bytes: [UInt8]) -> Result<(UInt16, [UInt8]), ChannelData.ParseError> {
        bytes.withUnsafeBytes { raw in
            do throws(ChannelData.ParseError) {
                let view = try ChannelData.parse(raw)
                return .success((view.channel, Array(view.payload)))
            } catch {
                return .failure(error)
            }
        }
    }

    func channelDataError(_ bytes: [UInt8]) -> ChannelData.ParseError? {
        if case .failure(let e) = parse(bytes) { return e }
        return nil
    }

    @Test("a valid ChannelData datagram")
    func valid() throws {
        let (channel, payload) = try parse([0x40, 0x00, 0x00, 0x03, 0xAA, 0xBB, 0xCC]).get()
        #expect(channel == 0x4000)
        #expect(payload == [0xAA, 0xBB, 0xCC])
        let (last, empty) = try parse([0x4F, 0xFF, 0x00, 0x00]).get()
        #expect(last == 0x4FFF)
        #expect(empty.isEmpty)
    }

    @Test("UDP padding after the payload is allowed and ignored")
    func udpPadding() throws {
        let (channel, payload) = try parse([0x41, 0x23, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0]).get()
        #expect(channel == 0x4123)
        #expect(payload == [1, 2, 3, 4, 5])
    }

    @Test("invalid ChannelData")
    func invalid() {
        #expect(channelDataError([]) == .truncated)
        #expect(channelDataError([0x40, 0x00, 0x00]) == .truncated)
        #expect(channelDataError([0x3F, 0xFF, 0x00, 0x00]) == .channelOutOfRange)
        #expect(channelDataError([0x50, 0x00, 0x00, 0x00]) == .channelOutOfRange)
        #expect(channelDataError([0x00, 0x01, 0x00, 0x00]) == .channelOutOfRange)
        #expect(channelDataError([0x40, 0x00, 0x00, 0x04, 1, 2, 3]) == .lengthPastEnd)
        #expect(channelDataError([0x40, 0x00, 0xFF, 0xFF]) == .lengthPastEnd)
    }

    @Test("classification by first byte (RFC 7983)")
    func classify() {
        #expect((0...3).allSatisfy { ChannelData.classify(firstByte: UInt8($0)) == .stun })
        #expect((0x40...0x4F).allSatisfy { ChannelData.classify(firstByte: UInt8($0)) == .channelData })
        for b in [4, 0x14, 0x17, 0x3F, 0x50, 0x80, 0xFF] {
            #expect(ChannelData.classify(firstByte: UInt8(b)) == .other)
        }
    }

    @Test("header writing and stream frame sizes")
    func header() {
        var buffer = [UInt8](repeating: 0, count: 4)
        buffer.withUnsafeMutableBytes {
            ChannelData.writeHeader(channel: 0x4ABC, payloadLength: 0x0123, to: $0.baseAddress!)
        }
        #expect(buffer == [0x4A, 0xBC, 0x01, 0x23])
        #expect(ChannelData.streamFrameSize(payloadLength: 0) == 4)
        #expect(ChannelData.streamFrameSize(payloadLength: 1) == 8)
        #expect(ChannelData.streamFrameSize(payloadLength: 4) == 8)
        #expect(ChannelData.streamFrameSize(payloadLength: 5) == 12)
    }

    func nextFrame(_ bytes: ArraySlice<UInt8>) -> StreamFraming.Frame {
        bytes.withUnsafeBytes { StreamFraming.nextFrame(in: $0) }
    }

    /// A STUN message then a ChannelData frame with a 5-byte payload padded to 8 on the stream.
    static let stunFrame = RFC5769.request
    static let channelFrame: [UInt8] = [0x40, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0]
    static let stream = stunFrame + channelFrame

    @Test("every prefix of the stream: needMore until the first frame is whole")
    func prefixes() {
        let stream = Self.stream
        let stunLength = Self.stunFrame.count
        for k in 0...stream.count {
            let frame = nextFrame(stream[0..<k])
            if k < stunLength {
                #expect(frame == .needMore, "prefix \(k)")
            } else {
                #expect(frame == .complete(length: stunLength, kind: .stun), "prefix \(k)")
            }
        }
        let rest = stream[stunLength...]
        for k in 0...rest.count {
            let frame = nextFrame(rest.prefix(k))
            if k < Self.channelFrame.count {
                #expect(frame == .needMore, "ChannelData prefix \(k)")
            } else {
                #expect(frame == .complete(length: 12, kind: .channelData), "ChannelData prefix \(k)")
            }
        }
    }

    /// Feeds the stream in two pieces split at `split`, cutting frames as a connection would.
    func reassemble(_ chunks: [ArraySlice<UInt8>]) -> (frames: [[UInt8]], kinds: [ChannelData.Kind], invalid: Bool) {
        var buffer: [UInt8] = []
        var frames: [[UInt8]] = []
        var kinds: [ChannelData.Kind] = []
        for chunk in chunks {
            buffer += chunk
            loop: while true {
                switch nextFrame(buffer[...]) {
                case .needMore: break loop
                case .invalid: return (frames, kinds, true)
                case .complete(let length, let kind):
                    frames.append(Array(buffer[0..<length]))
                    kinds.append(kind)
                    buffer.removeFirst(length)
                }
            }
        }
        #expect(buffer.isEmpty)
        return (frames, kinds, false)
    }

    @Test("the stream split at every point yields the same two frames")
    func everySplit() throws {
        let stream = Self.stream
        for split in 0...stream.count {
            let result = reassemble([stream[0..<split], stream[split...]])
            #expect(!result.invalid)
            #expect(result.frames == [Self.stunFrame, Self.channelFrame], "split \(split)")
            #expect(result.kinds == [.stun, .channelData])
        }
        // Byte by byte.
        let byByte = reassemble(stream.indices.map { stream[$0..<($0 + 1)] })
        #expect(byByte.frames == [Self.stunFrame, Self.channelFrame])
        // The frames cut out still parse.
        #expect(parseError(Array(Self.stunFrame)) == nil)
        let (channel, payload) = try parse(Self.channelFrame).get()
        #expect(channel == 0x4001)
        #expect(payload == [1, 2, 3, 4, 5])
    }

    @Test("a stream that is neither STUN nor ChannelData is invalid")
    func invalidStream() {
        #expect(nextFrame([0x80, 0x00, 0x00, 0x00][...]) == .invalid)
        #expect(nextFrame(([0x80, 0x01, 0x00, 0x08] + [UInt8](repeating: 0, count: 28))[...]) == .invalid)
        #expect(nextFrame(utf8("POST / HTTP/1.1\r\n")[...]) == .invalid)
        // "GET " starts with 0x47, which RFC 7983 assigns to ChannelData: it waits for 0x5420 bytes.
        #expect(nextFrame(utf8("GET / HTTP/1.1\r\n")[...]) == .needMore)
        #expect(nextFrame([0x16, 0x03, 0x01, 0x00][...]) == .invalid)  // a TLS record
        // A STUN header whose length is not a multiple of 4 cannot be framed.
        #expect(nextFrame([0x00, 0x01, 0x00, 0x05][...]) == .invalid)
        #expect(nextFrame([0x00, 0x01, 0x00][...]) == .needMore)
    }
}

// fuzz-dtls-records: the DTLS record layer as the shard reads it before OpenSSL does
// (`DTLSRecord`, TURNRelay): which datagram on the DTLS port may start a session, and where a
// flight of records is cut into datagrams.
//
// Invariants, for any bytes (the input, each datagram cut from it, and the rest of the input
// from every record boundary):
//  - `startsWithClientHello` is total (no trap, no read past the bytes) and agrees with RFC 6347
//    §4.1 and §4.2.2 read independently here: content type 22 (handshake), a DTLS version
//    (major byte 0xFE), epoch 0, a record length within the datagram that holds a handshake
//    header, and handshake type 1 (client_hello).
//  - `datagramEnd`, walked over the input from 0 as `DTLSSession` sends a flight (and from an
//    offset taken from the input), cuts it into datagrams that make progress, cover it exactly,
//    end on record boundaries (or at its end), hold at most `mtu` bytes unless they hold a single
//    record, and are full: the next record would not have fitted. From an offset at or past the
//    end it returns the offset.
// MTUs: the 1200 bytes the server uses (`DTLSGate.mtu`, internal) and one from 1 to 2048 derived
// from the input.
import FuzzSupport
import TURNRelay

let headerLength = 13
/// `DTLSGate.mtu`.
let serverMTU = 1200

/// RFC 6347 §4.1: type(1) version(2) epoch(2) sequence_number(6) length(2); §4.2.2: the
/// handshake header is msg_type(1) length(3) message_seq(2) fragment_offset(3) fragment_length(3).
func referenceClientHello(_ d: UnsafeRawBufferPointer) -> Bool {
    guard d.count >= headerLength else { return false }
    let contentType = d[0]
    let versionMajor = d[1]
    let epoch = UInt16(d[3]) << 8 | UInt16(d[4])
    let length = Int(d[11]) << 8 | Int(d[12])
    guard contentType == 22, versionMajor == 0xFE, epoch == 0 else { return false }
    guard length >= 12, headerLength + length <= d.count else { return false }
    return d[headerLength] == 1
}

func checkClientHello(_ d: UnsafeRawBufferPointer, _ what: String) {
    invariant(
        DTLSRecord.startsWithClientHello(d) == referenceClientHello(d),
        "ClientHello verdict differs from RFC 6347 for \(what): \(hexString(d.prefix(32)))")
}

/// The declared end of the record at `p` (header plus its length field), unclamped.
func declaredEnd(_ records: UnsafeRawBufferPointer, at p: Int) -> Int {
    p + headerLength + (Int(records[p + 11]) << 8 | Int(records[p + 12]))
}

/// Cuts `bytes` from `first` the way `DTLSSession.flushOutput` does, checking each datagram.
func checkCuts(_ bytes: UnsafeRawBufferPointer, from first: Int, mtu: Int) {
    let n = bytes.count
    var start = first
    while start < n {
        let end = DTLSRecord.datagramEnd(bytes, from: start, mtu: mtu)
        invariant(end > start && end <= n, "datagram [\(start), \(end)) of \(n) bytes")
        // Walk the records from `start`: `end` must be one of their ends, or the end of the bytes.
        var boundary = start
        var count = 0
        while boundary < end && boundary + headerLength <= n {
            boundary = min(n, declaredEnd(bytes, at: boundary))
            count += 1
        }
        invariant(boundary == end || end == n, "datagram [\(start), \(end)) does not end on a record boundary")
        if end - start > mtu {
            invariant(count <= 1, "\(end - start) bytes over the MTU in \(count) records")
        }
        if end < n && end + headerLength <= n {
            invariant(declaredEnd(bytes, at: end) - start > mtu, "datagram [\(start), \(end)) could hold the next record")
        }
        let datagram = UnsafeRawBufferPointer(rebasing: bytes[start..<end])
        checkClientHello(datagram, "the datagram at \(start)")
        start = end
    }
    invariant(first >= n || start == n, "cutting stopped at \(start) of \(n)")
    if first >= n { invariant(DTLSRecord.datagramEnd(bytes, from: first, mtu: mtu) == first, "end past the bytes") }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    var g = SplitMix64(seed: fnv1a(bytes))
    let mtu = 1 + Int(g.next() % 2048)
    let offset = Int(g.next() % UInt64(size + 2))

    checkClientHello(bytes, "the input")
    // Every record boundary of the walk from 0 may start a datagram of its own.
    var p = 0
    while p + headerLength <= size {
        checkClientHello(UnsafeRawBufferPointer(rebasing: bytes[p...]), "the bytes from \(p)")
        p = min(size, declaredEnd(bytes, at: p))
    }
    checkCuts(bytes, from: 0, mtu: serverMTU)
    checkCuts(bytes, from: 0, mtu: mtu)
    checkCuts(bytes, from: offset, mtu: mtu)
    return 0
}

/// The DTLS record layer as far as the shard reads it before OpenSSL does (RFC 6347 §4.1,
/// §4.2.2): which datagram may start a session, and where whole records end so that a flight
/// is split into datagrams at record boundaries.
///
/// Invariant: pure functions over untrusted bytes; total on every input (no trap, no read past
/// the buffer), no allocation.
public enum DTLSRecord {
    /// Content type (1), version (2), epoch (2), sequence number (6), length (2).
    public static let headerLength = 13
    /// Handshake message header: type (1), length (3), message_seq (2), fragment offset and length (3 + 3).
    static let handshakeHeaderLength = 12

    /// Whether a datagram begins with a record that can carry a ClientHello: content type 22
    /// (handshake), a DTLS version (major byte 0xFE), epoch 0, a record length that fits in the
    /// datagram and holds a handshake header, and handshake type 1 (client_hello).
    public static func startsWithClientHello(_ datagram: UnsafeRawBufferPointer) -> Bool {
        guard datagram.count >= headerLength + handshakeHeaderLength else { return false }
        guard datagram[0] == 22, datagram[1] == 0xFE, datagram[3] == 0, datagram[4] == 0 else { return false }
        let length = Int(datagram[11]) << 8 | Int(datagram[12])
        guard length >= handshakeHeaderLength, headerLength + length <= datagram.count else { return false }
        return datagram[headerLength] == 1
    }

    /// The end of the datagram that starts at `start` in a run of concatenated records: as many
    /// whole records as fit in `mtu` bytes, and always at least one record (a larger record goes
    /// alone). A truncated last record ends at `records.count`. Returns `start` only when
    /// `start >= records.count`.
    public static func datagramEnd(_ records: UnsafeRawBufferPointer, from start: Int, mtu: Int) -> Int {
        let n = records.count
        if start >= n { return start }
        var end = start
        while end + headerLength <= n {
            let recordLength = headerLength + (Int(records[end + 11]) << 8 | Int(records[end + 12]))
            if end > start && end + recordLength - start > mtu { break }
            end = min(n, end + recordLength)
        }
        return end == start ? n : end
    }
}

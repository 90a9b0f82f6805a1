// Peer → client framing: the one place that writes the ChannelData header or the Data
// indication header (RFC 8656 §11.4, §12.4) in front of a peer's payload, and its padding.
//
// Invariants: the payload is never copied or read here (only the header room in front of it and
// the padding after it are written); a Data indication gets a fresh transaction ID; ChannelData
// to a TCP/TLS client is padded to a multiple of 4 (RFC 8656 §12.5), never over UDP or DTLS.
import STUNCodec
import TURNCore

/// Writes the framing of peer data. Value type: each shard holds one (its transaction-ID state).
struct PeerFramer {
    private var random = UInt64.random(in: 1...UInt64.max)

    /// The bytes of a Data indication in front of its payload: header, XOR-PEER-ADDRESS, DATA's header.
    @inline(__always) static func dataIndicationHeaderLength(_ peer: TransportAddress) -> Int {
        stunHeaderSize + 4 + (peer.family == .ipv4 ? 8 : 20) + 4
    }

    /// The header length `route` puts in front of a payload from `peer`.
    @inline(__always) static func headerLength(_ route: PeerRoute, peer: TransportAddress) -> Int {
        if case .channel = route { return ChannelData.headerSize }
        return dataIndicationHeaderLength(peer)
    }

    /// The zero bytes `route` puts after a payload of `length` bytes to a client on `transport`.
    @inline(__always) static func padding(_ route: PeerRoute, length: Int, transport: TransportProtocol) -> Int {
        switch route {
        case .drop: return 0
        case .channel:
            guard transport == .tcp || transport == .tls else { return 0 }
            return ChannelData.streamFrameSize(payloadLength: length) - ChannelData.headerSize - length
        case .indication:
            return (length + 3) & ~3 - length
        }
    }

    /// Writes the header of `route` for a payload of `length` bytes from `peer` at `header`
    /// (which must have room for `headerLength`); returns its length. Padding is the caller's.
    @inline(__always)
    mutating func writeHeader(
        _ route: PeerRoute, peer: TransportAddress, payloadLength length: Int, to header: UnsafeMutableRawPointer
    ) -> Int {
        if case .channel(let number, _) = route {
            ChannelData.writeHeader(channel: number, payloadLength: length, to: header)
            return ChannelData.headerSize
        }
        return writeDataIndicationHeader(to: header, peer: peer, payloadLength: length)
    }

    /// Frames a payload in place: the header in the headroom in front of `payload`, the padding
    /// after it (those bytes must be writable). Returns the framed message.
    @inline(__always)
    mutating func frameInPlace(
        _ route: PeerRoute, payload: UnsafeMutableRawPointer, length: Int, peer: TransportAddress,
        transport: TransportProtocol
    ) -> (start: UnsafeMutableRawPointer, length: Int) {
        if case .drop = route { return (payload, 0) }
        let headerLength = Self.headerLength(route, peer: peer)
        let start = payload - headerLength
        _ = writeHeader(route, peer: peer, payloadLength: length, to: start)
        let padding = Self.padding(route, length: length, transport: transport)
        for j in 0..<padding { payload.storeBytes(of: 0, toByteOffset: length + j, as: UInt8.self) }
        return (start, headerLength + length + padding)
    }

    /// Writes a Data indication's header (with a fresh transaction ID) for a payload of
    /// `payloadLength` bytes from `peer`; returns its length.
    @inline(__always)
    private mutating func writeDataIndicationHeader(
        to start: UnsafeMutableRawPointer, peer: TransportAddress, payloadLength length: Int
    ) -> Int {
        let addressLength = peer.family == .ipv4 ? 8 : 20
        let headerLength = Self.dataIndicationHeaderLength(peer)
        let padded = (length + 3) & ~3
        random ^= random << 13
        random ^= random >> 7
        random ^= random << 17
        let tid = STUNTransactionID(high: random, low: UInt32(truncatingIfNeeded: random >> 17))
        let type = STUNMessageType(method: .data, class: .indication)
        start.storeBytes(of: type.wireValue.bigEndian, as: UInt16.self)
        start.storeBytes(of: UInt16(headerLength - stunHeaderSize + padded).bigEndian, toByteOffset: 2, as: UInt16.self)
        start.storeBytes(of: stunMagicCookie.bigEndian, toByteOffset: 4, as: UInt32.self)
        start.storeBytes(of: tid.high.bigEndian, toByteOffset: 8, as: UInt64.self)
        start.storeBytes(of: tid.low.bigEndian, toByteOffset: 16, as: UInt32.self)
        start.storeBytes(of: STUNAttributeType.xorPeerAddress.rawValue.bigEndian, toByteOffset: 20, as: UInt16.self)
        start.storeBytes(of: UInt16(addressLength).bigEndian, toByteOffset: 22, as: UInt16.self)
        _ = AddressCoding.encode(peer, xor: true, transactionID: tid, into: start + 24)
        let dataHeader = 24 + addressLength
        start.storeBytes(of: STUNAttributeType.data.rawValue.bigEndian, toByteOffset: dataHeader, as: UInt16.self)
        start.storeBytes(of: UInt16(length).bigEndian, toByteOffset: dataHeader + 2, as: UInt16.self)
        return headerLength
    }
}

/// ChannelData framing (RFC 8656 §12.4): a 4-byte header of channel number and length, then
/// the application data, padded to a multiple of 4 on stream transports.
public enum ChannelData {
    /// The header size in bytes: a 16-bit channel number and a 16-bit length.
    public static let headerSize = 4
    /// The channel numbers a client may bind (RFC 8656 §12).
    public static let channelRange: ClosedRange<UInt16> = 0x4000...0x4FFF
    /// The wider range of RFC 5766 (0x4000–0x7FFF), which older clients such as coturn's
    /// turnutils_uclient still pick from; accepted only when the operator opts in.
    public static let legacyChannelRange: ClosedRange<UInt16> = 0x4000...0x7FFF

    /// What the first byte of a datagram or stream frame says it is (RFC 8656 §12.4 / RFC 7983).
    public enum Kind: Sendable, Equatable {
        /// A STUN message: the first byte is 0–3.
        case stun
        /// A ChannelData message: the first byte is 0x40–0x4F, or 0x40–0x7F when legacy channel
        /// numbers are accepted.
        case channelData
        /// Neither STUN nor ChannelData (for example DTLS, RTP or noise).
        case other
    }

    /// Classifies by the first byte: 0–3 is STUN, 64–79 is ChannelData (RFC 7983 §7), or 64–127
    /// with `legacyRange`.
    @inlinable public static func classify(firstByte b: UInt8, legacyRange: Bool = false) -> Kind {
        if b < 4 { return .stun }
        if b >= 0x40 && b <= (legacyRange ? 0x7F : 0x4F) { return .channelData }
        return .other
    }

    /// A validated ChannelData message: its channel and payload, borrowed.
    public struct View {
        /// The channel number, within the range the parse accepted.
        public let channel: UInt16
        /// The application data, borrowed from the parsed buffer: without the header and without any
        /// padding. Valid only while that buffer is.
        public let payload: UnsafeRawBufferPointer

        /// Makes a view from parts that are already known to be valid; it checks nothing.
        ///
        /// Use ``ChannelData/parse(_:legacyRange:)`` to validate received bytes.
        @inlinable public init(channel: UInt16, payload: UnsafeRawBufferPointer) {
            self.channel = channel
            self.payload = payload
        }
    }

    /// Why a ChannelData message is invalid.
    public enum ParseError: Error, Sendable, Hashable {
        /// Fewer bytes than the 4-byte header.
        case truncated
        /// The channel number is outside ``ChannelData/channelRange`` (or
        /// ``ChannelData/legacyChannelRange`` when legacy numbers are accepted).
        case channelOutOfRange
        /// The length field claims more bytes than the buffer holds.
        case lengthPastEnd
    }

    /// Parses a ChannelData datagram: the length may be less than the datagram (padding is allowed
    /// over UDP and ignored), never more.
    ///
    /// Nothing is copied: the view's payload points into `bytes`.
    ///
    /// - Parameters:
    ///   - bytes: One whole datagram, or one frame cut by ``StreamFraming``.
    ///   - legacyRange: Accept the channel numbers of ``ChannelData/legacyChannelRange``.
    /// - Returns: The channel and the payload, borrowed from `bytes`.
    /// - Throws: ``ChannelData/ParseError`` when the header is short, the channel number is out of
    ///   range, or the length runs past the end.
    @inlinable
    public static func parse(_ bytes: UnsafeRawBufferPointer, legacyRange: Bool = false) throws(ParseError) -> View {
        guard bytes.count >= headerSize else { throw .truncated }
        let channel = bytes.be16(0)
        guard (legacyRange ? legacyChannelRange : channelRange).contains(channel) else { throw .channelOutOfRange }
        let length = Int(bytes.be16(2))
        guard headerSize + length <= bytes.count else { throw .lengthPastEnd }
        return View(
            channel: channel, payload: UnsafeRawBufferPointer(rebasing: bytes[headerSize..<(headerSize + length)]))
    }

    /// Writes the 4-byte header for `payloadLength` bytes of `channel` at `out`.
    ///
    /// The length is written truncated to 16 bits; `out` must have 4 writable bytes. No padding is
    /// written: on a stream transport the caller pads to ``streamFrameSize(payloadLength:)``.
    @inlinable
    public static func writeHeader(channel: UInt16, payloadLength: Int, to out: UnsafeMutableRawPointer) {
        out.storeBytes(of: channel.bigEndian, as: UInt16.self)
        out.storeBytes(of: UInt16(truncatingIfNeeded: payloadLength).bigEndian, toByteOffset: 2, as: UInt16.self)
    }

    /// The size of one frame on a stream transport: header, payload and padding to 4.
    @inlinable public static func streamFrameSize(payloadLength: Int) -> Int {
        (headerSize + payloadLength + 3) & ~3
    }
}

/// Cuts STUN messages and ChannelData frames out of a TCP/TLS byte stream (RFC 8656 §3.1):
/// STUN frames by their length field, ChannelData by its length padded to 4.
public enum StreamFraming {
    /// The result of looking at the start of a stream buffer.
    public enum Frame: Equatable, Sendable {
        /// Not enough bytes yet to know the frame's size, or to hold it.
        case needMore
        /// A complete frame of `length` bytes is at the start of the buffer.
        case complete(length: Int, kind: ChannelData.Kind)
        /// The stream is not STUN or ChannelData: the connection should be closed.
        case invalid
    }

    /// Finds the first frame in `bytes`.
    ///
    /// - Parameters:
    ///   - bytes: The start of the unread stream data.
    ///   - legacyRange: Treat first bytes 0x50–0x7F as ChannelData too.
    /// - Returns: ``Frame/needMore`` until the frame is whole (at least 4 bytes are needed to read a
    ///   length); ``Frame/invalid`` for a first byte that is neither STUN nor ChannelData, or for a STUN
    ///   length that is not a multiple of 4.
    @inlinable
    public static func nextFrame(in bytes: UnsafeRawBufferPointer, legacyRange: Bool = false) -> Frame {
        guard bytes.count >= 4 else { return .needMore }
        switch ChannelData.classify(firstByte: bytes[0], legacyRange: legacyRange) {
        case .stun:
            let total = stunHeaderSize + Int(bytes.be16(2))
            if Int(bytes.be16(2)) & 3 != 0 { return .invalid }
            return bytes.count >= total ? .complete(length: total, kind: .stun) : .needMore
        case .channelData:
            let total = ChannelData.streamFrameSize(payloadLength: Int(bytes.be16(2)))
            return bytes.count >= total ? .complete(length: total, kind: .channelData) : .needMore
        case .other:
            return .invalid
        }
    }
}

internal import CTraverseCrypto

/// Writes one STUN message into a caller-owned buffer, attribute by attribute, without
/// allocating. Integrity and FINGERPRINT are appended last, in RFC 8489 order.
///
/// The header's length field is updated after every append, so ``message`` is a whole message
/// at any point. An integrity attribute covers everything appended before it; append
/// MESSAGE-INTEGRITY, then MESSAGE-INTEGRITY-SHA256, then FINGERPRINT, and nothing after them.
/// The writer does not own the buffer: it must stay valid while the writer is used.
public struct STUNMessageWriter {
    let buffer: UnsafeMutableRawBufferPointer
    /// Bytes written so far (header included).
    public private(set) var count: Int
    /// The transaction ID written in the header (needed for XOR addresses).
    public let transactionID: STUNTransactionID

    /// Starts a message of `type` at the start of `buffer`. `cookie` is the magic cookie except when
    /// answering an RFC 3489 client, whose 16-byte transaction ID fills the cookie field.
    ///
    /// - Throws: ``STUNEncodingError/bufferTooSmall`` when `buffer` is shorter than the 20-byte header.
    public init(
        into buffer: UnsafeMutableRawBufferPointer, type: STUNMessageType, transactionID: STUNTransactionID,
        cookie: UInt32 = stunMagicCookie
    ) throws(STUNEncodingError) {
        guard buffer.count >= stunHeaderSize else { throw .bufferTooSmall }
        self.buffer = buffer
        self.transactionID = transactionID
        buffer.storeBytes(of: type.wireValue.bigEndian, toByteOffset: 0, as: UInt16.self)
        buffer.storeBytes(of: UInt16(0), toByteOffset: 2, as: UInt16.self)
        buffer.storeBytes(of: cookie.bigEndian, toByteOffset: 4, as: UInt32.self)
        buffer.storeBytes(of: transactionID.high.bigEndian, toByteOffset: 8, as: UInt64.self)
        buffer.storeBytes(of: transactionID.low.bigEndian, toByteOffset: 16, as: UInt32.self)
        count = stunHeaderSize
    }

    /// Reserves an attribute of `length` value bytes, zeroes its padding, lets `body` fill the
    /// value, and updates the header's length field.
    ///
    /// `body` gets exactly `length` bytes to fill.
    ///
    /// - Throws: ``STUNEncodingError/bufferTooSmall`` when the attribute does not fit in the buffer,
    ///   its value is longer than 65,535 bytes, or the message would pass the 16-bit length field.
    public mutating func append(
        _ type: STUNAttributeType, length: Int, _ body: (UnsafeMutableRawBufferPointer) -> Void
    ) throws(STUNEncodingError) {
        let padded = (length + 3) & ~3
        guard length <= 0xFFFF, count + 4 + padded <= buffer.count, count + 4 + padded - stunHeaderSize <= 0xFFFF
        else { throw .bufferTooSmall }
        buffer.storeBytes(of: type.rawValue.bigEndian, toByteOffset: count, as: UInt16.self)
        buffer.storeBytes(of: UInt16(length).bigEndian, toByteOffset: count + 2, as: UInt16.self)
        body(UnsafeMutableRawBufferPointer(rebasing: buffer[(count + 4)..<(count + 4 + length)]))
        for i in (count + 4 + length)..<(count + 4 + padded) { buffer[i] = 0 }
        count += 4 + padded
        buffer.storeBytes(of: UInt16(count - stunHeaderSize).bigEndian, toByteOffset: 2, as: UInt16.self)
    }

    /// Appends raw value bytes.
    ///
    /// - Throws: ``STUNEncodingError/bufferTooSmall`` when the attribute does not fit.
    public mutating func append(_ type: STUNAttributeType, bytes: UnsafeRawBufferPointer) throws(STUNEncodingError) {
        try append(type, length: bytes.count) { $0.copyMemory(from: bytes) }
    }

    /// Appends a UTF-8 text value (USERNAME, REALM, NONCE, SOFTWARE …).
    ///
    /// - Throws: ``STUNEncodingError/bufferTooSmall`` when the attribute does not fit.
    public mutating func append(_ type: STUNAttributeType, string: String) throws(STUNEncodingError) {
        var s = string
        try s.withUTF8 { u in
            Result { () throws(STUNEncodingError) in try append(type, bytes: UnsafeRawBufferPointer(u)) }
        }.get()
    }

    /// Appends a 32-bit value.
    ///
    /// - Throws: ``STUNEncodingError/bufferTooSmall`` when the attribute does not fit.
    public mutating func append(_ type: STUNAttributeType, uint32 value: UInt32) throws(STUNEncodingError) {
        try append(type, length: 4) { $0.storeBytes(of: value.bigEndian, as: UInt32.self) }
    }

    /// Appends a 64-bit value (RESERVATION-TOKEN, ICE-CONTROLLING …).
    ///
    /// - Throws: ``STUNEncodingError/bufferTooSmall`` when the attribute does not fit.
    public mutating func append(_ type: STUNAttributeType, uint64 value: UInt64) throws(STUNEncodingError) {
        try append(type, length: 8) { $0.storeBytes(of: value.bigEndian, as: UInt64.self) }
    }

    /// Appends an address: XOR-encoded for the XOR-* types, plain otherwise.
    ///
    /// - Throws: ``STUNEncodingError/bufferTooSmall`` when the attribute does not fit.
    public mutating func append(_ type: STUNAttributeType, address: TransportAddress) throws(STUNEncodingError) {
        let xor =
            type == .xorMappedAddress || type == .xorPeerAddress || type == .xorRelayedAddress
        let tid = transactionID
        try append(type, length: address.family == .ipv4 ? 8 : 20) {
            _ = AddressCoding.encode(address, xor: xor, transactionID: tid, into: $0.baseAddress!)
        }
    }

    /// Appends ERROR-CODE (RFC 8489 §14.8): class and number, then the reason phrase.
    ///
    /// `code` is written as a class (`code / 100`) and a number (`code % 100`); the reason is cut to
    /// ``STUNLimits/maxPhraseBytes``, possibly inside a UTF-8 sequence.
    ///
    /// - Throws: ``STUNEncodingError/bufferTooSmall`` when the attribute does not fit.
    public mutating func appendErrorCode(_ code: Int, reason: String) throws(STUNEncodingError) {
        try appendCodedReason(.errorCode, prefix: 0, code: code, reason: reason)
    }

    /// Appends ERROR-CODE with a typed code and its reason phrase.
    ///
    /// - Throws: ``STUNEncodingError/bufferTooSmall`` when the attribute does not fit.
    public mutating func appendErrorCode(_ code: STUNErrorCode, reason: String) throws(STUNEncodingError) {
        try appendCodedReason(.errorCode, prefix: 0, code: code.rawValue, reason: reason)
    }

    /// Appends ADDRESS-ERROR-CODE (RFC 8656): family, then code and reason.
    ///
    /// - Throws: ``STUNEncodingError/bufferTooSmall`` when the attribute does not fit.
    public mutating func appendAddressErrorCode(family: AddressFamily, _ code: Int, reason: String)
        throws(STUNEncodingError)
    {
        try appendCodedReason(.addressErrorCode, prefix: family.rawValue, code: code, reason: reason)
    }

    mutating func appendCodedReason(_ type: STUNAttributeType, prefix: UInt8, code: Int, reason: String)
        throws(STUNEncodingError)
    {
        var s = reason
        try s.withUTF8 { u in
            Result { () throws(STUNEncodingError) in
                let phrase = min(u.count, STUNLimits.maxPhraseBytes)
                try append(type, length: 4 + phrase) { v in
                    v[0] = prefix
                    v[1] = 0
                    v[2] = UInt8(code / 100 & 0x7)
                    v[3] = UInt8(code % 100)
                    UnsafeMutableRawBufferPointer(rebasing: v[4...]).copyMemory(
                        from: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(u)[0..<phrase]))
                }
            }
        }.get()
    }

    /// Appends MESSAGE-INTEGRITY (HMAC-SHA1 under `key`) over everything written so far.
    ///
    /// - Throws: ``STUNEncodingError/bufferTooSmall`` when the attribute does not fit.
    public mutating func appendMessageIntegrity(key: UnsafeRawBufferPointer) throws(STUNEncodingError) {
        let offset = count
        try append(.messageIntegrity, length: 20) { _ in }
        STUNMessageView.mac(
            UnsafeRawBufferPointer(buffer), upTo: offset, macLength: 20, key: key, sha256: false,
            into: buffer.baseAddress! + offset + 4)
    }

    /// Appends MESSAGE-INTEGRITY-SHA256 truncated to `length` bytes (16…32, a multiple of 4).
    ///
    /// - Throws: ``STUNEncodingError/valueTooLong(_:)`` for a length outside 16…32 or not a multiple
    ///   of 4; ``STUNEncodingError/bufferTooSmall`` when the attribute does not fit.
    public mutating func appendMessageIntegritySHA256(key: UnsafeRawBufferPointer, length: Int = 32)
        throws(STUNEncodingError)
    {
        guard length >= 16, length <= 32, length & 3 == 0 else { throw .valueTooLong(.messageIntegritySHA256) }
        let offset = count
        try append(.messageIntegritySHA256, length: length) { _ in }
        var full = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        withUnsafeMutableBytes(of: &full) { out in
            STUNMessageView.mac(
                UnsafeRawBufferPointer(buffer), upTo: offset, macLength: length, key: key, sha256: true,
                into: out.baseAddress!)
            (buffer.baseAddress! + offset + 4).copyMemory(from: out.baseAddress!, byteCount: length)
        }
    }

    /// Appends FINGERPRINT; it must be the last attribute.
    ///
    /// - Throws: ``STUNEncodingError/bufferTooSmall`` when the attribute does not fit.
    public mutating func appendFingerprint() throws(STUNEncodingError) {
        let offset = count
        try append(.fingerprint, length: 4) { _ in }
        let crc = CRC32.update(0, UnsafeRawBufferPointer(rebasing: buffer[0..<offset])) ^ stunFingerprintXOR
        buffer.storeBytes(of: crc.bigEndian, toByteOffset: offset + 4, as: UInt32.self)
    }

    /// The finished message.
    public var message: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: buffer[0..<count]) }
}

/// Big-endian loads from raw bytes; alignment-free.
extension UnsafeRawBufferPointer {
    /// Reads a big-endian integer at `offset` (no alignment needed).
    @inlinable public func be16(_ offset: Int) -> UInt16 {
        UInt16(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }
    /// Reads a big-endian integer at `offset` (no alignment needed).
    @inlinable public func be32(_ offset: Int) -> UInt32 {
        UInt32(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }
    /// Reads a big-endian integer at `offset` (no alignment needed).
    @inlinable public func be64(_ offset: Int) -> UInt64 {
        UInt64(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }
}

/// Up to eight attribute types, held inline so collecting them costs no allocation.
public struct STUNAttributeTypeList: Sendable {
    /// The most types a list holds; further ones are dropped.
    public static let capacity = 8
    var storage: (UInt16, UInt16, UInt16, UInt16, UInt16, UInt16, UInt16, UInt16) = (0, 0, 0, 0, 0, 0, 0, 0)
    /// How many types are held.
    public private(set) var count = 0

    /// Makes an empty list.
    public init() {}

    /// Adds a type unless already present or full.
    public mutating func append(_ type: STUNAttributeType) {
        guard count < Self.capacity, !contains(type) else { return }
        withUnsafeMutableBytes(of: &storage) {
            $0.storeBytes(of: type.rawValue, toByteOffset: count * 2, as: UInt16.self)
        }
        count += 1
    }

    /// The type at `index`.
    public subscript(index: Int) -> STUNAttributeType {
        precondition(index < count)
        return withUnsafeBytes(of: storage) { STUNAttributeType($0.load(fromByteOffset: index * 2, as: UInt16.self)) }
    }

    /// Whether `type` is held.
    public func contains(_ type: STUNAttributeType) -> Bool {
        for i in 0..<count where self[i] == type { return true }
        return false
    }

    /// Whether no type is held.
    public var isEmpty: Bool { count == 0 }

    /// The types as an array (allocates; not for the packet path).
    public var array: [STUNAttributeType] { (0..<count).map { self[$0] } }
}

/// A validated STUN message borrowed from a receive buffer: nothing is copied, and reading an
/// attribute costs no allocation.
///
/// The view is only valid while the bytes it points into are; the I/O layer builds it inside
/// its receive loop and never lets it escape.
public struct STUNMessageView {
    /// The whole message, header included.
    public let bytes: UnsafeRawBufferPointer
    /// Method and class.
    public let type: STUNMessageType
    /// The transaction ID (the 12 bytes after the cookie field).
    public let transactionID: STUNTransactionID
    /// The raw cookie field: `stunMagicCookie` unless `isClassicSTUN`.
    public let cookie: UInt32
    /// Offset of the MESSAGE-INTEGRITY attribute header, if present.
    public let integrityOffset: Int?
    /// Offset of the MESSAGE-INTEGRITY-SHA256 attribute header, if present.
    public let integritySHA256Offset: Int?
    /// Offset of the FINGERPRINT attribute header, if present (it was verified while parsing).
    public let fingerprintOffset: Int?
    /// End of the attributes the message's meaning is taken from: attributes after the integrity
    /// attributes are ignored (RFC 8489 §14.5).
    public let attributesEnd: Int
    /// Comprehension-required attributes this codec does not know (for a 420 answer).
    public let unknownComprehensionRequired: STUNAttributeTypeList

    /// A message from an RFC 3489 client, which has no magic cookie.
    @inlinable public var isClassicSTUN: Bool { cookie != stunMagicCookie }

    /// Validates `bytes` as one whole STUN message (a datagram, or one frame cut from a stream).
    ///
    /// A message without the magic cookie is accepted only as an RFC 3489 Binding request;
    /// everything else without the cookie is ``STUNParseError/badMagicCookie``.
    ///
    /// It checks the header (the first two bits, the length, the cookie), that every attribute and
    /// its padding fit, the value length of every attribute this codec knows, the family of address
    /// attributes, and FINGERPRINT if present. It does not check MESSAGE-INTEGRITY: that needs the key
    /// (``verifyMessageIntegrity(key:)``). Attributes after the integrity attributes are skipped, as
    /// RFC 8489 §14.5 says; comprehension-required types it does not know are collected (up to
    /// eight) in ``unknownComprehensionRequired`` rather than rejected, so the server can answer 420.
    ///
    /// - Parameter bytes: The message; the view borrows it and copies nothing.
    /// - Throws: ``STUNParseError`` naming the first rule the bytes break.
    public init(validating bytes: UnsafeRawBufferPointer) throws(STUNParseError) {
        guard bytes.count >= stunHeaderSize else { throw .truncatedHeader }
        let rawType = bytes.be16(0)
        guard rawType & 0xC000 == 0 else { throw .notSTUN }
        let length = Int(bytes.be16(2))
        guard length & 3 == 0 else { throw .lengthNotMultipleOfFour }
        guard length + stunHeaderSize == bytes.count else { throw .lengthMismatch }
        let type = STUNMessageType(wireValue: rawType)
        let cookie = bytes.be32(4)
        if cookie != stunMagicCookie {
            guard type == .bindingRequest else { throw .badMagicCookie }
        }
        self.bytes = bytes
        self.type = type
        self.cookie = cookie
        self.transactionID = STUNTransactionID(high: bytes.be64(8), low: bytes.be32(16))

        var integrity: Int? = nil
        var integrity256: Int? = nil
        var fingerprint: Int? = nil
        var meaningfulEnd = bytes.count
        var unknown = STUNAttributeTypeList()
        var offset = stunHeaderSize
        while offset < bytes.count {
            guard offset + 4 <= bytes.count else { throw .attributeOverrun(STUNAttributeType(0)) }
            let attrType = STUNAttributeType(bytes.be16(offset))
            let valueLength = Int(bytes.be16(offset + 2))
            let padded = (valueLength + 3) & ~3
            guard offset + 4 + padded <= bytes.count else { throw .attributeOverrun(attrType) }
            if fingerprint != nil { throw .fingerprintNotLast }

            let ignored = integrity256 != nil || (integrity != nil && attrType != .messageIntegritySHA256)
            if attrType == .fingerprint {
                guard valueLength == 4 else { throw .invalidAttributeLength(attrType) }
                fingerprint = offset
                if integrity == nil && integrity256 == nil { meaningfulEnd = offset }
            } else if !ignored {
                if let rule = STUNAttributeType.valueLengthRule(attrType) {
                    guard Self.lengthAllowed(valueLength, rule) else { throw .invalidAttributeLength(attrType) }
                    if Self.isAddressType(attrType) {
                        let family = bytes[offset + 5]
                        guard (family == 1 && valueLength == 8) || (family == 2 && valueLength == 20) else {
                            throw .invalidAddressFamily(attrType)
                        }
                    }
                    if attrType == .messageIntegrity {
                        integrity = offset
                        meaningfulEnd = offset
                    } else if attrType == .messageIntegritySHA256 {
                        integrity256 = offset
                        if integrity == nil { meaningfulEnd = offset }
                    }
                } else if attrType.isComprehensionRequired {
                    unknown.append(attrType)
                }
            }
            offset += 4 + padded
        }
        if let fp = fingerprint {
            let crc = CRC32.update(0, UnsafeRawBufferPointer(rebasing: bytes[0..<fp]))
            guard crc ^ stunFingerprintXOR == bytes.be32(fp + 4) else { throw .badFingerprint }
        }
        self.integrityOffset = integrity
        self.integritySHA256Offset = integrity256
        self.fingerprintOffset = fingerprint
        self.attributesEnd = meaningfulEnd
        self.unknownComprehensionRequired = unknown
    }

    @inlinable static func isAddressType(_ t: STUNAttributeType) -> Bool {
        switch t {
        case .mappedAddress, .xorMappedAddress, .xorPeerAddress, .xorRelayedAddress, .alternateServer,
            .responseOrigin, .otherAddress:
            return true
        default: return false
        }
    }

    static func lengthAllowed(_ n: Int, _ rule: STUNAttributeType.LengthRule) -> Bool {
        switch rule {
        case .exactly(let x): return n == x
        case .oneOf(let a, let b): return n == a || n == b
        case .range(let r): return r.contains(n)
        case .multipleOf4(let r): return r.contains(n) && n & 3 == 0
        case .evenCount: return n & 1 == 0
        }
    }

    // MARK: Reading attributes

    /// Calls `body` with each meaningful attribute's type and value, in order, until it returns false.
    @inlinable
    public func forEachAttribute(_ body: (STUNAttributeType, UnsafeRawBufferPointer) -> Bool) {
        var offset = stunHeaderSize
        while offset < attributesEnd {
            let t = STUNAttributeType(bytes.be16(offset))
            let n = Int(bytes.be16(offset + 2))
            let value = UnsafeRawBufferPointer(rebasing: bytes[(offset + 4)..<(offset + 4 + n)])
            if !body(t, value) { return }
            offset += 4 + ((n + 3) & ~3)
        }
    }

    /// The value of the first attribute of `type` among the meaningful ones (RFC 8489 §14: only the
    /// first occurrence is processed).
    @inlinable
    public func value(of type: STUNAttributeType) -> UnsafeRawBufferPointer? {
        var offset = stunHeaderSize
        while offset < attributesEnd {
            let t = bytes.be16(offset)
            let n = Int(bytes.be16(offset + 2))
            if t == type.rawValue {
                return UnsafeRawBufferPointer(rebasing: bytes[(offset + 4)..<(offset + 4 + n)])
            }
            offset += 4 + ((n + 3) & ~3)
        }
        return nil
    }

    /// Whether an attribute of `type` is present.
    @inlinable public func contains(_ type: STUNAttributeType) -> Bool { value(of: type) != nil }

    /// A 32-bit attribute value (LIFETIME, REQUESTED-TRANSPORT, CHANNEL-NUMBER, …).
    @inlinable public func uint32(_ type: STUNAttributeType) -> UInt32? {
        guard let v = value(of: type), v.count >= 4 else { return nil }
        return v.be32(0)
    }

    /// An XOR-encoded address attribute (XOR-MAPPED/PEER/RELAYED-ADDRESS), decoded.
    @inlinable public func xorAddress(_ type: STUNAttributeType) -> TransportAddress? {
        guard let v = value(of: type) else { return nil }
        return decodeXORAddress(v)
    }

    /// Decodes an XOR-encoded address value with this message's transaction ID.
    @inlinable public func decodeXORAddress(_ v: UnsafeRawBufferPointer) -> TransportAddress? {
        AddressCoding.decodeXOR(v, transactionID: transactionID)
    }

    /// A plain address attribute (MAPPED-ADDRESS, ALTERNATE-SERVER, …), decoded.
    @inlinable public func plainAddress(_ type: STUNAttributeType) -> TransportAddress? {
        guard let v = value(of: type) else { return nil }
        return AddressCoding.decodePlain(v)
    }

    /// The ERROR-CODE attribute's number (e.g. 401), if present.
    @inlinable public var errorCode: Int? {
        guard let v = value(of: .errorCode) else { return nil }
        return Int(v[2] & 0x7) * 100 + Int(v[3])
    }

    /// A text attribute (USERNAME, REALM, NONCE, SOFTWARE) as a String; allocates, so it is for
    /// the control path only.
    public func string(_ type: STUNAttributeType) -> String? {
        guard let v = value(of: type) else { return nil }
        return String(decoding: v, as: UTF8.self)
    }
}

/// Address attribute encodings (RFC 8489 §14.1 and §14.2).
public enum AddressCoding {
    /// Decodes MAPPED-ADDRESS-style values.
    @inlinable public static func decodePlain(_ v: UnsafeRawBufferPointer) -> TransportAddress? {
        let port = v.be16(2)
        if v[1] == 1 && v.count == 8 {
            return TransportAddress(ip: .v4(v.be32(4)), port: port)
        } else if v[1] == 2 && v.count == 20 {
            return TransportAddress(ip: .v6(v.be64(4), v.be64(12)), port: port)
        }
        return nil
    }

    /// Decodes XOR-MAPPED-ADDRESS-style values.
    @inlinable public static func decodeXOR(_ v: UnsafeRawBufferPointer, transactionID: STUNTransactionID)
        -> TransportAddress?
    {
        let port = v.be16(2) ^ UInt16(stunMagicCookie >> 16)
        if v[1] == 1 && v.count == 8 {
            return TransportAddress(ip: .v4(v.be32(4) ^ stunMagicCookie), port: port)
        } else if v[1] == 2 && v.count == 20 {
            let hi = v.be64(4) ^ (UInt64(stunMagicCookie) << 32 | UInt64(transactionID.high >> 32))
            let lo = v.be64(12) ^ (transactionID.high << 32 | UInt64(transactionID.low))
            return TransportAddress(ip: .v6(hi, lo), port: port)
        }
        return nil
    }

    /// Writes a plain or XOR-encoded address value (8 or 20 bytes) at `out`; returns its length.
    @inlinable public static func encode(
        _ address: TransportAddress, xor: Bool, transactionID: STUNTransactionID, into out: UnsafeMutableRawPointer
    ) -> Int {
        out.storeBytes(of: 0, as: UInt8.self)
        let portMask: UInt16 = xor ? UInt16(stunMagicCookie >> 16) : 0
        out.storeBytes(of: (address.port ^ portMask).bigEndian, toByteOffset: 2, as: UInt16.self)
        switch address.ip {
        case .v4(let a):
            out.storeBytes(of: 1, toByteOffset: 1, as: UInt8.self)
            out.storeBytes(of: (xor ? a ^ stunMagicCookie : a).bigEndian, toByteOffset: 4, as: UInt32.self)
            return 8
        case .v6(let hi, let lo):
            out.storeBytes(of: 2, toByteOffset: 1, as: UInt8.self)
            let maskHi = xor ? (UInt64(stunMagicCookie) << 32 | UInt64(transactionID.high >> 32)) : 0
            let maskLo = xor ? (transactionID.high << 32 | UInt64(transactionID.low)) : 0
            out.storeBytes(of: (hi ^ maskHi).bigEndian, toByteOffset: 4, as: UInt64.self)
            out.storeBytes(of: (lo ^ maskLo).bigEndian, toByteOffset: 12, as: UInt64.self)
            return 20
        }
    }
}

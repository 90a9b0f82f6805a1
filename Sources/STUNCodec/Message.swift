/// A password algorithm of RFC 8489 §14.11/§14.12 with its parameters.
public struct PasswordAlgorithm: Hashable, Sendable {
    /// The algorithm number (RFC 8489 §18.5): 0x0001 is MD5, 0x0002 is SHA-256.
    public var number: UInt16
    /// The algorithm's parameters, without padding; empty for MD5 and SHA-256.
    public var parameters: [UInt8]

    /// Makes an algorithm from its number and parameters.
    public init(number: UInt16, parameters: [UInt8] = []) {
        self.number = number
        self.parameters = parameters
    }

    /// MD5 (0x0001): the RFC 5389 key, MD5(username ":" realm ":" password).
    public static let md5 = PasswordAlgorithm(number: 0x0001)
    /// SHA-256 (0x0002): SHA-256(username ":" realm ":" password).
    public static let sha256 = PasswordAlgorithm(number: 0x0002)
}

/// One decoded STUN attribute, owned. For clients, tests and the control path; the packet path
/// reads attributes through `STUNMessageView` instead.
public enum STUNAttribute: Hashable, Sendable {
    /// MAPPED-ADDRESS (RFC 8489 §14.1): an address, not XOR-encoded (what RFC 3489 clients read).
    case mappedAddress(TransportAddress)
    /// XOR-MAPPED-ADDRESS (RFC 8489 §14.2): the client's address as the server saw it.
    case xorMappedAddress(TransportAddress)
    /// XOR-PEER-ADDRESS (RFC 8656 §18.3): a peer's address.
    case xorPeerAddress(TransportAddress)
    /// XOR-RELAYED-ADDRESS (RFC 8656 §18.5): the address the server relays from.
    case xorRelayedAddress(TransportAddress)
    /// ALTERNATE-SERVER (RFC 8489 §14.15): the server to try instead, with a 300 answer.
    case alternateServer(TransportAddress)
    /// RESPONSE-ORIGIN (RFC 5780): the address the response was sent from.
    case responseOrigin(TransportAddress)
    /// OTHER-ADDRESS (RFC 5780): the server's alternate address.
    case otherAddress(TransportAddress)
    /// USERNAME (RFC 8489 §14.3).
    case username(String)
    /// USERHASH (RFC 8489 §14.4): 32 bytes, SHA-256 of the username and realm.
    case userhash([UInt8])
    /// REALM (RFC 8489 §14.9).
    case realm(String)
    /// NONCE (RFC 8489 §14.10).
    case nonce(String)
    /// SOFTWARE (RFC 8489 §14.14).
    case software(String)
    /// ALTERNATE-DOMAIN (RFC 8489 §14.16).
    case alternateDomain(String)
    /// MESSAGE-INTEGRITY (RFC 8489 §14.5): the 20-byte HMAC-SHA1 as received; not checked here.
    case messageIntegrity([UInt8])
    /// MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6): the HMAC-SHA256, 16–32 bytes, as received; not
    /// checked here.
    case messageIntegritySHA256([UInt8])
    /// FINGERPRINT (RFC 8489 §14.7): the CRC-32 XORed with ``stunFingerprintXOR``.
    case fingerprint(UInt32)
    /// ERROR-CODE (RFC 8489 §14.8): a code (300–699 in the RFC) and a reason phrase.
    case errorCode(code: Int, reason: String)
    /// UNKNOWN-ATTRIBUTES (RFC 8489 §14.13): the attribute types a 420 answer did not understand.
    case unknownAttributes([UInt16])
    /// PASSWORD-ALGORITHMS (RFC 8489 §14.11): the algorithms the server offers.
    case passwordAlgorithms([PasswordAlgorithm])
    /// PASSWORD-ALGORITHM (RFC 8489 §14.12): the algorithm the client chose.
    case passwordAlgorithm(PasswordAlgorithm)
    /// CHANNEL-NUMBER (RFC 8656 §18.1): the channel, in the high 16 bits of the value on the wire.
    case channelNumber(UInt16)
    /// LIFETIME (RFC 8656 §18.2): seconds.
    case lifetime(UInt32)
    /// DATA (RFC 8656 §18.4): application data of a Send or Data indication.
    case data([UInt8])
    /// REQUESTED-ADDRESS-FAMILY (RFC 8656 §18.6).
    case requestedAddressFamily(AddressFamily)
    /// ADDITIONAL-ADDRESS-FAMILY (RFC 8656): ask for a second, IPv6, relayed address.
    case additionalAddressFamily(AddressFamily)
    /// ADDRESS-ERROR-CODE (RFC 8656): why the relayed address of one family was not given.
    case addressErrorCode(family: AddressFamily, code: Int, reason: String)
    /// EVEN-PORT (RFC 8656 §18.7): `reserve` asks the server to keep the next port too.
    case evenPort(reserve: Bool)
    /// REQUESTED-TRANSPORT (RFC 8656 §18.8): an IP protocol number, 17 (UDP) or 6 (TCP).
    case requestedTransport(UInt8)
    /// DONT-FRAGMENT (RFC 8656 §18.9): no value.
    case dontFragment
    /// RESERVATION-TOKEN (RFC 8656 §18.10): names a port reserved by an earlier EVEN-PORT.
    case reservationToken(UInt64)
    /// ICMP (RFC 8656): an ICMP type, code and error data that a peer's packet caused.
    case icmp(type: UInt8, code: UInt8, data: UInt32)
    /// CONNECTION-ID (RFC 6062): names one peer TCP connection.
    case connectionID(UInt32)
    /// CHANGE-REQUEST (RFC 5780): flags, as a 32-bit value.
    case changeRequest(UInt32)
    /// RESPONSE-PORT (RFC 5780): in the high 16 bits of the value on the wire.
    case responsePort(UInt16)
    /// PADDING (RFC 5780).
    case padding([UInt8])
    /// MOBILITY-TICKET (RFC 8016): an opaque ticket.
    case mobilityTicket([UInt8])
    /// PRIORITY (RFC 8445).
    case priority(UInt32)
    /// USE-CANDIDATE (RFC 8445): no value.
    case useCandidate
    /// ICE-CONTROLLED (RFC 8445): the tie-breaker.
    case iceControlled(UInt64)
    /// ICE-CONTROLLING (RFC 8445): the tie-breaker.
    case iceControlling(UInt64)
    /// Any attribute this codec has no case for.
    case other(type: UInt16, value: [UInt8])

    /// The attribute's wire type.
    public var type: STUNAttributeType {
        switch self {
        case .mappedAddress: .mappedAddress
        case .xorMappedAddress: .xorMappedAddress
        case .xorPeerAddress: .xorPeerAddress
        case .xorRelayedAddress: .xorRelayedAddress
        case .alternateServer: .alternateServer
        case .responseOrigin: .responseOrigin
        case .otherAddress: .otherAddress
        case .username: .username
        case .userhash: .userhash
        case .realm: .realm
        case .nonce: .nonce
        case .software: .software
        case .alternateDomain: .alternateDomain
        case .messageIntegrity: .messageIntegrity
        case .messageIntegritySHA256: .messageIntegritySHA256
        case .fingerprint: .fingerprint
        case .errorCode: .errorCode
        case .unknownAttributes: .unknownAttributes
        case .passwordAlgorithms: .passwordAlgorithms
        case .passwordAlgorithm: .passwordAlgorithm
        case .channelNumber: .channelNumber
        case .lifetime: .lifetime
        case .data: .data
        case .requestedAddressFamily: .requestedAddressFamily
        case .additionalAddressFamily: .additionalAddressFamily
        case .addressErrorCode: .addressErrorCode
        case .evenPort: .evenPort
        case .requestedTransport: .requestedTransport
        case .dontFragment: .dontFragment
        case .reservationToken: .reservationToken
        case .icmp: .icmp
        case .connectionID: .connectionID
        case .changeRequest: .changeRequest
        case .responsePort: .responsePort
        case .padding: .padding
        case .mobilityTicket: .mobilityTicket
        case .priority: .priority
        case .useCandidate: .useCandidate
        case .iceControlled: .iceControlled
        case .iceControlling: .iceControlling
        case .other(let t, _): STUNAttributeType(t)
        }
    }
}

/// How to protect a message being encoded.
public enum STUNIntegrityAlgorithm: Sendable, Hashable {
    /// MESSAGE-INTEGRITY (HMAC-SHA1).
    case sha1
    /// MESSAGE-INTEGRITY-SHA256, truncated to `length` bytes.
    case sha256(length: Int = 32)
}

/// An owned STUN message: a type, a transaction ID and attributes in order.
public struct STUNMessage: Hashable, Sendable {
    /// The method and class.
    public var type: STUNMessageType
    /// The 96-bit transaction ID.
    public var transactionID: STUNTransactionID
    /// The attributes, in wire order.
    public var attributes: [STUNAttribute]

    /// Makes a message; by default with a fresh random transaction ID and no attributes.
    public init(type: STUNMessageType, transactionID: STUNTransactionID = .random(), attributes: [STUNAttribute] = []) {
        self.type = type
        self.transactionID = transactionID
        self.attributes = attributes
    }

    /// The first attribute of `type`, if any.
    public func first(_ type: STUNAttributeType) -> STUNAttribute? { attributes.first { $0.type == type } }

    /// The ERROR-CODE number, if any.
    public var errorCode: Int? {
        if case .errorCode(let code, _)? = first(.errorCode) { return code }
        return nil
    }

    /// Encodes the message. Attributes are written as they are (a stored MESSAGE-INTEGRITY is
    /// copied verbatim); `integrity` appends fresh integrity under `key`, and `fingerprint` a
    /// FINGERPRINT, after them.
    ///
    /// This allocates (a 64 KiB scratch buffer and the result); it is for clients, tests and the
    /// control path.
    ///
    /// - Parameters:
    ///   - key: The integrity key for `integrity` (an empty key when nil).
    ///   - integrity: The integrity attributes to append, in order.
    ///   - fingerprint: Whether to append FINGERPRINT last.
    /// - Returns: The encoded message.
    /// - Throws: ``STUNEncodingError/bufferTooSmall`` when the message would pass the 16-bit length
    ///   field, ``STUNEncodingError/valueTooLong(_:)`` for a SHA-256 integrity length other than
    ///   16–32 bytes in steps of 4.
    public func encoded(key: [UInt8]? = nil, integrity: [STUNIntegrityAlgorithm] = [], fingerprint: Bool = false)
        throws(STUNEncodingError) -> [UInt8]
    {
        var out = [UInt8](repeating: 0, count: 65_556)
        let k = key ?? []
        let result = out.withUnsafeMutableBytes { buf in
            k.withUnsafeBytes { kb in
                Result { () throws(STUNEncodingError) -> Int in
                    var w = try STUNMessageWriter(into: buf, type: type, transactionID: transactionID)
                    for a in attributes { try w.append(a) }
                    for algorithm in integrity {
                        switch algorithm {
                        case .sha1: try w.appendMessageIntegrity(key: kb)
                        case .sha256(let length): try w.appendMessageIntegritySHA256(key: kb, length: length)
                        }
                    }
                    if fingerprint { try w.appendFingerprint() }
                    return w.count
                }
            }
        }
        return Array(out[0..<(try result.get())])
    }

    /// Parses and validates one message.
    ///
    /// - Throws: ``STUNParseError``, as ``STUNMessageView/init(validating:)`` does.
    public init(parsing bytes: [UInt8]) throws(STUNParseError) {
        let parsed = bytes.withUnsafeBytes { b in
            Result { () throws(STUNParseError) -> STUNMessage in STUNMessage(try STUNMessageView(validating: b)) }
        }
        self = try parsed.get()
    }

    /// Copies a view into an owned message, including the integrity and FINGERPRINT attributes
    /// (but not attributes the RFC says to ignore after them).
    public init(_ view: STUNMessageView) {
        var attrs: [STUNAttribute] = []
        view.forEachAttribute { t, v in
            attrs.append(STUNAttribute(type: t, value: v, transactionID: view.transactionID))
            return true
        }
        for offset in [view.integrityOffset, view.integritySHA256Offset, view.fingerprintOffset].compactMap({ $0 }) {
            let t = STUNAttributeType(view.bytes.be16(offset))
            let n = Int(view.bytes.be16(offset + 2))
            let v = UnsafeRawBufferPointer(rebasing: view.bytes[(offset + 4)..<(offset + 4 + n)])
            attrs.append(STUNAttribute(type: t, value: v, transactionID: view.transactionID))
        }
        self.init(type: view.type, transactionID: view.transactionID, attributes: attrs)
    }
}

extension STUNAttribute {
    /// Decodes a value whose length was already validated by `STUNMessageView`.
    ///
    /// A value this codec cannot decode (an address of an unknown family, text that is not UTF-8, an
    /// error number above 99) becomes ``STUNAttribute/other(type:value:)``.
    public init(type t: STUNAttributeType, value v: UnsafeRawBufferPointer, transactionID: STUNTransactionID) {
        func family(_ b: UInt8) -> AddressFamily? { AddressFamily(rawValue: b) }
        let bytes = Array(v)
        switch t {
        case .mappedAddress, .alternateServer, .responseOrigin, .otherAddress:
            guard let a = AddressCoding.decodePlain(v) else { self = .other(type: t.rawValue, value: bytes); return }
            switch t {
            case .mappedAddress: self = .mappedAddress(a)
            case .alternateServer: self = .alternateServer(a)
            case .responseOrigin: self = .responseOrigin(a)
            default: self = .otherAddress(a)
            }
        case .xorMappedAddress, .xorPeerAddress, .xorRelayedAddress:
            guard let a = AddressCoding.decodeXOR(v, transactionID: transactionID) else {
                self = .other(type: t.rawValue, value: bytes)
                return
            }
            switch t {
            case .xorMappedAddress: self = .xorMappedAddress(a)
            case .xorPeerAddress: self = .xorPeerAddress(a)
            default: self = .xorRelayedAddress(a)
            }
        case .username, .realm, .nonce, .software, .alternateDomain:
            // Text that is not UTF-8 is kept as bytes: a repaired String would encode to other
            // bytes (each bad byte becomes 3), possibly past the attribute's length limit.
            guard let s = String(validating: v, as: UTF8.self) else {
                self = .other(type: t.rawValue, value: bytes)
                return
            }
            switch t {
            case .username: self = .username(s)
            case .realm: self = .realm(s)
            case .nonce: self = .nonce(s)
            case .software: self = .software(s)
            default: self = .alternateDomain(s)
            }
        case .userhash: self = .userhash(bytes)
        case .messageIntegrity: self = .messageIntegrity(bytes)
        case .messageIntegritySHA256: self = .messageIntegritySHA256(bytes)
        case .fingerprint: self = .fingerprint(v.be32(0))
        case .errorCode, .addressErrorCode:
            // A Number above 99 (RFC 8489 §14.8 allows 0–99) has no code the writer could encode
            // back, and a reason that is not UTF-8 is kept as bytes like other text.
            let family = t == .addressErrorCode ? family(v[0]) : .ipv4
            guard let family, v[3] < 100,
                let reason = String(validating: UnsafeRawBufferPointer(rebasing: v[4...]), as: UTF8.self)
            else {
                self = .other(type: t.rawValue, value: bytes)
                return
            }
            let code = Int(v[2] & 7) * 100 + Int(v[3])
            self =
                t == .errorCode
                ? .errorCode(code: code, reason: reason) : .addressErrorCode(family: family, code: code, reason: reason)
        case .unknownAttributes:
            self = .unknownAttributes(stride(from: 0, to: v.count, by: 2).map { v.be16($0) })
        case .passwordAlgorithms:
            var list: [PasswordAlgorithm] = []
            var i = 0
            while i + 4 <= v.count {
                let n = Int(v.be16(i + 2))
                guard i + 4 + n <= v.count else { break }
                list.append(PasswordAlgorithm(number: v.be16(i), parameters: Array(v[(i + 4)..<(i + 4 + n)])))
                i += 4 + ((n + 3) & ~3)
            }
            self = .passwordAlgorithms(list)
        case .passwordAlgorithm:
            let n = min(Int(v.be16(2)), v.count - 4)
            self = .passwordAlgorithm(PasswordAlgorithm(number: v.be16(0), parameters: Array(v[4..<(4 + n)])))
        case .channelNumber: self = .channelNumber(v.be16(0))
        case .lifetime: self = .lifetime(v.be32(0))
        case .data: self = .data(bytes)
        case .requestedAddressFamily, .additionalAddressFamily:
            guard let f = family(v[0]) else { self = .other(type: t.rawValue, value: bytes); return }
            self = t == .requestedAddressFamily ? .requestedAddressFamily(f) : .additionalAddressFamily(f)
        case .evenPort: self = .evenPort(reserve: v[0] & 0x80 != 0)
        case .requestedTransport: self = .requestedTransport(v[0])
        case .dontFragment: self = .dontFragment
        case .reservationToken: self = .reservationToken(v.be64(0))
        case .icmp: self = .icmp(type: v[2], code: v[3], data: v.be32(4))
        case .connectionID: self = .connectionID(v.be32(0))
        case .changeRequest: self = .changeRequest(v.be32(0))
        case .responsePort: self = .responsePort(v.be16(0))
        case .padding: self = .padding(bytes)
        case .mobilityTicket: self = .mobilityTicket(bytes)
        case .priority: self = .priority(v.be32(0))
        case .useCandidate: self = .useCandidate
        case .iceControlled: self = .iceControlled(v.be64(0))
        case .iceControlling: self = .iceControlling(v.be64(0))
        default: self = .other(type: t.rawValue, value: bytes)
        }
    }
}

extension STUNMessageWriter {
    /// Appends an owned attribute as it is (integrity values are copied, not recomputed).
    ///
    /// - Throws: ``STUNEncodingError`` when the writer's buffer is too small.
    public mutating func append(_ a: STUNAttribute) throws(STUNEncodingError) {
        switch a {
        case .mappedAddress(let x), .xorMappedAddress(let x), .xorPeerAddress(let x), .xorRelayedAddress(let x),
            .alternateServer(let x), .responseOrigin(let x), .otherAddress(let x):
            try append(a.type, address: x)
        case .username(let s), .realm(let s), .nonce(let s), .software(let s), .alternateDomain(let s):
            try append(a.type, string: s)
        case .userhash(let b), .messageIntegrity(let b), .messageIntegritySHA256(let b), .data(let b),
            .padding(let b), .mobilityTicket(let b), .other(_, let b):
            var copy = b
            try copy.withUnsafeMutableBufferPointer {
                (r: inout UnsafeMutableBufferPointer<UInt8>) throws(STUNEncodingError) in
                try append(a.type, bytes: UnsafeRawBufferPointer(r))
            }
        case .fingerprint(let v), .lifetime(let v), .connectionID(let v), .changeRequest(let v), .priority(let v):
            try append(a.type, uint32: v)
        case .errorCode(let code, let reason):
            try appendErrorCode(code, reason: reason)
        case .addressErrorCode(let family, let code, let reason):
            try appendAddressErrorCode(family: family, code, reason: reason)
        case .unknownAttributes(let list):
            try append(a.type, length: list.count * 2) { v in
                for (i, t) in list.enumerated() { v.storeBytes(of: t.bigEndian, toByteOffset: i * 2, as: UInt16.self) }
            }
        case .passwordAlgorithms(let list):
            let length = list.reduce(0) { $0 + 4 + (($1.parameters.count + 3) & ~3) }
            try append(a.type, length: length) { v in
                var i = 0
                for alg in list {
                    v.storeBytes(of: alg.number.bigEndian, toByteOffset: i, as: UInt16.self)
                    v.storeBytes(of: UInt16(alg.parameters.count).bigEndian, toByteOffset: i + 2, as: UInt16.self)
                    let padded = (alg.parameters.count + 3) & ~3
                    for j in 0..<padded { v[i + 4 + j] = j < alg.parameters.count ? alg.parameters[j] : 0 }
                    i += 4 + padded
                }
            }
        case .passwordAlgorithm(let alg):
            try append(a.type, length: 4 + alg.parameters.count) { v in
                v.storeBytes(of: alg.number.bigEndian, as: UInt16.self)
                v.storeBytes(of: UInt16(alg.parameters.count).bigEndian, toByteOffset: 2, as: UInt16.self)
                for (j, b) in alg.parameters.enumerated() { v[4 + j] = b }
            }
        case .channelNumber(let c):
            try append(a.type, uint32: UInt32(c) << 16)
        case .requestedAddressFamily(let f), .additionalAddressFamily(let f):
            try append(a.type, uint32: UInt32(f.rawValue) << 24)
        case .evenPort(let reserve):
            try append(a.type, length: 1) { $0[0] = reserve ? 0x80 : 0 }
        case .requestedTransport(let p):
            try append(a.type, uint32: UInt32(p) << 24)
        case .dontFragment, .useCandidate:
            try append(a.type, length: 0) { _ in }
        case .reservationToken(let v), .iceControlled(let v), .iceControlling(let v):
            try append(a.type, uint64: v)
        case .icmp(let type, let code, let data):
            try append(a.type, length: 8) { v in
                v.storeBytes(of: UInt16(0), as: UInt16.self)
                v[2] = type
                v[3] = code
                v.storeBytes(of: data.bigEndian, toByteOffset: 4, as: UInt32.self)
            }
        case .responsePort(let p):
            try append(a.type, uint32: UInt32(p) << 16)
        }
    }
}

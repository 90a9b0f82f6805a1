/// The STUN magic cookie (RFC 8489 §5), present in every message of an RFC 5389+ client.
public let stunMagicCookie: UInt32 = 0x2112_A442

/// The size of the fixed STUN header in bytes: type, length, magic cookie and transaction ID.
public let stunHeaderSize = 20

/// The class of a STUN message (RFC 8489 §5).
public enum STUNMessageClass: UInt16, Sendable, Hashable {
    /// A request, answered by a success or an error response.
    case request = 0b00
    /// An indication: no answer is sent.
    case indication = 0b01
    /// A success response.
    case successResponse = 0b10
    /// An error response, carrying ERROR-CODE.
    case errorResponse = 0b11
}

/// A STUN method number (RFC 8489, RFC 8656, RFC 6062).
public struct STUNMethod: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The 12-bit method number.
    public var rawValue: UInt16
    /// Makes a method from its number; bits above the low 12 are dropped.
    @inlinable public init(rawValue: UInt16) { self.rawValue = rawValue & 0x0FFF }

    /// Binding, 0x001 (RFC 8489).
    public static let binding = STUNMethod(rawValue: 0x001)
    /// Allocate, 0x003 (RFC 8656).
    public static let allocate = STUNMethod(rawValue: 0x003)
    /// Refresh, 0x004 (RFC 8656).
    public static let refresh = STUNMethod(rawValue: 0x004)
    /// Send, 0x006 (RFC 8656): an indication carrying data to a peer.
    public static let send = STUNMethod(rawValue: 0x006)
    /// Data, 0x007 (RFC 8656): an indication carrying data from a peer.
    public static let data = STUNMethod(rawValue: 0x007)
    /// CreatePermission, 0x008 (RFC 8656).
    public static let createPermission = STUNMethod(rawValue: 0x008)
    /// ChannelBind, 0x009 (RFC 8656).
    public static let channelBind = STUNMethod(rawValue: 0x009)
    /// Connect, 0x00A (RFC 6062).
    public static let connect = STUNMethod(rawValue: 0x00A)
    /// ConnectionBind, 0x00B (RFC 6062).
    public static let connectionBind = STUNMethod(rawValue: 0x00B)
    /// ConnectionAttempt, 0x00C (RFC 6062): an indication of a peer's incoming TCP connection.
    public static let connectionAttempt = STUNMethod(rawValue: 0x00C)

    /// The method's name, such as `Allocate`, or `Method(0x…)` for a number without one.
    public var description: String {
        switch self {
        case .binding: "Binding"
        case .allocate: "Allocate"
        case .refresh: "Refresh"
        case .send: "Send"
        case .data: "Data"
        case .createPermission: "CreatePermission"
        case .channelBind: "ChannelBind"
        case .connect: "Connect"
        case .connectionBind: "ConnectionBind"
        case .connectionAttempt: "ConnectionAttempt"
        default: "Method(0x\(String(rawValue, radix: 16)))"
        }
    }
}

/// The 14-bit STUN message type: a method and a class interleaved (RFC 8489 §5).
public struct STUNMessageType: Hashable, Sendable, CustomStringConvertible {
    /// The method.
    public var method: STUNMethod
    /// The class.
    public var messageClass: STUNMessageClass

    /// Makes a type from a method and a class.
    @inlinable public init(method: STUNMethod, class messageClass: STUNMessageClass) {
        self.method = method
        self.messageClass = messageClass
    }

    /// Decodes the wire value; the two most significant bits must already be known to be zero.
    @inlinable public init(wireValue v: UInt16) {
        let m = (v & 0x000F) | ((v & 0x00E0) >> 1) | ((v & 0x3E00) >> 2)
        let c = ((v & 0x0010) >> 4) | ((v & 0x0100) >> 7)
        self.method = STUNMethod(rawValue: m)
        self.messageClass = STUNMessageClass(rawValue: c)!
    }

    /// The wire value.
    @inlinable public var wireValue: UInt16 {
        let m = method.rawValue
        let c = messageClass.rawValue
        return (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 0x1) << 4) | ((c & 0x2) << 7)
    }

    /// The success response type for a request of this method.
    @inlinable public var successResponse: STUNMessageType { .init(method: method, class: .successResponse) }
    /// The error response type for a request of this method.
    @inlinable public var errorResponse: STUNMessageType { .init(method: method, class: .errorResponse) }

    /// A Binding request.
    public static let bindingRequest = STUNMessageType(method: .binding, class: .request)
    /// A Binding success response.
    public static let bindingSuccess = STUNMessageType(method: .binding, class: .successResponse)

    /// The method and class in words, such as `Allocate error response`.
    public var description: String {
        switch messageClass {
        case .request: "\(method) request"
        case .indication: "\(method) indication"
        case .successResponse: "\(method) success response"
        case .errorResponse: "\(method) error response"
        }
    }
}

/// The 96-bit transaction ID (RFC 8489 §5), held by value.
public struct STUNTransactionID: Hashable, Sendable, CustomStringConvertible {
    /// The first 8 bytes, big-endian.
    public var high: UInt64
    /// The last 4 bytes, big-endian.
    public var low: UInt32

    /// Makes an ID from its first 8 and last 4 bytes, each read big-endian.
    @inlinable public init(high: UInt64, low: UInt32) {
        self.high = high
        self.low = low
    }

    /// Builds an ID from exactly 12 bytes.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 12 else { return nil }
        let b = Array(bytes)
        high = b[0..<8].reduce(0) { $0 << 8 | UInt64($1) }
        low = b[8..<12].reduce(0) { $0 << 8 | UInt32($1) }
    }

    /// A fresh random transaction ID.
    public static func random() -> STUNTransactionID {
        var g = SystemRandomNumberGenerator()
        return STUNTransactionID(high: g.next(), low: g.next())
    }

    /// The 12 bytes in wire order.
    public var bytes: [UInt8] {
        withUnsafeBytes(of: high.bigEndian) { Array($0) } + withUnsafeBytes(of: low.bigEndian) { Array($0) }
    }

    /// The 24 hexadecimal digits of the 12 bytes.
    public var description: String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}

/// STUN attribute type numbers (RFC 8489 §18.3, RFC 8656 §18, RFC 6062, RFC 5780, RFC 8016, RFC 8445).
public struct STUNAttributeType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The 16-bit attribute type.
    public var rawValue: UInt16
    /// Makes a type from its number.
    @inlinable public init(rawValue: UInt16) { self.rawValue = rawValue }
    /// Makes a type from its number.
    @inlinable public init(_ rawValue: UInt16) { self.rawValue = rawValue }

    /// Types below 0x8000 must be understood by the receiver (RFC 8489 §14).
    @inlinable public var isComprehensionRequired: Bool { rawValue < 0x8000 }

    // RFC 8489
    /// MAPPED-ADDRESS, 0x0001.
    public static let mappedAddress = Self(0x0001)
    /// USERNAME, 0x0006.
    public static let username = Self(0x0006)
    /// MESSAGE-INTEGRITY, 0x0008.
    public static let messageIntegrity = Self(0x0008)
    /// ERROR-CODE, 0x0009.
    public static let errorCode = Self(0x0009)
    /// UNKNOWN-ATTRIBUTES, 0x000A.
    public static let unknownAttributes = Self(0x000A)
    /// REALM, 0x0014.
    public static let realm = Self(0x0014)
    /// NONCE, 0x0015.
    public static let nonce = Self(0x0015)
    /// MESSAGE-INTEGRITY-SHA256, 0x001C.
    public static let messageIntegritySHA256 = Self(0x001C)
    /// PASSWORD-ALGORITHM, 0x001D.
    public static let passwordAlgorithm = Self(0x001D)
    /// USERHASH, 0x001E.
    public static let userhash = Self(0x001E)
    /// XOR-MAPPED-ADDRESS, 0x0020.
    public static let xorMappedAddress = Self(0x0020)
    /// PASSWORD-ALGORITHMS, 0x8002.
    public static let passwordAlgorithms = Self(0x8002)
    /// ALTERNATE-DOMAIN, 0x8003.
    public static let alternateDomain = Self(0x8003)
    /// SOFTWARE, 0x8022.
    public static let software = Self(0x8022)
    /// ALTERNATE-SERVER, 0x8023.
    public static let alternateServer = Self(0x8023)
    /// FINGERPRINT, 0x8028.
    public static let fingerprint = Self(0x8028)
    // RFC 8656
    /// CHANNEL-NUMBER, 0x000C.
    public static let channelNumber = Self(0x000C)
    /// LIFETIME, 0x000D.
    public static let lifetime = Self(0x000D)
    /// XOR-PEER-ADDRESS, 0x0012.
    public static let xorPeerAddress = Self(0x0012)
    /// DATA, 0x0013.
    public static let data = Self(0x0013)
    /// XOR-RELAYED-ADDRESS, 0x0016.
    public static let xorRelayedAddress = Self(0x0016)
    /// REQUESTED-ADDRESS-FAMILY, 0x0017.
    public static let requestedAddressFamily = Self(0x0017)
    /// EVEN-PORT, 0x0018.
    public static let evenPort = Self(0x0018)
    /// REQUESTED-TRANSPORT, 0x0019.
    public static let requestedTransport = Self(0x0019)
    /// DONT-FRAGMENT, 0x001A.
    public static let dontFragment = Self(0x001A)
    /// RESERVATION-TOKEN, 0x0022.
    public static let reservationToken = Self(0x0022)
    /// ADDITIONAL-ADDRESS-FAMILY, 0x8000.
    public static let additionalAddressFamily = Self(0x8000)
    /// ADDRESS-ERROR-CODE, 0x8001.
    public static let addressErrorCode = Self(0x8001)
    /// ICMP, 0x8004.
    public static let icmp = Self(0x8004)
    // RFC 6062
    /// CONNECTION-ID, 0x002A.
    public static let connectionID = Self(0x002A)
    // RFC 5780
    /// CHANGE-REQUEST, 0x0003.
    public static let changeRequest = Self(0x0003)
    /// PADDING, 0x0026.
    public static let padding = Self(0x0026)
    /// RESPONSE-PORT, 0x0027.
    public static let responsePort = Self(0x0027)
    /// RESPONSE-ORIGIN, 0x802B.
    public static let responseOrigin = Self(0x802B)
    /// OTHER-ADDRESS, 0x802C.
    public static let otherAddress = Self(0x802C)
    // RFC 8016
    /// MOBILITY-TICKET, 0x8030.
    public static let mobilityTicket = Self(0x8030)
    // RFC 8445 (ICE); understood so that a Binding request carrying them is not answered 420.
    /// PRIORITY, 0x0024.
    public static let priority = Self(0x0024)
    /// USE-CANDIDATE, 0x0025.
    public static let useCandidate = Self(0x0025)
    /// ICE-CONTROLLED, 0x8029.
    public static let iceControlled = Self(0x8029)
    /// ICE-CONTROLLING, 0x802A.
    public static let iceControlling = Self(0x802A)

    /// Whether this codec knows the attribute's layout (and so never reports it as unknown).
    public var isKnown: Bool { STUNAttributeType.valueLengthRule(self) != nil }

    /// The RFC name, such as `XOR-PEER-ADDRESS`, or `0x…` for a type without one.
    public var description: String {
        switch self {
        case .mappedAddress: "MAPPED-ADDRESS"
        case .username: "USERNAME"
        case .messageIntegrity: "MESSAGE-INTEGRITY"
        case .errorCode: "ERROR-CODE"
        case .unknownAttributes: "UNKNOWN-ATTRIBUTES"
        case .realm: "REALM"
        case .nonce: "NONCE"
        case .messageIntegritySHA256: "MESSAGE-INTEGRITY-SHA256"
        case .passwordAlgorithm: "PASSWORD-ALGORITHM"
        case .userhash: "USERHASH"
        case .xorMappedAddress: "XOR-MAPPED-ADDRESS"
        case .passwordAlgorithms: "PASSWORD-ALGORITHMS"
        case .alternateDomain: "ALTERNATE-DOMAIN"
        case .software: "SOFTWARE"
        case .alternateServer: "ALTERNATE-SERVER"
        case .fingerprint: "FINGERPRINT"
        case .channelNumber: "CHANNEL-NUMBER"
        case .lifetime: "LIFETIME"
        case .xorPeerAddress: "XOR-PEER-ADDRESS"
        case .data: "DATA"
        case .xorRelayedAddress: "XOR-RELAYED-ADDRESS"
        case .requestedAddressFamily: "REQUESTED-ADDRESS-FAMILY"
        case .evenPort: "EVEN-PORT"
        case .requestedTransport: "REQUESTED-TRANSPORT"
        case .dontFragment: "DONT-FRAGMENT"
        case .reservationToken: "RESERVATION-TOKEN"
        case .additionalAddressFamily: "ADDITIONAL-ADDRESS-FAMILY"
        case .addressErrorCode: "ADDRESS-ERROR-CODE"
        case .icmp: "ICMP"
        case .connectionID: "CONNECTION-ID"
        case .changeRequest: "CHANGE-REQUEST"
        case .padding: "PADDING"
        case .responsePort: "RESPONSE-PORT"
        case .responseOrigin: "RESPONSE-ORIGIN"
        case .otherAddress: "OTHER-ADDRESS"
        case .mobilityTicket: "MOBILITY-TICKET"
        case .priority: "PRIORITY"
        case .useCandidate: "USE-CANDIDATE"
        case .iceControlled: "ICE-CONTROLLED"
        case .iceControlling: "ICE-CONTROLLING"
        default: "0x" + String(rawValue, radix: 16)
        }
    }

    /// How long a value of this type may be, per its RFC; nil for types this codec does not know.
    enum LengthRule {
        case exactly(Int)
        case oneOf(Int, Int)
        case range(ClosedRange<Int>)
        case multipleOf4(ClosedRange<Int>)
        case evenCount
    }

    static func valueLengthRule(_ t: STUNAttributeType) -> LengthRule? {
        switch t {
        case .mappedAddress, .xorMappedAddress, .xorPeerAddress, .xorRelayedAddress, .alternateServer,
            .responseOrigin, .otherAddress:
            return .oneOf(8, 20)
        case .username: return .range(0...STUNLimits.maxUsernameBytes)
        case .userhash: return .exactly(32)
        case .messageIntegrity: return .exactly(20)
        case .messageIntegritySHA256: return .multipleOf4(16...32)
        case .fingerprint: return .exactly(4)
        case .errorCode: return .range(4...(4 + STUNLimits.maxPhraseBytes))
        case .unknownAttributes: return .evenCount
        case .realm, .nonce, .software: return .range(0...STUNLimits.maxPhraseBytes)
        case .passwordAlgorithm: return .range(4...(4 + 0xFFFF))
        case .passwordAlgorithms: return .range(0...0xFFFF)
        case .alternateDomain: return .range(1...255)
        case .channelNumber, .lifetime, .requestedAddressFamily, .requestedTransport, .additionalAddressFamily,
            .connectionID, .changeRequest, .responsePort, .priority:
            return .exactly(4)
        case .data, .padding, .mobilityTicket: return .range(0...0xFFFF)
        case .evenPort: return .exactly(1)
        case .dontFragment, .useCandidate: return .exactly(0)
        case .reservationToken, .icmp, .iceControlled, .iceControlling: return .exactly(8)
        case .addressErrorCode: return .range(4...(4 + STUNLimits.maxPhraseBytes))
        default: return nil
        }
    }
}

/// Length limits from RFC 8489 §14.
public enum STUNLimits {
    /// USERNAME: fewer than 509 bytes after OpaqueString processing (RFC 8489 §14.3).
    public static let maxUsernameBytes = 508
    /// REALM, NONCE, SOFTWARE and reason phrases: fewer than 128 characters, at most 763 bytes.
    public static let maxPhraseBytes = 763
    /// Fewer than 128 characters.
    public static let maxPhraseCharacters = 127
}

/// Why a datagram or stream frame is not a valid STUN message. Every case names one rule of
/// RFC 8489 so that the server can count drops by reason.
public enum STUNParseError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Shorter than the 20-byte header.
    case truncatedHeader
    /// The two most significant bits are not zero: not STUN (may be ChannelData).
    case notSTUN
    /// The magic cookie is missing where RFC 5389+ is required.
    case badMagicCookie
    /// The length field is not a multiple of 4.
    case lengthNotMultipleOfFour
    /// The length field does not match the datagram's size.
    case lengthMismatch
    /// An attribute header or value (with its padding) runs past the end of the message.
    case attributeOverrun(STUNAttributeType)
    /// An attribute's value length is not what its RFC allows.
    case invalidAttributeLength(STUNAttributeType)
    /// An address attribute carries a family other than IPv4 (1) or IPv6 (2), or a length that
    /// does not match its family.
    case invalidAddressFamily(STUNAttributeType)
    /// FINGERPRINT is not the last attribute.
    case fingerprintNotLast
    /// FINGERPRINT does not match the message's CRC-32.
    case badFingerprint

    /// A short label for metrics.
    public var reason: String {
        switch self {
        case .truncatedHeader: "truncated_header"
        case .notSTUN: "not_stun"
        case .badMagicCookie: "bad_magic_cookie"
        case .lengthNotMultipleOfFour: "length_not_multiple_of_4"
        case .lengthMismatch: "length_mismatch"
        case .attributeOverrun: "attribute_overrun"
        case .invalidAttributeLength: "invalid_attribute_length"
        case .invalidAddressFamily: "invalid_address_family"
        case .fingerprintNotLast: "fingerprint_not_last"
        case .badFingerprint: "bad_fingerprint"
        }
    }

    /// One sentence saying which rule the message breaks.
    public var description: String {
        switch self {
        case .truncatedHeader: "message shorter than the 20-byte STUN header"
        case .notSTUN: "the first two bits are not zero"
        case .badMagicCookie: "the magic cookie is not 0x2112A442"
        case .lengthNotMultipleOfFour: "the length field is not a multiple of 4"
        case .lengthMismatch: "the length field does not match the message size"
        case .attributeOverrun(let t): "attribute \(t) runs past the end of the message"
        case .invalidAttributeLength(let t): "attribute \(t) has a length its RFC does not allow"
        case .invalidAddressFamily(let t): "attribute \(t) has an unknown address family"
        case .fingerprintNotLast: "FINGERPRINT is not the last attribute"
        case .badFingerprint: "FINGERPRINT does not match the message"
        }
    }
}

/// Why a message could not be written.
public enum STUNEncodingError: Error, Hashable, Sendable {
    /// The output buffer is too small for what was appended.
    case bufferTooSmall
    /// A value is longer than its attribute allows.
    case valueTooLong(STUNAttributeType)
}

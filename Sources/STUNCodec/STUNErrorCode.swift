// The ERROR-CODE values Traverse answers with (RFC 8489 §14.8, RFC 8656 §18, RFC 6062 §6.3),
// as one type instead of bare integers.
//
// Invariant: a value is a class-and-number in 300...699, the range ERROR-CODE can carry.

/// A STUN error code: the class (hundreds) and number of an ERROR-CODE attribute.
///
/// Integer literals convert, so `(400, "Bad Request")` reads as it does in the RFCs; the named
/// constants cover every code Traverse sends.
public struct STUNErrorCode: RawRepresentable, Hashable, Sendable, ExpressibleByIntegerLiteral,
    CustomStringConvertible
{
    /// The code as written in the RFCs (e.g. 401).
    public let rawValue: Int

    /// A code from its number; codes outside 300...699 cannot be encoded and are refused.
    public init?(rawValue: Int) {
        guard (300...699).contains(rawValue) else { return nil }
        self.rawValue = rawValue
    }

    /// A code from a literal in 300...699 (a literal outside it is a programming error).
    public init(integerLiteral value: Int) {
        precondition((300...699).contains(value), "STUN error code \(value) out of range")
        rawValue = value
    }

    /// The code as decimal digits (e.g. "401").
    public var description: String { String(rawValue) }

    /// 300 Try Alternate (RFC 8489).
    public static let tryAlternate: Self = 300
    /// 400 Bad Request (RFC 8489).
    public static let badRequest: Self = 400
    /// 401 Unauthenticated (RFC 8489).
    public static let unauthenticated: Self = 401
    /// 403 Forbidden (RFC 8656).
    public static let forbidden: Self = 403
    /// 420 Unknown Attribute (RFC 8489).
    public static let unknownAttribute: Self = 420
    /// 437 Allocation Mismatch (RFC 8656).
    public static let allocationMismatch: Self = 437
    /// 438 Stale Nonce (RFC 8489).
    public static let staleNonce: Self = 438
    /// 440 Address Family not Supported (RFC 8656).
    public static let addressFamilyNotSupported: Self = 440
    /// 441 Wrong Credentials (RFC 8656).
    public static let wrongCredentials: Self = 441
    /// 442 Unsupported Transport Protocol (RFC 8656).
    public static let unsupportedTransport: Self = 442
    /// 443 Peer Address Family Mismatch (RFC 8656).
    public static let peerAddressFamilyMismatch: Self = 443
    /// 446 Connection Already Exists (RFC 6062).
    public static let connectionAlreadyExists: Self = 446
    /// 447 Connection Timeout or Failure (RFC 6062).
    public static let connectionTimeoutOrFailure: Self = 447
    /// 486 Allocation Quota Reached (RFC 8656).
    public static let allocationQuotaReached: Self = 486
    /// 500 Server Error (RFC 8489).
    public static let serverError: Self = 500
    /// 508 Insufficient Capacity (RFC 8656).
    public static let insufficientCapacity: Self = 508
}

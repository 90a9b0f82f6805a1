public import STUNCodec

/// The RFC 8489 security features a nonce cookie advertises (§9.2, bit order per erratum 6290:
/// bit 0 is the least significant).
public struct SecurityFeatures: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue & 0xFF_FFFF }

    /// The server offers PASSWORD-ALGORITHMS (and so protects against bid-down).
    public static let passwordAlgorithms = SecurityFeatures(rawValue: 1)
    /// The server accepts USERHASH in place of USERNAME.
    public static let usernameAnonymity = SecurityFeatures(rawValue: 2)
}

/// Stateless nonces: nothing is stored for a client that has not authenticated.
///
/// A nonce is `obMatJos2` + base64(features) + an 8-digit hex timestamp + an 8-digit hex random
/// salt + base64 of a truncated HMAC-SHA256 over (cookie, timestamp, salt, client IP) under a
/// per-process secret. It proves itself when it comes back, expires after `lifetime` seconds and
/// is useless from another client IP. The salt makes every nonce issued distinct (RFC 8489
/// §9.2.4: no two requests from different addresses get the same nonce); the port is left out
/// so that one client's TCP data connections (RFC 6062 ConnectionBind) can reuse its nonce.
public struct NonceIssuer: Sendable {
    /// The RFC 8489 nonce cookie prefix.
    public static let cookiePrefix = "obMatJos2"
    let secret: [UInt8]
    /// Seconds a nonce stays fresh.
    public var lifetime: UInt64
    /// Features advertised in every nonce.
    public var features: SecurityFeatures

    public init(secret: [UInt8] = STUNDigest.randomBytes(32), lifetime: UInt64 = 600, features: SecurityFeatures) {
        self.secret = secret
        self.lifetime = lifetime
        self.features = features
    }

    /// The 13-character cookie for `features`.
    public static func cookie(_ features: SecurityFeatures) -> String {
        let v = features.rawValue
        return cookiePrefix + Base64.encode([UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)])
    }

    /// A fresh nonce for `client` at monotonic second `now`.
    public func issue(for client: TransportAddress, now: UInt64) -> String {
        let head =
            NonceIssuer.cookie(features) + NonceIssuer.hex8(UInt32(truncatingIfNeeded: now))
            + NonceIssuer.hex8(UInt32.random(in: 0...UInt32.max))
        return head + mac(head, client)
    }

    /// What a returned nonce turned out to be.
    public enum Check: Equatable, Sendable {
        /// Ours, for this client, and fresh; carries the features it advertised.
        case valid(SecurityFeatures)
        /// Ours and for this client, but too old: answer 438.
        case stale(SecurityFeatures)
        /// Not one of ours (or for another client): answer 401 with a new one.
        case invalid
    }

    /// Checks a nonce returned by `client` at monotonic second `now`.
    public func check(_ nonce: String, from client: TransportAddress, now: UInt64) -> Check {
        let bytes = Array(nonce.utf8)
        let headLength = 13 + 8 + 8
        guard bytes.count == headLength + 16, nonce.hasPrefix(NonceIssuer.cookiePrefix) else { return .invalid }
        let head = String(decoding: bytes[0..<headLength], as: UTF8.self)
        let given = Array(bytes[headLength...])
        let expected = Array(mac(head, client).utf8)
        let same = given.withUnsafeBytes { g in expected.withUnsafeBytes { e in STUNDigest.constantTimeEqual(g, e) } }
        guard same else { return .invalid }
        guard let featureBytes = Base64.decode(String(decoding: bytes[9..<13], as: UTF8.self)), featureBytes.count == 3,
            let stamp = UInt32(String(decoding: bytes[13..<21], as: UTF8.self), radix: 16)
        else { return .invalid }
        let features = SecurityFeatures(
            rawValue: UInt32(featureBytes[0]) << 16 | UInt32(featureBytes[1]) << 8 | UInt32(featureBytes[2]))
        let age = UInt32(truncatingIfNeeded: now) &- stamp
        return UInt64(age) <= lifetime ? .valid(features) : .stale(features)
    }

    func mac(_ head: String, _ client: TransportAddress) -> String {
        var material = Array(head.utf8)
        material += client.ip.bytes
        return Base64.encode(Array(STUNDigest.hmacSHA256(key: secret, material).prefix(12)))
    }

    static func hex8(_ v: UInt32) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 8 - s.count) + s
    }

    /// Whether a nonce string carries an RFC 8489 cookie, and its features.
    public static func features(of nonce: String) -> SecurityFeatures? {
        let bytes = Array(nonce.utf8)
        guard bytes.count >= 13, nonce.hasPrefix(cookiePrefix),
            let f = Base64.decode(String(decoding: bytes[9..<13], as: UTF8.self)), f.count == 3
        else { return nil }
        return SecurityFeatures(rawValue: UInt32(f[0]) << 16 | UInt32(f[1]) << 8 | UInt32(f[2]))
    }
}

public import STUNCodec

/// The RFC 8489 security features a nonce cookie advertises (§9.2, bit order per erratum 6290:
/// bit 0 is the least significant).
public struct SecurityFeatures: OptionSet, Sendable, Hashable {
    /// The 24 feature bits.
    public let rawValue: UInt32
    /// Makes a feature set; bits above the low 24 are dropped.
    public init(rawValue: UInt32) { self.rawValue = rawValue & 0xFF_FFFF }

    /// The server offers PASSWORD-ALGORITHMS (and so protects against bid-down).
    public static let passwordAlgorithms = SecurityFeatures(rawValue: 1)
    /// The server accepts USERHASH in place of USERNAME.
    public static let usernameAnonymity = SecurityFeatures(rawValue: 2)
}

/// Stateless nonces: nothing is stored for a client that has not authenticated.
///
/// A nonce is 28 characters: the 13-character RFC 8489 cookie (`obMatJos2` + base64 of the
/// security features), then 15 base64 characters (90 bits) holding a 24-bit timestamp (monotonic
/// seconds, modulo 2^24), an 18-bit random salt and a 48-bit MAC: HMAC-SHA256 under a
/// per-process secret over (cookie, timestamp, salt, client IP), truncated. It proves itself when
/// it comes back, expires after `lifetime` seconds and is useless from another client IP.
///
/// Strength: forging a nonce means guessing the 48-bit MAC online, one request per guess, each
/// answered at most at the rate limit (2^47 guesses on average); a nonce only proves freshness
/// and address, never identity (the MESSAGE-INTEGRITY under the user's key does that). The salt
/// makes nonces issued in the same second distinct (RFC 8489 §9.2.4). The port is left out so
/// that one client's TCP data connections (RFC 6062 ConnectionBind) can reuse its nonce. The
/// 24-bit timestamp wraps after 194 days; a nonce that old is still bound to its client IP.
/// The short form keeps the 401 small (reflection: see Docs/security.md §3).
public struct NonceIssuer: Sendable {
    /// The RFC 8489 nonce cookie prefix.
    public static let cookiePrefix = "obMatJos2"
    /// Characters in a nonce: the 13-character cookie and 15 of timestamp, salt and MAC.
    public static let length = 28
    let secret: [UInt8]
    /// Seconds a nonce stays fresh.
    public var lifetime: UInt64
    /// Features advertised in every nonce.
    public var features: SecurityFeatures

    /// Makes an issuer.
    ///
    /// - Parameters:
    ///   - secret: The HMAC key. Every shard of a server must use the same secret so that a nonce
    ///     issued by one shard is valid on another; a new secret invalidates every nonce issued before.
    ///   - lifetime: Seconds a nonce stays fresh (``lifetime``).
    ///   - features: The features to advertise in every nonce.
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

    static let stampBits = 24
    static let saltBits = 18
    static let macBits = 48
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// A fresh nonce for `client` at monotonic second `now`.
    public func issue(for client: TransportAddress, now: UInt64) -> String {
        let cookie = NonceIssuer.cookie(features)
        let stamp = UInt32(truncatingIfNeeded: now) & (1 << Self.stampBits - 1)
        let salt = UInt32.random(in: 0..<(1 << Self.saltBits))
        let value =
            UInt128(stamp) << (Self.saltBits + Self.macBits) | UInt128(salt) << Self.macBits
            | UInt128(mac(cookie, stamp, salt, client))
        var text = Array(cookie.utf8)
        for i in stride(from: 14 * 6, through: 0, by: -6) { text.append(Self.alphabet[Int(value >> i & 63)]) }
        return String(decoding: text, as: UTF8.self)
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
        guard bytes.count == Self.length, nonce.hasPrefix(NonceIssuer.cookiePrefix),
            let features = Self.features(of: nonce)
        else { return .invalid }
        var value: UInt128 = 0
        for c in bytes[13...] {
            guard let digit = Self.digit(c) else { return .invalid }
            value = value << 6 | UInt128(digit)
        }
        let given = UInt64(truncatingIfNeeded: value) & (1 << Self.macBits - 1)
        let salt = UInt32(truncatingIfNeeded: value >> Self.macBits) & (1 << Self.saltBits - 1)
        let stamp = UInt32(truncatingIfNeeded: value >> (Self.macBits + Self.saltBits))
        let cookie = String(decoding: bytes[0..<13], as: UTF8.self)
        let expected = mac(cookie, stamp, salt, client)
        let same = withUnsafeBytes(of: given) { g in
            withUnsafeBytes(of: expected) { e in STUNDigest.constantTimeEqual(g, e) }
        }
        guard same else { return .invalid }
        let now24 = UInt32(truncatingIfNeeded: now) & (1 << Self.stampBits - 1)
        let age = (now24 &- stamp) & (1 << Self.stampBits - 1)
        return UInt64(age) <= lifetime ? .valid(features) : .stale(features)
    }

    /// The 48-bit MAC over the cookie, timestamp, salt and client IP.
    func mac(_ cookie: String, _ stamp: UInt32, _ salt: UInt32, _ client: TransportAddress) -> UInt64 {
        var material = Array(cookie.utf8)
        withUnsafeBytes(of: stamp.bigEndian) { material += $0 }
        withUnsafeBytes(of: salt.bigEndian) { material += $0 }
        material += client.ip.bytes
        let digest = STUNDigest.hmacSHA256(key: secret, material)
        return digest.prefix(6).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }

    static func digit(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): c - UInt8(ascii: "A")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): c - UInt8(ascii: "a") + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0") + 52
        case UInt8(ascii: "+"): 62
        case UInt8(ascii: "/"): 63
        default: nil
        }
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

public import STUNCodec

/// The long-term keys of one user (RFC 8489 §9.2.2). The password itself is never kept
/// (RFC 8656 §6): only MD5(username:realm:password) and SHA-256(username:realm:password).
public struct UserKeys: Sendable, Hashable {
    /// Key for the MD5 password algorithm (and RFC 5389 clients): 16 bytes.
    public var md5: [UInt8]
    /// Key for the SHA-256 password algorithm: 32 bytes, or nil when only an MD5 key was configured.
    public var sha256: [UInt8]?

    /// Keys derived elsewhere (an MD5 key given in hex in the user file): `md5` is 16 bytes,
    /// `sha256` 32 bytes or nil.
    public init(md5: [UInt8], sha256: [UInt8]?) {
        self.md5 = md5
        self.sha256 = sha256
    }

    /// Derives both keys from a password.
    public init(username: String, realm: String, password: String) {
        let material = Array("\(username):\(realm):\(password)".utf8)
        md5 = material.withUnsafeBytes { STUNDigest.md5($0) }
        sha256 = material.withUnsafeBytes { STUNDigest.sha256($0) }
    }

    /// The key for `algorithm`, if this user has one.
    public func key(for algorithm: PasswordAlgorithm) -> [UInt8]? {
        algorithm == .sha256 ? sha256 : md5
    }
}

/// Time-limited credentials from a shared secret (the "TURN REST API" format WebRTC apps and
/// coturn use): username `<unix-expiry><separator><user-id>` (or the expiry alone), password
/// base64(HMAC-SHA1(secret, username)).
public struct RESTCredentials: Sendable, Hashable {
    /// Every secret accepted; several at once let secrets rotate without downtime.
    public var secrets: [[UInt8]]
    /// The character between expiry and user id.
    public var separator: Character

    /// Accepts usernames signed with any of `secrets`; `separator` splits expiry from user id.
    public init(secrets: [[UInt8]], separator: Character = ":") {
        self.secrets = secrets
        self.separator = separator
    }

    /// The password a secret gives for `username`.
    public static func password(secret: [UInt8], username: String) -> String {
        Base64.encode(STUNDigest.hmacSHA1(key: secret, Array(username.utf8)))
    }

    /// The expiry (unix seconds) a REST username carries, or nil if it is not one.
    public func expiry(of username: String) -> Int64? {
        let head = username.split(separator: separator, maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        guard !head.isEmpty, head.utf8.count <= 12, head.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int64(head)
    }
}

/// Everything the server authenticates against; replaced as a whole on reload.
public struct CredentialStore: Sendable {
    /// The realm (RFC 8489 §14.9).
    public var realm: String
    /// Static users and their keys.
    public private(set) var users: [String: UserKeys]
    /// USERHASH → username for static users (RFC 8489 §14.4).
    public private(set) var userhashIndex: [[UInt8]: String]
    /// REST secrets, if configured.
    public var rest: RESTCredentials?

    /// A store of static users whose keys are already derived, and optional REST secrets. Builds the
    /// USERHASH index of the static users.
    public init(realm: String, users: [String: UserKeys] = [:], rest: RESTCredentials? = nil) {
        self.realm = realm
        self.users = users
        self.rest = rest
        var index: [[UInt8]: String] = [:]
        for name in users.keys {
            index[CredentialStore.userhash(username: name, realm: realm)] = name
        }
        self.userhashIndex = index
    }

    /// Builds a store from plain passwords.
    public init(realm: String, passwords: [String: String], rest: RESTCredentials? = nil) {
        var users: [String: UserKeys] = [:]
        for (name, password) in passwords { users[name] = UserKeys(username: name, realm: realm, password: password) }
        self.init(realm: realm, users: users, rest: rest)
    }

    /// Whether any credential is configured at all.
    public var isEmpty: Bool { users.isEmpty && (rest?.secrets.isEmpty ?? true) }

    /// SHA-256(username ":" realm), the USERHASH value.
    public static func userhash(username: String, realm: String) -> [UInt8] {
        Array("\(username):\(realm)".utf8).withUnsafeBytes { STUNDigest.sha256($0) }
    }

    /// The candidate keys for `username` under `algorithm` at unix time `now`: one for a static
    /// user, one per secret for a valid REST username, none otherwise (unknown or expired).
    public func candidateKeys(username: String, algorithm: PasswordAlgorithm, unixNow: Int64) -> [[UInt8]] {
        if let user = users[username] {
            return user.key(for: algorithm).map { [$0] } ?? []
        }
        guard let rest, let expiry = rest.expiry(of: username), expiry >= unixNow else { return [] }
        return rest.secrets.map { secret in
            let password = RESTCredentials.password(secret: secret, username: username)
            let keys = UserKeys(username: username, realm: realm, password: password)
            return keys.key(for: algorithm) ?? keys.md5
        }
    }
}

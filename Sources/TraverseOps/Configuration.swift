public import STUNCodec
public import TURNCore
public import TURNRelay

/// A configuration problem: the key it concerns and why. Printed as one line; the process
/// exits with code 2.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable, Equatable {
    /// Dotted key, e.g. `relay.port_range`.
    public let key: String
    public let reason: String

    public init(key: String, reason: String) {
        self.key = key
        self.reason = reason
    }

    public var description: String { "invalid configuration: \(key): \(reason)" }
}

/// Everything Traverse can be configured with. Defaults are the zero-setup loopback server of
/// `make run`. Every key is documented in Docs/configuration.md.
public struct TraverseConfiguration: Sendable {
    // [server]
    public var listen: [TransportAddress] = [TransportAddress("127.0.0.1:3478")!, TransportAddress("[::1]:3478")!]
    /// TLS listeners; nil means the default: loopback port 5349 when `listen` is the default
    /// too (the zero-setup server), none otherwise.
    public var tlsListen: [TransportAddress]? = nil
    public var shards = 0
    public var udpGSO = true
    public var udpGRO = true
    public var pollLingerMicroseconds = 500
    public var software: String? = nil
    public var stateDirectory = ".traverse"
    // [log]
    public var logLevel = "info"
    public var logFormat = "logfmt"
    public var redactAddresses = true
    // [auth]
    public var realm = "traverse"
    public var users: [String: String] = [:]
    public var usersFile: String? = nil
    public var secrets: [String] = []
    public var restSeparator: Character = ":"
    public var nonceLifetime: UInt64 = 600
    // [relay]
    public var relayAddresses: [IPAddress] = []
    public var externalAddresses: [IPAddress: IPAddress] = [:]
    public var portRange: ClosedRange<UInt16> = 49152...65535
    public var allowPeers: [CIDR] = []
    public var denyPeers: [CIDR] = []
    public var bannedClients: [CIDR] = []
    // [limits]
    public var maxAllocations = 10_000
    public var maxAllocationsPerUser = 10
    public var maxPermissionsPerAllocation = 32
    public var maxChannelsPerAllocation = 32
    public var defaultLifetime: UInt32 = 600
    public var maxLifetime: UInt32 = 3600
    public var bandwidthPerAllocation = 0
    public var unauthenticatedRate = 50
    public var challengeOverflowBytes = 196_608
    public var unauthenticatedReasonPhrases = false
    public var legacyChannelNumbers = false
    public var maxConnections = 10_000
    public var maxConnectionsPerSource = 256
    public var dtls = DTLSLimits()
    public var idleConnectionTimeout: UInt64 = 30
    // [tls]
    public var certificateFile: String? = nil
    public var privateKeyFile: String? = nil
    // [admin]
    public var adminListen: TransportAddress? = TransportAddress("127.0.0.1:9641")
    public var adminToken: String? = nil
    /// Names (or `NAME:PORT`) the admin endpoint answers to besides its bound address, e.g. the
    /// name Prometheus scrapes it by.
    public var adminAllowedHosts: [String] = []
    public var alternateServers: [TransportAddress] = []
    public var alternateDomain: String? = nil
    public var drainTimeout: Int = 60
    /// Relay throughput (bits per second, in plus out) that counts as full load in the load
    /// score; 0 leaves throughput out of the score.
    public var maxBitsPerSecond = 0
    // [fleet] (Configuration+Fleet.swift); no fleet while `fleetRedis` is nil.
    public var fleetRedis: String? = nil
    public var fleetNodeID: String? = nil
    public var fleetSecret: String? = nil
    public var fleetAdvertise: [String] = []
    public var fleetPublishInterval = 1.0
    public var fleetRedirectLoad = 0.8
    public var fleetOnRedisDown = "local"

    public init() {}

    /// The default UDP/TCP listeners.
    public static let defaultListen = [TransportAddress("127.0.0.1:3478")!, TransportAddress("[::1]:3478")!]
    /// The default TLS listeners of the zero-setup server.
    public static let defaultTLSListen = [TransportAddress("127.0.0.1:5349")!, TransportAddress("[::1]:5349")!]

    /// The TLS listeners in force.
    public var effectiveTLSListen: [TransportAddress] {
        tlsListen ?? (listen == Self.defaultListen ? Self.defaultTLSListen : [])
    }

    /// Whether any credential (static user, users file or REST secret) is configured.
    public var hasCredentials: Bool { !users.isEmpty || usersFile != nil || !secrets.isEmpty }

    /// The I/O layer's settings.
    public func relayConfiguration() -> RelayConfiguration {
        var r = RelayConfiguration()
        r.listen = listen
        r.shards = shards
        r.segmentationOffload = udpGSO
        r.receiveOffload = udpGRO
        r.pollLingerMicroseconds = pollLingerMicroseconds
        r.relayAddresses = relayAddresses
        r.portRange = portRange
        r.logFullAddresses = !redactAddresses
        r.tlsListen = effectiveTLSListen
        r.maxConnections = maxConnections
        r.maxConnectionsPerSource = maxConnectionsPerSource
        r.dtls = dtls
        r.idleTimeoutSeconds = idleConnectionTimeout
        return r
    }

    /// The TURN logic's settings.
    public func coreConfiguration() -> CoreConfiguration {
        var c = CoreConfiguration()
        c.software = software
        c.defaultLifetime = defaultLifetime
        c.maxLifetime = maxLifetime
        c.nonceLifetime = nonceLifetime
        c.maxAllocations = maxAllocations
        c.maxAllocationsPerUser = maxAllocationsPerUser
        c.maxPermissionsPerAllocation = maxPermissionsPerAllocation
        c.maxChannelsPerAllocation = maxChannelsPerAllocation
        c.bandwidthPerAllocation = bandwidthPerAllocation
        c.unauthenticatedRatePerSecond = unauthenticatedRate
        c.challengeOverflowBytesPerSecond = challengeOverflowBytes
        c.unauthenticatedReasonPhrases = unauthenticatedReasonPhrases
        c.legacyChannelNumbers = legacyChannelNumbers
        c.externalAddresses = externalAddresses
        c.alternateServers = alternateServers
        c.alternateDomain = alternateDomain
        return c
    }

    /// Credentials and address policy, reading the users file if one is configured.
    public func policy() throws(ConfigurationError) -> CorePolicy {
        var keys: [String: UserKeys] = [:]
        for (name, password) in users { keys[name] = UserKeys(username: name, realm: realm, password: password) }
        if let usersFile {
            for (name, k) in try UsersFile.load(path: usersFile, realm: realm) { keys[name] = k }
        }
        let rest =
            secrets.isEmpty ? nil : RESTCredentials(secrets: secrets.map { Array($0.utf8) }, separator: restSeparator)
        return CorePolicy(
            credentials: CredentialStore(realm: realm, users: keys, rest: rest),
            peers: PeerPolicy(allowed: allowPeers, denied: denyPeers),
            bannedClients: ClientBanList(bannedClients))
    }
}

/// The users file: one `name:password` per line, or `name:0x<32 hex digits>` for a precomputed
/// MD5 key (MD5(name:realm:password)); `#` starts a comment.
public enum UsersFile {
    /// Parses the text of a users file.
    public static func parse(_ text: String, realm: String, path: String = "users_file") throws(ConfigurationError)
        -> [String: UserKeys]
    {
        var out: [String: UserKeys] = [:]
        // Split on every line break: in Swift "\r\n" is one Character, so splitting on "\n" alone
        // would glue the lines of a CRLF file together.
        for (n, raw) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let line = raw.trimmingSpaces()
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex else {
                throw ConfigurationError(key: "\(path):\(n + 1)", reason: "expected name:password")
            }
            let name = String(line[..<colon])
            let secret = String(line[line.index(after: colon)...])
            if secret.hasPrefix("0x") {
                guard let key = Hex.decode(String(secret.dropFirst(2))), key.count == 16 else {
                    throw ConfigurationError(key: "\(path):\(n + 1)", reason: "a 0x key must be 32 hex digits (MD5)")
                }
                out[name] = UserKeys(md5: key, sha256: nil)
            } else {
                out[name] = UserKeys(username: name, realm: realm, password: secret)
            }
        }
        return out
    }

    static func load(path: String, realm: String) throws(ConfigurationError) -> [String: UserKeys] {
        guard let text = FileText.read(path) else {
            throw ConfigurationError(key: "auth.users_file", reason: "cannot read \(path)")
        }
        return try parse(text, realm: realm, path: path)
    }
}

extension Substring {
    func trimmingSpaces() -> Substring {
        var s = self
        while let f = s.first, f == " " || f == "\t" || f == "\r" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" { s = s.dropLast() }
        return s
    }
}

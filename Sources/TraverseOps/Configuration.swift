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
/// `make run`; each is written once, in the key table (`ConfigurationKeys`), which also checks
/// the file's values. Every key is documented in Docs/configuration.md.
public struct TraverseConfiguration: Sendable {
    // [server]
    public var listen: [TransportAddress] = K.listen.defaultValue
    /// TLS listeners; nil means the default: loopback port 5349 when `listen` is the default
    /// too (the zero-setup server), none otherwise.
    public var tlsListen: [TransportAddress]? = K.tlsListen.defaultValue
    public var shards: Int = K.shards.defaultValue
    public var udpGSO: Bool = K.udpGSO.defaultValue
    public var udpGRO: Bool = K.udpGRO.defaultValue
    public var pollLingerMicroseconds: Int = K.pollLinger.defaultValue
    public var fastPath: FastPathMode = K.fastPath.defaultValue
    public var fastPathInterfaces: [String] = K.fastPathInterfaces.defaultValue
    public var fastPathObject: String? = K.fastPathObject.defaultValue
    /// Tests only (`TRAVERSE_TEST_PERMISSION_LIFETIME`): RFC 8656 fixes 300 s.
    public var testPermissionLifetime: UInt32?
    /// Tests only (`TRAVERSE_TEST_CHANNEL_LIFETIME`): RFC 8656 fixes 600 s.
    public var testChannelLifetime: UInt32?
    public var software: String? = K.software.defaultValue
    public var stateDirectory: String = K.stateDirectory.defaultValue
    // [log]
    public var logLevel: String = K.logLevel.defaultValue
    public var logFormat: String = K.logFormat.defaultValue
    public var redactAddresses: Bool = K.redactAddresses.defaultValue
    // [auth]
    public var realm: String = K.realm.defaultValue
    public var users: [String: String] = K.users.defaultValue
    public var usersFile: String? = K.usersFile.defaultValue
    public var secrets: [String] = K.secrets.defaultValue
    public var restSeparator: Character = K.restSeparator.defaultValue
    public var nonceLifetime: UInt64 = K.nonceLifetime.defaultValue
    // [relay]
    public var relayAddresses: [IPAddress] = K.relayAddresses.defaultValue
    public var externalAddresses: [IPAddress: IPAddress] = K.externalAddresses.defaultValue
    public var portRange: ClosedRange<UInt16> = K.portRange.defaultValue
    public var allowPeers: [CIDR] = K.allowPeers.defaultValue
    public var denyPeers: [CIDR] = K.denyPeers.defaultValue
    public var bannedClients: [CIDR] = K.bannedClients.defaultValue
    // [limits]
    public var maxAllocations: Int = K.maxAllocations.defaultValue
    public var maxAllocationsPerUser: Int = K.maxAllocationsPerUser.defaultValue
    public var maxPermissionsPerAllocation: Int = K.maxPermissions.defaultValue
    public var maxChannelsPerAllocation: Int = K.maxChannels.defaultValue
    public var defaultLifetime: UInt32 = K.defaultLifetime.defaultValue
    public var maxLifetime: UInt32 = K.maxLifetime.defaultValue
    public var bandwidthPerAllocation: Int = K.bandwidth.defaultValue
    public var unauthenticatedRate: Int = K.unauthenticatedRate.defaultValue
    public var challengeOverflowBytes: Int = K.challengeOverflow.defaultValue
    public var unauthenticatedReasonPhrases: Bool = K.reasonPhrases.defaultValue
    public var legacyChannelNumbers: Bool = K.legacyChannelNumbers.defaultValue
    public var maxConnections: Int = K.maxConnections.defaultValue
    public var maxConnectionsPerSource: Int = K.maxConnectionsPerSource.defaultValue
    public var dtls: DTLSLimits = K.dtlsDefaults
    public var idleConnectionTimeout: UInt64 = K.idleTimeout.defaultValue
    // [tls]
    public var certificateFile: String? = K.certificate.defaultValue
    public var privateKeyFile: String? = K.privateKey.defaultValue
    // [admin]
    public var adminListen: TransportAddress? = K.adminListen.defaultValue
    public var adminToken: String? = K.adminToken.defaultValue
    /// Names (or `NAME:PORT`) the admin endpoint answers to besides its bound address, e.g. the
    /// name Prometheus scrapes it by.
    public var adminAllowedHosts: [String] = K.allowedHosts.defaultValue
    public var alternateServers: [TransportAddress] = K.alternateServers.defaultValue
    public var alternateDomain: String? = K.alternateDomain.defaultValue
    public var drainTimeout: Int = K.drainTimeout.defaultValue
    /// Relay throughput (bits per second, in plus out) that counts as full load in the load
    /// score; 0 leaves throughput out of the score.
    public var maxBitsPerSecond: Int = K.maxBitsPerSecond.defaultValue
    // [fleet] (Configuration+Fleet.swift); no fleet while `fleetRedis` is nil.
    public var fleetRedis: String? = K.fleetRedis.defaultValue
    public var fleetNodeID: String? = K.fleetNodeID.defaultValue
    public var fleetSecret: String? = K.fleetSecret.defaultValue
    public var fleetAdvertise: [String] = K.fleetAdvertise.defaultValue
    public var fleetPublishInterval: Double = K.fleetPublishInterval.defaultValue
    public var fleetRedirectLoad: Double = K.fleetRedirectLoad.defaultValue
    public var fleetOnRedisDown: String = K.fleetOnRedisDown.defaultValue

    private typealias K = ConfigurationKeys

    public init() {}

    /// The default UDP/TCP listeners.
    public static let defaultListen: [TransportAddress] = K.listen.defaultValue
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
        r.fastPath = fastPath
        r.fastPathInterfaces = fastPathInterfaces
        r.fastPathObject = fastPathObject
        return r
    }

    /// The TURN logic's settings.
    public func coreConfiguration() -> CoreConfiguration {
        var c = CoreConfiguration()
        c.software = software
        if let t = testPermissionLifetime { c.permissionLifetime = t }
        if let t = testChannelLifetime { c.channelLifetime = t }
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

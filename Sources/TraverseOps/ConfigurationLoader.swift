import STUNCodec
import TOMLKit
import TURNCore
import TraverseFleet

/// Reads the TOML configuration file, refusing unknown keys and bad values with an error that
/// names the key.
public enum ConfigurationLoader {
    /// Parses TOML text on top of the defaults.
    public static func parse(_ text: String, base: TraverseConfiguration = .init()) throws(ConfigurationError)
        -> TraverseConfiguration
    {
        let root: TOMLTable
        do {
            root = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigurationError(
                key: "line \(error.source.begin.line)", reason: "TOML syntax error: \(error.description)")
        } catch {
            throw ConfigurationError(key: "(file)", reason: "TOML syntax error")
        }
        var c = base
        for (section, value) in root {
            guard let table = value.tomlValue.table else {
                throw ConfigurationError(key: section, reason: "expected a [\(section)] table")
            }
            for (key, v) in table {
                try apply(section: section, key: key, value: v.tomlValue, to: &c)
            }
        }
        try validate(c)
        return c
    }

    /// Reads and parses a file.
    public static func load(path: String) throws(ConfigurationError) -> TraverseConfiguration {
        guard let text = FileText.read(path) else {
            throw ConfigurationError(key: "--config", reason: "cannot read \(path)")
        }
        return try parse(text)
    }

    /// Applies `section.key = v` through the key table; an unknown key is refused.
    static func apply(section: String, key: String, value v: TOMLValue, to c: inout TraverseConfiguration)
        throws(ConfigurationError)
    {
        let name = "\(section).\(key)"
        guard let row = ConfigurationKeys.byName[name] else {
            throw ConfigurationError(key: name, reason: "unknown key")
        }
        try row.apply(v, to: &c)
    }

    /// Cross-key checks.
    public static func validate(_ c: TraverseConfiguration) throws(ConfigurationError) {
        if c.maxLifetime < c.defaultLifetime {
            throw ConfigurationError(key: "limits.max_lifetime", reason: "must not be below limits.default_lifetime")
        }
        if c.fastPath == .xdp && c.fastPathInterfaces.isEmpty {
            throw ConfigurationError(
                key: "server.fast_path_interfaces", reason: "fast_path = \"xdp\" needs the interfaces to attach to")
        }
        if c.listen.isEmpty && c.effectiveTLSListen.isEmpty {
            throw ConfigurationError(key: "server.listen", reason: "at least one listening address is needed")
        }
        if (c.certificateFile == nil) != (c.privateKeyFile == nil) {
            throw ConfigurationError(key: "tls.certificate", reason: "tls.certificate and tls.private_key go together")
        }
        if let admin = c.adminListen, !isLoopback(admin.ip), c.adminToken == nil {
            throw ConfigurationError(key: "admin.listen", reason: "an address off loopback needs admin.token")
        }
        _ = try c.fleetConfiguration()
        // An address listed twice would be shared by this process with itself (SO_REUSEPORT),
        // and the kernel would split its clients between the two listeners.
        var seen: Set<TransportAddress> = []
        let tls = c.effectiveTLSListen
        let named: [(String, TransportAddress)] =
            c.listen.map { ("server.listen", $0) } + tls.map { ("server.tls_listen", $0) }
            + (c.adminListen.map { [("admin.listen", $0)] } ?? [])
        for (key, address) in named where address.port != 0 {
            guard seen.insert(address).inserted else {
                throw ConfigurationError(
                    key: key, reason: "\(address) is listed twice (listen, tls_listen, admin.listen)")
            }
        }
    }

    static func isLoopback(_ ip: IPAddress) -> Bool {
        CIDR("127.0.0.0/8")!.contains(ip) || ip == .loopbackIPv6
    }

    /// Parses `LOW-HIGH`.
    public static func portRange(_ key: String, _ s: String) throws(ConfigurationError) -> ClosedRange<UInt16> {
        let parts = s.split(separator: "-")
        guard parts.count == 2, let low = UInt16(parts[0]), let high = UInt16(parts[1]), low <= high, low > 0 else {
            throw ConfigurationError(key: key, reason: "expected LOW-HIGH with 0 < LOW <= HIGH <= 65535")
        }
        return low...high
    }
}

/// Settings from command-line flags and `TRAVERSE_*` variables; applied over the file's
/// (flag > environment > file > default).
public struct ConfigurationOverrides: Sendable {
    public var listen: [String] = []
    public var tlsListen: [String] = []
    public var realm: String?
    public var users: [String] = []
    public var secrets: [String] = []
    public var relayAddresses: [String] = []
    public var relayPorts: String?
    public var allowPeers: [String] = []
    public var logLevel: String?
    public var stateDirectory: String?
    public var legacyChannelNumbers: Bool?
    public var maxAllocationsPerUser: Int?
    public var redis: String?
    public var nodeID: String?
    public var fleetSecret: String?
    /// Tests only: a permission lifetime shorter than RFC 8656's fixed 300 s
    /// (`TRAVERSE_TEST_PERMISSION_LIFETIME`, seconds), to watch expiry happen.
    public var testPermissionLifetime: String?
    /// Tests only: a channel lifetime shorter than RFC 8656's fixed 600 s
    /// (`TRAVERSE_TEST_CHANNEL_LIFETIME`, seconds).
    public var testChannelLifetime: String?

    public init() {}

    /// Reads `TRAVERSE_LISTEN`, `TRAVERSE_TLS_LISTEN`, `TRAVERSE_REALM`, `TRAVERSE_USERS`,
    /// `TRAVERSE_SECRETS`, `TRAVERSE_RELAY_ADDRESSES`, `TRAVERSE_RELAY_PORTS`,
    /// `TRAVERSE_ALLOW_PEERS`, `TRAVERSE_LOG_LEVEL`, `TRAVERSE_STATE_DIR` (lists comma-separated).
    public static func fromEnvironment(_ env: [String: String]) -> ConfigurationOverrides {
        func list(_ k: String) -> [String] {
            (env[k] ?? "").split(separator: ",").map { String($0.trimmingSpaces()) }.filter { !$0.isEmpty }
        }
        var o = ConfigurationOverrides()
        o.listen = list("TRAVERSE_LISTEN")
        o.tlsListen = list("TRAVERSE_TLS_LISTEN")
        o.realm = env["TRAVERSE_REALM"]
        o.users = list("TRAVERSE_USERS")
        o.secrets = list("TRAVERSE_SECRETS")
        o.relayAddresses = list("TRAVERSE_RELAY_ADDRESSES")
        o.relayPorts = env["TRAVERSE_RELAY_PORTS"]
        o.allowPeers = list("TRAVERSE_ALLOW_PEERS")
        o.logLevel = env["TRAVERSE_LOG_LEVEL"]
        o.stateDirectory = env["TRAVERSE_STATE_DIR"]
        if env["TRAVERSE_LEGACY_CHANNEL_NUMBERS"] == "1" { o.legacyChannelNumbers = true }
        o.maxAllocationsPerUser = env["TRAVERSE_USER_QUOTA"].flatMap { Int($0) ?? 0 }
        o.redis = env["TRAVERSE_REDIS"]
        o.nodeID = env["TRAVERSE_NODE_ID"]
        o.fleetSecret = env["TRAVERSE_FLEET_SECRET"]
        o.testPermissionLifetime = env["TRAVERSE_TEST_PERMISSION_LIFETIME"]
        o.testChannelLifetime = env["TRAVERSE_TEST_CHANNEL_LIFETIME"]
        return o
    }

    /// Applies these overrides; `source` names them in errors ("--listen" or "TRAVERSE_LISTEN").
    public func apply(to base: TraverseConfiguration, flags: Bool) throws(ConfigurationError) -> TraverseConfiguration {
        var c = base
        func name(_ flag: String, _ env: String) -> String { flags ? flag : env }
        if !listen.isEmpty {
            c.listen = try listen.map { (s: String) throws(ConfigurationError) -> TransportAddress in
                guard let a = TransportAddress(s) else {
                    throw ConfigurationError(
                        key: name("--listen", "TRAVERSE_LISTEN"), reason: "\"\(s)\" is not ADDRESS:PORT")
                }
                return a
            }
        }
        if !tlsListen.isEmpty {
            c.tlsListen = try tlsListen.map { (s: String) throws(ConfigurationError) -> TransportAddress in
                guard let a = TransportAddress(s) else {
                    throw ConfigurationError(
                        key: name("--tls-listen", "TRAVERSE_TLS_LISTEN"), reason: "\"\(s)\" is not ADDRESS:PORT")
                }
                return a
            }
        }
        if let realm { c.realm = realm }
        for u in users {
            guard let colon = u.firstIndex(of: ":"), colon != u.startIndex, u.index(after: colon) != u.endIndex else {
                throw ConfigurationError(key: name("--user", "TRAVERSE_USERS"), reason: "expected NAME:PASSWORD")
            }
            c.users[String(u[..<colon])] = String(u[u.index(after: colon)...])
        }
        if !secrets.isEmpty { c.secrets = secrets }
        if !relayAddresses.isEmpty {
            c.relayAddresses = try relayAddresses.map { (s: String) throws(ConfigurationError) -> IPAddress in
                guard let a = IPAddress(s) else {
                    throw ConfigurationError(
                        key: name("--relay-address", "TRAVERSE_RELAY_ADDRESSES"),
                        reason: "\"\(s)\" is not an IP address")
                }
                return a
            }
        }
        if let relayPorts {
            c.portRange = try ConfigurationLoader.portRange(name("--relay-ports", "TRAVERSE_RELAY_PORTS"), relayPorts)
        }
        if !allowPeers.isEmpty {
            c.allowPeers += try allowPeers.map { (s: String) throws(ConfigurationError) -> CIDR in
                guard let a = CIDR(s) else {
                    throw ConfigurationError(
                        key: name("--allow-peer", "TRAVERSE_ALLOW_PEERS"), reason: "\"\(s)\" is not a CIDR")
                }
                return a
            }
        }
        if let logLevel {
            guard ConfigurationKeys.logLevels.contains(logLevel) else {
                throw ConfigurationError(
                    key: name("--log-level", "TRAVERSE_LOG_LEVEL"), reason: "unknown level \(logLevel)")
            }
            c.logLevel = logLevel
        }
        if let stateDirectory { c.stateDirectory = stateDirectory }
        if let legacyChannelNumbers { c.legacyChannelNumbers = legacyChannelNumbers }
        if let maxAllocationsPerUser {
            guard maxAllocationsPerUser > 0 else {
                throw ConfigurationError(key: name("--user-quota", "TRAVERSE_USER_QUOTA"), reason: "must be positive")
            }
            c.maxAllocationsPerUser = maxAllocationsPerUser
        }
        if let redis {
            guard RedisEndpoint(url: redis) != nil else {
                throw ConfigurationError(
                    key: name("--redis", "TRAVERSE_REDIS"), reason: "expected redis://[:password@]host:port[/db]")
            }
            c.fleetRedis = redis
        }
        if let nodeID { c.fleetNodeID = nodeID }
        if let fleetSecret { c.fleetSecret = fleetSecret }
        if let testPermissionLifetime {
            guard let v = UInt32(testPermissionLifetime), (1...300).contains(v) else {
                throw ConfigurationError(key: "TRAVERSE_TEST_PERMISSION_LIFETIME", reason: "expected 1–300 seconds")
            }
            c.testPermissionLifetime = v
        }
        if let testChannelLifetime {
            guard let v = UInt32(testChannelLifetime), (1...600).contains(v) else {
                throw ConfigurationError(key: "TRAVERSE_TEST_CHANNEL_LIFETIME", reason: "expected 1–600 seconds")
            }
            c.testChannelLifetime = v
        }
        try ConfigurationLoader.validate(c)
        return c
    }
}

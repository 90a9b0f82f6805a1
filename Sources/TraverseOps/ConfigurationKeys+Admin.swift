import STUNCodec
import TOMLKit
import TURNRelay
import TraverseFleet

/// The `[limits]`, `[tls]`, `[admin]` and `[fleet]` rows of the key table (`ConfigurationKeys`).
extension ConfigurationKeys {
    static let limitsAndAdmin: [ConfigurationKey] = [
        maxAllocations.row, maxAllocationsPerUser.row, maxPermissions.row, maxChannels.row, defaultLifetime.row,
        maxLifetime.row, bandwidth.row, unauthenticatedRate.row, challengeOverflow.row, reasonPhrases.row,
        legacyChannelNumbers.row, maxConnections.row, maxConnectionsPerSource.row, maxDTLSSessions.row,
        maxDTLSSessionsPerSource.row, maxDTLSHandshakes.row, maxDTLSHandshakesPerSource.row, idleTimeout.row,
        certificate.row, privateKey.row, adminListen.row, adminToken.row, allowedHosts.row, alternateServers.row,
        alternateDomain.row, drainTimeout.row, maxBitsPerSecond.row, fleetRedis.row, fleetNodeID.row,
        fleetSecret.row, fleetAdvertise.row, fleetPublishInterval.row, fleetRedirectLoad.row, fleetOnRedisDown.row,
    ]

    /// An integer key of `range`, documented as `integer LOW–HIGH`.
    static func integer(
        _ name: String, _ range: ClosedRange<Int>, default value: Int, doc: String,
        store: @escaping @Sendable (inout TraverseConfiguration, Int) -> Void
    ) -> TypedKey<Int> {
        TypedKey(
            name, "integer \(range.lowerBound)–\(range.upperBound)", Kinds.int(range), default: value, doc: doc,
            store: store)
    }

    /// A lifetime in seconds (60–86400), stored as `UInt32`.
    static func lifetime(
        _ name: String, default value: UInt32, doc: String,
        store: @escaping @Sendable (inout TraverseConfiguration, UInt32) -> Void
    ) -> TypedKey<UInt32> {
        TypedKey(
            name, "integer 60–86400", Kinds.int(60...86_400).map({ UInt32($0) }, back: { Int($0) }), default: value,
            doc: doc, store: store)
    }

    // MARK: [limits]

    static let maxAllocations = integer(
        "limits.max_allocations", 1...1_000_000, default: 10_000, doc: "Allocations on the whole server."
    ) { $0.maxAllocations = $1 }
    static let maxAllocationsPerUser = integer(
        "limits.max_allocations_per_user", 1...100_000, default: 10, doc: "Allocations one username may hold."
    ) { $0.maxAllocationsPerUser = $1 }
    static let maxPermissions = integer(
        "limits.max_permissions_per_allocation", 1...1024, default: 32, doc: "Live permissions per allocation."
    ) { $0.maxPermissionsPerAllocation = $1 }
    static let maxChannels = integer(
        "limits.max_channels_per_allocation", 1...4096, default: 32, doc: "Live channel bindings per allocation."
    ) { $0.maxChannelsPerAllocation = $1 }
    static let defaultLifetime = lifetime(
        "limits.default_lifetime", default: 600, doc: "Lifetime granted when the client asks for none or less."
    ) { $0.defaultLifetime = $1 }
    static let maxLifetime = lifetime(
        "limits.max_lifetime", default: 3600, doc: "The longest lifetime granted; at least default_lifetime."
    ) { $0.maxLifetime = $1 }
    static let bandwidth = integer(
        "limits.bandwidth_per_allocation", 0...1_000_000_000, default: 0,
        doc: "Bytes per second each way per allocation; 0: no cap."
    ) { $0.bandwidthPerAllocation = $1 }
    static let unauthenticatedRate = integer(
        "limits.unauthenticated_rate", 0...1_000_000, default: 50,
        doc: "Unauthenticated answers per source IP per second, per shard; 0: no limit."
    ) { $0.unauthenticatedRate = $1 }
    static let challengeOverflow = integer(
        "limits.challenge_overflow_bytes", 0...100_000_000, default: 196_608,
        doc: "Bytes of 401/438 challenges still sent per source IP per second once its rate is spent."
    ) { $0.challengeOverflowBytes = $1 }
    static let reasonPhrases = TypedKey(
        "limits.unauthenticated_reason_phrases", "bool", Kinds.bool, default: false,
        doc: "Reason phrases in error answers to unauthenticated requests."
    ) { $0.unauthenticatedReasonPhrases = $1 }
    static let legacyChannelNumbers = TypedKey(
        "limits.legacy_channel_numbers", "bool", Kinds.bool, default: false,
        doc: "Also accept channel numbers 0x5000–0x7FFF."
    ) { $0.legacyChannelNumbers = $1 }
    static let maxConnections = integer(
        "limits.max_connections", 1...1_000_000, default: 10_000, doc: "TCP and TLS connections on the whole server."
    ) { $0.maxConnections = $1 }
    static let maxConnectionsPerSource = integer(
        "limits.max_connections_per_source", 1...100_000, default: 256,
        doc: "TCP and TLS connections from one client IP, per shard."
    ) { $0.maxConnectionsPerSource = $1 }
    static let maxDTLSSessions = integer(
        "limits.max_dtls_sessions", 1...1_000_000, default: 10_000, doc: "DTLS sessions on the whole server."
    ) { $0.dtls.maxSessions = $1 }
    static let maxDTLSSessionsPerSource = integer(
        "limits.max_dtls_sessions_per_source", 1...100_000, default: 256,
        doc: "DTLS sessions from one client IP, per shard."
    ) { $0.dtls.maxSessionsPerSource = $1 }
    static let maxDTLSHandshakes = integer(
        "limits.max_dtls_handshakes", 1...1_000_000, default: 1000,
        doc: "DTLS sessions still in their handshake on the whole server."
    ) { $0.dtls.maxHandshakes = $1 }
    static let maxDTLSHandshakesPerSource = integer(
        "limits.max_dtls_handshakes_per_source", 1...100_000, default: 16,
        doc: "DTLS sessions still in their handshake from one client IP, per shard."
    ) { $0.dtls.maxHandshakesPerSource = $1 }
    static let idleTimeout = TypedKey<UInt64>(
        "limits.idle_connection_timeout", "integer 1–86400",
        Kinds.int(1...86_400).map({ UInt64($0) }, back: { Int($0) }),
        default: 30, doc: "Seconds before an idle connection without an allocation is closed."
    ) { $0.idleConnectionTimeout = $1 }

    /// The DTLS caps, from their four keys.
    static var dtlsDefaults: DTLSLimits {
        var d = DTLSLimits()
        d.maxSessions = maxDTLSSessions.defaultValue
        d.maxSessionsPerSource = maxDTLSSessionsPerSource.defaultValue
        d.maxHandshakes = maxDTLSHandshakes.defaultValue
        d.maxHandshakesPerSource = maxDTLSHandshakesPerSource.defaultValue
        return d
    }

    // MARK: [tls]

    static let certificate = TypedKey<String?>(
        "tls.certificate", "string (path)", Kinds.optional(Kinds.string, emptyIsNone: false), default: nil,
        doc: "PEM certificate chain, server certificate first."
    ) { $0.certificateFile = $1 }
    static let privateKey = TypedKey<String?>(
        "tls.private_key", "string (path)", Kinds.optional(Kinds.string, emptyIsNone: false), default: nil,
        doc: "PEM private key of that certificate."
    ) { $0.privateKeyFile = $1 }

    // MARK: [admin]

    static let adminListen = TypedKey<TransportAddress?>(
        "admin.listen", "string `\"ADDR:PORT\"`, or `\"\"` for none",
        ValueKind(
            parse: { (key: String, v: TOMLValue) throws(ConfigurationError) -> TransportAddress? in
                let s = try Kinds.string.parse(key, v)
                if s.isEmpty { return nil }
                guard let a = TransportAddress(s) else {
                    throw ConfigurationError(key: key, reason: "expected ADDRESS:PORT")
                }
                return a
            }, show: { $0.map { Kinds.quoted($0.description) } ?? "`\"\"`" }),
        default: TransportAddress("127.0.0.1:9641"), doc: "The admin HTTP endpoint."
    ) { $0.adminListen = $1 }
    static let adminToken = TypedKey<String?>(
        "admin.token", "string", Kinds.optional(Kinds.string), default: nil,
        doc: "Bearer token every admin request needs; \"\" means none."
    ) { $0.adminToken = $1 }
    static let allowedHosts = TypedKey(
        "admin.allowed_hosts", "array of strings",
        Kinds.strings.checked { hosts in
            hosts.first { !AdminRequestPolicy.isValidEntry($0) }.map {
                "\"\($0)\" is not a host name, IP address, NAME:PORT or [IPv6]:PORT"
            }
        }, default: [], doc: "Names the admin endpoint answers to besides its bound address."
    ) {
        $0.adminAllowedHosts = $1
    }
    static let alternateServers = TypedKey(
        "admin.alternate_servers", "array of `\"ADDR:PORT\"`", Kinds.addresses, default: [],
        doc: "Where new allocations are sent (300) when full or draining."
    ) { $0.alternateServers = $1 }
    static let alternateDomain = TypedKey<String?>(
        "admin.alternate_domain", "string", Kinds.optional(Kinds.string), default: nil,
        doc: "ALTERNATE-DOMAIN sent with ALTERNATE-SERVER to TLS clients."
    ) { $0.alternateDomain = $1 }
    static let drainTimeout = integer(
        "admin.drain_timeout", 0...86_400, default: 60, doc: "Seconds SIGTERM waits for allocations to end."
    ) { $0.drainTimeout = $1 }
    static let maxBitsPerSecond = TypedKey(
        "admin.max_bits_per_second", "integer ≥ 0", Kinds.int(0...Int.max), default: 0,
        doc: "Relay throughput counted as full load; 0 leaves it out of the load score."
    ) { $0.maxBitsPerSecond = $1 }

    // MARK: [fleet]

    static let redisReason = "expected redis://[:password@]host:port[/db]"
    static let fleetRedis = TypedKey<String?>(
        "fleet.redis", "string",
        Kinds.optional(Kinds.string.checked { RedisEndpoint(url: $0) == nil ? redisReason : nil }, emptyIsNone: false),
        default: nil, doc: "The fleet's Redis; unset: a node on its own."
    ) { $0.fleetRedis = $1 }
    static let fleetNodeID = TypedKey<String?>(
        "fleet.node_id", "string", Kinds.optional(Kinds.string, emptyIsNone: false), default: nil,
        shown: "the host name", doc: "This node's name on the board."
    ) { $0.fleetNodeID = $1 }
    static let fleetSecret = TypedKey<String?>(
        "fleet.secret", "string ≥ 16 bytes", Kinds.optional(Kinds.string, emptyIsNone: false), default: nil,
        shown: "none (required)", doc: "Shared by every node of the fleet."
    ) { $0.fleetSecret = $1 }
    static let fleetAdvertise = TypedKey(
        "fleet.advertise", "array of `TRANSPORT:ADDRESS:PORT`", Kinds.strings, default: [],
        shown: "the bound listen and TLS addresses", doc: "Where other nodes send clients."
    ) { $0.fleetAdvertise = $1 }
    static let fleetPublishInterval = TypedKey(
        "fleet.publish_interval", "number 0.1–60", Kinds.number(0.1...60), default: 1.0,
        doc: "Seconds between publications of this node's board entry."
    ) { $0.fleetPublishInterval = $1 }
    static let fleetRedirectLoad = TypedKey(
        "fleet.redirect_load", "number 0–1", Kinds.number(0...1), default: 0.8,
        doc: "Load score from which new allocations go to a less loaded node."
    ) { $0.fleetRedirectLoad = $1 }
    static let fleetOnRedisDown = TypedKey(
        "fleet.on_redis_down", "`\"local\"` or `\"refuse\"`", Kinds.string, default: "local",
        doc: "While Redis is unreachable: serve with this node's quota, or refuse new allocations."
    ) {
        $0.fleetOnRedisDown = $1
    }
}

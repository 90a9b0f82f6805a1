public import STUNCodec
import TURNCore

/// What a node does with new allocations while Redis cannot be reached.
public enum RedisDownPolicy: String, Sendable, CaseIterable {
    /// Keep serving with node-local quotas (the default): availability first.
    case local
    /// Answer 508 to new allocations: the fleet-wide quota is never exceeded.
    case refuse
}

/// The `[fleet]` section. Without it a node is on its own, exactly as before fleets existed.
public struct FleetConfiguration: Sendable, Equatable {
    /// Where Redis is.
    public var redis: RedisEndpoint
    /// This node's id on the board (default: the host name).
    public var nodeID: String
    /// The secret every node of the fleet shares: nonces any node accepts, and the key under
    /// which usernames are hashed before they reach Redis.
    public var secret: String
    /// Addresses other nodes send clients to, by transport; empty: the node's listen and TLS
    /// addresses.
    public var advertise: [(FleetTransport, TransportAddress)] = []
    /// Seconds between publications of the load report (and re-reads of the board and bans).
    public var publishIntervalSeconds: Double = 1
    /// Load score (0–1) above which new allocations are redirected to a less loaded node.
    public var redirectLoad: Double = 0.8
    /// Behaviour while Redis is unreachable.
    public var onRedisDown: RedisDownPolicy = .local

    public init(redis: RedisEndpoint, nodeID: String, secret: String) {
        self.redis = redis
        self.nodeID = nodeID
        self.secret = secret
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.redis == b.redis && a.nodeID == b.nodeID && a.secret == b.secret
            && a.advertise.map { "\($0.0):\($0.1)" } == b.advertise.map { "\($0.0):\($0.1)" }
            && a.publishIntervalSeconds == b.publishIntervalSeconds && a.redirectLoad == b.redirectLoad
            && a.onRedisDown == b.onRedisDown
    }

    /// Parses one `advertise` entry, `transport:ADDRESS:PORT` (e.g. `tls:[2001:db8::1]:443`).
    public static func parseAdvertised(_ text: String) -> (FleetTransport, TransportAddress)? {
        guard let colon = text.firstIndex(of: ":"), let t = FleetTransport(rawValue: String(text[..<colon])),
            let a = TransportAddress(String(text[text.index(after: colon)...]))
        else { return nil }
        return (t, a)
    }
}

/// Keys derived from the fleet secret, and the hashing of usernames: no username reaches Redis
/// or a metric label in clear.
public struct FleetIdentity: Sendable {
    let key: [UInt8]

    public init(secret: String) { key = Array(secret.utf8) }

    /// The nonce secret every node uses, so that a client redirected to another node can reuse
    /// its nonce (RFC 8489 nonces are bound to the client IP, not to a node).
    public var nonceSecret: [UInt8] { STUNDigest.hmacSHA256(key: key, Array("traverse nonce v1".utf8)) }

    /// The username as stored in Redis and usage records: HMAC-SHA256 under the fleet secret,
    /// 16 bytes in hex. Equal for equal usernames across the fleet, useless without the secret.
    public func userHash(_ username: String) -> String {
        Hex.encode(Array(STUNDigest.hmacSHA256(key: key, Array("user:".utf8) + Array(username.utf8)).prefix(16)))
    }
}

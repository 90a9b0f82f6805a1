import STUNCodec
public import TraverseFleet

#if canImport(Glibc)
    import Glibc
#endif

/// The `[fleet]` section: parsed into plain fields through the key table (`ConfigurationKeys`),
/// checked together and turned into a `FleetConfiguration` here. A bad value is one line naming the key (exit 2).
extension TraverseConfiguration {
    /// The fleet settings, or nil when `fleet.redis` is not set (a node on its own).
    public func fleetConfiguration() throws(ConfigurationError) -> FleetConfiguration? {
        // The fleet is on when `fleet.redis` is set from any source (the file may hold the
        // secret while the environment gives the Redis URL, as the Kubernetes manifests do).
        guard let url = fleetRedis else { return nil }
        guard let endpoint = RedisEndpoint(url: url) else {
            throw ConfigurationError(key: "fleet.redis", reason: "expected redis://[:password@]host:port[/db]")
        }
        guard let secret = fleetSecret, secret.utf8.count >= 16 else {
            throw ConfigurationError(
                key: "fleet.secret",
                reason: "a fleet needs a shared secret of at least 16 bytes (or TRAVERSE_FLEET_SECRET)")
        }
        let node = fleetNodeID ?? Self.hostName()
        guard !node.isEmpty, node.utf8.count <= 64,
            node.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) })
        else {
            throw ConfigurationError(key: "fleet.node_id", reason: "1-64 letters, digits, '-', '_' or '.'")
        }
        guard let policy = RedisDownPolicy(rawValue: fleetOnRedisDown) else {
            throw ConfigurationError(key: "fleet.on_redis_down", reason: "expected \"local\" or \"refuse\"")
        }
        var f = FleetConfiguration(redis: endpoint, nodeID: node, secret: secret)
        for text in fleetAdvertise {
            guard let a = FleetConfiguration.parseAdvertised(text) else {
                throw ConfigurationError(
                    key: "fleet.advertise", reason: "\"\(text)\" is not TRANSPORT:ADDRESS:PORT (udp, tcp, tls, dtls)")
            }
            f.advertise.append(a)
        }
        f.publishIntervalSeconds = fleetPublishInterval
        f.redirectLoad = fleetRedirectLoad
        f.onRedisDown = policy
        return f
    }

    static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count) == 0 else { return "traverse" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

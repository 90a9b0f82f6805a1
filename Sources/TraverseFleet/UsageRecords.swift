public import TURNCore

/// One usage record: what the platform bills and audits from, appended to the capped stream
/// `traverse:usage` when an allocation ends. No client or peer address, no username in clear.
public struct UsageRecord: Sendable, Equatable {
    public var node: String
    public var userHash: String
    /// "udp", "tcp", "tls" or "dtls": the client's transport.
    public var transport: String
    /// "ipv4" or "ipv6": the family of the client's address.
    public var family: String
    /// Wall-clock milliseconds.
    public var start: Int64
    public var end: Int64
    public var traffic: TrafficCounters
    public var reason: String

    public init(
        node: String, userHash: String, transport: String, family: String, start: Int64, end: Int64,
        traffic: TrafficCounters, reason: String
    ) {
        self.node = node
        self.userHash = userHash
        self.transport = transport
        self.family = family
        self.start = start
        self.end = end
        self.traffic = traffic
        self.reason = reason
    }

    /// The stream entry's field/value pairs.
    public var fields: [String] {
        [
            "node", node, "user", userHash, "transport", transport, "family", family, "start", String(start), "end",
            String(end), "bytes_from_client", String(traffic.bytesFromClient), "packets_from_client",
            String(traffic.packetsFromClient), "bytes_to_client", String(traffic.bytesToClient), "packets_to_client",
            String(traffic.packetsToClient), "reason", reason,
        ]
    }
}

extension FleetCoordinator {
    /// Entries the usage stream keeps (XADD MAXLEN ~): old records are trimmed, the stream never
    /// grows without bound.
    public static let usageStreamLength = 100_000

    /// Appends a usage record (asynchronously, on the fleet queue). Lost if Redis is down: the
    /// allocation-ended log line carries the same figures.
    public func recordUsage(_ record: UsageRecord) {
        queue.async { [self] in
            guard status.redisUp else {
                usageDropped.add(1, ordering: .relaxed)
                return
            }
            do throws(RedisError) {
                _ = try run(
                    ["XADD", Keys.usage, "MAXLEN", "~", String(Self.usageStreamLength), "*"] + record.fields)
            } catch {
                usageDropped.add(1, ordering: .relaxed)
                setUp(false, error)
            }
        }
    }
}

import Synchronization
public import TURNCore

/// `limits.allocations_per_user` across the fleet: one Redis hash per user
/// (`traverse:quota:{userhash}`, field = node id, value = that node's allocations for the
/// user), checked and incremented atomically by a Lua script that counts only the fields of
/// live nodes (a node's board entry exists) and deletes the others. A node that dies therefore
/// leaves nothing behind once its board entry expires.
///
/// This node's own counts are kept here too (`counts`): they are the truth Redis mirrors, and
/// they are written back whole when Redis lost them (restart, flush) or after an outage.
/// Requests run on the fleet queue; shards are answered through the callback and never wait.
public final class FleetQuota: QuotaAuthority {
    let coordinator: FleetCoordinator
    /// This node's allocations per user hash (all of them, also those made while Redis was down).
    let counts = Mutex<[String: Int]>([:])
    let verdicts = Mutex<(granted: UInt64, refused: UInt64, unavailable: UInt64)>((0, 0, 0))

    static let reserveScript = """
        local counts = redis.call('HGETALL', KEYS[1])
        local total = 0
        for i = 1, #counts, 2 do
          local node = counts[i]
          if node == ARGV[1] or redis.call('EXISTS', ARGV[3] .. node) == 1 then
            total = total + (tonumber(counts[i + 1]) or 0)
          else
            redis.call('HDEL', KEYS[1], node)
          end
        end
        if total >= tonumber(ARGV[2]) then return 0 end
        redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
        return 1
        """

    static let releaseScript = """
        local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
        if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
        return n
        """

    public init(coordinator: FleetCoordinator) {
        self.coordinator = coordinator
    }

    /// Verdicts so far: granted, refused (486), unavailable (Redis down).
    public var verdictCounts: (granted: UInt64, refused: UInt64, unavailable: UInt64) { verdicts.withLock { $0 } }

    public func reserve(username: String, limit: Int, _ done: @escaping @Sendable (QuotaVerdict) -> Void) {
        let user = coordinator.identity.userHash(username)
        let node = coordinator.configuration.nodeID
        let countLocally = coordinator.configuration.onRedisDown == .local
        coordinator.queue.async { [self] in
            let verdict: QuotaVerdict
            if !coordinator.status.redisUp {
                verdict = .unavailable(countLocally: countLocally)
            } else {
                do throws(RedisError) {
                    let r = try coordinator.run([
                        "EVAL", Self.reserveScript, "1", FleetCoordinator.Keys.quota(user), node, String(limit),
                        FleetCoordinator.Keys.node(""),
                    ])
                    if case .error(let e) = r { throw .reply(e) }
                    verdict = r.integer == 1 ? .granted : .refused
                } catch {
                    coordinator.setUp(false, error)
                    verdict = .unavailable(countLocally: countLocally)
                }
            }
            switch verdict {
            case .granted, .unavailable(true): counts.withLock { $0[user, default: 0] += 1 }
            default: break
            }
            verdicts.withLock { v in
                switch verdict {
                case .granted: v.granted &+= 1
                case .refused: v.refused &+= 1
                case .unavailable: v.unavailable &+= 1
                }
            }
            done(verdict)
        }
    }

    public func release(username: String) {
        let user = coordinator.identity.userHash(username)
        let node = coordinator.configuration.nodeID
        coordinator.queue.async { [self] in
            let held = counts.withLock { c -> Bool in
                guard let n = c[user] else { return false }
                c[user] = n > 1 ? n - 1 : nil
                return true
            }
            guard held, coordinator.status.redisUp else { return }  // written back whole when Redis returns
            do throws(RedisError) {
                _ = try coordinator.run(["EVAL", Self.releaseScript, "1", FleetCoordinator.Keys.quota(user), node])
            } catch {
                coordinator.setUp(false, error)
            }
        }
    }

    /// Writes this node's counts back whole (fleet queue): after Redis lost them, or after an
    /// outage during which increments and releases could not be recorded.
    public func republish(_ connection: RedisConnection) {
        let node = coordinator.configuration.nodeID
        for (user, n) in counts.withLock({ $0 }) {
            _ = try? coordinator.run(["HSET", FleetCoordinator.Keys.quota(user), node, String(n)])
        }
    }

    /// Removes this node's fields left from an earlier run of the same node id (start only).
    public func clearStaleFields() {
        let node = coordinator.configuration.nodeID
        var cursor = "0"
        repeat {
            guard
                let reply = try? coordinator.run([
                    "SCAN", cursor, "MATCH", FleetCoordinator.Keys.quota("*"), "COUNT", "1000",
                ]), reply.elements.count == 2, let next = reply.elements[0].text
            else { return }
            for key in reply.elements[1].elements.compactMap(\.text) {
                _ = try? coordinator.run(["HDEL", key, node])
            }
            cursor = next
        } while cursor != "0"
    }
}

public import TURNCore

/// The sessions API over every shard, and the non-blocking hop onto a shard's queue that every
/// snapshot of `RelayServer` uses: callers are Swift-concurrency tasks (sampler, `/metrics`, the
/// console), which must never block a thread of the cooperative pool on `queue.sync`.
extension RelayServer {
    /// Every allocation on this server.
    public func sessions() async -> [SessionInfo] {
        var all: [SessionInfo] = []
        for shard in shards {
            all += await shard.snapshot(ring: true) {
                // Each allocation's traffic includes what the kernel fast path relayed so far.
                shard.fastPath?.harvest(shard.core)
                return shard.sessions()
            }
        }
        return all
    }

    /// Ends the selected allocations on every shard; how many.
    @discardableResult
    public func endSessions(_ selector: SessionSelector) async -> Int {
        var n = 0
        for shard in shards { n += await shard.snapshot(ring: true) { shard.endSessions(selector) } }
        return n
    }

    /// Runs every shard's sweep now (after a ban: its allocations end at once); returns once
    /// every shard has swept.
    public func sweepNow() async {
        for shard in shards { await shard.snapshot { shard.sweep() } }
    }
}

public import TURNCore

/// The sessions API over every shard: each shard is read and changed on its own queue.
extension RelayServer {
    /// Every allocation on this server.
    public func sessions() -> [SessionInfo] {
        shards.flatMap { shard in shard.onQueue { shard.sessions() } }
    }

    /// Ends the selected allocations on every shard; how many.
    @discardableResult
    public func endSessions(_ selector: SessionSelector) -> Int {
        shards.reduce(0) { n, shard in n + shard.onQueue { shard.endSessions(selector) } }
    }
}

extension RelayServer {
    /// Runs every shard's sweep now (after a ban: its allocations end at once).
    public func sweepNow() {
        for shard in shards { shard.queue.async { shard.sweep() } }
    }
}

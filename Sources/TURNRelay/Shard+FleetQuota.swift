import STUNCodec
import TURNCore

/// Allocates that wait for the fleet-wide quota (`ClientMessageOutcome.awaitQuota`): the request
/// is copied (it is small: an Allocate), the fleet is asked, and when its verdict comes back the
/// request is handled again on this shard's queue and answered the way it came (the UDP
/// listener, or the client's stream). The shard never waits: other packets are served meanwhile.
/// Confined to the shard's queue, except the fleet's callback, which only enqueues on it.
extension Shard {
    func askFleetQuota(_ request: UnsafeRawBufferPointer, _ fiveTuple: FiveTuple, username: String, limit: Int) {
        guard let quota = core.shared.fleet.quota else {
            // The fleet left between the decision and now: nothing was counted, nothing waits.
            core.cancelPendingAllocate(fiveTuple, username: username, verdict: .unavailable(countLocally: false))
            return
        }
        let copy = Array(request)
        quota.reserve(username: username, limit: limit) { [weak self] verdict in
            guard let self else { return }
            self.post { self.resumeWithVerdict(copy, fiveTuple, username: username, verdict) }
        }
    }

    func resumeWithVerdict(_ request: [UInt8], _ fiveTuple: FiveTuple, username: String, _ verdict: QuotaVerdict) {
        assertOnQueue()
        // A stream client that went away in the meantime gets nothing; its count goes back.
        if fiveTuple.transport != .udp && streamWriters[fiveTuple] == nil {
            core.cancelPendingAllocate(fiveTuple, username: username, verdict: verdict)
            return
        }
        request.withUnsafeBytes { raw in
            guard let view = try? STUNMessageView(validating: raw) else {
                core.cancelPendingAllocate(fiveTuple, username: username, verdict: verdict)
                return
            }
            let buffer = tx.nextReplyBuffer
            let outcome = core.resumeAllocate(
                view, from: fiveTuple, username: username, verdict: verdict, now: now(), response: buffer,
                relays: self)
            guard case .reply(let length) = outcome else { return }
            deliverReply(buffer, length, to: fiveTuple)
            tx.flush()
        }
        finishBatch()
    }

    /// The allocations of this shard, for the sessions API.
    func sessions() -> [SessionInfo] {
        assertOnQueue()
        return core.sessions(now: now())
    }

    /// Ends the selected allocations of this shard; how many.
    func endSessions(_ selector: SessionSelector) -> Int {
        assertOnQueue()
        let n = core.endSessions(selector, now: now())
        drainEffects()
        return n
    }
}

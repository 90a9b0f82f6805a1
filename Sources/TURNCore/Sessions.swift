public import STUNCodec

/// One allocation as the sessions API shows it (`GET /sessions`): no key, no payload.
public struct SessionInfo: Sendable, Equatable {
    /// The allocation's random id (``Allocation/id``).
    public var id: UInt64
    /// The user it was authenticated as.
    public var username: String
    /// The client's 5-tuple.
    public var fiveTuple: FiveTuple
    /// The relayed addresses as advertised to the client.
    public var relays: [TransportAddress]
    /// Milliseconds since the allocation was made, and until it expires.
    public var ageMilliseconds: UInt64
    /// Milliseconds until the allocation expires unless refreshed; 0 if already past.
    public var lifetimeLeftMilliseconds: UInt64
    /// Peer IPs with a live permission.
    public var permissions: [IPAddress]
    /// Live channel numbers.
    public var channels: [UInt16]
    /// What it has relayed so far.
    public var traffic: TrafficCounters
}

/// Which sessions to end.
public enum SessionSelector: Sendable {
    /// The allocation with this id.
    case id(UInt64)
    /// Every allocation of users for whom this returns true.
    case users(@Sendable (String) -> Bool)
}

/// The sessions API and the fleet quota's second pass: control path only, on the shard's queue.
extension TURNServerCore {
    /// Every allocation on this core, now.
    public func sessions(now: CoreTime) -> [SessionInfo] {
        let t = now.milliseconds
        return slots.compactMap { a in
            guard let a else { return nil }
            return SessionInfo(
                id: a.id, username: a.username, fiveTuple: a.fiveTuple, relays: a.relays.map { advertised($0.address) },
                ageMilliseconds: t &- a.createdAt, lifetimeLeftMilliseconds: a.expiry > t ? a.expiry - t : 0,
                permissions: a.permissions.filter { $0.expiry > t }.map(\.peer),
                channels: a.channels.filter { $0.expiry > t }.map(\.number), traffic: a.traffic)
        }
    }

    /// Ends the selected allocations (reason `ended_by_operator`); how many.
    @discardableResult
    public func endSessions(_ selector: SessionSelector, now: CoreTime) -> Int {
        var n = 0
        for slot in slots.indices {
            guard let a = slots[slot] else { continue }
            let match: Bool =
                switch selector {
                case .id(let id): a.id == id
                case .users(let f): f(a.username)
                }
            if match {
                free(slot, reason: .endedByOperator, now: now)
                n += 1
            }
        }
        return n
    }

    /// Handles again an Allocate that waited for the fleet quota (`ClientMessageOutcome.awaitQuota`),
    /// now with `verdict`. A verdict that counted the allocation fleet-wide but was not used (the
    /// request failed for another reason on this pass) is given back.
    public func resumeAllocate(
        _ m: STUNMessageView, from fiveTuple: FiveTuple, username: String, verdict v: QuotaVerdict, now: CoreTime,
        response: UnsafeMutableRawBufferPointer, relays: any RelaySocketProvider
    ) -> ClientMessageOutcome {
        let waiting = pendingQuota.removeValue(forKey: fiveTuple)
        verdict = (fiveTuple, m.transactionID, v)
        verdictUsed = false
        defer { verdict = nil }
        let outcome: ClientMessageOutcome =
            waiting == m.transactionID
            ? handleSTUN(m, from: fiveTuple, now: now, response: response, relays: relays) : .none
        if !verdictUsed { giveBack(v, username: username) }
        return outcome
    }

    /// The client of a waiting Allocate went away (its connection closed) before the verdict.
    public func cancelPendingAllocate(_ fiveTuple: FiveTuple, username: String, verdict v: QuotaVerdict) {
        pendingQuota[fiveTuple] = nil
        giveBack(v, username: username)
    }

    func giveBack(_ v: QuotaVerdict, username: String) {
        switch v {
        case .granted, .unavailable(countLocally: true): shared.fleet.quota?.release(username: username)
        default: break
        }
    }
}

// Lifetimes (RFC 8656 §7, §9, §12): the sweep that reaps what expired or a reloaded policy
// denies, and the ends of allocations. Every removal is also a `CoreEffect`.
public import STUNCodec

extension TURNServerCore {
    // MARK: - Lifetimes

    /// Reaps expired allocations, permissions and channels, and closes allocations of clients the
    /// current policy bans and those whose credential was removed (`reviewCredentials`). Called
    /// about once a second; costs nothing per packet.
    public func sweep(now: CoreTime) {
        refreshPolicyIfNeeded()
        let policyChanged = policyChangedSinceSweep
        policyChangedSinceSweep = false
        let t = now.milliseconds
        for slot in slots.indices {
            guard let a = slots[slot] else { continue }
            if a.expiry <= t {
                free(slot, reason: .expired, now: now)
            } else if policy.bannedClients.isBanned(a.fiveTuple.client.ip) {
                free(slot, reason: .banned, now: now)
            } else if let r = a.revokeAfter, r < now.unixSeconds {
                free(slot, reason: .revoked, now: now)
            } else {
                // A reloaded policy applies to permissions already granted, ChannelData included.
                let peers = policyChanged ? policy.peers : nil
                if a.permissions.contains(where: { $0.expiry <= t || peers?.allows($0.peer) == false }) {
                    for p in a.permissions where p.expiry <= t || peers?.allows(p.peer) == false {
                        effects.append(.permissionRemoved(slot: slot, peer: p.peer))
                    }
                    slots[slot]!.permissions.removeAll { $0.expiry <= t || peers?.allows($0.peer) == false }
                }
                if a.channels.contains(where: { $0.expiry <= t || peers?.allows($0.peer.ip) == false }) {
                    for c in a.channels where c.expiry <= t || peers?.allows(c.peer.ip) == false {
                        effects.append(.channelRemoved(slot: slot, channel: c.number, peer: c.peer))
                    }
                    slots[slot]!.channels.removeAll { $0.expiry <= t || peers?.allows($0.peer.ip) == false }
                }
                if a.lastTransaction != nil && t &- a.lastResponseAt >= Self.transactionMemoryMilliseconds {
                    slots[slot]!.lastTransaction = nil
                    slots[slot]!.lastResponse = []
                }
            }
        }
    }

    /// Ends the allocation on `fiveTuple` (its stream connection closed, or shutdown).
    public func closeAllocation(on fiveTuple: FiveTuple, reason: AllocationEndReason, now: CoreTime) {
        if let slot = byFiveTuple[fiveTuple] { free(slot, reason: reason, now: now) }
    }

    /// Ends every allocation made through the listener `server` over `transport` (a listener
    /// handed over to another instance).
    public func closeAllocations(
        servedAt server: TransportAddress, transport: TransportProtocol, reason: AllocationEndReason, now: CoreTime
    ) {
        for slot in slots.indices {
            if let a = slots[slot], a.fiveTuple.server == server, a.fiveTuple.transport == transport {
                free(slot, reason: reason, now: now)
            }
        }
    }

    /// Ends every allocation of this shard.
    public func closeAll(reason: AllocationEndReason, now: CoreTime) {
        for slot in slots.indices where slots[slot] != nil { free(slot, reason: reason, now: now) }
    }

    func free(_ slot: Int, reason: AllocationEndReason, now: CoreTime) {
        guard let a = slots[slot] else { return }
        for r in a.relays { effects.append(.closeRelay(r)) }
        effects.append(.allocationEnded(slot: slot))
        slots[slot] = nil
        byFiveTuple[a.fiveTuple] = nil
        freeSlots.append(slot)
        shared.release(username: a.username)
        events.append(
            .ended(
                fiveTuple: a.fiveTuple, username: a.username, durationMilliseconds: now.milliseconds &- a.createdAt,
                traffic: a.traffic, reason: reason))
    }
}

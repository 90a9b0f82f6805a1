// Allocate and Refresh (RFC 8656 §7, §8): an allocation's making, its relays, its lifetime.
// Relay sockets are asked of the `RelaySocketProvider` of the call; closing one is an effect.
import STUNCodec

extension TURNServerCore {
    // MARK: Allocate (RFC 8656 §7.2)

    func handleAllocate(
        _ m: STUNMessageView, _ fiveTuple: FiveTuple, _ auth: AuthContext, _ now: CoreTime,
        _ out: UnsafeMutableRawBufferPointer, _ relays: any RelaySocketProvider
    ) -> ClientMessageOutcome {
        // Draining, full, or (in a fleet) above the redirect load: send the client to another
        // node when one can take it (the fleet's board first, then the static list). With none,
        // a draining node answers 508, a full one finds out below, a loaded one serves.
        let redirect: RedirectReason? =
            shared.isDraining
            ? .draining
            : shared.allocationCount >= shared.effectiveCapacity(configured: configuration.maxAllocations)
                ? .full : shared.fleet.isOverloaded ? .load : nil
        if let redirect {
            if let alternate = alternate(for: fiveTuple) {
                counters.redirects[redirect.rawValue] &+= 1
                let domain = fiveTuple.transport == .tls ? configuration.alternateDomain : nil
                return reply(m, auth, now, out, slot: nil, error: (300, "Try Alternate")) { w in
                    try w.append(.alternateServer, address: alternate)
                    if let domain { try w.append(.alternateDomain, string: domain) }
                }
            }
            if redirect == .draining {
                return reply(m, auth, now, out, slot: nil, error: (508, "Insufficient Capacity"))
            }
        }
        guard let transport = m.value(of: .requestedTransport) else {
            return reply(m, auth, now, out, slot: nil, error: (400, "Missing REQUESTED-TRANSPORT"))
        }
        let tcpRelay = transport[0] == 6 && configuration.tcpRelaysEnabled
        guard transport[0] == 17 || tcpRelay else {
            return reply(m, auth, now, out, slot: nil, error: (442, "Unsupported Transport Protocol"))
        }
        if tcpRelay {
            // RFC 6062 §5.1: a TCP allocation is made over a TCP or TLS control connection, with
            // none of the UDP-only attributes.
            guard fiveTuple.transport == .tcp || fiveTuple.transport == .tls else {
                return reply(m, auth, now, out, slot: nil, error: (400, "TCP allocations need a TCP or TLS connection"))
            }
            if m.contains(.evenPort) || m.contains(.reservationToken) || m.contains(.additionalAddressFamily)
                || m.contains(.dontFragment)
            {
                return reply(m, auth, now, out, slot: nil, error: (400, "Bad Request"))
            }
        }
        let dontFragment = m.contains(.dontFragment)
        let token = m.value(of: .reservationToken).map { $0.be64(0) }
        let requestedFamily = m.value(of: .requestedAddressFamily).map { AddressFamily(rawValue: $0[0]) }
        let additionalFamily = m.value(of: .additionalAddressFamily).map { AddressFamily(rawValue: $0[0]) }
        let evenPort = m.value(of: .evenPort).map { $0[0] & 0x80 != 0 }
        if token != nil && (evenPort != nil || requestedFamily != nil || additionalFamily != nil) {
            return reply(m, auth, now, out, slot: nil, error: (400, "Bad Request"))
        }
        if requestedFamily != nil && additionalFamily != nil {
            return reply(m, auth, now, out, slot: nil, error: (400, "Bad Request"))
        }
        var families: [AddressFamily]
        if let requestedFamily {
            guard let f = requestedFamily, configuration.relayFamilies.contains(f) else {
                return reply(m, auth, now, out, slot: nil, error: (440, "Address Family not Supported"))
            }
            families = [f]
        } else {
            guard configuration.relayFamilies.contains(.ipv4) else {
                return reply(m, auth, now, out, slot: nil, error: (440, "Address Family not Supported"))
            }
            families = [.ipv4]
        }
        if evenPort == true && additionalFamily != nil {
            return reply(m, auth, now, out, slot: nil, error: (400, "Bad Request"))
        }
        if let additionalFamily {
            guard additionalFamily == .ipv6 else {
                return reply(m, auth, now, out, slot: nil, error: (400, "Bad Request"))
            }
            families.append(.ipv6)
        }

        // The fleet-wide quota, when there is a fleet: asked once, asynchronously; the request
        // is handled again with the verdict (`resumeAllocate`). A grant still meets this node's
        // count below: one that lands after allocations counted here while the fleet could not be
        // asked (`unavailable(countLocally: true)`) must not take the user past the quota.
        var fleetCounted = false
        if shared.fleet.quota != nil {
            if let v = verdict, v.fiveTuple == fiveTuple, v.transactionID == m.transactionID {
                verdictUsed = true
                switch v.verdict {
                case .granted:
                    fleetCounted = true
                case .refused:
                    counters.quotaRefusals[1] &+= 1
                    return reply(m, auth, now, out, slot: nil, error: (486, "Allocation Quota Reached"))
                case .unavailable(countLocally: true):
                    fleetCounted = true
                case .unavailable(countLocally: false):
                    return reply(m, auth, now, out, slot: nil, error: (508, "Insufficient Capacity"))
                }
            } else {
                guard pendingQuota.count < Self.maxPendingQuota else {
                    return reply(m, auth, now, out, slot: nil, error: (508, "Insufficient Capacity"))
                }
                pendingQuota[fiveTuple] = m.transactionID
                return .awaitQuota(username: auth.username, limit: configuration.maxAllocationsPerUser)
            }
        }
        if let code = shared.reserve(
            username: auth.username, maxTotal: configuration.maxAllocations,
            maxPerUser: configuration.maxAllocationsPerUser)
        {
            // Counted fleet-wide but not made here: give the count back.
            if fleetCounted { shared.fleet.quota?.release(username: auth.username) }
            if code == 508, let alternate = alternate(for: fiveTuple) {
                counters.redirects[RedirectReason.full.rawValue] &+= 1
                let domain = fiveTuple.transport == .tls ? configuration.alternateDomain : nil
                return reply(m, auth, now, out, slot: nil, error: (300, "Try Alternate")) { w in
                    try w.append(.alternateServer, address: alternate)
                    if let domain { try w.append(.alternateDomain, string: domain) }
                }
            }
            if code == 486 { counters.quotaRefusals[0] &+= 1 }
            return reply(
                m, auth, now, out, slot: nil,
                error: code == 486 ? (486, "Allocation Quota Reached") : (508, "Insufficient Capacity"))
        }

        let slot =
            freeSlots.popLast()
            ?? {
                slots.append(nil); return slots.count - 1
            }()
        var opened: [RelayEndpoint] = []
        var failedFamily: (AddressFamily, STUNErrorCode)? = nil
        var reservationToken: UInt64? = nil
        for family in families {
            var request = RelayRequest(family: family, slot: slot)
            request.evenPort = evenPort != nil
            request.reserveNextPort = evenPort == true
            request.reservationToken = token
            request.dontFragment = dontFragment
            request.transport = tcpRelay ? .tcp : .udp
            switch relays.openRelay(request) {
            case .opened(let endpoint, let newToken):
                opened.append(endpoint)
                if newToken != nil { reservationToken = newToken }
            case .failed(let code):
                failedFamily = (family, code)
            }
        }
        guard !opened.isEmpty else {
            freeSlots.append(slot)
            shared.release(username: auth.username)
            return reply(
                m, auth, now, out, slot: nil, error: (failedFamily?.1 ?? .insufficientCapacity, "Insufficient Capacity")
            )
        }

        let lifetime = grantedLifetime(m.uint32(.lifetime))
        var allocation = Allocation(
            fiveTuple: fiveTuple, username: auth.username, key: auth.key, relays: opened,
            expiry: now.milliseconds + UInt64(lifetime) * 1000, now: now.milliseconds)
        allocation.respondWithSHA256 = auth.respondWithSHA256
        allocation.relayTransport = tcpRelay ? .tcp : .udp
        if configuration.bandwidthPerAllocation > 0 {
            allocation.bucketIn = TokenBucket(
                bytesPerSecond: configuration.bandwidthPerAllocation, now: now.milliseconds)
            allocation.bucketOut = allocation.bucketIn
        }
        slots[slot] = allocation
        byFiveTuple[fiveTuple] = slot
        for r in opened { counters.allocationsCreated[r.address.family == .ipv4 ? 0 : 1] &+= 1 }
        events.append(
            .created(
                fiveTuple: fiveTuple, username: auth.username, relays: opened.map { advertised($0.address) },
                lifetime: lifetime))

        let advertisedRelays = opened.map { advertised($0.address) }
        return reply(m, auth, now, out, slot: slot) { w in
            for r in advertisedRelays { try w.append(.xorRelayedAddress, address: r) }
            try w.append(.lifetime, uint32: lifetime)
            if let reservationToken { try w.append(.reservationToken, uint64: reservationToken) }
            try w.append(.xorMappedAddress, address: fiveTuple.client)
            if let (family, code) = failedFamily {
                try w.appendAddressErrorCode(family: family, code.rawValue, reason: "Insufficient Capacity")
            }
        }
    }

    /// Where to send a new client of `fiveTuple`: a live, lightly loaded node of the fleet of the
    /// same transport and family, else the first static alternate of the client's family.
    func alternate(for fiveTuple: FiveTuple) -> TransportAddress? {
        shared.fleet.alternate(for: fiveTuple)
            ?? configuration.alternateServers.first { $0.family == fiveTuple.client.family }
    }

    /// The address clients are told: the configured public address for a private relay IP.
    func advertised(_ address: TransportAddress) -> TransportAddress {
        guard let ip = configuration.externalAddresses[address.ip] else { return address }
        return TransportAddress(ip: ip, port: address.port)
    }

    /// RFC 8656 §7.2: min(requested, max), but never below the default.
    func grantedLifetime(_ requested: UInt32?) -> UInt32 {
        guard let requested else { return configuration.defaultLifetime }
        return max(configuration.defaultLifetime, min(requested, configuration.maxLifetime))
    }

    // MARK: Refresh (RFC 8656 §8)

    func handleRefresh(
        _ m: STUNMessageView, _ slot: Int, _ auth: AuthContext, _ now: CoreTime, _ out: UnsafeMutableRawBufferPointer
    ) -> ClientMessageOutcome {
        var a = slots[slot]!
        var onlyFamily: AddressFamily? = nil
        if let raf = m.value(of: .requestedAddressFamily) {
            guard let f = AddressFamily(rawValue: raf[0]), a.relay(for: f) != nil else {
                return reply(m, auth, now, out, slot: slot, error: (443, "Peer Address Family Mismatch"))
            }
            onlyFamily = f
        }
        let requested = m.uint32(.lifetime)
        if requested == 0 {
            if let onlyFamily, a.relays.count > 1 {
                if let r = a.relay(for: onlyFamily) { effects.append(.closeRelay(r)) }
                a.relays.removeAll { $0.address.family == onlyFamily }
                slots[slot] = a
            } else {
                // Answer first (the answer needs the key), then delete.
                let outcome = reply(m, auth, now, out, slot: nil) { w in try w.append(.lifetime, uint32: 0) }
                free(slot, reason: .refreshedToZero, now: now)
                return outcome
            }
            return reply(m, auth, now, out, slot: slot) { w in try w.append(.lifetime, uint32: 0) }
        }
        let lifetime = grantedLifetime(requested)
        a.expiry = now.milliseconds + UInt64(lifetime) * 1000
        slots[slot] = a
        return reply(m, auth, now, out, slot: slot) { w in try w.append(.lifetime, uint32: lifetime) }
    }
}

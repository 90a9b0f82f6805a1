// CreatePermission, ChannelBind (RFC 8656 §10, §12) and RFC 6062 Connect/ConnectionBind: what
// an allocation may reach. Every permission and channel made is also a `CoreEffect`, so a
// copy of the routing state (a fast path) stays exact.
public import STUNCodec

extension TURNServerCore {
    // MARK: CreatePermission (RFC 8656 §10)

    func handleCreatePermission(
        _ m: STUNMessageView, _ slot: Int, _ auth: AuthContext, _ now: CoreTime, _ out: UnsafeMutableRawBufferPointer
    ) -> ClientMessageOutcome {
        let a = slots[slot]!
        var peers: [IPAddress] = []
        var invalid = false
        m.forEachAttribute { t, v in
            if t == .xorPeerAddress {
                if let p = m.decodeXORAddress(v) { peers.append(p.ip) } else { invalid = true }
            }
            return true
        }
        if peers.isEmpty || invalid {
            return reply(m, auth, now, out, slot: slot, error: (400, "Bad Request"))
        }
        if peers.contains(where: { a.relay(for: $0.family) == nil }) {
            return reply(m, auth, now, out, slot: slot, error: (443, "Peer Address Family Mismatch"))
        }
        if peers.contains(where: { !policy.peers.allows($0) }) {
            counters.drop(.peerDenied)
            return reply(m, auth, now, out, slot: slot, error: (403, "Forbidden"))
        }
        let newCount = Set(peers).subtracting(a.permissions.filter { $0.expiry > now.milliseconds }.map(\.peer)).count
        if a.permissions.filter({ $0.expiry > now.milliseconds }).count + newCount
            > configuration.maxPermissionsPerAllocation
        {
            return reply(m, auth, now, out, slot: slot, error: (508, "Insufficient Capacity"))
        }
        for p in peers { installPermission(slot, p, now) }
        return reply(m, auth, now, out, slot: slot)
    }

    func installPermission(_ slot: Int, _ ip: IPAddress, _ now: CoreTime) {
        let expiry = now.milliseconds + UInt64(configuration.permissionLifetime) * 1000
        effects.append(.permissionInstalled(slot: slot, peer: ip, expiry: expiry))
        if let i = slots[slot]!.permissions.firstIndex(where: { $0.peer == ip }) {
            slots[slot]!.permissions[i].expiry = expiry
        } else {
            slots[slot]!.permissions.append(Permission(peer: ip, expiry: expiry))
        }
    }

    // MARK: ChannelBind (RFC 8656 §12.2)

    func handleChannelBind(
        _ m: STUNMessageView, _ slot: Int, _ auth: AuthContext, _ now: CoreTime, _ out: UnsafeMutableRawBufferPointer
    ) -> ClientMessageOutcome {
        let a = slots[slot]!
        guard let numberValue = m.value(of: .channelNumber), let peer = m.xorAddress(.xorPeerAddress) else {
            return reply(m, auth, now, out, slot: slot, error: (400, "Bad Request"))
        }
        let number = numberValue.be16(0)
        let range = configuration.legacyChannelNumbers ? ChannelData.legacyChannelRange : ChannelData.channelRange
        guard range.contains(number) else {
            return reply(m, auth, now, out, slot: slot, error: (400, "Bad Request"))
        }
        let live = a.channels.filter { $0.expiry > now.milliseconds }
        if live.contains(where: { $0.number == number && $0.peer != peer })
            || live.contains(where: { $0.peer == peer && $0.number != number })
        {
            return reply(m, auth, now, out, slot: slot, error: (400, "Bad Request"))
        }
        guard a.relay(for: peer.family) != nil else {
            return reply(m, auth, now, out, slot: slot, error: (443, "Peer Address Family Mismatch"))
        }
        guard policy.peers.allows(peer.ip) else {
            counters.drop(.peerDenied)
            return reply(m, auth, now, out, slot: slot, error: (403, "Forbidden"))
        }
        let isNew = !live.contains { $0.number == number }
        if isNew && live.count >= configuration.maxChannelsPerAllocation {
            return reply(m, auth, now, out, slot: slot, error: (508, "Insufficient Capacity"))
        }
        // The permission the binding installs counts against the allocation's permissions.
        if !a.hasPermission(peer.ip, now: now.milliseconds),
            a.permissions.filter({ $0.expiry > now.milliseconds }).count >= configuration.maxPermissionsPerAllocation
        {
            return reply(m, auth, now, out, slot: slot, error: (508, "Insufficient Capacity"))
        }
        let expiry = now.milliseconds + UInt64(configuration.channelLifetime) * 1000
        // Only an expired binding can differ in number or peer here (a live one would be a 400):
        // its slot in the routing state is taken over.
        for c in a.channels where (c.number == number || c.peer == peer) && (c.number != number || c.peer != peer) {
            effects.append(.channelRemoved(slot: slot, channel: c.number, peer: c.peer))
        }
        slots[slot]!.channels.removeAll { $0.number == number || $0.peer == peer }
        slots[slot]!.channels.append(ChannelBinding(number: number, peer: peer, expiry: expiry))
        installPermission(slot, peer.ip, now)
        effects.append(.channelBound(slot: slot, channel: number, peer: peer, expiry: expiry))
        return reply(m, auth, now, out, slot: slot)
    }

    // MARK: Connect and ConnectionBind (RFC 6062 §5.2, §5.4)

    func handleConnect(
        _ m: STUNMessageView, _ slot: Int, _ auth: AuthContext, _ now: CoreTime, _ out: UnsafeMutableRawBufferPointer,
        _ relays: any RelaySocketProvider
    ) -> ClientMessageOutcome {
        let a = slots[slot]!
        guard a.relayTransport == .tcp else {
            return reply(m, auth, now, out, slot: slot, error: (400, "Not a TCP allocation"))
        }
        guard let peer = m.xorAddress(.xorPeerAddress) else {
            return reply(m, auth, now, out, slot: slot, error: (400, "Bad Request"))
        }
        guard let relay = a.relay(for: peer.family) else {
            return reply(m, auth, now, out, slot: slot, error: (443, "Peer Address Family Mismatch"))
        }
        guard policy.peers.allows(peer.ip) else {
            counters.drop(.peerDenied)
            return reply(m, auth, now, out, slot: slot, error: (403, "Forbidden"))
        }
        if let code = relays.startConnect(slot: slot, relay: relay, peer: peer, transactionID: m.transactionID) {
            return reply(
                m, auth, now, out, slot: slot,
                error: code == .connectionAlreadyExists
                    ? (code, "Connection Already Exists")
                    : (.connectionTimeoutOrFailure, "Connection Timeout or Failure"))
        }
        return .none  // answered by `connectResult` once the connection is made or fails
    }

    /// Writes the answer to a Connect whose TCP connection to the peer succeeded (with
    /// CONNECTION-ID) or failed (447), protected like the allocation's other answers. Returns the
    /// answer's length and the control connection to send it on, or nil if the allocation is gone.
    public func connectResult(
        slot: Int, transactionID: STUNTransactionID, connectionID: UInt32?, now: CoreTime,
        response out: UnsafeMutableRawBufferPointer
    ) -> (length: Int, control: FiveTuple)? {
        guard slot < slots.count, let a = slots[slot] else { return nil }
        if connectionID == nil { counters.countError(447) }
        let type = STUNMessageType(method: .connect, class: connectionID == nil ? .errorResponse : .successResponse)
        do {
            var w = try STUNMessageWriter(into: out, type: type, transactionID: transactionID)
            if let connectionID {
                try w.append(.connectionID, uint32: connectionID)
            } else {
                try w.appendErrorCode(447, reason: "Connection Timeout or Failure")
            }
            try a.key.withUnsafeBytes { k in
                if a.respondWithSHA256 {
                    try w.appendMessageIntegritySHA256(key: k)
                } else {
                    try w.appendMessageIntegrity(key: k)
                }
            }
            return (w.count, a.fiveTuple)
        } catch {
            return nil
        }
    }

    /// Whether a peer may open a TCP connection to the relayed address of `slot` (RFC 6062 §5.3:
    /// only with a permission, and the peer policy applies); the control connection to tell.
    public func inboundConnectionAllowed(slot: Int, peer: TransportAddress, now: CoreTime) -> FiveTuple? {
        guard slot < slots.count, let a = slots[slot], a.hasPermission(peer.ip, now: now.milliseconds),
            policy.peers.allows(peer.ip)
        else {
            counters.drop(.noPermission)
            return nil
        }
        return a.fiveTuple
    }

    func handleConnectionBind(
        _ m: STUNMessageView, _ fiveTuple: FiveTuple, _ auth: AuthContext, _ now: CoreTime,
        _ out: UnsafeMutableRawBufferPointer, _ relays: any RelaySocketProvider
    ) -> ClientMessageOutcome {
        guard fiveTuple.transport == .tcp || fiveTuple.transport == .tls, let id = m.uint32(.connectionID),
            relays.bindConnection(id: id, username: auth.username, dataConnection: fiveTuple)
        else {
            return reply(m, auth, now, out, slot: nil, error: (400, "Bad Request"))
        }
        return reply(m, auth, now, out, slot: nil)
    }
}

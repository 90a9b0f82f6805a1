// The packet path: Send indications, ChannelData and peer data routed through an allocation's
// permissions and channels. Invariant: nothing here allocates, logs or waits; a refusal is
// counted once, here.
public import STUNCodec

extension TURNServerCore {
    // MARK: Send indication (RFC 8656 §11.2)

    func handleSend(_ m: STUNMessageView, _ fiveTuple: FiveTuple, _ now: CoreTime) -> ClientMessageOutcome {
        counters.requests[CountedMethod.send.rawValue] &+= 1
        guard let slot = byFiveTuple[fiveTuple] else {
            counters.drop(.noAllocation)
            return .none
        }
        guard let peer = m.xorAddress(.xorPeerAddress), let data = m.value(of: .data) else {
            counters.drop(.badIndication)
            return .none
        }
        guard let relay = slots[slot]!.relay(for: peer.family) else {
            counters.drop(.badIndication)
            return .none
        }
        guard slots[slot]!.hasPermission(peer.ip, now: now.milliseconds) else {
            counters.drop(.noPermission)
            return .none
        }
        guard policy.peers.allows(peer.ip) else {
            counters.drop(.peerDenied)
            return .none
        }
        guard chargeClientToPeer(slot, data.count, now) else { return .none }
        counters.relayedPacketsClientToPeer[1] &+= 1
        counters.relayedBytesClientToPeer[1] &+= UInt64(data.count)
        return .relay(handle: relay.handle, peer: peer, payload: data)
    }

    @inline(__always)
    func chargeClientToPeer(_ slot: Int, _ n: Int, _ now: CoreTime) -> Bool {
        if slots[slot]!.bucketIn != nil, !slots[slot]!.bucketIn!.take(n, now: now.milliseconds) {
            counters.drop(.bandwidthExceeded)
            return false
        }
        slots[slot]!.traffic.packetsFromClient &+= 1
        slots[slot]!.traffic.bytesFromClient &+= UInt64(n)
        return true
    }

    // MARK: - The packet path

    /// Where a ChannelData message from a client goes: the relay socket and the bound peer.
    /// Returns nil (and counts the drop) when there is no allocation or the channel is unbound.
    public func routeChannelData(channel: UInt16, length: Int, from fiveTuple: FiveTuple, now: CoreTime)
        -> (handle: Int32, peer: TransportAddress)?
    {
        guard let slot = byFiveTuple[fiveTuple] else {
            counters.drop(.noAllocation)
            return nil
        }
        return routeChannelData(channel: channel, length: length, slot: slot, now: now)
    }

    /// As `routeChannelData(channel:length:from:now:)` for a caller that knows the slot
    /// (stream connections remember theirs).
    public func routeChannelData(channel: UInt16, length: Int, slot: Int, now: CoreTime)
        -> (handle: Int32, peer: TransportAddress)?
    {
        guard let a = slots[slot] else {
            counters.drop(.noAllocation)
            return nil
        }
        guard let peer = a.peer(onChannel: channel, now: now.milliseconds), let relay = a.relay(for: peer.family) else {
            counters.drop(.unboundChannel)
            return nil
        }
        guard a.hasPermission(peer.ip, now: now.milliseconds) else {
            counters.drop(.noPermission)
            return nil
        }
        guard chargeClientToPeer(slot, length, now) else { return nil }
        counters.relayedPacketsClientToPeer[0] &+= 1
        counters.relayedBytesClientToPeer[0] &+= UInt64(length)
        return (relay.handle, peer)
    }

    /// How a datagram of `length` bytes from `peer`, received on the relay socket of `slot`,
    /// reaches the client.
    public func routePeerData(slot: Int, from peer: TransportAddress, length: Int, now: CoreTime) -> PeerRoute {
        guard slot < slots.count, let a = slots[slot] else {
            counters.drop(.noAllocation)
            return .drop
        }
        guard a.hasPermission(peer.ip, now: now.milliseconds) else {
            counters.drop(.noPermission)
            return .drop
        }
        if slots[slot]!.bucketOut != nil, !slots[slot]!.bucketOut!.take(length, now: now.milliseconds) {
            counters.drop(.bandwidthExceeded)
            return .drop
        }
        slots[slot]!.traffic.packetsToClient &+= 1
        slots[slot]!.traffic.bytesToClient &+= UInt64(length)
        if let number = a.channel(to: peer, now: now.milliseconds) {
            counters.relayedPacketsPeerToClient[0] &+= 1
            counters.relayedBytesPeerToClient[0] &+= UInt64(length)
            return .channel(number, a.fiveTuple)
        }
        counters.relayedPacketsPeerToClient[1] &+= 1
        counters.relayedBytesPeerToClient[1] &+= UInt64(length)
        return .indication(a.fiveTuple)
    }

    /// Whether an ICMP error about `peer` on the relay of `slot` may be passed to the client
    /// (RFC 8656 §11.5: only with a permission for the peer).
    public func routeICMP(slot: Int, peer: TransportAddress, now: CoreTime) -> FiveTuple? {
        guard slot < slots.count, let a = slots[slot], a.hasPermission(peer.ip, now: now.milliseconds) else {
            return nil
        }
        return a.fiveTuple
    }
}

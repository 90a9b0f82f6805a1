// What a kernel fast path needs of the core: the route of an allocation whose bindings it
// mirrors (from `CoreEffect`s), and a way to hand back the traffic it relayed so that the
// allocation's counters, the server's totals and usage records are the same with it on or off.
// Invariant: nothing here changes routing state; traffic added is counted as ChannelData relayed.
import STUNCodec

/// The parts of an allocation a kernel fast path needs to forward its channels.
public struct FastPathRoute: Sendable, Hashable {
    /// The client's 5-tuple.
    public var fiveTuple: FiveTuple
    /// Its UDP relay sockets (one per family).
    public var relays: [RelayEndpoint]
    /// The allocation has a bandwidth cap, which only the core enforces.
    public var bandwidthCapped: Bool
    /// The relayed transport.
    public var relayTransport: RelayTransport
}

extension TrafficCounters {
    /// Whether nothing was counted.
    public var isEmpty: Bool { packetsFromClient == 0 && packetsToClient == 0 }

    /// Adds `o` to these counters.
    public mutating func add(_ o: TrafficCounters) {
        packetsFromClient &+= o.packetsFromClient
        bytesFromClient &+= o.bytesFromClient
        packetsToClient &+= o.packetsToClient
        bytesToClient &+= o.bytesToClient
    }
}

extension TURNServerCore {
    /// The route of the allocation in `slot`, or nil when the slot is free.
    public func fastPathRoute(slot: Int) -> FastPathRoute? {
        guard slot >= 0, slot < slots.count, let a = slots[slot] else { return nil }
        return FastPathRoute(
            fiveTuple: a.fiveTuple, relays: a.relays, bandwidthCapped: a.bucketIn != nil || a.bucketOut != nil,
            relayTransport: a.relayTransport)
    }

    /// Counts traffic a fast path relayed on `slot`'s channels: in the allocation's counters when
    /// `slot` is still the allocation's (`ended` false), and in the server's relayed totals always.
    public func addFastPathTraffic(_ t: TrafficCounters, slot: Int, ended: Bool) {
        if !ended, slot >= 0, slot < slots.count, slots[slot] != nil {
            slots[slot]!.traffic.add(t)
        }
        counters.relayedPacketsClientToPeer[0] &+= t.packetsFromClient
        counters.relayedBytesClientToPeer[0] &+= t.bytesFromClient
        counters.relayedPacketsPeerToClient[0] &+= t.packetsToClient
        counters.relayedBytesPeerToClient[0] &+= t.bytesToClient
    }
}

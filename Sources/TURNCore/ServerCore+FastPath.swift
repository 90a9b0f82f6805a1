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

/// Traffic a fast path relayed on an allocation's channels since it last reported.
public struct FastPathTraffic: Sendable, Hashable {
    /// ChannelData datagrams from the client relayed to peers.
    public var packetsToPeer: UInt64 = 0
    /// Their payload bytes.
    public var bytesToPeer: UInt64 = 0
    /// Datagrams from peers relayed to the client as ChannelData.
    public var packetsToClient: UInt64 = 0
    /// Their payload bytes.
    public var bytesToClient: UInt64 = 0

    /// No traffic.
    public init() {}

    /// Whether nothing was relayed.
    public var isEmpty: Bool { packetsToPeer == 0 && packetsToClient == 0 }

    /// Adds `o` to this.
    public mutating func add(_ o: FastPathTraffic) {
        packetsToPeer &+= o.packetsToPeer
        bytesToPeer &+= o.bytesToPeer
        packetsToClient &+= o.packetsToClient
        bytesToClient &+= o.bytesToClient
    }
}

extension TrafficCounters {
    /// Adds what a fast path relayed.
    public mutating func add(_ t: FastPathTraffic) {
        packetsFromClient &+= t.packetsToPeer
        bytesFromClient &+= t.bytesToPeer
        packetsToClient &+= t.packetsToClient
        bytesToClient &+= t.bytesToClient
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
    public func addFastPathTraffic(_ t: FastPathTraffic, slot: Int, ended: Bool) {
        if !ended, slot >= 0, slot < slots.count, slots[slot] != nil {
            slots[slot]!.traffic.add(t)
        }
        counters.relayedPacketsClientToPeer[0] &+= t.packetsToPeer
        counters.relayedBytesClientToPeer[0] &+= t.bytesToPeer
        counters.relayedPacketsPeerToClient[0] &+= t.packetsToClient
        counters.relayedBytesPeerToClient[0] &+= t.bytesToClient
    }
}

// One shard's copy of its allocations' bindings in the XDP program's maps, kept from the core's
// binding effects, and the traffic the program relayed handed back to the core.
//
// Invariants:
// - the maps hold an entry only while the core's state holds it: effects are applied in the
//   order the core decided them, each removal deletes at once, and every entry carries the
//   core's expiry stamp, which the program enforces itself;
// - only allocations the program can serve exactly as the socket path would are mirrored: a UDP
//   client on a specific (not wildcard) server address, a UDP relay of the client's family, no
//   bandwidth cap (caps are enforced by the core alone, so capped allocations stay on the socket
//   path);
// - every datagram the program counted reaches the core once: deltas at each harvest, the rest
//   when a binding is removed (its counters are read and deleted in one call).
// Confined to the shard's queue; no map call happens per packet.
import CTraverseXDP
import STUNCodec
import TURNCore

struct FastPathMirror {
    let program: XDPProgram

    private struct Channel {
        var peer: TransportAddress
        var reported = TrafficCounters()
    }

    private struct Mirrored {
        let route: FastPathRoute
        var permissions: Set<IPAddress> = []
        var channels: [UInt16: Channel] = [:]
    }

    private var allocations: [Int: Mirrored] = [:]
    /// Traffic counted for allocations that ended, until their `.ended` event is drained.
    private(set) var endedTraffic: [FiveTuple: TrafficCounters] = [:]
    /// Channels mirrored in the maps.
    private(set) var channelCount = 0

    init(program: XDPProgram) { self.program = program }

    /// Whether the program can serve an allocation with this route.
    static func eligible(_ r: FastPathRoute) -> Bool {
        r.fiveTuple.transport == .udp && r.relayTransport == .udp && !r.bandwidthCapped
            && r.fiveTuple.server.ip != .anyIPv4 && r.fiveTuple.server.ip != .anyIPv6
    }

    // MARK: Effects

    mutating func apply(_ effect: CoreEffect, _ core: TURNServerCore) {
        switch effect {
        case .permissionInstalled(let slot, let peer, let expiry):
            guard let relay = relay(slot, for: peer.family, core) else { return }
            program.update(program.permissionsFD, Self.permissionKey(relay, peer), Self.expiry(expiry))
            allocations[slot]!.permissions.insert(peer)
        case .permissionRemoved(let slot, let peer):
            guard let relay = allocations[slot]?.route.relays.first(where: { $0.address.family == peer.family }),
                allocations[slot]!.permissions.remove(peer) != nil
            else { return }
            program.delete(program.permissionsFD, Self.permissionKey(relay, peer))
        case .channelBound(let slot, let channel, let peer, let expiry):
            guard let relay = relay(slot, for: peer.family, core) else { return }
            let ft = allocations[slot]!.route.fiveTuple
            let ck = Self.channelKey(ft, channel)
            let pk = Self.peerKey(relay, peer)
            var cv = traverse_xdp_channel_value()
            Self.write(relay.address.ip, to: &cv.relay_ip)
            Self.write(peer.ip, to: &cv.peer_ip)
            cv.relay_port = relay.address.port.bigEndian
            cv.peer_port = peer.port.bigEndian
            cv.expiry_ns = Self.expiry(expiry).expiry_ns
            var pv = traverse_xdp_peer_value()
            Self.write(ft.client.ip, to: &pv.client_ip)
            Self.write(ft.server.ip, to: &pv.server_ip)
            pv.client_port = ft.client.port.bigEndian
            pv.server_port = ft.server.port.bigEndian
            pv.channel = channel.bigEndian
            pv.expiry_ns = cv.expiry_ns
            if allocations[slot]!.channels[channel] == nil {
                // Counters first, so that no forwarded datagram goes uncounted.
                let zeros = [traverse_xdp_counters](repeating: traverse_xdp_counters(), count: program.cpus)
                zeros.withUnsafeBytes { z in
                    withUnsafeBytes(of: ck) { k in
                        _ = traverse_xdp_map_insert(program.channelCountersFD, k.baseAddress, z.baseAddress)
                    }
                    withUnsafeBytes(of: pk) { k in
                        _ = traverse_xdp_map_insert(program.peerCountersFD, k.baseAddress, z.baseAddress)
                    }
                }
                allocations[slot]!.channels[channel] = Channel(peer: peer)
                channelCount += 1
            }
            program.update(program.channelsFD, ck, cv)
            program.update(program.peersFD, pk, pv)
        case .channelRemoved(let slot, let channel, _):
            guard allocations[slot]?.channels[channel] != nil else { return }
            let t = removeChannel(slot, channel)
            core.addFastPathTraffic(t, slot: slot, ended: false)
        case .allocationEnded(let slot):
            guard let a = allocations[slot] else { return }
            var total = TrafficCounters()
            for channel in a.channels.keys { total.add(removeChannel(slot, channel)) }
            for peer in a.permissions {
                if let relay = a.route.relays.first(where: { $0.address.family == peer.family }) {
                    program.delete(program.permissionsFD, Self.permissionKey(relay, peer))
                }
            }
            allocations[slot] = nil
            core.addFastPathTraffic(total, slot: slot, ended: true)
            if !total.isEmpty { endedTraffic[a.route.fiveTuple, default: TrafficCounters()].add(total) }
        case .closeRelay:
            break
        }
    }

    /// Traffic counted for the allocation of `fiveTuple`, which ended; forgotten once taken.
    mutating func takeEndedTraffic(_ fiveTuple: FiveTuple) -> TrafficCounters? {
        endedTraffic.removeValue(forKey: fiveTuple)
    }

    /// Hands the traffic counted since the last harvest to the core (allocation counters and
    /// the server's totals).
    mutating func harvest(_ core: TURNServerCore) {
        for (slot, a) in allocations where !a.channels.isEmpty {
            var total = TrafficCounters()
            for (number, channel) in a.channels {
                let now = read(slot, number, channel.peer, delete: false)
                var delta = TrafficCounters()
                delta.packetsFromClient = now.packetsFromClient &- channel.reported.packetsFromClient
                delta.bytesFromClient = now.bytesFromClient &- channel.reported.bytesFromClient
                delta.packetsToClient = now.packetsToClient &- channel.reported.packetsToClient
                delta.bytesToClient = now.bytesToClient &- channel.reported.bytesToClient
                allocations[slot]!.channels[number]!.reported = now
                total.add(delta)
            }
            if !total.isEmpty { core.addFastPathTraffic(total, slot: slot, ended: false) }
        }
    }

    // MARK: Helpers

    /// The mirrored allocation's relay for `family`, mirroring the allocation first if needed;
    /// nil when the program cannot serve it.
    private mutating func relay(_ slot: Int, for family: AddressFamily, _ core: TURNServerCore) -> RelayEndpoint? {
        if allocations[slot] == nil {
            guard let route = core.fastPathRoute(slot: slot), Self.eligible(route) else { return nil }
            allocations[slot] = Mirrored(route: route)
        }
        let route = allocations[slot]!.route
        // The program rewrites addresses in place: the client and the peer share a family.
        guard family == route.fiveTuple.client.family else { return nil }
        return route.relays.first { $0.address.family == family }
    }

    /// Deletes a channel's entries; returns what was counted on it since the last harvest.
    private mutating func removeChannel(_ slot: Int, _ number: UInt16) -> TrafficCounters {
        guard let a = allocations[slot], let channel = a.channels[number],
            let relay = a.route.relays.first(where: { $0.address.family == channel.peer.family })
        else { return TrafficCounters() }
        // Routing entries first (forwarding stops), then the counters, read and deleted at once.
        program.delete(program.channelsFD, Self.channelKey(a.route.fiveTuple, number))
        program.delete(program.peersFD, Self.peerKey(relay, channel.peer))
        let final = read(slot, number, channel.peer, delete: true)
        allocations[slot]!.channels[number] = nil
        channelCount -= 1
        var delta = TrafficCounters()
        delta.packetsFromClient = final.packetsFromClient &- channel.reported.packetsFromClient
        delta.bytesFromClient = final.bytesFromClient &- channel.reported.bytesFromClient
        delta.packetsToClient = final.packetsToClient &- channel.reported.packetsToClient
        delta.bytesToClient = final.bytesToClient &- channel.reported.bytesToClient
        return delta
    }

    /// A channel's counters as the program holds them (or its last report, if gone).
    private func read(_ slot: Int, _ number: UInt16, _ peer: TransportAddress, delete: Bool) -> TrafficCounters {
        guard let a = allocations[slot], let relay = a.route.relays.first(where: { $0.address.family == peer.family })
        else { return TrafficCounters() }
        let reported = a.channels[number]?.reported ?? TrafficCounters()
        var t = reported
        if let up = program.counters(
            program.channelCountersFD, Self.channelKey(a.route.fiveTuple, number), delete: delete)
        {
            t.packetsFromClient = up.packets
            t.bytesFromClient = up.bytes
        }
        if let down = program.counters(program.peerCountersFD, Self.peerKey(relay, peer), delete: delete) {
            t.packetsToClient = down.packets
            t.bytesToClient = down.bytes
        }
        return t
    }

    static func family(_ f: AddressFamily) -> UInt8 {
        f == .ipv4 ? UInt8(TRAVERSE_XDP_INET) : UInt8(TRAVERSE_XDP_INET6)
    }

    /// Writes `ip` into a 16-byte C array (IPv4 in the first 4 bytes, the rest zero).
    static func write<T>(_ ip: IPAddress, to field: inout T) {
        let bytes = ip.bytes
        withUnsafeMutableBytes(of: &field) { raw in
            for i in 0..<raw.count { raw[i] = i < bytes.count ? bytes[i] : 0 }
        }
    }

    static func expiry(_ milliseconds: UInt64) -> traverse_xdp_permission_value {
        traverse_xdp_permission_value(expiry_ns: milliseconds &* 1_000_000)
    }

    static func permissionKey(_ relay: RelayEndpoint, _ peer: IPAddress) -> traverse_xdp_permission_key {
        var k = traverse_xdp_permission_key()
        write(relay.address.ip, to: &k.relay_ip)
        write(peer, to: &k.peer_ip)
        k.relay_port = relay.address.port.bigEndian
        k.family = family(peer.family)
        return k
    }

    static func channelKey(_ ft: FiveTuple, _ channel: UInt16) -> traverse_xdp_channel_key {
        var k = traverse_xdp_channel_key()
        write(ft.client.ip, to: &k.client_ip)
        write(ft.server.ip, to: &k.server_ip)
        k.client_port = ft.client.port.bigEndian
        k.server_port = ft.server.port.bigEndian
        k.channel = channel.bigEndian
        k.family = family(ft.client.family)
        return k
    }

    static func peerKey(_ relay: RelayEndpoint, _ peer: TransportAddress) -> traverse_xdp_peer_key {
        var k = traverse_xdp_peer_key()
        write(relay.address.ip, to: &k.relay_ip)
        write(peer.ip, to: &k.peer_ip)
        k.relay_port = relay.address.port.bigEndian
        k.peer_port = peer.port.bigEndian
        k.family = family(peer.family)
        return k
    }
}

import STUNCodec
import TURNCore
import Testing

@Suite("Permissions, channels and the packet path (RFC 8656 §9–§12)")
struct PermissionChannelTests {
    /// A harness and an allocated client; IPv4 and IPv6 relays.
    func allocated(
        dual: Bool = false, peers: PeerPolicy = PeerPolicy(allowed: [CIDR("127.0.0.0/8")!]),
        lifetime: UInt32 = 3600, configure: (inout CoreConfiguration) -> Void = { _ in }
    ) -> (Harness, Client) {
        let h = Harness(
            configure: {
                $0.relayFamilies = [.ipv4, .ipv6]
                configure(&$0)
            }, peers: peers)
        let c = Client(h)
        let outcome = c.allocate([.lifetime(lifetime)] + (dual ? [.additionalAddressFamily(.ipv6)] : []))
        #expect(outcome.isSuccess)
        return (h, c)
    }

    let peerA = peer("8.8.8.8:5000")
    let peerB = peer("8.8.4.4:6000")

    @Test("CreatePermission then a Send indication relays DATA from the relay socket")
    func sendIndication() {
        let (h, c) = allocated()
        #expect(c.createPermission([peerA]).isSuccess)
        guard case .relay(let handle, let to, let payload) = c.sendIndication(to: peerA, [1, 2, 3]) else {
            Issue.record("Send indication not relayed")
            return
        }
        #expect(handle == 100)
        #expect(to == peerA)
        #expect(payload == [1, 2, 3])
        // Any port of a permitted IP.
        guard case .relay = c.sendIndication(to: peer("8.8.8.8:1"), []) else {
            Issue.record("permission must ignore the port")
            return
        }
        #expect(h.core.counters.relayedPacketsClientToPeer[1] == 2)
    }

    @Test("A Send indication without permission is dropped and counted")
    func sendWithoutPermission() {
        let (h, c) = allocated()
        #expect(c.sendIndication(to: peerA, [1]).isNone)
        #expect(h.counter(.noPermission) == 1)
        #expect(c.createPermission([peerB]).isSuccess)
        #expect(c.sendIndication(to: peerA, [1]).isNone)
        #expect(h.counter(.noPermission) == 2)
    }

    @Test("A Send indication without an allocation, or without DATA, is dropped and counted")
    func sendDrops() {
        let h = Harness()
        let c = Client(h)
        #expect(c.sendIndication(to: peerA, [1]).isNone)
        #expect(h.counter(.noAllocation) == 1)
        #expect(c.allocate().isSuccess)
        #expect(c.createPermission([peerA]).isSuccess)
        let noData = STUNMessage(type: .init(method: .send, class: .indication), attributes: [.xorPeerAddress(peerA)])
        #expect(h.send(noData, from: c.fiveTuple).isNone)
        #expect(h.counter(.badIndication) == 1)
    }

    @Test("CreatePermission without XOR-PEER-ADDRESS is a 400")
    func createPermissionEmpty() {
        let (_, c) = allocated()
        #expect(c.request(.createPermission, []).errorCode == 400)
    }

    @Test("CreatePermission with several peers installs each")
    func createPermissionSeveral() {
        let (h, c) = allocated()
        #expect(c.createPermission([peerA, peerB]).isSuccess)
        let slot = c.slot!
        #expect(h.core.routePeerData(slot: slot, from: peerA, length: 1, now: h.now) == .indication(c.fiveTuple))
        #expect(h.core.routePeerData(slot: slot, from: peerB, length: 1, now: h.now) == .indication(c.fiveTuple))
    }

    @Test("CreatePermission of an IPv6 peer on an IPv4 allocation is a 443")
    func permissionFamilyMismatch() {
        let (_, c) = allocated()
        #expect(c.createPermission([peer("[2001:4860:4860::8888]:53")]).errorCode == 443)
        #expect(c.channelBind(0x4000, peer("[2001:4860:4860::8888]:53")).errorCode == 443)
    }

    @Test("Too many permissions is a 508")
    func permissionCapacity() {
        let (_, c) = allocated { $0.maxPermissionsPerAllocation = 2 }
        #expect(c.createPermission([peerA, peerB]).isSuccess)
        #expect(c.createPermission([peerA]).isSuccess)  // refresh, not new
        #expect(c.createPermission([peer("9.9.9.9:1")]).errorCode == 508)
    }

    /// Found by fuzz-core (Fuzz/corpus/fuzz-core/crash-channel-bind-over-permission-quota).
    @Test("The permission a ChannelBind installs counts against the permission quota")
    func channelBindPermissionCapacity() {
        let (_, c) = allocated { $0.maxPermissionsPerAllocation = 2 }
        #expect(c.createPermission([peerA, peerB]).isSuccess)
        #expect(c.channelBind(0x4000, peer("9.9.9.9:1")).errorCode == 508)
        #expect(c.channelBind(0x4000, peerA).isSuccess)  // its permission exists: refreshed, not new
    }

    static let deniedPeers = [
        "127.0.0.1:5000", "[::ffff:127.0.0.1]:5000", "0.0.0.0:5000", "[::]:5000", "[64:ff9b::7f00:1]:5000",
        "[2002:7f00:1::]:5000", "169.254.169.254:80", "10.1.2.3:5000", "[::1]:5000", "192.168.1.1:5000",
        "172.16.0.1:1", "100.64.0.1:1", "224.0.0.1:1", "[fe80::1]:1", "[fc00::1]:1", "[::127.0.0.1]:1",
        "[2001:0:4136:e378:8000:63bf:80ff:fffe]:1",
    ]

    @Test("Peer policy: default-denied peers are 403 on CreatePermission and ChannelBind", arguments: deniedPeers)
    func deniedPeer(text: String) {
        let (h, c) = allocated(dual: true, peers: PeerPolicy())
        let p = peer(text)
        #expect(c.createPermission([p]).errorCode == 403)
        #expect(c.channelBind(0x4000, p).errorCode == 403)
        #expect(h.counter(.peerDenied) == 2)
        // A Send indication to it goes nowhere either.
        #expect(c.sendIndication(to: p, [1]).isNone)
    }

    @Test("Peer policy: 127.0.0.1 is allowed when the allow list has 127.0.0.0/8; the mapped form stays denied")
    func allowedLoopback() {
        let (_, c) = allocated(dual: true, peers: PeerPolicy(allowed: [CIDR("127.0.0.0/8")!]))
        #expect(c.createPermission([peer("127.0.0.1:5000")]).isSuccess)
        #expect(c.channelBind(0x4000, peer("127.0.0.1:5000")).isSuccess)
        #expect(c.createPermission([peer("10.1.2.3:5000")]).errorCode == 403)
    }

    @Test(
        "Peer policy: a public address is allowed; the operator's deny list wins",
        arguments: ["8.8.8.8:53", "[2001:4860:4860::8888]:53"])
    func publicPeer(text: String) {
        let (_, c) = allocated(dual: true, peers: PeerPolicy())
        #expect(c.createPermission([peer(text)]).isSuccess)
        let (_, d) = allocated(
            dual: true,
            peers: PeerPolicy(allowed: [CIDR("0.0.0.0/0")!], denied: [CIDR("8.8.8.0/24")!, CIDR("2001:4860::/32")!]))
        #expect(d.createPermission([peer(text)]).errorCode == 403)
    }

    @Test("A denied peer among allowed ones refuses the whole CreatePermission")
    func mixedPeers() {
        let (h, c) = allocated(peers: PeerPolicy())
        #expect(c.createPermission([peerA, peer("10.0.0.1:1")]).errorCode == 403)
        #expect(h.core.routePeerData(slot: c.slot!, from: peerA, length: 1, now: h.now) == .drop)
    }

    @Test("A permission expires after 300 s: peer data is then dropped")
    func permissionExpiry() {
        let (h, c) = allocated()
        #expect(c.createPermission([peerA]).isSuccess)
        let slot = c.slot!
        h.advance(seconds: 299)
        #expect(h.core.routePeerData(slot: slot, from: peerA, length: 10, now: h.now) == .indication(c.fiveTuple))
        h.advance(seconds: 1)
        #expect(h.core.routePeerData(slot: slot, from: peerA, length: 10, now: h.now) == .drop)
        #expect(h.counter(.noPermission) == 1)
        #expect(c.sendIndication(to: peerA, [1]).isNone)
        h.core.sweep(now: h.now)
        #expect(h.core.allocation(inSlot: slot)?.permissions.isEmpty == true)
    }

    @Test("A CreatePermission refresh resets the 300 s")
    func permissionRefresh() {
        let (h, c) = allocated()
        #expect(c.createPermission([peerA]).isSuccess)
        h.advance(seconds: 200)
        #expect(c.createPermission([peerA]).isSuccess)
        h.advance(seconds: 200)
        #expect(h.core.routePeerData(slot: c.slot!, from: peerA, length: 1, now: h.now) == .indication(c.fiveTuple))
    }

    @Test("Peer data without a permission is dropped; from an unknown slot too")
    func peerDataDrops() {
        let (h, c) = allocated()
        #expect(h.core.routePeerData(slot: c.slot!, from: peerA, length: 1, now: h.now) == .drop)
        #expect(h.core.routePeerData(slot: 999, from: peerA, length: 1, now: h.now) == .drop)
        #expect(h.counter(.noAllocation) == 1)
    }

    @Test("ChannelBind: ChannelData routes to the peer; the peer's data comes back on the channel")
    func channelRouting() {
        let (h, c) = allocated()
        #expect(c.channelBind(0x4000, peerA).isSuccess)
        let route = h.core.routeChannelData(channel: 0x4000, length: 20, from: c.fiveTuple, now: h.now)
        #expect(route?.handle == 100)
        #expect(route?.peer == peerA)
        let slot = c.slot!
        #expect(h.core.routePeerData(slot: slot, from: peerA, length: 20, now: h.now) == .channel(0x4000, c.fiveTuple))
        // Same IP, other port: permitted, but not the bound address → Data indication.
        #expect(
            h.core.routePeerData(slot: slot, from: peer("8.8.8.8:5001"), length: 20, now: h.now)
                == .indication(c.fiveTuple))
        #expect(h.core.counters.relayedPacketsClientToPeer[0] == 1)
        #expect(h.core.counters.relayedPacketsPeerToClient == [1, 1])
        #expect(h.core.counters.relayedBytesPeerToClient == [20, 20])
        // Unbound channel and unknown 5-tuple drop.
        #expect(h.core.routeChannelData(channel: 0x4001, length: 1, from: c.fiveTuple, now: h.now) == nil)
        #expect(h.counter(.unboundChannel) == 1)
        #expect(h.core.routeChannelData(channel: 0x4000, length: 1, from: tuple("192.0.2.77:1"), now: h.now) == nil)
        #expect(h.counter(.noAllocation) == 1)
        // The slot form agrees.
        #expect(h.core.routeChannelData(channel: 0x4000, length: 1, slot: slot, now: h.now)?.peer == peerA)
    }

    @Test("ChannelBind missing CHANNEL-NUMBER or XOR-PEER-ADDRESS is a 400")
    func channelBindMissing() {
        let (_, c) = allocated()
        #expect(c.request(.channelBind, [.xorPeerAddress(peerA)]).errorCode == 400)
        #expect(c.request(.channelBind, [.channelNumber(0x4000)]).errorCode == 400)
        #expect(c.request(.channelBind, []).errorCode == 400)
    }

    @Test(
        "Channel numbers outside 0x4000–0x4FFF are a 400", arguments: [UInt16(0x3FFF), 0x5000, 0x7FFF, 0x0000, 0xFFFF])
    func channelRange(number: UInt16) {
        let (h, c) = allocated()
        #expect(c.channelBind(number, peerA).errorCode == 400)
        #expect(h.core.allocation(inSlot: c.slot!)?.channels.isEmpty == true)
    }

    @Test("Channel numbers at the ends of the range are accepted", arguments: [UInt16(0x4000), 0x4FFF])
    func channelRangeEnds(number: UInt16) {
        let (_, c) = allocated()
        #expect(c.channelBind(number, peerA).isSuccess)
    }

    @Test("Legacy channel numbers: 0x5000–0x7FFF accepted when enabled, 0x8000 still refused")
    func legacyChannels() {
        let (_, c) = allocated { $0.legacyChannelNumbers = true }
        #expect(c.channelBind(0x5000, peerA).isSuccess)
        #expect(c.channelBind(0x7FFF, peerB).isSuccess)
        #expect(c.channelBind(0x8000, peer("9.9.9.9:1")).errorCode == 400)
    }

    @Test("Rebinding: same channel to another peer, or same peer to another channel, is a 400; same pair refreshes")
    func rebinding() {
        let (h, c) = allocated()
        #expect(c.channelBind(0x4000, peerA).isSuccess)
        #expect(c.channelBind(0x4000, peerB).errorCode == 400)
        #expect(c.channelBind(0x4001, peerA).errorCode == 400)
        // Same IP, other port: a different transport address, so another channel is fine.
        #expect(c.channelBind(0x4001, peer("8.8.8.8:5001")).isSuccess)
        h.advance(seconds: 500)
        #expect(c.channelBind(0x4000, peerA).isSuccess)
        h.advance(seconds: 500)
        // Refreshed at 500 s: alive at 1000 s. (The permission needs refreshing too.)
        #expect(c.createPermission([peerA]).isSuccess)
        #expect(h.core.routeChannelData(channel: 0x4000, length: 1, from: c.fiveTuple, now: h.now)?.peer == peerA)
    }

    @Test("Too many channels is a 508")
    func channelCapacity() {
        let (_, c) = allocated { $0.maxChannelsPerAllocation = 1 }
        #expect(c.channelBind(0x4000, peerA).isSuccess)
        #expect(c.channelBind(0x4000, peerA).isSuccess)  // refresh, not new
        #expect(c.channelBind(0x4001, peerB).errorCode == 508)
    }

    @Test("ChannelBind installs and refreshes the permission")
    func channelBindPermission() {
        let (h, c) = allocated()
        #expect(c.channelBind(0x4000, peerA).isSuccess)
        let slot = c.slot!
        // Installed: data from the peer IP (any port) passes.
        #expect(h.core.routePeerData(slot: slot, from: peerA, length: 1, now: h.now) == .channel(0x4000, c.fiveTuple))
        guard case .relay = c.sendIndication(to: peer("8.8.8.8:9"), [0]) else {
            Issue.record("ChannelBind must install a permission")
            return
        }
        h.advance(seconds: 200)
        #expect(c.channelBind(0x4000, peerA).isSuccess)
        h.advance(seconds: 200)
        // 400 s after the first bind: the permission lives because the second bind refreshed it.
        #expect(h.core.routePeerData(slot: slot, from: peerA, length: 1, now: h.now) == .channel(0x4000, c.fiveTuple))
        #expect(h.core.routeChannelData(channel: 0x4000, length: 1, from: c.fiveTuple, now: h.now) != nil)
        h.advance(seconds: 101)
        // 301 s after the second bind: the permission is gone although the channel lives.
        #expect(h.core.routePeerData(slot: slot, from: peerA, length: 1, now: h.now) == .drop)
        #expect(h.core.routeChannelData(channel: 0x4000, length: 1, from: c.fiveTuple, now: h.now) == nil)
    }

    @Test("A channel expires after 600 s: ChannelData is dropped, peer data falls back to Data indications")
    func channelExpiry() {
        let (h, c) = allocated()
        #expect(c.channelBind(0x4000, peerA).isSuccess)
        let slot = c.slot!
        h.advance(seconds: 299)
        #expect(c.createPermission([peerA]).isSuccess)  // keep the permission alive to 599 s
        h.advance(seconds: 299)
        #expect(h.core.routeChannelData(channel: 0x4000, length: 1, from: c.fiveTuple, now: h.now) != nil)
        #expect(c.createPermission([peerA]).isSuccess)
        h.advance(seconds: 2)  // 600 s after the bind
        #expect(h.core.routeChannelData(channel: 0x4000, length: 1, from: c.fiveTuple, now: h.now) == nil)
        #expect(h.counter(.unboundChannel) == 1)
        #expect(h.core.routePeerData(slot: slot, from: peerA, length: 1, now: h.now) == .indication(c.fiveTuple))
        h.core.sweep(now: h.now)
        #expect(h.core.allocation(inSlot: slot)?.channels.isEmpty == true)
        // After expiry the number can be bound to another peer.
        #expect(c.channelBind(0x4000, peerB).isSuccess)
    }

    @Test("Dual-stack allocation: IPv6 peers use the IPv6 relay")
    func dualRelays() {
        let (h, c) = allocated(dual: true, peers: PeerPolicy())
        let v6 = peer("[2001:4860:4860::8888]:53")
        #expect(c.createPermission([v6, peerA]).isSuccess)
        guard case .relay(let handle, _, _) = c.sendIndication(to: v6, [1]) else {
            Issue.record("not relayed")
            return
        }
        #expect(h.core.allocation(inSlot: c.slot!)?.relay(for: .ipv6)?.handle == handle)
        #expect(handle == 101)
    }

    @Test("ICMP is passed on only with a permission for the peer")
    func icmp() {
        let (h, c) = allocated()
        #expect(h.core.routeICMP(slot: c.slot!, peer: peerA, now: h.now) == nil)
        #expect(c.createPermission([peerA]).isSuccess)
        #expect(h.core.routeICMP(slot: c.slot!, peer: peerA, now: h.now) == c.fiveTuple)
    }

    @Test("Bandwidth cap: bytes over the per-allocation budget are dropped and counted")
    func bandwidth() {
        let (h, c) = allocated { $0.bandwidthPerAllocation = 1000 }
        #expect(c.channelBind(0x4000, peerA).isSuccess)
        #expect(h.core.routeChannelData(channel: 0x4000, length: 800, from: c.fiveTuple, now: h.now) != nil)
        #expect(h.core.routeChannelData(channel: 0x4000, length: 800, from: c.fiveTuple, now: h.now) == nil)
        #expect(h.counter(.bandwidthExceeded) == 1)
        h.advance(seconds: 1)
        #expect(h.core.routeChannelData(channel: 0x4000, length: 800, from: c.fiveTuple, now: h.now) != nil)
    }
}

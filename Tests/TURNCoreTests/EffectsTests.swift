import STUNCodec
import TURNCore
import Testing

/// The core's effects are the only way its decisions leave it: relay sockets to close, and the
/// routing state (permissions, channels, their expiry stamps) that a copy kept elsewhere — a
/// kernel fast path — must mirror exactly.
@Suite("Core effects: what the I/O layer carries out, in the order decided")
struct EffectsTests {
    let peerA = peer("8.8.8.8:5000")
    let peerB = peer("8.8.4.4:6000")

    func allocated(configure: (inout CoreConfiguration) -> Void = { _ in }) -> (Harness, Client) {
        let h = Harness(configure: configure, peers: PeerPolicy())
        let c = Client(h)
        #expect(c.allocate([.lifetime(3600)]).isSuccess)
        h.core.effects.removeAll()
        return (h, c)
    }

    @Test("ChannelBind installs the permission, then binds the channel, with the expiry stamps the core enforces")
    func channelBindEffects() {
        let (h, c) = allocated()
        #expect(c.channelBind(0x4000, peerA).isSuccess)
        let t = h.now.milliseconds
        #expect(
            h.core.effects == [
                .permissionInstalled(slot: 0, peer: peerA.ip, expiry: t + 300_000),
                .channelBound(slot: 0, channel: 0x4000, peer: peerA, expiry: t + 600_000),
            ])
        h.core.effects.removeAll()
        // A refresh of the binding a minute later moves both stamps.
        h.advance(seconds: 60)
        #expect(c.channelBind(0x4000, peerA).isSuccess)
        let t2 = h.now.milliseconds
        #expect(
            h.core.effects == [
                .permissionInstalled(slot: 0, peer: peerA.ip, expiry: t2 + 300_000),
                .channelBound(slot: 0, channel: 0x4000, peer: peerA, expiry: t2 + 600_000),
            ])
    }

    @Test("A refused request has no effect")
    func refusalsHaveNoEffect() {
        let (h, c) = allocated()
        #expect(c.channelBind(0x3FFF, peerA).errorCode == 400)  // out of range
        #expect(c.createPermission([peer("127.0.0.1:9")]).errorCode == 403)  // denied peer
        #expect(h.core.effects.isEmpty)
    }

    @Test("The sweep reports what expired: the permission at 300 s, the channel at 600 s")
    func expiryEffects() {
        let (h, c) = allocated()
        #expect(c.channelBind(0x4001, peerB).isSuccess)
        #expect(c.createPermission([peerA]).isSuccess)
        h.core.effects.removeAll()
        h.advance(seconds: 301)
        h.core.sweep(now: h.now)
        #expect(
            Set(h.core.effects)
                == [.permissionRemoved(slot: 0, peer: peerA.ip), .permissionRemoved(slot: 0, peer: peerB.ip)])
        h.core.effects.removeAll()
        h.advance(seconds: 300)
        h.core.sweep(now: h.now)
        #expect(h.core.effects == [.channelRemoved(slot: 0, channel: 0x4001, peer: peerB)])
    }

    @Test("Refresh 0 closes the relay and ends the allocation, in that order")
    func refreshZeroEffects() {
        let (h, c) = allocated()
        #expect(c.channelBind(0x4000, peerA).isSuccess)
        h.core.effects.removeAll()
        #expect(c.refresh(0).isSuccess)
        #expect(h.core.effects == [.closeRelay(h.relays.opened[0]), .allocationEnded(slot: 0)])
    }

    @Test("A reloaded policy that denies a peer removes its permission and channel at the next sweep")
    func policyReloadEffects() {
        let (h, c) = allocated()
        #expect(c.channelBind(0x4000, peerA).isSuccess)
        #expect(c.createPermission([peerB]).isSuccess)
        h.core.effects.removeAll()
        let old = h.shared.policy
        h.shared.replacePolicy(
            CorePolicy(
                credentials: old.credentials, peers: PeerPolicy(denied: [CIDR("8.8.8.8/32")!]),
                bannedClients: old.bannedClients))
        h.core.sweep(now: h.now)
        #expect(
            Set(h.core.effects)
                == [
                    .permissionRemoved(slot: 0, peer: peerA.ip), .channelRemoved(slot: 0, channel: 0x4000, peer: peerA),
                ])
    }
}

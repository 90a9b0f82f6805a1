import STUNCodec
import TURNCore
import Testing

/// Issue 10, part 8: removing a credential revokes what was made with it (`Revocation.swift`).
@Suite("Revocation: removing a credential ends its allocations")
struct RevocationTests {
    /// The reason the last allocation that ended was ended for.
    func lastEndReason(_ h: Harness) -> AllocationEndReason? {
        for e in h.core.events.reversed() {
            if case .ended(_, _, _, _, let reason) = e { return reason }
        }
        return nil
    }

    func replaceCredentials(_ h: Harness, _ change: (inout CredentialStore) -> Void) {
        var policy = h.shared.policy
        change(&policy.credentials)
        h.shared.replacePolicy(policy)
    }

    func withoutUser(_ name: String, _ h: Harness, password: (String) -> String? = { _ in nil }) -> CredentialStore {
        var passwords = Harness.defaultUsers
        passwords[name] = password(name)
        return CredentialStore(realm: realm, passwords: passwords.compactMapValues { $0 })
    }

    @Test("A static user removed on reload: its Refresh is refused at once and its allocation ends at the next sweep")
    func staticUserRemoved() {
        let h = Harness()
        let alice = Client(h)
        let bob = Client(h, "203.0.113.6:40000", user: "bob", password: "builder")
        #expect(alice.allocate().isSuccess)
        #expect(bob.allocate().isSuccess)
        #expect(alice.refresh(600).isSuccess)
        replaceCredentials(h) { $0 = withoutUser("alice", h) }
        // Before the sweep, the remembered key no longer refreshes.
        #expect(alice.refresh(600).errorCode == 401)
        h.core.sweep(now: h.now)
        #expect(alice.slot == nil)
        #expect(lastEndReason(h) == .revoked)
        #expect(h.relays.open.count == 1)
        #expect(h.shared.allocationCount == 1)
        // Bob is untouched, also at later sweeps.
        h.advance(seconds: 5)
        h.core.sweep(now: h.now)
        #expect(bob.slot != nil)
        #expect(bob.refresh(600).isSuccess)
    }

    @Test("A static user's password changed on reload ends its allocation at the next sweep")
    func staticPasswordChanged() {
        let h = Harness()
        let alice = Client(h)
        #expect(alice.allocate().isSuccess)
        replaceCredentials(h) { $0 = withoutUser("alice", h, password: { _ in "new password" }) }
        h.core.sweep(now: h.now)
        #expect(alice.slot == nil)
        #expect(lastEndReason(h) == .revoked)
        // The new password works for a new allocation.
        let again = Client(h, "203.0.113.5:40001", user: "alice", password: "new password")
        #expect(again.allocate().isSuccess)
    }

    @Test("An allocation made with a SHA-256 key is revoked and kept like an MD5 one")
    func sha256Keys() throws {
        let store = CredentialStore(realm: realm, passwords: ["alice": "wonderland"])
        #expect(store.derives(sha256Key("alice", realm, "wonderland"), for: "alice"))
        #expect(store.derives(md5Key("alice", realm, "wonderland"), for: "alice"))
        #expect(!store.derives(sha256Key("alice", realm, "other"), for: "alice"))
        #expect(!store.derives(md5Key("alice", "other.realm", "wonderland"), for: "alice"))
        #expect(!store.derives(md5Key("carol", realm, "wonderland"), for: "carol"))
    }

    @Test("A reload that keeps the user (other users change) keeps its allocation")
    func unrelatedChange() {
        let h = Harness()
        let alice = Client(h)
        #expect(alice.allocate().isSuccess)
        replaceCredentials(h) { $0 = withoutUser("bob", h) }
        h.core.sweep(now: h.now)
        #expect(alice.slot != nil)
        #expect(alice.refresh(600).isSuccess)
    }

    @Test("A realm change changes every key: allocations made under the old realm end")
    func realmChange() {
        let h = Harness()
        let alice = Client(h)
        #expect(alice.allocate().isSuccess)
        replaceCredentials(h) { $0 = CredentialStore(realm: "new.example", passwords: Harness.defaultUsers) }
        h.core.sweep(now: h.now)
        #expect(alice.slot == nil)
    }

    func restClient(_ h: Harness, secret: String, ttl: Int64, port: Int = 40000) -> Client {
        let username = "\(h.now.unixSeconds + ttl):app-user"
        let password = RESTCredentials.password(secret: Array(secret.utf8), username: username)
        return Client(h, "203.0.113.5:\(port)", user: username, password: password)
    }

    @Test("A REST secret rotated away: its allocations refresh until their username expires, then end at the sweep")
    func restSecretRotatedAway() {
        let h = Harness(users: [:], rest: RESTCredentials(secrets: [Array("old".utf8)]))
        let c = restClient(h, secret: "old", ttl: 120)
        #expect(c.allocate().isSuccess)
        replaceCredentials(h) { $0.rest = RESTCredentials(secrets: [Array("new".utf8)]) }
        h.core.sweep(now: h.now)
        #expect(c.slot != nil)
        h.advance(seconds: 60)
        #expect(c.refresh(600).isSuccess)
        h.core.sweep(now: h.now)
        #expect(c.slot != nil)
        h.advance(seconds: 61)
        h.core.sweep(now: h.now)
        #expect(c.slot == nil)
        #expect(lastEndReason(h) == .revoked)
    }

    @Test("Every REST secret removed: the allocation still lasts until its username expires")
    func restSecretsAllRemoved() {
        let h = Harness(users: ["alice": "wonderland"], rest: RESTCredentials(secrets: [Array("old".utf8)]))
        let c = restClient(h, secret: "old", ttl: 30)
        #expect(c.allocate().isSuccess)
        replaceCredentials(h) { $0.rest = nil }
        h.core.sweep(now: h.now)
        #expect(c.slot != nil)
        h.advance(seconds: 31)
        h.core.sweep(now: h.now)
        #expect(c.slot == nil)
    }

    @Test("A REST secret listed again before the expiry: the allocation is no longer revoked")
    func restSecretRestored() {
        let h = Harness(users: [:], rest: RESTCredentials(secrets: [Array("old".utf8)]))
        let c = restClient(h, secret: "old", ttl: 30)
        #expect(c.allocate().isSuccess)
        replaceCredentials(h) { $0.rest = RESTCredentials(secrets: [Array("new".utf8)]) }
        h.core.sweep(now: h.now)
        replaceCredentials(h) { $0.rest = RESTCredentials(secrets: [Array("new".utf8), Array("old".utf8)]) }
        h.core.sweep(now: h.now)
        // Past the expiry with its secret configured: it lives out its lifetime (it cannot refresh).
        h.advance(seconds: 31)
        h.core.sweep(now: h.now)
        #expect(c.slot != nil)
        #expect(c.refresh(600).errorCode == 401)
    }

    @Test("A reload picked up by a request before the sweep still reaches existing permissions")
    func policySeenFirstByARequest() {
        let h = Harness(peers: PeerPolicy(allowed: [CIDR("0.0.0.0/0")!]))
        let alice = Client(h)
        let target = peer("8.8.8.8:53")
        #expect(alice.allocate().isSuccess)
        #expect(alice.createPermission([target]).isSuccess)
        var policy = h.shared.policy
        policy.peers = PeerPolicy(allowed: [CIDR("0.0.0.0/0")!], denied: [CIDR("8.8.8.0/24")!])
        h.shared.replacePolicy(policy)
        // Another client's request makes the core read the new policy first.
        #expect(Client(h, "192.0.2.77:1000").challenge().errorCode == 401)
        h.core.sweep(now: h.now)
        #expect(h.core.allocation(inSlot: alice.slot!)?.permissions.isEmpty == true)
    }
}

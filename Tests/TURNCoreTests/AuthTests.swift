import STUNCodec
import TURNCore
import Testing

@Suite("Long-term authentication (RFC 8489 §9.2)")
struct AuthTests {
    @Test("A request without integrity draws 401 with REALM, NONCE and PASSWORD-ALGORITHMS")
    func challenge() throws {
        let h = Harness()
        let c = Client(h)
        let outcome = c.challenge(.allocate, attributes: [.requestedTransport(17)])
        let m = try #require(outcome.message)
        #expect(m.type == STUNMessageType(method: .allocate, class: .errorResponse))
        #expect(m.errorCode == 401)
        #expect(m.first(.realm) == .realm(realm))
        guard case .nonce(let nonce)? = m.first(.nonce) else {
            Issue.record("no NONCE")
            return
        }
        // Cookie: password algorithms + username anonymity (static users configured).
        #expect(nonce.hasPrefix("obMatJos2AAAD"))
        #expect(m.first(.passwordAlgorithms) == .passwordAlgorithms([.sha256, .md5]))
        #expect(m.first(.messageIntegrity) == nil && m.first(.messageIntegritySHA256) == nil)
        #expect(m.first(.username) == nil)
        #expect(h.authFailures(.missingCredentials) == 1)
        #expect(h.relays.requests.isEmpty)
    }

    @Test("The 401 dance with MD5 succeeds and the answer carries MESSAGE-INTEGRITY under MD5(user:realm:pass)")
    func md5Success() throws {
        let h = Harness()
        let c = Client(h, user: "user", password: "pass")
        let outcome = c.allocate()
        let m = try #require(outcome.message)
        #expect(m.type == STUNMessageType(method: .allocate, class: .successResponse))
        #expect(m.first(.messageIntegrity) != nil)
        #expect(m.first(.messageIntegritySHA256) == nil)
        let key = md5Key("user", realm, "pass")
        #expect(verifies(outcome.raw!, key: key))
        #expect(m.first(.realm) == nil && m.first(.nonce) == nil && m.first(.username) == nil)
    }

    @Test("A request with integrity but no USERNAME, REALM or NONCE is a 400")
    func missingAttributes() throws {
        let h = Harness()
        let c = Client(h)
        c.challenge()
        for drop in [STUNAttributeType.username, .realm, .nonce] {
            let attrs = [STUNAttribute.requestedTransport(17)] + c.credentials().filter { $0.type != drop }
            let m = STUNMessage(type: .init(method: .allocate, class: .request), attributes: attrs)
            let outcome = h.send(try m.encoded(key: c.key, integrity: [.sha1]), from: c.fiveTuple)
            #expect(outcome.errorCode == 400, "without \(drop)")
            #expect(outcome.message?.first(.messageIntegrity) == nil)
        }
        #expect(h.relays.requests.isEmpty)
    }

    @Test("Wrong password is a 401 with a fresh challenge")
    func wrongPassword() throws {
        let h = Harness()
        let c = Client(h, password: "not-the-password")
        let outcome = c.allocate()
        #expect(outcome.errorCode == 401)
        #expect(outcome.message?.first(.nonce) != nil)
        #expect(outcome.message?.first(.realm) == .realm(realm))
        #expect(h.authFailures(.badIntegrity) == 1)
        #expect(h.core.allocationCount == 0)
    }

    @Test("Unknown user is a 401")
    func unknownUser() {
        let h = Harness()
        let c = Client(h, user: "mallory", password: "x")
        #expect(c.allocate().errorCode == 401)
        #expect(h.authFailures(.unknownUser) == 1)
        #expect(h.relays.requests.isEmpty)
    }

    @Test("Wrong realm is a 401")
    func wrongRealm() {
        let h = Harness()
        let c = Client(h)
        c.challenge()
        c.realmValue = "other.example"
        #expect(c.allocate().errorCode == 401)
        #expect(h.authFailures(.wrongRealm) == 1)
        #expect(h.relays.requests.isEmpty)
    }

    @Test("A nonce older than the nonce lifetime is a 438 with a new nonce")
    func staleNonce() throws {
        let h = Harness { $0.nonceLifetime = 600 }
        let c = Client(h)
        c.retryStale = false
        c.challenge()
        let old = c.nonce
        h.advance(seconds: 601)
        let outcome = c.allocate()
        let m = try #require(outcome.message)
        #expect(m.errorCode == 438)
        #expect(m.first(.realm) == .realm(realm))
        #expect(m.first(.passwordAlgorithms) != nil)
        guard case .nonce(let fresh)? = m.first(.nonce) else {
            Issue.record("438 without NONCE")
            return
        }
        #expect(fresh != old)
        #expect(h.core.allocationCount == 0)
        // The new nonce works.
        c.learn(outcome)
        #expect(c.allocate().isSuccess)
    }

    @Test("A nonce still within its lifetime is accepted")
    func freshNonce() {
        let h = Harness { $0.nonceLifetime = 600 }
        let c = Client(h)
        c.challenge()
        h.advance(seconds: 599)
        #expect(c.allocate().isSuccess)
    }

    @Test("A nonce issued to another client address does not authenticate")
    func nonceFromAnotherAddress() {
        let h = Harness()
        let a = Client(h, "203.0.113.5:40000")
        a.challenge()
        let b = Client(h, "203.0.113.6:40000")
        b.retryStale = false
        b.nonce = a.nonce
        b.realmValue = realm
        let outcome = b.allocate()
        #expect(outcome.errorCode == 438 || outcome.errorCode == 401)
        #expect(!outcome.isSuccess)
        // Same IP, other port (an RFC 6062 data connection of the same client): accepted.
        let c = Client(h, "203.0.113.5:40001")
        c.retryStale = false
        c.nonce = a.nonce
        c.realmValue = realm
        #expect(c.allocate().isSuccess)
        #expect(h.core.allocationCount == 1)
    }

    @Test("A nonce the server never issued does not authenticate")
    func forgedNonce() {
        let h = Harness()
        let c = Client(h)
        c.retryStale = false
        c.nonce = "obMatJos2AAAA" + "00000000" + "AAAAAAAAAAAAAAAA"
        c.realmValue = realm
        let outcome = c.allocate()
        #expect(!outcome.isSuccess)
        #expect(outcome.errorCode == 438 || outcome.errorCode == 401)
    }

    // MARK: SHA-256

    func sha256Request(
        _ c: Client, algorithms: [PasswordAlgorithm], chosen: PasswordAlgorithm? = .sha256, key: [UInt8]? = nil
    ) throws -> Outcome {
        var attrs: [STUNAttribute] = [.requestedTransport(17)] + c.credentials()
        attrs.append(.passwordAlgorithms(algorithms))
        if let chosen { attrs.append(.passwordAlgorithm(chosen)) }
        let m = STUNMessage(type: .init(method: .allocate, class: .request), attributes: attrs)
        let k = key ?? sha256Key(c.username, realm, c.password)
        return c.h.send(try m.encoded(key: k, integrity: [.sha256()]), from: c.fiveTuple)
    }

    @Test("SHA-256: PASSWORD-ALGORITHMS copied, PASSWORD-ALGORITHM SHA-256, MESSAGE-INTEGRITY-SHA256")
    func sha256Success() throws {
        let h = Harness()
        let c = Client(h, user: "user", password: "pass")
        c.challenge()
        #expect(c.offeredAlgorithms == [.sha256, .md5])
        let outcome = try sha256Request(c, algorithms: c.offeredAlgorithms)
        let m = try #require(outcome.message)
        #expect(m.type.messageClass == .successResponse)
        #expect(m.first(.messageIntegritySHA256) != nil)
        #expect(m.first(.messageIntegrity) == nil)
        #expect(verifies(outcome.raw!, key: sha256Key("user", realm, "pass"), sha256: true))
        #expect(h.core.allocationCount == 1)
        // Later requests on the allocation with the SHA-256 key keep working.
        let refresh = STUNMessage(
            type: .init(method: .refresh, class: .request),
            attributes: [.lifetime(900)] + c.credentials() + [
                .passwordAlgorithms(c.offeredAlgorithms), .passwordAlgorithm(.sha256),
            ])
        let r = h.send(
            try refresh.encoded(key: sha256Key("user", realm, "pass"), integrity: [.sha256()]), from: c.fiveTuple)
        #expect(r.isSuccess)
        #expect(r.message?.lifetime == 900)
    }

    @Test("SHA-256 with MD5 chosen from the list gives an answer with MESSAGE-INTEGRITY-SHA256 under the MD5 key")
    func md5ChosenFromList() throws {
        let h = Harness()
        let c = Client(h, user: "user", password: "pass")
        c.challenge()
        let outcome = try sha256Request(
            c, algorithms: c.offeredAlgorithms, chosen: .md5, key: md5Key("user", realm, "pass"))
        #expect(outcome.isSuccess)
        #expect(outcome.message?.first(.messageIntegritySHA256) != nil)
        #expect(verifies(outcome.raw!, key: md5Key("user", realm, "pass"), sha256: true))
    }

    @Test(
        "Bid-down: PASSWORD-ALGORITHMS not as offered, or only one of the pair, is a 400",
        arguments: [
            ([PasswordAlgorithm.md5], PasswordAlgorithm?.some(.md5)),
            ([.md5, .sha256], .sha256),
            ([.sha256], .sha256),
            ([.sha256, .md5], nil),
            ([.sha256, .md5], PasswordAlgorithm(number: 0x0003)),
        ])
    func bidDown(list: [PasswordAlgorithm], chosen: PasswordAlgorithm?) throws {
        let h = Harness()
        let c = Client(h, user: "user", password: "pass")
        c.challenge()
        let key = chosen == .md5 ? md5Key("user", realm, "pass") : sha256Key("user", realm, "pass")
        let outcome = try sha256Request(c, algorithms: list, chosen: chosen, key: key)
        #expect(outcome.errorCode == 400)
        #expect(h.core.allocationCount == 0)
    }

    @Test("PASSWORD-ALGORITHM without PASSWORD-ALGORITHMS is a 400")
    func chosenWithoutList() throws {
        let h = Harness()
        let c = Client(h, user: "user", password: "pass")
        c.challenge()
        let m = STUNMessage(
            type: .init(method: .allocate, class: .request),
            attributes: [.requestedTransport(17)] + c.credentials() + [.passwordAlgorithm(.sha256)])
        let outcome = h.send(
            try m.encoded(key: sha256Key("user", realm, "pass"), integrity: [.sha256()]), from: c.fiveTuple)
        #expect(outcome.errorCode == 400)
    }

    // MARK: USERHASH

    @Test("USERHASH in place of USERNAME authenticates")
    func userhash() throws {
        let h = Harness()
        let c = Client(h, user: "alice", password: "wonderland")
        c.challenge()
        let hash = CredentialStore.userhash(username: "alice", realm: realm)
        #expect(hash == Array("alice:\(realm)".utf8).withUnsafeBytes { STUNDigest.sha256($0) })
        let m = STUNMessage(
            type: .init(method: .allocate, class: .request),
            attributes: [.requestedTransport(17), .userhash(hash), .realm(realm), .nonce(c.nonce!)])
        let outcome = h.send(try m.encoded(key: c.key, integrity: [.sha1]), from: c.fiveTuple)
        #expect(outcome.isSuccess)
        #expect(outcome.message?.first(.userhash) == nil)
        #expect(verifies(outcome.raw!, key: c.key))
        // The allocation belongs to alice: a USERNAME request from alice works on it.
        #expect(c.refresh(600).isSuccess)
    }

    @Test("An unknown USERHASH is a 401")
    func unknownUserhash() throws {
        let h = Harness()
        let c = Client(h)
        c.challenge()
        let m = STUNMessage(
            type: .init(method: .allocate, class: .request),
            attributes: [
                .requestedTransport(17), .userhash(CredentialStore.userhash(username: "nobody", realm: realm)),
                .realm(realm), .nonce(c.nonce!),
            ])
        #expect(h.send(try m.encoded(key: c.key, integrity: [.sha1]), from: c.fiveTuple).errorCode == 401)
    }

    // MARK: REST credentials

    func restHarness(_ secrets: [String]) -> Harness {
        Harness(users: [:], rest: RESTCredentials(secrets: secrets.map { Array($0.utf8) }))
    }

    @Test("REST credentials: a valid username and HMAC password authenticate")
    func restValid() throws {
        let h = restHarness(["s3cret"])
        let username = "\(h.now.unixSeconds + 3600):app-user"
        let password = RESTCredentials.password(secret: Array("s3cret".utf8), username: username)
        let c = Client(h, user: username, password: password)
        let first = c.challenge()
        // No static users: no username anonymity bit.
        if case .nonce(let n)? = first.message?.first(.nonce) { #expect(n.hasPrefix("obMatJos2AAAB")) }
        #expect(c.allocate().isSuccess)
    }

    @Test("REST password is base64(HMAC-SHA1(secret, username))")
    func restPasswordFormat() {
        // HMAC-SHA1("key", "The quick brown fox jumps over the lazy dog") = de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9
        let p = RESTCredentials.password(
            secret: Array("key".utf8), username: "The quick brown fox jumps over the lazy dog")
        #expect(Base64.decode(p) == Hex.decode("de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9"))
        #expect(RESTCredentials(secrets: []).expiry(of: "1700000000:bob") == 1_700_000_000)
        #expect(RESTCredentials(secrets: []).expiry(of: "1700000000") == 1_700_000_000)
        #expect(RESTCredentials(secrets: []).expiry(of: "bob") == nil)
        #expect(RESTCredentials(secrets: [], separator: "-").expiry(of: "1700000000-bob") == 1_700_000_000)
    }

    @Test("REST credentials: an expired username is a 401")
    func restExpired() {
        let h = restHarness(["s3cret"])
        let username = "\(h.now.unixSeconds - 1):app-user"
        let password = RESTCredentials.password(secret: Array("s3cret".utf8), username: username)
        let c = Client(h, user: username, password: password)
        #expect(c.allocate().errorCode == 401)
        #expect(h.authFailures(.expiredCredentials) == 1)
        #expect(h.core.allocationCount == 0)
    }

    @Test("REST credentials expire while the client waits: valid at the 401, expired at the retry")
    func restExpiresLater() {
        let h = restHarness(["s3cret"])
        let username = "\(h.now.unixSeconds + 10):app-user"
        let password = RESTCredentials.password(secret: Array("s3cret".utf8), username: username)
        let c = Client(h, user: username, password: password)
        c.challenge()
        h.advance(seconds: 11)
        #expect(c.allocate().errorCode == 401)
    }

    @Test("REST credentials: a password from the wrong secret is a 401")
    func restWrongSecret() {
        let h = restHarness(["s3cret"])
        let username = "\(h.now.unixSeconds + 3600):app-user"
        let password = RESTCredentials.password(secret: Array("other".utf8), username: username)
        let c = Client(h, user: username, password: password)
        #expect(c.allocate().errorCode == 401)
        #expect(h.authFailures(.badIntegrity) == 1)
    }

    @Test("REST credentials: with two secrets configured (rotation) either one works", arguments: ["old", "new"])
    func restRotation(secret: String) {
        let h = restHarness(["new", "old"])
        let username = "\(h.now.unixSeconds + 3600):app-\(secret)"
        let password = RESTCredentials.password(secret: Array(secret.utf8), username: username)
        let c = Client(h, user: username, password: password)
        #expect(c.allocate().isSuccess)
    }

    @Test("REST credentials: an allocation outlives the rotation of its secret away")
    func restRotatedAway() {
        let h = restHarness(["old"])
        let username = "\(h.now.unixSeconds + 3600):app-user"
        let password = RESTCredentials.password(secret: Array("old".utf8), username: username)
        let c = Client(h, user: username, password: password)
        #expect(c.allocate().isSuccess)
        var policy = h.shared.policy
        policy.credentials.rest = RESTCredentials(secrets: [Array("new".utf8)])
        h.shared.replacePolicy(policy)
        #expect(c.refresh(600).isSuccess)
        // A new allocation with the old secret is refused.
        let d = Client(h, "203.0.113.5:40001", user: username, password: password)
        #expect(d.allocate().errorCode == 401)
    }

    @Test("REST credentials: once the username has expired, its allocation can no longer be refreshed")
    func restExpiredRefresh() {
        let h = restHarness(["s3cret"])
        let username = "\(h.now.unixSeconds + 60):app-user"
        let password = RESTCredentials.password(secret: Array("s3cret".utf8), username: username)
        let c = Client(h, user: username, password: password)
        #expect(c.allocate().isSuccess)
        h.advance(seconds: 30)
        #expect(c.refresh(600).isSuccess)
        h.advance(seconds: 31)
        #expect(c.refresh(600).errorCode == 401)
        #expect(c.createPermission([peer("8.8.8.8:1")]).errorCode == 401)
        #expect(h.authFailures(.expiredCredentials) >= 1)
    }

    @Test("A Refresh authenticated as another valid user is a 441")
    func wrongCredentials() {
        let h = Harness()
        let alice = Client(h)
        #expect(alice.allocate().isSuccess)
        let bob = Client(h, user: "bob", password: "builder")
        bob.nonce = alice.nonce
        bob.realmValue = alice.realmValue
        let outcome = bob.refresh(600)
        #expect(outcome.errorCode == 441)
        #expect(h.authFailures(.wrongUsername) == 1)
        // Also for CreatePermission and ChannelBind.
        #expect(bob.createPermission([peer("8.8.8.8:53")]).errorCode == 441)
        #expect(bob.channelBind(0x4000, peer("8.8.8.8:53")).errorCode == 441)
        #expect(h.core.allocationCount == 1)
    }

    @Test("A banned client gets 403 without authentication")
    func bannedClient() {
        let h = Harness(banned: ClientBanList([CIDR("203.0.113.0/24")!]))
        let c = Client(h)
        let outcome = c.challenge(.allocate, attributes: [.requestedTransport(17)])
        #expect(outcome.errorCode == 403)
        #expect(outcome.message?.first(.nonce) == nil)
        #expect(h.counter(.bannedClient) == 1)
        // Also with credentials.
        c.nonce = "x"
        #expect(c.allocate().errorCode == 403)
        // Another client is served.
        #expect(Client(h, "192.0.2.99:1000").allocate().isSuccess)
    }

    @Test("A banned client's allocation ends at the next sweep after a policy reload")
    func banOnReload() {
        let h = Harness()
        let c = Client(h)
        #expect(c.allocate().isSuccess)
        var policy = h.shared.policy
        policy.bannedClients = ClientBanList([CIDR("203.0.113.5")!])
        h.shared.replacePolicy(policy)
        h.core.sweep(now: h.now)
        #expect(h.core.allocationCount == 0)
        #expect(h.relays.open.isEmpty)
    }

    @Test("Unauthenticated answers are limited per source IP per second")
    func rateLimit() {
        let h = Harness {
            $0.unauthenticatedRatePerSecond = 50
            $0.challengeOverflowBytesPerSecond = 0
        }
        var answered = 0
        for port in 0..<80 {
            let outcome = h.send(
                STUNMessage(type: .init(method: .allocate, class: .request), attributes: [.requestedTransport(17)]),
                from: tuple("203.0.113.5:\(10_000 + port)"))
            if outcome.errorCode == 401 { answered += 1 } else { #expect(outcome.isNone) }
        }
        #expect(answered == 50)
        #expect(h.counter(.rateLimited) == 30)
        // Bindings share the budget.
        let binding = h.send(STUNMessage(type: .bindingRequest), from: tuple("203.0.113.5:9999"))
        #expect(binding.isNone)
        // Another IP is not affected.
        #expect(h.send(STUNMessage(type: .bindingRequest), from: tuple("203.0.113.6:9999")).isSuccess)
        // A second later the budget is back.
        h.advance(seconds: 1)
        #expect(h.send(STUNMessage(type: .bindingRequest), from: tuple("203.0.113.5:9999")).isSuccess)
    }

    @Test("Once a source IP's answers are spent, challenges go on from its overflow byte budget, and only they")
    func challengeOverflow() {
        let h = Harness {
            $0.unauthenticatedRatePerSecond = 10
            $0.challengeOverflowBytesPerSecond = 1000
        }
        var sizes: [Int] = []
        for port in 0..<100 {
            let outcome = h.send(
                STUNMessage(type: .init(method: .allocate, class: .request), attributes: [.requestedTransport(17)]),
                from: tuple("203.0.113.5:\(10_000 + port)"))
            if outcome.errorCode == 401 { sizes.append(outcome.raw!.count) } else { #expect(outcome.isNone) }
        }
        // 10 from the answer budget, then as many as fit in 1000 bytes (the last may overshoot once).
        let overflow = sizes.count - 10
        #expect(overflow == (1000 + sizes[0] - 1) / sizes[0])
        #expect(h.core.counters.overflowChallenges == UInt64(overflow))
        #expect(h.counter(.rateLimited) == UInt64(100 - sizes.count))
        // Bindings and other errors do not draw on the overflow budget.
        let fresh = Harness {
            $0.unauthenticatedRatePerSecond = 1
            $0.challengeOverflowBytesPerSecond = 1000
        }
        #expect(fresh.send(STUNMessage(type: .bindingRequest), from: tuple("203.0.113.5:1")).isSuccess)
        #expect(fresh.send(STUNMessage(type: .bindingRequest), from: tuple("203.0.113.5:2")).isNone)
        let challenge = fresh.send(
            STUNMessage(type: .init(method: .allocate, class: .request), attributes: [.requestedTransport(17)]),
            from: tuple("203.0.113.5:3"))
        #expect(challenge.errorCode == 401)
        // A second later both budgets are whole again.
        h.advance(seconds: 1)
        #expect(h.send(STUNMessage(type: .bindingRequest), from: tuple("203.0.113.5:9999")).isSuccess)
    }

    @Test("The 401 to the smallest valid Allocate is at most 3 times its size; no reason phrase by default")
    func smallChallenge() throws {
        let h = Harness()
        let request = try STUNMessage(
            type: .init(method: .allocate, class: .request), attributes: [.requestedTransport(17)]
        ).encoded()
        #expect(request.count == 28)
        let outcome = h.send(request, from: tuple("203.0.113.5:1000"))
        let m = try #require(outcome.message)
        #expect(m.errorCode == 401)
        #expect(m.first(.errorCode) == .errorCode(code: 401, reason: ""))
        #expect(m.first(.realm) != nil && m.first(.nonce) != nil && m.first(.passwordAlgorithms) != nil)
        if case .nonce(let n)? = m.first(.nonce) { #expect(n.hasPrefix(NonceIssuer.cookiePrefix)) }
        // The harness's realm is "example.org" (12 bytes padded); with the default realm
        // "traverse" (8 bytes) the answer is 4 bytes shorter.
        let withDefaultRealm = outcome.raw!.count - 4
        #expect(withDefaultRealm <= 3 * request.count, "401 is \(withDefaultRealm) bytes with the default realm")
        // With reason phrases turned on, the phrase comes back.
        let verbose = Harness { $0.unauthenticatedReasonPhrases = true }
        let long = verbose.send(request, from: tuple("203.0.113.5:1000"))
        #expect(long.message?.first(.errorCode) == .errorCode(code: 401, reason: "Unauthenticated"))
    }

    @Test("Unauthenticated requests without their method's required attributes are dropped and counted")
    func incompleteRequestsAreDropped() {
        let h = Harness()
        let incomplete: [(STUNMethod, [STUNAttribute])] = [
            (.allocate, []), (.createPermission, []), (.channelBind, [.channelNumber(0x4000)]),
            (.channelBind, [.xorPeerAddress(peer("8.8.8.8:1"))]), (.connect, []), (.connectionBind, []),
        ]
        for (method, attributes) in incomplete {
            let outcome = h.send(
                STUNMessage(type: .init(method: method, class: .request), attributes: attributes),
                from: tuple("203.0.113.5:1000"))
            #expect(outcome.isNone, "\(method) was answered")
        }
        #expect(h.counter(.incompleteRequest) == UInt64(incomplete.count))
        // A Refresh needs no attribute: still challenged, as RFC 8489 §9.2.4 requires.
        let refresh = h.send(STUNMessage(type: .init(method: .refresh, class: .request)), from: tuple("203.0.113.5:1"))
        #expect(refresh.errorCode == 401)
    }

    @Test("A USERNAME longer than RFC 8489 allows gets 400, within the rate limit")
    func overlongUsername() throws {
        let h = Harness {
            $0.unauthenticatedRatePerSecond = 2
            $0.challengeOverflowBytesPerSecond = 0
        }
        // Built by hand: the writer refuses such a USERNAME.
        var bytes: [UInt8] = [0x00, 0x03, 0, 0, 0x21, 0x12, 0xA4, 0x42] + (0..<12).map { UInt8($0) }
        let value = [UInt8](repeating: 0x61, count: 513)
        let padded = value + [UInt8](repeating: 0, count: (4 - value.count % 4) % 4)
        bytes += [0x00, 0x06, UInt8(value.count >> 8), UInt8(value.count & 0xFF)] + padded
        bytes += [0x00, 0x19, 0x00, 0x04, 17, 0, 0, 0]
        let length = bytes.count - 20
        bytes[2] = UInt8(length >> 8)
        bytes[3] = UInt8(length & 0xFF)
        var answers: [STUNMessage] = []
        for _ in 0..<3 {
            let outcome = bytes.withUnsafeBytes { raw -> STUNMessage? in
                var out = [UInt8](repeating: 0, count: 1500)
                return out.withUnsafeMutableBytes { buffer -> STUNMessage? in
                    let error: STUNParseError
                    do throws(STUNParseError) {
                        _ = try STUNMessageView(validating: raw)
                        Issue.record("the parser accepted a 513-byte USERNAME")
                        return nil
                    } catch let e { error = e }
                    guard
                        case .reply(let n) = h.core.handleMalformed(
                            raw, error, from: tuple("203.0.113.5:1000"), now: h.now, response: buffer)
                    else { return nil }
                    return try? STUNMessage(parsing: Array(buffer[0..<n]))
                }
            }
            if let outcome { answers.append(outcome) }
        }
        #expect(answers.count == 2)  // the third is over the rate limit
        #expect(answers.first?.errorCode == 400)
        #expect(answers.first?.type == .init(method: .allocate, class: .errorResponse))
        #expect(answers.first?.transactionID == STUNTransactionID(high: 0x0001_0203_0405_0607, low: 0x0809_0A0B))
        #expect(h.counter(.rateLimited) == 1)
    }

    @Test("An authenticated request with an unknown comprehension-required attribute is a 420 listing it")
    func unknownAttribute() throws {
        let h = Harness()
        let c = Client(h)
        let outcome = c.allocate([
            .other(type: 0x7FFE, value: [1, 2, 3, 4]), .other(type: 0x8FFE, value: [0, 0, 0, 0]),
        ])
        let m = try #require(outcome.message)
        #expect(m.errorCode == 420)
        #expect(m.first(.unknownAttributes) == .unknownAttributes([0x7FFE]))
        #expect(verifies(outcome.raw!, key: c.key))
        #expect(h.core.allocationCount == 0)
    }

    @Test("A Binding with an unknown comprehension-required attribute is a 420 listing it")
    func unknownAttributeBinding() throws {
        let h = Harness()
        let outcome = h.send(
            STUNMessage(type: .bindingRequest, attributes: [.other(type: 0x0077, value: [9])]),
            from: tuple("192.0.2.1:5"))
        #expect(outcome.errorCode == 420)
        #expect(outcome.message?.first(.unknownAttributes) == .unknownAttributes([0x0077]))
    }

    @Test("Binding answers XOR-MAPPED-ADDRESS (and FINGERPRINT when asked), no auth needed")
    func binding() throws {
        let h = Harness()
        let from = tuple("[2001:db8::7]:4242")
        let request = STUNMessage(type: .bindingRequest)
        let outcome = h.send(try request.encoded(fingerprint: true), from: from)
        let m = try #require(outcome.message)
        #expect(m.type == .bindingSuccess)
        #expect(m.transactionID == request.transactionID)
        #expect(m.first(.xorMappedAddress) == .xorMappedAddress(from.client))
        #expect(m.first(.fingerprint) != nil)
    }

    @Test("Unsupported request methods are a 400; responses and unknown indications are dropped")
    func otherMethods() {
        let h = Harness()
        let from = tuple("192.0.2.1:5")
        #expect(
            h.send(STUNMessage(type: .init(method: STUNMethod(rawValue: 0x0FF), class: .request)), from: from).errorCode
                == 400)
        #expect(h.send(STUNMessage(type: .bindingSuccess), from: from).isNone)
        #expect(h.counter(.unexpectedClass) == 1)
        #expect(h.send(STUNMessage(type: .init(method: .binding, class: .indication)), from: from).isNone)
    }
}

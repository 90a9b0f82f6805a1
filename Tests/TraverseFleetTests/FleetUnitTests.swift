import STUNCodec
import Synchronization
import Testing
import TraverseFleet

@Suite("Fleet: configuration and board") struct FleetUnitTests {
    @Test("redis:// URLs: host, port, password, database; bad ones refused")
    func redisURLs() {
        let plain = RedisEndpoint(url: "redis://127.0.0.1:6380")
        #expect(plain?.host == "127.0.0.1" && plain?.port == 6380 && plain?.password == nil && plain?.database == 0)
        let full = RedisEndpoint(url: "redis://:s3cret@redis.internal:6379/2")
        #expect(full?.host == "redis.internal" && full?.password == "s3cret" && full?.database == 2)
        #expect(full?.description == "redis://:***@redis.internal:6379/2")
        let v6 = RedisEndpoint(url: "redis://[::1]:7000")
        #expect(v6?.host == "::1" && v6?.port == 7000)
        #expect(RedisEndpoint(url: "redis://localhost")?.port == 6379)
        for bad in [
            "http://x:1", "redis://", "redis://h:0", "redis://h:70000", "redis://h:1/99", "redis://[::1", "redis://h:x",
        ] {
            #expect(RedisEndpoint(url: bad) == nil, "\(bad)")
        }
    }

    @Test("Usernames are hashed under the fleet secret; nonce secrets agree across nodes")
    func identity() {
        let a = FleetIdentity(secret: "fleet-secret")
        let b = FleetIdentity(secret: "fleet-secret")
        let other = FleetIdentity(secret: "another")
        #expect(a.userHash("alice") == b.userHash("alice"))
        #expect(a.userHash("alice") != a.userHash("bob"))
        #expect(a.userHash("alice") != other.userHash("alice"))
        #expect(a.userHash("alice").count == 32 && !a.userHash("alice").contains("alice"))
        #expect(a.nonceSecret == b.nonceSecret && a.nonceSecret != other.nonceSecret)
    }

    func entry(_ node: String, load: Double, draining: Bool = false, full: Bool = false, age: Int64 = 0) -> BoardEntry {
        BoardEntry(
            node: node, load: load, allocations: 1, capacity: 100, bitsPerSecond: 0, draining: draining, full: full,
            addresses: [
                "udp": ["192.0.2.\(node.utf8.last! % 200):3478", "[2001:db8::1]:3478"], "tls": ["192.0.2.9:443"],
            ],
            admin: nil, updatedMilliseconds: 1_000_000 - age)
    }

    @Test("Redirects go to a live, lightly loaded node of the right family, never to self, draining, full or stale")
    func alternates() {
        let board = FleetBoard(selfID: "a", staleAfterMilliseconds: 3000)
        board.replace([
            entry("a", load: 0.0), entry("b", load: 0.9), entry("c", load: 0.1), entry("d", load: 0.0, draining: true),
            entry("e", load: 0.0, full: true), entry("f", load: 0.0, age: 5000),
        ])
        var seen: [String: Int] = [:]
        for _ in 0..<200 {
            let a = board.alternate(.udp, .ipv4, now: 1_000_000)
            seen[a?.description ?? "none", default: 0] += 1
        }
        // Only b and c qualify; of two random picks the lighter (c) always wins.
        #expect(seen == [entry("c", load: 0).address(.udp, .ipv4)!.description: 200])
        #expect(board.alternate(.dtls, .ipv4, now: 1_000_000) == nil)
        #expect(board.alternate(.udp, .ipv6, now: 1_000_000) == TransportAddress("[2001:db8::1]:3478"))
        board.replace([entry("a", load: 0)])
        #expect(board.alternate(.udp, .ipv4, now: 1_000_000) == nil)
    }

    @Test("Two random choices spread redirected clients over the lighter nodes")
    func spreading() {
        let board = FleetBoard(selfID: "self", staleAfterMilliseconds: 3000)
        board.replace((0..<10).map { entry("n\($0)", load: Double($0) / 10) })
        var counts: [String: Int] = [:]
        for _ in 0..<2000 { counts[board.alternate(.udp, .ipv4, now: 1_000_000)!.description, default: 0] += 1 }
        // Not all on the least loaded node, and the most loaded node never.
        #expect(counts.count > 3)
        #expect(counts.values.max()! < 2000 / 2)
    }

    @Test("Damaged or foreign board entries are not trusted")
    func validity() {
        var e = entry("b", load: 0.2)
        #expect(e.isValid)
        e.addresses["udp"] = ["not an address"]
        #expect(!e.isValid)
        e = entry("b", load: .nan)
        #expect(!e.isValid)
        e = entry("b", load: 0.2)
        e.addresses["carrier-pigeon"] = []
        #expect(!e.isValid)
    }

    @Test("Fleet events round-trip; junk is refused")
    func events() {
        for e: FleetEvent in [
            .ban("203.0.113.7/32"), .unban("::1/128"), .kill(node: "n1", id: "42"), .killUser(userHash: "ab"),
        ] {
            #expect(FleetEvent(wire: e.wire) == e)
        }
        #expect(FleetEvent(wire: "ban") == nil)
        #expect(FleetEvent(wire: "explode\tnow") == nil)
    }

    @Test("The ban book tells its observer when the active prefixes change, and lapses bans")
    func banBook() {
        let book = BanBook()
        let seen = Counter()
        book.onChange { _ in seen.bump() }
        book.add(BanRecord(cidr: "203.0.113.7/32", reason: nil, expiresAt: 100, createdAt: 0, node: nil), now: 10)
        #expect(book.active(now: 10).map(\.description) == ["203.0.113.7/32"])
        book.add(BanRecord(cidr: "203.0.113.7/32", reason: "again", expiresAt: 100, createdAt: 0, node: nil), now: 10)
        #expect(seen.value == 1)  // same prefixes: no second notice
        #expect(book.active(now: 100).isEmpty)
        book.expire(now: 100)
        #expect(book.all.isEmpty)
        #expect(seen.value == 2)
    }
}

final class Counter: Sendable {
    private let n = Mutex(0)
    func bump() { n.withLock { $0 += 1 } }
    var value: Int { n.withLock { $0 } }
}

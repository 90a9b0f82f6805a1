import STUNCodec
import Synchronization
import Testing

@testable import TURNCore

/// A quota authority that records what it is asked and answers when the test says.
final class FakeQuota: QuotaAuthority {
    let asked = Mutex<[(String, Int)]>([])
    let released = Mutex<[String]>([])
    func reserve(username: String, limit: Int, _ done: @escaping @Sendable (QuotaVerdict) -> Void) {
        asked.withLock { $0.append((username, limit)) }
    }
    func release(username: String) { released.withLock { $0.append(username) } }
}

extension Harness {
    /// Hands the Allocate `bytes` from `client` to the core again with `verdict`.
    func resume(_ bytes: [UInt8], from client: FiveTuple, username: String, _ verdict: QuotaVerdict) -> Outcome {
        bytes.withUnsafeBytes { raw -> Outcome in
            let view = try! STUNMessageView(validating: raw)
            var out = [UInt8](repeating: 0, count: 1500)
            return out.withUnsafeMutableBytes { buffer -> Outcome in
                switch core.resumeAllocate(
                    view, from: client, username: username, verdict: verdict, now: now, response: buffer,
                    relays: relays)
                {
                case .reply(let n): return .reply(try! STUNMessage(parsing: Array(buffer[0..<n])), Array(buffer[0..<n]))
                default: return .none
                }
            }
        }
    }
}

@Suite("Fleet-wide quota: the Allocate waits for the verdict, the shard does not") struct FleetQuotaTests {
    /// A signed Allocate for `c` (its nonce known), as raw bytes.
    func allocateBytes(_ c: Client) -> [UInt8] {
        let m = STUNMessage(
            type: .init(method: .allocate, class: .request), attributes: [.requestedTransport(17)] + c.credentials())
        return try! m.encoded(key: c.key, integrity: [.sha1])
    }

    func setUp() -> (Harness, Client, FakeQuota) {
        let h = Harness { $0.maxAllocationsPerUser = 2 }
        let q = FakeQuota()
        h.shared.fleet.setQuota(q)
        let c = Client(h)
        c.challenge()
        return (h, c, q)
    }

    @Test("Granted: asked once, retransmissions wait, the second pass allocates")
    func granted() {
        let (h, c, q) = setUp()
        let bytes = allocateBytes(c)
        guard case .awaitQuota(let user, let limit) = h.send(bytes, from: c.fiveTuple) else {
            Issue.record("the Allocate did not wait for the quota")
            return
        }
        #expect(user == "alice" && limit == 2)
        #expect(h.send(bytes, from: c.fiveTuple).isNone)  // a retransmission while waiting
        #expect(h.counter(.quotaPending) == 1)
        #expect(q.asked.withLock { $0.count } == 0)  // the core decides; the shard asks (once)
        let answer = h.resume(bytes, from: c.fiveTuple, username: "alice", .granted)
        #expect(answer.isSuccess)
        #expect(h.core.allocationCount == 1)
        #expect(q.released.withLock { $0 }.isEmpty)
        // Its end gives the count back to the fleet.
        #expect(c.refresh(0).isSuccess)
        #expect(q.released.withLock { $0 } == ["alice"])
    }

    @Test("Refused: 486, counted as a fleet refusal, nothing made, nothing given back")
    func refused() throws {
        let (h, c, q) = setUp()
        let bytes = allocateBytes(c)
        _ = h.send(bytes, from: c.fiveTuple)
        let m = try #require(h.resume(bytes, from: c.fiveTuple, username: "alice", .refused).message)
        #expect(m.errorCode == 486)
        #expect(h.core.allocationCount == 0)
        #expect(h.core.counters.quotaRefusals == [0, 1])
        #expect(q.released.withLock { $0 }.isEmpty)
    }

    @Test("Redis down: local fallback uses this node's quota; refuse mode answers 508")
    func unavailable() throws {
        let (h, c, q) = setUp()
        let bytes = allocateBytes(c)
        _ = h.send(bytes, from: c.fiveTuple)
        #expect(h.resume(bytes, from: c.fiveTuple, username: "alice", .unavailable(countLocally: true)).isSuccess)
        let d = Client(h, "203.0.113.5:40001")
        d.challenge()
        let second = allocateBytes(d)
        _ = h.send(second, from: d.fiveTuple)
        let m = try #require(
            h.resume(second, from: d.fiveTuple, username: "alice", .unavailable(countLocally: false)).message)
        #expect(m.errorCode == 508)
        #expect(q.released.withLock { $0 }.isEmpty)
    }

    /// Found by fuzz-core (Fuzz/corpus/fuzz-core/crash-fleet-grant-after-local-fallback).
    @Test("A grant that lands after allocations counted locally still meets this node's quota")
    func grantAfterLocalFallback() throws {
        let (h, c, q) = setUp()
        let waiting = allocateBytes(c)
        _ = h.send(waiting, from: c.fiveTuple)  // granted by the fleet, the verdict still on its way
        for address in ["203.0.113.5:40001", "203.0.113.5:40002"] {
            let d = Client(h, address)
            d.challenge()
            let bytes = allocateBytes(d)
            _ = h.send(bytes, from: d.fiveTuple)
            let answer = h.resume(bytes, from: d.fiveTuple, username: "alice", .unavailable(countLocally: true))
            #expect(answer.isSuccess)
        }
        let m = try #require(h.resume(waiting, from: c.fiveTuple, username: "alice", .granted).message)
        #expect(m.errorCode == 486)
        #expect(h.core.allocationCount == 2)
        #expect(q.released.withLock { $0 } == ["alice"])  // the grant is given back
    }

    @Test("A grant the second pass cannot use (node full, client gone) is given back")
    func givenBack() {
        let (h, c, q) = setUp()
        let bytes = allocateBytes(c)
        _ = h.send(bytes, from: c.fiveTuple)
        h.shared.setCapacityOverride(0)
        let answer = h.resume(bytes, from: c.fiveTuple, username: "alice", .granted)
        #expect(answer.errorCode == 508)
        #expect(q.released.withLock { $0 } == ["alice"])
        h.shared.setCapacityOverride(-1)
        let d = Client(h, "203.0.113.5:40001")
        d.challenge()
        _ = h.send(allocateBytes(d), from: d.fiveTuple)
        h.core.cancelPendingAllocate(d.fiveTuple, username: "alice", verdict: .granted)
        #expect(q.released.withLock { $0 } == ["alice", "alice"])
        // Nothing is left waiting: the next Allocate from that 5-tuple is asked again.
        guard case .awaitQuota = h.send(allocateBytes(d), from: d.fiveTuple) else {
            Issue.record("still marked as waiting")
            return
        }
    }

    @Test("At most maxPendingQuota Allocates wait per core; beyond, 508")
    func bounded() {
        let (h, c, _) = setUp()
        for i in 0..<TURNServerCore.maxPendingQuota {
            h.core.pendingQuota[tuple("198.51.100.1:\(1000 + i)")] = .random()
        }
        #expect(h.send(allocateBytes(c), from: c.fiveTuple).errorCode == 508)
    }
}

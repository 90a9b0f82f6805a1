import STUNCodec
import Testing

@testable import TURNRelay

@Suite("OutputBuffer: bounded, FIFO, watermarks") struct OutputBufferTests {
    func bytes(_ n: Int, from start: UInt8 = 0) -> [UInt8] { (0..<n).map { start &+ UInt8(truncatingIfNeeded: $0) } }

    /// Appends `bytes` to `b`; whether they were taken.
    func add(_ b: inout OutputBuffer, _ bytes: [UInt8]) -> Bool { bytes.withUnsafeBytes { b.append($0) } }

    @Test func keepsOrderAcrossPartialConsumes() {
        var b = OutputBuffer(limit: 1000)
        let first = bytes(300)
        let second = bytes(300, from: 100)
        do {
            let taken = add(&b, first)
            #expect(taken)
        }
        b.consume(120)
        do {
            let taken = add(&b, second)
            #expect(taken)
        }
        #expect(b.count == 480)
        let pending = b.withPending { Array($0) }
        #expect(pending == Array(first[120...]) + second)
        b.consume(480)
        #expect(b.isEmpty)
    }

    @Test func refusesWhatWouldExceedTheLimitAndKeepsWhatItHad() {
        var b = OutputBuffer(limit: 100)
        do {
            let taken = add(&b, bytes(60))
            #expect(taken)
        }
        let refused = !add(&b, bytes(41))
        #expect(refused)
        #expect(b.count == 60)
        do {
            let taken = add(&b, bytes(40))
            #expect(taken)
        }
        #expect(!b.hasRoom(for: 1))
    }

    @Test func watermarksDriveBackpressure() {
        var b = OutputBuffer(limit: 1 << 20, highWater: 256 << 10)
        #expect(b.lowWater == 128 << 10)
        _ = add(&b, bytes(256 << 10))
        #expect(!b.isAboveHighWater)
        _ = add(&b, bytes(1))
        #expect(b.isAboveHighWater)
        b.consume((128 << 10) + 1)
        #expect(!b.isBelowLowWater)
        b.consume(1)
        #expect(b.isBelowLowWater)
    }

    @Test func consumedSpaceIsReusedSoStorageStaysBounded() {
        // A writer that keeps the buffer a quarter full for a long time must not grow its storage.
        var b = OutputBuffer(limit: 4096)
        let chunk = bytes(1024)
        for _ in 0..<10_000 {
            do {
                let taken = add(&b, chunk)
                #expect(taken)
            }
            b.consume(1024)
        }
        #expect(b.isEmpty)
        do {
            let taken = add(&b, chunk)
            #expect(taken)
        }
        #expect(b.takeAll() == chunk)
        #expect(b.isEmpty)
    }
}

@Suite("SourceAdmission: per-source caps and the shared budget, for streams and DTLS") struct SourceAdmissionTests {
    let a = IPAddress("203.0.113.1")!
    let b = IPAddress("203.0.113.2")!

    @Test func perSourceCapThenBudget() {
        let budget = ConnectionBudget(maxTotal: 3)
        var admission = SourceAdmission(maxPerSource: 2, budget: budget)
        let r1 = admission.admit(a)
        #expect(r1)
        let r2 = admission.admit(a)
        #expect(r2)
        let r3 = !admission.admit(a)
        #expect(r3)  // per-source cap
        let r4 = admission.admit(b)
        #expect(r4)
        let r5 = !admission.admit(b)
        #expect(r5)  // server-wide budget
        #expect(budget.taken == 3)
        admission.release(a)
        let r6 = admission.admit(b)
        #expect(r6)
        #expect(admission.count(a) == 1 && admission.count(b) == 2)
    }

    @Test func releasingEveryClientLeavesNoEntryAndNoBudget() {
        let budget = ConnectionBudget(maxTotal: 100)
        var admission = SourceAdmission(maxPerSource: 10, budget: budget)
        for i in 0..<50 {
            let admitted = admission.admit(IPAddress.v4(UInt32(i)))
            #expect(admitted)
        }
        for i in 0..<50 { admission.release(IPAddress.v4(UInt32(i))) }
        #expect(admission.sources == 0)
        #expect(budget.taken == 0)
        // A release without an admission gives nothing back.
        admission.release(a)
        #expect(budget.taken == 0)
    }

    @Test func twoShardsShareTheBudget() {
        let budget = ConnectionBudget(maxTotal: 2)
        var one = SourceAdmission(maxPerSource: 5, budget: budget)
        var two = SourceAdmission(maxPerSource: 5, budget: budget)
        let r7 = one.admit(a)
        #expect(r7)
        let r8 = two.admit(a)
        #expect(r8)
        let r9 = !one.admit(b)
        #expect(r9)
        two.release(a)
        let r10 = one.admit(b)
        #expect(r10)
    }
}

@Suite("PollToken: what an epoll event names") struct PollTokenTests {
    @Test func roundTrips() {
        let tokens: [PollToken] = [
            .doorbell, .listener(index: 0), .listener(index: 7), .relay(fd: 3, slot: 0),
            .relay(fd: 65_535, slot: 1_000_000), .relay(fd: Int32.max, slot: Int(Int32.max)),
        ]
        for t in tokens { #expect(PollToken(encoded: t.encoded) == t) }
        #expect(Set(tokens.map(\.encoded)).count == tokens.count)
    }
}

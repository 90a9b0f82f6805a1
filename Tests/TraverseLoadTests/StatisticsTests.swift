import Testing

@testable import TraverseLoad

@Suite struct StatisticsTests {
    func track(_ seqs: [UInt64]) -> SequenceTracker {
        var t = SequenceTracker()
        for s in seqs { t.record(s) }
        return t
    }

    @Test func inOrderHasNoLossDuplicatesOrReordering() {
        let t = track(Array(0..<1000))
        #expect(t.unique == 1000)
        #expect(t.duplicates == 0)
        #expect(t.reordered == 0)
        #expect(t.highest == 999)
    }

    @Test func gapsAreLossAgainstTheSentCount() {
        // Sent 0...9; 3, 4 and 9 never arrive.
        let t = track([0, 1, 2, 5, 6, 7, 8])
        #expect(10 - t.unique == 3)
        #expect(t.reordered == 0)
    }

    @Test func duplicatesAreCountedOnce() {
        let t = track([0, 1, 1, 2, 0, 2, 3])
        #expect(t.unique == 4)
        #expect(t.duplicates == 3)
        #expect(t.reordered == 0)
    }

    @Test func reorderingIsCountedAndALateDuplicateIsStillADuplicate() {
        var t = SequenceTracker()
        #expect(t.record(0) == .inOrder)
        #expect(t.record(2) == .inOrder)
        #expect(t.record(1) == .reordered)
        #expect(t.record(1) == .duplicate)
        #expect(t.record(5) == .inOrder)
        #expect(t.record(3) == .reordered)
        #expect(t.unique == 5)
        #expect(t.reordered == 2)
        #expect(t.duplicates == 1)
        #expect(t.maxReorderDistance == 2)
    }

    @Test func windowSlidesAndOldPacketsAreBeyondIt() {
        var t = SequenceTracker()
        t.record(0)
        t.record(10_000)
        #expect(t.record(1) == .beyondWindow)
        // A sequence number reused after the window slid is not mistaken for a duplicate.
        #expect(t.record(10_000 - 10) == .reordered)
        #expect(t.record(10_000 - 10) == .duplicate)
        #expect(t.record(10_000 + SequenceTracker.window + 5) == .inOrder)
        #expect(t.record(10_000 + 10) == .reordered)
    }

    @Test func jitterFollowsRFC3550() {
        var j = JitterEstimator()
        #expect(j.record(transit: 1000) == nil)
        #expect(j.record(transit: 1160) == 160)
        #expect(j.jitter == 10)  // 0 + (160 - 0) / 16
        #expect(j.record(transit: 1160) == 0)
        #expect(j.jitter == 10 - 10.0 / 16)
    }

    @Test func latencySummaryIsInMicroseconds() {
        var h = LatencyHistogram.make()
        for v in 1...1000 { h.record(UInt64(v) * 1000) }
        let s = LatencySummary(nanoseconds: h)
        #expect(s.count == 1000)
        #expect(abs(s.p50 - 500) < 1)
        #expect(abs(s.p99 - 990) < 1)
    }
}

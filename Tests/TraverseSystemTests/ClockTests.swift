import Testing
import TraverseSystem

@Suite("Clock")
struct ClockTests {
    @Test func monotonicNeverGoesBack() {
        var last = Clock.monotonicNanoseconds()
        var lastMs = Clock.monotonicMilliseconds()
        for _ in 0..<10_000 {
            let now = Clock.monotonicNanoseconds()
            let nowMs = Clock.monotonicMilliseconds()
            #expect(now >= last)
            #expect(nowMs >= lastMs)
            last = now
            lastMs = nowMs
        }
    }

    @Test func millisecondsAndNanosecondsAgree() {
        let ns = Clock.monotonicNanoseconds()
        let ms = Clock.monotonicMilliseconds()
        // Read one after the other: the same clock, within a second.
        #expect(ms >= ns / 1_000_000)
        #expect(ms - ns / 1_000_000 < 1000)
    }

    @Test func wallClockIsAfter2024() {
        #expect(Clock.unixSeconds() > 1_700_000_000)
    }
}

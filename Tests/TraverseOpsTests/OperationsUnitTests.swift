import Testing
import TraverseOps
import TraverseSystem

@Suite("Operations pieces")
struct OperationsUnitTests {
    @Test func cpuSecondsFromStatLine() {
        // A command name with spaces and a parenthesis; utime 250, stime 50 ticks at 100 Hz.
        let line = "1234 (tra verse) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 100 1000 200"
        #expect(ProcessStats.cpuSeconds(statLine: line, ticksPerSecond: 100) == 3.0)
        #expect(ProcessStats.cpuSeconds(statLine: "garbage", ticksPerSecond: 100) == nil)
        #expect((ProcessStats.cpuSeconds() ?? -1) >= 0)
    }

    @Test func residentBytesFromStatus() {
        let status = "Name:\ttraverse\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\nThreads:\t4\n"
        let rss: Int64? = ProcessStats.residentBytes(status: status)
        #expect(rss == Int64(2_097_152))
        #expect(ProcessStats.residentBytes(status: "Name: x\n") == nil)
        #expect((ProcessStats.residentBytes() ?? 0) > 0)
    }

    @Test func loadScoreIsTheLargestTerm() {
        #expect(
            LoadReport.score(
                allocations: 50, capacity: 100, cpu: 0.2, cores: 2, bitsPerSecond: 0, maxBitsPerSecond: nil) == 0.5)
        #expect(
            LoadReport.score(
                allocations: 1, capacity: 100, cpu: 1.5, cores: 2, bitsPerSecond: 0, maxBitsPerSecond: nil) == 0.75)
        #expect(
            LoadReport.score(
                allocations: 1, capacity: 100, cpu: 0, cores: 2, bitsPerSecond: 9e8, maxBitsPerSecond: 1e9) == 0.9)
        // Throughput counts only when a maximum is configured; the score never leaves 0...1.
        #expect(
            LoadReport.score(
                allocations: 0, capacity: 100, cpu: 0, cores: 2, bitsPerSecond: 9e8, maxBitsPerSecond: nil) == 0)
        #expect(
            LoadReport.score(
                allocations: 5, capacity: 1, cpu: 0, cores: 2, bitsPerSecond: 0, maxBitsPerSecond: nil) == 1)
        #expect(
            LoadReport.score(
                allocations: 0, capacity: 0, cpu: 0, cores: 2, bitsPerSecond: 0, maxBitsPerSecond: nil) == 1)
    }

    @Test func ratesOverTheWindow() {
        let t = LoadTracker(window: 10)
        func s(_ time: Double, _ bytes: UInt64, _ cpu: Double) -> LoadTracker.Sample {
            .init(
                time: time, bytesIn: bytes, bytesOut: bytes / 2, packetsIn: bytes / 100, packetsOut: 0,
                cpuSeconds: cpu)
        }
        #expect(t.rates(now: s(0, 0, 0)) == LoadTracker.Rates())
        for i in 0...20 { t.record(s(Double(i), UInt64(i) * 1000, Double(i) * 0.5)) }
        // Only the last 10 s count: from the sample at 11 s to the reading at 21 s.
        let r = t.rates(now: s(21, 21_000, 10.5))
        #expect(r.seconds == 10)
        #expect(r.bitsPerSecondIn == 8000)
        #expect(r.bitsPerSecondOut == 4000)
        #expect(r.packetsPerSecondIn == 10)
        #expect(r.cpu == 0.5)
    }

    @Test func loadReportJSONRoundTrip() {
        var rates = LoadTracker.Rates()
        rates.bitsPerSecondIn = 1000
        rates.cpu = 0.25
        let report = LoadReport(
            allocations: 3, capacity: 10, draining: true, rates: rates, cores: 2, maxBitsPerSecond: 2000)
        let json = report.encoded()
        #expect(json.contains("\"max_bits_per_second\":2000"))
        #expect(LoadReport.decode(json) == report)
        #expect(report.load == 0.5)
    }

    @Test func parsesPrometheusText() {
        let text = """
            # TYPE traverse_error_responses_total counter
            traverse_error_responses_total{code="401"} 12
            traverse_error_responses_total{code="508"} 3
            traverse_allocations_active{family="ipv4"} 2.0
            process_cpu_seconds_total 1.5
            """
        let samples = MetricSample.parse(text)
        #expect(samples.count == 4)
        #expect(samples[0] == MetricSample(name: "traverse_error_responses_total", labels: ["code": "401"], value: 12))
        #expect(samples[3].labels.isEmpty)
        #expect(samples[3].value == 1.5)
    }

    @Test func topFrameShowsAllocationsThroughputAndErrors() {
        var rates = LoadTracker.Rates()
        rates.bitsPerSecondIn = 2_500_000
        rates.packetsPerSecondOut = 120
        let report = LoadReport(
            allocations: 4, capacity: 100, draining: false, rates: rates, cores: 2, maxBitsPerSecond: nil)
        let before = MetricSample.parse("traverse_error_responses_total{code=\"401\"} 10\n")
        let now = MetricSample.parse(
            """
            traverse_error_responses_total{code="401"} 12
            traverse_error_responses_total{code="508"} 7
            traverse_allocations_active{family="ipv4"} 4
            """)
        let frame = TopView.render(load: report, metrics: now, previous: before, interval: 1)
        #expect(frame.contains("allocations 4/100"))
        #expect(frame.contains("2.50 Mbit/s"))
        #expect(frame.contains("120 pkt/s"))
        #expect(frame.contains("load 4.0%"))
        let lines = frame.split(separator: "\n")
        let codes = lines.drop { !$0.hasPrefix("top error codes") }.dropFirst()
        #expect(codes.first?.contains("508") == true)  // +7 since the last frame beats +2
        #expect(codes.dropFirst().first?.contains("401") == true)
    }
}

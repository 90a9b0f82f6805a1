import TURNCore
import TraverseFleet
import TraverseSystem

/// `GET /console/live.json[?since=MS]`: the console's live view, compact. Series are columns
/// aligned with `t` (Unix milliseconds, one point a second, oldest first, newer than `since`);
/// drops and authentication failures have a column per reason that is non-zero in the points
/// sent (a reason absent is zero throughout). `top` holds the numbers of `traverse top` now.
///
/// ```json
/// {"now": 1733000000000, "t": [...], "allocations": [...], "bps_in": [...], "bps_out": [...],
///  "pps_in": [...], "pps_out": [...], "cpu": [...], "load": [...],
///  "drops": {"no_permission": [...]}, "auth_failures": {"bad_integrity": [...]}, "top": {...}}
/// ```
struct ConsoleLiveView: Encodable {
    var now: Int64
    var t: [Int64]
    var allocations: [Int]
    var bpsIn: [Double]
    var bpsOut: [Double]
    var ppsIn: [Double]
    var ppsOut: [Double]
    var cpu: [Double]
    var load: [Double]
    var drops: [String: [Double]]
    var authFailures: [String: [Double]]
    var top: Top

    enum CodingKeys: String, CodingKey {
        case now, t, allocations, cpu, load, drops, top
        case bpsIn = "bps_in"
        case bpsOut = "bps_out"
        case ppsIn = "pps_in"
        case ppsOut = "pps_out"
        case authFailures = "auth_failures"
    }

    /// What `traverse top` shows (`TopView`), read from the server rather than from a scrape.
    struct Top: Encodable {
        var load: Double
        var state: String
        var cpu: Double
        var cores: Int
        var rssBytes: Int64?
        var allocations: Int
        var capacity: Int
        var ipv4: Int
        var ipv6: Int
        var created: UInt64
        var bitsIn: Double
        var bitsOut: Double
        var packetsIn: Double
        var packetsOut: Double
        var requests: UInt64
        var authFailures: UInt64
        var drops: UInt64
        var kernelDrops: Int64
        /// Error answers by code: total so far and in the last second, most recent first.
        var errors: [ErrorCount]
        var windowSeconds: Double

        struct ErrorCount: Encodable {
            var code: Int
            var total: UInt64
            var recent: UInt64
        }

        enum CodingKeys: String, CodingKey {
            case load, state, cpu, cores, allocations, capacity, ipv4, ipv6, created, requests, drops, errors
            case rssBytes = "rss_bytes"
            case bitsIn = "bits_per_second_in"
            case bitsOut = "bits_per_second_out"
            case packetsIn = "packets_per_second_in"
            case packetsOut = "packets_per_second_out"
            case authFailures = "auth_failures"
            case kernelDrops = "kernel_drops"
            case windowSeconds = "window_seconds"
        }
    }

    static func make(_ ops: Operations, since: Int64?) async -> ConsoleLiveView {
        let points = ops.history.points(since: since)
        let counters = await ops.server.relay.counters()
        let kernelDrops = await ops.server.relay.kernelDrops()
        let report = ops.loadReport(counters: counters)
        func round(_ v: Double) -> Double { (v * 1000).rounded() / 1000 }
        func column(_ values: (ConsoleHistory.Point) -> Double) -> [Double] { points.map { round(values($0)) } }
        func byReason(_ labels: [String], _ values: (ConsoleHistory.Point) -> [Double]) -> [String: [Double]] {
            var out: [String: [Double]] = [:]
            for (i, label) in labels.enumerated() {
                let series = points.map { p in round(i < values(p).count ? values(p)[i] : 0) }
                if series.contains(where: { $0 > 0 }) { out[label] = series }
            }
            return out
        }
        let families = ops.metrics.activeByFamily
        let errors = countedErrorCodes.indices.compactMap { i -> Top.ErrorCount? in
            let total = counters.errorResponses[i]
            guard total > 0 else { return nil }
            let recent = points.last.map { p in i < p.errors.count ? UInt64(p.errors[i].rounded()) : 0 } ?? 0
            return Top.ErrorCount(code: countedErrorCodes[i], total: total, recent: recent)
        }.sorted { ($0.recent, $0.total) > ($1.recent, $1.total) }
        let top = Top(
            load: round(report.load),
            state: report.draining ? "draining" : report.allocations >= report.capacity ? "full" : "ready",
            cpu: round(report.cpu), cores: report.cores, rssBytes: ProcessStats.residentBytes(),
            allocations: report.allocations, capacity: report.capacity, ipv4: families[0], ipv6: families[1],
            created: counters.allocationsCreated.reduce(0, &+), bitsIn: round(report.bitsPerSecondIn),
            bitsOut: round(report.bitsPerSecondOut), packetsIn: round(report.packetsPerSecondIn),
            packetsOut: round(report.packetsPerSecondOut), requests: counters.requests.reduce(0, &+),
            authFailures: counters.authFailures.reduce(0, &+), drops: counters.drops.reduce(0, &+),
            kernelDrops: kernelDrops, errors: Array(errors.prefix(5)),
            windowSeconds: round(report.windowSeconds))
        return ConsoleLiveView(
            now: FleetBoard.nowMilliseconds(), t: points.map(\.time), allocations: points.map(\.allocations),
            bpsIn: column(\.bitsPerSecondIn), bpsOut: column(\.bitsPerSecondOut), ppsIn: column(\.packetsPerSecondIn),
            ppsOut: column(\.packetsPerSecondOut), cpu: column(\.cpu), load: column(\.load),
            drops: byReason(DropReason.allCases.map(\.label), \.drops),
            authFailures: byReason(AuthFailure.allCases.map(\.label), \.authFailures), top: top)
    }
}

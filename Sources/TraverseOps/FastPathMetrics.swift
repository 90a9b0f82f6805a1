// The kernel fast path's series on `/metrics`: the XDP program's verdicts, where it is attached,
// the channels it holds, and whether it failed to start. Bounded labels only (verdict reasons,
// attach modes, failure stages): never an interface's traffic by client, never an address.
import CoreMetrics
import Prometheus
import TURNRelay

struct FastPathMetrics: Sendable {
    let verdicts: [CoreMetrics.Counter]
    let interfaces: [CoreMetrics.Gauge]  // by XDPAttachMode: native, generic
    let channels: CoreMetrics.Gauge
    let enabled: CoreMetrics.Gauge
    let failures: [CoreMetrics.Counter]  // by `Self.stages`

    static let modes: [XDPAttachMode] = [.native, .generic]
    static let stages = ["object", "load", "interface", "attach"]

    init(factory: PrometheusMetricsFactory) {
        verdicts = FastPathVerdict.allCases.map {
            CoreMetrics.Counter(
                label: "traverse_fast_path_packets_total",
                dimensions: [("verdict", $0.outcome), ("reason", $0.reason)],
                factory: factory)
        }
        interfaces = Self.modes.map {
            CoreMetrics.Gauge(
                label: "traverse_fast_path_interfaces", dimensions: [("mode", $0.rawValue)], factory: factory)
        }
        channels = CoreMetrics.Gauge(label: "traverse_fast_path_channels", dimensions: [], factory: factory)
        enabled = CoreMetrics.Gauge(label: "traverse_fast_path_enabled", dimensions: [], factory: factory)
        failures = Self.stages.map {
            CoreMetrics.Counter(
                label: "traverse_fast_path_load_failures_total", dimensions: [("stage", $0)], factory: factory)
        }
    }

    /// Publishes `status`; `last` holds what was published before (verdicts, and whether the
    /// failure was counted).
    func update(_ status: FastPathStatus, last: inout (verdicts: [UInt64], failureCounted: Bool)) {
        for (i, mode) in Self.modes.enumerated() {
            interfaces[i].record(status.attachments.filter { $0.mode == mode }.count)
        }
        channels.record(status.channels)
        enabled.record(status.attachments.isEmpty ? 0 : 1)
        if let failure = status.failure, !last.failureCounted, let i = Self.stages.firstIndex(of: failure.stage) {
            failures[i].increment()
            last.failureCounted = true
        }
        if last.verdicts.count != status.verdicts.count {
            last.verdicts = [UInt64](repeating: 0, count: status.verdicts.count)
        }
        for i in verdicts.indices where i < status.verdicts.count && status.verdicts[i] > last.verdicts[i] {
            verdicts[i].increment(by: Int64(clamping: status.verdicts[i] - last.verdicts[i]))
        }
        last.verdicts = status.verdicts
    }
}

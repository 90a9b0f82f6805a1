import CoreMetrics
import Prometheus
public import TraverseFleet

/// The fleet's figures at one scrape: the coordinator's status, the board, quota verdicts.
public struct FleetSnapshot: Sendable {
    public var status = FleetCoordinator.Status()
    public var boardNodes = 0
    public var quotaGranted: UInt64 = 0
    public var quotaUnavailable: UInt64 = 0

    public init() {}

    /// The snapshot of a running fleet service.
    public init(_ service: FleetService) {
        status = service.coordinator.status
        let now = FleetBoard.nowMilliseconds()
        let board = service.coordinator.board
        boardNodes = board.entries.filter { !board.isStale($0, now: now) }.count
        let v = service.quota.verdictCounts
        quotaGranted = v.granted
        quotaUnavailable = v.unavailable
    }
}

/// The fleet's series on `/metrics` (bounded labels only: no node ids, no users).
struct FleetMetrics: Sendable {
    let redisUp: CoreMetrics.Gauge
    let boardNodes: CoreMetrics.Gauge
    let commands: CoreMetrics.Counter
    let failures: CoreMetrics.Counter
    let latencySum: CoreMetrics.FloatingPointCounter
    let invalid: CoreMetrics.Counter
    let reregistrations: CoreMetrics.Counter
    let bans: CoreMetrics.Counter
    let events: CoreMetrics.Counter
    let usageDropped: CoreMetrics.Counter
    let quotaGranted: CoreMetrics.Counter
    let quotaUnavailable: CoreMetrics.Counter

    init(factory: PrometheusMetricsFactory) {
        func counter(_ name: String) -> CoreMetrics.Counter {
            CoreMetrics.Counter(label: name, dimensions: [], factory: factory)
        }
        redisUp = CoreMetrics.Gauge(label: "traverse_fleet_redis_up", dimensions: [], factory: factory)
        boardNodes = CoreMetrics.Gauge(label: "traverse_fleet_board_nodes", dimensions: [], factory: factory)
        commands = counter("traverse_fleet_redis_commands_total")
        failures = counter("traverse_fleet_redis_command_failures_total")
        latencySum = CoreMetrics.FloatingPointCounter(
            label: "traverse_fleet_redis_command_seconds_total", dimensions: [], factory: factory)
        invalid = counter("traverse_fleet_invalid_entries_total")
        reregistrations = counter("traverse_fleet_reregistrations_total")
        bans = counter("traverse_fleet_bans_applied_total")
        events = counter("traverse_fleet_events_total")
        usageDropped = counter("traverse_fleet_usage_records_dropped_total")
        quotaGranted = counter("traverse_fleet_quota_granted_total")
        quotaUnavailable = counter("traverse_fleet_quota_unavailable_total")
    }

    func update(_ now: FleetSnapshot, last: inout FleetSnapshot) {
        redisUp.record(now.status.redisUp ? 1 : 0)
        boardNodes.record(now.boardNodes)
        func advance(_ c: CoreMetrics.Counter, _ old: UInt64, _ new: UInt64) {
            if new > old { c.increment(by: Int64(clamping: new - old)) }
        }
        advance(commands, last.status.commands, now.status.commands)
        advance(failures, last.status.commandFailures, now.status.commandFailures)
        if now.status.latencyMicrosecondsSum > last.status.latencyMicrosecondsSum {
            latencySum.increment(
                by: Double(now.status.latencyMicrosecondsSum - last.status.latencyMicrosecondsSum) / 1e6)
        }
        advance(invalid, last.status.invalidEntries, now.status.invalidEntries)
        advance(reregistrations, last.status.reregistrations, now.status.reregistrations)
        advance(bans, last.status.bansApplied, now.status.bansApplied)
        advance(events, last.status.eventsReceived, now.status.eventsReceived)
        advance(usageDropped, last.status.usageDropped, now.status.usageDropped)
        advance(quotaGranted, last.quotaGranted, now.quotaGranted)
        advance(quotaUnavailable, last.quotaUnavailable, now.quotaUnavailable)
        last = now
    }
}

import CoreMetrics
public import Prometheus
public import STUNCodec
import Synchronization
public import TURNCore
public import TURNRelay

/// The Prometheus metrics of one server, on a registry of its own (never the global
/// `MetricsSystem`), so that several servers can live in one process.
///
/// Nothing is counted on the packet path for these metrics: `update` reads the summed shard
/// counters when scraped and advances each swift-metrics counter by its change since the last
/// scrape. Labels are bounded enumerations only (family, code, reason, method, direction, path):
/// never a username or an address.
public final class TraverseMetrics: Sendable {
    /// The registry `/metrics` renders.
    public let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory

    /// What an `update` needs besides the shard counters.
    public struct Snapshot: Sendable {
        /// The shard counters, summed.
        public var counters = CoreCounters()
        /// The allocation limit in force.
        public var capacity = 0
        /// Whether the server is draining.
        public var draining = false
        /// Free relay ports by family (families with a relay address only).
        public var freePorts: [AddressFamily: Int] = [:]
        /// Kernel receive-queue drops so far.
        public var kernelDrops: Int64 = 0
        /// UDP GSO/GRO counters so far.
        public var offload = OffloadCounters()
        /// Process CPU seconds so far.
        public var cpuSeconds: Double?
        /// Resident set size.
        public var residentBytes: Int64?
        /// The load score (`LoadReport.score`).
        public var loadScore = 0.0
        /// TCP/TLS/DTLS connection counters, summed over the shards.
        public var streams = StreamCounters()
        /// DTLS admission counters, summed over the shards.
        public var dtls = DTLSCounters()
        /// The fleet's state, with `[fleet]`.
        public var fleet: FleetSnapshot?
        /// The kernel fast path's state, when configured.
        public var fastPath: FastPathStatus?

        /// An empty snapshot.
        public init() {}
    }

    private struct Published {
        var counters = CoreCounters()
        var streams = StreamCounters()
        var dtls = DTLSCounters()
        var fleet = FleetSnapshot()
        var kernelDrops: Int64 = 0
        var offload = OffloadCounters()
        var cpuSeconds = 0.0
        var fastPath: (verdicts: [UInt64], failureCounted: Bool) = ([], false)
    }

    private let published = Mutex(Published())
    /// Relay families of live allocations, by 5-tuple (allocation events arrive on shard queues).
    private let live = Mutex<[FiveTuple: [AddressFamily]]>([:])

    private let drops: [CoreMetrics.Counter]
    private let authFailures: [CoreMetrics.Counter]
    private let requests: [CoreMetrics.Counter]
    private let errorResponses: [CoreMetrics.Counter]
    private let created: [CoreMetrics.Counter]
    private let packetsIn: [CoreMetrics.Counter]
    private let bytesIn: [CoreMetrics.Counter]
    private let packetsOut: [CoreMetrics.Counter]
    private let bytesOut: [CoreMetrics.Counter]
    private let active: [CoreMetrics.Gauge]
    private let freePorts: [CoreMetrics.Gauge]
    private let capacity: CoreMetrics.Gauge
    private let draining: CoreMetrics.Gauge
    private let load: CoreMetrics.Gauge
    private let kernelDrops: CoreMetrics.Counter
    private let segmentedSends: CoreMetrics.Counter
    private let segmentedDatagrams: CoreMetrics.Counter
    private let mergedReceives: CoreMetrics.Counter
    private let mergedDatagrams: CoreMetrics.Counter
    private let cpu: CoreMetrics.FloatingPointCounter
    private let rss: CoreMetrics.Gauge
    private let durations: CoreMetrics.Timer
    private let reloads: [CoreMetrics.Counter]
    private let connectionsAccepted: [CoreMetrics.Counter]
    private let connectionsClosed: [CoreMetrics.Counter]
    private let handshakeFailures: CoreMetrics.Counter
    private let connectionsOpen: CoreMetrics.Gauge
    private let dtlsHelloVerifyRequests: CoreMetrics.Counter
    private let dtlsHellosDropped: CoreMetrics.Counter
    private let dtlsSessionsRefused: CoreMetrics.Counter
    private let overflowChallenges: CoreMetrics.Counter
    private let quotaRefusals: [CoreMetrics.Counter]
    private let redirects: [CoreMetrics.Counter]
    private let fleetMetrics: FleetMetrics
    private let fastPathMetrics: FastPathMetrics
    /// The labels of `StreamCounters.accepted`, in case order.
    static let streamTransports = StreamTransport.allCases.map(\.label)

    static let families: [(AddressFamily, String)] = [(.ipv4, "ipv4"), (.ipv6, "ipv6")]
    static let paths = ["channel", "indication"]  // CoreCounters' relay arrays are indexed so.
    /// Upper bounds of the allocation-duration histogram.
    public static let durationBuckets: [Duration] = [
        .seconds(1), .seconds(10), .seconds(30), .seconds(60), .seconds(300), .seconds(600), .seconds(1800),
        .seconds(3600), .seconds(7200), .seconds(14400), .seconds(86400),
    ]

    /// Creates every series (at zero) on a fresh registry.
    public init() {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets["traverse_allocation_duration_seconds"] = Self.durationBuckets
        self.registry = registry
        self.factory = factory
        func counters(_ name: String, _ label: String, _ values: [String]) -> [CoreMetrics.Counter] {
            values.map { CoreMetrics.Counter(label: name, dimensions: [(label, $0)], factory: factory) }
        }
        func gauge(_ name: String, _ dims: [(String, String)] = []) -> CoreMetrics.Gauge {
            CoreMetrics.Gauge(label: name, dimensions: dims, factory: factory)
        }
        drops = counters("traverse_dropped_total", "reason", DropReason.allCases.map(\.label))
        authFailures = counters("traverse_auth_failures_total", "reason", AuthFailure.allCases.map(\.label))
        requests = counters("traverse_stun_requests_total", "method", CountedMethod.allCases.map(\.label))
        errorResponses = counters("traverse_error_responses_total", "code", countedErrorCodes.map { String($0) })
        created = counters("traverse_allocations_created_total", "family", Self.families.map(\.1))
        func relay(_ name: String, _ direction: String) -> [CoreMetrics.Counter] {
            Self.paths.map {
                CoreMetrics.Counter(
                    label: name, dimensions: [("direction", direction), ("path", $0)], factory: factory)
            }
        }
        packetsIn = relay("traverse_relayed_packets_total", "client_to_peer")
        packetsOut = relay("traverse_relayed_packets_total", "peer_to_client")
        bytesIn = relay("traverse_relayed_bytes_total", "client_to_peer")
        bytesOut = relay("traverse_relayed_bytes_total", "peer_to_client")
        active = Self.families.map { gauge("traverse_allocations_active", [("family", $0.1)]) }
        freePorts = Self.families.map { gauge("traverse_relay_ports_free", [("family", $0.1)]) }
        capacity = gauge("traverse_allocations_capacity")
        draining = gauge("traverse_draining")
        load = gauge("traverse_load_score")
        kernelDrops = CoreMetrics.Counter(label: "traverse_kernel_socket_drops_total", dimensions: [], factory: factory)
        segmentedSends = CoreMetrics.Counter(label: "traverse_udp_gso_sends_total", dimensions: [], factory: factory)
        segmentedDatagrams = CoreMetrics.Counter(
            label: "traverse_udp_gso_datagrams_total", dimensions: [], factory: factory)
        mergedReceives = CoreMetrics.Counter(label: "traverse_udp_gro_receives_total", dimensions: [], factory: factory)
        mergedDatagrams = CoreMetrics.Counter(
            label: "traverse_udp_gro_datagrams_total", dimensions: [], factory: factory)
        cpu = CoreMetrics.FloatingPointCounter(label: "process_cpu_seconds_total", dimensions: [], factory: factory)
        rss = gauge("process_resident_memory_bytes")
        durations = CoreMetrics.Timer(label: "traverse_allocation_duration_seconds", dimensions: [], factory: factory)
        reloads = counters("traverse_config_reloads_total", "result", ["ok", "refused"])
        connectionsAccepted = counters("traverse_connections_accepted_total", "transport", Self.streamTransports)
        connectionsClosed = counters(
            "traverse_connections_closed_total", "reason", StreamCloseReason.allCases.map(\.label))
        handshakeFailures = CoreMetrics.Counter(
            label: "traverse_tls_handshake_failures_total", dimensions: [], factory: factory)
        connectionsOpen = gauge("traverse_connections_open")
        func counter(_ name: String) -> CoreMetrics.Counter {
            CoreMetrics.Counter(label: name, dimensions: [], factory: factory)
        }
        dtlsHelloVerifyRequests = counter("traverse_dtls_hello_verify_requests_total")
        dtlsHellosDropped = counter("traverse_dtls_hellos_dropped_total")
        dtlsSessionsRefused = counter("traverse_dtls_sessions_refused_total")
        overflowChallenges = counter("traverse_challenges_overflow_total")
        quotaRefusals = counters("traverse_quota_refusals_total", "scope", ["node", "fleet"])
        redirects = counters("traverse_redirects_total", "reason", RedirectReason.allCases.map(\.label))
        fleetMetrics = FleetMetrics(factory: factory)
        fastPathMetrics = FastPathMetrics(factory: factory)
    }

    /// Follows an allocation event (called on a shard's queue; control path only).
    public func observe(_ event: AllocationEvent) {
        switch event {
        case .created(let fiveTuple, _, let relays, _):
            live.withLock { $0[fiveTuple] = relays.map(\.family) }
        case .ended(let fiveTuple, _, let milliseconds, _, _):
            live.withLock { _ = $0.removeValue(forKey: fiveTuple) }
            durations.recordMilliseconds(milliseconds)
        }
    }

    /// Allocations held now by relay family, `[IPv4, IPv6]` (a dual-stack allocation counts in both).
    public var activeByFamily: [Int] {
        live.withLock { live in
            var n = [0, 0]
            for fs in live.values { for f in fs { n[f == .ipv4 ? 0 : 1] += 1 } }
            return n
        }
    }

    /// Counts a configuration reload.
    public func countReload(succeeded: Bool) { reloads[succeeded ? 0 : 1].increment() }

    /// Publishes `snapshot`: counters advance by their change since the last update, gauges are set.
    public func update(_ snapshot: Snapshot) {
        let families = activeByFamily
        for (i, g) in active.enumerated() { g.record(families[i]) }
        for (i, (family, _)) in Self.families.enumerated() { freePorts[i].record(snapshot.freePorts[family] ?? 0) }
        capacity.record(snapshot.capacity)
        draining.record(snapshot.draining ? 1 : 0)
        load.record(snapshot.loadScore)
        if let r = snapshot.residentBytes { rss.record(r) }
        connectionsOpen.record(snapshot.streams.open)

        published.withLock { last in
            let now = snapshot.counters
            func advance(_ metrics: [CoreMetrics.Counter], _ old: [UInt64], _ new: [UInt64]) {
                for i in metrics.indices where i < new.count && i < old.count && new[i] > old[i] {
                    metrics[i].increment(by: Int64(clamping: new[i] - old[i]))
                }
            }
            advance(drops, last.counters.drops, now.drops)
            advance(authFailures, last.counters.authFailures, now.authFailures)
            advance(requests, last.counters.requests, now.requests)
            advance(errorResponses, last.counters.errorResponses, now.errorResponses)
            advance(created, last.counters.allocationsCreated, now.allocationsCreated)
            advance(packetsIn, last.counters.relayedPacketsClientToPeer, now.relayedPacketsClientToPeer)
            advance(bytesIn, last.counters.relayedBytesClientToPeer, now.relayedBytesClientToPeer)
            advance(packetsOut, last.counters.relayedPacketsPeerToClient, now.relayedPacketsPeerToClient)
            advance(bytesOut, last.counters.relayedBytesPeerToClient, now.relayedBytesPeerToClient)
            advance(quotaRefusals, last.counters.quotaRefusals, now.quotaRefusals)
            advance(redirects, last.counters.redirects, now.redirects)
            if now.overflowChallenges > last.counters.overflowChallenges {
                overflowChallenges.increment(
                    by: Int64(clamping: now.overflowChallenges - last.counters.overflowChallenges))
            }
            last.counters = now
            advance(connectionsAccepted, last.streams.accepted.values, snapshot.streams.accepted.values)
            advance(connectionsClosed, last.streams.closed.values, snapshot.streams.closed.values)
            if snapshot.streams.handshakeFailures > last.streams.handshakeFailures {
                handshakeFailures.increment(
                    by: Int64(clamping: snapshot.streams.handshakeFailures - last.streams.handshakeFailures))
            }
            last.streams = snapshot.streams
            func advance(_ metric: CoreMetrics.Counter, _ old: UInt64, _ new: UInt64) {
                if new > old { metric.increment(by: Int64(clamping: new - old)) }
            }
            advance(dtlsHelloVerifyRequests, last.dtls.helloVerifyRequests, snapshot.dtls.helloVerifyRequests)
            advance(dtlsHellosDropped, last.dtls.hellosDropped, snapshot.dtls.hellosDropped)
            advance(dtlsSessionsRefused, last.dtls.sessionsRefused, snapshot.dtls.sessionsRefused)
            last.dtls = snapshot.dtls
            if let f = snapshot.fleet { fleetMetrics.update(f, last: &last.fleet) }
            if let f = snapshot.fastPath { fastPathMetrics.update(f, last: &last.fastPath) }
            if snapshot.kernelDrops > last.kernelDrops {
                kernelDrops.increment(by: snapshot.kernelDrops - last.kernelDrops)
                last.kernelDrops = snapshot.kernelDrops
            }
            let o = snapshot.offload
            let p = last.offload
            if o.segmentedSends > p.segmentedSends {
                segmentedSends.increment(by: Int64(clamping: o.segmentedSends - p.segmentedSends))
                segmentedDatagrams.increment(by: Int64(clamping: o.segmentedDatagrams - p.segmentedDatagrams))
            }
            if o.mergedReceives > p.mergedReceives {
                mergedReceives.increment(by: Int64(clamping: o.mergedReceives - p.mergedReceives))
                mergedDatagrams.increment(by: Int64(clamping: o.mergedDatagrams - p.mergedDatagrams))
            }
            last.offload = o
            if let c = snapshot.cpuSeconds, c > last.cpuSeconds {
                cpu.increment(by: c - last.cpuSeconds)
                last.cpuSeconds = c
            }
        }
    }

    /// The Prometheus text exposition of every metric.
    public func render() -> String { registry.emitToString() }
}

public import Logging
import STUNCodec
import Synchronization
public import TURNCore
import TraverseFleet
import TraverseSystem

/// The operator's view of a running `TraverseServer`: metrics, load, readiness, drain and
/// reload. Shared by the admin HTTP endpoint and the signal handlers, so both act the same way.
public final class Operations: Sendable {
    /// The server operated on.
    public let server: TraverseServer
    /// Its metrics.
    public let metrics: TraverseMetrics
    /// Its traffic and CPU over the last 10 s.
    public let tracker: LoadTracker
    /// One point per second over the last 5 minutes, for the console's live view.
    public let history: ConsoleHistory
    /// Re-reads the configuration from its sources (file, environment, flags) for a reload.
    public typealias ConfigurationSource = @Sendable () throws(ConfigurationError) -> TraverseConfiguration

    private let source: ConfigurationSource?
    private let logger: Logger
    /// The configuration in force (replaced by each successful reload).
    private let current: Mutex<TraverseConfiguration>
    private let reloadLock = Mutex(())
    private let fleetBox = Mutex<FleetService?>(nil)
    /// The rates of the last sample (`recordSample`), for callers that cannot await the shards.
    private let lastRates = Mutex(LoadTracker.Rates())

    /// The fleet service, when `[fleet]` is configured and started.
    public var fleet: FleetService? {
        get { fleetBox.withLock { $0 } }
        set { fleetBox.withLock { $0 = newValue } }
    }
    private let handover = Mutex<Task<Void, Never>?>(nil)

    /// Starts following `server`: allocation events feed the metrics. The load window and the
    /// console's history are fed by `runSampler` (the `SamplerService` of a running server).
    /// `source` is what a reload re-reads; nil refuses reloads.
    public init(server: TraverseServer, source: ConfigurationSource?, logger: Logger) {
        self.server = server
        self.source = source
        self.logger = logger
        self.metrics = TraverseMetrics()
        self.tracker = LoadTracker()
        self.history = ConsoleHistory()
        self.current = Mutex(server.configuration)
        let metrics = self.metrics
        server.relay.observeAllocations { metrics.observe($0) }
    }

    /// Samples now, then every second until the task is cancelled: feeds the load window and the
    /// console's history, and lets run-time bans lapse.
    public func runSampler() async {
        await recordSample()
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            if Task.isCancelled { return }
            await recordSample()
            server.bans.expire(now: Int64(FleetBoard.nowMilliseconds() / 1000))
        }
    }

    /// Stops the hand-over watch of a drain.
    public func shutdown() {
        handover.withLock { $0?.cancel() }
    }

    /// The configuration in force.
    public var configuration: TraverseConfiguration { current.withLock { $0 } }

    // MARK: Load and readiness

    /// Reads the counters once and feeds both the load window and the console's history.
    func recordSample() async {
        let counters = await server.relay.counters()
        let now = sample(counters: counters)
        tracker.record(now)
        let report = loadReport(counters: counters)
        history.record(
            ConsoleHistory.Reading(
                monotonic: now.time, time: FleetBoard.nowMilliseconds(), counters: counters, cpuSeconds: now.cpuSeconds,
                allocations: server.shared.allocationCount, load: report.load))
    }

    /// A reading of `counters` and the process CPU time, now.
    public func sample(counters: CoreCounters) -> LoadTracker.Sample {
        LoadTracker.Sample(
            counters: counters, cpuSeconds: ProcessStats.cpuSeconds() ?? 0, time: LoadTracker.monotonicSeconds())
    }

    /// Allocations the server accepts in total now (the configured maximum or its override).
    public var capacity: Int { server.shared.effectiveCapacity(configured: server.configuration.maxAllocations) }

    /// Why the server is not ready, or nil when it takes new allocations.
    public var notReadyReason: String? {
        if server.shared.isDraining { return "draining" }
        if server.shared.allocationCount >= capacity { return "full" }
        return nil
    }

    /// The load report of `GET /load`, with the shard counters read now.
    public func loadReport() async -> LoadReport {
        loadReport(counters: await server.relay.counters())
    }

    /// The load report with the rates up to `counters` (read now by the caller).
    public func loadReport(counters: CoreCounters) -> LoadReport {
        let rates = tracker.rates(now: sample(counters: counters))
        lastRates.withLock { $0 = rates }
        return loadReport(rates: rates)
    }

    /// The load report with the rates of the last sample (at most about a second old) and the
    /// allocations, capacity and drain state of now: for the fleet coordinator, which runs on a
    /// Dispatch queue and cannot await the shards.
    public func latestLoadReport() -> LoadReport {
        loadReport(rates: lastRates.withLock { $0 })
    }

    private func loadReport(rates: LoadTracker.Rates) -> LoadReport {
        let max = configuration.maxBitsPerSecond
        return LoadReport(
            allocations: server.shared.allocationCount, capacity: capacity, draining: server.shared.isDraining,
            rates: rates, cores: ProcessStats.cores, maxBitsPerSecond: max > 0 ? Double(max) : nil)
    }

    /// Updates the metrics from the shard counters and renders them (Prometheus text).
    public func scrape() async -> String {
        let relay = server.relay
        let counters = await relay.counters()
        var s = TraverseMetrics.Snapshot()
        s.counters = counters
        s.capacity = capacity
        s.draining = server.shared.isDraining
        for family in [AddressFamily.ipv4, .ipv6] where relay.configuration.relayIP(for: family) != nil {
            s.freePorts[family] = relay.freeRelayPorts(family)
        }
        s.kernelDrops = await relay.kernelDrops()
        s.offload = await relay.offloadCounters()
        s.streams = await relay.streamCounters()
        s.dtls = await relay.dtlsCounters()
        s.fleet = fleet.map(FleetSnapshot.init)
        if relay.configuration.fastPath != .off { s.fastPath = await relay.fastPathStatus() }
        s.cpuSeconds = ProcessStats.cpuSeconds()
        s.residentBytes = ProcessStats.residentBytes()
        s.loadScore = loadReport(counters: counters).load
        metrics.update(s)
        return metrics.render()
    }

    // MARK: Drain

    /// Stops taking new allocations (answered 300 Try Alternate when `admin.alternate_servers`
    /// is set, else 508); existing ones keep relaying. While draining, each listener another
    /// process also listens on (an instance started with `--takeover`) is handed over to it,
    /// checked now and every second (`RelayServer.handOverSharedListeners`). Returns false if
    /// already draining.
    @discardableResult
    public func startDrain(trigger: String) -> Bool {
        guard !server.shared.isDraining else { return false }
        server.shared.setDraining(true)
        logger.notice(
            "draining: new allocations refused",
            metadata: ["trigger": "\(trigger)", "allocations": "\(server.shared.allocationCount)"])
        let relay = server.relay
        let shared = server.shared
        let task = Task.detached {
            while !Task.isCancelled && shared.isDraining && !relay.everyListenerHandedOver {
                relay.handOverSharedListeners()
                try? await Task.sleep(for: .seconds(1))
            }
        }
        handover.withLock { $0 = task }
        return true
    }

    /// How a drain ended.
    public enum DrainOutcome: Sendable, Equatable {
        /// Every allocation ended.
        case drained
        /// `admin.drain_timeout` passed first; this many allocations remained.
        case timedOut(remaining: Int)
    }

    /// Starts draining, then waits until no allocation is left or `timeout` seconds
    /// (default `admin.drain_timeout`) pass.
    public func drain(trigger: String, timeout: Int? = nil) async -> DrainOutcome {
        startDrain(trigger: trigger)
        let limit = timeout ?? configuration.drainTimeout
        let deadline = LoadTracker.monotonicSeconds() + Double(limit)
        while server.shared.allocationCount > 0 {
            // Cancelled: the caller stops waiting (a second SIGTERM); the drain state stays.
            if Task.isCancelled { return .timedOut(remaining: server.shared.allocationCount) }
            if LoadTracker.monotonicSeconds() >= deadline {
                let n = server.shared.allocationCount
                logger.notice("drain timeout passed", metadata: ["remaining_allocations": "\(n)"])
                return .timedOut(remaining: n)
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
        logger.notice("drained: no allocation left")
        return .drained
    }

    // MARK: Reload

    /// Re-reads the configuration (and the users file, REST secrets, ban list and peer policy
    /// it names) and puts it in force. A configuration that fails to load or validate is refused
    /// with a logged reason, and the previous one stays. Settings that need a restart (listen
    /// addresses, limits, relay ports) are kept as they were.
    @discardableResult
    public func reload(trigger: String) -> Result<Void, ConfigurationError> {
        reloadLock.withLock { _ in
            let result: Result<Void, ConfigurationError>
            do throws(ConfigurationError) {
                guard let source else {
                    throw ConfigurationError(key: "(reload)", reason: "this server has no configuration source")
                }
                let fresh = try source()
                try server.reload(fresh)
                current.withLock { c in
                    c.drainTimeout = fresh.drainTimeout
                    c.maxBitsPerSecond = fresh.maxBitsPerSecond
                }
                result = .success(())
                logger.notice("configuration reloaded", metadata: ["trigger": "\(trigger)"])
            } catch {
                result = .failure(error)
                logger.error(
                    "reload refused; the previous configuration stays in force",
                    metadata: ["trigger": "\(trigger)", "reason": "\(error.description)"])
            }
            metrics.countReload(succeeded: (try? result.get()) != nil)
            return result
        }
    }
}

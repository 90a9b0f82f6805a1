import Synchronization
public import TURNCore

#if canImport(Glibc)
    import Glibc
#endif

/// Relay traffic and CPU use over a sliding window, from samples of the summed shard counters.
///
/// "In" is traffic from clients towards peers, "out" is traffic from peers towards clients
/// (relayed payload bytes, channel and indication paths together).
public final class LoadTracker: Sendable {
    /// One reading of the cumulative counters.
    public struct Sample: Sendable, Equatable {
        /// Monotonic seconds.
        public var time: Double
        /// Relayed payload bytes, client to peer, so far.
        public var bytesIn: UInt64
        /// Relayed payload bytes, peer to client, so far.
        public var bytesOut: UInt64
        /// Relayed datagrams, client to peer, so far.
        public var packetsIn: UInt64
        /// Relayed datagrams, peer to client, so far.
        public var packetsOut: UInt64
        /// Process CPU seconds so far.
        public var cpuSeconds: Double

        /// A reading taken at `time`.
        public init(
            time: Double, bytesIn: UInt64, bytesOut: UInt64, packetsIn: UInt64, packetsOut: UInt64, cpuSeconds: Double
        ) {
            self.time = time
            self.bytesIn = bytesIn
            self.bytesOut = bytesOut
            self.packetsIn = packetsIn
            self.packetsOut = packetsOut
            self.cpuSeconds = cpuSeconds
        }

        /// The relay totals of `counters` with the process CPU time, at `time`.
        public init(counters c: CoreCounters, cpuSeconds: Double, time: Double) {
            self.init(
                time: time, bytesIn: c.relayedBytesClientToPeer.reduce(0, &+),
                bytesOut: c.relayedBytesPeerToClient.reduce(0, &+),
                packetsIn: c.relayedPacketsClientToPeer.reduce(0, &+),
                packetsOut: c.relayedPacketsPeerToClient.reduce(0, &+), cpuSeconds: cpuSeconds)
        }
    }

    /// Rates over the window.
    public struct Rates: Sendable, Equatable {
        /// Client-to-peer payload bits per second.
        public var bitsPerSecondIn = 0.0
        /// Peer-to-client payload bits per second.
        public var bitsPerSecondOut = 0.0
        /// Client-to-peer datagrams per second.
        public var packetsPerSecondIn = 0.0
        /// Peer-to-client datagrams per second.
        public var packetsPerSecondOut = 0.0
        /// Process CPU seconds per wall second (1.0 = one core fully busy).
        public var cpu = 0.0
        /// Seconds actually covered (shorter than the window just after start).
        public var seconds = 0.0

        /// All zero.
        public init() {}
    }

    /// The window length in seconds.
    public let window: Double
    private let samples = Mutex<[Sample]>([])

    /// A tracker averaging over `window` seconds.
    public init(window: Double = 10) { self.window = window }

    /// Records a reading; readings older than the window (but the newest such one, the window's
    /// start) are forgotten.
    public func record(_ sample: Sample) {
        samples.withLock { s in
            s.append(sample)
            let start = sample.time - window
            while s.count > 2, s[1].time <= start { s.removeFirst() }
        }
    }

    /// Rates between the oldest kept reading and `now` (a fresh reading, not recorded).
    public func rates(now: Sample) -> Rates {
        let first = samples.withLock { s in s.first { $0.time >= now.time - window - 0.5 } }
        var r = Rates()
        guard let first else { return r }
        let dt = now.time - first.time
        guard dt >= 0.1 else { return r }
        func rate(_ a: UInt64, _ b: UInt64) -> Double { b >= a ? Double(b - a) / dt : 0 }
        r.bitsPerSecondIn = 8 * rate(first.bytesIn, now.bytesIn)
        r.bitsPerSecondOut = 8 * rate(first.bytesOut, now.bytesOut)
        r.packetsPerSecondIn = rate(first.packetsIn, now.packetsIn)
        r.packetsPerSecondOut = rate(first.packetsOut, now.packetsOut)
        r.cpu = max(0, (now.cpuSeconds - first.cpuSeconds) / dt)
        r.seconds = dt
        return r
    }

    /// Monotonic seconds (CLOCK_MONOTONIC).
    public static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

/// The load report of `GET /load` and the load score's formula.
public struct LoadReport: Codable, Sendable, Equatable {
    /// Allocations held now.
    public var allocations: Int
    /// The allocation limit in force.
    public var capacity: Int
    /// Whether new allocations are being turned away.
    public var draining: Bool
    /// Client-to-peer payload bits per second over the window.
    public var bitsPerSecondIn: Double
    /// Peer-to-client payload bits per second over the window.
    public var bitsPerSecondOut: Double
    /// Client-to-peer datagrams per second over the window.
    public var packetsPerSecondIn: Double
    /// Peer-to-client datagrams per second over the window.
    public var packetsPerSecondOut: Double
    /// Process CPU seconds per second over the window (may exceed 1 with several cores).
    public var cpu: Double
    /// Processors online.
    public var cores: Int
    /// `admin.max_bits_per_second`, if configured.
    public var maxBitsPerSecond: Double?
    /// The load score, 0...1 (see `score`).
    public var load: Double
    /// Seconds the rates cover.
    public var windowSeconds: Double

    enum CodingKeys: String, CodingKey {
        case allocations, capacity, draining, cpu, cores, load
        case bitsPerSecondIn = "bits_per_second_in"
        case bitsPerSecondOut = "bits_per_second_out"
        case packetsPerSecondIn = "packets_per_second_in"
        case packetsPerSecondOut = "packets_per_second_out"
        case maxBitsPerSecond = "max_bits_per_second"
        case windowSeconds = "window_seconds"
    }

    /// Builds a report and computes its score.
    public init(
        allocations: Int, capacity: Int, draining: Bool, rates: LoadTracker.Rates, cores: Int, maxBitsPerSecond: Double?
    ) {
        self.allocations = allocations
        self.capacity = capacity
        self.draining = draining
        bitsPerSecondIn = rates.bitsPerSecondIn
        bitsPerSecondOut = rates.bitsPerSecondOut
        packetsPerSecondIn = rates.packetsPerSecondIn
        packetsPerSecondOut = rates.packetsPerSecondOut
        cpu = rates.cpu
        self.cores = cores
        self.maxBitsPerSecond = maxBitsPerSecond
        windowSeconds = rates.seconds
        load = Self.score(
            allocations: allocations, capacity: capacity, cpu: rates.cpu, cores: cores,
            bitsPerSecond: rates.bitsPerSecondIn + rates.bitsPerSecondOut, maxBitsPerSecond: maxBitsPerSecond)
    }

    /// `max(allocations / capacity, cpu / cores, (bits in + bits out) / max_bits_per_second)`,
    /// the last term only when a maximum is configured; clamped to 0...1. A capacity of 0 (full
    /// by override) scores 1.
    public static func score(
        allocations: Int, capacity: Int, cpu: Double, cores: Int, bitsPerSecond: Double, maxBitsPerSecond: Double?
    ) -> Double {
        var s = capacity > 0 ? Double(allocations) / Double(capacity) : 1
        s = max(s, cpu / Double(max(1, cores)))
        if let m = maxBitsPerSecond, m > 0 { s = max(s, bitsPerSecond / m) }
        return min(1, max(0, s))
    }
}

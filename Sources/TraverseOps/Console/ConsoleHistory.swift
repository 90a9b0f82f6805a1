import Synchronization
public import TURNCore

/// The console's live view: one point per second over the last `capacity` seconds (5 minutes by
/// default), each the change of the summed shard counters since the previous point divided by
/// the seconds between them. Fed by the `Operations` sampler (every second); read by
/// `GET /console/live.json`.
///
/// Holds counts and rates only: never an address or a username.
public final class ConsoleHistory: Sendable {
    /// One second of the live view.
    public struct Point: Sendable, Equatable {
        /// Wall-clock time of the reading, Unix milliseconds.
        public var time: Int64
        /// Allocations held at that time.
        public var allocations: Int
        /// Relayed payload, client to peer, bits per second over the last interval.
        public var bitsPerSecondIn: Double
        /// Relayed payload, peer to client, bits per second.
        public var bitsPerSecondOut: Double
        /// Relayed datagrams, client to peer, per second.
        public var packetsPerSecondIn: Double
        /// Relayed datagrams, peer to client, per second.
        public var packetsPerSecondOut: Double
        /// Process CPU seconds per second over the last interval (1.0 = one core busy).
        public var cpu: Double
        /// The load score at that time (as `GET /load` reports it: its 10 s window).
        public var load: Double
        /// Drops per second, indexed by `DropReason.rawValue`.
        public var drops: [Double]
        /// Authentication failures per second, indexed by `AuthFailure.rawValue`.
        public var authFailures: [Double]
        /// Error answers per second, indexed like `countedErrorCodes`.
        public var errors: [Double]
    }

    /// The cumulative reading a point is derived from.
    public struct Reading: Sendable {
        /// Monotonic seconds.
        public var monotonic: Double
        /// Unix milliseconds.
        public var time: Int64
        /// The summed shard counters.
        public var counters: CoreCounters
        /// Process CPU seconds so far.
        public var cpuSeconds: Double
        /// Allocations held.
        public var allocations: Int
        /// The load score now.
        public var load: Double

        /// A reading of these values.
        public init(
            monotonic: Double, time: Int64, counters: CoreCounters, cpuSeconds: Double, allocations: Int, load: Double
        ) {
            self.monotonic = monotonic
            self.time = time
            self.counters = counters
            self.cpuSeconds = cpuSeconds
            self.allocations = allocations
            self.load = load
        }
    }

    private struct State {
        var points: [Point] = []
        /// Index of the oldest point once `points` is full (a ring).
        var start = 0
        var last: Reading?
    }

    /// Points kept (seconds of history).
    public let capacity: Int
    private let state = Mutex(State())

    /// A history of `capacity` points.
    public init(capacity: Int = 300) { self.capacity = max(1, capacity) }

    /// Adds the point between the previous reading and `reading` (the first reading only starts
    /// the series). A reading less than 0.1 s after the previous one is ignored.
    public func record(_ reading: Reading) {
        state.withLock { s in
            guard let last = s.last else {
                s.last = reading
                return
            }
            let dt = reading.monotonic - last.monotonic
            guard dt >= 0.1 else { return }
            s.last = reading
            let point = Self.point(from: last, to: reading, seconds: dt)
            if s.points.count < capacity {
                s.points.append(point)
            } else {
                s.points[s.start] = point
                s.start = (s.start + 1) % capacity
            }
        }
    }

    /// Points newer than `since` (Unix milliseconds; nil: all), oldest first.
    public func points(since: Int64? = nil) -> [Point] {
        state.withLock { s in
            let ordered = Array(s.points[s.start...] + s.points[..<s.start])
            guard let since else { return ordered }
            return ordered.filter { $0.time > since }
        }
    }

    static func point(from a: Reading, to b: Reading, seconds dt: Double) -> Point {
        func rate(_ x: UInt64, _ y: UInt64) -> Double { y >= x ? Double(y - x) / dt : 0 }
        func rates(_ x: [UInt64], _ y: [UInt64]) -> [Double] {
            y.indices.map { i in i < x.count ? rate(x[i], y[i]) : 0 }
        }
        func total(_ v: [UInt64]) -> UInt64 { v.reduce(0, &+) }
        let ca = a.counters
        let cb = b.counters
        return Point(
            time: b.time, allocations: b.allocations,
            bitsPerSecondIn: 8 * rate(total(ca.relayedBytesClientToPeer), total(cb.relayedBytesClientToPeer)),
            bitsPerSecondOut: 8 * rate(total(ca.relayedBytesPeerToClient), total(cb.relayedBytesPeerToClient)),
            packetsPerSecondIn: rate(total(ca.relayedPacketsClientToPeer), total(cb.relayedPacketsClientToPeer)),
            packetsPerSecondOut: rate(total(ca.relayedPacketsPeerToClient), total(cb.relayedPacketsPeerToClient)),
            cpu: max(0, (b.cpuSeconds - a.cpuSeconds) / dt), load: b.load,
            drops: rates(ca.drops, cb.drops), authFailures: rates(ca.authFailures, cb.authFailures),
            errors: rates(ca.errorResponses, cb.errorResponses))
    }
}

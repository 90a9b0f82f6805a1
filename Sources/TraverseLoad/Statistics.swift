public import Histogram

/// Classifies the sequence numbers of one received stream: new, duplicate, reordered, or too
/// old to check. Loss is what was sent minus `unique`.
///
/// Duplicates are found within a sliding window of `SequenceTracker.window` sequence numbers
/// below the highest one seen; an older packet counts as unique and reordered (`beyondWindow`).
public struct SequenceTracker: Sendable, Equatable {
    /// The sliding window in sequence numbers (a multiple of 64).
    public static let window: UInt64 = 4096

    /// What one packet was.
    public enum Outcome: Sendable, Equatable {
        /// The highest sequence so far (in order, possibly after a gap).
        case inOrder
        /// Below the highest seen and not seen before.
        case reordered
        /// Seen before.
        case duplicate
        /// Older than the window: counted as unique and reordered, but not checked for duplicates.
        case beyondWindow
    }

    /// Distinct sequence numbers received.
    public private(set) var unique: UInt64 = 0
    /// Packets received again.
    public private(set) var duplicates: UInt64 = 0
    /// Packets that arrived after a higher sequence number.
    public private(set) var reordered: UInt64 = 0
    /// Reordered packets older than the window.
    public private(set) var beyondWindow: UInt64 = 0
    /// The highest sequence number seen.
    public private(set) var highest: UInt64? = nil
    /// The largest distance by which a reordered packet was late, in sequence numbers.
    public private(set) var maxReorderDistance: UInt64 = 0

    var bits = [UInt64](repeating: 0, count: Int(SequenceTracker.window / 64))

    /// An empty tracker.
    public init() {}

    @inline(__always) private func isSet(_ s: UInt64) -> Bool {
        let i = s % Self.window
        return bits[Int(i >> 6)] & (1 << (i & 63)) != 0
    }

    @inline(__always) private mutating func set(_ s: UInt64) {
        let i = s % Self.window
        bits[Int(i >> 6)] |= 1 << (i & 63)
    }

    @inline(__always) private mutating func clear(_ s: UInt64) {
        let i = s % Self.window
        bits[Int(i >> 6)] &= ~(1 << (i & 63))
    }

    /// Records sequence number `s`.
    @discardableResult
    public mutating func record(_ s: UInt64) -> Outcome {
        guard let h = highest else {
            highest = s
            unique = 1
            set(s)
            return .inOrder
        }
        if s > h {
            if s - h >= Self.window {
                for i in bits.indices { bits[i] = 0 }
            } else {
                var x = h + 1
                while x < s {
                    clear(x)
                    x += 1
                }
            }
            set(s)
            highest = s
            unique += 1
            return .inOrder
        }
        if s == h {
            duplicates += 1
            return .duplicate
        }
        let distance = h - s
        if distance >= Self.window {
            unique += 1
            reordered += 1
            beyondWindow += 1
            maxReorderDistance = max(maxReorderDistance, distance)
            return .beyondWindow
        }
        if isSet(s) {
            duplicates += 1
            return .duplicate
        }
        set(s)
        unique += 1
        reordered += 1
        maxReorderDistance = max(maxReorderDistance, distance)
        return .reordered
    }
}

/// RFC 3550 §6.4.1 interarrival jitter of one stream, in nanoseconds, plus the instantaneous
/// transit-time differences |D(i-1, i)| for a percentile histogram.
public struct JitterEstimator: Sendable, Equatable {
    /// The smoothed estimate J (nanoseconds).
    public private(set) var jitter: Double = 0
    var lastTransit: Int64? = nil

    /// A fresh estimator.
    public init() {}

    /// Records a packet's transit time (receive time minus send time); returns |D|, or nil for
    /// the first packet.
    @discardableResult
    public mutating func record(transit: Int64) -> UInt64? {
        defer { lastTransit = transit }
        guard let last = lastTransit else { return nil }
        let d = (transit - last).magnitude
        jitter += (Double(d) - jitter) / 16
        return d
    }
}

/// Percentiles of a latency distribution, in microseconds.
public struct LatencySummary: Codable, Sendable, Equatable {
    /// Samples.
    public var count: UInt64
    /// Median.
    public var p50: Double
    /// 99th percentile.
    public var p99: Double
    /// 99.9th percentile.
    public var p999: Double
    /// Largest sample.
    public var max: Double
    /// Mean.
    public var mean: Double

    /// Summarises a histogram of nanoseconds.
    public init(nanoseconds h: Histogram<UInt64>) {
        count = h.totalCount
        if h.totalCount == 0 {
            p50 = 0
            p99 = 0
            p999 = 0
            max = 0
            mean = 0
        } else {
            p50 = Double(h.valueAtPercentile(50)) / 1000
            p99 = Double(h.valueAtPercentile(99)) / 1000
            p999 = Double(h.valueAtPercentile(99.9)) / 1000
            max = Double(h.max) / 1000
            mean = h.mean / 1000
        }
    }
}

/// Latency histograms: nanoseconds from 1 ns to 30 s at three significant digits.
public enum LatencyHistogram {
    /// The highest value recorded; larger ones are clamped.
    public static let highest: UInt64 = 30_000_000_000

    /// A new empty histogram.
    public static func make() -> Histogram<UInt64> {
        Histogram<UInt64>(
            lowestDiscernibleValue: 1, highestTrackableValue: highest, numberOfSignificantValueDigits: .three)
    }
}

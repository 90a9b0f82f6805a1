// The clocks: CLOCK_MONOTONIC for lifetimes, timeouts and latency; the wall clock only where a
// Unix time is on the wire (REST credential expiry). Invariant: the relay reads them once per
// batch, never per packet; nothing here allocates.

#if canImport(Glibc)
    import Glibc
#endif

/// Monotonic and wall clocks.
package enum Clock {
    /// CLOCK_MONOTONIC in nanoseconds.
    @inlinable @inline(__always)
    package static func monotonicNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// CLOCK_MONOTONIC in milliseconds.
    @inlinable @inline(__always)
    package static func monotonicMilliseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
    }

    /// Wall-clock Unix time in whole seconds.
    @inlinable
    package static func unixSeconds() -> Int64 { Int64(time(nil)) }
}

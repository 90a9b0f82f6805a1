// Figures of a process: CPU time and memory from /proc/<pid>/stat and /proc/<pid>/status, and
// this process's CPU time from getrusage. The parsers take text, so tests feed them samples.
// Invariant: Linux only; every reader returns nil (never traps) when /proc is missing or a
// line does not parse.

#if canImport(Glibc)
    import Glibc
#endif

/// CPU time and memory of this process (or another, by pid), read from `/proc` (Linux). Values
/// are nil where `/proc` is unavailable.
public enum ProcessStats {
    /// User plus system CPU seconds consumed so far (`/proc/self/stat` fields 14 and 15).
    public static func cpuSeconds() -> Double? {
        guard let text = TextFile.read("/proc/self/stat") else { return nil }
        return cpuSeconds(statLine: text, ticksPerSecond: Double(ticksPerSecond))
    }

    /// Parses a `/proc/<pid>/stat` line into CPU seconds.
    public static func cpuSeconds(statLine: String, ticksPerSecond: Double) -> Double? {
        guard ticksPerSecond > 0, let ticks = cpuTicks(statLine: statLine) else { return nil }
        return Double(ticks) / ticksPerSecond
    }

    /// utime + stime of a `/proc/<pid>/stat` line, in clock ticks. The command name (field 2)
    /// may hold spaces and parentheses, so fields are counted from the last `)`.
    public static func cpuTicks(statLine: String) -> UInt64? {
        guard let close = statLine.lastIndex(of: ")") else { return nil }
        // After ")": field 3 (state) is the first; utime is field 14, stime field 15.
        let fields = statLine[statLine.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = UInt64(fields[11]), let system = UInt64(fields[12]) else { return nil }
        return user + system
    }

    /// Resident set size in bytes (`VmRSS` in `/proc/self/status`).
    public static func residentBytes() -> Int64? {
        guard let text = TextFile.read("/proc/self/status") else { return nil }
        return residentBytes(status: text)
    }

    /// Parses the `VmRSS:   1234 kB` line of a `/proc/<pid>/status` text.
    public static func residentBytes(status: String) -> Int64? {
        statusKiB("VmRSS", in: status).map { Int64($0) * 1024 }
    }

    /// The number of a `Field:   1234 kB` line of a `/proc/<pid>/status` text (`VmRSS`, `VmHWM` …).
    public static func statusKiB(_ field: String, in status: String) -> UInt64? {
        let prefix = field + ":"
        for line in status.split(separator: "\n") where line.hasPrefix(prefix) {
            let parts = line.dropFirst(prefix.count).split(whereSeparator: { $0 == " " || $0 == "\t" })
            return parts.first.flatMap { UInt64($0) }
        }
        return nil
    }

    /// Processors online.
    public static var cores: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

    /// Clock ticks per second (sysconf(_SC_CLK_TCK)), the unit of `/proc/<pid>/stat` times.
    public static var ticksPerSecond: UInt64 { UInt64(max(1, sysconf(Int32(_SC_CLK_TCK)))) }

    /// This process's CPU time (user + system) in nanoseconds, from getrusage.
    public static func cpuNanoseconds() -> UInt64 {
        var ru = rusage()
        getrusage(RUSAGE_SELF.rawValue, &ru)
        let user = UInt64(ru.ru_utime.tv_sec) * 1_000_000_000 + UInt64(ru.ru_utime.tv_usec) * 1000
        let system = UInt64(ru.ru_stime.tv_sec) * 1_000_000_000 + UInt64(ru.ru_stime.tv_usec) * 1000
        return user + system
    }
}

/// CPU time and peak memory of a process, read from /proc.
public struct ProcessSample: Sendable, Equatable {
    /// utime + stime in clock ticks.
    public var cpuTicks: UInt64
    /// VmHWM in kB.
    public var peakRSSKiB: UInt64

    /// A sample of the given figures.
    public init(cpuTicks: UInt64, peakRSSKiB: UInt64) {
        self.cpuTicks = cpuTicks
        self.peakRSSKiB = peakRSSKiB
    }

    /// Clock ticks per second (sysconf(_SC_CLK_TCK)).
    public static var ticksPerSecond: UInt64 { ProcessStats.ticksPerSecond }

    /// Reads /proc/PID/stat and /proc/PID/status; nil if the process is gone.
    public static func read(pid: Int32) -> ProcessSample? {
        guard let stat = TextFile.read("/proc/\(pid)/stat"), let status = TextFile.read("/proc/\(pid)/status") else {
            return nil
        }
        return parse(stat: stat, status: status)
    }

    /// A sample from the texts of `/proc/<pid>/stat` and `/proc/<pid>/status`; a missing VmHWM
    /// reads as 0.
    public static func parse(stat: String, status: String) -> ProcessSample? {
        guard let ticks = ProcessStats.cpuTicks(statLine: stat) else { return nil }
        return ProcessSample(cpuTicks: ticks, peakRSSKiB: ProcessStats.statusKiB("VmHWM", in: status) ?? 0)
    }
}

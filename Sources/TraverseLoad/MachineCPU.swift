// Machine-wide CPU time from /proc/stat: with a kernel fast path (XDP) a relay's work moves out
// of its process into softirq, where only the machine's totals see it.
// Invariant: the parser takes text, so tests feed it samples; a missing or odd /proc/stat gives nil.
import TraverseSystem

#if canImport(Glibc)
    import Glibc
#endif

/// The aggregate `cpu` line of /proc/stat, in clock ticks (all CPUs together).
public struct MachineCPU: Sendable, Equatable {
    public var user: UInt64
    public var nice: UInt64
    public var system: UInt64
    public var idle: UInt64
    public var iowait: UInt64
    public var irq: UInt64
    public var softirq: UInt64
    public var steal: UInt64

    /// Busy ticks: user + nice + system + irq + softirq + steal (guest time is already in user
    /// and nice; idle and iowait are not busy).
    public var busy: UInt64 { user + nice + system + irq + softirq + steal }

    /// Parses the first (`cpu `) line of a /proc/stat text.
    public init?(procStat text: String) {
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") }) else { return nil }
        let f = line.split(separator: " ").dropFirst().compactMap { UInt64($0) }
        guard f.count >= 8 else { return nil }
        (user, nice, system, idle, iowait, irq, softirq, steal) = (f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7])
    }

    /// Reads /proc/stat now, with the monotonic time of the reading.
    static func read() -> (cpu: MachineCPU, at: UInt64)? {
        let fd = open("/proc/stat", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { _ = close(fd) }
        var bytes = [UInt8](repeating: 0, count: 4096)
        let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard n > 0, let cpu = MachineCPU(procStat: String(decoding: bytes[..<n], as: UTF8.self)) else { return nil }
        return (cpu, Clock.monotonicNanoseconds())
    }
}

/// Machine-wide CPU over the media phase and drain: every process and the kernel, on all CPUs.
public struct MachineSample: Codable, Sendable, Equatable {
    /// Busy CPU seconds (user+nice+system+irq+softirq+steal, all CPUs).
    public var busySeconds: Double
    /// Of those, softirq (where XDP and the network stack's receive side run).
    public var softirqSeconds: Double
    /// Of those, steal (time the hypervisor gave to someone else).
    public var stealSeconds: Double
    /// Wall-clock seconds between the two readings.
    public var wallSeconds: Double
    /// Processors online.
    public var cores: Int

    /// The difference between two readings, `later` and `earlier`, `ticksPerSecond` apart.
    public init(
        from earlier: MachineCPU, to later: MachineCPU, wallSeconds: Double, ticksPerSecond: Double, cores: Int
    ) {
        func seconds(_ a: UInt64, _ b: UInt64) -> Double { a >= b ? Double(a - b) / ticksPerSecond : 0 }
        busySeconds = seconds(later.busy, earlier.busy)
        softirqSeconds = seconds(later.softirq, earlier.softirq)
        stealSeconds = seconds(later.steal, earlier.steal)
        self.wallSeconds = wallSeconds
        self.cores = cores
    }
}

extension LoadEngine {
    /// The machine's CPU between two readings.
    static func machineSample(_ before: (cpu: MachineCPU, at: UInt64)?, _ after: (cpu: MachineCPU, at: UInt64)?)
        -> MachineSample?
    {
        guard let b = before, let a = after else { return nil }
        return MachineSample(
            from: b.cpu, to: a.cpu, wallSeconds: Double(a.at - b.at) / 1e9,
            ticksPerSecond: Double(ProcessStats.ticksPerSecond), cores: ProcessStats.cores)
    }
}

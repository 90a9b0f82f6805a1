#if canImport(Glibc)
    import Glibc
#endif

/// CPU time and memory of this process, read from `/proc/self` (Linux). Values are nil where
/// `/proc` is unavailable.
public enum ProcessStats {
    /// User plus system CPU seconds consumed so far (`/proc/self/stat` fields 14 and 15).
    public static func cpuSeconds() -> Double? {
        guard let text = FileText.read("/proc/self/stat") else { return nil }
        return cpuSeconds(statLine: text, ticksPerSecond: Double(sysconf(Int32(_SC_CLK_TCK))))
    }

    /// Parses a `/proc/<pid>/stat` line. The command name (field 2) may hold spaces and
    /// parentheses, so fields are counted from the last `)`.
    public static func cpuSeconds(statLine: String, ticksPerSecond: Double) -> Double? {
        guard let close = statLine.lastIndex(of: ")"), ticksPerSecond > 0 else { return nil }
        // After ")": field 3 (state) is the first; utime is field 14, stime field 15.
        let fields = statLine[statLine.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / ticksPerSecond
    }

    /// Resident set size in bytes (`VmRSS` in `/proc/self/status`).
    public static func residentBytes() -> Int64? {
        guard let text = FileText.read("/proc/self/status") else { return nil }
        return residentBytes(status: text)
    }

    /// Parses the `VmRSS:   1234 kB` line of a `/proc/<pid>/status` text.
    public static func residentBytes(status: String) -> Int64? {
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let parts = line.dropFirst(6).split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard let kb = parts.first.flatMap({ Int64($0) }) else { return nil }
            return kb * 1024
        }
        return nil
    }

    /// Processors online.
    public static var cores: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
}

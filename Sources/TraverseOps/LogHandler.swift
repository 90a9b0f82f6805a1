public import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// A swift-log handler writing one structured line per event to stderr, as logfmt
/// (`ts=2026-12-01T03:32:59.843Z level=info msg="…" key=value`) or JSON (`{"ts":"…","level":…}`).
/// Timestamps are RFC 3339, UTC, with milliseconds.
public struct StructuredLogHandler: LogHandler {
    public enum Format: Sendable { case logfmt, json }

    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    let label: String
    let format: Format

    public init(label: String, level: Logger.Level, format: Format) {
        self.label = label
        self.logLevel = level
        self.format = format
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let stamp = Self.rfc3339(seconds: Int(ts.tv_sec), milliseconds: Int(ts.tv_nsec / 1_000_000))
        var line: String
        switch format {
        case .logfmt:
            line = "ts=\(stamp) level=\(event.level) msg=\(Self.quote(event.message.description))"
            for key in all.keys.sorted() { line += " \(key)=\(Self.quote("\(all[key]!)"))" }
        case .json:
            // One object, `ts`, `level` and `msg` first, then the metadata by key; every key and
            // value is a string escaped by `JSONEncoder` (`JSONText.string`).
            line =
                "{\"ts\":\"\(stamp)\",\"level\":\"\(event.level)\",\"msg\":\(JSONText.string(event.message.description))"
            for key in all.keys.sorted() { line += ",\(JSONText.string(key)):\(JSONText.string("\(all[key]!)"))" }
            line += "}"
        }
        line += "\n"
        var bytes = Array(line.utf8)
        _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
    }

    /// `2026-12-01T03:32:59.843Z`: RFC 3339, UTC, milliseconds, for `seconds` since the Unix epoch.
    public static func rfc3339(seconds: Int, milliseconds: Int) -> String {
        var t = time_t(seconds)
        var parts = tm()
        gmtime_r(&t, &parts)
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        let ms = milliseconds < 10 ? "00\(milliseconds)" : milliseconds < 100 ? "0\(milliseconds)" : "\(milliseconds)"
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):"
            + "\(two(parts.tm_min)):\(two(parts.tm_sec)).\(ms)Z"
    }

    static func quote(_ s: String) -> String {
        if !s.isEmpty && s.allSatisfy({ $0.isASCII && !$0.isWhitespace && $0 != "\"" && $0 != "=" }) { return s }
        return "\"" + s.replacingAll("\\", "\\\\").replacingAll("\"", "\\\"").replacingAll("\n", "\\n") + "\""
    }
}

extension String {
    func replacingAll(_ a: Character, _ b: String) -> String {
        var out = ""
        for c in self { if c == a { out += b } else { out.append(c) } }
        return out
    }
}

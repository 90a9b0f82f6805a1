public import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// A swift-log handler writing one structured line per event to stderr, as logfmt
/// (`ts=… level=info msg="…" key=value`) or JSON.
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
        let stamp = "\(ts.tv_sec).\(String(ts.tv_nsec / 1_000_000).leftPadded(3))"
        var line: String
        switch format {
        case .logfmt:
            line = "ts=\(stamp) level=\(event.level) msg=\(Self.quote(event.message.description))"
            for key in all.keys.sorted() { line += " \(key)=\(Self.quote("\(all[key]!)"))" }
        case .json:
            line = "{\"ts\":\(stamp),\"level\":\"\(event.level)\",\"msg\":\(Self.json(event.message.description))"
            for key in all.keys.sorted() { line += ",\(Self.json(key)):\(Self.json("\(all[key]!)"))" }
            line += "}"
        }
        line += "\n"
        var bytes = Array(line.utf8)
        _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
    }

    static func quote(_ s: String) -> String {
        if !s.isEmpty && s.allSatisfy({ $0.isASCII && !$0.isWhitespace && $0 != "\"" && $0 != "=" }) { return s }
        return "\"" + s.replacingAll("\\", "\\\\").replacingAll("\"", "\\\"").replacingAll("\n", "\\n") + "\""
    }

    static func json(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    out += "\\u00" + String(u.value, radix: 16).leftPadded(2)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}

extension String {
    func leftPadded(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
    func replacingAll(_ a: Character, _ b: String) -> String {
        var out = ""
        for c in self { if c == a { out += b } else { out.append(c) } }
        return out
    }
}

/// One sample line of the Prometheus text format: `name{label="value",...} number`.
public struct MetricSample: Sendable, Equatable {
    /// The metric name.
    public var name: String
    /// Label values by name.
    public var labels: [String: String]
    /// The sample value.
    public var value: Double

    /// A sample of `name` with `labels`.
    public init(name: String, labels: [String: String], value: Double) {
        self.name = name
        self.labels = labels
        self.value = value
    }

    /// Parses the sample lines of a Prometheus text exposition (comments skipped).
    public static func parse(_ text: String) -> [MetricSample] {
        var out: [MetricSample] = []
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingSpaces()
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                continue
            }
            let series = line[..<space]
            var labels: [String: String] = [:]
            var name = String(series)
            if let brace = series.firstIndex(of: "{"), series.hasSuffix("}") {
                name = String(series[..<brace])
                let inner = series[series.index(after: brace)..<series.index(before: series.endIndex)]
                for pair in inner.split(separator: ",") {
                    guard let eq = pair.firstIndex(of: "=") else { continue }
                    let key = pair[..<eq].trimmingSpaces()
                    var v = pair[pair.index(after: eq)...]
                    if v.hasPrefix("\"") { v = v.dropFirst() }
                    if v.hasSuffix("\"") { v = v.dropLast() }
                    labels[String(key)] = String(v)
                }
            }
            out.append(MetricSample(name: name, labels: labels, value: value))
        }
        return out
    }
}

/// The text frame `traverse top` prints, from a `/load` report and a `/metrics` scrape.
public enum TopView {
    /// Renders one frame. `previous` (the last frame's metrics) turns error totals into
    /// per-interval counts; `interval` is the seconds between the two.
    public static func render(
        load: LoadReport, metrics: [MetricSample], previous: [MetricSample]? = nil, interval: Double = 1
    ) -> String {
        func total(_ name: String, where match: (([String: String]) -> Bool) = { _ in true }) -> Double {
            metrics.filter { $0.name == name && match($0.labels) }.reduce(0) { $0 + $1.value }
        }
        var lines: [String] = []
        let state = load.draining ? "DRAINING" : (load.allocations >= load.capacity ? "FULL" : "ready")
        lines.append(
            "traverse  load \(percent(load.load))  state \(state)  cpu \(fixed(load.cpu, 2))/\(load.cores) cores"
                + "  rss \(bytes(total("process_resident_memory_bytes")))")
        lines.append(
            "allocations \(load.allocations)/\(load.capacity)"
                + "  (ipv4 \(Int(total("traverse_allocations_active") { $0["family"] == "ipv4" })),"
                + " ipv6 \(Int(total("traverse_allocations_active") { $0["family"] == "ipv6" })))"
                + "  created \(Int(total("traverse_allocations_created_total")))")
        lines.append(
            "in  (client->peer) \(bits(load.bitsPerSecondIn))  \(fixed(load.packetsPerSecondIn, 0)) pkt/s")
        lines.append(
            "out (peer->client) \(bits(load.bitsPerSecondOut))  \(fixed(load.packetsPerSecondOut, 0)) pkt/s")
        lines.append(
            "requests \(Int(total("traverse_stun_requests_total")))  auth failures \(Int(total("traverse_auth_failures_total")))"
                + "  drops \(Int(total("traverse_dropped_total")))  kernel drops \(Int(total("traverse_kernel_socket_drops_total")))"
        )
        var errors: [(code: String, total: Double, recent: Double)] = []
        for s in metrics where s.name == "traverse_error_responses_total" && s.value > 0 {
            let code = s.labels["code"] ?? "?"
            let before =
                previous?.first { $0.name == s.name && $0.labels["code"] == code }?.value
                ?? (previous == nil ? s.value : 0)
            errors.append((code, s.value, s.value - before))
        }
        errors.sort { ($0.recent, $0.total) > ($1.recent, $1.total) }
        if errors.isEmpty {
            lines.append("error responses: none")
        } else {
            let per = previous == nil ? "" : " (last \(fixed(interval, 0)) s)"
            lines.append("top error codes\(per):")
            for e in errors.prefix(5) {
                let recent = previous == nil ? "" : "  +\(Int(e.recent))"
                lines.append("  \(e.code)  \(Int(e.total))\(recent)")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    static func fixed(_ v: Double, _ digits: Int) -> String {
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let r = (v * scale).rounded() / scale
        if digits == 0 { return String(Int(r)) }
        var s = String(r)
        if let dot = s.firstIndex(of: ".") {
            let decimals = s.distance(from: dot, to: s.endIndex) - 1
            if decimals < digits { s += String(repeating: "0", count: digits - decimals) }
        }
        return s
    }

    static func percent(_ v: Double) -> String { fixed(v * 100, 1) + "%" }

    static func bits(_ v: Double) -> String {
        if v >= 1e9 { return fixed(v / 1e9, 2) + " Gbit/s" }
        if v >= 1e6 { return fixed(v / 1e6, 2) + " Mbit/s" }
        if v >= 1e3 { return fixed(v / 1e3, 1) + " kbit/s" }
        return fixed(v, 0) + " bit/s"
    }

    static func bytes(_ v: Double) -> String {
        if v >= 1_073_741_824 { return fixed(v / 1_073_741_824, 2) + " GiB" }
        return fixed(v / 1_048_576, 1) + " MiB"
    }
}

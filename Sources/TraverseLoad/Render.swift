public import Foundation

extension LoadRunReport {
    /// The human-readable summary table.
    public func table() -> String {
        var rows: [(String, String)] = [
            ("target", target),
            ("mode", "\(mode), \(calls) calls (\(clients) TURN clients), \(framing)"),
            ("media", media),
            ("duration", "\(fmt(durationSeconds, 2)) s (set-up \(fmt(control.setupSeconds, 2)) s)"),
            ("packets sent", "\(sent)  (\(fmt(offeredPPS, 0)) pkt/s offered)"),
            (
                "packets received",
                "\(received)  (\(fmt(deliveredPPS, 0)) pkt/s delivered, \(fmt(deliveredMbps, 2)) Mbit/s)"
            ),
            ("lost", "\(lost)  (\(fmt(lossRatio * 100, 4)) %)"),
            ("duplicates / reordered", "\(duplicates) / \(reordered)"),
            ("SRTP auth failures", "\(authFailures)"),
            ("SRTP too old / other", "\(srtpTooOld) / \(srtpOtherErrors)"),
            ("malformed", "\(malformed)"),
            ("send failures / own drops", "\(sendFailures) / \(generatorSocketDrops)"),
            (
                "latency µs p50/p99/p99.9/max",
                "\(fmt(latency.p50, 1)) / \(fmt(latency.p99, 1)) / \(fmt(latency.p999, 1)) / \(fmt(latency.max, 1))"
            ),
            (
                "jitter |D| µs p50/p99/p99.9",
                "\(fmt(jitter.p50, 1)) / \(fmt(jitter.p99, 1)) / \(fmt(jitter.p999, 1)) (RFC 3550 J \(fmt(rfc3550JitterMicroseconds, 1)))"
            ),
            (
                "control",
                "\(control.requests) requests, \(control.retransmissions) retransmits, \(control.unauthorised)×401, \(control.staleNonces)×438, \(control.failures) failures, \(control.refreshRounds) refresh rounds"
            ),
            ("generator CPU", "\(fmt(generatorCPUPercent, 1)) % of one core"),
        ]
        if let s = server {
            rows.append(
                (
                    "server CPU",
                    "\(fmt(s.cpuSeconds, 2)) s, \(fmt(s.cpuMicrosecondsPerRelayedDatagram, 2)) µs per relayed datagram (\(s.relayedDatagrams) relayed)"
                ))
            rows.append(("server peak RSS", "\(s.peakRSSKiB) KiB"))
        }
        if let m = machine, sent + received > 0 {
            rows.append(
                (
                    "machine CPU",
                    "\(fmt(m.busySeconds, 2)) s busy of \(fmt(m.wallSeconds * Double(m.cores), 2)) (softirq \(fmt(m.softirqSeconds, 2)) s), \(fmt(m.busySeconds * 1e6 / Double(sent + received), 2)) µs per datagram sent or received"
                ))
        }
        if let knee = kneePPS {
            rows.append(("knee (loss ≤ \(fmt((lossThreshold ?? 0) * 100, 3)) %)", "\(fmt(knee, 0)) pkt/s offered"))
        } else if mode == "ramp" {
            rows.append(("knee", "none: the first step already lost too much"))
        }
        let width = rows.map { $0.0.count }.max() ?? 0
        var out = rows.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 }
        if !rampSteps.isEmpty {
            out.append("")
            out.append("ramp step   offered pkt/s        sent    received      loss %    p50 µs    p99 µs  p99.9 µs")
            for (i, s) in rampSteps.enumerated() {
                out.append(
                    [
                        pad("\(i)", 9), pad(fmt(s.offeredPPS, 0), 15), pad("\(s.sent)", 11), pad("\(s.received)", 11),
                        pad(fmt(s.loss * 100, 4), 11), pad(fmt(s.latency.p50, 1), 9), pad(fmt(s.latency.p99, 1), 9),
                        pad(fmt(s.latency.p999, 1), 9),
                    ].joined(separator: " "))
            }
        }
        for w in warnings { out.append("warning: \(w)") }
        return out.joined(separator: "\n") + "\n"
    }

    /// The report as pretty-printed JSON.
    public func json() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }

    /// A hand-written SVG: offered and delivered packets/s per second on top, latency percentiles
    /// per second (log scale) below.
    public func svg() -> String {
        let w = 960.0
        let h = 640.0
        let left = 80.0
        let right = 180.0
        let plotW = w - left - right
        let topY = 50.0
        let panelH = 230.0
        let gap = 70.0
        let n = max(1, seconds.count)
        func x(_ s: Double) -> Double { left + plotW * (s + 0.5) / Double(n) }
        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(w))" height="\(Int(h))" viewBox="0 0 \(Int(w)) \(Int(h))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(left)" y="24" font-size="15" font-weight="bold">\(escape("traverse-load: \(mode), \(calls) calls, \(target)"))</text>
            <text x="\(left)" y="40" fill="#555">\(escape("\(media); loss \(fmt(lossRatio * 100, 4)) %, SRTP auth failures \(authFailures)"))</text>

            """
        // Panel 1: rates.
        let maxRate = niceCeiling(seconds.map { max($0.offeredPPS, $0.deliveredPPS) }.max() ?? 1)
        func yRate(_ v: Double) -> Double { topY + panelH - panelH * v / maxRate }
        svg += axes(left: left, top: topY, width: plotW, height: panelH, n: n)
        for i in 0...4 {
            let v = maxRate * Double(i) / 4
            let y = yRate(v)
            svg += "<line x1=\"\(left)\" x2=\"\(left + plotW)\" y1=\"\(y)\" y2=\"\(y)\" stroke=\"#eee\"/>\n"
            svg += "<text x=\"\(left - 6)\" y=\"\(y + 4)\" text-anchor=\"end\">\(fmt(v, 0))</text>\n"
        }
        svg +=
            "<text x=\"20\" y=\"\(topY + panelH / 2)\" transform=\"rotate(-90 20 \(topY + panelH / 2))\" text-anchor=\"middle\">packets/s</text>\n"
        svg += polyline(seconds.map { (x(Double($0.second)), yRate($0.offeredPPS)) }, color: "#1f77b4", dash: true)
        svg += polyline(seconds.map { (x(Double($0.second)), yRate($0.deliveredPPS)) }, color: "#2ca02c", dash: false)
        svg += legend(x: left + plotW + 15, y: topY + 10, items: [("offered", "#1f77b4"), ("delivered", "#2ca02c")])
        if let knee = kneePPS {
            svg +=
                "<line x1=\"\(left)\" x2=\"\(left + plotW)\" y1=\"\(yRate(knee))\" y2=\"\(yRate(knee))\" stroke=\"#d62728\" stroke-dasharray=\"2,3\"/>\n"
            svg +=
                "<text x=\"\(left + plotW + 15)\" y=\"\(topY + 60)\" fill=\"#d62728\">knee \(fmt(knee, 0)) pkt/s</text>\n"
        }
        // Panel 2: latency, log scale.
        let top2 = topY + panelH + gap
        let values = seconds.flatMap { [$0.p50, $0.p99, $0.p999] }.filter { $0 > 0 }
        let lo = pow(10, (log10(values.min() ?? 1)).rounded(.down))
        let hi = pow(10, (log10(max(values.max() ?? 10, lo * 10))).rounded(.up))
        func yLat(_ v: Double) -> Double {
            let c = min(max(v, lo), hi)
            return top2 + panelH - panelH * (log10(c) - log10(lo)) / (log10(hi) - log10(lo))
        }
        svg += axes(left: left, top: top2, width: plotW, height: panelH, n: n)
        var decade = lo
        while decade <= hi * 1.0001 {
            let y = yLat(decade)
            svg += "<line x1=\"\(left)\" x2=\"\(left + plotW)\" y1=\"\(y)\" y2=\"\(y)\" stroke=\"#eee\"/>\n"
            svg +=
                "<text x=\"\(left - 6)\" y=\"\(y + 4)\" text-anchor=\"end\">\(fmt(decade, decade < 1 ? 2 : 0))</text>\n"
            decade *= 10
        }
        svg +=
            "<text x=\"20\" y=\"\(top2 + panelH / 2)\" transform=\"rotate(-90 20 \(top2 + panelH / 2))\" text-anchor=\"middle\">one-way latency µs (log)</text>\n"
        let withData = seconds.filter { $0.p50 > 0 }
        svg += polyline(withData.map { (x(Double($0.second)), yLat($0.p50)) }, color: "#2ca02c", dash: false)
        svg += polyline(withData.map { (x(Double($0.second)), yLat($0.p99)) }, color: "#ff7f0e", dash: false)
        svg += polyline(withData.map { (x(Double($0.second)), yLat($0.p999)) }, color: "#d62728", dash: false)
        svg += legend(
            x: left + plotW + 15, y: top2 + 10, items: [("p50", "#2ca02c"), ("p99", "#ff7f0e"), ("p99.9", "#d62728")])
        svg +=
            "<text x=\"\(left + plotW / 2)\" y=\"\(top2 + panelH + 40)\" text-anchor=\"middle\">seconds since media start</text>\n"
        svg += "</svg>\n"
        return svg
    }

    private func axes(left: Double, top: Double, width: Double, height: Double, n: Int) -> String {
        var s =
            "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(width)\" height=\"\(height)\" fill=\"none\" stroke=\"#333\"/>\n"
        let every = max(1, n / 10)
        for i in stride(from: 0, to: n, by: every) {
            let xx = left + width * (Double(i) + 0.5) / Double(n)
            s += "<line x1=\"\(xx)\" x2=\"\(xx)\" y1=\"\(top + height)\" y2=\"\(top + height + 5)\" stroke=\"#333\"/>\n"
            s += "<text x=\"\(xx)\" y=\"\(top + height + 18)\" text-anchor=\"middle\">\(i)</text>\n"
        }
        return s
    }

    private func polyline(_ points: [(Double, Double)], color: String, dash: Bool) -> String {
        guard !points.isEmpty else { return "" }
        let p = points.map { "\(fmt($0.0, 1)),\(fmt($0.1, 1))" }.joined(separator: " ")
        var s =
            "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"\(dash ? " stroke-dasharray=\"6,3\"" : "") points=\"\(p)\"/>\n"
        if points.count == 1 {
            s += "<circle cx=\"\(fmt(points[0].0, 1))\" cy=\"\(fmt(points[0].1, 1))\" r=\"3\" fill=\"\(color)\"/>\n"
        }
        return s
    }

    private func legend(x: Double, y: Double, items: [(String, String)]) -> String {
        var s = ""
        for (i, item) in items.enumerated() {
            let yy = y + Double(i) * 18
            s +=
                "<line x1=\"\(x)\" x2=\"\(x + 20)\" y1=\"\(yy)\" y2=\"\(yy)\" stroke=\"\(item.1)\" stroke-width=\"2\"/>\n"
            s += "<text x=\"\(x + 26)\" y=\"\(yy + 4)\">\(escape(item.0))</text>\n"
        }
        return s
    }

    private func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;")
    }

    private func niceCeiling(_ v: Double) -> Double {
        guard v > 0 else { return 1 }
        let p = pow(10, log10(v).rounded(.down))
        for m in [1.0, 2.0, 2.5, 5.0, 10.0] where m * p >= v { return m * p }
        return 10 * p
    }

    private func pad(_ s: String, _ n: Int) -> String {
        s.count >= n ? s : String(repeating: " ", count: n - s.count) + s
    }
}

import Foundation
import STUNCodec
import TURNCore
import Testing

@testable import TraverseOps

/// The console's pieces without a socket: the 1 s history, the self-test's URL host, Chart.js.
@Suite("Console")
struct ConsoleTests {
    func reading(_ second: Double, bytesIn: UInt64 = 0, packetsIn: UInt64 = 0, drops: UInt64 = 0, cpu: Double = 0)
        -> ConsoleHistory.Reading
    {
        var c = CoreCounters()
        c.relayedBytesClientToPeer = [bytesIn, 0]
        c.relayedPacketsClientToPeer = [packetsIn, 0]
        c.drops[DropReason.noPermission.rawValue] = drops
        c.errorResponses[countedErrorCodes.firstIndex(of: 401)!] = drops
        return ConsoleHistory.Reading(
            monotonic: 100 + second, time: 1_000_000 + Int64(second * 1000), counters: c, cpuSeconds: cpu,
            allocations: Int(second), load: 0.25)
    }

    @Test func historyHoldsPerSecondRates() {
        let h = ConsoleHistory(capacity: 300)
        h.record(reading(0))
        #expect(h.points().isEmpty)  // the first reading only starts the series
        h.record(reading(1, bytesIn: 1000, packetsIn: 10, drops: 3, cpu: 0.5))
        h.record(reading(3, bytesIn: 3000, packetsIn: 30, drops: 3, cpu: 1.5))
        let p = h.points()
        #expect(p.count == 2)
        #expect(p[0].bitsPerSecondIn == 8000 && p[0].packetsPerSecondIn == 10)
        #expect(p[0].drops[DropReason.noPermission.rawValue] == 3)
        #expect(p[0].cpu == 0.5)
        // Two seconds between readings: rates are per second.
        #expect(p[1].bitsPerSecondIn == 8000 && p[1].packetsPerSecondIn == 10 && p[1].cpu == 0.5)
        #expect(p[1].drops[DropReason.noPermission.rawValue] == 0)
        #expect(p[1].allocations == 3 && p[1].load == 0.25)
        #expect(h.points(since: p[0].time).map(\.time) == [p[1].time])
    }

    @Test func historyKeepsTheLastCapacityPointsInOrder() {
        let h = ConsoleHistory(capacity: 5)
        for s in 0...12 { h.record(reading(Double(s), packetsIn: UInt64(s * s))) }
        let p = h.points()
        #expect(p.count == 5)
        let times: [Int64] = (8...12).map { (s: Int) -> Int64 in 1_000_000 + Int64(s) * 1000 }
        let rates: [Double] = (8...12).map { (s: Int) -> Double in Double(2 * s - 1) }  // s² - (s-1)²
        #expect(p.map(\.time) == times)
        #expect(p.map(\.packetsPerSecondIn) == rates)
        // A reading too soon after the previous one, or counters that went back, add nothing wrong.
        h.record(reading(12.05, packetsIn: 0))
        #expect(h.points().count == 5 && h.points().last?.time == 1_012_000)
        h.record(reading(13, packetsIn: 0))
        #expect(h.points().last?.packetsPerSecondIn == 0)
    }

    @Test func selfTestURLHostComesFromTheHostHeader() {
        #expect(ConsoleSelfTest.urlHost(ofHostHeader: "relay.example:9641") == "relay.example")
        #expect(ConsoleSelfTest.urlHost(ofHostHeader: "Relay.Example.") == "relay.example")
        #expect(ConsoleSelfTest.urlHost(ofHostHeader: "10.1.2.3:9641") == "10.1.2.3")
        #expect(ConsoleSelfTest.urlHost(ofHostHeader: "[::1]:9641") == "[::1]")
        #expect(ConsoleSelfTest.urlHost(ofHostHeader: "not a host") == nil)
        #expect(ConsoleSelfTest.urlHost(ofHostHeader: "") == nil)
    }

    @Test func chartJSIsReadFromTheDebianPackageOrNotAtAll() {
        #expect(ConsoleAssets.chartJS(path: "/nonexistent/chart.min.js") == nil)
        if FileManager.default.fileExists(atPath: ConsoleAssets.chartPath) {
            let data = ConsoleAssets.chartJS()
            #expect(data.map { String(decoding: $0.prefix(200), as: UTF8.self).contains("Chart.js") } == true)
        }
    }

    @Test func everyAssetIsNamedByAPageAndNoScriptWritesHTML() {
        let pages = ConsoleAssets.pages.values.map(\.body).joined()
        for name in ConsoleAssets.files.keys { #expect(pages.contains("/console/assets/\(name)"), "\(name) unused") }
        for (name, asset) in ConsoleAssets.files where name.hasSuffix(".js") {
            #expect(!asset.body.contains("innerHTML") && !asset.body.contains("insertAdjacentHTML"), "\(name)")
            #expect(!asset.body.contains("eval(") && !asset.body.contains("document.write"), "\(name)")
        }
    }
}

@Suite("Admin endpoint logs") struct AdminLogRedactionTests {
    @Test("FlyingFox's client address is dropped from its log lines")
    func redacted() {
        #expect(FlyingFoxLogger.redacted("<203.0.113.7> error: No HTTP Method") == "<client> error: No HTTP Method")
        #expect(FlyingFoxLogger.redacted("<[2001:db8::1]:5000> closed") == "<client> closed")
        #expect(FlyingFoxLogger.redacted("listening") == "listening")
    }
}

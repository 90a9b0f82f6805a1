import Foundation
import Synchronization
import Testing

@testable import TraverseLoad

#if canImport(Glibc)
    import Glibc
#endif

/// A UDP echo peer on 127.0.0.1 (what turnutils_peer does), on its own thread until `stop()`.
final class EchoPeer: Sendable {
    let fd: Int32
    let port: UInt16
    let running = Atomic<Bool>(true)
    let echoed = Atomic<Int>(0)

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0
            }
        }
        guard ok else { throw LoadError("echo peer: bind failed") }
        self.fd = fd
        port = UInt16(bigEndian: a.sin_port)
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let size: Int32 = 4 << 20
        var s = size
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &s, 4)
        Thread.detachNewThread { [self] in
            var buffer = [UInt8](repeating: 0, count: 2048)
            var from = sockaddr_storage()
            while running.load(ordering: .relaxed) {
                var fromLen = socklen_t(MemoryLayout<sockaddr_storage>.size)
                let n = withUnsafeMutablePointer(to: &from) { f in
                    f.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        recvfrom(fd, &buffer, buffer.count, 0, $0, &fromLen)
                    }
                }
                guard n > 0 else { continue }
                _ = withUnsafePointer(to: &from) { f in
                    f.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, buffer, n, 0, $0, fromLen) }
                }
                echoed.add(1, ordering: .relaxed)
            }
            close(fd)
        }
    }

    func stop() {
        running.store(false, ordering: .relaxed)
        Thread.sleep(forTimeInterval: 0.2)
    }
}

@Suite struct EchoPeerTests {
    @Test func machineCPUParsesTheAggregateLineAndCountsBusyTicks() throws {
        let text = """
            cpu  100 5 50 1000 7 3 11 2 0 0
            cpu0 50 2 25 500 3 1 5 1 0 0
            intr 12345
            """
        let cpu = try #require(MachineCPU(procStat: text))
        #expect(cpu.busy == 100 + 5 + 50 + 3 + 11 + 2)  // not idle, not iowait
        #expect(cpu.idle == 1000 && cpu.iowait == 7)
        var later = cpu
        later.softirq += 100
        later.idle += 50
        let sample = MachineSample(from: cpu, to: later, wallSeconds: 1, ticksPerSecond: 100, cores: 2)
        #expect(sample.busySeconds == 1)
        #expect(sample.softirqSeconds == 1)
        #expect(MachineCPU(procStat: "intr 1\n") == nil)
        #expect(MachineCPU(procStat: "cpu  1 2 3\n") == nil)
    }

    @Test func directModeNeedsAPeerAndNoSendIndications() throws {
        var c = LoadConfiguration(
            url: try TURNURL(parsing: "turn:127.0.0.1:3478"), credentials: .staticUser(username: "", password: ""),
            duration: 1)
        c.direct = true
        #expect(throws: LoadConfiguration.Invalid.self) { try c.validate() }
        try c.setPeers(["127.0.0.1:9"])
        try c.validate()
        c.useSendIndications = true
        #expect(throws: LoadConfiguration.Invalid.self) { try c.validate() }
        #expect(throws: LoadConfiguration.Invalid.self) { try c.setPeers(["example.org:9"]) }
        var far = LoadConfiguration(
            url: try TURNURL(parsing: "turn:127.0.0.1:3478"), credentials: .staticUser(username: "", password: ""),
            duration: 1)
        try far.setPeers(["10.0.0.1:9"])
        #expect(throws: LoadConfiguration.Invalid.self) { try far.validate() }  // a peer outside loopback
    }

    @Test func directModeSendsStraightToTheEchoPeerAndCountsWhatComesBack() throws {
        let echo = try EchoPeer()
        defer { echo.stop() }
        var c = LoadConfiguration(
            url: try TURNURL(parsing: "turn:127.0.0.1:\(echo.port)"),
            credentials: .staticUser(username: "", password: ""), duration: 1)
        try c.setPeers(["127.0.0.1:\(echo.port)"])
        c.direct = true
        c.calls = 2
        c.videoKbps = 300
        let report = try LoadEngine(configuration: c).run()
        #expect(report.sent > 300)
        #expect(report.received == report.sent)
        #expect(report.authFailures == 0 && report.malformed == 0)
        #expect(report.topology == "direct")
        #expect(report.control.requests == 0)  // no TURN at all
        #expect(echo.echoed.load(ordering: .relaxed) == Int(report.sent))
        let machine = try #require(report.machine)
        #expect(machine.wallSeconds > 1)
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/turnserver")))
    func echoTopologyRelaysEveryClientToItsEchoPeerAndBack() throws {
        let echo = try EchoPeer()
        defer { echo.stop() }
        try CoturnEndToEndTests().withCoturn(["--user", "alice:wonderland"]) { port in
            var c = LoadConfiguration(
                url: try TURNURL(parsing: "turn:127.0.0.1:\(port)?transport=udp"),
                credentials: .staticUser(username: "alice", password: "wonderland"), duration: 1)
            try c.setPeers(["127.0.0.1:\(echo.port)"])
            c.calls = 2
            c.videoKbps = 300
            let report = try LoadEngine(configuration: c).run()
            #expect(report.sent > 300)
            #expect(report.lost == 0)
            #expect(report.authFailures == 0 && report.malformed == 0)
            #expect(report.topology == "echo")
            #expect(echo.echoed.load(ordering: .relaxed) == Int(report.sent))
        }
    }
}

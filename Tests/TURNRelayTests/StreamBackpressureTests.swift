import Glibc
import Logging
import STUNCodec
import TURNCore
import Testing
import TraverseOps

@testable import TURNRelay

@Suite("Stream backpressure: a client that does not read is paused, not dropped") struct StreamBackpressureTests {
    /// A Binding request whose transaction ID carries `i`.
    static func binding(_ i: UInt32) -> [UInt8] {
        var m: [UInt8] = [0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42]
        m += [UInt8](repeating: 0, count: 8)
        m += [UInt8(i >> 24), UInt8(i >> 16 & 0xFF), UInt8(i >> 8 & 0xFF), UInt8(i & 0xFF)]
        return m
    }

    @Test func everyAnswerArrivesInOrderAfterThePause() throws {
        var c = TraverseConfiguration()
        c.listen = [TransportAddress("127.0.0.1:0")!]
        c.tlsListen = []
        c.users = ["alice": "wonderland"]
        c.shards = 1
        c.portRange = 54000...54999
        c.unauthenticatedRate = 10_000_000
        c.stateDirectory = "/tmp/traverse-backpressure-tests"
        var logger = Logger(label: "backpressure")
        logger.logLevel = .critical
        let server = try TraverseServer(configuration: c, logger: logger)
        defer { server.stop() }
        let address = server.relay.boundTCP[0]

        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var small: Int32 = 8192
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        var peer = sockaddr_in()
        peer.sin_family = sa_family_t(AF_INET)
        peer.sin_port = address.port.bigEndian
        peer.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let rc = withUnsafePointer(to: &peer) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        try #require(rc == 0)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)

        // More answers than the kernel's socket buffers and the server's high watermark hold.
        let count: UInt32 = 300_000
        var requests: [UInt8] = []
        requests.reserveCapacity(Int(count) * 20)
        for i in 0..<count { requests += Self.binding(i) }
        var sent = 0
        func sendSome() {
            while sent < requests.count {
                let n = requests.withUnsafeBytes {
                    send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL))
                }
                if n <= 0 { return }
                sent += n
            }
        }

        // Phase 1: write without reading until the server stops taking bytes.
        while sent < requests.count {
            sendSome()
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            if poll(&p, 1, 500) == 0 { break }
        }
        #expect(sent < requests.count, "the server read everything without pausing")
        let paused = server.relay.shards.contains { s in s.onQueue { s.connections.values.contains { $0.readPaused } } }
        #expect(paused, "the connection of a client that does not read was not paused")

        // Phase 2: read (and write the rest); every answer arrives, in order.
        var inbound: [UInt8] = []
        var next: UInt32 = 0
        var chunk = [UInt8](repeating: 0, count: 65_536)
        var idle = 0
        while next < count && idle < 50 {
            sendSome()
            var p = pollfd(fd: fd, events: Int16(POLLIN) | (sent < requests.count ? Int16(POLLOUT) : 0), revents: 0)
            if poll(&p, 1, 100) == 0 {
                idle += 1
                continue
            }
            idle = 0
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { break }
            if n < 0 { continue }
            inbound += chunk[0..<n]
            var offset = 0
            while inbound.count - offset >= 20 {
                let length = Int(inbound[offset + 2]) << 8 | Int(inbound[offset + 3])
                guard inbound.count - offset >= 20 + length else { break }
                let id =
                    UInt32(inbound[offset + 16]) << 24 | UInt32(inbound[offset + 17]) << 16
                    | UInt32(inbound[offset + 18]) << 8 | UInt32(inbound[offset + 19])
                #expect(inbound[offset] == 0x01 && inbound[offset + 1] == 0x01, "not a Binding success")
                if id != next {
                    Issue.record("answer \(id) arrived where \(next) was due")
                    return
                }
                next += 1
                offset += 20 + length
            }
            inbound.removeFirst(offset)
        }
        #expect(next == count, "\(next) of \(count) answers arrived")
        var closed: UInt64 = 0
        for s in server.relay.shards { closed += s.onQueue { s.streamCounters.closed[.slowReader] } }
        #expect(closed == 0)
    }
}

import Glibc
import Logging
import STUNCodec
import Synchronization
import TURNCore
import TURNRelay
import Testing
import TraverseOps

/// A socket bound like another Traverse instance's listener would be (SO_REUSEPORT, the same
/// user), on `address`; TCP ones listen.
func foreignListener(_ address: TransportAddress, tcp: Bool) -> Int32 {
    let fd = socket(
        address.family == .ipv4 ? AF_INET : AF_INET6, Int32(tcp ? SOCK_STREAM.rawValue : SOCK_DGRAM.rawValue), 0)
    var one: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size))
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    guard case .v4(let ip) = address.ip else { return -1 }
    var sin = sockaddr_in()
    sin.sin_family = sa_family_t(AF_INET)
    sin.sin_port = address.port.bigEndian
    sin.sin_addr.s_addr = ip.bigEndian
    let rc = withUnsafePointer(to: &sin) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    #expect(rc == 0, "bind errno \(errno)")
    if tcp { listen(fd, 16) }
    // Never block a test forever (accept and recv honour SO_RCVTIMEO).
    var tv = timeval(tv_sec: 3, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    return fd
}

/// Issue 10, part 5: a second instance on the same address.
@Suite("Takeover: another process on a listening address", .serialized)
struct TakeoverTests {
    func configuration(port: UInt16 = 0) -> TraverseConfiguration {
        var c = TraverseConfiguration()
        c.listen = [TransportAddress("127.0.0.1:\(port)")!]
        c.users = ["alice": "wonderland"]
        c.relayAddresses = [IPAddress("127.0.0.1")!]
        c.portRange = 40000...49999
        c.shards = 2
        c.adminListen = nil
        c.stateDirectory = "/tmp/traverse-relay-tests"
        return c
    }

    var logger: Logger {
        var l = Logger(label: "traverse-test")
        l.logLevel = .warning
        return l
    }

    @Test("A held UDP or TCP address is seen by the probe; a free one and port 0 are not")
    func probe() throws {
        let server = try TraverseServer(configuration: configuration(), logger: logger)
        defer { server.stop() }
        let udp = server.udpAddresses[0]
        let tcp = server.relay.boundTCP[0]
        #expect(ListenerOwnership.isHeld(udp, .udp))
        #expect(ListenerOwnership.isHeld(tcp, .tcp))
        #expect(!ListenerOwnership.isHeld(TransportAddress(ip: udp.ip, port: 0), .udp))
        server.stop()
        // TCP listeners close from their Dispatch sources' cancel handlers, a moment later.
        for _ in 0..<100 where ListenerOwnership.isHeld(tcp, .tcp) { usleep(10_000) }
        #expect(!ListenerOwnership.isHeld(udp, .udp))
        #expect(!ListenerOwnership.isHeld(tcp, .tcp))
    }

    @Test("Starting on an address another socket listens on is refused naming it, unless taking over")
    func refusedUnlessTakeover() throws {
        let first = try TraverseServer(configuration: configuration(), logger: logger)
        defer { first.stop() }
        let port = first.udpAddresses[0].port
        do {
            _ = try TraverseServer(configuration: configuration(port: port), logger: logger)
            Issue.record("a second server started on 127.0.0.1:\(port)")
        } catch {
            guard case .addressInUse(let address, _) = error else {
                Issue.record("unexpected \(error)")
                return
            }
            #expect(address == TransportAddress("127.0.0.1:\(port)")!)
            #expect(error.description.contains("127.0.0.1:\(port)") && error.description.contains("--takeover"))
        }
        let second = try TraverseServer(configuration: configuration(port: port), logger: logger, takeover: true)
        second.stop()
    }

    @Test("Taking over, a held UDP address is bound only once the other instance releases it")
    func udpWaitsForRelease() async throws {
        let first = try TraverseServer(configuration: configuration(), logger: logger)
        defer { first.stop() }
        let address = first.udpAddresses[0]
        let second = try TraverseServer(
            configuration: configuration(port: address.port), logger: logger, takeover: true)
        defer { second.stop() }
        #expect(second.udpAddresses == [address])
        func bindings(_ s: TraverseServer) async -> UInt64 {
            let counters = await s.relay.counters()
            return counters.requests[CountedMethod.binding.rawValue]
        }
        func binding() throws -> Bool {
            let socket = try UDPSocket(bind: TransportAddress("127.0.0.1:0")!)
            let answer = try transact(socket, address, STUNMessage(type: .init(method: .binding, class: .request)))
            return answer.type.messageClass == .successResponse
        }
        // Clients from 16 source ports: the kernel would spread them over both instances' sockets.
        for _ in 0..<16 { #expect(try binding()) }
        #expect(await bindings(first) == 16)
        #expect(await bindings(second) == 0)
        first.stop()
        usleep(300_000)
        #expect(try binding())
        #expect(await bindings(second) == 1)
    }

    @Test("While draining, listeners another process shares are closed; UDP allocations on them end")
    func handOver() throws {
        let server = try TraverseServer(configuration: configuration(), logger: logger)
        defer { server.stop() }
        let udp = server.udpAddresses[0]
        let tcp = server.relay.boundTCP[0]
        let ended = Mutex<[AllocationEndReason]>([])
        server.relay.observeAllocations { e in
            if case .ended(_, _, _, _, let reason) = e { ended.withLock { $0.append(reason) } }
        }
        let client = try TURNClient(server: udp)
        #expect(try client.allocate().type.messageClass == .successResponse)
        #expect(server.relay.allocationCount == 1)
        // Alone on its addresses, nothing is handed over.
        #expect(server.relay.handOverSharedListeners().isEmpty)

        let otherUDP = foreignListener(udp, tcp: false)
        defer { close(otherUDP) }
        let handed = server.relay.handOverSharedListeners()
        #expect(handed.map(\.address) == [udp] && handed.map(\.transport) == [.udp])
        #expect(server.relay.allocationCount == 0)
        #expect(ended.withLock { $0 } == [.takenOver])
        // Datagrams to the address, from any source port, now reach the other socket.
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(otherUDP, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        for i in 0..<8 {
            let sender = try UDPSocket(bind: TransportAddress("127.0.0.1:0")!)
            #expect(sender.send([UInt8(i)], to: udp))
            var byte: UInt8 = 0xFF
            #expect(recv(otherUDP, &byte, 1, 0) == 1 && byte == UInt8(i))
        }

        let otherTCP = foreignListener(tcp, tcp: true)
        defer { close(otherTCP) }
        let second = server.relay.handOverSharedListeners()
        #expect(second.map(\.transport) == [.tcp])
        #expect(server.relay.everyListenerHandedOver)
        // Every new TCP connection now lands on the other listener.
        for _ in 0..<8 {
            let c = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = tcp.port.bigEndian
            sin.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
            let rc = withUnsafePointer(to: &sin) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(c, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            #expect(rc == 0)
            let accepted = accept(otherTCP, nil, nil)
            #expect(accepted >= 0)
            close(accepted)
            close(c)
        }
    }
}

// The whole server's packet path, measured for heap allocations: a real Traverse server runs in
// this process (its shards, Dispatch sources, epoll sets, recvmmsg/sendmmsg, UDP GSO and GRO),
// a client and a peer talk to it over loopback sockets, and the malloc counter covers every
// thread of the process. One iteration is one burst of 32 media-sized datagrams through the
// relay; the threshold is 0 allocations for the whole burst, so 0 per relayed datagram.
import Benchmark
import Glibc
import Logging
import STUNCodec
import TURNCore
import TraverseOps

let burst = 32
let payloadSize = 160

/// A blocking loopback UDP socket with buffers allocated once.
final class BenchSocket: @unchecked Sendable {
    let fd: Int32
    let address: TransportAddress
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: 65_536, alignment: 16)

    init() {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        self.fd = fd
        var size: Int32 = 4 << 20
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p in
                _ = bind(fd, p, length)
                _ = getsockname(fd, p, &length)
            }
        }
        address = TransportAddress(ip: .loopbackIPv4, port: UInt16(bigEndian: sin.sin_port))
    }

    /// Sends `length` bytes at `bytes` to `to`; with `segment`, as one UDP GSO message.
    func send(_ bytes: UnsafeRawPointer, _ length: Int, to: TransportAddress, segment: Int = 0) {
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = to.port.bigEndian
        sin.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var iov = iovec(iov_base: UnsafeMutableRawPointer(mutating: bytes), iov_len: length)
        // struct cmsghdr (16 bytes) + a UInt16 segment size, padded: CMSG_SPACE(2) = 24.
        var control: (UInt64, Int32, Int32, UInt64) = (18, 17 /* SOL_UDP */, 103 /* UDP_SEGMENT */, UInt64(segment))
        withUnsafeMutablePointer(to: &sin) { name in
            withUnsafeMutablePointer(to: &iov) { iovPointer in
                withUnsafeMutablePointer(to: &control) { c in
                    var message = msghdr()
                    message.msg_name = UnsafeMutableRawPointer(name)
                    message.msg_namelen = socklen_t(MemoryLayout<sockaddr_in>.size)
                    message.msg_iov = iovPointer
                    message.msg_iovlen = 1
                    if segment > 0 {
                        message.msg_control = UnsafeMutableRawPointer(c)
                        message.msg_controllen = 24
                    }
                    _ = sendmsg(fd, &message, 0)
                }
            }
        }
    }

    /// Waits for one datagram (up to 2 s); returns its length or -1.
    func receive() -> Int {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, 2000) == 1 else { return -1 }
        return recv(fd, buffer, 65_536, 0)
    }

    func transact(_ message: STUNMessage, key: [UInt8]?) -> STUNMessage {
        let bytes = try! message.encoded(key: key, integrity: key == nil ? [] : [.sha1])
        bytes.withUnsafeBytes { send($0.baseAddress!, $0.count, to: server.udpAddresses[0]) }
        let n = receive()
        precondition(n > 0, "no answer from the server")
        return try! STUNMessage(parsing: Array(UnsafeRawBufferPointer(start: buffer, count: n)))
    }
}

let server: TraverseServer = {
    var c = TraverseConfiguration()
    c.listen = [TransportAddress("127.0.0.1:0")!]
    c.tlsListen = []
    c.users = ["alice": "wonderland"]
    c.allowPeers = [CIDR("127.0.0.0/8")!]
    c.portRange = 40000...49999
    c.shards = 1
    c.unauthenticatedRate = 1_000_000  // the control benchmark sends many unauthenticated requests
    c.stateDirectory = "/tmp/traverse-server-path-bench"
    var logger = Logger(label: "bench")
    logger.logLevel = .error
    return try! TraverseServer(configuration: c, logger: logger)
}()

/// A client with an allocation, a channel 0x4000 to `channelPeer` and a permission for
/// `indicationPeer`; returns the relayed address.
func setUp(client: BenchSocket, channelPeer: BenchSocket, indicationPeer: BenchSocket) -> TransportAddress {
    let challenge = client.transact(
        STUNMessage(type: .init(method: .allocate, class: .request), attributes: [.requestedTransport(17)]), key: nil)
    guard case .realm(let realm)? = challenge.first(.realm), case .nonce(let nonce)? = challenge.first(.nonce) else {
        fatalError("no challenge")
    }
    let key = Array("alice:\(realm):wonderland".utf8).withUnsafeBytes { STUNDigest.md5($0) }
    let credentials: [STUNAttribute] = [.username("alice"), .realm(realm), .nonce(nonce)]
    let allocation = client.transact(
        STUNMessage(
            type: .init(method: .allocate, class: .request), attributes: [.requestedTransport(17)] + credentials),
        key: key)
    guard case .xorRelayedAddress(let relayed)? = allocation.first(.xorRelayedAddress) else { fatalError("no relay") }
    _ = client.transact(
        STUNMessage(
            type: .init(method: .channelBind, class: .request),
            attributes: [.channelNumber(0x4000), .xorPeerAddress(channelPeer.address)] + credentials), key: key)
    _ = client.transact(
        STUNMessage(
            type: .init(method: .createPermission, class: .request),
            attributes: [.xorPeerAddress(indicationPeer.address)] + credentials), key: key)
    return relayed
}

let benchmarks: @Sendable () -> Void = {
    let zeroMallocs: [BenchmarkMetric: BenchmarkThresholds] = [
        .mallocCountTotal: .init(absolute: [.p0: 0, .p25: 0, .p50: 0, .p75: 0, .p90: 0, .p99: 0])
    ]
    Benchmark.defaultConfiguration = .init(
        metrics: [.mallocCountTotal, .throughput, .wallClock],
        warmupIterations: 20,
        maxDuration: .seconds(3),
        maxIterations: 2_000,
        thresholds: zeroMallocs
    )
    let client = BenchSocket()
    let channelPeer = BenchSocket()
    let indicationPeer = BenchSocket()
    let relayed = setUp(client: client, channelPeer: channelPeer, indicationPeer: indicationPeer)
    let frames = UnsafeMutableRawPointer.allocate(byteCount: burst * (4 + payloadSize), alignment: 16)
    for k in 0..<burst {
        let f = frames + k * (4 + payloadSize)
        f.storeBytes(of: UInt32(0x4000_0000 | UInt32(payloadSize)).bigEndian, as: UInt32.self)
        (f + 4).initializeMemory(as: UInt8.self, repeating: UInt8(k), count: payloadSize)
    }

    Benchmark("Client→peer: 32 ChannelData datagrams through the server") { benchmark in
        for _ in benchmark.scaledIterations {
            for k in 0..<burst {
                client.send(frames + k * (4 + payloadSize), 4 + payloadSize, to: server.udpAddresses[0])
            }
            for _ in 0..<burst { precondition(channelPeer.receive() == payloadSize) }
        }
    }

    Benchmark("Peer→client: a 32-datagram burst (GSO → GRO) framed as ChannelData") { benchmark in
        for _ in benchmark.scaledIterations {
            channelPeer.send(frames + 4, burst * payloadSize, to: relayed, segment: payloadSize)
            for _ in 0..<burst { precondition(client.receive() == 4 + payloadSize) }
        }
    }

    Benchmark("Peer→client: 32 datagrams framed as Data indications") { benchmark in
        for _ in benchmark.scaledIterations {
            for k in 0..<burst { indicationPeer.send(frames + 4 + k * payloadSize, payloadSize, to: relayed) }
            for _ in 0..<burst { precondition(client.receive() == 36 + payloadSize) }
        }
    }

    // A control: unauthenticated Allocate requests, which the server answers with a fresh 401
    // challenge (text attributes built per answer). Its non-zero malloc count shows that the
    // counter sees the server's threads, so the zeros above are the server's, not an artefact.
    Benchmark(
        "Control: unauthenticated Allocate answered 401 (allocates, no threshold)",
        configuration: .init(maxIterations: 500, thresholds: [:])
    ) { benchmark in
        let request = try! STUNMessage(
            type: .init(method: .allocate, class: .request), attributes: [.requestedTransport(17)]
        ).encoded()
        let other = BenchSocket()
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            request.withUnsafeBytes { other.send($0.baseAddress!, $0.count, to: server.udpAddresses[0]) }
            precondition(other.receive() > 0)
        }
        benchmark.stopMeasurement()
    }
}

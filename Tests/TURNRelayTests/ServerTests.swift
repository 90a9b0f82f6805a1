import Glibc
import Logging
import STUNCodec
import TURNCore
import TURNRelay
import Testing
import TraverseOps

/// Starts a real server on 127.0.0.1:0 and [::1]:0 with alice:wonderland, loopback peers allowed.
func startServer() throws -> TraverseServer {
    var c = TraverseConfiguration()
    c.listen = [TransportAddress("127.0.0.1:0")!, TransportAddress("[::1]:0")!]
    c.users = ["alice": "wonderland"]
    c.allowPeers = [CIDR("127.0.0.0/8")!, CIDR("::1/128")!]
    c.portRange = 40000...49999
    c.shards = 2
    c.stateDirectory = "/tmp/traverse-relay-tests"
    var logger = Logger(label: "traverse-test")
    logger.logLevel = .warning
    return try TraverseServer(configuration: c, logger: logger)
}

extension TraverseServer {
    func address(_ family: AddressFamily) -> TransportAddress { udpAddresses.first { $0.family == family }! }
}

/// Sends `message` and waits for the response with its transaction ID.
func transact(
    _ socket: UDPSocket, _ server: TransportAddress, _ message: STUNMessage, key: [UInt8]? = nil
) throws -> STUNMessage {
    let bytes = try message.encoded(key: key, integrity: key == nil ? [] : [.sha1])
    for _ in 0..<3 {
        socket.send(bytes, to: server)
        if let r = socket.receive(where: {
            $0.count >= 20 && $0[0] < 4 && Array($0[8..<20]) == message.transactionID.bytes
        }) {
            return try STUNMessage(parsing: r.bytes)
        }
    }
    throw UDPError.socket(ETIMEDOUT)
}

/// A long-term-credential TURN client over a real UDP socket.
final class TURNClient {
    let socket: UDPSocket
    let server: TransportAddress
    var realm = ""
    var nonce = ""
    var key: [UInt8] = []

    init(server: TransportAddress) throws {
        self.server = server
        socket = try UDPSocket(
            bind: TransportAddress(ip: server.family == .ipv4 ? .loopbackIPv4 : .loopbackIPv6, port: 0))
    }

    func allocate() throws -> STUNMessage {
        let first = try transact(
            socket, server,
            STUNMessage(type: .init(method: .allocate, class: .request), attributes: [.requestedTransport(17)]))
        #expect(first.errorCode == 401)
        if case .realm(let r)? = first.first(.realm) { realm = r }
        if case .nonce(let n)? = first.first(.nonce) { nonce = n }
        key = Array("alice:\(realm):wonderland".utf8).withUnsafeBytes { STUNDigest.md5($0) }
        return try request(.allocate, [.requestedTransport(17)])
    }

    func request(_ method: STUNMethod, _ attributes: [STUNAttribute]) throws -> STUNMessage {
        let m = STUNMessage(
            type: .init(method: method, class: .request),
            attributes: attributes + [.username("alice"), .realm(realm), .nonce(nonce)])
        return try transact(socket, server, m, key: key)
    }
}

@Suite("A real server over UDP", .serialized)
struct ServerTests {
    @Test(
        "Binding over IPv4 and IPv6: XOR-MAPPED-ADDRESS is the client socket's address",
        arguments: [AddressFamily.ipv4, .ipv6])
    func binding(family: AddressFamily) throws {
        let server = try startServer()
        defer { server.stop() }
        let socket = try UDPSocket(bind: TransportAddress(ip: family == .ipv4 ? .loopbackIPv4 : .loopbackIPv6, port: 0))
        let request = STUNMessage(type: .bindingRequest)
        let response = try transact(socket, server.address(family), request)
        #expect(response.type == .bindingSuccess)
        #expect(response.transactionID == request.transactionID)
        #expect(response.first(.xorMappedAddress) == .xorMappedAddress(socket.localAddress))
    }

    @Test("An RFC 3489 Binding (no magic cookie) gets MAPPED-ADDRESS")
    func classicBinding() throws {
        let server = try startServer()
        defer { server.stop() }
        let socket = try UDPSocket(bind: TransportAddress("127.0.0.1:0")!)
        let tid: [UInt8] = (0..<16).map { UInt8($0 * 7 + 1) }
        socket.send([0x00, 0x01, 0x00, 0x00] + tid, to: server.address(.ipv4))
        let r = try #require(socket.receive())
        let b = r.bytes
        #expect(b.count >= 20)
        #expect(b[0] == 0x01 && b[1] == 0x01)  // Binding success
        #expect(Array(b[4..<20]) == tid)  // the 16-byte RFC 3489 transaction ID echoed
        // Walk the attributes for MAPPED-ADDRESS (0x0001); no XOR-MAPPED-ADDRESS.
        var mapped: TransportAddress? = nil
        var types: [UInt16] = []
        var i = 20
        while i + 4 <= b.count {
            let t = UInt16(b[i]) << 8 | UInt16(b[i + 1])
            let n = Int(UInt16(b[i + 2]) << 8 | UInt16(b[i + 3]))
            types.append(t)
            if t == 0x0001, n == 8 {
                let port = UInt16(b[i + 6]) << 8 | UInt16(b[i + 7])
                mapped = TransportAddress(ip: IPAddress(bytes: b[(i + 8)..<(i + 12)])!, port: port)
            }
            i += 4 + (n + 3) & ~3
        }
        #expect(mapped == socket.localAddress)
        #expect(!types.contains(0x0020))
    }

    @Test(
        "Allocate, CreatePermission, Send/Data indications, ChannelBind and ChannelData both ways",
        arguments: [AddressFamily.ipv4, .ipv6])
    func turnExchange(family: AddressFamily) throws {
        let server = try startServer()
        defer { server.stop() }
        let client = try TURNClient(server: server.address(family))
        let peerSocket = try UDPSocket(
            bind: TransportAddress(ip: family == .ipv4 ? .loopbackIPv4 : .loopbackIPv6, port: 0))
        let peerAddress = peerSocket.localAddress

        let family6: [STUNAttribute] = family == .ipv6 ? [.requestedAddressFamily(.ipv6)] : []
        var allocation = try client.allocate()
        if family == .ipv6 {
            // allocate() asked for IPv4; an IPv6 relay needs REQUESTED-ADDRESS-FAMILY on a fresh 5-tuple.
            #expect(allocation.type.messageClass == .successResponse)
            _ = try client.request(.refresh, [.lifetime(0)])
            allocation = try client.request(.allocate, [.requestedTransport(17)] + family6)
        }
        #expect(allocation.type == STUNMessageType(method: .allocate, class: .successResponse))
        let relayed = try #require(allocation.relayed.first)
        #expect(relayed.family == family)
        #expect((40000...49999).contains(relayed.port))
        #expect(allocation.first(.xorMappedAddress) == .xorMappedAddress(client.socket.localAddress))
        #expect(allocation.lifetime == 600)

        // Send indication → the peer gets the payload from the relayed address.
        #expect(
            try client.request(.createPermission, [.xorPeerAddress(peerAddress)]).type.messageClass == .successResponse)
        let send = STUNMessage(
            type: .init(method: .send, class: .indication),
            attributes: [.xorPeerAddress(peerAddress), .data(Array("hello".utf8))])
        client.socket.send(try send.encoded(), to: client.server)
        let atPeer = try #require(peerSocket.receive())
        #expect(atPeer.bytes == Array("hello".utf8))
        #expect(atPeer.from == relayed)

        // The peer answers → a Data indication.
        peerSocket.send(Array("world".utf8), to: relayed)
        let data = try #require(client.socket.receive())
        let indication = try STUNMessage(parsing: data.bytes)
        #expect(indication.type == STUNMessageType(method: .data, class: .indication))
        #expect(indication.first(.xorPeerAddress) == .xorPeerAddress(peerAddress))
        #expect(indication.first(.data) == .data(Array("world".utf8)))

        // ChannelBind → ChannelData both ways.
        let bind = try client.request(.channelBind, [.channelNumber(0x4000), .xorPeerAddress(peerAddress)])
        #expect(bind.type == STUNMessageType(method: .channelBind, class: .successResponse))
        client.socket.send([0x40, 0x00, 0x00, 0x04] + Array("ping".utf8), to: client.server)
        let ping = try #require(peerSocket.receive())
        #expect(ping.bytes == Array("ping".utf8))
        #expect(ping.from == relayed)
        peerSocket.send(Array("pong!".utf8), to: relayed)
        let pong = try #require(client.socket.receive())
        #expect(Array(pong.bytes.prefix(9)) == [0x40, 0x00, 0x00, 0x05] + Array("pong!".utf8))

        // Delete: the relay stops relaying.
        let delete = try client.request(.refresh, [.lifetime(0)])
        #expect(delete.lifetime == 0)
        #expect(server.relay.allocationCount == 0)
        peerSocket.send(Array("late".utf8), to: relayed)
        #expect(client.socket.receive(timeout: 200) == nil)
    }

    @Test("A flood of 100,000 malformed datagrams is counted and the server still answers")
    func flood() async throws {
        let server = try startServer()
        defer { server.stop() }
        let target = server.address(.ipv4)
        let senders = try (0..<4).map { _ in try UDPSocket(bind: TransportAddress("127.0.0.1:0")!, sendBuffer: 4 << 20)
        }
        let kinds: [[UInt8]] = [
            [0x00, 0x01, 0x00, 0x05] + [UInt8](repeating: 0xAA, count: 16),  // STUN, length not a multiple of 4
            [0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42, 1, 2, 3],  // STUN, truncated header
            [0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4],  // not STUN, not ChannelData
            [0x90, 0x00, 0x00, 0x10],  // RTP-ish
            [0x40, 0x00, 0x00, 0xFF, 1, 2, 3],  // ChannelData, length past the end
            [0x4F, 0xFF, 0x00],  // ChannelData, truncated header
        ]
        let total = 100_000
        var sent = 0
        var burst = 0
        while sent < total {
            let s = senders[sent % senders.count]
            if s.send(kinds[sent % kinds.count], to: target) { sent += 1 } else { usleep(1000) }
            burst += 1
            if burst == 400 {
                burst = 0
                usleep(2000)
            }
        }

        func counted() async -> (malformed: UInt64, kernel: Int64) {
            let c = await server.relay.counters()
            let m =
                c.drops[DropReason.malformedSTUN.rawValue] + c.drops[DropReason.notSTUNOrChannelData.rawValue]
                + c.drops[DropReason.malformedChannelData.rawValue]
            return (m, await server.relay.kernelDrops())
        }
        var last = await counted()
        for _ in 0..<100 {
            if Int(last.malformed) + Int(last.kernel) >= total { break }
            usleep(50_000)
            last = await counted()
        }
        #expect(last.malformed > 0)
        #expect(Int(last.malformed) + Int(last.kernel) == total, "malformed \(last.malformed) kernel \(last.kernel)")

        let socket = try UDPSocket(bind: TransportAddress("127.0.0.1:0")!)
        let response = try transact(socket, target, STUNMessage(type: .bindingRequest))
        #expect(response.type == .bindingSuccess)
        #expect(response.first(.xorMappedAddress) == .xorMappedAddress(socket.localAddress))
    }
}

extension STUNMessage {
    var lifetime: UInt32? {
        if case .lifetime(let v)? = first(.lifetime) { return v }
        return nil
    }

    var relayed: [TransportAddress] {
        attributes.compactMap {
            if case .xorRelayedAddress(let a) = $0 { return a }
            return nil
        }
    }
}

@Suite("EVEN-PORT reservations on a real server", .serialized)
struct ReservationTests {
    @Test("The reserved port is bound at once: no other process can take it before the token is redeemed")
    func reservedPortIsHeld() throws {
        let server = try startServer()
        defer { server.stop() }
        let rtp = try TURNClient(server: server.address(.ipv4))
        _ = try rtp.allocate()  // learns realm and nonce (and holds one allocation)
        _ = try rtp.request(.refresh, [.lifetime(0)])
        let first = try rtp.request(.allocate, [.requestedTransport(17), .evenPort(reserve: true)])
        #expect(first.type.messageClass == .successResponse)
        let port = try #require(first.relayed.first).port
        #expect(port % 2 == 0)
        guard case .reservationToken(let token)? = first.first(.reservationToken) else {
            Issue.record("no RESERVATION-TOKEN")
            return
        }
        // Another process trying the reserved port finds it taken.
        #expect(throws: UDPError.self) { try UDPSocket(bind: TransportAddress(ip: .loopbackIPv4, port: port + 1)) }
        // The token gives the port to a second allocation (another client socket).
        let rtcp = try TURNClient(server: server.address(.ipv4))
        _ = try rtcp.allocate()
        _ = try rtcp.request(.refresh, [.lifetime(0)])
        let second = try rtcp.request(.allocate, [.requestedTransport(17), .reservationToken(token)])
        #expect(second.type.messageClass == .successResponse)
        #expect(second.relayed.first?.port == port + 1)
        // And it relays: a peer reaches the RTCP allocation through the redeemed socket.
        let peer = try UDPSocket(bind: TransportAddress("127.0.0.1:0")!)
        #expect(
            try rtcp.request(.createPermission, [.xorPeerAddress(peer.localAddress)]).type.messageClass
                == .successResponse)
        peer.send(Array("rtcp".utf8), to: TransportAddress(ip: .loopbackIPv4, port: port + 1))
        let data = try #require(rtcp.socket.receive())
        #expect(try STUNMessage(parsing: data.bytes).first(.data) == .data(Array("rtcp".utf8)))
    }
}

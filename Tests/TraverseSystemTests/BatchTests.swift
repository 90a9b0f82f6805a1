import Glibc
import STUNCodec
import Testing
import TraverseSystem

/// recvmmsg/sendmmsg batches over loopback.
@Suite("Datagram batches")
struct BatchTests {
    /// A bound, non-blocking UDP socket on 127.0.0.1 and its address.
    func boundSocket() throws -> (Int32, TransportAddress) {
        let fd = try Sockets.open(.ipv4, type: Int32(SOCK_DGRAM.rawValue))
        Sockets.tuneDatagramSocket(fd, bufferBytes: 1 << 20)
        try Sockets.bind(fd, TransportAddress(ip: .loopbackIPv4, port: 0))
        return (fd, try #require(Sockets.localAddress(fd)))
    }

    /// Receives until `expected` datagrams arrived (or a second passed).
    func receiveAll(_ rx: ReceiveBatch, _ fd: Int32, expected: Int) -> [(bytes: [UInt8], from: TransportAddress?)] {
        var got: [(bytes: [UInt8], from: TransportAddress?)] = []
        let deadline = Clock.monotonicMilliseconds() + 1000
        while got.count < expected && Clock.monotonicMilliseconds() < deadline {
            let n = rx.receive(fd)
            if n <= 0 {
                usleep(1000)
                continue
            }
            for i in 0..<n {
                let bytes = Array(UnsafeRawBufferPointer(start: rx.payload(i), count: rx.length(i)))
                got.append((bytes, SocketAddress.read(rx.addresses + i)))
                #expect(!rx.truncated(i))
            }
        }
        return got
    }

    @Test func sendBatchToReceiveBatch() throws {
        let (a, aAddress) = try boundSocket()
        let (b, bAddress) = try boundSocket()
        defer {
            close(a)
            close(b)
        }
        let tx = SendBatch(capacity: 8, segmentationOffload: false)
        let payload: [UInt8] = Array(0..<100)
        payload.withUnsafeBytes { p in
            tx.enqueue(fd: a, to: bAddress, bytes: p.baseAddress!, length: 100)
            // A header in the slot, the payload by reference, and two bytes of padding.
            let slot = tx.nextHeaderSlot
            slot.storeBytes(of: UInt32(0x4000_0064).bigEndian, as: UInt32.self)
            tx.enqueue(fd: a, to: bAddress, headerLength: 4, payload: p.baseAddress!, length: 98, padding: 2)
            let reply = tx.nextReplyBuffer
            reply.copyBytes(from: [1, 2, 3])
            tx.enqueueReply(fd: a, to: bAddress, length: 3)
            tx.flush()
        }
        #expect(tx.failed == 0)
        #expect(tx.count == 0)

        let rx = ReceiveBatch(capacity: 4, bufferSize: 2048 + 64, headroom: 64)
        #expect(rx.maxPayload == 2048 - 4)
        let got = receiveAll(rx, b, expected: 3)
        #expect(got.count == 3)
        guard got.count == 3 else { return }
        #expect(got.allSatisfy { $0.from == aAddress })
        #expect(got[0].bytes == payload)
        #expect(got[1].bytes == [0x40, 0x00, 0x00, 0x64] + payload.prefix(98) + [0, 0])
        #expect(got[2].bytes == [1, 2, 3])
    }

    @Test func segmentedRunArrivesAsSeparateDatagrams() throws {
        let (a, _) = try boundSocket()
        let (b, bAddress) = try boundSocket()
        defer {
            close(a)
            close(b)
        }
        let tx = SendBatch(capacity: 8)
        let payload = [UInt8](repeating: 7, count: 200)
        payload.withUnsafeBytes { p in
            for length in [200, 200, 200, 50] { tx.enqueue(fd: a, to: bAddress, bytes: p.baseAddress!, length: length) }
            tx.flush()
        }
        let got = receiveAll(ReceiveBatch(capacity: 8, bufferSize: 2048, headroom: 0), b, expected: 4)
        #expect(got.map(\.bytes.count) == [200, 200, 200, 50])
        #expect(tx.failed == 0)
    }

    @Test func connectedSocketAndBatch() throws {
        let (server, serverAddress) = try boundSocket()
        defer { close(server) }
        let client = try ConnectedUDPSocket(connectTo: serverAddress, bufferBytes: 1 << 20)
        defer { client.close() }
        let tx = ConnectedSendBatch(capacity: 4, slotSize: 1500)
        for i in 0..<3 {
            tx.slot(i).storeBytes(of: UInt8(i), as: UInt8.self)
            tx.setLength(i, 10 + i)
            tx.count += 1
        }
        let (sent, _) = tx.flush(fd: client.fd)
        #expect(sent == 3)
        #expect(tx.count == 0)
        #expect(client.send([9, 9]))
        let got = receiveAll(ReceiveBatch(capacity: 8, bufferSize: 2048, headroom: 0), server, expected: 4)
        #expect(got.map(\.bytes.count) == [10, 11, 12, 2])
        #expect(got.first?.bytes.first == 0)
        let clientAddress = Sockets.localAddress(client.fd)
        #expect(got.allSatisfy { $0.from == clientAddress })
    }

    @Test func refusedConnectIsASocketError() {
        // The broadcast address without SO_BROADCAST: EACCES.
        let error = #expect(throws: SocketError.self) {
            _ = try ConnectedUDPSocket(connectTo: TransportAddress(ip: .v4(0xFFFF_FFFF), port: 9), bufferBytes: 4096)
        }
        #expect(error?.operation == "connect")
        #expect(error?.code == EACCES)
    }

    @Test func pollReportsReadableSockets() throws {
        let (a, aAddress) = try boundSocket()
        let (b, _) = try boundSocket()
        defer {
            close(a)
            close(b)
        }
        let poll = try EventPoll()
        try poll.add(a, token: 0)
        try poll.add(b, token: 1)
        #expect(poll.wait(timeoutMilliseconds: 0) == 0)
        let sender = try ConnectedUDPSocket(connectTo: aAddress, bufferBytes: 4096)
        defer { sender.close() }
        #expect(sender.send([1]))
        #expect(poll.wait(timeoutMilliseconds: 1000) == 1)
        #expect(poll.token(0) == 0)
    }
}

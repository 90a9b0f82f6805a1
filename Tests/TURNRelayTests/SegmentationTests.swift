import CTraverseSystem
import Glibc
import STUNCodec
import TURNCore
import Testing
import TraverseOps
import TraverseSystem

@testable import TURNRelay

/// UDP GSO on the send path: runs of equal-sized datagrams to one destination leave as one
/// message, and the receiver still sees each datagram, whole and in order.
@Suite("UDP segmentation offload", .serialized)
struct SegmentationTests {
    /// Queues `sizes` (payload byte i of datagram k is k &+ i) to the receivers in `to`, flushes,
    /// and returns what each receiver got.
    func sendThroughBatch(
        gso: Bool, sizes: [Int], to destinations: [Int], receivers: [UDPSocket], sender: UDPSocket
    ) -> (batch: SendBatch, received: [[[UInt8]]]) {
        let batch = SendBatch(capacity: 64, segmentationOffload: gso)
        let payloads = sizes.enumerated().map { k, n in (0..<n).map { UInt8(truncatingIfNeeded: k &+ $0) } }
        // The batch keeps pointers until the flush: keep the bytes in one buffer that outlives it.
        let storage = UnsafeMutableRawPointer.allocate(byteCount: sizes.reduce(0, +) + 1, alignment: 16)
        defer { storage.deallocate() }
        var offset = 0
        for (k, p) in payloads.enumerated() {
            p.withUnsafeBytes { (storage + offset).copyMemory(from: $0.baseAddress!, byteCount: p.count) }
            batch.enqueue(
                fd: sender.fd, to: receivers[destinations[k]].localAddress, bytes: storage + offset, length: p.count)
            offset += p.count
        }
        batch.flush()
        let received = receivers.map { r in
            var got: [[UInt8]] = []
            while let d = r.receive(timeout: 200) { got.append(d.bytes) }
            return got
        }
        #expect(batch.failed == 0)
        return (batch, received)
    }

    @Test("A run to one destination leaves as one GSO message and arrives as separate datagrams")
    func runIsSegmented() throws {
        let sender = try UDPSocket(bind: TransportAddress("127.0.0.1:0")!)
        let a = try UDPSocket(bind: TransportAddress("127.0.0.1:0")!)
        let b = try UDPSocket(bind: TransportAddress("127.0.0.1:0")!)
        // Five of 100 B and a shorter 40 B to a, then one to b, then two of 120 B to a again,
        // then 100, 100, 120 to b: the larger 120 must start a new run.
        let sizes = [100, 100, 100, 100, 100, 40, 77, 120, 120, 100, 100, 120]
        let to = [0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 1, 1]
        let (batch, received) = sendThroughBatch(gso: true, sizes: sizes, to: to, receivers: [a, b], sender: sender)
        let expected = (0..<2).map { r in
            sizes.indices.filter { to[$0] == r }.map { k in (0..<sizes[k]).map { UInt8(truncatingIfNeeded: k &+ $0) } }
        }
        #expect(received == expected)
        // Runs: [0..5] (6 datagrams), [6] alone, [7, 8] (2), [9, 10] (2), [11] alone.
        #expect(batch.segmentedSends == 3)
        #expect(batch.segmentedDatagrams == 10)
    }

    @Test("With GSO off every datagram leaves on its own, with the same result")
    func offloadOff() throws {
        let sender = try UDPSocket(bind: TransportAddress("127.0.0.1:0")!)
        let a = try UDPSocket(bind: TransportAddress("127.0.0.1:0")!)
        let sizes = [200, 200, 200, 13]
        let (batch, received) = sendThroughBatch(
            gso: false, sizes: sizes, to: [0, 0, 0, 0], receivers: [a], sender: sender)
        #expect(received[0].map(\.count) == sizes)
        #expect(batch.segmentedSends == 0)
    }

    @Test("A run longer than the segment limit is split into several messages")
    func longRun() throws {
        let sender = try UDPSocket(bind: TransportAddress("127.0.0.1:0")!)
        let a = try UDPSocket(bind: TransportAddress("127.0.0.1:0")!)
        setReceiveBuffer(a.fd, 4 << 20)
        let sizes = [Int](repeating: 300, count: 100)
        let (batch, received) = sendThroughBatch(
            gso: true, sizes: sizes, to: [Int](repeating: 0, count: 100), receivers: [a], sender: sender)
        #expect(received[0].count == 100)
        #expect(received[0].enumerated().allSatisfy { k, d in d.first == UInt8(k) && d.count == 300 })
        // 64 is the batch capacity: the first 64 flush on their own (one message of 64), then 36.
        #expect(batch.segmentedSends == 2)
        #expect(batch.segmentedDatagrams == 100)
    }

    @Test("Bursts through a real server: every datagram arrives in order both ways, and GSO is used")
    func burstsThroughServer() async throws {
        let (server, client, peer, relayed) = try allocatedClient()
        defer { server.stop() }
        let bind = try client.request(.channelBind, [.channelNumber(0x4001), .xorPeerAddress(peer.localAddress)])
        #expect(bind.type.messageClass == .successResponse)

        let rounds = 20
        let burst = 32
        for round in 0..<rounds {
            // Client → peer: a burst of ChannelData with equal payloads, sent in one sendmmsg.
            let frames = (0..<burst).map { k in
                [0x40, 0x01, 0x02, 0x58]
                    + [UInt8](repeating: UInt8(truncatingIfNeeded: round &* burst &+ k), count: 600)
            }
            #expect(sendBurst(client.socket.fd, frames, to: client.server) == burst)
            for k in 0..<burst {
                let d = try #require(peer.receive())
                #expect(d.from == relayed)
                #expect(d.bytes == Array(frames[k][4...]))
            }
            // Peer → client: a burst the relay socket receives in order and the listener sends on.
            let datagrams = (0..<burst).map { k in [UInt8](repeating: UInt8(truncatingIfNeeded: k &+ round), count: 600)
            }
            #expect(sendBurst(peer.fd, datagrams, to: relayed) == burst)
            for k in 0..<burst {
                let d = try #require(client.socket.receive())
                #expect(d.bytes == [0x40, 0x01, 0x02, 0x58] + datagrams[k])
            }
        }
        let offload = await server.relay.offloadCounters()
        #expect(offload.segmentedSends > 0, "no run was sent with GSO")
        #expect(offload.segmentedDatagrams >= 2 * offload.segmentedSends)
        // The peer → client bursts leave the peer as separate datagrams: never merged.
        #expect(offload.mergedReceives == 0)
    }
}

/// Sends `datagrams` to `address` with one sendmmsg call; returns how many left.
func sendBurst(_ fd: Int32, _ datagrams: [[UInt8]], to address: TransportAddress) -> Int {
    UDPSocket.withSockaddr(address) { sa, length in
        let buffers = datagrams.map { d -> UnsafeMutableRawPointer in
            let p = UnsafeMutableRawPointer.allocate(byteCount: max(1, d.count), alignment: 16)
            d.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: d.count) }
            return p
        }
        defer { buffers.forEach { $0.deallocate() } }
        var iovecs = zip(buffers, datagrams).map { iovec(iov_base: $0, iov_len: $1.count) }
        var headers = [traverse_mmsghdr](repeating: traverse_mmsghdr(), count: datagrams.count)
        return iovecs.withUnsafeMutableBufferPointer { iov in
            for k in headers.indices {
                headers[k].msg_hdr.msg_name = UnsafeMutableRawPointer(mutating: sa)
                headers[k].msg_hdr.msg_namelen = length
                headers[k].msg_hdr.msg_iov = iov.baseAddress! + k
                headers[k].msg_hdr.msg_iovlen = 1
            }
            return Int(traverse_sendmmsg(fd, &headers, UInt32(headers.count), 0))
        }
    }
}

func setReceiveBuffer(_ fd: Int32, _ bytes: Int32) {
    var size = bytes
    _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
}

/// A started server, a client with an IPv4 allocation on it, a peer socket (both with 4 MiB
/// receive buffers) and the relayed address. The caller stops the server.
func allocatedClient() throws -> (TraverseServer, TURNClient, UDPSocket, TransportAddress) {
    let server = try startServer()
    let client = try TURNClient(server: server.address(.ipv4))
    let peer = try UDPSocket(bind: TransportAddress("127.0.0.1:0")!)
    setReceiveBuffer(peer.fd, 4 << 20)
    setReceiveBuffer(client.socket.fd, 4 << 20)
    guard let relayed = try client.allocate().relayed.first else {
        server.stop()
        throw UDPError.socket(EPROTO)
    }
    return (server, client, peer, relayed)
}

/// Sends `segments` (equal sizes, the last may be shorter) to `address` as one UDP GSO message.
func sendSegmented(_ fd: Int32, _ segments: [[UInt8]], to address: TransportAddress) -> Int {
    let bytes = segments.flatMap { $0 }
    return UDPSocket.withSockaddr(address) { sa, length in
        bytes.withUnsafeBytes { b in
            var iov = iovec(iov_base: UnsafeMutableRawPointer(mutating: b.baseAddress), iov_len: b.count)
            let control = UnsafeMutableRawPointer.allocate(byteCount: 32, alignment: 16)
            defer { control.deallocate() }
            var message = msghdr()
            message.msg_name = UnsafeMutableRawPointer(mutating: sa)
            message.msg_namelen = length
            return withUnsafeMutablePointer(to: &iov) { iovPointer in
                message.msg_iov = iovPointer
                message.msg_iovlen = 1
                message.msg_control = control
                message.msg_controllen = traverse_cmsg_put_udp_segment(control, 32, UInt16(segments[0].count))
                return sendmsg(fd, &message, 0)
            }
        }
    }
}

@Suite("UDP receive offload on relay sockets", .serialized)
struct ReceiveOffloadTests {
    /// A peer's burst sent as one GSO message reaches the relay socket as one GRO message.
    static func burst(round: Int, size: Int, count: Int, last: Int) -> [[UInt8]] {
        (0..<count).map { k in
            [UInt8](repeating: UInt8(truncatingIfNeeded: round &* 31 &+ k), count: k == count - 1 ? last : size)
        }
    }

    @Test("A merged burst on a channel: every datagram framed on its own, in order")
    func mergedOnChannel() async throws {
        let (server, client, peer, relayed) = try allocatedClient()
        defer { server.stop() }
        let bind = try client.request(.channelBind, [.channelNumber(0x4002), .xorPeerAddress(peer.localAddress)])
        #expect(bind.type.messageClass == .successResponse)
        for round in 0..<10 {
            let segments = Self.burst(round: round, size: 500, count: 9, last: 123)
            #expect(sendSegmented(peer.fd, segments, to: relayed) == 8 * 500 + 123)
            for s in segments {
                let d = try #require(client.socket.receive())
                #expect(d.bytes == [0x40, 0x02, UInt8(s.count >> 8), UInt8(s.count & 0xFF)] + s)
            }
        }
        let offload = await server.relay.offloadCounters()
        #expect(offload.mergedReceives >= 1, "the kernel never merged the bursts")
        #expect(offload.mergedDatagrams >= 9 * offload.mergedReceives / 2)
        #expect(await server.relay.counters().relayedPacketsPeerToClient.reduce(0, +) == 90)
    }

    @Test("A merged burst without a channel: Data indications with padding, in order")
    func mergedAsIndications() async throws {
        let (server, client, peer, relayed) = try allocatedClient()
        defer { server.stop() }
        let permission = try client.request(.createPermission, [.xorPeerAddress(peer.localAddress)])
        #expect(permission.type.messageClass == .successResponse)
        for round in 0..<5 {
            // 501 B: not a multiple of 4, so every indication carries 3 bytes of padding.
            let segments = Self.burst(round: round, size: 501, count: 6, last: 2)
            #expect(sendSegmented(peer.fd, segments, to: relayed) == 5 * 501 + 2)
            for s in segments {
                let d = try #require(client.socket.receive())
                let indication = try STUNMessage(parsing: d.bytes)
                #expect(indication.type == STUNMessageType(method: .data, class: .indication))
                #expect(indication.first(.xorPeerAddress) == .xorPeerAddress(peer.localAddress))
                #expect(indication.first(.data) == .data(s))
                #expect(d.bytes.count % 4 == 0)
            }
        }
        #expect(await server.relay.offloadCounters().mergedReceives >= 1)
    }
}

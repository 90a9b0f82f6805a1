// Peer egress: datagrams peers send to relay sockets, framed (`PeerFramer`) and sent to the
// allocation's client; ICMP errors from the relay sockets' error queues passed on as Data
// indications (RFC 8656 §11.5).
//
// Invariants: a peer's datagram reaches only the client of the allocation whose relay socket it
// arrived on, and only when the core routes it (permission, channel, bandwidth); payloads stay
// in the receive buffers (framed in their headroom, or with a separate header for UDP GRO
// bursts), except a GRO burst's segment to a stream client, copied once into the scratch. Nothing
// here allocates, locks or logs per packet. On the shard's queue.
import CTraverseSystem
import STUNCodec
import TURNCore
import TraverseSystem

extension Shard {
    /// Relays datagrams that peers sent to the relay socket `fd` of the allocation in `slot`.
    func drainRelay(fd: Int32, slot: Int) {
        assertOnQueue()
        let t = now()
        let rx = relayRx
        for _ in 0..<16 {
            let n = rx.receive(fd)
            if n < 0 {
                drainICMPErrors(fd: fd, slot: slot, t)
                break
            }
            if n == 0 { break }
            relaySockets.noteKernelDrops(fd, n, rx)
            for i in 0..<n {
                guard let peer = SocketAddress.read(rx.addresses + i) else { continue }
                let length = rx.length(i)
                let segment = rx.groSegmentSize(i)
                if rx.truncated(i) {
                    core.counters.drop(.oversizedDatagram)
                } else if segment > 0 && segment < length {
                    forwardMerged(payload: rx.payload(i), length: length, segment: segment, from: peer, slot: slot, t)
                } else if length > maxDatagram {
                    core.counters.drop(.oversizedDatagram)
                } else {
                    forwardToClient(payload: rx.payload(i), length: length, from: peer, slot: slot, t)
                }
            }
            tx.flush()
            if n < rx.capacity { break }
        }
        finishBatch()
    }

    /// Relays the datagrams UDP GRO merged into one message (a peer's burst), one by one.
    func forwardMerged(
        payload: UnsafeMutableRawPointer, length: Int, segment: Int, from peer: TransportAddress, slot: Int,
        _ t: CoreTime
    ) {
        mergedReceives &+= 1
        var offset = 0
        while offset < length {
            let size = min(segment, length - offset)
            mergedDatagrams &+= 1
            if size > maxDatagram {
                core.counters.drop(.oversizedDatagram)
            } else {
                forwardSegment(payload: payload + offset, length: size, from: peer, slot: slot, t)
            }
            offset += size
        }
    }

    /// Frames one datagram of a merged burst without touching the bytes around it: to a UDP client
    /// its header goes in a header slot of the send batch; a stream client gets a framed copy.
    @inline(__always)
    func forwardSegment(
        payload: UnsafeMutableRawPointer, length: Int, from peer: TransportAddress, slot: Int, _ t: CoreTime
    ) {
        let route = core.routePeerData(slot: slot, from: peer, length: length, now: t)
        let ft: FiveTuple
        switch route {
        case .drop: return
        case .channel(_, let f), .indication(let f): ft = f
        }
        if ft.transport == .udp {
            guard let fd = listenerFD(for: ft.server) else { return }
            let header = tx.nextHeaderSlot
            let headerLength = framer.writeHeader(route, peer: peer, payloadLength: length, to: header)
            tx.enqueue(
                fd: fd, to: ft.client, headerLength: headerLength, payload: payload, length: length,
                padding: PeerFramer.padding(route, length: length, transport: .udp))
        } else if let writer = streamWriters[ft] {
            let start = streamScratch + Self.headroom
            start.copyMemory(from: payload, byteCount: length)
            let framed = framer.frameInPlace(route, payload: start, length: length, peer: peer, transport: ft.transport)
            writer.write(UnsafeRawBufferPointer(start: framed.start, count: framed.length))
        }
    }

    /// Frames a peer's datagram in the headroom in front of it and queues it to the client.
    @inline(__always)
    func forwardToClient(
        payload: UnsafeMutableRawPointer, length: Int, from peer: TransportAddress, slot: Int, _ t: CoreTime
    ) {
        let route = core.routePeerData(slot: slot, from: peer, length: length, now: t)
        switch route {
        case .drop:
            return
        case .channel(_, let ft), .indication(let ft):
            let framed = framer.frameInPlace(
                route, payload: payload, length: length, peer: peer, transport: ft.transport)
            send(UnsafeRawPointer(framed.start), framed.length, to: ft)
        }
    }

    /// Sends framed bytes to the client of `ft` (queued for UDP, written to its stream otherwise).
    @inline(__always)
    func send(_ bytes: UnsafeRawPointer, _ length: Int, to ft: FiveTuple) {
        if ft.transport == .udp {
            if let fd = listenerFD(for: ft.server) { tx.enqueue(fd: fd, to: ft.client, bytes: bytes, length: length) }
        } else if let writer = streamWriters[ft] {
            writer.write(UnsafeRawBufferPointer(start: bytes, count: length))
        }
    }

    /// Passes ICMP errors from the relay socket's error queue to the client as Data indications
    /// with an ICMP attribute (RFC 8656 §11.5), when a permission for the peer exists.
    func drainICMPErrors(fd: Int32, slot: Int, _ t: CoreTime) {
        var error = traverse_icmp_error()
        for _ in 0..<16 {
            let r = traverse_read_icmp_error(fd, &error)
            if r < 0 { break }
            if r == 0 { continue }
            let peer = withUnsafePointer(to: &error.destination) { SocketAddress.read(UnsafeRawPointer($0)) }
            guard let peer, let ft = core.routeICMP(slot: slot, peer: peer, now: t) else { continue }
            let buffer = tx.nextReplyBuffer
            guard
                var w = try? STUNMessageWriter(
                    into: buffer, type: STUNMessageType(method: .data, class: .indication),
                    transactionID: STUNTransactionID.random()),
                (try? w.append(.xorPeerAddress, address: peer)) != nil,
                (try? w.append(
                    .icmp, length: 8,
                    { v in
                        v.storeBytes(of: UInt16(0), as: UInt16.self)
                        v[2] = error.type
                        v[3] = error.code
                        v.storeBytes(of: error.info.bigEndian, toByteOffset: 4, as: UInt32.self)
                    })) != nil
            else { continue }
            deliverReply(buffer, w.count, to: ft)
        }
        tx.flush()
    }
}

import COpenSSL
import CTraverseTLS
import Logging
import STUNCodec
import TURNCore

#if canImport(Glibc)
    import Glibc
#endif

/// One DTLS client (RFC 7350) on a shard's UDP socket: OpenSSL runs over memory buffers, the
/// shard feeds it datagrams and sends what it produces, split at record boundaries into
/// datagrams no larger than the path MTU we assume. Inside, the plaintext is STUN and
/// ChannelData exactly as over UDP. Confined to the shard's queue.
final class DTLSSession: StreamWriter {
    static let mtu = 1200
    static let plainCapacity = 65_536 + 64

    let ssl: OpaquePointer
    let fiveTuple: FiveTuple
    let fd: Int32
    unowned let shard: Shard
    var handshaking = true
    var closed = false
    var lastActivity: UInt64
    let plain: UnsafeMutableRawPointer
    var output: [UInt8] = []

    init?(context: TLSContext, fiveTuple: FiveTuple, fd: Int32, shard: Shard, now: UInt64) {
        let peer = fiveTuple.client.ip.bytes + [UInt8(fiveTuple.client.port >> 8), UInt8(fiveTuple.client.port & 0xFF)]
        guard
            let ssl = peer.withUnsafeBytes({
                traverse_dtls_session_new(context.context, $0.baseAddress, $0.count, Int32(Self.mtu))
            })
        else { return nil }
        self.ssl = ssl
        self.fiveTuple = fiveTuple
        self.fd = fd
        self.shard = shard
        self.lastActivity = now
        plain = .allocate(byteCount: Self.plainCapacity, alignment: 16)
    }

    deinit {
        SSL_free(ssl)
        plain.deallocate()
    }

    /// Handles one datagram from the client.
    func receive(_ datagram: UnsafeRawBufferPointer, now t: CoreTime) {
        if closed { return }
        lastActivity = t.milliseconds
        _ = traverse_dtls_feed(ssl, datagram.baseAddress, datagram.count)
        if handshaking {
            let r = SSL_accept(ssl)
            if r == 1 {
                handshaking = false
            } else {
                let e = SSL_get_error(ssl, r)
                if e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE {
                    fail()
                    return
                }
            }
            flushOutput()
            if handshaking { return }
        }
        let legacy = shard.core.configuration.legacyChannelNumbers
        while !closed {
            let n = SSL_read(ssl, plain, Int32(Self.plainCapacity))
            if n <= 0 {
                let e = SSL_get_error(ssl, n)
                if e == SSL_ERROR_ZERO_RETURN { close() } else if e != SSL_ERROR_WANT_READ { fail() }
                break
            }
            let message = UnsafeRawBufferPointer(start: plain, count: Int(n))
            switch ChannelData.classify(firstByte: message[0], legacyRange: legacy) {
            case .stun:
                shard.handleSTUN(message, fiveTuple, t) { buffer, length in
                    self.write(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(buffer)[0..<length]))
                }
            case .channelData:
                if let data = try? ChannelData.parse(message, legacyRange: legacy),
                    let (handle, peer) = shard.core.routeChannelData(
                        channel: data.channel, length: data.payload.count, from: fiveTuple, now: t),
                    let base = data.payload.baseAddress
                {
                    shard.tx.enqueue(fd: handle, to: peer, bytes: base, length: data.payload.count)
                } else {
                    shard.core.counters.drop(.malformedChannelData)
                }
            case .other:
                shard.core.counters.drop(.notSTUNOrChannelData)
            }
            // Relayed payloads point into `plain`: send them before the next record lands there.
            shard.tx.flush()
        }
        flushOutput()
    }

    /// Encrypts and sends bytes to the client (StreamWriter).
    func write(_ bytes: UnsafeRawBufferPointer) {
        if closed || handshaking || bytes.isEmpty { return }
        if SSL_write(ssl, bytes.baseAddress, Int32(bytes.count)) <= 0 {
            fail()
            return
        }
        flushOutput()
    }

    func allocationEnded() {}

    /// Sends what OpenSSL produced, whole records per datagram, at most `mtu` bytes each
    /// (a record larger than that goes alone).
    func flushOutput() {
        let pending = traverse_dtls_output_pending(ssl)
        if pending == 0 { return }
        if output.count < pending { output = [UInt8](repeating: 0, count: max(pending, 4096)) }
        let n = output.withUnsafeMutableBytes { traverse_dtls_take_output(ssl, $0.baseAddress, $0.count) }
        var storage = sockaddr_storage()
        let nameLength = SocketAddress.write(fiveTuple.client, to: &storage)
        output.withUnsafeBytes { all in
            var start = 0
            while start < n {
                var end = start
                while end + 13 <= n {
                    let recordLength = 13 + Int(UInt16(all[end + 11]) << 8 | UInt16(all[end + 12]))
                    if end > start && end + recordLength - start > Self.mtu { break }
                    end = min(n, end + recordLength)
                }
                if end == start { end = n }
                _ = withUnsafePointer(to: &storage) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(fd, all.baseAddress! + start, end - start, Int32(MSG_DONTWAIT), $0, nameLength)
                    }
                }
                start = end
            }
        }
    }

    func fail() {
        var reason = [CChar](repeating: 0, count: 256)
        traverse_tls_last_error(&reason, reason.count)
        flushOutput()  // the alert tells the client why, so it can retry at once (e.g. with DTLS 1.2)
        if handshaking {
            shard.streamCounters.handshakeFailures &+= 1
            shard.logger.notice(
                "dtls handshake failed",
                metadata: [
                    "reason": "\(stringFromC(reason))",
                    "client":
                        "\(AddressRedaction.format(fiveTuple.client, full: shard.configuration.logFullAddresses))",
                ])
        }
        close()
    }

    func close() {
        if closed { return }
        closed = true
        shard.dtlsSessionClosed(self)
    }
}

extension Shard {
    /// A datagram on a DTLS listening socket: to its session, or the start of a new one.
    func handleDTLSDatagram(
        _ bytes: UnsafeRawBufferPointer, from client: TransportAddress, listener: Listener, _ t: CoreTime
    ) {
        let ft = FiveTuple(client: client, server: listener.address, transport: .dtls)
        if let session = dtlsSessions[ft] {
            // A fresh ClientHello (handshake record, epoch 0, message type 1) on an established
            // session means the client restarted from the same port: start over.
            let isClientHello = bytes.count > 13 && bytes[0] == 22 && bytes[3] == 0 && bytes[4] == 0 && bytes[13] == 1
            if session.handshaking || !isClientHello {
                session.receive(bytes, now: t)
                return
            }
            session.close()
        }
        // Only a ClientHello (content type 22, handshake) starts a session, within the budget.
        let fromSource = connectionsPerSource[client.ip, default: 0]
        guard bytes.count > 13, bytes[0] == 22, let context = tlsContexts?.dtls,
            fromSource < configuration.maxConnectionsPerSource, budget.take()
        else {
            core.counters.drop(.notSTUNOrChannelData)
            return
        }
        guard
            let session = DTLSSession(
                context: context, fiveTuple: ft, fd: listener.fd, shard: self, now: t.milliseconds)
        else {
            budget.give()
            return
        }
        connectionsPerSource[client.ip] = fromSource + 1
        dtlsSessions[ft] = session
        streamWriters[ft] = session
        streamCounters.accepted[2] &+= 1
        streamCounters.open += 1
        session.receive(bytes, now: t)
    }

    func dtlsSessionClosed(_ session: DTLSSession) {
        dtlsSessions[session.fiveTuple] = nil
        streamWriters[session.fiveTuple] = nil
        let n = connectionsPerSource[session.fiveTuple.client.ip, default: 1] - 1
        connectionsPerSource[session.fiveTuple.client.ip] = n > 0 ? n : nil
        budget.give()
        streamCounters.open -= 1
        core.closeAllocation(on: session.fiveTuple, reason: .connectionClosed, now: now())
        drainEvents()
    }
}

import COpenSSL
import CTraverseTLS
import Logging
import STUNCodec
import TURNCore
import TraverseSystem

#if canImport(Glibc)
    import Glibc
#endif

/// One DTLS client (RFC 7350) on a shard's UDP socket, made only once the client has echoed a
/// valid cookie (`DTLSGate`). OpenSSL runs over memory buffers: the shard feeds it datagrams and
/// sends what it produces, split at record boundaries into datagrams no larger than the path MTU
/// we assume. Inside, the plaintext is STUN and ChannelData exactly as over UDP. A session keeps
/// only its `SSL` (whose record buffers are released while idle); the plaintext and output
/// buffers belong to the shard's gate. Confined to the shard's queue.
final class DTLSSession: StreamWriter {
    let ssl: OpaquePointer
    let fiveTuple: FiveTuple
    let fd: Int32
    unowned let shard: Shard
    var handshaking = true
    var closed = false
    var lastActivity: UInt64

    /// Takes ownership of `ssl`, which holds the client's ClientHello (see `DTLSGate.receive`).
    init(ssl: OpaquePointer, fiveTuple: FiveTuple, fd: Int32, shard: Shard, now: UInt64) {
        self.ssl = ssl
        self.fiveTuple = fiveTuple
        self.fd = fd
        self.shard = shard
        self.lastActivity = now
    }

    deinit { SSL_free(ssl) }

    /// Handles one datagram from the client.
    func receive(_ datagram: UnsafeRawBufferPointer, now t: CoreTime) {
        if closed { return }
        _ = traverse_dtls_feed(ssl, datagram.baseAddress, datagram.count)
        process(now: t)
    }

    /// Runs the handshake or reads records with what has been fed so far.
    func process(now t: CoreTime) {
        lastActivity = t.milliseconds
        if handshaking {
            ERR_clear_error()  // SSL_get_error reads this thread's queue: start it empty
            let r = SSL_accept(ssl)
            if r == 1 {
                handshaking = false
                shard.dtls.handshakeFinished(fiveTuple.client.ip)
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
        let plain = shard.dtls.plain
        while !closed {
            ERR_clear_error()  // SSL_get_error reads this thread's queue: start it empty
            let n = SSL_read(ssl, plain, Int32(DTLSGate.plainCapacity))
            if n <= 0 {
                let e = SSL_get_error(ssl, n)
                if e == SSL_ERROR_ZERO_RETURN { close() } else if e != SSL_ERROR_WANT_READ { fail() }
                break
            }
            let message = UnsafeRawBufferPointer(start: plain, count: Int(n))
            shard.handleClientMessage(message, from: fiveTuple, t)
            // Relayed payloads point into `plain`: send them before the next record lands there.
            shard.tx.flush()
        }
        flushOutput()
    }

    /// Encrypts and sends bytes to the client (StreamWriter).
    func write(_ bytes: UnsafeRawBufferPointer) {
        if closed || handshaking || bytes.isEmpty { return }
        ERR_clear_error()  // SSL_get_error reads this thread's queue: start it empty
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
        let n = shard.dtls.takeOutput(ssl)
        if n > 0 {
            shard.sendDatagrams(
                UnsafeRawBufferPointer(rebasing: shard.dtls.output[0..<n]), fd: fd, to: fiveTuple.client)
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
    /// A datagram on a DTLS listening socket: to its session, or to the gate, which answers it
    /// statelessly or admits the client once it has proved its address.
    func handleDTLSDatagram(
        _ bytes: UnsafeRawBufferPointer, from client: TransportAddress, listener: Listener, _ t: CoreTime
    ) {
        let ft = FiveTuple(client: client, server: listener.address, transport: .dtls)
        if let session = dtlsSessions[ft] {
            // A fresh ClientHello on an established session means the client restarted from the
            // same port: start over (through the gate, like any new client).
            if session.handshaking || !DTLSRecord.startsWithClientHello(bytes) {
                session.receive(bytes, now: t)
                return
            }
            session.close()
        }
        switch dtls.receive(bytes, from: client, context: tlsContexts?.dtls) {
        case .drop:
            core.counters.drop(.notSTUNOrChannelData)
        case .answer(let length):
            sendDatagrams(UnsafeRawBufferPointer(rebasing: dtls.output[0..<length]), fd: listener.fd, to: client)
        case .admit(let ssl):
            let session = DTLSSession(ssl: ssl, fiveTuple: ft, fd: listener.fd, shard: self, now: t.milliseconds)
            dtlsSessions[ft] = session
            streamWriters[ft] = session
            streamCounters.accepted[.dtls] &+= 1
            streamCounters.open += 1
            session.process(now: t)
        }
    }

    func dtlsSessionClosed(_ session: DTLSSession) {
        dtlsSessions[session.fiveTuple] = nil
        streamWriters[session.fiveTuple] = nil
        dtls.sessionClosed(session.fiveTuple.client.ip, handshaking: session.handshaking)
        streamCounters.open -= 1
        closedSinceTrim &+= 1
        core.closeAllocation(on: session.fiveTuple, reason: .connectionClosed, now: now())
        drainEffects()
    }

    /// Sends DTLS records to `client`, whole records per datagram of at most `DTLSGate.mtu` bytes.
    func sendDatagrams(_ records: UnsafeRawBufferPointer, fd: Int32, to client: TransportAddress) {
        guard let base = records.baseAddress else { return }
        var storage = sockaddr_storage()
        let nameLength = SocketAddress.write(client, to: &storage)
        var start = 0
        while start < records.count {
            let end = DTLSRecord.datagramEnd(records, from: start, mtu: DTLSGate.mtu)
            _ = withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, base + start, end - start, Int32(MSG_DONTWAIT), $0, nameLength)
                }
            }
            start = end
        }
    }
}

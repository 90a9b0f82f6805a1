// One TCP or TLS client connection: framing in place, a bounded output buffer, backpressure,
// the TLS handshake, and the raw relay of an RFC 6062 data connection.
//
// Invariant: memory per connection is bounded (inbound buffer, `OutputBuffer` limits); a client
// that does not read is paused above the high watermark and closed past the limit. Confined to
// its shard's queue.
import COpenSSL
import CTraverseTLS
import Dispatch
import Logging
import STUNCodec
import Synchronization
import TURNCore
import TraverseSystem

#if canImport(Glibc)
    import Glibc
#endif

/// One TCP or TLS connection from a client (RFC 8656 §3.1): STUN messages and ChannelData framed
/// on a byte stream. Reads are framed in place; answers and relayed data are queued in a bounded
/// output buffer. A client that does not read is backpressured (its input is paused above a
/// high-water mark) and disconnected past the bound, so memory never grows without limit.
///
/// Confined to its shard's queue.
final class StreamConnection: StreamWriter {
    static let inboundCapacity = 65_536 + 2 * stunHeaderSize
    static let outboundLimit = 1 << 20
    static let highWater = 256 << 10

    let fd: Int32
    unowned let shard: Shard
    let fiveTuple: FiveTuple
    let readSource: any DispatchSourceRead
    var writeSource: (any DispatchSourceWrite)?
    let closer: DescriptorCloser
    var ssl: OpaquePointer?
    var handshaking: Bool
    let inbound: UnsafeMutableRawPointer
    var inboundCount = 0
    var outbound = OutputBuffer(limit: StreamConnection.outboundLimit, highWater: StreamConnection.highWater)
    var readPaused = false
    var closed = false
    var lastActivity: UInt64
    /// RFC 6062 client data connection: after ConnectionBind, bytes flow raw to and from a peer.
    var rawRelay = false
    var rawPeer: RawPeer?
    /// Client bytes that arrived before the peer connection was attached (bounded).
    var rawPending = OutputBuffer(limit: RawPeer.outboundLimit)
    /// The relayed address of the TCP allocation this data connection was bound to
    /// (ConnectionBind); it is closed when that allocation ends (`Shard.closeLinks`).
    var boundRelay: TransportAddress?

    init(fd: Int32, shard: Shard, fiveTuple: FiveTuple, tls: TLSContext?, now: UInt64) {
        self.fd = fd
        self.shard = shard
        self.fiveTuple = fiveTuple
        self.closer = DescriptorCloser(fd)
        self.lastActivity = now
        inbound = .allocate(byteCount: Self.inboundCapacity, alignment: 16)
        readSource = DispatchSource.makeReadSource(fileDescriptor: fd, queue: shard.queue)
        if let tls, let session = tls.makeSession() {
            ssl = session
            SSL_set_fd(session, fd)
            SSL_set_accept_state(session)
            handshaking = true
        } else {
            handshaking = false
        }
        closer.retain()
        let closer = self.closer
        readSource.setCancelHandler { closer.release() }
        readSource.setEventHandler { [weak self] in self?.onReadable() }
        readSource.activate()
    }

    deinit {
        inbound.deallocate()
        if let ssl { SSL_free(ssl) }
    }

    var pendingOutput: Int { outbound.count }

    // MARK: Reading

    func onReadable() {
        shard.assertOnQueue()
        if closed { return }
        lastActivity = Clock.monotonicMilliseconds()
        if handshaking {
            continueHandshake()
            if handshaking || closed { return }
        }
        for _ in 0..<32 {
            let space = Self.inboundCapacity - inboundCount
            let n: Int
            if let ssl {
                ERR_clear_error()  // SSL_get_error reads this thread's queue: start it empty
                let r = SSL_read(ssl, inbound + inboundCount, Int32(space))
                if r > 0 {
                    n = Int(r)
                } else {
                    switch SSL_get_error(ssl, r) {
                    case SSL_ERROR_WANT_READ: return
                    case SSL_ERROR_WANT_WRITE:
                        ensureWriter()
                        return
                    case SSL_ERROR_ZERO_RETURN: close(.peerClosed)
                    default: close(.readError)
                    }
                    return
                }
            } else {
                let r = recv(fd, inbound + inboundCount, space, Int32(MSG_DONTWAIT))
                if r > 0 {
                    n = r
                } else if r == 0 {
                    close(.peerClosed)
                    return
                } else {
                    if errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR { close(.readError) }
                    return
                }
            }
            inboundCount += n
            if rawRelay {
                forwardRaw()
            } else {
                processFrames()
            }
            if closed || readPaused { return }
        }
    }

    func processFrames() {
        shard.assertOnQueue()
        let t = shard.now()
        let legacy = shard.core.configuration.legacyChannelNumbers
        var offset = 0
        loop: while offset < inboundCount && !closed {
            let rest = UnsafeRawBufferPointer(start: inbound + offset, count: inboundCount - offset)
            switch StreamFraming.nextFrame(in: rest, legacyRange: legacy) {
            case .needMore:
                break loop
            case .invalid:
                close(.invalidFraming)
                return
            case .complete(let length, _):
                shard.handleClientMessage(UnsafeRawBufferPointer(rebasing: rest[0..<length]), from: fiveTuple, t)
                offset += length
                if rawRelay { break loop }  // a ConnectionBind succeeded: what follows is raw data
            }
        }
        // Relayed payloads point into `inbound`: send them before the bytes move.
        shard.tx.flush()
        shard.finishBatch()
        if offset > 0 && !closed {
            inboundCount -= offset
            if inboundCount > 0 { memmove(inbound, inbound + offset, inboundCount) }
        }
        if rawRelay && !closed && inboundCount > 0 { forwardRaw() }
    }

    // MARK: Raw relay (RFC 6062 data connections)

    /// Stops framing: the next bytes belong to the peer connection being attached.
    func beginRawRelay() { rawRelay = true }

    /// Attaches the peer's TCP connection: from now on bytes are copied both ways unchanged.
    func attachRawPeer(fd: Int32, initial: [UInt8]) {
        if closed {
            Glibc.close(fd)
            return
        }
        let peer = RawPeer(fd: fd, connection: self)
        rawPeer = peer
        if !initial.isEmpty { initial.withUnsafeBytes { write($0) } }
        if !rawPending.isEmpty {
            let pending = rawPending.takeAll()
            pending.withUnsafeBytes { peer.write($0) }
        }
        peer.start()
    }

    /// Moves client bytes in `inbound` to the peer (or holds them until it is attached).
    func forwardRaw() {
        let bytes = UnsafeRawBufferPointer(start: inbound, count: inboundCount)
        if let rawPeer {
            rawPeer.write(bytes)
        } else {
            if !rawPending.append(bytes) {
                close(.slowReader)
                return
            }
        }
        inboundCount = 0
    }

    // MARK: TLS handshake

    func continueHandshake() {
        guard let ssl else { return }
        ERR_clear_error()  // SSL_get_error reads this thread's queue: start it empty
        let r = SSL_accept(ssl)
        if r == 1 {
            handshaking = false
            var alpn = [CChar](repeating: 0, count: 64)
            let n = traverse_tls_alpn(ssl, &alpn, alpn.count)
            shard.logger.debug(
                "tls handshake done",
                metadata: [
                    "alpn": "\(n > 0 ? stringFromC(alpn) : "none")",
                    "version": "\(String(cString: SSL_get_version(ssl)))",
                ])
            if pendingOutput > 0 { ensureWriter() }
            return
        }
        switch SSL_get_error(ssl, r) {
        case SSL_ERROR_WANT_READ: return
        case SSL_ERROR_WANT_WRITE: ensureWriter()
        default:
            var reason = [CChar](repeating: 0, count: 256)
            traverse_tls_last_error(&reason, reason.count)
            shard.streamCounters.handshakeFailures &+= 1
            shard.logger.notice(
                "tls handshake failed",
                metadata: [
                    "reason": "\(stringFromC(reason))",
                    "client":
                        "\(AddressRedaction.format(fiveTuple.client, full: shard.configuration.logFullAddresses))",
                ])
            close(.handshakeFailed)
        }
    }

    // MARK: Writing (StreamWriter)

    func write(_ bytes: UnsafeRawBufferPointer) {
        if closed || bytes.isEmpty { return }
        if !outbound.hasRoom(for: bytes.count) {
            close(.slowReader)
            return
        }
        var written = 0
        if pendingOutput == 0 && !handshaking {
            written = send(bytes)
            if written < 0 { return }
        }
        if written < bytes.count {
            _ = outbound.append(UnsafeRawBufferPointer(rebasing: bytes[written...]))
            ensureWriter()
            if outbound.isAboveHighWater && !readPaused {
                readSource.suspend()
                readPaused = true
            }
        }
    }

    /// Sends as much as the socket takes now; -1 when the connection was closed.
    func send(_ bytes: UnsafeRawBufferPointer) -> Int {
        if let ssl {
            ERR_clear_error()  // SSL_get_error reads this thread's queue: start it empty
            let r = SSL_write(ssl, bytes.baseAddress, Int32(bytes.count))
            if r > 0 { return Int(r) }
            switch SSL_get_error(ssl, r) {
            case SSL_ERROR_WANT_WRITE, SSL_ERROR_WANT_READ: return 0
            default:
                close(.readError)
                return -1
            }
        }
        let r = Glibc.send(fd, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
        if r >= 0 { return r }
        if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return 0 }
        close(.readError)
        return -1
    }

    func ensureWriter() {
        if writeSource != nil || closed { return }
        let source = DispatchSource.makeWriteSource(fileDescriptor: fd, queue: shard.queue)
        closer.retain()
        let closer = self.closer
        source.setCancelHandler { closer.release() }
        source.setEventHandler { [weak self] in self?.onWritable() }
        source.activate()
        writeSource = source
    }

    func onWritable() {
        if closed { return }
        if handshaking {
            continueHandshake()
            if handshaking || closed { return }
        }
        while !outbound.isEmpty {
            let n = outbound.withPending { send($0) }
            if n <= 0 {
                if n < 0 { return }
                break
            }
            outbound.consume(n)
        }
        if outbound.isEmpty {
            writeSource?.cancel()
            writeSource = nil
        }
        if readPaused && outbound.isBelowLowWater {
            readPaused = false
            readSource.resume()
        }
        if ssl != nil && !readPaused { onReadable() }  // SSL may hold decrypted input
    }

    func allocationEnded() {}

    // MARK: Closing

    func close(_ reason: StreamCloseReason) {
        if closed { return }
        closed = true
        writeSource?.cancel()
        writeSource = nil
        if readPaused {
            readPaused = false
            readSource.resume()
        }
        readSource.cancel()
        rawPeer?.close()
        rawPeer = nil
        if let boundRelay { shard.connectionRegistry.unbind(relay: boundRelay, dataConnection: fiveTuple) }
        shard.connectionClosed(self, reason: reason)
    }
}

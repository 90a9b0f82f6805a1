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

/// Why a stream connection was closed. Bounded: used as a metric label.
public enum StreamCloseReason: Int, CaseIterable, Sendable {
    case peerClosed
    case readError
    case invalidFraming
    case slowReader
    case idle
    case handshakeFailed
    case shutdown
    case refused
    /// An RFC 6062 data connection whose TCP allocation ended.
    case allocationEnded

    public var label: String {
        switch self {
        case .peerClosed: "client_closed"
        case .readError: "read_error"
        case .invalidFraming: "invalid_framing"
        case .slowReader: "slow_reader"
        case .idle: "idle"
        case .handshakeFailed: "handshake_failed"
        case .shutdown: "shutdown"
        case .refused: "refused"
        case .allocationEnded: "allocation_ended"
        }
    }
}

/// Stream counters of one shard, summed when scraped.
public struct StreamCounters: Sendable {
    public var accepted: [UInt64] = [0, 0, 0]  // tcp, tls, dtls
    public var closed = [UInt64](repeating: 0, count: StreamCloseReason.allCases.count)
    public var handshakeFailures: UInt64 = 0
    public var open: Int = 0

    public init() {}

    public mutating func add(_ o: StreamCounters) {
        for i in accepted.indices { accepted[i] &+= o.accepted[i] }
        for i in closed.indices { closed[i] &+= o.closed[i] }
        handshakeFailures &+= o.handshakeFailures
        open += o.open
    }
}

/// Connection limits shared by all shards, so that an accept storm is bounded server-wide.
final class ConnectionBudget: Sendable {
    let maxTotal: Int
    let total = Atomic<Int>(0)

    init(maxTotal: Int) { self.maxTotal = maxTotal }

    func take() -> Bool {
        if total.add(1, ordering: .relaxed).newValue > maxTotal {
            total.subtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    func give() { total.subtract(1, ordering: .relaxed) }
}

/// Closes a descriptor once every Dispatch source watching it has been cancelled (closing it
/// earlier could let a new socket reuse the number under a live source).
final class DescriptorCloser {
    let fd: Int32
    var holders = 0
    /// Set when the descriptor is handed to another owner instead of being closed.
    var keepOpen = false
    init(_ fd: Int32) { self.fd = fd }
    func retain() { holders += 1 }
    func release() {
        holders -= 1
        if holders == 0 && !keepOpen { close(fd) }
    }
}

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
    var outbound: [UInt8] = []
    var outboundHead = 0
    var readPaused = false
    var closed = false
    var lastActivity: UInt64
    /// RFC 6062 client data connection: after ConnectionBind, bytes flow raw to and from a peer.
    var rawRelay = false
    var rawPeer: RawPeer?
    /// Client bytes that arrived before the peer connection was attached (bounded).
    var rawPending: [UInt8] = []
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

    var pendingOutput: Int { outbound.count - outboundHead }

    // MARK: Reading

    func onReadable() {
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
            case .complete(let length, let kind):
                let frame = UnsafeRawBufferPointer(rebasing: rest[0..<length])
                if kind == .stun {
                    shard.handleSTUN(frame, fiveTuple, t) { buffer, n in
                        self.write(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                    }
                } else {
                    shard.relayChannelData(frame, from: fiveTuple, t, legacy: legacy)
                }
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
            let pending = rawPending
            rawPending = []
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
            if rawPending.count + bytes.count > RawPeer.outboundLimit {
                close(.slowReader)
                return
            }
            rawPending.append(contentsOf: bytes)
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
        if pendingOutput + bytes.count > Self.outboundLimit {
            close(.slowReader)
            return
        }
        var written = 0
        if pendingOutput == 0 && !handshaking {
            written = send(bytes)
            if written < 0 { return }
        }
        if written < bytes.count {
            if outboundHead > 0 && outboundHead * 2 >= outbound.count {
                outbound.removeFirst(outboundHead)
                outboundHead = 0
            }
            outbound.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[written...]))
            ensureWriter()
            if pendingOutput > Self.highWater && !readPaused {
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
        while pendingOutput > 0 {
            let n = outbound.withUnsafeBytes { send(UnsafeRawBufferPointer(rebasing: $0[outboundHead...])) }
            if n <= 0 {
                if n < 0 { return }
                break
            }
            outboundHead += n
        }
        if pendingOutput == 0 {
            outbound.removeAll(keepingCapacity: outbound.capacity <= 64 << 10)
            outboundHead = 0
            writeSource?.cancel()
            writeSource = nil
        }
        if readPaused && pendingOutput < Self.highWater / 2 {
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

/// The peer side of an RFC 6062 data connection, on the client connection's shard.
final class RawPeer {
    static let outboundLimit = 1 << 20
    let fd: Int32
    weak var connection: StreamConnection?
    let queue: DispatchQueue
    let closer: DescriptorCloser
    var readSource: (any DispatchSourceRead)?
    var writeSource: (any DispatchSourceWrite)?
    var outbound: [UInt8] = []
    var closed = false
    let chunk: UnsafeMutableRawPointer

    init(fd: Int32, connection: StreamConnection) {
        self.fd = fd
        self.connection = connection
        self.queue = connection.shard.queue
        closer = DescriptorCloser(fd)
        chunk = .allocate(byteCount: 16 << 10, alignment: 16)
    }

    deinit { chunk.deallocate() }

    func start() {
        let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        closer.retain()
        let closer = self.closer
        source.setCancelHandler { closer.release() }
        source.setEventHandler { [weak self] in self?.onReadable() }
        readSource = source
        source.activate()
    }

    func onReadable() {
        guard !closed, let connection else { return }
        let n = recv(fd, chunk, 16 << 10, Int32(MSG_DONTWAIT))
        if n > 0 {
            connection.write(UnsafeRawBufferPointer(start: chunk, count: n))
        } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
            connection.close(.peerClosed)
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer) {
        guard !closed, !bytes.isEmpty, let connection else { return }
        var sent = 0
        if outbound.isEmpty {
            let r = send(fd, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
            if r < 0 && errno != EAGAIN && errno != EINTR {
                connection.close(.readError)
                return
            }
            sent = max(0, r)
        }
        if sent < bytes.count {
            if outbound.count + bytes.count - sent > Self.outboundLimit {
                connection.close(.slowReader)
                return
            }
            outbound.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[sent...]))
            if writeSource == nil {
                let source = DispatchSource.makeWriteSource(fileDescriptor: fd, queue: queue)
                closer.retain()
                let closer = self.closer
                source.setCancelHandler { closer.release() }
                source.setEventHandler { [weak self] in self?.onWritable() }
                writeSource = source
                source.activate()
            }
        }
    }

    func onWritable() {
        guard !closed, let connection else { return }
        let r = outbound.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
        if r > 0 { outbound.removeFirst(r) }
        if r < 0 && errno != EAGAIN && errno != EINTR {
            connection.close(.readError)
            return
        }
        if outbound.isEmpty {
            writeSource?.cancel()
            writeSource = nil
        }
    }

    func close() {
        if closed { return }
        closed = true
        closer.retain()
        writeSource?.cancel()
        writeSource = nil
        readSource?.cancel()
        readSource = nil
        closer.release()
    }
}

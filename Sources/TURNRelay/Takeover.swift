import CTraverseSystem
import Dispatch
import Logging
public import STUNCodec
import Synchronization
public import TURNCore
import TraverseSystem

#if canImport(Glibc)
    import Glibc
#endif

/// Handing listeners over between two instances on the same addresses: the running one, and a
/// new one started with `--takeover`.
///
/// Sockets bound with SO_REUSEPORT form one group per address, and the kernel picks a group
/// member for each new TCP connection, and for every UDP datagram, by a hash of the client's and
/// the server's address and port, modulo the group's size. TCP connections stay where they were
/// accepted, so sharing a TCP address is harmless; a UDP client is not so bound: whenever the
/// group changes, its datagrams may go to another socket, of another shard or instance, which
/// does not hold its allocation.
///
/// So:
/// - TCP and TLS addresses are shared at once: the new instance listens beside the old one.
///   Once the old one drains (SIGTERM, `POST /drain`), it closes each TCP/TLS listener that
///   another process also listens on (`handOverSharedListeners`, checked every second), after
///   accepting what the kernel already queued for it; accepted connections continue.
/// - UDP and DTLS addresses are never shared: the new instance binds them only once they are
///   free (`DeferredListeners`, probed every 100 ms). The old instance, once draining, releases
///   a UDP/DTLS listener as soon as another process listens on that address for TCP (the twin
///   listener every UDP/DTLS address has) or UDP, and ends the allocations and DTLS sessions
///   made through it (reason `taken_over`): without the listener it can neither hear nor answer
///   their clients, who allocate again, at the new instance. Each group changes once, from the
///   old instance's sockets to the new one's, so no allocation of the new instance is moved.
///
/// Invariant: a listener is closed only while draining and only once another process listens on
/// its address; relay sockets are never touched here.
final class ListenerRecord: Sendable {
    struct Entry: Hashable, Sendable {
        let address: TransportAddress
        let transport: TransportProtocol

        var table: ListenerOwnership.Transport { transport == .tcp || transport == .tls ? .tcp : .udp }
    }
    private struct State {
        var inodes: [Entry: Set<UInt64>] = [:]
        var order: [Entry] = []
        var handedOver: Set<Entry> = []
    }
    private let state = Mutex(State())

    /// A listening socket `fd` bound (port resolved) on `address` for `transport`.
    func note(fd: Int32, address: TransportAddress, transport: TransportProtocol) {
        let entry = Entry(address: address, transport: transport)
        let inode = ListenerOwnership.inode(fd)
        state.withLock { s in
            if s.inodes[entry] == nil { s.order.append(entry) }
            if let inode { s.inodes[entry, default: []].insert(inode) }
        }
    }

    /// Listeners not handed over yet, with the inodes of their sockets.
    func remaining() -> [(Entry, Set<UInt64>)] {
        state.withLock { s in s.order.filter { !s.handedOver.contains($0) }.map { ($0, s.inodes[$0] ?? []) } }
    }

    func markHandedOver(_ entry: Entry) { _ = state.withLock { $0.handedOver.insert(entry) } }

    /// The inodes of our sockets on `address` for `transport`.
    func inodes(_ address: TransportAddress, _ transport: TransportProtocol) -> Set<UInt64> {
        state.withLock { $0.inodes[Entry(address: address, transport: transport)] ?? [] }
    }
}

/// UDP and DTLS addresses the instance being taken over still holds: bound here as soon as it
/// releases them.
///
/// `@unchecked Sendable`: `timer` is a Dispatch source (thread-safe to schedule, activate and
/// cancel); the addresses are behind a mutex.
final class DeferredListeners: @unchecked Sendable {
    struct Address: Sendable, Hashable {
        let address: TransportAddress
        let dtls: Bool
    }
    private let waitingList = Mutex<[Address]>([])
    private let activated = Atomic<Bool>(false)
    private let timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "traverse.takeover"))

    deinit {
        // A Dispatch source released without ever being activated crashes.
        if !activated.exchange(true, ordering: .relaxed) {
            timer.cancel()
            timer.activate()
        }
    }

    func add(_ address: TransportAddress, dtls: Bool) {
        waitingList.withLock { $0.append(Address(address: address, dtls: dtls)) }
    }

    var waiting: [Address] { waitingList.withLock { $0 } }

    /// `a` is bound; once nothing waits, the timer stops.
    func done(_ a: Address) {
        let empty = waitingList.withLock { w in
            w.removeAll { $0 == a }
            return w.isEmpty
        }
        if empty { timer.cancel() }
    }

    /// Runs `poll` every 100 ms until nothing waits (or `cancel`).
    func start(_ poll: @escaping @Sendable () -> Void) {
        guard !waiting.isEmpty, !activated.exchange(true, ordering: .relaxed) else { return }
        timer.schedule(deadline: .now() + .milliseconds(100), repeating: .milliseconds(100))
        timer.setEventHandler(handler: poll)
        timer.activate()
    }

    func cancel() {
        timer.cancel()
        if !activated.exchange(true, ordering: .relaxed) { timer.activate() }
    }
}

extension RelayServer {
    /// Closes every listener another process now also listens on (for UDP and DTLS: or on the
    /// same address for TCP), and returns the addresses and transports handed over (see
    /// `ListenerRecord`). Call while draining, again and again: the other instance may start
    /// later.
    @discardableResult
    public func handOverSharedListeners() -> [(address: TransportAddress, transport: TransportProtocol)] {
        var handed: [(address: TransportAddress, transport: TransportProtocol)] = []
        for (entry, inodes) in listenerRecord.remaining() where sharedElsewhere(entry, inodes) {
            for shard in shards { shard.onQueue { shard.yieldListener(entry.address, entry.transport) } }
            listenerRecord.markHandedOver(entry)
            logger.notice(
                "listener handed over to another process",
                metadata: ["address": "\(entry.address)", "transport": "\(entry.transport)"])
            handed.append((entry.address, entry.transport))
        }
        return handed
    }

    /// Whether every listener has been handed over.
    public var everyListenerHandedOver: Bool { listenerRecord.remaining().isEmpty }

    func sharedElsewhere(_ entry: ListenerRecord.Entry, _ inodes: Set<UInt64>) -> Bool {
        if ListenerOwnership.heldElsewhere(entry.address, entry.table, ours: inodes) { return true }
        guard entry.table == .udp else { return false }
        // The new instance waits for UDP addresses to be free; its TCP twin says it is there.
        let twin: TransportProtocol = entry.transport == .dtls ? .tls : .tcp
        return ListenerOwnership.heldElsewhere(
            entry.address, .tcp, ours: listenerRecord.inodes(entry.address, twin))
    }

    /// Binds the deferred UDP and DTLS addresses as soon as they are free.
    func startDeferredListeners() {
        deferredListeners.start { [weak self] in
            guard let self else { return }
            for a in self.deferredListeners.waiting where !ListenerOwnership.isHeld(a.address, .udp) {
                do {
                    try self.bindLate(a.address, dtls: a.dtls)
                    self.deferredListeners.done(a)
                    self.logger.notice(
                        "listening on an address the previous instance released",
                        metadata: ["address": "\(a.address)", "transport": "\(a.dtls ? "dtls" : "udp")"])
                } catch {
                    self.logger.error(
                        "cannot listen on a released address; retrying",
                        metadata: ["address": "\(a.address)", "error": "\(error)"])
                }
            }
        }
    }

    /// Binds one socket per shard on `address` back to back (so that the kernel's group forms at
    /// once), then hands each to its shard.
    func bindLate(_ address: TransportAddress, dtls: Bool) throws(SocketError) {
        var fds: [Int32] = []
        for _ in shards {
            do {
                let fd = try Sockets.open(address.family, type: Int32(SOCK_DGRAM.rawValue))
                fds.append(fd)
                Sockets.setInt(fd, SOL_SOCKET, SO_REUSEPORT, 1)
                try Sockets.bind(fd, address)
            } catch {
                for fd in fds { close(fd) }
                throw error
            }
        }
        for (shard, fd) in zip(shards, fds) {
            listenerRecord.note(fd: fd, address: address, transport: dtls ? .dtls : .udp)
            Sockets.tuneDatagramSocket(fd, bufferBytes: configuration.socketBufferBytes)
            shard.onQueue { shard.addListener(fd: fd, address: address, dtls: dtls) }
        }
    }
}

extension Shard {
    /// Closes this shard's listener on `address` for `transport` (see `ListenerRecord`).
    func yieldListener(_ address: TransportAddress, _ transport: TransportProtocol) {
        assertOnQueue()
        switch transport {
        case .tcp, .tls:
            let tls = transport == .tls
            for i in streamListeners.indices.reversed()
            where streamListeners[i].address == address && streamListeners[i].tls == tls {
                let listener = streamListeners[i]
                // The kernel queued these for this socket: serve them rather than reset them.
                for _ in 0..<16 { acceptConnections(listener) }
                // Stop listening now (Linux unhashes a listener on shutdown), so that every
                // connection from here on reaches the other instance; the source's cancel
                // handler closes the descriptor later.
                shutdown(listener.fd, Int32(SHUT_RD))
                listener.source.cancel()
                streamListeners.remove(at: i)
            }
        case .udp, .dtls:
            let dtls = transport == .dtls
            for i in listeners.indices
            where listeners[i].address == address && listeners[i].dtls == dtls && listeners[i].fd >= 0 {
                let fd = listeners[i].fd
                poll.remove(fd)
                close(fd)
                relaySockets.forgetKernelDrops(fd)
                // The slot stays (epoll tokens are indices); -1 marks it closed.
                listeners[i] = Listener(fd: -1, address: address, dtls: dtls)
            }
            core.closeAllocations(servedAt: address, transport: transport, reason: .takenOver, now: now())
            for session in Array(dtlsSessions.values) where session.fiveTuple.server == address { session.close() }
            drainEffects()
        }
    }
}

import CTraverseSystem
import Dispatch
import Logging
import STUNCodec
import Synchronization
import TURNCore
import TraverseSystem

#if canImport(Glibc)
    import Glibc
#endif

/// RFC 6062 connections server-wide: peer data connections waiting for a ConnectionBind, by
/// CONNECTION-ID (the client's data connection may arrive on any shard), and the client data
/// connections bound so far, by the relayed address of the TCP allocation they belong to.
///
/// Invariant: a client data connection is listed under its allocation's relayed address from
/// the moment its ConnectionBind claims a pending connection until it closes or the allocation
/// ends (`takeBound`), so that the end of an allocation reaches every data connection it has.
final class ConnectionRegistry: Sendable {
    struct Entry: Sendable {
        let shard: Int
        let username: String
        /// The relayed address of the TCP allocation the peer connection belongs to.
        let relay: TransportAddress
    }
    /// A bound client data connection: the shard it lives on and its 5-tuple.
    struct Bound: Sendable, Equatable {
        let shard: Int
        let dataConnection: FiveTuple
    }
    private struct State {
        var pending: [UInt32: Entry] = [:]
        var bound: [TransportAddress: [Bound]] = [:]
    }
    private let state = Mutex(State())

    /// A fresh, unused CONNECTION-ID for a connection held by `shard` for the allocation relayed
    /// at `relay`.
    func register(shard: Int, username: String, relay: TransportAddress) -> UInt32 {
        state.withLock { s in
            var id: UInt32
            repeat { id = UInt32.random(in: 1...UInt32.max) } while s.pending[id] != nil
            s.pending[id] = Entry(shard: shard, username: username, relay: relay)
            return id
        }
    }

    /// Takes the entry for `id` if it belongs to `username`, and lists `dataConnection` (on
    /// shard `home`) as bound to its allocation.
    func claim(_ id: UInt32, username: String, dataConnection: FiveTuple, home: Int) -> Entry? {
        state.withLock { s in
            guard let entry = s.pending[id], entry.username == username else { return nil }
            s.pending[id] = nil
            s.bound[entry.relay, default: []].append(Bound(shard: home, dataConnection: dataConnection))
            return entry
        }
    }

    func remove(_ id: UInt32) { _ = state.withLock { $0.pending.removeValue(forKey: id) } }

    /// A bound data connection closed.
    func unbind(relay: TransportAddress, dataConnection: FiveTuple) {
        state.withLock { s in
            s.bound[relay]?.removeAll { $0.dataConnection == dataConnection }
            if s.bound[relay]?.isEmpty == true { s.bound[relay] = nil }
        }
    }

    /// The allocation relayed at `relay` ended: its bound data connections, now unlisted.
    func takeBound(relay: TransportAddress) -> [Bound] {
        state.withLock { $0.bound.removeValue(forKey: relay) ?? [] }
    }
}

/// A TCP connection between the relayed address and a peer (RFC 6062), while it waits for the
/// client's ConnectionBind. Data from the peer is held (bounded) until then. Confined to its
/// shard's queue.
final class PeerLink {
    enum State {
        case connecting(STUNTransactionID)
        case pending
    }
    static let bufferLimit = 64 << 10
    /// RFC 6062: at least 30 s to connect, and 30 s to wait for ConnectionBind.
    static let timeoutMilliseconds: UInt64 = 30_000

    var id: UInt32 = 0
    let fd: Int32
    let slot: Int
    /// The relayed address of the allocation (its TCP relay's listening address).
    let relay: TransportAddress
    let peer: TransportAddress
    let username: String
    var state: State
    var deadline: UInt64
    /// Made by a Connect request (as opposed to accepted from a peer).
    var outbound = false
    /// What the peer sent before the ConnectionBind (reading pauses when full).
    var buffered = OutputBuffer(limit: PeerLink.bufferLimit)
    var readSource: (any DispatchSourceRead)?
    var writeSource: (any DispatchSourceWrite)?
    let closer: DescriptorCloser

    init(
        fd: Int32, slot: Int, relay: TransportAddress, peer: TransportAddress, username: String, state: State,
        now: UInt64
    ) {
        self.fd = fd
        self.slot = slot
        self.relay = relay
        self.peer = peer
        self.username = username
        self.state = state
        self.deadline = now + Self.timeoutMilliseconds
        self.closer = DescriptorCloser(fd)
    }

    /// Stops watching the descriptor; it is closed unless `keepOpen` (handed to a data connection).
    func stopWatching(keepOpen: Bool) {
        closer.keepOpen = keepOpen
        closer.retain()  // so the descriptor outlives the cancellations below until decided
        writeSource?.cancel()
        writeSource = nil
        readSource?.cancel()
        readSource = nil
        closer.release()
    }
}

extension Shard {
    // MARK: TCP relay listening sockets (RFC 6062)

    /// Opens the listening TCP socket of a TCP allocation on `address`.
    func openTCPRelay(_ address: TransportAddress, slot: Int) throws(SocketError) -> Int32 {
        let fd = try Sockets.listeningStream(address, backlog: 64)
        let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        source.setEventHandler { [weak self] in self?.acceptPeerConnections(listenFD: fd, slot: slot) }
        source.setCancelHandler { close(fd) }
        source.activate()
        relaySockets.insert(.init(source: source, endpoint: RelayEndpoint(handle: fd, address: address), slot: slot))
        return fd
    }

    func acceptPeerConnections(listenFD: Int32, slot: Int) {
        assertOnQueue()
        let t = now()
        for _ in 0..<16 {
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let fd = traverse_accept(listenFD, &storage, &length)
            if fd < 0 { return }
            guard let peer = withUnsafePointer(to: &storage, { SocketAddress.read(UnsafeRawPointer($0)) }),
                let control = core.inboundConnectionAllowed(slot: slot, peer: peer, now: t),
                let allocation = core.allocation(inSlot: slot), let writer = streamWriters[control],
                let relay = relaySockets[listenFD]?.endpoint.address
            else {
                logger.debug("tcp relay: inbound peer connection refused", metadata: ["slot": "\(slot)"])
                close(fd)
                continue
            }
            let link = PeerLink(
                fd: fd, slot: slot, relay: relay, peer: peer, username: allocation.username, state: .pending,
                now: t.milliseconds)
            link.id = connectionRegistry.register(shard: index, username: allocation.username, relay: link.relay)
            links[link.id] = link
            startReading(link)
            // ConnectionAttempt indication (RFC 6062 §5.3): the client opens a data connection.
            let buffer = tx.nextReplyBuffer
            let type = STUNMessageType(method: .connectionAttempt, class: .indication)
            guard var w = try? STUNMessageWriter(into: buffer, type: type, transactionID: .random()),
                (try? w.append(.xorPeerAddress, address: peer)) != nil,
                (try? w.append(.connectionID, uint32: link.id)) != nil
            else { continue }
            writer.write(w.message)
            logger.debug("tcp relay: connection attempt", metadata: ["slot": "\(slot)", "id": "\(link.id)"])
        }
    }

    // MARK: Connect (RFC 6062 §5.2)

    func beginConnect(slot: Int, relay: RelayEndpoint, peer: TransportAddress, transactionID: STUNTransactionID)
        -> STUNErrorCode?
    {
        assertOnQueue()
        // RFC 6062 §5.2: 446 when a Connect to this peer is in progress or its connection is
        // still waiting to be bound. Connections the peer opened to us do not count.
        if connecting.contains(where: { $0.slot == slot && $0.peer == peer })
            || links.values.contains(where: { $0.slot == slot && $0.peer == peer && $0.outbound })
        {
            return .connectionAlreadyExists
        }
        guard let allocation = core.allocation(inSlot: slot) else { return .connectionTimeoutOrFailure }
        // From the relayed address (RFC 6062 §5.2). When the peer already holds a connection to
        // that address from the same port (it connected to us first), the 4-tuple is taken:
        // connect from the relay IP with another port instead, which the peer's IP permission allows.
        var fd: Int32 = -1
        for source in [relay.address, TransportAddress(ip: relay.address.ip, port: 0)] {
            do {
                fd = try Sockets.open(peer.family, type: Int32(SOCK_STREAM.rawValue))
                Sockets.setInt(fd, SOL_SOCKET, SO_REUSEADDR, 1)
                Sockets.setInt(fd, SOL_SOCKET, SO_REUSEPORT, 1)
                try Sockets.bind(fd, source)
            } catch {
                if fd >= 0 { close(fd) }
                return .connectionTimeoutOrFailure
            }
            var storage = sockaddr_storage()
            let length = SocketAddress.write(peer, to: &storage)
            let rc = withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) }
            }
            if rc == 0 || errno == EINPROGRESS { break }
            let failure = errno
            close(fd)
            fd = -1
            logger.debug("tcp relay: connect failed", metadata: ["errno": "\(failure)", "slot": "\(slot)"])
            if failure != EADDRNOTAVAIL { return .connectionTimeoutOrFailure }
        }
        if fd < 0 { return .connectionTimeoutOrFailure }
        let link = PeerLink(
            fd: fd, slot: slot, relay: relay.address, peer: peer, username: allocation.username,
            state: .connecting(transactionID), now: Clock.monotonicMilliseconds())
        link.outbound = true
        let source = DispatchSource.makeWriteSource(fileDescriptor: fd, queue: queue)
        link.closer.retain()
        let closer = link.closer
        source.setCancelHandler { closer.release() }
        source.setEventHandler { [weak self, weak link] in
            if let self, let link { self.connectFinished(link) }
        }
        link.writeSource = source
        connecting.append(link)
        source.activate()
        return nil
    }

    func connectFinished(_ link: PeerLink) {
        guard case .connecting(let transactionID) = link.state else { return }
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(link.fd, SOL_SOCKET, SO_ERROR, &error, &length)
        link.writeSource?.cancel()
        link.writeSource = nil
        connecting.removeAll { $0 === link }
        var connectionID: UInt32? = nil
        logger.debug("tcp relay: connect finished", metadata: ["error": "\(error)", "slot": "\(link.slot)"])
        if error == 0 {
            link.id = connectionRegistry.register(shard: index, username: link.username, relay: link.relay)
            link.state = .pending
            link.deadline = Clock.monotonicMilliseconds() + PeerLink.timeoutMilliseconds
            links[link.id] = link
            startReading(link)
            connectionID = link.id
        } else {
            link.stopWatching(keepOpen: false)
        }
        answerConnect(slot: link.slot, transactionID: transactionID, connectionID: connectionID)
    }

    func answerConnect(slot: Int, transactionID: STUNTransactionID, connectionID: UInt32?) {
        let buffer = tx.nextReplyBuffer
        guard
            let (length, control) = core.connectResult(
                slot: slot, transactionID: transactionID, connectionID: connectionID, now: now(), response: buffer)
        else { return }
        streamWriters[control]?.write(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(buffer)[0..<length]))
    }

    /// Holds what the peer sends before the ConnectionBind (bounded: reading pauses when full).
    func startReading(_ link: PeerLink) {
        let source = DispatchSource.makeReadSource(fileDescriptor: link.fd, queue: queue)
        link.closer.retain()
        let closer = link.closer
        source.setCancelHandler { closer.release() }
        source.setEventHandler { [weak self, weak link] in
            guard let self, let link, link.readSource != nil else { return }
            let room = min(16 << 10, PeerLink.bufferLimit - link.buffered.count)
            if room <= 0 {
                link.readSource?.suspend()
                return
            }
            let chunk = self.streamScratch
            let n = recv(link.fd, chunk, room, Int32(MSG_DONTWAIT))
            if n > 0 {
                _ = link.buffered.append(UnsafeRawBufferPointer(start: chunk, count: n))
            } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
                self.dropLink(link)
            }
        }
        link.readSource = source
        source.activate()
    }

    func dropLink(_ link: PeerLink) {
        links[link.id] = nil
        connectionRegistry.remove(link.id)
        if link.buffered.count >= PeerLink.bufferLimit { link.readSource?.resume() }
        link.stopWatching(keepOpen: false)
    }

    /// Hands the peer descriptor of link `id` (and what it buffered) to another owner.
    func detachLink(_ id: UInt32) -> (fd: Int32, buffered: [UInt8])? {
        assertOnQueue()
        guard let link = links.removeValue(forKey: id) else { return nil }
        if link.buffered.count >= PeerLink.bufferLimit { link.readSource?.resume() }
        link.stopWatching(keepOpen: true)
        return (link.fd, link.buffered.takeAll())
    }

    /// Times out connects (447) and pending connections nobody bound (RFC 6062: 30 s).
    func sweepLinks(now t: UInt64) {
        for link in connecting where link.deadline <= t {
            if case .connecting(let transactionID) = link.state {
                connecting.removeAll { $0 === link }
                link.stopWatching(keepOpen: false)
                answerConnect(slot: link.slot, transactionID: transactionID, connectionID: nil)
            }
        }
        for link in Array(links.values) where link.deadline <= t { dropLink(link) }
    }

    /// Closes everything of a TCP allocation that ended (relayed at `relay`), whatever ended it
    /// (expiry, Refresh 0, a ban, a revoked credential, its control connection, shutdown): the
    /// peer connections being made or waiting to be bound, here, and the bound data connections,
    /// on whichever shard they live (asynchronously: this runs inside the core's bookkeeping).
    func closeLinks(slot: Int, relay: TransportAddress) {
        for link in Array(links.values) where link.slot == slot { dropLink(link) }
        for link in connecting where link.slot == slot {
            connecting.removeAll { $0 === link }
            link.stopWatching(keepOpen: false)
        }
        for bound in connectionRegistry.takeBound(relay: relay) {
            guard let shard = directory.shard(bound.shard) else { continue }
            shard.post {
                guard let c = shard.streamWriters[bound.dataConnection] as? StreamConnection, c.boundRelay == relay
                else { return }
                c.close(.allocationEnded)
            }
        }
    }

    // MARK: ConnectionBind (RFC 6062 §5.4)

    func bindPeerConnection(id: UInt32, username: String, dataConnection: FiveTuple) -> Bool {
        guard let connection = streamWriters[dataConnection] as? StreamConnection,
            let entry = connectionRegistry.claim(id, username: username, dataConnection: dataConnection, home: index),
            let shard = directory.shard(entry.shard)
        else {
            logger.debug("tcp relay: connection bind refused", metadata: ["id": "\(id)"])
            return false
        }
        let owner = entry.shard
        logger.debug("tcp relay: connection bound", metadata: ["id": "\(id)", "owner": "\(owner)"])
        connection.boundRelay = entry.relay
        connection.beginRawRelay()
        let home = self
        shard.post {
            let detached = shard.detachLink(id)
            home.post {
                let connection = home.streamWriters[dataConnection] as? StreamConnection
                if let (fd, buffered) = detached, let connection {
                    connection.attachRawPeer(fd: fd, initial: buffered)
                } else {
                    if let (fd, _) = detached { close(fd) }
                    connection?.close(.refused)
                }
            }
        }
        return true
    }
}

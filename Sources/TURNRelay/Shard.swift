import CTraverseSystem
public import Dispatch
import Logging
public import STUNCodec
public import TURNCore
import TraverseSystem

#if canImport(Glibc)
    import Glibc
#endif

/// One shard of the data path: a serial queue, its own SO_REUSEPORT listening sockets, the relay
/// sockets of the allocations made on it, and the TURN core that owns those allocations.
///
/// The kernel spreads clients over the shards' listening sockets by hashing the 5-tuple, so a
/// client's packets always reach the same shard; peer packets arrive on relay sockets that the
/// same shard owns. Everything an allocation touches therefore stays on one queue: no locks on
/// the packet path.
///
/// `@unchecked Sendable`: all mutable state is confined to `queue` (checked with
/// `dispatchPrecondition` in debug builds); other threads only enqueue work on it.
public final class Shard: @unchecked Sendable, RelaySocketProvider {
    struct Listener {
        let fd: Int32
        let address: TransportAddress
        /// Datagrams on this socket are DTLS (RFC 7350), not plain STUN/ChannelData.
        let dtls: Bool
    }
    struct RelaySocket {
        /// The Dispatch source of a TCP relay's listening socket; nil for UDP relay sockets,
        /// which the shard's epoll set watches.
        let source: (any DispatchSourceRead)?
        let endpoint: RelayEndpoint
        let slot: Int
    }

    /// The shard's epoll set: every UDP socket it owns (listeners and relay sockets), watched
    /// through one Dispatch source, so that one wakeup serves every socket that became readable.
    let poller: Int32
    var pollSource: (any DispatchSourceRead)?
    let readyTokens: UnsafeMutablePointer<UInt64>
    static let pollBatch = 256
    static let listenerToken: UInt64 = 1 << 63
    /// The doorbell's token: an eventfd in the poll set that other threads ring after putting
    /// work on the queue (`post`), so that a shard lingering on its sockets returns to Dispatch
    /// at once instead of after its linger budget.
    static let doorbellToken: UInt64 = 1 << 62
    let doorbell: Int32
    var doorbellRang = false

    /// An epoll token: the socket and, for relay sockets, the allocation slot; listeners carry
    /// their index and the top bit.
    @inline(__always) static func token(fd: Int32, slot: Int) -> UInt64 {
        UInt64(UInt32(bitPattern: fd)) | UInt64(slot) << 32
    }

    public let index: Int
    public let queue: DispatchQueue
    let configuration: RelayConfiguration
    public private(set) var core: TURNServerCore!
    let ports: PortPool
    var logger: Logger
    var listeners: [Listener] = []
    var relaySockets: [Int32: RelaySocket] = [:]
    /// The allocation slot of each TCP relay listening socket.
    var relaySlots: [Int32: Int] = [:]
    let rx: ReceiveBatch
    /// Receive buffers for relay sockets: 64 KiB each when UDP GRO may merge a peer's burst into
    /// one message, otherwise the listeners' `rx`.
    let relayRx: ReceiveBatch
    /// The largest datagram relayed either way (what a listener's receive buffer holds).
    let maxDatagram: Int
    /// Contiguous room for one framed segment to a stream client (header, payload, padding).
    let streamScratch: UnsafeMutableRawPointer
    let tx: SendBatch
    /// UDP GRO messages received on relay sockets, and the datagrams they held.
    var mergedReceives: UInt64 = 0
    var mergedDatagrams: UInt64 = 0
    var sweepTimer: (any DispatchSourceTimer)?
    var random: UInt64
    /// Kernel drops seen on each socket (cumulative, from SO_RXQ_OVFL).
    var kernelDropsByFD: [Int32: Int64] = [:]
    var kernelDropsClosed: Int64 = 0
    /// Streams (TCP/TLS connections) by client 5-tuple, for packets that must go out over them.
    public var streamWriters: [FiveTuple: any StreamWriter] = [:]
    /// Called with each allocation event after it is logged (metrics, tests).
    public var eventObserver: ((AllocationEvent) -> Void)?

    struct StreamListener {
        let fd: Int32
        let address: TransportAddress
        let tls: Bool
        let source: any DispatchSourceRead
    }
    var streamListeners: [StreamListener] = []
    var connections: [Int32: StreamConnection] = [:]
    var connectionsPerSource: [IPAddress: Int] = [:]
    /// DTLS clients by 5-tuple (only those that proved their address; see `DTLSGate`).
    var dtlsSessions: [FiveTuple: DTLSSession] = [:]
    /// Stateless cookie exchange, DTLS caps and the buffers DTLS sessions share.
    let dtls: DTLSGate
    /// Sessions and connections closed since the allocator last gave free memory back.
    var closedSinceTrim = 0
    /// Stream counters, summed when scraped.
    public internal(set) var streamCounters = StreamCounters()
    let budget: ConnectionBudget
    let tlsContexts: TLSContextStore?
    /// RFC 6062 peer connections held by this shard, by CONNECTION-ID, and those still connecting.
    var links: [UInt32: PeerLink] = [:]
    var connecting: [PeerLink] = []
    let connectionRegistry: ConnectionRegistry
    /// Finds another shard by index (set by the server once all shards exist).
    var sibling: (Int) -> Shard? = { _ in nil }

    /// The header room kept in front of received payloads: enough for a Data indication with an
    /// IPv6 XOR-PEER-ADDRESS (20 + 24 + 4 bytes) rounded up.
    static let headroom = 64

    init(
        index: Int, configuration: RelayConfiguration, coreConfiguration: CoreConfiguration,
        shared: SharedServerState, ports: PortPool, budget: ConnectionBudget, dtls: DTLSGate, tls: TLSContextStore?,
        registry: ConnectionRegistry, nonceSecret: [UInt8], logger: Logger
    ) {
        self.index = index
        self.connectionRegistry = registry
        self.poller = traverse_epoll_create()
        precondition(self.poller >= 0, "epoll_create1 failed")
        readyTokens = .allocate(capacity: Self.pollBatch)
        doorbell = traverse_doorbell_create()
        precondition(doorbell >= 0, "eventfd failed")
        traverse_epoll_add(poller, doorbell, Self.doorbellToken)
        self.budget = budget
        self.dtls = dtls
        self.tlsContexts = tls
        self.queue = DispatchQueue(label: "traverse.shard.\(index)", qos: .userInteractive)
        self.configuration = configuration
        self.ports = ports
        self.logger = logger
        self.logger[metadataKey: "shard"] = "\(index)"
        rx = ReceiveBatch(capacity: configuration.batchSize, bufferSize: 2048 + Self.headroom, headroom: Self.headroom)
        relayRx =
            configuration.receiveOffload
            ? ReceiveBatch(
                capacity: min(configuration.batchSize, 32), bufferSize: 65_536 + Self.headroom, headroom: Self.headroom)
            : rx
        maxDatagram = rx.maxPayload
        streamScratch = .allocate(byteCount: 2048 + Self.headroom + 4, alignment: 16)
        tx = SendBatch(capacity: configuration.batchSize * 2, segmentationOffload: configuration.segmentationOffload)
        random = UInt64.random(in: 1...UInt64.max)
        core = TURNServerCore(
            configuration: coreConfiguration, shared: shared, relays: self, nonceSecret: nonceSecret)
    }

    @inline(__always) func assertOnQueue() {
        #if DEBUG
            dispatchPrecondition(condition: .onQueue(queue))
        #endif
    }

    /// Runs `work` on the shard's queue soon, waking the shard if it is lingering on its sockets.
    /// For other threads (the fleet's verdicts, the operations layer).
    func post(_ work: @escaping @Sendable () -> Void) {
        queue.async(execute: work)
        traverse_doorbell_ring(doorbell)
    }

    /// Runs `work` on the shard's queue and waits for its result, waking a lingering shard first.
    func onQueue<T>(_ work: () -> T) -> T {
        traverse_doorbell_ring(doorbell)
        return queue.sync(execute: work)
    }

    @inline(__always) func now() -> CoreTime {
        CoreTime(milliseconds: Clock.monotonicMilliseconds(), unixSeconds: Clock.unixSeconds())
    }

    // MARK: Listeners

    /// Adds a UDP listening socket (already bound with SO_REUSEPORT) to this shard.
    func addListener(fd: Int32, address: TransportAddress, dtls: Bool = false) {
        listeners.append(Listener(fd: fd, address: address, dtls: dtls))
        traverse_epoll_add(poller, fd, Self.listenerToken | UInt64(listeners.count - 1))
    }

    func start() {
        let source = DispatchSource.makeReadSource(fileDescriptor: poller, queue: queue)
        source.setEventHandler { [unowned self] in self.drainReadySockets() }
        source.activate()
        pollSource = source
        for l in streamListeners { l.source.activate() }
        let timer = DispatchSource.makeTimerSource(queue: queue)
        timer.schedule(deadline: .now() + 1, repeating: 1.0, leeway: .milliseconds(100))
        timer.setEventHandler { [unowned self] in self.sweep() }
        timer.activate()
        sweepTimer = timer
    }

    /// Stops every socket and ends every allocation. Runs on the queue.
    func stop() {
        assertOnQueue()
        core.closeAll(reason: .shutdown, now: now())
        drainEvents()
        sweepTimer?.cancel()
        pollSource?.cancel()
        for l in listeners { close(l.fd) }
        listeners.removeAll()
        for l in streamListeners { l.source.cancel() }
        streamListeners.removeAll()
        for c in Array(connections.values) { c.close(.shutdown) }
        for d in Array(dtlsSessions.values) { d.close() }
    }

    func sweep() {
        assertOnQueue()
        let t = now()
        core.sweep(now: t)
        if index == 0 { ports.expireReservations(now: t.milliseconds) }
        sweepLinks(now: t.milliseconds)
        let idleLimit = configuration.idleTimeoutSeconds * 1000
        // RFC 6062 data connections have no allocation of their own: they live as long as both ends.
        for c in Array(connections.values)
        where t.milliseconds &- c.lastActivity > idleLimit && !c.rawRelay
            && (c.handshaking || core.slot(for: c.fiveTuple) == nil)
        {
            c.close(.idle)
        }
        for d in Array(dtlsSessions.values)
        where t.milliseconds &- d.lastActivity > idleLimit && (d.handshaking || core.slot(for: d.fiveTuple) == nil) {
            d.close()
        }
        drainEvents()
        // Give the memory of ended sessions and connections back to the system (glibc keeps
        // freed chunks in its arenas otherwise), at most once a second per shard.
        if closedSinceTrim >= 16 {
            closedSinceTrim = 0
            _ = traverse_malloc_trim()
        }
    }

    // MARK: Stream listeners (TCP and TLS)

    /// Adds a listening TCP socket (bound with SO_REUSEPORT, listening) to this shard.
    func addStreamListener(fd: Int32, address: TransportAddress, tls: Bool) {
        let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        let listener = StreamListener(fd: fd, address: address, tls: tls, source: source)
        source.setEventHandler { [unowned self] in self.acceptConnections(listener) }
        source.setCancelHandler { close(fd) }
        streamListeners.append(listener)
    }

    func acceptConnections(_ listener: StreamListener) {
        assertOnQueue()
        for _ in 0..<64 {
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let fd = traverse_accept(listener.fd, &storage, &length)
            if fd < 0 { return }
            guard let client = withUnsafePointer(to: &storage, { SocketAddress.read(UnsafeRawPointer($0)) }) else {
                close(fd)
                continue
            }
            let fromSource = connectionsPerSource[client.ip, default: 0]
            if fromSource >= configuration.maxConnectionsPerSource || !budget.take() {
                streamCounters.closed[StreamCloseReason.refused.rawValue] &+= 1
                close(fd)
                continue
            }
            Sockets.setInt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
            connectionsPerSource[client.ip] = fromSource + 1
            let ft = FiveTuple(client: client, server: listener.address, transport: listener.tls ? .tls : .tcp)
            let connection = StreamConnection(
                fd: fd, shard: self, fiveTuple: ft, tls: listener.tls ? tlsContexts?.tls : nil,
                now: Clock.monotonicMilliseconds())
            connections[fd] = connection
            streamWriters[ft] = connection
            streamCounters.accepted[listener.tls ? 1 : 0] &+= 1
            streamCounters.open += 1
        }
    }

    /// A connection ended: its allocation goes with it (RFC 8656 §3.1: one allocation per connection).
    func connectionClosed(_ c: StreamConnection, reason: StreamCloseReason) {
        connections[c.fd] = nil
        streamWriters[c.fiveTuple] = nil
        let n = connectionsPerSource[c.fiveTuple.client.ip, default: 1] - 1
        connectionsPerSource[c.fiveTuple.client.ip] = n > 0 ? n : nil
        budget.give()
        closedSinceTrim &+= 1
        streamCounters.closed[reason.rawValue] &+= 1
        streamCounters.open -= 1
        core.closeAllocation(on: c.fiveTuple, reason: .connectionClosed, now: now())
        drainEvents()
    }

    /// The UDP listener socket bound to `address` on this shard.
    @inline(__always) func listenerFD(for address: TransportAddress) -> Int32? {
        for l in listeners where l.address == address && l.fd >= 0 { return l.fd }
        return nil
    }

    func drainListener(_ listener: Listener) {
        assertOnQueue()
        let t = now()
        for _ in 0..<16 {  // bounded, so relay sockets on this queue get their turn
            let n = rx.receive(listener.fd)
            if n <= 0 { break }
            noteKernelDrops(listener.fd, n, rx)
            if listener.dtls {
                for i in 0..<n {
                    guard let client = SocketAddress.read(rx.addresses + i), !rx.truncated(i) else { continue }
                    handleDTLSDatagram(
                        UnsafeRawBufferPointer(start: rx.payload(i), count: rx.length(i)), from: client,
                        listener: listener,
                        t)
                }
            } else {
                for i in 0..<n { handleClientDatagram(i, listener, t) }
            }
            tx.flush()
            if n < rx.capacity { break }
        }
        finishBatch()
    }

    @inline(__always)
    func handleClientDatagram(_ i: Int, _ listener: Listener, _ t: CoreTime) {
        let length = rx.length(i)
        guard let client = SocketAddress.read(rx.addresses + i) else { return }
        let bytes = UnsafeRawBufferPointer(start: rx.payload(i), count: length)
        if length == 0 || rx.truncated(i) {
            core.counters.drop(.notSTUNOrChannelData)
            return
        }
        let fiveTuple = FiveTuple(client: client, server: listener.address, transport: .udp)
        let legacy = core.configuration.legacyChannelNumbers
        switch ChannelData.classify(firstByte: bytes[0], legacyRange: legacy) {
        case .channelData:
            relayChannelData(bytes, from: fiveTuple, t, legacy: legacy)
        case .stun:
            handleSTUN(bytes, fiveTuple, t) { reply, length in
                self.tx.enqueueReply(fd: listener.fd, to: client, length: length)
                _ = reply
            }
        case .other:
            core.counters.drop(.notSTUNOrChannelData)
        }
    }

    /// A ChannelData message from a client on any transport (UDP datagram, stream frame, DTLS
    /// record): relayed to its peer when the core routes it; every refusal is counted once, by the
    /// parser's caller here or by the core.
    @inline(__always)
    func relayChannelData(_ frame: UnsafeRawBufferPointer, from fiveTuple: FiveTuple, _ t: CoreTime, legacy: Bool) {
        guard let data = try? ChannelData.parse(frame, legacyRange: legacy) else {
            core.counters.drop(.malformedChannelData)
            return
        }
        if let (handle, peer) = core.routeChannelData(
            channel: data.channel, length: data.payload.count, from: fiveTuple, now: t)
        {
            tx.enqueue(
                fd: handle, to: peer, bytes: data.payload.baseAddress ?? frame.baseAddress!,
                length: data.payload.count)
        }
    }

    /// One whole message (STUN or ChannelData) from a client whose transport delimits messages
    /// itself (DTLS records); answers go back through `write`.
    func handleClientMessage(
        _ message: UnsafeRawBufferPointer, _ fiveTuple: FiveTuple, _ t: CoreTime,
        write: (UnsafeRawBufferPointer) -> Void
    ) {
        let legacy = core.configuration.legacyChannelNumbers
        guard let first = message.first else {
            core.counters.drop(.notSTUNOrChannelData)
            return
        }
        switch ChannelData.classify(firstByte: first, legacyRange: legacy) {
        case .stun:
            handleSTUN(message, fiveTuple, t) { buffer, length in
                write(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(buffer)[0..<length]))
            }
        case .channelData:
            relayChannelData(message, from: fiveTuple, t, legacy: legacy)
        case .other:
            core.counters.drop(.notSTUNOrChannelData)
        }
    }

    /// Parses and handles a STUN message from a client on any transport; `send` is called with
    /// the reply buffer and the length of an answer to send back.
    @inline(__always)
    func handleSTUN(
        _ bytes: UnsafeRawBufferPointer, _ fiveTuple: FiveTuple, _ t: CoreTime,
        send: (UnsafeMutableRawBufferPointer, Int) -> Void
    ) {
        let buffer = tx.nextReplyBuffer
        let outcome: ClientMessageOutcome
        do {
            let view = try STUNMessageView(validating: bytes)
            outcome = core.handleSTUN(view, from: fiveTuple, now: t, response: buffer)
        } catch {
            outcome = core.handleMalformed(bytes, error, from: fiveTuple, now: t, response: buffer)
        }
        switch outcome {
        case .reply(let length):
            send(buffer, length)
        case .relay(let handle, let peer, let payload):
            tx.enqueue(
                fd: handle, to: peer, bytes: payload.baseAddress ?? UnsafeRawPointer(buffer.baseAddress!),
                length: payload.count)
        case .awaitQuota(let username, let limit):
            askFleetQuota(bytes, fiveTuple, username: username, limit: limit)
        case .none:
            break
        }
    }

    /// Records the kernel's drop count for `fd`, reported with the last of the `n` messages in `batch`.
    func noteKernelDrops(_ fd: Int32, _ n: Int, _ batch: ReceiveBatch) {
        let d = batch.kernelDrops(n - 1)
        if d >= 0 { kernelDropsByFD[fd] = d }
    }

    /// UDP GSO messages this shard sent and GRO messages it received, with their datagrams.
    public var offload: OffloadCounters {
        OffloadCounters(
            segmentedSends: tx.segmentedSends, segmentedDatagrams: tx.segmentedDatagrams,
            mergedReceives: mergedReceives, mergedDatagrams: mergedDatagrams)
    }

    /// Kernel drops on this shard's sockets so far.
    public var kernelDrops: Int64 { kernelDropsByFD.values.reduce(kernelDropsClosed, +) }

    func finishBatch() {
        if tx.failed > 0 {
            core.counters.drops[DropReason.sendFailed.rawValue] &+= UInt64(tx.failed)
            tx.failed = 0
        }
        if !core.events.isEmpty { drainEvents() }
    }

    func drainEvents() {
        let events = core.events
        core.events.removeAll(keepingCapacity: true)
        let full = configuration.logFullAddresses
        for e in events {
            switch e {
            case .created(let ft, _, let relays, let lifetime):
                logger.info(
                    "allocation created",
                    metadata: [
                        "client": "\(AddressRedaction.format(ft.client, full: full))", "transport": "\(ft.transport)",
                        "relay": "\(relays.map(\.description).joined(separator: ","))", "lifetime": "\(lifetime)",
                    ])
            case .ended(let ft, _, let duration, let traffic, let reason):
                logger.info(
                    "allocation ended",
                    metadata: [
                        "client": "\(AddressRedaction.format(ft.client, full: full))", "transport": "\(ft.transport)",
                        "duration_ms": "\(duration)", "reason": "\(reason.rawValue)",
                        "packets_in": "\(traffic.packetsFromClient)", "bytes_in": "\(traffic.bytesFromClient)",
                        "packets_out": "\(traffic.packetsToClient)", "bytes_out": "\(traffic.bytesToClient)",
                    ])
                streamWriters[ft]?.allocationEnded()
            }
            eventObserver?(e)
        }
    }

    // MARK: Relay sockets (RelaySocketProvider)

    public func openRelay(_ request: RelayRequest) -> RelayOpenResult {
        assertOnQueue()
        let t = Clock.monotonicMilliseconds()
        guard let ip = configuration.relayIP(for: request.family) else { return .failed(code: 440) }
        for _ in 0..<32 {
            var port: UInt16
            var token: UInt64? = nil
            var heldSocket: Int32 = -1
            if let reserved = request.reservationToken {
                guard let (family, p, held) = ports.redeem(reserved, now: t), family == request.family else {
                    return .failed(code: 508)
                }
                port = p
                heldSocket = held
            } else {
                guard
                    let (p, newToken) = ports.take(
                        request.family, even: request.evenPort, reserveNext: request.reserveNextPort, now: t)
                else { return .failed(code: 508) }
                port = p
                token = newToken
            }
            let address = TransportAddress(ip: ip, port: port)
            if request.transport == 6 {
                do {
                    let fd = try openTCPRelay(address, slot: request.slot)
                    return .opened(RelayEndpoint(handle: fd, address: address), reservationToken: nil)
                } catch {
                    continue
                }
            }
            do {
                let fd: Int32
                if heldSocket >= 0 {
                    fd = heldSocket
                } else {
                    fd = try Sockets.open(request.family, type: Int32(SOCK_DGRAM.rawValue))
                    do {
                        try Sockets.bind(fd, address)
                    } catch {
                        close(fd)
                        if request.reservationToken != nil { return .failed(code: 508) }
                        if let token { ports.cancel(token) }
                        continue  // taken by another process: try another port (this one stays marked used)
                    }
                }
                if let token {
                    // Bind the reserved port now, so that nobody else can take it before the
                    // client redeems the token; if somebody has it already, pick another pair.
                    guard let reservedSocket = bindReservedPort(TransportAddress(ip: ip, port: port + 1)) else {
                        close(fd)
                        ports.cancel(token)
                        continue
                    }
                    ports.attach(socket: reservedSocket, to: token)
                }
                Sockets.tuneDatagramSocket(fd, bufferBytes: configuration.socketBufferBytes)
                traverse_enable_recverr(fd, Sockets.family(request.family))
                if configuration.receiveOffload { traverse_enable_udp_gro(fd) }
                if request.dontFragment { traverse_set_dont_fragment(fd, Sockets.family(request.family), 1) }
                let endpoint = RelayEndpoint(handle: fd, address: address)
                relaySockets[fd] = RelaySocket(source: nil, endpoint: endpoint, slot: request.slot)
                traverse_epoll_add(poller, fd, Self.token(fd: fd, slot: request.slot))
                return .opened(endpoint, reservationToken: token)
            } catch {
                logger.error("relay socket failed", metadata: ["error": "\(error)"])
                ports.release(request.family, port)
                return .failed(code: 508)
            }
        }
        return .failed(code: 508)
    }

    /// A bound UDP socket on `address` held for an EVEN-PORT reservation, or nil if the port is taken.
    func bindReservedPort(_ address: TransportAddress) -> Int32? {
        guard let fd = try? Sockets.open(address.family, type: Int32(SOCK_DGRAM.rawValue)) else { return nil }
        do {
            try Sockets.bind(fd, address)
            return fd
        } catch {
            close(fd)
            return nil
        }
    }

    public func startConnect(slot: Int, relay: RelayEndpoint, peer: TransportAddress, transactionID: STUNTransactionID)
        -> Int?
    {
        beginConnect(slot: slot, relay: relay, peer: peer, transactionID: transactionID)
    }

    public func bindConnection(id: UInt32, username: String, dataConnection: FiveTuple) -> Bool {
        bindPeerConnection(id: id, username: username, dataConnection: dataConnection)
    }

    public func closeRelay(_ endpoint: RelayEndpoint) {
        assertOnQueue()
        guard let socket = relaySockets.removeValue(forKey: endpoint.handle) else { return }
        if let source = socket.source {
            source.cancel()
        } else {
            traverse_epoll_remove(poller, endpoint.handle)
            close(endpoint.handle)
        }
        if let slot = relaySlots.removeValue(forKey: endpoint.handle) {
            closeLinks(slot: slot, relay: endpoint.address)
        }
        kernelDropsClosed += kernelDropsByFD.removeValue(forKey: endpoint.handle) ?? 0
        ports.release(endpoint.address.family, endpoint.address.port)
    }

    /// Serves every UDP socket the epoll set reports readable; then, while datagrams keep coming
    /// within `pollLingerMicroseconds` of each other, keeps serving them for up to
    /// `pollLingerBudgetMilliseconds` before returning the queue to Dispatch.
    func drainReadySockets() {
        assertOnQueue()
        let lingerNs = Int64(configuration.pollLingerMicroseconds) * 1000
        let budgetMs = configuration.pollLingerBudgetMilliseconds
        let started = lingerNs > 0 ? Clock.monotonicMilliseconds() : 0
        var n = Int(traverse_epoll_ready(poller, readyTokens, Int32(Self.pollBatch)))
        var fullRounds = 0
        while true {
            if n > 0 { serveReady(n) }
            if n == Self.pollBatch && fullRounds < 8 {
                fullRounds += 1
                n = Int(traverse_epoll_ready(poller, readyTokens, Int32(Self.pollBatch)))
                continue
            }
            if doorbellRang {
                // Work was put on the queue from another thread: let it run now.
                doorbellRang = false
                return
            }
            if lingerNs == 0 || Clock.monotonicMilliseconds() &- started >= budgetMs { return }
            n = Int(traverse_epoll_wait(poller, readyTokens, Int32(Self.pollBatch), lingerNs))
            if n <= 0 { return }
            fullRounds = 0
        }
    }

    @inline(__always) func serveReady(_ n: Int) {
        for i in 0..<n {
            let token = readyTokens[i]
            if token == Self.doorbellToken {
                traverse_doorbell_clear(doorbell)
                doorbellRang = true
            } else if token & Self.listenerToken != 0 {
                let index = Int(token & 0xFFFF_FFFF)
                if index < listeners.count && listeners[index].fd >= 0 { drainListener(listeners[index]) }
            } else {
                let fd = Int32(bitPattern: UInt32(truncatingIfNeeded: token))
                let slot = Int(token >> 32)
                // The socket may have closed earlier in this batch (and its number been reused).
                if let socket = relaySockets[fd], socket.slot == slot, socket.source == nil {
                    drainRelay(fd: fd, slot: slot)
                }
            }
        }
    }

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
            noteKernelDrops(fd, n, rx)
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

    /// Relays the datagrams UDP GRO merged into one message (a peer's burst): each is framed
    /// with a header of its own in the send batch's header slots, the payloads stay in place.
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

    /// Frames one datagram of a merged burst to its client without touching the bytes around it.
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
            let headerLength: Int
            var padding = 0
            if case .channel(let number, _) = route {
                ChannelData.writeHeader(channel: number, payloadLength: length, to: header)
                headerLength = ChannelData.headerSize
            } else {
                headerLength = writeDataIndicationHeader(to: header, peer: peer, payloadLength: length)
                padding = (length + 3) & ~3 - length
            }
            tx.enqueue(
                fd: fd, to: ft.client, headerLength: headerLength, payload: payload, length: length, padding: padding)
        } else if let writer = streamWriters[ft] {
            // Streams take contiguous bytes: frame a copy (GRO bursts to TCP/TLS/DTLS clients
            // only); `frame` writes the header into the scratch's headroom and the padding.
            let start = streamScratch + Self.headroom
            start.copyMemory(from: payload, byteCount: length)
            let framed = frame(route, payload: start, length: length, peer: peer, transport: ft.transport)
            writer.write(UnsafeRawBufferPointer(start: framed.start, count: framed.length))
        }
    }

    /// Wraps a peer's datagram in ChannelData or a Data indication, in the headroom in front of
    /// it, and queues it to the client.
    @inline(__always)
    func forwardToClient(
        payload: UnsafeMutableRawPointer, length: Int, from peer: TransportAddress, slot: Int, _ t: CoreTime
    ) {
        let route = core.routePeerData(slot: slot, from: peer, length: length, now: t)
        switch route {
        case .drop:
            return
        case .channel(_, let ft), .indication(let ft):
            let framed = frame(route, payload: payload, length: length, peer: peer, transport: ft.transport)
            send(UnsafeRawPointer(framed.start), framed.length, to: ft)
        }
    }

    /// Writes the ChannelData or Data-indication header of `route` in the headroom in front of
    /// `payload` and the padding after it (the 4 bytes after the payload must be writable);
    /// returns the framed message.
    @inline(__always)
    func frame(
        _ route: PeerRoute, payload: UnsafeMutableRawPointer, length: Int, peer: TransportAddress,
        transport: TransportProtocol
    ) -> (start: UnsafeMutableRawPointer, length: Int) {
        switch route {
        case .drop:
            return (payload, 0)
        case .channel(let number, _):
            let start = payload - ChannelData.headerSize
            ChannelData.writeHeader(channel: number, payloadLength: length, to: start)
            var total = ChannelData.headerSize + length
            if transport == .tcp || transport == .tls {
                let padded = ChannelData.streamFrameSize(payloadLength: length)
                for j in total..<padded { start.storeBytes(of: 0, toByteOffset: j, as: UInt8.self) }
                total = padded
            }
            return (start, total)
        case .indication:
            let headerLength = Self.dataIndicationHeaderLength(peer)
            let start = payload - headerLength
            let padded = (length + 3) & ~3
            for j in length..<padded { payload.storeBytes(of: 0, toByteOffset: j, as: UInt8.self) }
            _ = writeDataIndicationHeader(to: start, peer: peer, payloadLength: length)
            return (start, headerLength + padded)
        }
    }

    /// The bytes of a Data indication in front of its payload: header, XOR-PEER-ADDRESS, DATA's header.
    @inline(__always) static func dataIndicationHeaderLength(_ peer: TransportAddress) -> Int {
        stunHeaderSize + 4 + (peer.family == .ipv4 ? 8 : 20) + 4
    }

    /// Writes a Data indication's header (with a fresh transaction ID) for a payload of
    /// `payloadLength` bytes from `peer`; returns its length. The padding is the caller's.
    @inline(__always)
    func writeDataIndicationHeader(to start: UnsafeMutableRawPointer, peer: TransportAddress, payloadLength length: Int)
        -> Int
    {
        let addressLength = peer.family == .ipv4 ? 8 : 20
        let headerLength = Self.dataIndicationHeaderLength(peer)
        let padded = (length + 3) & ~3
        random ^= random << 13
        random ^= random >> 7
        random ^= random << 17
        let tid = STUNTransactionID(high: random, low: UInt32(truncatingIfNeeded: random >> 17))
        let type = STUNMessageType(method: .data, class: .indication)
        start.storeBytes(of: type.wireValue.bigEndian, as: UInt16.self)
        start.storeBytes(of: UInt16(headerLength - stunHeaderSize + padded).bigEndian, toByteOffset: 2, as: UInt16.self)
        start.storeBytes(of: stunMagicCookie.bigEndian, toByteOffset: 4, as: UInt32.self)
        start.storeBytes(of: tid.high.bigEndian, toByteOffset: 8, as: UInt64.self)
        start.storeBytes(of: tid.low.bigEndian, toByteOffset: 16, as: UInt32.self)
        start.storeBytes(of: STUNAttributeType.xorPeerAddress.rawValue.bigEndian, toByteOffset: 20, as: UInt16.self)
        start.storeBytes(of: UInt16(addressLength).bigEndian, toByteOffset: 22, as: UInt16.self)
        _ = AddressCoding.encode(peer, xor: true, transactionID: tid, into: start + 24)
        let dataHeader = 24 + addressLength
        start.storeBytes(of: STUNAttributeType.data.rawValue.bigEndian, toByteOffset: dataHeader, as: UInt16.self)
        start.storeBytes(of: UInt16(length).bigEndian, toByteOffset: dataHeader + 2, as: UInt16.self)
        return headerLength
    }

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
            let tid = STUNTransactionID.random()
            guard
                var w = try? STUNMessageWriter(
                    into: buffer, type: STUNMessageType(method: .data, class: .indication), transactionID: tid),
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
            if ft.transport == .udp, let lfd = listenerFD(for: ft.server) {
                tx.enqueueReply(fd: lfd, to: ft.client, length: w.count)
            } else {
                streamWriters[ft]?.write(w.message)
            }
        }
        tx.flush()
    }
}

/// Where packets for a stream-connected client (TCP/TLS) go. Implemented by the stream layer;
/// called on the shard's queue.
public protocol StreamWriter: AnyObject {
    /// Queues bytes to the client (framing already applied).
    func write(_ bytes: UnsafeRawBufferPointer)
    /// The allocation of this connection ended.
    func allocationEnded()
}

// The owner of one shard: its state, its start, stop and sweep, and its end.
//
// A shard is a serial queue, its own SO_REUSEPORT listening sockets, the relay sockets of the
// allocations made on it, and the TURN core that owns those allocations. The kernel spreads
// clients over the shards' listening sockets by hashing the 5-tuple, so a client's packets always
// reach the same shard; peer packets arrive on relay sockets the same shard owns. Everything an
// allocation touches stays on one queue: no locks on the packet path.
//
// Invariants:
// - every mutable property is confined to `queue`; entry points from Dispatch sources and from
//   other threads check it (`assertOnQueue`, in every build) or only enqueue (`post`);
// - the core holds no reference to the shard (it is given a `RelaySocketProvider` per call and
//   returns effects), and nothing the shard owns refers back to it strongly, so a stopped shard
//   is freed with its server; `stop()` closes every descriptor it owns.
//
// The shard's other jobs live beside this file, one each: the poll loop (`Shard+Poll`), client
// ingress (`Shard+Ingress`), relay sockets and ports (`Shard+RelaySockets`), peer egress and
// ICMP (`Shard+PeerEgress`, framing in `PeerFraming`), the core's effects (`Shard+Effects`),
// stream clients (`Shard+Streams`), DTLS (`DTLSSession`), RFC 6062 (`TCPRelay`), the fleet quota
// (`Shard+FleetQuota`).
import CTraverseSystem
import Dispatch
import Logging
import STUNCodec
import TURNCore
import TraverseSystem

#if canImport(Glibc)
    import Glibc
#endif

/// One shard of the data path (see the top of this file). `@unchecked Sendable`: all mutable
/// state is confined to `queue`; other threads only enqueue work on it (`post`, `onQueue`).
final class Shard: @unchecked Sendable {
    struct Listener {
        let fd: Int32
        let address: TransportAddress
        /// Datagrams on this socket are DTLS (RFC 7350), not plain STUN/ChannelData.
        let dtls: Bool
    }

    let index: Int
    let queue: DispatchQueue
    let configuration: RelayConfiguration
    let core: TURNServerCore
    var logger: Logger

    // Sockets and the poll loop.
    let poll = PollSet()
    var pollSource: (any DispatchSourceRead)?
    var doorbellRang = false
    var listeners: [Listener] = []
    var sweepTimer: (any DispatchSourceTimer)?
    var stopped = false

    // Relay sockets (`Shard+RelaySockets`).
    let ports: PortPool
    var relaySockets = RelaySocketTable()

    // Datagram batches and framing.
    let rx: ReceiveBatch
    /// Receive buffers for relay sockets: 64 KiB each when UDP GRO may merge a peer's burst into
    /// one message, otherwise the listeners' `rx`.
    let relayRx: ReceiveBatch
    /// The largest datagram relayed either way (what a listener's receive buffer holds).
    let maxDatagram: Int
    let tx: SendBatch
    var framer = PeerFramer()
    /// Contiguous room for one framed segment to a stream client (header, payload, padding), and
    /// for one read from an RFC 6062 peer connection (`PeerLink`): 16 KiB after the headroom.
    let streamScratch: UnsafeMutableRawPointer
    /// UDP GRO messages received on relay sockets, and the datagrams they held.
    var mergedReceives: UInt64 = 0
    var mergedDatagrams: UInt64 = 0

    // Stream clients (`Shard+Streams`) and DTLS sessions (`DTLSSession`).
    /// Where answers and peer data for a TCP, TLS or DTLS client go, by 5-tuple.
    var streamWriters: [FiveTuple: any StreamWriter] = [:]
    var streamListeners: [StreamListener] = []
    var connections: [Int32: StreamConnection] = [:]
    var admission: SourceAdmission
    var dtlsSessions: [FiveTuple: DTLSSession] = [:]
    /// Stateless cookie exchange, DTLS caps and the buffers DTLS sessions share.
    let dtls: DTLSGate
    let tlsContexts: TLSContextStore?
    var streamCounters = StreamCounters()
    /// Sessions and connections closed since the allocator last gave free memory back.
    var closedSinceTrim = 0

    // RFC 6062 (`TCPRelay`).
    /// Peer connections held by this shard, by CONNECTION-ID, and those still connecting.
    var links: [UInt32: PeerLink] = [:]
    var connecting: [PeerLink] = []
    let connectionRegistry: ConnectionRegistry
    /// The other shards of the server, by index (for RFC 6062 hand-overs).
    let directory: ShardDirectory

    /// The kernel fast path's copy of this shard's bindings (`FastPathMirror`), when the XDP
    /// program is loaded.
    var fastPath: FastPathMirror?
    var sweepsSinceHarvest = 0
    /// Sweeps (seconds) between two harvests of the fast path's counters by the sweep.
    static let sweepsPerHarvest = 5

    /// Called with each allocation event after it is logged (metrics, the fleet, tests).
    var eventObserver: ((AllocationEvent) -> Void)?

    /// The header room kept in front of received payloads: enough for a Data indication with an
    /// IPv6 XOR-PEER-ADDRESS (20 + 24 + 4 bytes) rounded up.
    static let headroom = 64

    init(
        index: Int, configuration: RelayConfiguration, coreConfiguration: CoreConfiguration,
        shared: SharedServerState, ports: PortPool, budget: ConnectionBudget, dtls: DTLSGate, tls: TLSContextStore?,
        registry: ConnectionRegistry, directory: ShardDirectory, nonceSecret: [UInt8], logger: Logger
    ) {
        self.index = index
        self.connectionRegistry = registry
        self.directory = directory
        self.admission = SourceAdmission(maxPerSource: configuration.maxConnectionsPerSource, budget: budget)
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
        streamScratch = .allocate(byteCount: Self.headroom + (16 << 10) + 4, alignment: 16)
        tx = SendBatch(capacity: configuration.batchSize * 2, segmentationOffload: configuration.segmentationOffload)
        core = TURNServerCore(configuration: coreConfiguration, shared: shared, nonceSecret: nonceSecret)
    }

    deinit {
        // A shard released without `stop()` (its server failed to bind everything, or was
        // dropped): close what it holds. Dispatch sources never activated must be activated
        // once cancelled, or releasing them traps.
        if !stopped {
            sweepTimer?.cancel()
            for l in listeners where l.fd >= 0 { close(l.fd) }
            for l in streamListeners {
                l.source.cancel()
                if pollSource == nil { l.source.activate() }
            }
            relaySockets.closeAll(poll: poll, ports: ports)
            if let pollSource { pollSource.cancel() } else { poll.close() }
        }
        streamScratch.deallocate()
    }

    /// Checks that the caller runs on the shard's queue. In every build: it is one comparison
    /// per entry (a batch, a callback), never per packet.
    @inline(__always) func assertOnQueue() {
        dispatchPrecondition(condition: .onQueue(queue))
    }

    /// Runs `work` on the shard's queue soon, waking the shard if it is lingering on its sockets.
    /// For other threads (the fleet's verdicts, the operations layer).
    func post(_ work: @escaping @Sendable () -> Void) {
        queue.async(execute: work)
        poll.ring()
    }

    /// Runs `work` on the shard's queue and waits for its result, waking a lingering shard first.
    /// For threads outside Swift concurrency only (start, stop, takeover).
    func onQueue<T>(_ work: () -> T) -> T {
        poll.ring()
        return queue.sync(execute: work)
    }

    /// Runs `work` on the shard's queue and resumes the caller with its result, without blocking
    /// a thread: for Swift-concurrency tasks (the sampler, `/metrics`, the console). `ring` wakes
    /// a shard lingering in its poll loop first (as `onQueue`).
    func snapshot<T: Sendable>(ring: Bool = false, _ work: @escaping @Sendable () -> T) async -> T {
        if ring { poll.ring() }
        return await withCheckedContinuation { continuation in
            queue.async { continuation.resume(returning: work()) }
        }
    }

    @inline(__always) func now() -> CoreTime {
        CoreTime(milliseconds: Clock.monotonicMilliseconds(), unixSeconds: Clock.unixSeconds())
    }

    // MARK: Lifecycle

    /// Adds a UDP listening socket (already bound with SO_REUSEPORT) to this shard.
    func addListener(fd: Int32, address: TransportAddress, dtls: Bool = false) {
        listeners.append(Listener(fd: fd, address: address, dtls: dtls))
        poll.add(fd, .listener(index: listeners.count - 1))
    }

    /// Starts watching the sockets and the sweep timer. On the queue.
    func start() {
        assertOnQueue()
        let source = DispatchSource.makeReadSource(fileDescriptor: poll.descriptor, queue: queue)
        source.setEventHandler { [weak self] in self?.drainReadySockets() }
        let poll = self.poll
        source.setCancelHandler { poll.close() }
        source.activate()
        pollSource = source
        for l in streamListeners { l.source.activate() }
        let timer = DispatchSource.makeTimerSource(queue: queue)
        timer.schedule(deadline: .now() + 1, repeating: 1.0, leeway: .milliseconds(100))
        timer.setEventHandler { [weak self] in self?.sweep() }
        timer.activate()
        sweepTimer = timer
    }

    /// Ends every allocation and closes every descriptor the shard owns: listeners, relay
    /// sockets, stream connections, DTLS sessions, RFC 6062 links, the poll set. On the queue;
    /// once.
    func stop() {
        assertOnQueue()
        if stopped { return }
        stopped = true
        core.closeAll(reason: .shutdown, now: now())
        drainEffects()
        sweepTimer?.cancel()
        sweepTimer = nil
        for l in listeners where l.fd >= 0 { close(l.fd) }
        listeners.removeAll()
        for l in streamListeners {
            // A source never activated must be activated before it is released (Dispatch).
            l.source.cancel()
            if pollSource == nil { l.source.activate() }
        }
        streamListeners.removeAll()
        for c in Array(connections.values) { c.close(.shutdown) }
        for d in Array(dtlsSessions.values) { d.close() }
        for link in Array(links.values) { dropLink(link) }
        for link in connecting { link.stopWatching(keepOpen: false) }
        connecting.removeAll()
        relaySockets.closeAll(poll: poll, ports: ports)
        ports.releaseHeldSockets()
        if let pollSource {
            pollSource.cancel()  // its cancel handler closes the poll set
            self.pollSource = nil
        } else {
            poll.close()
        }
    }

    /// Reaps what expired (allocations, permissions, channels, RFC 6062 links, idle streams),
    /// applies policy changes, and gives freed memory back. Once a second.
    func sweep() {
        assertOnQueue()
        let t = now()
        // The fast path's traffic every few sweeps (each binding costs two map reads); scrapes,
        // removals and ended allocations take theirs at once.
        sweepsSinceHarvest += 1
        if sweepsSinceHarvest >= Self.sweepsPerHarvest {
            sweepsSinceHarvest = 0
            fastPath?.harvest(core)
        }
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
        drainEffects()
        // Give the memory of ended sessions and connections back to the system (glibc keeps
        // freed chunks in its arenas otherwise), at most once a second per shard.
        if closedSinceTrim >= 16 {
            closedSinceTrim = 0
            _ = traverse_malloc_trim()
        }
    }

    // MARK: Snapshots (read on the queue)

    /// UDP GSO messages this shard sent and GRO messages it received, with their datagrams.
    var offload: OffloadCounters {
        OffloadCounters(
            segmentedSends: tx.segmentedSends, segmentedDatagrams: tx.segmentedDatagrams,
            mergedReceives: mergedReceives, mergedDatagrams: mergedDatagrams)
    }

    /// Kernel drops on this shard's sockets so far.
    var kernelDrops: Int64 { relaySockets.kernelDrops }
}

/// The shards of one server by index, for a shard that must reach another (RFC 6062 hand-overs).
/// Holds them weakly: the server owns its shards, and no shard keeps another alive.
///
/// `@unchecked Sendable`: `shards` is written once, before any shard starts, and only read after.
final class ShardDirectory: @unchecked Sendable {
    private struct Entry {
        weak var shard: Shard?
    }
    private var entries: [Entry] = []

    /// Lists the server's shards (once, before they start).
    func set(_ shards: [Shard]) { entries = shards.map { Entry(shard: $0) } }

    /// The shard at `index`, unless it is gone.
    func shard(_ index: Int) -> Shard? { index < entries.count ? entries[index].shard : nil }
}

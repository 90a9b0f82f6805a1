import Dispatch
public import Logging
public import STUNCodec
import Synchronization
public import TURNCore
public import TraverseSystem

#if canImport(Glibc)
    import Glibc
#endif

/// The whole data path: N shards, each with its own SO_REUSEPORT socket on every listening
/// address, sharing one relay port range and one `SharedServerState`.
///
/// `@unchecked Sendable`: `shards` and `boundUDP` are written once in `init` and only read
/// afterwards; each shard's mutable state is confined to its own queue.
public final class RelayServer: @unchecked Sendable {
    public let configuration: RelayConfiguration
    public let coreConfiguration: CoreConfiguration
    public let shared: SharedServerState
    private(set) var shards: [Shard] = []
    /// The UDP addresses actually bound (port 0 resolved).
    public private(set) var boundUDP: [TransportAddress] = []
    /// The TCP addresses actually bound.
    public private(set) var boundTCP: [TransportAddress] = []
    /// The TLS addresses actually bound.
    public private(set) var boundTLS: [TransportAddress] = []
    /// The DTLS (UDP) addresses actually bound.
    public private(set) var boundDTLS: [TransportAddress] = []
    /// The certificate store in force, when TLS is served.
    public let tls: TLSContextStore?
    let ports: PortPool
    let logger: Logger
    /// Observers of allocation events (`observeAllocations`).
    let observers = Mutex<[@Sendable (AllocationEvent) -> Void]>([])
    /// Every listening socket, for handing listeners over to another instance (`Takeover.swift`).
    let listenerRecord = ListenerRecord()
    /// UDP and DTLS addresses held by the instance being taken over, bound once it releases them.
    let deferredListeners = DeferredListeners()
    /// The kernel fast path's program, when configured and loaded (`RelayServer+FastPath`).
    public private(set) var fastPathProgram: XDPProgram?
    /// Why the configured fast path could not start.
    public private(set) var fastPathFailure: FastPathFailure?

    /// Binds every listening socket; `start()` then begins serving. `nonceSecret` is shared by
    /// every node of a fleet (so that any node accepts any node's nonce); by default a random one.
    public init(
        configuration: RelayConfiguration, coreConfiguration: CoreConfiguration, shared: SharedServerState,
        tls: TLSContextStore? = nil, nonceSecret: [UInt8]? = nil, logger: Logger
    ) throws(SocketError) {
        self.tls = tls
        // A peer that resets a TLS connection would otherwise kill the process: OpenSSL writes
        // with write(2), which raises SIGPIPE (our own sends pass MSG_NOSIGNAL).
        signal(SIGPIPE, SIG_IGN)
        self.configuration = configuration
        var core = coreConfiguration
        core.relayFamilies = Set([AddressFamily.ipv4, .ipv6].filter { configuration.relayIP(for: $0) != nil })
        self.coreConfiguration = core
        self.shared = shared
        self.logger = logger
        self.ports = PortPool(range: configuration.portRange)
        let count = configuration.shards > 0 ? configuration.shards : max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        let budget = ConnectionBudget(maxTotal: configuration.maxConnections)
        // DTLS has budgets of its own: a flood of one transport never locks out the other.
        let dtlsSessions = ConnectionBudget(maxTotal: configuration.dtls.maxSessions)
        let dtlsHandshakes = ConnectionBudget(maxTotal: configuration.dtls.maxHandshakes)
        let registry = ConnectionRegistry()
        let directory = ShardDirectory()
        // One nonce secret for all shards: a client's TCP data connections and retries may land
        // on another shard than the one that issued its nonce.
        let nonceSecret = nonceSecret ?? STUNDigest.randomBytes(32)
        for i in 0..<count {
            shards.append(
                Shard(
                    index: i, configuration: configuration, coreConfiguration: core, shared: shared, ports: ports,
                    budget: budget,
                    dtls: DTLSGate(
                        limits: configuration.dtls, sessionBudget: dtlsSessions, handshakeBudget: dtlsHandshakes),
                    tls: tls, registry: registry, directory: directory, nonceSecret: nonceSecret, logger: logger))
        }
        directory.set(shards)
        for requested in configuration.listen {
            boundUDP.append(try bindDatagram(requested, dtls: false))
        }
        for requested in configuration.listen {
            boundTCP.append(try bindStream(requested, tls: false))
        }
        if tls != nil {
            for requested in configuration.tlsListen {
                boundTLS.append(try bindStream(requested, tls: true))
                boundDTLS.append(try bindDatagram(requested, dtls: true))
            }
        }
        (fastPathProgram, fastPathFailure) = Self.startFastPath(configuration, logger: logger)
    }

    /// Binds a UDP socket on every shard (SO_REUSEPORT); returns the bound address. Taking over,
    /// an address another process holds is bound later instead (`DeferredListeners`).
    func bindDatagram(_ requested: TransportAddress, dtls: Bool) throws(SocketError) -> TransportAddress {
        if configuration.takeover && ListenerOwnership.isHeld(requested, .udp) {
            deferredListeners.add(requested, dtls: dtls)
            return requested
        }
        var address = requested
        for shard in shards {
            let fd = try Sockets.open(requested.family, type: Int32(SOCK_DGRAM.rawValue))
            Sockets.setInt(fd, SOL_SOCKET, SO_REUSEPORT, 1)
            do {
                try Sockets.bind(fd, address)
            } catch {
                close(fd)
                throw error
            }
            if address.port == 0, let bound = Sockets.localAddress(fd) { address = bound }
            listenerRecord.note(fd: fd, address: address, transport: dtls ? .dtls : .udp)
            Sockets.tuneDatagramSocket(fd, bufferBytes: configuration.socketBufferBytes)
            shard.addListener(fd: fd, address: address, dtls: dtls)
        }
        return address
    }

    /// Binds a TCP listening socket on every shard (SO_REUSEPORT); returns the bound address.
    func bindStream(_ requested: TransportAddress, tls: Bool) throws(SocketError) -> TransportAddress {
        var address = requested
        for shard in shards {
            let fd = try Sockets.listeningStream(address, backlog: 1024)
            if address.port == 0, let bound = Sockets.localAddress(fd) { address = bound }
            listenerRecord.note(fd: fd, address: address, transport: tls ? .tls : .tcp)
            shard.addStreamListener(fd: fd, address: address, tls: tls)
        }
        return address
    }

    /// Watches the certificate files: a change (a renewal writing new files) reloads them, so
    /// new handshakes get the new certificate while established sessions continue.
    private let certificateWatch = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "traverse.tls-watch"))

    /// Starts every shard.
    public func start() {
        let program = fastPathProgram
        for shard in shards {
            shard.onQueue {
                if let program { shard.fastPath = FastPathMirror(program: program) }
                shard.start()
            }
        }
        if let tls {
            let logger = self.logger
            certificateWatch.schedule(deadline: .now() + 2, repeating: 2.0, leeway: .milliseconds(500))
            certificateWatch.setEventHandler {
                guard tls.filesChanged() else { return }
                do {
                    try tls.reload()
                    logger.notice("tls certificate reloaded", metadata: ["sha256": "\(tls.fingerprint)"])
                } catch {
                    logger.error(
                        "tls certificate reload failed; the previous one stays", metadata: ["reason": "\(error)"])
                }
            }
        }
        certificateWatch.activate()
        startDeferredListeners()
        logger.info(
            "serving",
            metadata: [
                "udp": "\(boundUDP.map(\.description).joined(separator: ","))",
                "tcp": "\(boundTCP.map(\.description).joined(separator: ","))",
                "tls": "\(boundTLS.map(\.description).joined(separator: ","))",
                "dtls": "\(boundDTLS.map(\.description).joined(separator: ","))", "shards": "\(shards.count)",
                "relay_ports": "\(configuration.portRange.lowerBound)-\(configuration.portRange.upperBound)",
            ])
    }

    /// Stops every shard: sockets closed, allocations ended.
    public func stop() {
        certificateWatch.cancel()
        deferredListeners.cancel()
        // The program is detached once every shard has ended its allocations (and removed their
        // entries); until then it keeps relaying what the core still allows.
        let group = DispatchGroup()
        for shard in shards {
            group.enter()
            shard.onQueue {
                shard.stop()
                group.leave()
            }
        }
        if let program = fastPathProgram {
            group.notify(queue: .global()) { program.close() }
        }
    }

    /// Counters summed over the shards, each read on its own queue without blocking the caller.
    public func counters() async -> CoreCounters {
        var total = CoreCounters()
        for shard in shards {
            total.add(
                await shard.snapshot {
                    shard.fastPath?.harvest(shard.core)
                    return shard.core.counters
                })
        }
        return total
    }

    /// Stream counters summed over the shards.
    public func streamCounters() async -> StreamCounters {
        var total = StreamCounters()
        for shard in shards { total.add(await shard.snapshot { shard.streamCounters }) }
        return total
    }

    /// DTLS admission counters summed over the shards.
    public func dtlsCounters() async -> DTLSCounters {
        var total = DTLSCounters()
        for shard in shards { total.add(await shard.snapshot { shard.dtls.counters }) }
        return total
    }

    /// Allocations held across all shards.
    public var allocationCount: Int { shared.allocationCount }

    /// UDP GSO and GRO counters of all shards.
    public func offloadCounters() async -> OffloadCounters {
        var total = OffloadCounters()
        for shard in shards { total = total + (await shard.snapshot { shard.offload }) }
        return total
    }

    /// Kernel receive-queue drops on all sockets.
    public func kernelDrops() async -> Int64 {
        var total: Int64 = 0
        for shard in shards { total += await shard.snapshot { shard.kernelDrops } }
        return total
    }

    /// Relay ports still free for `family`.
    public func freeRelayPorts(_ family: AddressFamily) -> Int { ports.freeCount(family) }

    /// Adds an observer of allocation events on every shard (metrics, the fleet's usage
    /// records, tests); every observer registered so far is called, in order, on the shard's
    /// queue.
    public func observeAllocations(_ observer: @escaping @Sendable (AllocationEvent) -> Void) {
        let all = observers.withLock { list in
            list.append(observer)
            return list
        }
        let fanOut: @Sendable (AllocationEvent) -> Void = { event in for o in all { o(event) } }
        for shard in shards { shard.onQueue { shard.eventObserver = fanOut } }
    }
}

// Relay sockets: the shard opens them for the core (`RelaySocketProvider`), owns them in a
// `RelaySocketTable`, and closes them when the core says so (`CoreEffect.closeRelay`).
//
// Invariants: a relay socket is in the table from the moment it is bound until it is closed, and
// its port is taken from the shared `PortPool` for exactly that time; a UDP relay socket is in the
// poll set under `PollToken.relay(fd, slot)` while in the table; a TCP relay (RFC 6062) is a
// listening socket watched by its own Dispatch source. On the shard's queue.
import CTraverseSystem
import Dispatch
import STUNCodec
import TURNCore
import TraverseSystem

#if canImport(Glibc)
    import Glibc
#endif

/// The relay sockets of one shard, by descriptor, and the kernel drops seen on its sockets.
struct RelaySocketTable {
    struct Entry {
        /// The Dispatch source of a TCP relay's listening socket; nil for UDP relay sockets,
        /// which the shard's poll set watches.
        let source: (any DispatchSourceRead)?
        let endpoint: RelayEndpoint
        let slot: Int
    }
    private(set) var entries: [Int32: Entry] = [:]
    /// Kernel drops seen on each socket (cumulative, from SO_RXQ_OVFL), and on sockets closed.
    private var dropsByFD: [Int32: Int64] = [:]
    private var dropsClosed: Int64 = 0

    var count: Int { entries.count }

    /// Whether `fd` is a UDP relay socket of `slot` (and not a number reused since).
    @inline(__always) func isUDPRelay(_ fd: Int32, slot: Int) -> Bool {
        guard let e = entries[fd] else { return false }
        return e.slot == slot && e.source == nil
    }

    subscript(fd: Int32) -> Entry? { entries[fd] }

    mutating func insert(_ entry: Entry) { entries[entry.endpoint.handle] = entry }

    /// Takes the socket out of the table; the caller closes it.
    mutating func remove(_ fd: Int32) -> Entry? {
        dropsClosed += dropsByFD.removeValue(forKey: fd) ?? 0
        return entries.removeValue(forKey: fd)
    }

    /// Records the kernel's drop count for `fd`, reported with the last of the `n` messages in `batch`.
    mutating func noteKernelDrops(_ fd: Int32, _ n: Int, _ batch: ReceiveBatch) {
        let d = batch.kernelDrops(n - 1)
        if d >= 0 { dropsByFD[fd] = d }
    }

    /// A socket outside the table (a listener) closed: its drops stay counted.
    mutating func forgetKernelDrops(_ fd: Int32) {
        dropsClosed += dropsByFD.removeValue(forKey: fd) ?? 0
    }

    /// Kernel drops on the shard's sockets so far.
    var kernelDrops: Int64 { dropsByFD.values.reduce(dropsClosed, +) }

    /// Closes every socket left (the shard stops) and gives their ports back.
    mutating func closeAll(poll: PollSet, ports: PortPool) {
        for (fd, e) in entries {
            if let source = e.source {
                source.cancel()
            } else {
                poll.remove(fd)
                close(fd)
            }
            ports.release(e.endpoint.address.family, e.endpoint.address.port)
        }
        entries.removeAll()
    }
}

extension Shard: RelaySocketProvider {
    func openRelay(_ request: RelayRequest) -> RelayOpenResult {
        assertOnQueue()
        let t = Clock.monotonicMilliseconds()
        guard let ip = configuration.relayIP(for: request.family) else {
            return .failed(code: .addressFamilyNotSupported)
        }
        for _ in 0..<32 {
            var port: UInt16
            var token: UInt64? = nil
            var heldSocket: Int32 = -1
            if let reserved = request.reservationToken {
                guard let (family, p, held) = ports.redeem(reserved, now: t), family == request.family else {
                    return .failed(code: .insufficientCapacity)
                }
                port = p
                heldSocket = held
            } else {
                guard
                    let (p, newToken) = ports.take(
                        request.family, even: request.evenPort, reserveNext: request.reserveNextPort, now: t)
                else { return .failed(code: .insufficientCapacity) }
                port = p
                token = newToken
            }
            let address = TransportAddress(ip: ip, port: port)
            if request.transport == .tcp {
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
                        if request.reservationToken != nil { return .failed(code: .insufficientCapacity) }
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
                relaySockets.insert(.init(source: nil, endpoint: endpoint, slot: request.slot))
                poll.add(fd, .relay(fd: fd, slot: request.slot))
                return .opened(endpoint, reservationToken: token)
            } catch {
                logger.error("relay socket failed", metadata: ["error": "\(error)"])
                ports.release(request.family, port)
                return .failed(code: .insufficientCapacity)
            }
        }
        return .failed(code: .insufficientCapacity)
    }

    func startConnect(slot: Int, relay: RelayEndpoint, peer: TransportAddress, transactionID: STUNTransactionID)
        -> STUNErrorCode?
    {
        beginConnect(slot: slot, relay: relay, peer: peer, transactionID: transactionID)
    }

    func bindConnection(id: UInt32, username: String, dataConnection: FiveTuple) -> Bool {
        bindPeerConnection(id: id, username: username, dataConnection: dataConnection)
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

    /// Closes a relay socket the core let go of (`CoreEffect.closeRelay`) and returns its port;
    /// a TCP relay takes its RFC 6062 connections with it.
    func closeRelay(_ endpoint: RelayEndpoint) {
        assertOnQueue()
        guard let socket = relaySockets.remove(endpoint.handle) else { return }
        if let source = socket.source {
            source.cancel()
            closeLinks(slot: socket.slot, relay: endpoint.address)
        } else {
            poll.remove(endpoint.handle)
            close(endpoint.handle)
        }
        ports.release(endpoint.address.family, endpoint.address.port)
    }
}

// Stream clients: TCP and TLS listening sockets, accepting connections within the admission
// caps, and the end of a connection (which ends its allocation, RFC 8656 §3.1).
//
// Invariants: a connection is admitted (per-source cap and server-wide budget, `SourceAdmission`)
// before anything is kept for it, and released exactly once when it closes; while open it is in
// `connections` by descriptor and in `streamWriters` by 5-tuple. On the shard's queue.
import CTraverseSystem
import Dispatch
import STUNCodec
import TURNCore
import TraverseSystem

#if canImport(Glibc)
    import Glibc
#endif

/// Where packets for a stream-connected client (TCP, TLS, DTLS) go. Implemented by the stream
/// layer; called on the shard's queue.
protocol StreamWriter: AnyObject {
    /// Queues bytes to the client (framing already applied).
    func write(_ bytes: UnsafeRawBufferPointer)
    /// The allocation of this connection ended.
    func allocationEnded()
}

/// A listening TCP socket of a shard, plain or TLS.
struct StreamListener {
    let fd: Int32
    let address: TransportAddress
    let tls: Bool
    let source: any DispatchSourceRead
}

extension Shard {
    /// Adds a listening TCP socket (bound with SO_REUSEPORT, listening) to this shard; it is
    /// watched once the shard starts.
    func addStreamListener(fd: Int32, address: TransportAddress, tls: Bool) {
        let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        let listener = StreamListener(fd: fd, address: address, tls: tls, source: source)
        source.setEventHandler { [weak self] in self?.acceptConnections(listener) }
        source.setCancelHandler { close(fd) }
        streamListeners.append(listener)
    }

    /// Accepts what the listener holds (bounded per wakeup), within the admission caps.
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
            guard admission.admit(client.ip) else {
                streamCounters.closed[.refused] &+= 1
                close(fd)
                continue
            }
            Sockets.setInt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
            let ft = FiveTuple(client: client, server: listener.address, transport: listener.tls ? .tls : .tcp)
            let connection = StreamConnection(
                fd: fd, shard: self, fiveTuple: ft, tls: listener.tls ? tlsContexts?.tls : nil,
                now: Clock.monotonicMilliseconds())
            connections[fd] = connection
            streamWriters[ft] = connection
            streamCounters.accepted[listener.tls ? .tls : .tcp] &+= 1
            streamCounters.open += 1
        }
    }

    /// A connection ended: its allocation goes with it (RFC 8656 §3.1: one allocation per connection).
    func connectionClosed(_ c: StreamConnection, reason: StreamCloseReason) {
        connections[c.fd] = nil
        streamWriters[c.fiveTuple] = nil
        admission.release(c.fiveTuple.client.ip)
        closedSinceTrim &+= 1
        streamCounters.closed[reason] &+= 1
        streamCounters.open -= 1
        core.closeAllocation(on: c.fiveTuple, reason: .connectionClosed, now: now())
        drainEffects()
    }
}

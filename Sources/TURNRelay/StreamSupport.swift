// What stream clients share: why a connection closed, the stream counters, and closing a
// descriptor only once every Dispatch source watching it is cancelled.
//
// Invariant: a descriptor with a `DescriptorCloser` is closed exactly once, after its last
// holder released it, and never while a Dispatch source still watches it.
public import TURNCore

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

/// The transports whose clients are connections or sessions (as opposed to UDP datagrams).
/// Bounded: used as a metric label.
public enum StreamTransport: Int, CaseIterable, Sendable {
    case tcp, tls, dtls

    /// The metric label.
    public var label: String {
        switch self {
        case .tcp: "tcp"
        case .tls: "tls"
        case .dtls: "dtls"
        }
    }
}

/// Stream counters of one shard, summed when scraped.
public struct StreamCounters: Sendable {
    /// Connections (TCP, TLS) and sessions (DTLS) admitted.
    public var accepted = EnumCounters<StreamTransport>()
    /// Connections and sessions closed, by reason (`refused`: turned away at admission).
    public var closed = EnumCounters<StreamCloseReason>()
    public var handshakeFailures: UInt64 = 0
    public var open: Int = 0

    public init() {}

    /// Adds another shard's counters to these.
    public mutating func add(_ o: StreamCounters) {
        accepted.add(o.accepted)
        closed.add(o.closed)
        handshakeFailures &+= o.handshakeFailures
        open += o.open
    }
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

public import STUNCodec

/// Settings of the I/O layer.
public struct RelayConfiguration: Sendable {
    /// UDP and TCP listening addresses (port 0 picks a free port).
    public var listen: [TransportAddress] = [TransportAddress("127.0.0.1:3478")!, TransportAddress("[::1]:3478")!]
    /// Number of shards (serial queues with their own sockets); 0 means one per core.
    public var shards = 0
    /// Relay IPs, at most one per family used; empty means the listening IPs.
    public var relayAddresses: [IPAddress] = []
    /// Relay port range (RFC 8656 §7.2 suggests 49152–65535).
    public var portRange: ClosedRange<UInt16> = 49152...65535
    /// SO_RCVBUF/SO_SNDBUF for every UDP socket.
    public var socketBufferBytes: Int32 = 4 << 20
    /// Datagrams per recvmmsg/sendmmsg call.
    public var batchSize = 64
    /// Send runs of equal-sized datagrams to one destination as one UDP GSO message.
    public var segmentationOffload = true
    /// Let the kernel merge a peer's burst into one receive on relay sockets (UDP GRO).
    public var receiveOffload = true
    /// After serving a wakeup, a shard waits this long (microseconds) for more datagrams before
    /// handing its queue back to Dispatch (0: return at once). Under steady traffic this turns two
    /// thread hand-offs per wakeup (Dispatch's event thread, then a worker) into one direct wakeup;
    /// at most `pollLingerBudgetMilliseconds` is spent per Dispatch event so that other work on the
    /// shard's queue (TCP/TLS connections, timers) runs.
    public var pollLingerMicroseconds = 500
    /// The most time one Dispatch event of a shard's UDP sockets keeps its queue while lingering.
    public var pollLingerBudgetMilliseconds: UInt64 = 2
    /// Log client addresses in full (debugging) instead of redacted.
    public var logFullAddresses = false
    /// TLS (TCP) listening addresses; DTLS is served on the same addresses over UDP.
    public var tlsListen: [TransportAddress] = []
    /// Stream connections on the whole server.
    public var maxConnections = 10_000
    /// Stream connections from one client IP (a large office behind one NAT shares an IP).
    public var maxConnectionsPerSource = 256
    /// Caps on DTLS sessions (their own, apart from `maxConnections`).
    public var dtls = DTLSLimits()
    /// Seconds a stream connection may stay without an allocation (or in its TLS handshake).
    public var idleTimeoutSeconds: UInt64 = 30
    /// Started with `--takeover`: a UDP (or DTLS) address another process still listens on is
    /// bound only once it is free, when that instance hands it over (`Takeover.swift`).
    public var takeover = false
    /// The kernel fast path: `.xdp` relays bound-channel ChannelData over UDP in an XDP program
    /// attached to `fastPathInterfaces`.
    public var fastPath: FastPathMode = .off
    /// Interfaces the XDP program is attached to (those that carry clients' and peers' traffic).
    public var fastPathInterfaces: [String] = []
    /// The compiled BPF object; nil: `traverse-xdp.bpf.o` beside the executable.
    public var fastPathObject: String?

    public init() {}

    /// The relay IP to use for `family`.
    public func relayIP(for family: AddressFamily) -> IPAddress? {
        if let ip = relayAddresses.first(where: { $0.family == family }) { return ip }
        if !relayAddresses.isEmpty { return nil }
        return listen.first { $0.family == family }?.ip
    }
}

/// UDP offload counters of the data path: GSO messages sent (runs of datagrams to one
/// destination leaving as one message) and GRO messages received on relay sockets (a peer's
/// burst arriving as one), each with the datagrams they carried.
public struct OffloadCounters: Sendable, Equatable {
    public var segmentedSends: UInt64 = 0
    public var segmentedDatagrams: UInt64 = 0
    public var mergedReceives: UInt64 = 0
    public var mergedDatagrams: UInt64 = 0

    public init(
        segmentedSends: UInt64 = 0, segmentedDatagrams: UInt64 = 0, mergedReceives: UInt64 = 0,
        mergedDatagrams: UInt64 = 0
    ) {
        self.segmentedSends = segmentedSends
        self.segmentedDatagrams = segmentedDatagrams
        self.mergedReceives = mergedReceives
        self.mergedDatagrams = mergedDatagrams
    }

    /// The sum of two shards' counters.
    public static func + (a: Self, b: Self) -> Self {
        Self(
            segmentedSends: a.segmentedSends &+ b.segmentedSends,
            segmentedDatagrams: a.segmentedDatagrams &+ b.segmentedDatagrams,
            mergedReceives: a.mergedReceives &+ b.mergedReceives,
            mergedDatagrams: a.mergedDatagrams &+ b.mergedDatagrams)
    }
}

/// How client addresses appear in logs: redacted unless the operator opts in (privacy by default).
public enum AddressRedaction {
    /// `198.51.x.x:*` / `2001:db8::…:*` unless `full`.
    public static func format(_ address: TransportAddress, full: Bool) -> String {
        if full { return address.description }
        switch address.ip {
        case .v4(let a): return "\(a >> 24).\(a >> 16 & 0xFF).x.x"
        case .v6(let hi, _): return "\(IPAddress.v6(hi & 0xFFFF_FFFF_0000_0000, 0))/32"
        }
    }
}

public import STUNCodec

/// A permission: a peer IP the allocation may exchange data with (RFC 8656 §9), until `expiry`.
public struct Permission: Sendable, Hashable {
    /// The peer IP address; a permission covers every port of it.
    public var peer: IPAddress
    /// When the permission expires, in monotonic milliseconds (``CoreTime/milliseconds``).
    public var expiry: UInt64
}

/// A channel binding (RFC 8656 §12) to one peer transport address, until `expiry`.
public struct ChannelBinding: Sendable, Hashable {
    /// The channel number, within `ChannelData.channelRange` (or the legacy range when enabled).
    public var number: UInt16
    /// The peer's IP address and port.
    public var peer: TransportAddress
    /// When the binding expires, in monotonic milliseconds (``CoreTime/milliseconds``).
    public var expiry: UInt64
}

/// Traffic counters of one allocation, reported when it ends.
public struct TrafficCounters: Sendable, Hashable {
    /// Datagrams relayed from the client to peers.
    public var packetsFromClient: UInt64 = 0
    /// Payload bytes relayed from the client to peers (headers not included).
    public var bytesFromClient: UInt64 = 0
    /// Datagrams relayed from peers to the client.
    public var packetsToClient: UInt64 = 0
    /// Payload bytes relayed from peers to the client (headers not included).
    public var bytesToClient: UInt64 = 0
    /// All counters at zero.
    public init() {}
}

/// A token bucket in bytes, for the optional bandwidth cap.
struct TokenBucket: Sendable {
    var tokens: Double
    var last: UInt64
    let rate: Double
    let burst: Double

    init(bytesPerSecond: Int, now: UInt64) {
        rate = Double(bytesPerSecond)
        burst = Double(bytesPerSecond)
        tokens = burst
        last = now
    }

    mutating func take(_ n: Int, now: UInt64) -> Bool {
        if now > last {
            tokens = min(burst, tokens + Double(now - last) * rate / 1000)
            last = now
        }
        if tokens < Double(n) { return false }
        tokens -= Double(n)
        return true
    }
}

/// Why an allocation ended.
public enum AllocationEndReason: String, Sendable {
    /// Its lifetime ran out without a Refresh.
    case expired
    /// The client deleted it with a Refresh of lifetime 0 (label `deleted`).
    case refreshedToZero = "deleted"
    /// Its TCP, TLS or DTLS connection closed (RFC 8656 §3.1).
    case connectionClosed = "connection_closed"
    /// Its client's address was put on the ban list.
    case banned
    /// The server shut down.
    case shutdown
    /// The credential it was made with is no longer configured (`TURNServerCore.reviewCredentials`).
    case revoked
    /// Its listener was handed over to another instance (`--takeover`).
    case takenOver = "taken_over"
    /// Ended through the sessions API (`DELETE /sessions/…`), here or from another node.
    case endedByOperator = "ended_by_operator"
}

/// One allocation (RFC 8656 §6): relayed addresses, the client's 5-tuple, the authentication
/// it was made with (the key, never the password), permissions and channels.
public struct Allocation: Sendable {
    /// A random id, unique on this node: how the sessions API names the allocation.
    public let id: UInt64 = .random(in: 1...UInt64.max)
    /// The client's 5-tuple: the allocation's name on this shard.
    public let fiveTuple: FiveTuple
    /// The user the allocation was authenticated as; every later request must be from the same user.
    public let username: String
    /// The key the allocation was authenticated with; later requests may use it even after a
    /// REST secret rotated away.
    let key: [UInt8]
    /// Whether answers on this allocation carry MESSAGE-INTEGRITY-SHA256 (else MESSAGE-INTEGRITY).
    var respondWithSHA256 = false
    /// 17 for a UDP relay, 6 for an RFC 6062 TCP relay.
    public internal(set) var relayTransport: RelayTransport = .udp
    /// One relay, or two for a dual-stack allocation (RFC 8656 ADDITIONAL-ADDRESS-FAMILY).
    public internal(set) var relays: [RelayEndpoint]
    /// When the allocation expires unless refreshed, in monotonic milliseconds (``CoreTime/milliseconds``).
    public internal(set) var expiry: UInt64
    /// Its permissions, including expired ones the sweep has not yet removed.
    public internal(set) var permissions: [Permission] = []
    /// Its channel bindings, including expired ones the sweep has not yet removed.
    public internal(set) var channels: [ChannelBinding] = []
    /// What it has relayed so far.
    public internal(set) var traffic = TrafficCounters()
    /// When it was made, in monotonic milliseconds (``CoreTime/milliseconds``).
    public let createdAt: UInt64
    /// The last request answered and its response, for retransmissions (RFC 8489 §6.3.1).
    var lastTransaction: STUNTransactionID?
    var lastResponse: [UInt8] = []
    var lastResponseAt: UInt64 = 0
    var bucketIn: TokenBucket?
    var bucketOut: TokenBucket?
    /// Set when the credential the allocation was made with is no longer configured: the unix
    /// time after which it ends (`Int64.min`: at the next sweep). nil while its key can still be
    /// derived from the credentials in force.
    var revokeAfter: Int64?

    init(fiveTuple: FiveTuple, username: String, key: [UInt8], relays: [RelayEndpoint], expiry: UInt64, now: UInt64) {
        self.fiveTuple = fiveTuple
        self.username = username
        self.key = key
        self.relays = relays
        self.expiry = expiry
        self.createdAt = now
    }

    /// The relay of `family`, if the allocation has one.
    @inlinable public func relay(for family: AddressFamily) -> RelayEndpoint? {
        for r in relays where r.address.family == family { return r }
        return nil
    }

    /// Whether a live permission exists for `ip`.
    @inlinable public func hasPermission(_ ip: IPAddress, now: UInt64) -> Bool {
        for p in permissions where p.peer == ip { return p.expiry > now }
        return false
    }

    /// The live channel bound to `peer`, if any.
    @inlinable public func channel(to peer: TransportAddress, now: UInt64) -> UInt16? {
        for c in channels where c.peer == peer { return c.expiry > now ? c.number : nil }
        return nil
    }

    /// The peer bound to channel `number`, if live.
    @inlinable public func peer(onChannel number: UInt16, now: UInt64) -> TransportAddress? {
        for c in channels where c.number == number { return c.expiry > now ? c.peer : nil }
        return nil
    }
}

/// Something that happened to an allocation, for logs and metrics (control path only).
public enum AllocationEvent: Sendable {
    /// An allocation was made: its client, user, advertised relayed addresses and granted lifetime in
    /// seconds.
    case created(fiveTuple: FiveTuple, username: String, relays: [TransportAddress], lifetime: UInt32)
    /// An allocation ended: how long it lived, what it relayed, and why it ended.
    case ended(
        fiveTuple: FiveTuple, username: String, durationMilliseconds: UInt64, traffic: TrafficCounters,
        reason: AllocationEndReason)
}

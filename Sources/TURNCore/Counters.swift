import STUNCodec

/// Why a datagram or message was dropped without an answer. Bounded: used as a metric label.
public enum DropReason: Int, CaseIterable, Sendable {
    /// A message that starts like STUN but fails validation
    /// (``TURNServerCore/handleMalformed(_:_:from:now:response:)``).
    case malformedSTUN
    /// A message that starts like ChannelData but fails `ChannelData.parse` (counted by the I/O layer).
    case malformedChannelData
    /// Empty, truncated, or neither STUN nor ChannelData by its first byte (counted by the I/O layer).
    case notSTUNOrChannelData
    /// A Send indication or ChannelData message, or a peer's datagram, with no allocation behind it.
    case noAllocation
    /// Relayed data, or a peer's TCP connection, from or to a peer IP the allocation has no live
    /// permission for.
    case noPermission
    /// ChannelData on a channel number that is not bound, or whose binding expired.
    case unboundChannel
    /// A peer address the ``PeerPolicy`` refuses (a request naming it is also answered 403).
    case peerDenied
    /// An answer to an unauthenticated request (Binding, 401, 400, 420) over the source IP's budget.
    case rateLimited
    /// Relayed data over the allocation's bandwidth cap (``CoreConfiguration/bandwidthPerAllocation``).
    case bandwidthExceeded
    /// A Send indication without XOR-PEER-ADDRESS or DATA, or for a family the allocation has no relay
    /// for.
    case badIndication
    /// A success or error response sent to the server.
    case unexpectedClass
    /// A request from a client address on the ban list (answered 403).
    case bannedClient
    /// A datagram the kernel refused to send (counted by the I/O layer).
    case sendFailed
    /// A peer's datagram larger than the I/O layer relays (counted by the I/O layer).
    case oversizedDatagram
    /// A request without integrity that lacks an attribute its method requires: dropped, not
    /// challenged.
    case incompleteRequest
    /// A request from a client whose Allocate waits for the fleet-wide quota.
    case quotaPending

    /// The metric label.
    public var label: String {
        switch self {
        case .malformedSTUN: "malformed_stun"
        case .malformedChannelData: "malformed_channel_data"
        case .notSTUNOrChannelData: "not_stun"
        case .noAllocation: "no_allocation"
        case .noPermission: "no_permission"
        case .unboundChannel: "unbound_channel"
        case .peerDenied: "peer_denied"
        case .rateLimited: "rate_limited"
        case .bandwidthExceeded: "bandwidth_exceeded"
        case .badIndication: "bad_indication"
        case .unexpectedClass: "unexpected_class"
        case .bannedClient: "banned_client"
        case .sendFailed: "send_failed"
        case .oversizedDatagram: "oversized_datagram"
        case .incompleteRequest: "incomplete_request"
        case .quotaPending: "quota_pending"
        }
    }
}

/// Why authentication failed. Bounded: used as a metric label.
public enum AuthFailure: Int, CaseIterable, Sendable {
    /// A request without MESSAGE-INTEGRITY: the normal first step, answered 401 (label `challenge`).
    case missingCredentials
    /// Integrity without USERNAME (or USERHASH), REALM and NONCE, or a bad password algorithm
    /// choice: 400.
    case badRequest
    /// No such user (or an unknown USERHASH), or no key for the chosen algorithm: 401.
    case unknownUser
    /// A REST username whose expiry has passed: 401.
    case expiredCredentials
    /// REALM is not the server's realm: 401.
    case wrongRealm
    /// The MAC does not match any candidate key: 401.
    case badIntegrity
    /// A valid MAC with a nonce that is too old: 438.
    case staleNonce
    /// The request's user is not the user that made the allocation on this 5-tuple: 441.
    case wrongUsername

    /// The metric label.
    public var label: String {
        switch self {
        case .missingCredentials: "challenge"
        case .badRequest: "bad_request"
        case .unknownUser: "unknown_user"
        case .expiredCredentials: "expired"
        case .wrongRealm: "wrong_realm"
        case .badIntegrity: "bad_integrity"
        case .staleNonce: "stale_nonce"
        case .wrongUsername: "wrong_username"
        }
    }
}

/// The STUN methods counted separately; others fall under `.other`.
public enum CountedMethod: Int, CaseIterable, Sendable {
    /// One case per counted method: Binding, Allocate, Refresh, CreatePermission, ChannelBind, Send
    /// (indications), Connect, ConnectionBind, and every other method.
    case binding, allocate, refresh, createPermission, channelBind, send, connect, connectionBind, other

    /// The metric label.
    public var label: String {
        switch self {
        case .binding: "binding"
        case .allocate: "allocate"
        case .refresh: "refresh"
        case .createPermission: "create_permission"
        case .channelBind: "channel_bind"
        case .send: "send"
        case .connect: "connect"
        case .connectionBind: "connection_bind"
        case .other: "other"
        }
    }
}

/// Error codes counted on allocation-related answers.
public let countedErrorCodes: [Int] = [300, 400, 401, 403, 420, 437, 438, 440, 441, 442, 443, 446, 447, 486, 508]

/// Counters of one shard, plain integers written on the shard's queue and summed when scraped:
/// counting costs the packet path one add.
public struct CoreCounters: Sendable {
    /// Dropped messages, indexed by a ``DropReason``'s `rawValue`.
    public var drops = [UInt64](repeating: 0, count: DropReason.allCases.count)
    /// Authentication failures, indexed by an ``AuthFailure``'s `rawValue`.
    public var authFailures = [UInt64](repeating: 0, count: AuthFailure.allCases.count)
    /// Requests received, indexed by a ``CountedMethod``'s `rawValue` (Send indications included).
    public var requests = [UInt64](repeating: 0, count: CountedMethod.allCases.count)
    /// Error answers sent, indexed like ``countedErrorCodes``.
    public var errorResponses = [UInt64](repeating: 0, count: countedErrorCodes.count)
    /// Allocations made, by relay family: index 0 IPv4, 1 IPv6 (a dual-stack allocation counts in
    /// both).
    public var allocationsCreated: [UInt64] = [0, 0]  // by relay family: IPv4, IPv6
    /// Packets relayed from clients to peers: index 0 through channels, 1 through Send indications.
    public var relayedPacketsClientToPeer: [UInt64] = [0, 0]  // channel, indication
    /// Payload bytes relayed from clients to peers, indexed like ``relayedPacketsClientToPeer``.
    public var relayedBytesClientToPeer: [UInt64] = [0, 0]
    /// Packets relayed from peers to clients: index 0 through channels, 1 through Data indications.
    public var relayedPacketsPeerToClient: [UInt64] = [0, 0]
    /// Payload bytes relayed from peers to clients, indexed like ``relayedPacketsPeerToClient``.
    public var relayedBytesPeerToClient: [UInt64] = [0, 0]
    /// Challenges (401/438) sent from a source's overflow byte budget, after its answers for
    /// the second were spent (see `SourceRateLimiter`).
    public var overflowChallenges: UInt64 = 0
    /// Allocates refused with 486, by scope: this node's per-user quota, the fleet-wide one.
    public var quotaRefusals: [UInt64] = [0, 0]
    /// New allocations sent elsewhere (300 Try Alternate), by `RedirectReason`.
    public var redirects = [UInt64](repeating: 0, count: RedirectReason.allCases.count)

    /// All counters at zero.
    public init() {}

    /// Counts one drop for `reason`.
    @inlinable public mutating func drop(_ reason: DropReason) { drops[reason.rawValue] &+= 1 }

    mutating func countError(_ code: STUNErrorCode) {
        if let i = countedErrorCodes.firstIndex(of: code.rawValue) { errorResponses[i] &+= 1 }
    }

    /// Adds another shard's counters to these.
    public mutating func add(_ o: CoreCounters) {
        func sum(_ a: inout [UInt64], _ b: [UInt64]) { for i in a.indices { a[i] &+= b[i] } }
        sum(&drops, o.drops)
        sum(&authFailures, o.authFailures)
        sum(&requests, o.requests)
        sum(&errorResponses, o.errorResponses)
        sum(&allocationsCreated, o.allocationsCreated)
        sum(&relayedPacketsClientToPeer, o.relayedPacketsClientToPeer)
        sum(&relayedBytesClientToPeer, o.relayedBytesClientToPeer)
        sum(&relayedPacketsPeerToClient, o.relayedPacketsPeerToClient)
        sum(&relayedBytesPeerToClient, o.relayedBytesPeerToClient)
        overflowChallenges &+= o.overflowChallenges
        sum(&quotaRefusals, o.quotaRefusals)
        sum(&redirects, o.redirects)
    }
}

/// Why a new allocation was sent to another server. Bounded: used as a metric label.
public enum RedirectReason: Int, CaseIterable, Sendable {
    /// One case per reason: the node is draining, it is at its allocation capacity, or it is above
    /// the fleet's redirect load.
    case draining, full, load

    /// The metric label.
    public var label: String {
        switch self {
        case .draining: "draining"
        case .full: "full"
        case .load: "load"
        }
    }
}

/// Counters indexed by an enum rather than by convention: one `UInt64` per case of `Key`, read
/// and written through the case (`counts[.tls] &+= 1`); `values` is in case order, for exporters.
public struct EnumCounters<Key: CaseIterable & RawRepresentable & Sendable>: Sendable, Equatable
where Key.RawValue == Int {
    /// One value per case, at the case's raw value.
    public private(set) var values: [UInt64]

    /// All zero.
    public init() { values = [UInt64](repeating: 0, count: Key.allCases.count) }

    /// The count of `key`.
    public subscript(_ key: Key) -> UInt64 {
        get { values[key.rawValue] }
        set { values[key.rawValue] = newValue }
    }

    /// Adds another set of counts (another shard's) to these.
    public mutating func add(_ other: Self) {
        for i in values.indices { values[i] &+= other.values[i] }
    }
}

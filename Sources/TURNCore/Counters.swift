import STUNCodec

/// Why a datagram or message was dropped without an answer. Bounded: used as a metric label.
public enum DropReason: Int, CaseIterable, Sendable {
    case malformedSTUN
    case malformedChannelData
    case notSTUNOrChannelData
    case noAllocation
    case noPermission
    case unboundChannel
    case peerDenied
    case rateLimited
    case bandwidthExceeded
    case badIndication
    case unexpectedClass
    case bannedClient
    case sendFailed
    case oversizedDatagram
    case incompleteRequest
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
    case missingCredentials
    case badRequest
    case unknownUser
    case expiredCredentials
    case wrongRealm
    case badIntegrity
    case staleNonce
    case wrongUsername

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
    case binding, allocate, refresh, createPermission, channelBind, send, connect, connectionBind, other

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
    public var drops = [UInt64](repeating: 0, count: DropReason.allCases.count)
    public var authFailures = [UInt64](repeating: 0, count: AuthFailure.allCases.count)
    public var requests = [UInt64](repeating: 0, count: CountedMethod.allCases.count)
    /// Indexed like `countedErrorCodes`.
    public var errorResponses = [UInt64](repeating: 0, count: countedErrorCodes.count)
    public var allocationsCreated: [UInt64] = [0, 0]  // by relay family: IPv4, IPv6
    public var relayedPacketsClientToPeer: [UInt64] = [0, 0]  // channel, indication
    public var relayedBytesClientToPeer: [UInt64] = [0, 0]
    public var relayedPacketsPeerToClient: [UInt64] = [0, 0]
    public var relayedBytesPeerToClient: [UInt64] = [0, 0]
    /// Challenges (401/438) sent from a source's overflow byte budget, after its answers for
    /// the second were spent (see `SourceRateLimiter`).
    public var overflowChallenges: UInt64 = 0
    /// Allocates refused with 486, by scope: this node's per-user quota, the fleet-wide one.
    public var quotaRefusals: [UInt64] = [0, 0]
    /// New allocations sent elsewhere (300 Try Alternate), by `RedirectReason`.
    public var redirects = [UInt64](repeating: 0, count: RedirectReason.allCases.count)

    public init() {}

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
    case draining, full, load

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

public import STUNCodec
import Synchronization

/// What a fleet decides for one node's core: where to send new clients when this node should
/// not take them, and whether a user may hold one more allocation fleet-wide. Without a fleet
/// both are absent and the core behaves as a single node.
///
/// Shared by every shard; read on the Allocate path (control path), never per packet. Nothing
/// here waits on the network: `alternate` reads a board the fleet keeps up to date, and a quota
/// check answers asynchronously (`QuotaAuthority`).
public final class FleetHooks: Sendable {
    private let chooser = Mutex<(@Sendable (FiveTuple) -> TransportAddress?)?>(nil)
    private let quotaBox = Mutex<(any QuotaAuthority)?>(nil)
    private let overloaded = Atomic<Bool>(false)

    /// Hooks of a node without a fleet: no alternate chooser, no fleet-wide quota, not overloaded.
    public init() {}

    /// Installs the function that picks another node for a new client (nil removes it).
    public func setAlternateChooser(_ f: (@Sendable (FiveTuple) -> TransportAddress?)?) {
        chooser.withLock { $0 = f }
    }

    /// Another node for a client on `fiveTuple`, if the fleet knows a suitable one.
    public func alternate(for fiveTuple: FiveTuple) -> TransportAddress? {
        chooser.withLock { $0 }?(fiveTuple)
    }

    /// Installs the fleet-wide quota (nil: node-local quotas only).
    public func setQuota(_ q: (any QuotaAuthority)?) { quotaBox.withLock { $0 = q } }

    /// The fleet-wide quota, if any.
    public var quota: (any QuotaAuthority)? { quotaBox.withLock { $0 } }

    /// Whether this node is above the fleet's redirect load: new allocations go elsewhere when
    /// another node can take them (set by the operations layer from the load score).
    public var isOverloaded: Bool {
        get { overloaded.load(ordering: .relaxed) }
    }

    /// Sets the overload flag.
    public func setOverloaded(_ on: Bool) { overloaded.store(on, ordering: .relaxed) }
}

/// A fleet-wide allocation quota: an atomic check-and-increment somewhere every node sees.
public protocol QuotaAuthority: Sendable {
    /// Asks for one more allocation for `username` under `limit` fleet-wide. `done` is called
    /// exactly once, on any thread, never before `reserve` returns.
    func reserve(username: String, limit: Int, _ done: @escaping @Sendable (QuotaVerdict) -> Void)
    /// Gives back an allocation granted by `reserve` (or counted while the authority was
    /// unavailable, see `QuotaVerdict.unavailable`).
    func release(username: String)
}

/// The answer to a fleet quota request.
public enum QuotaVerdict: Sendable, Equatable {
    /// Counted fleet-wide: the allocation may be made.
    case granted
    /// The user holds `limit` allocations across the fleet: 486.
    case refused
    /// The fleet cannot be asked (its store is unreachable); `countLocally` tells whether to
    /// fall back to the node-local quota (true) or to refuse with 508 (false).
    case unavailable(countLocally: Bool)
}

import Synchronization
public import TURNCore

/// One ban made through the admin endpoint or `traverse ban`, on this node or (with a fleet) on
/// any node. Stored in Redis as JSON under `traverse:bans`, field = the CIDR.
public struct BanRecord: Sendable, Codable, Equatable {
    /// The banned prefix in canonical form (`203.0.113.7/32`).
    public var cidr: String
    /// Why, for the operator (never shown to the client).
    public var reason: String?
    /// Wall-clock seconds when the ban lapses; nil: until removed.
    public var expiresAt: Int64?
    /// Wall-clock seconds when it was made.
    public var createdAt: Int64
    /// The node it was made on.
    public var node: String?

    enum CodingKeys: String, CodingKey {
        case cidr, reason, node
        case expiresAt = "expires_at"
        case createdAt = "created_at"
    }

    public init(cidr: String, reason: String?, expiresAt: Int64?, createdAt: Int64, node: String?) {
        self.cidr = cidr
        self.reason = reason
        self.expiresAt = expiresAt
        self.createdAt = createdAt
        self.node = node
    }

    /// Whether the ban is in force at wall-clock second `now`.
    public func isActive(now: Int64) -> Bool { expiresAt.map { now < $0 } ?? true }

    /// The prefix, if the record's text is one (records read from Redis are checked with this).
    public var prefix: CIDR? { CIDR(cidr) }
}

/// The bans made at run time (admin endpoint, `traverse ban`, other nodes), combined by the
/// operations layer with the bans of the configuration file into the policy the shards enforce.
///
/// Shared between the fleet queue, the admin endpoint and the reload path; a `Mutex` guards it.
/// `onChange` is called (outside the lock) whenever the set of active prefixes changes.
public final class BanBook: Sendable {
    /// The records, and the active prefixes the observer was last told of.
    private let state = Mutex<(records: [String: BanRecord], told: Set<CIDR>)>(([:], []))
    private let observer = Mutex<(@Sendable ([CIDR]) -> Void)?>(nil)

    public init() {}

    /// Registers the function told of every change of the active prefixes.
    public func onChange(_ f: @escaping @Sendable ([CIDR]) -> Void) { observer.withLock { $0 = f } }

    /// Every record, active or lapsed, sorted by prefix.
    public var all: [BanRecord] { state.withLock { Array($0.records.values) }.sorted { $0.cidr < $1.cidr } }

    /// The prefixes in force at wall-clock second `now`.
    public func active(now: Int64) -> [CIDR] {
        state.withLock { s in s.records.values.filter { $0.isActive(now: now) }.compactMap(\.prefix) }
            .sorted { $0.description < $1.description }
    }

    /// Adds or replaces a ban.
    public func add(_ record: BanRecord, now: Int64) { mutate(now) { $0[record.cidr] = record } }

    /// Removes the ban on `cidr`; whether there was one.
    @discardableResult
    public func remove(_ cidr: String, now: Int64) -> Bool {
        var found = false
        mutate(now) { found = $0.removeValue(forKey: cidr) != nil }
        return found
    }

    /// Replaces every record (a full read of the fleet's bans).
    public func replace(_ all: [BanRecord], now: Int64) {
        mutate(now) { r in
            r = [:]
            for b in all { r[b.cidr] = b }
        }
    }

    /// Drops lapsed bans; tells the observer if the active set changed.
    public func expire(now: Int64) { mutate(now) { r in r = r.filter { $0.value.isActive(now: now) } } }

    private func mutate(_ now: Int64, _ change: (inout [String: BanRecord]) -> Void) {
        let changed = state.withLock { s -> [CIDR]? in
            change(&s.records)
            let active = Set(s.records.values.filter { $0.isActive(now: now) }.compactMap(\.prefix))
            if active == s.told { return nil }
            s.told = active
            return active.sorted { $0.description < $1.description }
        }
        if let changed, let f = observer.withLock({ $0 }) { f(changed) }
    }
}

// Admission of stream clients (TCP/TLS connections) and DTLS sessions: one type for both, so
// every transport's per-source cap and server-wide budget work alike.
//
// Invariant: a source's count and the budget are taken together by `admit` and given back
// together by `release`, exactly once per admitted client; a source with no client has no entry
// (the table never grows with sources that left).
import STUNCodec
import Synchronization

/// A server-wide cap shared by all shards, so that an accept storm is bounded whatever shard
/// the kernel picks.
final class ConnectionBudget: Sendable {
    let maxTotal: Int
    private let total = Atomic<Int>(0)

    init(maxTotal: Int) { self.maxTotal = maxTotal }

    /// Takes one unit if the total stays within `maxTotal`.
    func take() -> Bool {
        if total.add(1, ordering: .relaxed).newValue > maxTotal {
            total.subtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    /// Gives back one unit taken by `take`.
    func give() { total.subtract(1, ordering: .relaxed) }

    /// Units taken now.
    var taken: Int { total.load(ordering: .relaxed) }
}

/// A per-source cap on one shard plus a server-wide budget. Confined to the shard's queue (the
/// budget itself is atomic).
struct SourceAdmission {
    let maxPerSource: Int
    let budget: ConnectionBudget
    private var perSource: [IPAddress: Int] = [:]

    init(maxPerSource: Int, budget: ConnectionBudget) {
        self.maxPerSource = maxPerSource
        self.budget = budget
    }

    /// Clients of `ip` admitted and not yet released.
    func count(_ ip: IPAddress) -> Int { perSource[ip, default: 0] }

    /// Whether `ip` is under its per-source cap (the budget is not consulted).
    func hasRoom(_ ip: IPAddress) -> Bool { count(ip) < maxPerSource }

    /// Admits one client of `ip` if both its source and the server-wide budget have room.
    mutating func admit(_ ip: IPAddress) -> Bool {
        guard hasRoom(ip), budget.take() else { return false }
        perSource[ip, default: 0] += 1
        return true
    }

    /// A client admitted for `ip` left.
    mutating func release(_ ip: IPAddress) {
        guard let n = perSource[ip] else { return }
        perSource[ip] = n > 1 ? n - 1 : nil
        budget.give()
    }

    /// Sources with at least one client (for tests and bounds).
    var sources: Int { perSource.count }
}

public import STUNCodec
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A client transport as the board lists addresses for it.
public enum FleetTransport: String, Sendable, Codable, CaseIterable {
    case udp, tcp, tls, dtls
}

/// One node's entry on the load board: what it publishes every interval to
/// `traverse:node:{node_id}` (JSON, expiring after three intervals) and what other nodes read.
public struct BoardEntry: Sendable, Codable, Equatable {
    /// The node's id (`fleet.node_id`).
    public var node: String
    /// The load score 0–1 (`/load`'s `load`).
    public var load: Double
    public var allocations: Int
    public var capacity: Int
    public var bitsPerSecond: Double
    /// The rest of the node's `/load` report (absent in entries of older nodes).
    public var details: LoadDetails?
    public var draining: Bool
    public var full: Bool
    /// Addresses clients are sent to, by transport ("udp", "tcp", "tls", "dtls").
    public var addresses: [String: [String]]
    /// The admin endpoint (ADDRESS:PORT), for the console and `?fleet=1` queries.
    public var admin: String?
    /// Wall-clock milliseconds of the publication.
    public var updatedMilliseconds: Int64

    enum CodingKeys: String, CodingKey {
        case node, load, allocations, capacity, draining, full, addresses, admin, details
        case bitsPerSecond = "bits_per_second"
        case updatedMilliseconds = "updated_ms"
    }

    public init(
        node: String, load: Double, allocations: Int, capacity: Int, bitsPerSecond: Double, draining: Bool,
        full: Bool, addresses: [String: [String]], admin: String?, updatedMilliseconds: Int64,
        details: LoadDetails? = nil
    ) {
        self.details = details
        self.node = node
        self.load = load
        self.allocations = allocations
        self.capacity = capacity
        self.bitsPerSecond = bitsPerSecond
        self.draining = draining
        self.full = full
        self.addresses = addresses
        self.admin = admin
        self.updatedMilliseconds = updatedMilliseconds
    }

    /// Whether the entry can be trusted into a redirect: sane numbers and parsable addresses of
    /// the families their syntax says. Foreign or damaged entries fail this and are counted.
    public var isValid: Bool {
        guard !node.isEmpty, node.utf8.count <= 128, load.isFinite, (0...10).contains(load), allocations >= 0,
            capacity >= 0, bitsPerSecond.isFinite, bitsPerSecond >= 0, details?.isValid ?? true
        else { return false }
        for (transport, list) in addresses {
            guard FleetTransport(rawValue: transport) != nil, list.count <= 16 else { return false }
            for a in list where TransportAddress(a) == nil { return false }
        }
        return true
    }

    /// The node's address for `transport` in `family`, if it published one.
    public func address(_ transport: FleetTransport, _ family: AddressFamily) -> TransportAddress? {
        for text in addresses[transport.rawValue] ?? [] {
            if let a = TransportAddress(text), a.family == family { return a }
        }
        return nil
    }
}

/// The `/load` figures a board entry carries beside its load score.
public struct LoadDetails: Sendable, Codable, Equatable {
    public var bitsPerSecondIn: Double
    public var bitsPerSecondOut: Double
    public var packetsPerSecondIn: Double
    public var packetsPerSecondOut: Double
    /// Process CPU, in cores.
    public var cpu: Double
    public var cores: Int
    public var windowSeconds: Double

    enum CodingKeys: String, CodingKey {
        case cpu, cores
        case bitsPerSecondIn = "bits_per_second_in"
        case bitsPerSecondOut = "bits_per_second_out"
        case packetsPerSecondIn = "packets_per_second_in"
        case packetsPerSecondOut = "packets_per_second_out"
        case windowSeconds = "window_seconds"
    }

    public init(
        bitsPerSecondIn: Double, bitsPerSecondOut: Double, packetsPerSecondIn: Double, packetsPerSecondOut: Double,
        cpu: Double, cores: Int, windowSeconds: Double
    ) {
        self.bitsPerSecondIn = bitsPerSecondIn
        self.bitsPerSecondOut = bitsPerSecondOut
        self.packetsPerSecondIn = packetsPerSecondIn
        self.packetsPerSecondOut = packetsPerSecondOut
        self.cpu = cpu
        self.cores = cores
        self.windowSeconds = windowSeconds
    }

    var isValid: Bool {
        [bitsPerSecondIn, bitsPerSecondOut, packetsPerSecondIn, packetsPerSecondOut, cpu, windowSeconds]
            .allSatisfy { $0.isFinite && $0 >= 0 } && (0...4096).contains(cores)
    }
}

/// The board as this node last read it, and the choice of where to send a new client.
///
/// Read from shards' queues on the Allocate path (control path, never per packet) and replaced
/// by the fleet queue after every read of Redis; a `Mutex` guards it.
public final class FleetBoard: Sendable {
    /// This node's id: never a redirect target.
    public let selfID: String
    /// Entries older than this are stale: not shown as live, never a target.
    public let staleAfterMilliseconds: Int64
    private let state = Mutex<[BoardEntry]>([])

    public init(selfID: String, staleAfterMilliseconds: Int64) {
        self.selfID = selfID
        self.staleAfterMilliseconds = staleAfterMilliseconds
    }

    /// Replaces the board (fleet queue).
    public func replace(_ entries: [BoardEntry]) { state.withLock { $0 = entries } }

    /// Every entry read, this node's included.
    public var entries: [BoardEntry] { state.withLock { $0 } }

    /// Whether `entry` is older than the stale limit at wall-clock `now`.
    public func isStale(_ entry: BoardEntry, now: Int64) -> Bool {
        now - entry.updatedMilliseconds > staleAfterMilliseconds
    }

    /// A lightly loaded live node for a client of `transport` and `family`: not this node, not
    /// draining, full or stale, with an address of that transport and family. Of two candidates
    /// drawn at random the less loaded wins (the "power of two choices"), so that many clients
    /// redirected at once spread out instead of all landing on the least loaded node.
    public func alternate(
        _ transport: FleetTransport, _ family: AddressFamily, now: Int64,
        random: (Int) -> Int = { Int.random(in: 0..<$0) }
    ) -> TransportAddress? {
        let candidates = state.withLock { entries in
            entries.compactMap { e -> (Double, TransportAddress)? in
                guard e.node != selfID, !e.draining, !e.full, !isStale(e, now: now),
                    let a = e.address(transport, family)
                else { return nil }
                return (e.load, a)
            }
        }
        switch candidates.count {
        case 0: return nil
        case 1: return candidates[0].1
        default:
            let i = random(candidates.count)
            var j = random(candidates.count - 1)
            if j >= i { j += 1 }
            return candidates[i].0 <= candidates[j].0 ? candidates[i].1 : candidates[j].1
        }
    }

    /// Wall-clock milliseconds now.
    public static func nowMilliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}

import FlyingFox
import Foundation
import STUNCodec
import TURNCore
import TURNRelay
import TraverseFleet

/// The fleet routes of the admin endpoint: `GET /fleet`, `GET/POST /bans`, `DELETE /bans/…`,
/// `GET /sessions[?fleet=1]`, `DELETE /sessions/{id}`, `DELETE /sessions?user=NAME`. Every one
/// goes through the same Host/Origin/header and token checks as the others (`guarded`). Without
/// `[fleet]` they act on this node alone. Bodies are JSON through `Codable`.
extension AdminServer {
    typealias Guard = (@escaping @Sendable (HTTPRequest) async -> HTTPResponse) ->
        @Sendable (HTTPRequest) async throws
        -> HTTPResponse

    static func fleetRoutes(_ http: HTTPServer, operations ops: Operations, token: String?, guarded: Guard) async {
        await http.appendRoute("GET /fleet", handler: guarded { _ in encoded(.ok, await FleetView.make(ops)) })
        await http.appendRoute("GET /bans", handler: guarded { _ in encoded(.ok, BanView.make(ops)) })
        await http.appendRoute(
            "POST /bans",
            handler: guarded { request in
                let body = (try? await request.bodyData) ?? Data()
                let ban: BanRequest
                do {
                    ban = try JSONDecoder().decode(BanRequest.self, from: body)
                } catch {
                    return refusal(.badRequest, "expected {\"cidr\": …, \"reason\": …, \"expires_in\": …}")
                }
                guard let prefix = CIDR(ban.cidr) else {
                    return refusal(.badRequest, "cidr: not an address or prefix")
                }
                if let e = ban.expiresIn, e <= 0 || e > 10 * 365 * 86_400 {
                    return refusal(.badRequest, "expires_in: seconds, 1 to 315360000")
                }
                if let r = ban.reason, r.utf8.count > 256 {
                    return refusal(.badRequest, "reason: at most 256 bytes")
                }
                let now = Int64(FleetBoard.nowMilliseconds() / 1000)
                let record = BanRecord(
                    cidr: prefix.description, reason: ban.reason, expiresAt: ban.expiresIn.map { now + Int64($0) },
                    createdAt: now, node: ops.fleet?.coordinator.configuration.nodeID)
                let answer: HTTPResponse
                if let fleet = ops.fleet {
                    do {
                        try await fleet.coordinator.ban(record)
                        answer = encoded(.created, BanResult(ban: record, fleet: true, error: nil))
                    } catch {
                        // Applied here already; the fleet learns it when Redis is back (re-read).
                        answer = encoded(.accepted, BanResult(ban: record, fleet: false, error: "\(error)"))
                    }
                } else {
                    ops.server.bans.add(record, now: now)
                    answer = encoded(.created, BanResult(ban: record, fleet: false, error: nil))
                }
                // The banned clients' allocations end (and leave the kernel fast path) before the
                // answer: a datagram sent after it is not relayed.
                await ops.server.relay.sweepNow()
                return answer
            })
        let unban: @Sendable (HTTPRequest) async -> HTTPResponse = { request in
            let text = String(request.path.dropFirst("/bans/".count)).removingPercentEncoding ?? ""
            guard let prefix = CIDR(text) else {
                return refusal(.badRequest, "not an address or prefix: /bans/ADDRESS[/LENGTH]")
            }
            var removed = ops.server.bans.remove(prefix.description, now: Int64(FleetBoard.nowMilliseconds() / 1000))
            if let fleet = ops.fleet {
                removed = ((try? await fleet.coordinator.unban(prefix.description)) ?? false) || removed
            }
            return removed
                ? answer(.ok, RemovedAnswer(removed: prefix.description))
                : refusal(.notFound, "no ban on \(prefix.description)")
        }
        await http.appendRoute("DELETE /bans/*", handler: guarded(unban))
        await http.appendRoute("DELETE /bans/*/*", handler: guarded(unban))

        await http.appendRoute(
            "GET /sessions",
            handler: guarded { request in
                var sessions = await SessionView.local(ops)
                if request.query["fleet"] == "1", let fleet = ops.fleet {
                    sessions += await SessionView.remote(fleet, token: token)
                }
                return encoded(.ok, SessionList(sessions: sessions))
            })
        await http.appendRoute(
            "DELETE /sessions/*",
            handler: guarded { request in
                guard let id = UInt64(request.path.dropFirst("/sessions/".count), radix: 16) else {
                    return refusal(.badRequest, "a session id is 16 hex digits")
                }
                let ended = await ops.server.relay.endSessions(.id(id))
                if ended == 0, let fleet = ops.fleet {
                    let published = (try? await fleet.coordinator.publishEvent(.kill(node: "*", id: String(id)))) != nil
                    return answer(.accepted, EndedAnswer(ended: 0, published: published))
                }
                return answer(ended > 0 ? .ok : .notFound, EndedAnswer(ended: ended))
            })
        await http.appendRoute(
            "DELETE /sessions",
            handler: guarded { request in
                guard let user = request.query["user"], !user.isEmpty else {
                    return refusal(.badRequest, "DELETE /sessions?user=NAME or /sessions/{id}")
                }
                let ended = await ops.server.relay.endSessions(.users { $0 == user })
                var published = false
                if let fleet = ops.fleet {
                    let hash = fleet.coordinator.identity.userHash(user)
                    published = (try? await fleet.coordinator.publishEvent(.killUser(userHash: hash))) != nil
                }
                return answer(.ok, EndedAnswer(ended: ended, published: published))
            })
    }

    /// `value` as a compact JSON answer (`JSONText.compact`).
    static func encoded<T: Encodable>(_ status: HTTPStatusCode, _ value: T) -> HTTPResponse {
        json(status, JSONText.compact(value) + "\n")
    }
}

/// `POST /bans` (sent by `traverse ban`).
public struct BanRequest: Codable, Sendable {
    /// The address or prefix to ban.
    public var cidr: String
    /// Why (kept with the ban, never sent to the client).
    public var reason: String?
    /// Seconds until the ban lapses; nil: until removed.
    public var expiresIn: Int?

    /// A request for these values.
    public init(cidr: String, reason: String? = nil, expiresIn: Int? = nil) {
        self.cidr = cidr
        self.reason = reason
        self.expiresIn = expiresIn
    }
    enum CodingKeys: String, CodingKey {
        case cidr, reason
        case expiresIn = "expires_in"
    }
}

struct BanResult: Encodable {
    var ban: BanRecord
    /// Whether the ban was recorded in Redis for every node (false: this node only, for now).
    var fleet: Bool
    var error: String?
}

/// `GET /bans`: the bans of the configuration file, then those made at run time.
struct BanView: Encodable {
    var configured: [String]
    var bans: [BanRecord]

    static func make(_ ops: Operations) -> BanView {
        BanView(
            configured: ops.configuration.bannedClients.map(\.description), bans: ops.server.bans.all)
    }
}

/// `GET /fleet`: the board as this node reads it (or this node alone, without a fleet).
struct FleetView: Encodable {
    struct Node: Encodable {
        var node: String
        var state: String
        var load: Double
        var allocations: Int
        var capacity: Int
        var bitsPerSecond: Double
        var ageMilliseconds: Int64
        var admin: String?
        var addresses: [String: [String]]
        enum CodingKeys: String, CodingKey {
            case node, state, load, allocations, capacity, admin, addresses
            case bitsPerSecond = "bits_per_second"
            case ageMilliseconds = "age_ms"
        }
    }
    var selfID: String?
    var redisUp: Bool?
    var nodes: [Node]
    enum CodingKeys: String, CodingKey {
        case nodes
        case selfID = "self"
        case redisUp = "redis_up"
    }

    static func make(_ ops: Operations) async -> FleetView {
        let now = FleetBoard.nowMilliseconds()
        guard let fleet = ops.fleet else {
            let r = await ops.loadReport()
            let state = r.draining ? "draining" : r.allocations >= r.capacity ? "full" : "ready"
            return FleetView(
                selfID: nil, redisUp: nil,
                nodes: [
                    Node(
                        node: "(this node)", state: state, load: r.load, allocations: r.allocations,
                        capacity: r.capacity, bitsPerSecond: r.bitsPerSecondIn + r.bitsPerSecondOut, ageMilliseconds: 0,
                        admin: nil, addresses: [:])
                ])
        }
        let board = fleet.coordinator.board
        let nodes = board.entries.sorted { $0.node < $1.node }.map { e in
            Node(
                node: e.node,
                state: board.isStale(e, now: now) ? "stale" : e.draining ? "draining" : e.full ? "full" : "ready",
                load: e.load, allocations: e.allocations, capacity: e.capacity, bitsPerSecond: e.bitsPerSecond,
                ageMilliseconds: max(0, now - e.updatedMilliseconds), admin: e.admin, addresses: e.addresses)
        }
        return FleetView(selfID: board.selfID, redisUp: fleet.coordinator.status.redisUp, nodes: nodes)
    }
}

/// One session in `GET /sessions`.
struct SessionView: Codable {
    var id: String
    var node: String?
    /// The username, or (from other nodes of a fleet) its hash.
    var user: String
    var transport: String
    var family: String
    var client: String
    var ageSeconds: Double
    var lifetimeLeftSeconds: Double
    var permissions: Int
    var channels: Int
    var bytesFromClient: UInt64
    var packetsFromClient: UInt64
    var bytesToClient: UInt64
    var packetsToClient: UInt64
    enum CodingKeys: String, CodingKey {
        case id, node, user, transport, family, client, permissions, channels
        case ageSeconds = "age_s"
        case lifetimeLeftSeconds = "lifetime_left_s"
        case bytesFromClient = "bytes_from_client"
        case packetsFromClient = "packets_from_client"
        case bytesToClient = "bytes_to_client"
        case packetsToClient = "packets_to_client"
    }

    /// This node's sessions; client addresses redacted unless the operator opted in.
    static func local(_ ops: Operations) async -> [SessionView] {
        let full = !ops.configuration.redactAddresses
        let node = ops.fleet?.coordinator.configuration.nodeID
        return await ops.server.relay.sessions().map { s in
            let families = Set(s.relays.map(\.family))
            return SessionView(
                id: String(s.id, radix: 16), node: node, user: s.username, transport: "\(s.fiveTuple.transport)",
                family: families.count > 1 ? "ipv4+ipv6" : (families.first == .ipv6 ? "ipv6" : "ipv4"),
                client: AddressRedaction.format(s.fiveTuple.client, full: full),
                ageSeconds: Double(s.ageMilliseconds) / 1000,
                lifetimeLeftSeconds: Double(s.lifetimeLeftMilliseconds) / 1000,
                permissions: s.permissions.count, channels: s.channels.count,
                bytesFromClient: s.traffic.bytesFromClient,
                packetsFromClient: s.traffic.packetsFromClient, bytesToClient: s.traffic.bytesToClient,
                packetsToClient: s.traffic.packetsToClient)
        }
    }

    /// The other nodes' sessions, fetched from their admin endpoints (same token); usernames
    /// replaced by their fleet hash, since they leave the node.
    static func remote(_ fleet: FleetService, token: String?) async -> [SessionView] {
        let selfID = fleet.coordinator.configuration.nodeID
        var out: [SessionView] = []
        for e in fleet.coordinator.board.entries where e.node != selfID {
            guard let text = e.admin, let address = TransportAddress(text),
                let r = try? await AdminClient.fetch("GET", "/sessions", to: address, token: token, timeoutSeconds: 2),
                r.status == 200, let list = try? JSONDecoder().decode(SessionList.self, from: Data(r.body.utf8))
            else { continue }
            out += list.sessions.map { s in
                var s = s
                s.user = fleet.coordinator.identity.userHash(s.user)
                s.node = s.node ?? e.node
                return s
            }
        }
        return out
    }
}

struct SessionList: Codable {
    var sessions: [SessionView]
}

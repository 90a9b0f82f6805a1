public import Dispatch
import Foundation
public import Logging
import Synchronization

/// A node's link to the fleet: publishes its board entry every interval, reads the board and the
/// bans, and listens for the fleet's events (bans, sessions ended elsewhere). The data model is
/// in Docs/fleet.md.
///
/// Thread confinement: every Redis command runs on `queue` (one connection) or on the
/// subscriber thread (its own connection); nothing here is ever called from a shard's queue, and
/// nothing a relayed packet does waits on Redis. What shards read (the board, the bans) is
/// published through `FleetBoard` and `BanBook`, each behind its own lock.
///
/// `@unchecked Sendable`: mutable state is confined to `queue`, except `status` (a `Mutex`) and
/// the subscriber's hand-off (a `Mutex`).
public final class FleetCoordinator: @unchecked Sendable {
    /// Redis keys and channel (Docs/fleet.md, "Data model").
    public enum Keys {
        public static let prefix = "traverse:"
        public static func node(_ id: String) -> String { "\(prefix)node:\(id)" }
        public static let nodes = "\(prefix)nodes"
        public static let bans = "\(prefix)bans"
        public static let events = "\(prefix)events"
        public static let usage = "\(prefix)usage"
        public static func quota(_ userHash: String) -> String { "\(prefix)quota:\(userHash)" }
    }

    /// Health and counters, for `/metrics` and `/fleet`.
    public struct Status: Sendable, Equatable {
        public var redisUp = false
        public var commands: UInt64 = 0
        public var commandFailures: UInt64 = 0
        /// Sum and count of command latencies, microseconds.
        public var latencyMicrosecondsSum: UInt64 = 0
        /// Board entries or bans found in Redis that could not be trusted (wrong type, bad JSON,
        /// bad addresses), ignored.
        public var invalidEntries: UInt64 = 0
        /// Times this node found its own entry gone (Redis restarted or was flushed) and
        /// registered again.
        public var reregistrations: UInt64 = 0
        public var bansApplied: UInt64 = 0
        public var eventsReceived: UInt64 = 0
        /// Usage records that could not be written (Redis down).
        public var usageDropped: UInt64 = 0

        public init() {}
    }

    public let configuration: FleetConfiguration
    public let identity: FleetIdentity
    public let board: FleetBoard
    public let bans: BanBook
    public let queue = DispatchQueue(label: "traverse.fleet")
    let logger: Logger
    let entry: @Sendable () -> BoardEntry
    private let connection: RedisConnection
    private var timer: (any DispatchSourceTimer)?
    private var wasUp: Bool?
    private let statusBox = Mutex(Status())
    private let subscriber: Subscriber
    /// Usage records that could not be written (Redis down).
    let usageDropped = Atomic<UInt64>(0)
    /// Called on the fleet queue with fleet events other than bans (`kill` and `kill-user`).
    public var onEvent: (@Sendable (FleetEvent) -> Void)?
    /// Called on the fleet queue after this node registered again with a Redis that had lost
    /// its state: republish whatever Redis should hold (quota counts).
    public var onReregister: (@Sendable (RedisConnection) -> Void)?

    /// `bans` is the node's ban book, kept in step with the fleet's bans in Redis.
    public init(
        configuration: FleetConfiguration, bans: BanBook, logger: Logger,
        entry: @escaping @Sendable () -> BoardEntry
    ) {
        self.configuration = configuration
        self.identity = FleetIdentity(secret: configuration.secret)
        self.board = FleetBoard(
            selfID: configuration.nodeID,
            staleAfterMilliseconds: Int64(configuration.publishIntervalSeconds * 3000))
        self.bans = bans
        self.logger = logger
        self.entry = entry
        self.connection = RedisConnection(endpoint: configuration.redis)
        self.subscriber = Subscriber(endpoint: configuration.redis, channel: Keys.events)
    }

    /// The latest status.
    public var status: Status {
        var s = statusBox.withLock { $0 }
        s.usageDropped = usageDropped.load(ordering: .relaxed)
        return s
    }

    /// Starts publishing and listening. Returns at once: an unreachable Redis is retried every
    /// interval and logged once.
    public func start() {
        queue.async { self.tick() }
        let t = DispatchSource.makeTimerSource(queue: queue)
        let interval = configuration.publishIntervalSeconds
        t.schedule(deadline: .now() + interval, repeating: interval, leeway: .milliseconds(50))
        t.setEventHandler { [weak self] in self?.tick() }
        t.activate()
        timer = t
        subscriber.start { [weak self] message in
            guard let self else { return }
            self.queue.async { self.handle(message) }
        }
    }

    /// Stops: removes this node from the board (best effort) and closes the connections.
    public func stop() {
        subscriber.stop()
        queue.sync {
            timer?.cancel()
            timer = nil
            _ = try? run(["DEL", Keys.node(configuration.nodeID)])
            _ = try? run(["ZREM", Keys.nodes, configuration.nodeID])
            connection.close()
        }
    }

    // MARK: Publishing and reading (fleet queue)

    func tick() {
        dispatchPrecondition(condition: .onQueue(queue))
        do {
            try publish()
            try readBoard()
            try readBans()
            setUp(true)
        } catch {
            setUp(false, error)
        }
    }

    func publish() throws(RedisError) {
        var e = entry()
        e.updatedMilliseconds = FleetBoard.nowMilliseconds()
        guard let json = try? JSONEncoder().encode(e) else { return }
        let ttl = String(Int(configuration.publishIntervalSeconds * 3000))
        let previous = try run([
            Array("SET".utf8), Array(Keys.node(configuration.nodeID).utf8), Array(json),
            Array("PX".utf8), Array(ttl.utf8), Array("GET".utf8),
        ])
        if case .error(let reason) = previous { throw .reply(reason) }
        _ = try run(["ZADD", Keys.nodes, String(e.updatedMilliseconds), configuration.nodeID])
        if previous == .null, wasUp != nil {
            // Our entry was gone before its time: Redis restarted or was flushed. Everything
            // this node keeps in Redis must be written again.
            statusBox.withLock { $0.reregistrations &+= 1 }
            logger.notice("fleet: registered again", metadata: ["node": "\(configuration.nodeID)"])
            onReregister?(connection)
        }
    }

    func readBoard() throws(RedisError) {
        let now = FleetBoard.nowMilliseconds()
        let forget = now - Int64(configuration.publishIntervalSeconds * 10_000)
        _ = try run(["ZREMRANGEBYSCORE", Keys.nodes, "-inf", String(forget)])
        let ids = try run(["ZRANGE", Keys.nodes, "0", "255"]).elements.compactMap(\.text)
        guard !ids.isEmpty else {
            board.replace([])
            return
        }
        let values = try run(["MGET"] + ids.map(Keys.node))
        var entries: [BoardEntry] = []
        var invalid: UInt64 = 0
        for (id, value) in zip(ids, values.elements) {
            guard case .string(let bytes) = value else { continue }  // expired: the node is gone
            guard let e = try? JSONDecoder().decode(BoardEntry.self, from: Data(bytes)), e.isValid, e.node == id
            else {
                invalid &+= 1
                continue
            }
            entries.append(e)
        }
        if invalid > 0 { statusBox.withLock { $0.invalidEntries &+= invalid } }
        board.replace(entries)
    }

    func readBans() throws(RedisError) {
        let reply = try run(["HGETALL", Keys.bans])
        let items = reply.elements
        var records: [BanRecord] = []
        var invalid: UInt64 = 0
        let now = Int64(FleetBoard.nowMilliseconds() / 1000)
        var lapsed: [String] = []
        var i = 0
        while i + 1 < items.count {
            defer { i += 2 }
            guard case .string(let value) = items[i + 1], let field = items[i].text,
                let record = try? JSONDecoder().decode(BanRecord.self, from: Data(value)), record.cidr == field,
                record.prefix != nil
            else {
                invalid &+= 1
                continue
            }
            if record.isActive(now: now) { records.append(record) } else { lapsed.append(field) }
        }
        if !lapsed.isEmpty { _ = try run(["HDEL", Keys.bans] + lapsed) }
        if invalid > 0 { statusBox.withLock { $0.invalidEntries &+= invalid } }
        bans.replace(records, now: now)
    }

    // MARK: Bans (called from the admin endpoint)

    /// Records a ban in Redis and tells every node; also applies it here at once.
    public func ban(_ record: BanRecord) async throws(RedisError) {
        bans.add(record, now: record.createdAt)
        statusBox.withLock { $0.bansApplied &+= 1 }
        let json = (try? JSONEncoder().encode(record)).map { Array($0) } ?? []
        try await onQueue { () throws(RedisError) in
            _ = try self.run([Array("HSET".utf8), Array(Keys.bans.utf8), Array(record.cidr.utf8), json])
            _ = try self.run(["PUBLISH", Keys.events, "ban\t\(record.cidr)"])
        }
    }

    /// Writes the bans this node knows back to Redis (fleet queue), without replacing any Redis
    /// has: after Redis lost its data (a restart without persistence), fleet bans survive as long
    /// as one node is up. A ban removed meanwhile cannot come back: removing needs Redis.
    public func republishBans() {
        dispatchPrecondition(condition: .onQueue(queue))
        for record in bans.all {
            guard let json = try? JSONEncoder().encode(record) else { continue }
            _ = try? run([Array("HSETNX".utf8), Array(Keys.bans.utf8), Array(record.cidr.utf8), Array(json)])
        }
    }

    /// Removes a ban everywhere; whether it existed here.
    public func unban(_ cidr: String) async throws(RedisError) -> Bool {
        let found = bans.remove(cidr, now: Int64(FleetBoard.nowMilliseconds() / 1000))
        let removed = try await onQueue { () throws(RedisError) -> Bool in
            let n = try self.run(["HDEL", Keys.bans, cidr]).integer ?? 0
            _ = try self.run(["PUBLISH", Keys.events, "unban\t\(cidr)"])
            return n > 0
        }
        return found || removed
    }

    /// Publishes an event to every node (this one included).
    public func publishEvent(_ event: FleetEvent) async throws(RedisError) {
        try await onQueue { () throws(RedisError) in _ = try self.run(["PUBLISH", Keys.events, event.wire]) }
    }

    /// Runs `body` on the fleet queue and returns its result.
    public func onQueue<T: Sendable>(_ body: @escaping @Sendable () throws(RedisError) -> T) async throws(RedisError)
        -> T
    {
        let result: Result<T, RedisError> = await withCheckedContinuation { c in
            queue.async {
                do throws(RedisError) { c.resume(returning: .success(try body())) } catch {
                    self.setUp(false, error)
                    c.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }

    /// Runs one command on the fleet connection, timing it (fleet queue).
    public func run(_ arguments: [String]) throws(RedisError) -> RedisReply {
        try run(arguments.map { Array($0.utf8) })
    }

    /// Runs one command with raw arguments (fleet queue).
    public func run(_ arguments: [[UInt8]]) throws(RedisError) -> RedisReply {
        dispatchPrecondition(condition: .onQueue(queue))
        let start = DispatchTime.now().uptimeNanoseconds
        do {
            let reply = try connection.command(arguments)
            let micros = (DispatchTime.now().uptimeNanoseconds - start) / 1000
            statusBox.withLock {
                $0.commands &+= 1
                $0.latencyMicrosecondsSum &+= micros
            }
            return reply
        } catch {
            statusBox.withLock { $0.commandFailures &+= 1 }
            throw error
        }
    }

    func setUp(_ up: Bool, _ error: RedisError? = nil) {
        statusBox.withLock { $0.redisUp = up }
        if wasUp == up { return }
        if up {
            if wasUp == false {
                logger.notice("fleet: redis reachable again", metadata: ["redis": "\(configuration.redis)"])
                // Releases and increments made during the outage were not recorded: write back.
                onReregister?(connection)
            }
        } else {
            logger.warning(
                "fleet: redis unreachable, serving on this node's own state",
                metadata: [
                    "redis": "\(configuration.redis)", "reason": "\(error.map { "\($0)" } ?? "unknown")",
                    "on_redis_down": "\(configuration.onRedisDown.rawValue)",
                ])
        }
        wasUp = up
    }

    // MARK: Events (fleet queue)

    func handle(_ message: String) {
        statusBox.withLock { $0.eventsReceived &+= 1 }
        guard let event = FleetEvent(wire: message) else {
            statusBox.withLock { $0.invalidEntries &+= 1 }
            return
        }
        switch event {
        case .ban, .unban:
            do {
                try readBans()
                statusBox.withLock { $0.bansApplied &+= 1 }
            } catch {
                setUp(false, error)
            }
        default:
            onEvent?(event)
        }
    }
}

/// A message on `traverse:events`: tab-separated words.
public enum FleetEvent: Sendable, Equatable {
    case ban(String)
    case unban(String)
    /// End session `id` on node `node`.
    case kill(node: String, id: String)
    /// End every session of the user with this hash, on every node.
    case killUser(userHash: String)

    public init?(wire: String) {
        let parts = wire.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
        switch (parts.first, parts.count) {
        case ("ban", 2): self = .ban(parts[1])
        case ("unban", 2): self = .unban(parts[1])
        case ("kill", 3): self = .kill(node: parts[1], id: parts[2])
        case ("kill-user", 2): self = .killUser(userHash: parts[1])
        default: return nil
        }
    }

    public var wire: String {
        switch self {
        case .ban(let c): "ban\t\(c)"
        case .unban(let c): "unban\t\(c)"
        case .kill(let n, let id): "kill\t\(n)\t\(id)"
        case .killUser(let h): "kill-user\t\(h)"
        }
    }
}

/// The subscriber: its own connection on its own thread, blocked reading pushed messages.
/// Reconnects after any error; `stop` wakes it by shutting its socket down.
final class Subscriber: @unchecked Sendable {
    let endpoint: RedisEndpoint
    let channel: String
    /// The socket the thread is blocked on (so `stop` can shut it down), and whether to stop.
    private let handoff = Mutex<(fd: Int32?, stopped: Bool)>((nil, false))
    private var thread: Thread?

    init(endpoint: RedisEndpoint, channel: String) {
        self.endpoint = endpoint
        self.channel = channel
    }

    func start(_ deliver: @escaping @Sendable (String) -> Void) {
        let t = Thread { [self] in self.run(deliver) }
        t.name = "traverse.fleet.subscriber"
        thread = t
        t.start()
    }

    func stop() {
        handoff.withLock { h in
            h.stopped = true
            if let fd = h.fd { shutdown(fd, Int32(SHUT_RDWR)) }
        }
    }

    private func run(_ deliver: @escaping @Sendable (String) -> Void) {
        while !handoff.withLock({ $0.stopped }) {
            let c = RedisConnection(endpoint: endpoint)
            c.closesOnError = false  // closed below, only once `stop` can no longer see its descriptor
            do throws(RedisError) {
                try c.commandChecked(["SUBSCRIBE", channel])
                c.setBlocking(true)
                let ok = handoff.withLock { h -> Bool in
                    if h.stopped { return false }
                    h.fd = c.fileDescriptor
                    return true
                }
                if !ok { break }
                while true {
                    let reply = try c.nextPushed()
                    let parts = reply.elements
                    if parts.count == 3, parts[0].text == "message", let payload = parts[2].text { deliver(payload) }
                }
            } catch {
                handoff.withLock { $0.fd = nil }
                c.close()
                if handoff.withLock({ $0.stopped }) { break }
                usleep(500_000)
            }
        }
    }
}

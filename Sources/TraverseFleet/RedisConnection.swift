import CHiredis

#if canImport(Glibc)
    import Glibc
#endif

/// Where the fleet's Redis is: `redis://[:password@]host:port[/db]` (RFC 3986 form, as every
/// Redis client takes it). Only TCP; hiredis 0.14 has no TLS.
public struct RedisEndpoint: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var password: String?
    public var database: Int

    /// Parses a `redis://` URL; nil when it is not one.
    public init?(url: String) {
        guard url.hasPrefix("redis://") else { return nil }
        var rest = Substring(url.dropFirst("redis://".count))
        var database = 0
        if let slash = rest.firstIndex(of: "/") {
            let db = rest[rest.index(after: slash)...]
            if !db.isEmpty {
                guard let n = Int(db), (0...15).contains(n) else { return nil }
                database = n
            }
            rest = rest[..<slash]
        }
        var password: String? = nil
        if let at = rest.lastIndex(of: "@") {
            var credentials = rest[..<at]
            if credentials.hasPrefix(":") { credentials = credentials.dropFirst() }
            password = credentials.isEmpty ? nil : String(credentials)
            rest = rest[rest.index(after: at)...]
        }
        var host = rest
        var port = 6379
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { return nil }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = Int(after.dropFirst()) else { return nil }
                port = p
            } else if !after.isEmpty {
                return nil
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            guard let p = Int(rest[rest.index(after: colon)...]) else { return nil }
            port = p
        }
        guard !host.isEmpty, (1...65535).contains(port) else { return nil }
        self.host = String(host)
        self.port = port
        self.password = password
        self.database = database
    }

    /// The URL without the password (for logs).
    public var description: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return "redis://\(password == nil ? "" : ":***@")\(h):\(port)/\(database)"
    }
}

/// One Redis reply, copied out of hiredis's reply object.
public enum RedisReply: Sendable, Equatable {
    case string([UInt8])
    case status(String)
    case integer(Int64)
    case array([RedisReply])
    case null
    case error(String)

    /// The reply as text (bulk string or status).
    public var text: String? {
        switch self {
        case .string(let b): String(decoding: b, as: UTF8.self)
        case .status(let s): s
        default: nil
        }
    }

    /// The reply as an integer (integer, or a bulk string holding one).
    public var integer: Int64? {
        switch self {
        case .integer(let n): n
        case .string: text.flatMap { Int64($0) }
        default: nil
        }
    }

    /// The elements of an array reply (empty otherwise).
    public var elements: [RedisReply] {
        if case .array(let a) = self { return a }
        return []
    }
}

/// Why a Redis command failed: the connection (retry after reconnecting) or the command.
public enum RedisError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Not connected, or the connection broke (I/O error, timeout, EOF).
    case connection(String)
    /// Redis answered with an error reply.
    case reply(String)

    public var description: String {
        switch self {
        case .connection(let s): "redis connection: \(s)"
        case .reply(let s): "redis error: \(s)"
        }
    }
}

/// A blocking hiredis connection with connect and command timeouts.
///
/// Thread confinement: used by one thread at a time (the fleet queue, or the subscriber thread
/// that owns it); never from a shard's queue. After a connection error it is closed, and the
/// next command reconnects.
public final class RedisConnection {
    public let endpoint: RedisEndpoint
    let timeoutMilliseconds: Int
    private var context: UnsafeMutablePointer<redisContext>?

    /// Does not connect yet: the first command does.
    public init(endpoint: RedisEndpoint, timeoutMilliseconds: Int = 500) {
        self.endpoint = endpoint
        self.timeoutMilliseconds = timeoutMilliseconds
    }

    deinit { close() }

    /// Whether a connection is open (it may still turn out broken on the next command).
    public var isConnected: Bool { context != nil }

    /// When set, a broken connection stays open until `close` (the owner decides when the
    /// descriptor may be released: see `Subscriber`).
    var closesOnError = true

    /// The socket, while connected.
    var fileDescriptor: Int32? { context.map { $0.pointee.fd } }

    /// Connects (and authenticates, and selects the database) if not connected.
    public func connect() throws(RedisError) {
        if context != nil { return }
        let tv = timeval(tv_sec: timeoutMilliseconds / 1000, tv_usec: (timeoutMilliseconds % 1000) * 1000)
        guard let c = redisConnectWithTimeout(endpoint.host, Int32(endpoint.port), tv) else {
            throw .connection("cannot allocate a context")
        }
        if c.pointee.err != 0 {
            let reason = Self.errorText(c)
            redisFree(c)
            throw .connection(reason)
        }
        redisSetTimeout(c, tv)
        context = c
        do {
            if let password = endpoint.password { _ = try commandChecked(["AUTH", password]) }
            if endpoint.database != 0 { _ = try commandChecked(["SELECT", String(endpoint.database)]) }
        } catch {
            close()
            throw error
        }
    }

    /// Closes the connection.
    public func close() {
        if let c = context { redisFree(c) }
        context = nil
    }

    /// Shuts the socket down without freeing it, so that a thread blocked reading on it wakes up
    /// (the only call allowed from another thread).
    public func interrupt() {
        if let c = context { shutdown(c.pointee.fd, Int32(SHUT_RDWR)) }
    }

    /// Runs one command (arguments binary-safe); an error reply is returned as `.error`.
    public func command(_ arguments: [String]) throws(RedisError) -> RedisReply {
        try command(arguments.map { Array($0.utf8) })
    }

    /// Runs one command whose arguments are raw bytes.
    public func command(_ arguments: [[UInt8]]) throws(RedisError) -> RedisReply {
        try connect()
        guard let c = context else { throw .connection("not connected") }
        let raw = Self.withArgv(arguments) { argc, argv, lengths in redisCommandArgv(c, argc, argv, lengths) }
        return try take(raw)
    }

    /// Runs one command and turns an error reply into a thrown `.reply`.
    @discardableResult
    public func commandChecked(_ arguments: [String]) throws(RedisError) -> RedisReply {
        let reply = try command(arguments)
        if case .error(let e) = reply { throw .reply(e) }
        return reply
    }

    /// Reads the next reply pushed by the server (pub/sub), blocking up to the timeout.
    public func nextPushed() throws(RedisError) -> RedisReply {
        guard let c = context else { throw .connection("not connected") }
        var raw: UnsafeMutableRawPointer? = nil
        if redisGetReply(c, &raw) != REDIS_OK { return try take(nil) }
        return try take(raw)
    }

    /// Turns the read/write timeout off or back on (a subscriber blocks until a message comes).
    public func setBlocking(_ blocking: Bool) {
        guard let c = context else { return }
        let ms = blocking ? 0 : timeoutMilliseconds
        redisSetTimeout(c, timeval(tv_sec: ms / 1000, tv_usec: (ms % 1000) * 1000))
    }

    private func take(_ raw: UnsafeMutableRawPointer?) throws(RedisError) -> RedisReply {
        guard let raw else {
            let reason = context.map { Self.errorText($0) } ?? "no reply"
            if closesOnError { close() }
            throw .connection(reason)
        }
        defer { freeReplyObject(raw) }
        return Self.convert(raw.assumingMemoryBound(to: redisReply.self))
    }

    static func convert(_ r: UnsafeMutablePointer<redisReply>) -> RedisReply {
        let reply = r.pointee
        func bytes() -> [UInt8] {
            guard let s = reply.str, reply.len > 0 else { return [] }
            return Array(UnsafeRawBufferPointer(start: s, count: reply.len))
        }
        switch reply.type {
        case REDIS_REPLY_STRING: return .string(bytes())
        case REDIS_REPLY_STATUS: return .status(String(decoding: bytes(), as: UTF8.self))
        case REDIS_REPLY_ERROR: return .error(String(decoding: bytes(), as: UTF8.self))
        case REDIS_REPLY_INTEGER: return .integer(reply.integer)
        case REDIS_REPLY_ARRAY:
            var items: [RedisReply] = []
            items.reserveCapacity(reply.elements)
            for i in 0..<reply.elements {
                if let e = reply.element[i] { items.append(convert(e)) } else { items.append(.null) }
            }
            return .array(items)
        default: return .null
        }
    }

    static func errorText(_ c: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: c.pointee.errstr) { raw in
            let bytes = raw.prefix { $0 != 0 }
            return bytes.isEmpty ? "error \(c.pointee.err)" : String(decoding: bytes, as: UTF8.self)
        }
    }

    static func withArgv<R>(
        _ arguments: [[UInt8]],
        _ body: (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) -> R
    ) -> R {
        let total = arguments.reduce(0) { $0 + $1.count + 1 }
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: max(total, 1)) { storage in
            var argv = [UnsafePointer<CChar>?]()
            var lengths = [Int]()
            var offset = 0
            for a in arguments {
                let start = storage.baseAddress! + offset
                if !a.isEmpty {
                    a.withUnsafeBytes {
                        UnsafeMutableRawPointer(start).copyMemory(from: $0.baseAddress!, byteCount: a.count)
                    }
                }
                (start + a.count).pointee = 0
                argv.append(UnsafePointer(start))
                lengths.append(a.count)
                offset += a.count + 1
            }
            return argv.withUnsafeMutableBufferPointer { v in
                lengths.withUnsafeBufferPointer { l in body(Int32(arguments.count), v.baseAddress!, l.baseAddress!) }
            }
        }
    }
}

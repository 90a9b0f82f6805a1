import FlyingFox
import FlyingSocks
import Foundation
public import Logging
public import STUNCodec
import Synchronization

/// The admin HTTP listener (FlyingFox): `/metrics`, `/healthz`, `/readyz`, `/load`,
/// `POST /drain` and `POST /reload`, the fleet routes (`AdminServer+Fleet.swift`) and the
/// operator console (`Console/ConsoleRoutes.swift`). Every request must name the endpoint in `Host`, and a
/// state-changing one must not come from another origin (`AdminRequestPolicy`). With a token
/// configured, every request must carry `Authorization: Bearer <token>`; an address off loopback
/// is refused without one (see `ConfigurationLoader.validate`). Endpoints are described in
/// Docs/operations.md.
public final class AdminServer: Sendable {
    /// The address bound (port 0 resolved).
    public let address: TransportAddress
    private let http: HTTPServer
    private let task: Task<Void, any Error>
    private let log: FlyingFoxLogger

    /// Why the admin listener could not start.
    public struct StartError: Error, CustomStringConvertible {
        /// A one-line reason.
        public let description: String
    }

    private init(address: TransportAddress, http: HTTPServer, task: Task<Void, any Error>, log: FlyingFoxLogger) {
        self.address = address
        self.http = http
        self.task = task
        self.log = log
    }

    /// Binds `listen` and starts answering; returns once listening. Besides the bound address
    /// (and `localhost` on loopback), requests may name the endpoint by `allowedHosts`.
    public static func start(
        operations: Operations, listen: TransportAddress, token: String?, allowedHosts: [String] = [],
        logger: Logger
    ) async throws(StartError) -> AdminServer {
        let socketAddress: any SocketAddress
        do {
            socketAddress =
                listen.family == .ipv4
                ? try sockaddr_in.inet(ip4: "\(listen.ip)", port: listen.port)
                : try sockaddr_in6.inet6(ip6: "\(listen.ip)", port: listen.port)
        } catch {
            throw StartError(description: "admin.listen: cannot use \(listen): \(error)")
        }
        let log = FlyingFoxLogger(logger: logger)
        let http = HTTPServer(config: .init(address: socketAddress, timeout: 10, logger: log))
        // The policy needs the bound port (port 0 is resolved once listening); until then
        // every request is refused.
        let policy = PolicyHolder()
        await routes(http, operations: operations, token: token, policy: policy, logger: logger)

        let failure = Mutex<String?>(nil)
        let task = Task {
            do {
                try await http.run()
            } catch {
                failure.withLock { $0 = "\(error)" }
                throw error
            }
        }
        for _ in 0..<500 {
            if let bound = await http.listeningAddress, let address = transportAddress(bound) {
                policy.set(AdminRequestPolicy(bound: address, allowedHosts: allowedHosts))
                logger.info("admin listening", metadata: ["address": "\(address)"])
                return AdminServer(address: address, http: http, task: task, log: log)
            }
            if let reason = failure.withLock({ $0 }) {
                throw StartError(description: "admin.listen: cannot listen on \(listen): \(reason)")
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
        task.cancel()
        throw StartError(description: "admin.listen: \(listen) did not start listening")
    }

    /// Closes the listener.
    public func stop() async {
        log.silence()  // FlyingFox reports the closed socket as a critical error.
        await http.stop(timeout: 0)
        task.cancel()
    }

    static func transportAddress(_ a: Socket.Address) -> TransportAddress? {
        switch a {
        case .ip4(let ip, let port): TransportAddress("\(ip):\(port)")
        case .ip6(let ip, let port): TransportAddress("[\(ip)]:\(port)")
        case .unix: nil
        }
    }

    // MARK: Routes

    static func routes(
        _ http: HTTPServer, operations ops: Operations, token: String?, policy: PolicyHolder,
        logger: Logger
    ) async {
        let expected = token.map { Array("Bearer \($0)".utf8) }

        /// Wraps a handler with the Host, Origin and header checks, then the bearer-token check.
        func guarded(_ handler: @escaping @Sendable (HTTPRequest) async -> HTTPResponse)
            -> @Sendable (HTTPRequest) async throws -> HTTPResponse
        {
            checked(token: true, handler)
        }

        /// The Host, Origin and header checks, then (when `token`) the bearer-token check.
        func checked(token checksToken: Bool, _ handler: @escaping @Sendable (HTTPRequest) async -> HTTPResponse)
            -> @Sendable (HTTPRequest) async throws -> HTTPResponse
        {
            { request in
                let verdict =
                    policy.current?.check(
                        method: request.method.rawValue, host: request.headers[.host],
                        origin: request.headers[HTTPHeader("Origin")],
                        hasAdminHeader: request.headers[HTTPHeader(AdminRequestPolicy.requiredHeader)] != nil)
                    ?? .refuse(status: 503, reason: "starting")
                if case .refuse(let status, let reason) = verdict {
                    return text(HTTPStatusCode(status, phrase: phrase(status)), "\(reason)\n")
                }
                if checksToken, let expected {
                    let given = Array((request.headers[.authorization] ?? "").utf8)
                    guard constantTimeEqual(given, expected) else {
                        var headers = HTTPHeaders()
                        headers[HTTPHeader("WWW-Authenticate")] = "Bearer realm=\"traverse-admin\""
                        return text(.unauthorized, "unauthorized\n", headers: headers)
                    }
                }
                return await handler(request)
            }
        }

        await http.appendRoute("GET /healthz", handler: guarded { _ in text(.ok, "ok\n") })
        await http.appendRoute(
            "GET /readyz",
            handler: guarded { _ in
                if let reason = ops.notReadyReason { return text(.serviceUnavailable, "not ready: \(reason)\n") }
                return text(.ok, "ready\n")
            })
        await http.appendRoute(
            "GET /metrics",
            handler: guarded { _ in
                var headers = HTTPHeaders()
                headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
                return HTTPResponse(statusCode: .ok, headers: headers, body: Data(await ops.scrape().utf8))
            })
        await http.appendRoute(
            "GET /load",
            handler: guarded { _ in
                json(.ok, await ops.loadReport().encoded() + "\n")
            })
        await http.appendRoute(
            "POST /drain",
            handler: guarded { _ in
                let started = ops.startDrain(trigger: "http")
                return answer(
                    .accepted,
                    DrainAnswer(draining: true, started: started, allocations: ops.server.shared.allocationCount))
            })
        await http.appendRoute(
            "POST /reload",
            handler: guarded { _ in
                switch ops.reload(trigger: "http") {
                case .success:
                    // Answered once every shard applied the new policy (and removed what it
                    // denies from the fast path): a datagram sent after the answer meets it.
                    await ops.server.relay.sweepNow()
                    return answer(.ok, ReloadAnswer(reloaded: true))
                case .failure(let e): return answer(.badRequest, ReloadAnswer(reloaded: false, reason: e.description))
                }
            })
        await fleetRoutes(http, operations: ops, token: token, guarded: guarded)
        await consoleRoutes(
            http, operations: ops, token: token, guarded: guarded, page: { checked(token: false, $0) })
        await http.appendRoute(
            "*",
            handler: guarded { _ in
                text(
                    .notFound,
                    "not found: try / (the console), /metrics, /healthz, /readyz, /load, /fleet, /bans, /sessions\n")
            })
    }

    static func text(_ status: HTTPStatusCode, _ body: String, headers: HTTPHeaders = HTTPHeaders()) -> HTTPResponse {
        var headers = headers
        headers[.contentType] = "text/plain; charset=utf-8"
        return HTTPResponse(statusCode: status, headers: headers, body: Data(body.utf8))
    }

    /// The reason phrase of a status `AdminRequestPolicy` refuses with.
    static func phrase(_ status: Int) -> String {
        switch status {
        case 400: "Bad Request"
        case 403: "Forbidden"
        case 421: "Misdirected Request"
        default: "Service Unavailable"
        }
    }

    static func json(_ status: HTTPStatusCode, _ body: String) -> HTTPResponse {
        var headers = HTTPHeaders()
        headers[.contentType] = "application/json"
        return HTTPResponse(statusCode: status, headers: headers, body: Data(body.utf8))
    }

    /// Compares without an early exit, so the time taken does not reveal the matching prefix.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.withUnsafeBytes { x in b.withUnsafeBytes { y in STUNDigest.constantTimeEqual(x, y) } }
    }
}

/// The request policy once the listener is bound (nil before).
final class PolicyHolder: Sendable {
    private let value = Mutex<AdminRequestPolicy?>(nil)
    var current: AdminRequestPolicy? { value.withLock { $0 } }
    func set(_ policy: AdminRequestPolicy) { value.withLock { $0 = policy } }
}

/// FlyingFox's log lines, forwarded to swift-log: warnings and worse only (its debug and info
/// lines name client addresses, which Traverse keeps out of its logs).
/// Silenced once the listener is being stopped on purpose.
final class FlyingFoxLogger: FlyingSocks.Logging {
    let logger: Logger
    private let silenced = Atomic<Bool>(false)

    init(logger: Logger) { self.logger = logger }

    func silence() { silenced.store(true, ordering: .relaxed) }

    func logDebug(_ debug: @autoclosure () -> String) {}
    func logInfo(_ info: @autoclosure () -> String) {}
    func logWarning(_ warning: @autoclosure () -> String) {
        if !silenced.load(ordering: .relaxed) { logger.warning("admin http: \(Self.redacted(warning()))") }
    }
    func logError(_ error: @autoclosure () -> String) {
        if !silenced.load(ordering: .relaxed) { logger.error("admin http: \(Self.redacted(error()))") }
    }
    func logCritical(_ critical: @autoclosure () -> String) {
        if !silenced.load(ordering: .relaxed) { logger.error("admin http: \(Self.redacted(critical()))") }
    }

    /// FlyingFox starts its lines with the client's address (`<203.0.113.7> error: …`): logs never
    /// carry client addresses unredacted, so that part is dropped.
    static func redacted(_ line: String) -> String {
        guard line.hasPrefix("<"), let end = line.firstIndex(of: ">") else { return line }
        return "<client>" + line[line.index(after: end)...]
    }
}

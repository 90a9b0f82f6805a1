import Dispatch
import Foundation
import Logging
import STUNCodec
import TURNCore
import Testing
import TraverseOps

#if canImport(Glibc)
    import Glibc
#endif

/// A server with its admin endpoint, both on loopback ephemeral ports, stopped by `close()`.
final class AdminFixture: Sendable {
    let server: TraverseServer
    let operations: Operations
    let admin: AdminServer
    let token: String?
    /// The 1 s sampler, as `SamplerService` runs it in `traverse serve`.
    let sampler: Task<Void, Never>

    init(
        token: String? = nil, source: Operations.ConfigurationSource? = nil, alternate: Bool = false,
        allowedHosts: [String] = [], secrets: [String] = []
    ) async throws {
        var c = TraverseConfiguration()
        c.listen = [TransportAddress("127.0.0.1:0")!]
        c.relayAddresses = [IPAddress("127.0.0.1")!]
        c.users = ["alice": "wonderland"]
        c.shards = 1
        c.stateDirectory = "/tmp/traverse-ops-tests"
        c.adminListen = TransportAddress("127.0.0.1:0")!
        c.adminToken = token
        c.secrets = secrets
        if alternate { c.alternateServers = [TransportAddress("192.0.2.1:3478")!] }
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        server = try TraverseServer(configuration: c, logger: logger)
        operations = Operations(server: server, source: source, logger: logger)
        admin = try await AdminServer.start(
            operations: operations, listen: c.adminListen!, token: token, allowedHosts: allowedHosts, logger: logger)
        self.token = token
        sampler = Task { [operations] in await operations.runSampler() }
    }

    func get(_ path: String, token: String? = nil) async throws -> AdminClient.Response {
        try await AdminClient.fetch("GET", path, to: admin.address, token: token ?? self.token)
    }

    func post(_ path: String) async throws -> AdminClient.Response {
        try await AdminClient.fetch("POST", path, to: admin.address, token: token)
    }

    func close() async {
        await admin.stop()
        sampler.cancel()
        operations.shutdown()
        server.stop()
    }
}

/// `sendBinding` on a Dispatch thread (blocking calls stay off the cooperative pool).
func binding(to address: TransportAddress) async -> Bool {
    await withCheckedContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(returning: sendBinding(to: address)) }
    }
}

/// Sends one STUN Binding request to `to` over UDP and waits for the answer.
func sendBinding(to address: TransportAddress) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    defer { close(fd) }
    var tv = timeval(tv_sec: 2, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var request: [UInt8] = [0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42]
    for i in 0..<12 { request.append(UInt8(i + 1)) }
    guard case .v4(let ip) = address.ip else { return false }
    var sin = sockaddr_in()
    sin.sin_family = sa_family_t(AF_INET)
    sin.sin_port = address.port.bigEndian
    sin.sin_addr.s_addr = ip.bigEndian
    let sent = withUnsafePointer(to: &sin) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
            request.withUnsafeBytes {
                sendto(fd, $0.baseAddress, $0.count, 0, sa, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }
    guard sent == request.count else { return false }
    var answer = [UInt8](repeating: 0, count: 1500)
    let n = answer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
    return n >= 20 && answer[0] == 0x01 && answer[1] == 0x01
}

/// Sends `request` verbatim (a whole HTTP/1.1 request, as a browser or an attacker would write
/// it) to `address` and returns the status code and the answer, on a Dispatch thread.
func rawRequest(_ request: String, to address: TransportAddress) async -> (status: Int, text: String)? {
    await withCheckedContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(returning: sendRaw(request, to: address)) }
    }
}

func sendRaw(_ request: String, to address: TransportAddress) -> (status: Int, text: String)? {
    guard case .v4(let ip) = address.ip else { return nil }
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var tv = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var sin = sockaddr_in()
    sin.sin_family = sa_family_t(AF_INET)
    sin.sin_port = address.port.bigEndian
    sin.sin_addr.s_addr = ip.bigEndian
    let connected = withUnsafePointer(to: &sin) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    guard connected == 0 else { return nil }
    let bytes = Array(request.utf8)
    guard bytes.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == bytes.count else {
        return nil
    }
    // Read the head and whatever body came with it (the answers here are small).
    var data: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { break }
        data += buffer[0..<n]
        let text = String(decoding: data, as: UTF8.self)
        if let head = text.range(of: "\r\n\r\n") {
            let length =
                text[..<head.lowerBound].split(separator: "\r\n").first {
                    $0.lowercased().hasPrefix("content-length:")
                }.flatMap { Int($0.split(separator: ":")[1].filter { $0 != " " }) } ?? 0
            if text.utf8.count - text.utf8.distance(from: text.startIndex, to: head.upperBound) >= length { break }
        }
    }
    let text = String(decoding: data, as: UTF8.self)
    let first = text.split(separator: "\r\n").first?.split(separator: " ") ?? []
    guard first.count >= 2, let status = Int(first[1]) else { return nil }
    return (status, text)
}

func value(_ metrics: String, _ series: String) -> Double? {
    MetricSample.parse(metrics).first { s in
        let labels = s.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\"\($0.value)\"" }.joined(separator: ",")
        return (labels.isEmpty ? s.name : "\(s.name){\(labels)}") == series
    }?.value
}

@Suite("Admin endpoint", .serialized)
struct AdminEndpointTests {
    @Test func healthzAnswers200() async throws {
        let f = try await AdminFixture()
        let r = try await f.get("/healthz")
        #expect(r.status == 200)
        #expect(r.body == "ok\n")
        await f.close()
    }

    @Test func readyzFlipsWithCapacityAndDraining() async throws {
        let f = try await AdminFixture()
        #expect(try await f.get("/readyz").status == 200)
        f.server.shared.setCapacityOverride(0)
        let full = try await f.get("/readyz")
        #expect(full.status == 503)
        #expect(full.body.contains("full"))
        f.server.shared.setCapacityOverride(-1)
        #expect(try await f.get("/readyz").status == 200)
        f.server.shared.setDraining(true)
        let draining = try await f.get("/readyz")
        #expect(draining.status == 503)
        #expect(draining.body.contains("draining"))
        await f.close()
    }

    @Test func postDrainStartsDraining() async throws {
        let f = try await AdminFixture()
        let r = try await f.post("/drain")
        #expect(r.status == 202)
        #expect(f.server.shared.isDraining)
        #expect(try await f.get("/readyz").status == 503)
        let outcome = await f.operations.drain(trigger: "test", timeout: 1)
        #expect(outcome == .drained)
        await f.close()
    }

    @Test func getIsNotEnoughForDrain() async throws {
        let f = try await AdminFixture()
        #expect(try await f.get("/drain").status == 404)
        #expect(!f.server.shared.isDraining)
        await f.close()
    }

    @Test func loadReportsEveryField() async throws {
        let f = try await AdminFixture()
        let r = try await f.get("/load")
        #expect(r.status == 200)
        #expect(r.headers["content-type"] == "application/json")
        for key in [
            "allocations", "capacity", "bits_per_second_in", "bits_per_second_out", "packets_per_second_in",
            "packets_per_second_out", "cpu", "cores", "load", "draining", "window_seconds",
        ] {
            #expect(r.body.contains("\"\(key)\""), "missing \(key) in \(r.body)")
        }
        let report = try #require(LoadReport.decode(r.body))
        #expect(report.allocations == 0)
        #expect(report.capacity == 10_000)
        #expect(report.load >= 0 && report.load <= 1)
        f.server.shared.setCapacityOverride(0)
        #expect(LoadReport.decode(try await f.get("/load").body)?.load == 1)
        await f.close()
    }

    @Test func metricsNameEverySeries() async throws {
        let f = try await AdminFixture()
        let r = try await f.get("/metrics")
        #expect(r.status == 200)
        #expect(r.headers["content-type"]?.hasPrefix("text/plain") == true)
        for name in [
            "traverse_allocations_active{family=\"ipv4\"}", "traverse_allocations_created_total{family=\"ipv4\"}",
            "traverse_error_responses_total{code=\"508\"}", "traverse_auth_failures_total{reason=\"bad_integrity\"}",
            "traverse_relayed_packets_total{direction=\"client_to_peer\",path=\"channel\"}",
            "traverse_relayed_bytes_total{direction=\"peer_to_client\",path=\"indication\"}",
            "traverse_dropped_total{reason=\"no_permission\"}", "traverse_stun_requests_total{method=\"binding\"}",
            "traverse_relay_ports_free{family=\"ipv4\"}", "traverse_kernel_socket_drops_total",
            "process_cpu_seconds_total", "process_resident_memory_bytes", "traverse_allocations_capacity",
            "traverse_draining", "traverse_load_score", "traverse_config_reloads_total{result=\"ok\"}",
            "# TYPE traverse_allocation_duration_seconds histogram",
        ] {
            #expect(r.body.contains(name), "missing \(name)")
        }
        #expect(value(r.body, "traverse_relay_ports_free{family=\"ipv4\"}") == 16384)
        #expect((value(r.body, "process_resident_memory_bytes") ?? 0) > 1_000_000)
        await f.close()
    }

    @Test func metricsCountBindingRequests() async throws {
        let f = try await AdminFixture()
        let udp = try #require(f.server.udpAddresses.first)
        for _ in 0..<3 { #expect(await binding(to: udp)) }
        let first = try await f.get("/metrics").body
        #expect(value(first, "traverse_stun_requests_total{method=\"binding\"}") == 3)
        // A second scrape publishes only what changed since the first.
        #expect(await binding(to: udp))
        let second = try await f.get("/metrics").body
        #expect(value(second, "traverse_stun_requests_total{method=\"binding\"}") == 4)
        await f.close()
    }

    @Test func bearerTokenIsRequiredWhenConfigured() async throws {
        let f = try await AdminFixture(token: "s3cret")
        for path in ["/healthz", "/readyz", "/metrics", "/load"] {
            let missing = try await AdminClient.fetch("GET", path, to: f.admin.address)
            #expect(missing.status == 401, "\(path) without a token")
            #expect(missing.headers["www-authenticate"]?.hasPrefix("Bearer") == true)
            #expect(try await f.get(path, token: "wrong").status == 401, "\(path) with a wrong token")
            #expect(try await f.get(path).status == 200, "\(path) with the token")
        }
        let drain = try await AdminClient.fetch("POST", "/drain", to: f.admin.address)
        #expect(drain.status == 401)
        #expect(!f.server.shared.isDraining)
        await f.close()
    }

    @Test func reloadAppliesOrRefuses() async throws {
        let good = try await AdminFixture(source: {
            var c = TraverseConfiguration()
            c.users = ["bob": "builder"]
            c.drainTimeout = 7
            return c
        })
        let ok = try await good.post("/reload")
        #expect(ok.status == 200)
        #expect(good.server.shared.policy.credentials.users["bob"] != nil)
        #expect(good.operations.configuration.drainTimeout == 7)
        #expect(value(try await good.get("/metrics").body, "traverse_config_reloads_total{result=\"ok\"}") == 1)
        await good.close()

        let bad = try await AdminFixture(source: { () throws(ConfigurationError) in
            throw ConfigurationError(key: "auth.users_file", reason: "cannot read /nonexistent")
        })
        let refused = try await bad.post("/reload")
        #expect(refused.status == 400)
        #expect(refused.body.contains("auth.users_file"))
        #expect(bad.server.shared.policy.credentials.users["alice"] != nil)
        #expect(value(try await bad.get("/metrics").body, "traverse_config_reloads_total{result=\"refused\"}") == 1)
        await bad.close()
    }

    @Test func unknownPathIs404() async throws {
        let f = try await AdminFixture()
        #expect(try await f.get("/nope").status == 404)
        await f.close()
    }

    @Test func offLoopbackNeedsAToken() {
        var c = TraverseConfiguration()
        c.adminListen = TransportAddress("0.0.0.0:9641")!
        #expect(throws: ConfigurationError.self) { try ConfigurationLoader.validate(c) }
        c.adminToken = "t"
        #expect(throws: Never.self) { try ConfigurationLoader.validate(c) }
    }
}

/// Issue 10, part 3: a web page in a browser on the host must neither act on the endpoint
/// (cross-site POST) nor read it (DNS rebinding), while Prometheus, curl and `traverse top` work.
@Suite("Admin endpoint: cross-site requests", .serialized)
struct AdminCrossSiteTests {
    func get(_ path: String, host: String) -> String {
        "GET \(path) HTTP/1.1\r\nHost: \(host)\r\nConnection: close\r\n\r\n"
    }

    @Test func foreignHostIs421() async throws {
        let f = try await AdminFixture()
        let port = f.admin.address.port
        for host in ["evil.example:\(port)", "evil.example", "127.0.0.2:\(port)", "127.0.0.1:\(port + 1)"] {
            let r = try #require(await rawRequest(get("/healthz", host: host), to: f.admin.address))
            #expect(r.status == 421, "Host: \(host)")
        }
        await f.close()
    }

    @Test func dnsRebindingCannotReadMetrics() async throws {
        // After rebinding, the attacker's page talks to 127.0.0.1 under its own name.
        let f = try await AdminFixture()
        let r = try #require(
            await rawRequest(
                get("/metrics", host: "rebind.attacker.example:\(f.admin.address.port)"), to: f.admin.address)
        )
        #expect(r.status == 421)
        #expect(!r.text.contains("traverse_"))
        await f.close()
    }

    @Test func ownNamesAreAccepted() async throws {
        let f = try await AdminFixture(allowedHosts: ["relay-1.internal", "metrics.example:8443"])
        let port = f.admin.address.port
        for host in [
            "127.0.0.1:\(port)", "localhost:\(port)", "LOCALHOST:\(port)", "relay-1.internal:\(port)",
            "metrics.example:8443",
        ] {
            let r = try #require(await rawRequest(get("/metrics", host: host), to: f.admin.address))
            #expect(r.status == 200, "Host: \(host)")
            #expect(r.text.contains("traverse_allocations_active"))
        }
        #expect(
            try #require(await rawRequest(get("/metrics", host: "relay-1.internal:1"), to: f.admin.address)).status
                == 421)
        let noHost = try #require(await rawRequest("GET /healthz HTTP/1.0\r\n\r\n", to: f.admin.address))
        #expect(noHost.status == 400)
        await f.close()
    }

    @Test func crossOriginPostIs403() async throws {
        let f = try await AdminFixture()
        let host = "127.0.0.1:\(f.admin.address.port)"
        for origin in ["http://evil.example", "null", "http://127.0.0.1:\(f.admin.address.port + 1)", "file://"] {
            let request =
                "POST /drain HTTP/1.1\r\nHost: \(host)\r\nOrigin: \(origin)\r\nX-Traverse-Admin: 1\r\n"
                + "Content-Length: 0\r\nConnection: close\r\n\r\n"
            let r = try #require(await rawRequest(request, to: f.admin.address))
            #expect(r.status == 403, "Origin: \(origin)")
        }
        #expect(!f.server.shared.isDraining)
        await f.close()
    }

    @Test func simplePostWithoutTheHeaderIsRefused() async throws {
        // What a <form> or fetch(..., {mode: "no-cors"}) sends without a preflight.
        let f = try await AdminFixture()
        let host = "127.0.0.1:\(f.admin.address.port)"
        for path in ["/drain", "/reload"] {
            let request =
                "POST \(path) HTTP/1.1\r\nHost: \(host)\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
                + "Connection: close\r\n\r\nhi"
            let r = try #require(await rawRequest(request, to: f.admin.address))
            #expect(r.status == 403, "\(path)")
            #expect(r.text.contains("X-Traverse-Admin"))
        }
        #expect(!f.server.shared.isDraining)
        #expect(value(try await f.get("/metrics").body, "traverse_config_reloads_total{result=\"refused\"}") == 0)
        await f.close()
    }

    @Test func theRightRequestIsServed() async throws {
        let f = try await AdminFixture(source: { TraverseConfiguration() })
        let host = "localhost:\(f.admin.address.port)"
        // A first-party page (same origin) and a client without Origin (curl) may act.
        let reload =
            "POST /reload HTTP/1.1\r\nHost: \(host)\r\nOrigin: http://\(host)\r\nX-Traverse-Admin: 1\r\n"
            + "Content-Length: 0\r\nConnection: close\r\n\r\n"
        let reloaded = try #require(await rawRequest(reload, to: f.admin.address))
        #expect(reloaded.status == 200, "\(reloaded.text)")
        let drain =
            "POST /drain HTTP/1.1\r\nHost: \(host)\r\nX-Traverse-Admin: 1\r\nContent-Length: 0\r\n"
            + "Connection: close\r\n\r\n"
        #expect(try #require(await rawRequest(drain, to: f.admin.address)).status == 202)
        #expect(f.server.shared.isDraining)
        await f.close()
    }

    @Test func policyRules() {
        let p = AdminRequestPolicy(bound: TransportAddress("[::1]:9641")!, allowedHosts: ["relay.example"])
        #expect(p.check(method: "GET", host: "[::1]:9641", origin: nil, hasAdminHeader: false) == .allow)
        #expect(p.check(method: "GET", host: "[0:0::1]:9641", origin: nil, hasAdminHeader: false) == .allow)
        #expect(p.check(method: "GET", host: "localhost:9641", origin: nil, hasAdminHeader: false) == .allow)
        #expect(p.check(method: "GET", host: "relay.example.:9641", origin: nil, hasAdminHeader: false) == .allow)
        #expect(p.check(method: "GET", host: "relay.example", origin: nil, hasAdminHeader: false) != .allow)
        #expect(p.check(method: "GET", host: "127.0.0.1:9641", origin: nil, hasAdminHeader: false) != .allow)
        #expect(p.check(method: "GET", host: nil, origin: nil, hasAdminHeader: false) != .allow)
        #expect(
            p.check(method: "POST", host: "[::1]:9641", origin: "http://relay.example:9641", hasAdminHeader: true)
                == .allow)
        #expect(
            p.check(method: "DELETE", host: "[::1]:9641", origin: "https://relay.example", hasAdminHeader: true)
                != .allow)
        #expect(p.check(method: "PUT", host: "[::1]:9641", origin: nil, hasAdminHeader: false) != .allow)
        // Bound to a wildcard: any IP literal of the family with the port (literals cannot be rebound).
        let any = AdminRequestPolicy(bound: TransportAddress("0.0.0.0:9641")!)
        #expect(any.check(method: "GET", host: "10.1.2.3:9641", origin: nil, hasAdminHeader: false) == .allow)
        #expect(any.check(method: "GET", host: "10.1.2.3:80", origin: nil, hasAdminHeader: false) != .allow)
        #expect(any.check(method: "GET", host: "[::1]:9641", origin: nil, hasAdminHeader: false) != .allow)
        #expect(any.check(method: "GET", host: "relay.example:9641", origin: nil, hasAdminHeader: false) != .allow)
        // Port 80: a Host without a port means 80.
        let eighty = AdminRequestPolicy(bound: TransportAddress("127.0.0.1:80")!)
        #expect(eighty.check(method: "GET", host: "127.0.0.1", origin: nil, hasAdminHeader: false) == .allow)
    }
}

/// Issue 14: the operator console on the admin endpoint. The pages are static and served
/// without the token (a browser cannot attach one to a navigation); everything with data needs
/// it; the Host, Origin and header checks apply to every console route as to the others.
@Suite("Admin endpoint: console", .serialized)
struct AdminConsoleTests {
    static let pages = ["/", "/console/fleet", "/console/sessions", "/check"]
    static let dataRoutes = ["/console/live.json", "/console/fleet.json", "/console/check.json"]

    func request(
        _ method: String, _ path: String, host: String, headers: [String] = [], body: String = ""
    ) -> String {
        "\(method) \(path) HTTP/1.1\r\nHost: \(host)\r\n" + headers.map { "\($0)\r\n" }.joined()
            + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
    }

    @Test func pagesCarryTheSecurityHeadersAndNoInlineScript() async throws {
        let f = try await AdminFixture()
        for path in Self.pages {
            let r = try await f.get(path)
            #expect(r.status == 200, "\(path)")
            #expect(r.headers["content-type"] == "text/html; charset=utf-8")
            let csp = r.headers["content-security-policy"] ?? ""
            for directive in ["default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'"]
            {
                #expect(csp.contains(directive), "\(path): \(csp)")
            }
            #expect(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"))
            #expect(r.headers["x-frame-options"] == "DENY")
            #expect(r.headers["x-content-type-options"] == "nosniff")
            // Every script is a file of this endpoint; no inline script, handler or style.
            let scripts = r.body.components(separatedBy: "<script").dropFirst()
            #expect(!scripts.isEmpty)
            for tag in scripts {
                #expect(tag.hasPrefix(" src=\"/console/assets/"), "\(path): <script\(tag.prefix(60))")
            }
            #expect(!r.body.contains(" style=") && !r.body.contains("<style") && !r.body.contains(" onclick="))
            // Each referenced asset is served, with its type.
            for name in ["console.css", "common.js", "live.js", "fleet.js", "sessions.js", "check.js"]
            where r.body.contains("/console/assets/\(name)") {
                let asset = try await f.get("/console/assets/\(name)")
                #expect(asset.status == 200, "\(name)")
                #expect(
                    asset.headers["content-type"]?.hasPrefix(name.hasSuffix(".js") ? "text/javascript" : "text/css")
                        == true)
                #expect(asset.headers["content-security-policy"] != nil)
            }
        }
        await f.close()
    }

    @Test func dataNeedsTheTokenAndThePagesShowNoneWithout() async throws {
        let f = try await AdminFixture(token: "s3cret", secrets: ["rest-secret"])
        for path in Self.pages + ["/console/assets/common.js"] {
            let r = try await AdminClient.fetch("GET", path, to: f.admin.address)
            #expect(r.status == 200, "\(path) is static")
            #expect(!r.body.contains("s3cret") && !r.body.contains("rest-secret"))
        }
        for path in Self.dataRoutes {
            let missing = try await AdminClient.fetch("GET", path, to: f.admin.address)
            #expect(missing.status == 401, "\(path) without a token")
            #expect(missing.headers["www-authenticate"]?.hasPrefix("Bearer") == true)
            #expect(try await f.get(path, token: "wrong").status == 401, "\(path) with a wrong token")
            #expect(try await f.get(path).status == 200, "\(path) with the token")
        }
        let mint = try await AdminClient.fetch("POST", "/console/credential", to: f.admin.address)
        #expect(mint.status == 401)
        #expect(!mint.body.contains("password"))
        #expect(try await f.post("/console/credential").status == 200)
        await f.close()
    }

    @Test func foreignHostAndCrossOriginAreRefused() async throws {
        let f = try await AdminFixture(secrets: ["rest-secret"])
        let own = "127.0.0.1:\(f.admin.address.port)"
        for path in Self.pages + Self.dataRoutes + ["/console/assets/common.js", "/console/assets/chart.min.js"] {
            let r = try #require(
                await rawRequest(
                    request("GET", path, host: "evil.example:\(f.admin.address.port)"), to: f.admin.address))
            #expect(r.status == 421, "\(path)")
            #expect(!r.text.contains("<html") && !r.text.contains("\"t\""))
        }
        // Minting a credential is a state change: same origin and X-Traverse-Admin, or nothing.
        for (headers, expected) in [
            (["Origin: http://evil.example", "X-Traverse-Admin: 1"], 403),
            (["Origin: null", "X-Traverse-Admin: 1"], 403),
            (["Content-Type: text/plain"], 403),
            (["Origin: http://\(own)", "X-Traverse-Admin: 1"], 200),
        ] {
            let r = try #require(
                await rawRequest(
                    request("POST", "/console/credential", host: own, headers: headers), to: f.admin.address))
            #expect(r.status == expected, "\(headers)")
            #expect(r.text.contains("\"password\"") == (expected == 200))
        }
        // A CORS preflight is never granted.
        let preflight = try #require(
            await rawRequest(
                request(
                    "OPTIONS", "/console/credential", host: own,
                    headers: ["Origin: http://evil.example", "Access-Control-Request-Method: POST"]),
                to: f.admin.address))
        #expect(!preflight.text.lowercased().contains("access-control-allow"))
        await f.close()
    }

    @Test func malformedRequestsAreAnsweredAndTheEndpointStaysUp() async throws {
        let f = try await AdminFixture()
        let host = "127.0.0.1:\(f.admin.address.port)"
        for (path, status) in [
            ("/console/live.json?since=abc", 400), ("/console/live.json?since=-5", 400),
            ("/console/live.json?since=99999999999999999999999", 400), ("/console/live.json?since=9999999999999", 200),
            ("/console/assets/nope.js", 404), ("/console/assets/", 404), ("/console/assets/../../etc/passwd", 404),
            ("/console/assets/%2e%2e/%2e%2e/etc/passwd", 404), ("/console/assets/common.js%00", 404),
            ("/console/nope", 404), ("/console", 404), ("/check/../etc/shadow", 404),
        ] {
            let r = try #require(await rawRequest(request("GET", path, host: host), to: f.admin.address), "\(path)")
            #expect(r.status == status, "\(path): \(r.text.prefix(200))")
            #expect(!r.text.contains("root:"))
        }
        let empty = try await f.get("/console/live.json?since=9999999999999")
        #expect(empty.body.contains("\"t\":[]"))
        // Garbage that is not HTTP, a truncated head, an oversized header, a wrong method.
        for garbage in [
            "\u{16}\u{03}\u{01}\u{02}\u{00}", "GET /console/live.json HTTP/1.1\r\nHost: \(host)\r\n",
            "GET / HTTP/1.1\r\nHost: \(host)\r\nX-Big: \(String(repeating: "a", count: 70_000))\r\n\r\n",
            "BREW /console/live.json HTTP/1.1\r\nHost: \(host)\r\n\r\n", "GET\r\n\r\n",
        ] {
            _ = await rawRequest(garbage, to: f.admin.address)
        }
        for method in ["PUT", "DELETE", "PATCH"] {
            let r = try #require(
                await rawRequest(
                    request(method, "/console/credential", host: host, headers: ["X-Traverse-Admin: 1"]),
                    to: f.admin.address))
            #expect(r.status == 404, "\(method)")
        }
        #expect(try await f.get("/healthz").status == 200)
        #expect(try await f.get("/").status == 200)
        await f.close()
    }

    @Test func liveJSONHasTheSeriesAndTheTopNumbers() async throws {
        let f = try await AdminFixture()
        let udp = try #require(f.server.udpAddresses.first)
        for _ in 0..<3 { #expect(await binding(to: udp)) }
        try await Task.sleep(for: .milliseconds(2300))  // two samples of the 1 s sampler
        let r = try await f.get("/console/live.json")
        #expect(r.status == 200)
        #expect(r.headers["content-type"] == "application/json")
        #expect(r.headers["cache-control"] == "no-store")
        for key in [
            "\"now\"", "\"t\"", "\"allocations\"", "\"bps_in\"", "\"bps_out\"", "\"pps_in\"", "\"pps_out\"",
            "\"cpu\"", "\"load\"", "\"drops\"", "\"auth_failures\"", "\"top\"", "\"kernel_drops\"", "\"rss_bytes\"",
            "\"capacity\":10000", "\"requests\":3", "\"state\":\"ready\"",
        ] {
            #expect(r.body.contains(key), "missing \(key) in \(r.body)")
        }
        #expect(!r.body.contains("127.0.0.1"))
        await f.close()
    }

    @Test func checkJSONListsTheListenersAndACredentialIsMinted() async throws {
        let f = try await AdminFixture(secrets: ["new-secret", "old-secret"])
        let check = try await f.get("/console/check.json")
        let udp = try #require(f.server.udpAddresses.first)
        let tcp = try #require(f.server.relay.boundTCP.first)
        #expect(check.body.contains("turn:\(udp)?transport=udp"))
        #expect(check.body.contains("turn:\(tcp)?transport=tcp"))
        #expect(check.body.contains("\"rest\":true"))
        let minted = try await f.post("/console/credential")
        #expect(minted.status == 200)
        struct Minted: Decodable {
            var username: String
            var password: String
            var ttl: Int
        }
        let c = try JSONDecoder().decode(Minted.self, from: Data(minted.body.utf8))
        #expect(c.ttl == 300)
        let parts = c.username.split(separator: ":")
        #expect(parts.count == 2 && parts[1] == "traverse-console")
        let expiry = try #require(Int64(parts[0]))
        let now = Int64(Date().timeIntervalSince1970)
        #expect(expiry > now + 290 && expiry <= now + 301)
        // The newest secret (listed first) signs it, as the REST format says.
        #expect(c.password == RESTCredentials.password(secret: Array("new-secret".utf8), username: c.username))
        await f.close()

        let plain = try await AdminFixture()
        #expect(try await plain.get("/console/check.json").body.contains("\"rest\":false"))
        let refused = try await plain.post("/console/credential")
        #expect(refused.status == 409)
        #expect(refused.body.contains("auth.secrets"))
        await plain.close()
    }
}

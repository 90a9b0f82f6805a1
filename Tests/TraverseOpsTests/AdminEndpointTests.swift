import Dispatch
import Logging
import STUNCodec
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

    init(token: String? = nil, source: Operations.ConfigurationSource? = nil, alternate: Bool = false) async throws {
        var c = TraverseConfiguration()
        c.listen = [TransportAddress("127.0.0.1:0")!]
        c.relayAddresses = [IPAddress("127.0.0.1")!]
        c.users = ["alice": "wonderland"]
        c.shards = 1
        c.stateDirectory = "/tmp/traverse-ops-tests"
        c.adminListen = TransportAddress("127.0.0.1:0")!
        c.adminToken = token
        if alternate { c.alternateServers = [TransportAddress("192.0.2.1:3478")!] }
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        server = try TraverseServer(configuration: c, logger: logger)
        operations = Operations(server: server, source: source, logger: logger)
        admin = try await AdminServer.start(
            operations: operations, listen: c.adminListen!, token: token, logger: logger)
        self.token = token
    }

    func get(_ path: String, token: String? = nil) async throws -> AdminClient.Response {
        try await AdminClient.fetch("GET", path, to: admin.address, token: token ?? self.token)
    }

    func post(_ path: String) async throws -> AdminClient.Response {
        try await AdminClient.fetch("POST", path, to: admin.address, token: token)
    }

    func close() async {
        await admin.stop()
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

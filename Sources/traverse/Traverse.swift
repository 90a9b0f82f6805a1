import ArgumentParser
import Logging
import STUNCodec
import ServiceLifecycle
import TURNRelay
import TraverseOps

#if canImport(Glibc)
    import Glibc
#endif

/// The `traverse` command: a TURN/STUN relay server.
@main
struct Traverse: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Traverse: a TURN/STUN relay for WebRTC. Media is forwarded and immediately discarded, never stored.",
        subcommands: [
            Serve.self, CheckConfig.self, Top.self, FleetCommand.self, BanCommand.self, UnbanCommand.self,
            SessionsCommand.self,
        ],
        defaultSubcommand: Serve.self)
}

/// Settings shared by every subcommand that reads a configuration.
struct ConfigurationOptions: ParsableArguments {
    @Option(name: .long, help: "TOML configuration file (see Docs/configuration.md).")
    var config: String?
    @Option(name: .long, help: "UDP/TCP listening address, ADDRESS:PORT (repeatable; port 0 picks one).")
    var listen: [String] = []
    @Option(name: .long, help: "TLS listening address (repeatable).")
    var tlsListen: [String] = []
    @Option(name: .long, help: "Authentication realm.")
    var realm: String?
    @Option(name: .long, help: "Static user NAME:PASSWORD (repeatable).")
    var user: [String] = []
    @Option(name: .long, help: "REST shared secret (repeatable; all are accepted, for rotation).")
    var secret: [String] = []
    @Option(name: .long, help: "Relay IP address (repeatable, one per family).")
    var relayAddress: [String] = []
    @Option(name: .long, help: "Relay port range LOW-HIGH.")
    var relayPorts: String?
    @Option(name: .long, help: "Peer CIDR exempt from the default deny list (repeatable).")
    var allowPeer: [String] = []
    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String?
    @Option(name: .long, help: "State directory (generated credentials and certificates).")
    var stateDir: String?
    @Flag(name: .long, help: "Also accept RFC 5766 channel numbers 0x5000-0x7FFF (older clients).")
    var legacyChannelNumbers = false
    @Option(name: .long, help: "Allocations one user may hold (default 10).")
    var userQuota: Int?
    @Option(name: .long, help: "Admin HTTP address ADDRESS:PORT (port 0 picks one; \"off\" disables).")
    var adminListen: String?
    @Option(name: .long, help: "Bearer token the admin endpoint requires (needed off loopback).")
    var adminToken: String?
    @Option(name: .long, help: "Seconds SIGTERM waits for allocations to end before exiting (default 60).")
    var drainTimeout: Int?
    @Option(name: .long, help: "Server new allocations are sent to (300) when full or draining (repeatable).")
    var alternateServer: [String] = []
    @Option(name: .long, help: "Fleet Redis, redis://[:password@]host:port[/db] (or TRAVERSE_REDIS).")
    var redis: String?
    @Option(name: .long, help: "This node's id in the fleet (default: the host name; or TRAVERSE_NODE_ID).")
    var nodeID: String?

    var flagOverrides: ConfigurationOverrides {
        var o = ConfigurationOverrides()
        o.listen = listen
        o.tlsListen = tlsListen
        o.realm = realm
        o.users = user
        o.secrets = secret
        o.relayAddresses = relayAddress
        o.relayPorts = relayPorts
        o.allowPeers = allowPeer
        o.logLevel = logLevel
        o.stateDirectory = stateDir
        if legacyChannelNumbers { o.legacyChannelNumbers = true }
        o.maxAllocationsPerUser = userQuota
        o.redis = redis
        o.nodeID = nodeID
        return o
    }

    /// Defaults, then the file, then the environment, then flags.
    func resolve() throws(ConfigurationError) -> TraverseConfiguration {
        var c = TraverseConfiguration()
        if let config { c = try ConfigurationLoader.load(path: config) }
        c = try ConfigurationOverrides.fromEnvironment(environment()).apply(to: c, flags: false)
        c = try flagOverrides.apply(to: c, flags: true)
        return try applyAdminFlags(to: c)
    }

    /// The `[admin]` flags, over everything else.
    func applyAdminFlags(to base: TraverseConfiguration) throws(ConfigurationError) -> TraverseConfiguration {
        var c = base
        if let adminListen {
            if adminListen == "off" || adminListen.isEmpty {
                c.adminListen = nil
            } else {
                guard let a = TransportAddress(adminListen) else {
                    throw ConfigurationError(key: "--admin-listen", reason: "\"\(adminListen)\" is not ADDRESS:PORT")
                }
                c.adminListen = a
            }
        }
        if let adminToken {
            c.adminToken = adminToken.isEmpty ? nil : adminToken
        } else if let token = environment()["TRAVERSE_ADMIN_TOKEN"], !token.isEmpty {
            c.adminToken = token  // kept out of the process list (Kubernetes, systemd credentials)
        }
        if let drainTimeout {
            guard (0...86_400).contains(drainTimeout) else {
                throw ConfigurationError(key: "--drain-timeout", reason: "must be between 0 and 86400")
            }
            c.drainTimeout = drainTimeout
        }
        if !alternateServer.isEmpty {
            c.alternateServers = try alternateServer.map { (s: String) throws(ConfigurationError) -> TransportAddress in
                guard let a = TransportAddress(s) else {
                    throw ConfigurationError(key: "--alternate-server", reason: "\"\(s)\" is not ADDRESS:PORT")
                }
                return a
            }
        }
        try ConfigurationLoader.validate(c)
        return c
    }
}

func environment() -> [String: String] {
    var env: [String: String] = [:]
    var p = environ
    while let entry = p.pointee {
        let s = String(cString: entry)
        if let eq = s.firstIndex(of: "=") { env[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
        p += 1
    }
    return env
}

/// Prints a one-line error and exits with code 2 (bad configuration).
func failConfiguration(_ message: String) -> Never {
    var line = Array("traverse: \(message)\n".utf8)
    _ = line.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
    exit(2)
}

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config", abstract: "Validate a configuration file without serving (exit 2 when invalid).")

    @Argument(help: "The TOML file.")
    var file: String

    func run() throws {
        do {
            let c = try ConfigurationLoader.load(path: file)
            _ = try c.policy()
            print("traverse: \(file) is valid")
        } catch {
            failConfiguration(error.description)
        }
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the server (the default).")

    @OptionGroup var options: ConfigurationOptions
    @Option(name: .long, help: "Write the bound addresses as JSON to this file once listening.")
    var announceFile: String?
    @Flag(
        name: .long,
        help: """
            Share the listening addresses with a running instance (a hand-over): without it, an address \
            another process listens on is refused (exit 2). The running instance, once draining, hands \
            its listeners over (Docs/operations.md).
            """)
    var takeover = false

    /// Starts the server and its admin endpoint, then runs them as one `ServiceGroup` until SIGTERM
    /// (drain, then stop) or SIGINT (stop at once); see `ServerServices`.
    func run() async throws {
        let configuration: TraverseConfiguration
        do {
            configuration = try options.resolve()
        } catch {
            failConfiguration(error.description)
        }
        let level = Logger.Level(rawValue: configuration.logLevel) ?? .info
        let format: StructuredLogHandler.Format = configuration.logFormat == "json" ? .json : .logfmt
        LoggingSystem.bootstrap { StructuredLogHandler(label: $0, level: level, format: format) }
        let logger = Logger(label: "traverse")

        let server: TraverseServer
        do {
            server = try TraverseServer(configuration: configuration, logger: logger, takeover: takeover)
        } catch {
            switch error {
            case .configuration(let e): failConfiguration(e.description)
            case .addressInUse: failConfiguration(error.description)
            // Held by a process of another user (SO_REUSEPORT is shared per user only).
            case .socket(let e) where e.code == EADDRINUSE: failConfiguration(error.description)
            default: break
            }
            logger.critical("cannot start", metadata: ["error": "\(error)"])
            throw ExitCode.failure
        }
        if let g = server.generatedCredentials {
            let urls =
                server.udpAddresses.map { "turn:\($0)?transport=udp" }
                + server.relay.boundTCP.map { "turn:\($0)?transport=tcp" }
                + server.relay.boundTLS.map { "turns:\($0)?transport=tcp" }
            logger.notice(
                "no credentials configured: generated a user",
                metadata: ["file": "\(g.path)", "username": "\(g.username)"])
            writeStandardError("iceServers entry: \(g.iceServersEntry(urls: urls))\n")
        }
        let resolveAgain = options
        let operations = Operations(
            server: server, source: { () throws(ConfigurationError) in try resolveAgain.resolve() }, logger: logger)
        let announce: @Sendable (TransportAddress?) -> Void = { [announceFile] adminAddress in
            if let announceFile {
                FileText.writeAtomically(server.announcement(pid: getpid(), admin: adminAddress), to: announceFile)
            }
        }
        let admin: AdminService
        var adminAddress: TransportAddress? = nil
        if let listen = configuration.adminListen, takeover, ListenerOwnership.isHeld(listen, .tcp) {
            // The instance being replaced still serves it: listen once it has exited.
            logger.notice(
                "admin address held by another process; listening once it is free", metadata: ["address": "\(listen)"])
            admin = AdminService(
                deferredFor: operations, listen: listen, token: configuration.adminToken,
                allowedHosts: configuration.adminAllowedHosts, logger: logger, announce: announce)
        } else if let listen = configuration.adminListen {
            do throws(AdminServer.StartError) {
                let started = try await AdminServer.start(
                    operations: operations, listen: listen, token: configuration.adminToken,
                    allowedHosts: configuration.adminAllowedHosts, logger: logger)
                adminAddress = started.address
                admin = AdminService(started: started, announce: announce)
            } catch {
                logger.critical("cannot start", metadata: ["error": "\(error)"])
                server.stop()
                throw ExitCode.failure
            }
        } else {
            admin = AdminService(started: nil, announce: announce)
        }
        // The announce file is written by the admin service once the group runs (signals trapped).
        // The fleet, once the admin endpoint's address is known (the board publishes it).
        if let fleetConfiguration = try? configuration.fleetConfiguration() {
            let service = FleetService(
                configuration: fleetConfiguration, operations: operations, admin: adminAddress, logger: logger)
            operations.fleet = service
            service.start()
            logger.info(
                "fleet: joining",
                metadata: ["node": "\(fleetConfiguration.nodeID)", "redis": "\(fleetConfiguration.redis)"])
        }
        try await ServerServices.group(operations: operations, admin: admin, logger: logger).run()
    }
}

/// Writes `text` to stderr unbuffered (as the log lines are).
func writeStandardError(_ text: String) {
    var bytes = Array(text.utf8)
    _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
}

/// `traverse top`: a live view of a running server through its admin endpoint.
struct Top: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show allocations, throughput, load and top error codes of a running server, every second.")

    @OptionGroup var target: AdminTarget
    @Option(name: .long, help: "Seconds between frames.")
    var interval: Double = 1
    @Flag(name: .long, help: "Print one frame and exit.")
    var once = false

    func run() async throws {
        let (address, token) = target.resolve("top")
        var previous: [MetricSample]? = nil
        while true {
            let frame: String
            let metrics: [MetricSample]
            do throws(AdminClient.Failure) {
                let load = try await AdminClient.fetch("GET", "/load", to: address, token: token)
                let text = try await AdminClient.fetch("GET", "/metrics", to: address, token: token)
                guard load.status == 200, text.status == 200 else {
                    throw AdminClient.Failure(description: "admin endpoint answered \(load.status)/\(text.status)")
                }
                guard let report = LoadReport.decode(load.body) else {
                    throw AdminClient.Failure(description: "cannot parse /load")
                }
                metrics = MetricSample.parse(text.body)
                frame = TopView.render(load: report, metrics: metrics, previous: previous, interval: interval)
            } catch {
                failConfiguration("top: \(error.description)")
            }
            if once {
                print(frame, terminator: "")
                return
            }
            var bytes = Array(("\u{1B}[H\u{1B}[2J" + frame).utf8)
            _ = bytes.withUnsafeMutableBytes { write(1, $0.baseAddress, $0.count) }
            previous = metrics
            try await Task.sleep(for: .seconds(max(0.1, interval)))
        }
    }
}

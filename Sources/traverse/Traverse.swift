import ArgumentParser
import Dispatch
import Logging
import STUNCodec
import Synchronization
import TURNRelay
import TraverseOps

#if canImport(Glibc)
    import Glibc
#endif

/// The `traverse` command: a TURN/STUN relay server.
@main
struct Traverse: ParsableCommand {
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

struct Serve: ParsableCommand {
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

    func run() throws {
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
            Glibc.exit(1)
        }
        if let g = server.generatedCredentials {
            let urls =
                server.udpAddresses.map { "turn:\($0)?transport=udp" }
                + server.relay.boundTCP.map { "turn:\($0)?transport=tcp" }
                + server.relay.boundTLS.map { "turns:\($0)?transport=tcp" }
            logger.notice(
                "no credentials configured: generated a user",
                metadata: ["file": "\(g.path)", "username": "\(g.username)"])
            var line = Array("iceServers entry: \(g.iceServersEntry(urls: urls))\n".utf8)
            _ = line.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
        }
        let resolveAgain = options
        let operations = Operations(
            server: server, source: { () throws(ConfigurationError) in try resolveAgain.resolve() }, logger: logger)
        var admin: AdminServer? = nil
        let announce: @Sendable (TransportAddress?) -> Void = { [announceFile] adminAddress in
            if let announceFile {
                FileText.writeAtomically(server.announcement(pid: getpid(), admin: adminAddress), to: announceFile)
            }
        }
        let deferredAdmin = DeferredAdmin()
        if let listen = configuration.adminListen, takeover, ListenerOwnership.isHeld(listen, .tcp) {
            // The instance being replaced still serves it: listen once it has exited.
            logger.notice(
                "admin address held by another process; listening once it is free", metadata: ["address": "\(listen)"])
            deferredAdmin.start(
                operations: operations, listen: listen, token: configuration.adminToken,
                allowedHosts: configuration.adminAllowedHosts, logger: logger, announce: announce)
        } else if let listen = configuration.adminListen {
            switch startAdmin(
                operations: operations, listen: listen, token: configuration.adminToken,
                allowedHosts: configuration.adminAllowedHosts, logger: logger)
            {
            case .success(let started): admin = started
            case .failure(let error):
                logger.critical("cannot start", metadata: ["error": "\(error)"])
                server.stop()
                Glibc.exit(1)
            }
        }
        announce(admin?.address)
        // The fleet, once the admin endpoint's address is known (the board publishes it).
        var fleet: FleetService? = nil
        if let fleetConfiguration = try? configuration.fleetConfiguration() {
            let service = FleetService(
                configuration: fleetConfiguration, operations: operations, admin: admin?.address, logger: logger)
            operations.fleet = service
            service.start()
            fleet = service
            logger.info(
                "fleet: joining",
                metadata: ["node": "\(fleetConfiguration.nodeID)", "redis": "\(fleetConfiguration.redis)"])
        }

        let signals = SignalHandlers()
        let sigtermCount = Mutex(0)
        signals.on(SIGTERM) {
            // The first SIGTERM drains; a second one stops at once.
            let count = sigtermCount.withLock { n in
                n += 1
                return n
            }
            if count > 1 {
                logger.notice("stopping now", metadata: ["signal": "SIGTERM"])
                server.stop()
                Glibc.exit(0)
            }
            Task {
                let outcome = await operations.drain(trigger: "SIGTERM")
                logger.notice("stopping", metadata: ["signal": "SIGTERM", "drain": "\(outcome)"])
                operations.fleet?.stop()
                server.stop()
                Glibc.exit(0)
            }
        }
        signals.on(SIGINT) {
            logger.notice("stopping", metadata: ["signal": "SIGINT"])
            server.stop()
            Glibc.exit(0)
        }
        signals.on(SIGHUP) { operations.reload(trigger: "SIGHUP") }
        withExtendedLifetime((admin, deferredAdmin, fleet)) { dispatchMain() }
    }
}

/// The admin endpoint of an instance started with `--takeover` while the instance it replaces
/// still listens on the admin address: tried every second until that address is free.
final class DeferredAdmin: Sendable {
    private let admin = Mutex<AdminServer?>(nil)

    func start(
        operations: Operations, listen: TransportAddress, token: String?, allowedHosts: [String], logger: Logger,
        announce: @escaping @Sendable (TransportAddress?) -> Void
    ) {
        Task.detached { [self] in
            while true {
                try? await Task.sleep(for: .seconds(1))
                if ListenerOwnership.isHeld(listen, .tcp) { continue }
                do throws(AdminServer.StartError) {
                    let started = try await AdminServer.start(
                        operations: operations, listen: listen, token: token, allowedHosts: allowedHosts,
                        logger: logger)
                    self.admin.withLock { $0 = started }
                    announce(started.address)
                    return
                } catch {
                    logger.warning("admin endpoint not started yet", metadata: ["error": "\(error)"])
                }
            }
        }
    }
}

/// Starts the admin listener, waiting for it on this (non-async) thread.
func startAdmin(
    operations: Operations, listen: TransportAddress, token: String?, allowedHosts: [String], logger: Logger
) -> Result<AdminServer, AdminServer.StartError> {
    let result = Mutex<Result<AdminServer, AdminServer.StartError>?>(nil)
    let done = DispatchSemaphore(value: 0)
    Task {
        do throws(AdminServer.StartError) {
            let admin = try await AdminServer.start(
                operations: operations, listen: listen, token: token, allowedHosts: allowedHosts, logger: logger)
            result.withLock { $0 = .success(admin) }
        } catch {
            result.withLock { $0 = .failure(error) }
        }
        done.signal()
    }
    done.wait()
    return result.withLock { $0! }
}

/// `traverse top`: a live view of a running server through its admin endpoint.
struct Top: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show allocations, throughput, load and top error codes of a running server, every second.")

    @OptionGroup var target: AdminTarget
    @Option(name: .long, help: "Seconds between frames.")
    var interval: Double = 1
    @Flag(name: .long, help: "Print one frame and exit.")
    var once = false

    func run() throws {
        let (address, token) = target.resolve("top")
        var previous: [MetricSample]? = nil
        while true {
            let frame: String
            let metrics: [MetricSample]
            do throws(AdminClient.Failure) {
                let load = try AdminClient.request("GET", "/load", to: address, token: token)
                let text = try AdminClient.request("GET", "/metrics", to: address, token: token)
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
            usleep(UInt32(max(0.1, interval) * 1_000_000))
        }
    }
}

/// Signal delivery through Dispatch sources on one serial queue.
final class SignalHandlers: @unchecked Sendable {
    // Written only during set-up on the main thread; the sources live for the process.
    private var sources: [any DispatchSourceSignal] = []
    private let queue = DispatchQueue(label: "traverse.signals")

    func on(_ signal: Int32, _ handler: @escaping @Sendable () -> Void) {
        Glibc.signal(signal, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: signal, queue: queue)
        source.setEventHandler(handler: handler)
        source.activate()
        sources.append(source)
    }
}

import ArgumentParser
import Dispatch
import Logging
import STUNCodec
import TraverseOps
#if canImport(Glibc)
import Glibc
#endif

/// The `traverse` command: a TURN/STUN relay server.
@main
struct Traverse: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Traverse: a TURN/STUN relay for WebRTC. Media is forwarded and immediately discarded, never stored.",
        subcommands: [Serve.self, CheckConfig.self],
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
        return o
    }

    /// Defaults, then the file, then the environment, then flags.
    func resolve() throws(ConfigurationError) -> TraverseConfiguration {
        var c = TraverseConfiguration()
        if let config { c = try ConfigurationLoader.load(path: config) }
        c = try ConfigurationOverrides.fromEnvironment(environment()).apply(to: c, flags: false)
        return try flagOverrides.apply(to: c, flags: true)
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
            server = try TraverseServer(configuration: configuration, logger: logger)
        } catch {
            if case .configuration(let e) = error { failConfiguration(e.description) }
            logger.critical("cannot start", metadata: ["error": "\(error)"])
            Glibc.exit(1)
        }
        if let g = server.generatedCredentials {
            let urls = server.udpAddresses.map { "turn:\($0)?transport=udp" }
            logger.notice(
                "no credentials configured: generated a user", metadata: ["file": "\(g.path)", "username": "\(g.username)"])
            var line = Array("iceServers entry: \(g.iceServersEntry(urls: urls))\n".utf8)
            _ = line.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
        }
        if let announceFile {
            FileText.writeAtomically(server.announcement(pid: getpid(), admin: nil), to: announceFile)
        }

        let signals = SignalHandlers()
        signals.on(SIGTERM) {
            logger.notice("stopping", metadata: ["signal": "SIGTERM"])
            server.stop()
            Glibc.exit(0)
        }
        signals.on(SIGINT) {
            logger.notice("stopping", metadata: ["signal": "SIGINT"])
            server.stop()
            Glibc.exit(0)
        }
        signals.on(SIGHUP) {
            do {
                let fresh = try options.resolve()
                try server.reload(fresh)
                logger.notice("configuration reloaded")
            } catch {
                logger.error("reload refused; the previous configuration stays in force", metadata: ["reason": "\(error)"])
            }
        }
        dispatchMain()
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

public import Logging
public import STUNCodec
import Synchronization
public import TURNCore
public import TURNRelay
public import TraverseFleet
public import TraverseSystem

/// A running Traverse server: the data path plus the state it shares, built from a
/// `TraverseConfiguration`. Used by the executable and by in-process integration tests.
public final class TraverseServer: Sendable {
    public let configuration: TraverseConfiguration
    public let relay: RelayServer
    public let shared: SharedServerState
    /// The credentials generated on first start when none were configured.
    public let generatedCredentials: GeneratedCredentials?
    /// Bans made at run time (admin endpoint, `traverse ban`, other nodes of a fleet), in force
    /// together with `relay.banned_clients` from the configuration.
    public let bans = BanBook()
    /// The bans of the configuration in force (replaced by each reload).
    private let configuredBans: Mutex<ClientBanList>

    /// Binds every socket and starts serving. Unless `takeover`, an address another process
    /// already listens on (relay listeners and the admin endpoint) is refused with
    /// `StartupError.addressInUse` before anything is bound; with it, TCP and TLS addresses are
    /// shared and UDP and DTLS ones bound once that process releases them (Docs/operations.md,
    /// *Takeover*).
    public init(configuration: TraverseConfiguration, logger: Logger, takeover: Bool = false) throws(StartupError) {
        if !takeover, let (address, transport) = Self.firstHeldAddress(configuration) {
            throw .addressInUse(address, transport)
        }
        var config = configuration
        var generated: GeneratedCredentials? = nil
        if !config.hasCredentials {
            do {
                let g = try GeneratedCredentials.loadOrCreate(stateDirectory: config.stateDirectory)
                config.users[g.username] = g.password
                generated = g
            } catch {
                throw .configuration(error)
            }
        }
        self.configuration = config
        self.generatedCredentials = generated
        let policy: CorePolicy
        do {
            policy = try config.policy()
        } catch {
            throw .configuration(error)
        }
        shared = SharedServerState(policy: policy)
        configuredBans = Mutex(policy.bannedClients)
        var tls: TLSContextStore? = nil
        if !config.effectiveTLSListen.isEmpty {
            do {
                if let cert = config.certificateFile, let key = config.privateKeyFile {
                    tls = try TLSContextStore(certificate: cert, privateKey: key)
                } else {
                    guard FileText.makeDirectory(config.stateDirectory) else {
                        throw StartupError.configuration(
                            ConfigurationError(
                                key: "server.state_directory", reason: "cannot create \(config.stateDirectory)"))
                    }
                    tls = try TLSContextStore.selfSigned(in: config.stateDirectory)
                    logger.notice(
                        "serving TLS with a self-signed certificate",
                        metadata: ["certificate": "\(tls!.certificatePath)", "sha256": "\(tls!.fingerprint)"])
                }
            } catch let error as TLSError {
                throw .tls(error)
            } catch let error as StartupError {
                throw error
            } catch {
                throw .tls(.cannotGenerate(path: config.stateDirectory))
            }
        }
        if config.testPermissionLifetime != nil || config.testChannelLifetime != nil {
            logger.warning(
                "test lifetimes in force: RFC 8656 fixes permissions at 300 s and channels at 600 s",
                metadata: [
                    "permission_s": "\(config.testPermissionLifetime ?? 300)",
                    "channel_s": "\(config.testChannelLifetime ?? 600)",
                ])
        }
        var relayConfiguration = config.relayConfiguration()
        relayConfiguration.takeover = takeover
        do {
            relay = try RelayServer(
                configuration: relayConfiguration, coreConfiguration: config.coreConfiguration(),
                shared: shared, tls: tls, logger: logger)
        } catch {
            throw .socket(error)
        }
        relay.start()
        bans.onChange { [weak self] _ in self?.applyBans() }
    }

    /// Puts the configured bans and the ban book's active bans in force, and ends the
    /// allocations of newly banned clients at once (not at the next sweep).
    public func applyBans() {
        let now = Int64(FleetBoard.nowMilliseconds() / 1000)
        var policy = shared.policy
        let configured = configuredBans.withLock { $0 }
        policy.bannedClients = ClientBanList(configured.prefixes + bans.active(now: now))
        shared.replacePolicy(policy)
        let relay = self.relay
        Task { await relay.sweepNow() }
    }

    /// The first address of `c` (UDP and TCP on `listen`, TLS and DTLS on the TLS listeners, the
    /// admin endpoint) that some socket already holds.
    public static func firstHeldAddress(_ c: TraverseConfiguration)
        -> (TransportAddress, ListenerOwnership.Transport)?
    {
        var wanted: [(TransportAddress, ListenerOwnership.Transport)] = []
        for a in c.listen { wanted += [(a, .udp), (a, .tcp)] }
        for a in c.effectiveTLSListen { wanted += [(a, .tcp), (a, .udp)] }
        if let admin = c.adminListen { wanted.append((admin, .tcp)) }
        return wanted.first { ListenerOwnership.isHeld($0.0, $0.1) }
    }

    /// Re-reads credentials and policy from `configuration` and puts them in force without
    /// touching allocations (newly banned clients are dropped at the next sweep).
    public func reload(_ configuration: TraverseConfiguration) throws(ConfigurationError) {
        var c = configuration
        if let g = generatedCredentials, !c.hasCredentials { c.users[g.username] = g.password }
        // Everything is checked before anything changes: a refused reload leaves all in force.
        let policy = try c.policy()
        if let tls = relay.tls {
            do {
                try tls.reload()
            } catch {
                throw ConfigurationError(key: "tls.certificate", reason: error.description)
            }
        }
        configuredBans.withLock { $0 = policy.bannedClients }
        var combined = policy
        combined.bannedClients = ClientBanList(
            policy.bannedClients.prefixes + bans.active(now: Int64(FleetBoard.nowMilliseconds() / 1000)))
        shared.replacePolicy(combined)
        // Permissions and channels the new policy denies end now, not at the next sweep.
        let relay = self.relay
        Task { await relay.sweepNow() }
    }

    /// Stops serving; ends every allocation.
    public func stop() { relay.stop() }

    /// UDP addresses bound.
    public var udpAddresses: [TransportAddress] { relay.boundUDP }

    /// The announce file's JSON: bound addresses by transport, the admin address (or null) and
    /// the process id.
    public func announcement(pid: Int32, admin: TransportAddress?) -> String {
        let a = Announcement(
            udp: udpAddresses.map(\.description), tcp: relay.boundTCP.map(\.description),
            tls: relay.boundTLS.map(\.description), dtls: relay.boundDTLS.map(\.description),
            admin: admin?.description, pid: pid)
        return JSONText.spaced(a) + "\n"
    }
}

/// The announce file (`--announce-file`).
struct Announcement: Codable {
    var udp: [String]
    var tcp: [String]
    var tls: [String]
    var dtls: [String]
    var admin: String?
    var pid: Int32

    enum CodingKeys: String, CodingKey { case udp, tcp, tls, dtls, admin, pid }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(udp, forKey: .udp)
        try c.encode(tcp, forKey: .tcp)
        try c.encode(tls, forKey: .tls)
        try c.encode(dtls, forKey: .dtls)
        try c.encode(admin, forKey: .admin)  // null, not absent, without an admin endpoint
        try c.encode(pid, forKey: .pid)
    }
}

/// Why the server could not start.
public enum StartupError: Error, CustomStringConvertible {
    case configuration(ConfigurationError)
    case socket(SocketError)
    case tls(TLSError)
    /// Another process already listens on this address (start without `--takeover`).
    case addressInUse(TransportAddress, ListenerOwnership.Transport)

    public var description: String {
        switch self {
        case .configuration(let e): e.description
        case .addressInUse(let address, let transport):
            "\(address) (\(transport)) is already in use by another process: stop it first, or start with "
                + "--takeover to share it during a hand-over (see Docs/operations.md)"
        case .tls(let e): e.description
        case .socket(let e): "cannot listen: \(e)"
        }
    }
}

/// A user created on first start when nothing else is configured, so that Traverse never runs
/// as an open relay. Kept in `<state-dir>/credentials.json` (mode 0600).
public struct GeneratedCredentials: Sendable {
    public let username: String
    public let password: String
    public let path: String

    static func loadOrCreate(stateDirectory: String) throws(ConfigurationError) -> GeneratedCredentials {
        let path = stateDirectory + "/credentials.json"
        if let text = FileText.read(path), let stored = JSONText.decode(Stored.self, from: text) {
            return GeneratedCredentials(username: stored.username, password: stored.password, path: path)
        }
        guard FileText.makeDirectory(stateDirectory) else {
            throw ConfigurationError(key: "server.state_directory", reason: "cannot create \(stateDirectory)")
        }
        let user = "traverse-" + Hex.encode(STUNDigest.randomBytes(4))
        let pass = Base64.encode(STUNDigest.randomBytes(18))
        let json = JSONText.spaced(Stored(username: user, password: pass)) + "\n"
        guard FileText.writeAtomically(json, to: path, mode: 0o600) else {
            throw ConfigurationError(key: "server.state_directory", reason: "cannot write \(path)")
        }
        return GeneratedCredentials(username: user, password: pass, path: path)
    }

    /// `credentials.json`.
    struct Stored: Codable {
        var username: String
        var password: String
    }

    /// A WebRTC `RTCIceServer`.
    struct IceServer: Encodable {
        var urls: [String]
        var username: String
        var credential: String
    }

    /// A ready-to-paste WebRTC `iceServers` entry for `urls`.
    public func iceServersEntry(urls: [String]) -> String {
        JSONText.spaced(IceServer(urls: urls, username: username, credential: password))
    }
}

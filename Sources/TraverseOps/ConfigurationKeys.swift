import STUNCodec
import TURNCore
import TURNRelay
import TraverseFleet

/// The table of every TOML key: name, documented type, default, validation and a one-line
/// meaning. The loader (`ConfigurationLoader`) applies a file through it, `TraverseConfiguration`
/// takes its defaults from it, and a test checks Docs/configuration.md against it, so a key is
/// defined in exactly one place. Sections `[limits]`, `[tls]`, `[admin]` and `[fleet]` are in
/// `ConfigurationKeys+Admin.swift`.
public enum ConfigurationKeys {
    /// Every key, in the order of Docs/configuration.md.
    public static let all: [ConfigurationKey] =
        [
            listen.row, tlsListen.row, shards.row, udpGSO.row, udpGRO.row, pollLinger.row, fastPath.row,
            fastPathInterfaces.row, fastPathObject.row, software.row, stateDirectory.row, logLevel.row, logFormat.row,
            redactAddresses.row, realm.row, users.row,
            usersFile.row, secrets.row, restSeparator.row, nonceLifetime.row, relayAddresses.row,
            externalAddresses.row, portRange.row, allowPeers.row, denyPeers.row, bannedClients.row,
        ] + limitsAndAdmin

    /// The keys by dotted name.
    public static let byName: [String: ConfigurationKey] = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })

    // MARK: [server]

    static let listen = TypedKey(
        "server.listen", "array of `\"ADDR:PORT\"`", Kinds.addresses,
        default: [TransportAddress("127.0.0.1:3478")!, TransportAddress("[::1]:3478")!],
        doc: "UDP and TCP listening addresses."
    ) { $0.listen = $1 }
    static let tlsListen = TypedKey<[TransportAddress]?>(
        "server.tls_listen", "array of `\"ADDR:PORT\"`", Kinds.addresses.map({ $0 }, back: { $0 ?? [] }),
        default: nil, shown: "see meaning",
        doc: "TLS and DTLS listening addresses; absent: loopback 5349 with the default listen, else none."
    ) {
        $0.tlsListen = $1
    }
    static let shards = TypedKey(
        "server.shards", "integer 0–256", Kinds.int(0...256), default: 0,
        doc: "Data-path shards; 0 means one per online CPU."
    ) { $0.shards = $1 }
    static let udpGSO = TypedKey(
        "server.udp_gso", "boolean", Kinds.bool, default: true,
        doc: "Send runs of equal-sized datagrams to one destination as one UDP GSO message."
    ) { $0.udpGSO = $1 }
    static let udpGRO = TypedKey(
        "server.udp_gro", "boolean", Kinds.bool, default: true,
        doc: "Let the kernel merge a peer's burst into one receive on relay sockets (UDP GRO)."
    ) { $0.udpGRO = $1 }
    static let pollLinger = TypedKey(
        "server.poll_linger_us", "integer 0–10000", Kinds.int(0...10_000), default: 500,
        doc: "Microseconds a shard waits for more datagrams after a wakeup."
    ) { $0.pollLingerMicroseconds = $1 }
    static let fastPath = TypedKey(
        "server.fast_path", "string",
        Kinds.choice(FastPathMode.allCases.map(\.rawValue), reason: "expected \"off\" or \"xdp\"").map(
            { FastPathMode(rawValue: $0)! }, back: { $0.rawValue }), default: FastPathMode.off,
        doc: "\"xdp\": relay bound-channel ChannelData over UDP in the kernel (Docs/deployment.md)."
    ) { $0.fastPath = $1 }
    static let fastPathInterfaces = TypedKey(
        "server.fast_path_interfaces", "array of strings", Kinds.strings, default: [],
        doc: "Interfaces the XDP program is attached to; required with fast_path = \"xdp\"."
    ) { $0.fastPathInterfaces = $1 }
    static let fastPathObject = TypedKey<String?>(
        "server.fast_path_object", "string (path)", Kinds.optional(Kinds.string), default: nil, shown: "`\"\"`",
        doc: "The compiled XDP object; empty: traverse-xdp.bpf.o beside the executable."
    ) { $0.fastPathObject = $1 }
    static let software = TypedKey<String?>(
        "server.software", "string", Kinds.optional(Kinds.string), default: nil, shown: "`\"\"`",
        doc: "SOFTWARE attribute on answers; empty sends none."
    ) { $0.software = $1 }
    static let stateDirectory = TypedKey(
        "server.state_directory", "string", Kinds.string, default: ".traverse",
        doc: "Where generated credentials and the self-signed certificate are kept."
    ) { $0.stateDirectory = $1 }

    // MARK: [log]

    /// The levels of `log.level` (and `--log-level`).
    static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
    static let logLevel = TypedKey(
        "log.level", "string",
        Kinds.choice(logLevels, reason: "expected one of \(logLevels.joined(separator: ", "))"), default: "info",
        doc: "The least severe level logged."
    ) { $0.logLevel = $1 }
    static let logFormat = TypedKey(
        "log.format", "string", Kinds.choice(["logfmt", "json"], reason: "expected \"logfmt\" or \"json\""),
        default: "logfmt", doc: "One line per event, logfmt or JSON, on stderr."
    ) { $0.logFormat = $1 }
    static let redactAddresses = TypedKey(
        "log.redact_addresses", "bool", Kinds.bool, default: true,
        doc: "Client addresses in logs as 198.51.x.x (IPv6: the /32 prefix)."
    ) { $0.redactAddresses = $1 }

    // MARK: [auth]

    static let realm = TypedKey(
        "auth.realm", "string, 1–127 characters",
        Kinds.string.checked { !$0.isEmpty && $0.count < 128 ? nil : "must be 1 to 127 characters" },
        default: "traverse", doc: "The REALM, part of every long-term key."
    ) { $0.realm = $1 }
    static let users = TypedKey<[String: String]>(
        "auth.users", "table `name = \"password\"`",
        Kinds.table(
            reason: "expected a table of name = \"password\"", entryReason: "expected a non-empty password string"
        ) { name, password in
            guard let password, !password.isEmpty else { return nil }
            return (name, password)
        }, default: [:], doc: "Static users."
    ) { $0.users = $1 }
    static let usersFile = TypedKey<String?>(
        "auth.users_file", "string (path)", Kinds.optional(Kinds.string), default: nil,
        doc: "A users file, read at start and on every reload."
    ) { $0.usersFile = $1 }
    static let secrets = TypedKey(
        "auth.secrets", "array of strings", Kinds.strings, default: [],
        doc: "REST shared secrets; any one is accepted."
    ) { $0.secrets = $1 }
    static let restSeparator = TypedKey<Character>(
        "auth.rest_separator", "one-character string",
        Kinds.string.checked { $0.count == 1 ? nil : "expected exactly one character" }.map(
            { $0.first! }, back: { String($0) }), default: ":",
        doc: "The character between expiry and user id in REST usernames."
    ) { $0.restSeparator = $1 }
    static let nonceLifetime = TypedKey<UInt64>(
        "auth.nonce_lifetime", "integer 30–86400", Kinds.int(30...86_400).map({ UInt64($0) }, back: { Int($0) }),
        default: 600, doc: "Seconds a nonce stays fresh."
    ) { $0.nonceLifetime = $1 }

    // MARK: [relay]

    static let relayAddresses = TypedKey(
        "relay.addresses", "array of IPs", Kinds.ips, default: [],
        doc: "Relay IPs (the first of each family); empty: those of server.listen."
    ) { $0.relayAddresses = $1 }
    static let externalAddresses = TypedKey<[IPAddress: IPAddress]>(
        "relay.external_addresses", "table `\"private\" = \"public\"`",
        Kinds.table(
            reason: "expected a table of \"private\" = \"public\"",
            entryReason: "expected two IP addresses of one family"
        ) { privateText, publicText in
            guard let a = IPAddress(privateText), let s = publicText, let b = IPAddress(s), a.family == b.family
            else { return nil }
            return (a, b)
        }, default: [:], doc: "1:1 NAT: the public IP told to clients for a relay IP."
    ) { $0.externalAddresses = $1 }
    static let portRange = TypedKey<ClosedRange<UInt16>>(
        "relay.port_range", "string `\"LOW-HIGH\"`", Kinds.portRange, default: 49152...65535,
        doc: "Ports for relay sockets, shared by all shards."
    ) { $0.portRange = $1 }
    static let allowPeers = TypedKey(
        "relay.allow_peers", "array of CIDRs", Kinds.cidrs, default: [],
        doc: "Exempted from the default deny list."
    ) { $0.allowPeers = $1 }
    static let denyPeers = TypedKey(
        "relay.deny_peers", "array of CIDRs", Kinds.cidrs, default: [],
        doc: "Always denied; takes precedence over allow_peers."
    ) { $0.denyPeers = $1 }
    static let bannedClients = TypedKey(
        "relay.banned_clients", "array of CIDRs", Kinds.cidrs, default: [],
        doc: "Client addresses refused with 403."
    ) { $0.bannedClients = $1 }
}

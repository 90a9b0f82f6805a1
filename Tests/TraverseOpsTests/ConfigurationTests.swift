import Glibc
import STUNCodec
import TURNCore
import Testing
import TraverseOps

@Suite("Configuration file")
struct ConfigurationFileTests {
    static let full = """
        [server]
        listen = ["127.0.0.1:3479", "[::1]:3480"]
        tls_listen = ["127.0.0.1:5349"]
        shards = 3
        udp_gso = false
        poll_linger_us = 250
        software = "Traverse"
        state_directory = "/var/lib/traverse"

        [log]
        level = "debug"
        format = "json"
        redact_addresses = false

        [auth]
        realm = "example.org"
        users = { alice = "secret", bob = "pw" }
        users_file = "/etc/traverse/users"
        secrets = ["s1", "s2"]
        rest_separator = "-"
        nonce_lifetime = 300

        [relay]
        addresses = ["10.0.0.5", "2001:db8::5"]
        external_addresses = { "10.0.0.5" = "192.0.2.5" }
        port_range = "50000-50100"
        allow_peers = ["127.0.0.0/8", "::1/128"]
        deny_peers = ["8.8.8.0/24"]
        banned_clients = ["203.0.113.0/24"]

        [limits]
        max_allocations = 500
        max_allocations_per_user = 5
        max_permissions_per_allocation = 8
        max_channels_per_allocation = 9
        default_lifetime = 300
        max_lifetime = 1800
        bandwidth_per_allocation = 100000
        unauthenticated_rate = 20
        challenge_overflow_bytes = 4096
        unauthenticated_reason_phrases = true
        legacy_channel_numbers = true
        max_dtls_sessions = 900
        max_dtls_sessions_per_source = 90
        max_dtls_handshakes = 80
        max_dtls_handshakes_per_source = 8

        [tls]
        certificate = "/etc/traverse/cert.pem"
        private_key = "/etc/traverse/key.pem"

        [admin]
        listen = "127.0.0.1:9000"
        token = "tok"
        allowed_hosts = ["relay-1.internal", "metrics.example.org:8443", "[2001:db8::5]"]
        alternate_servers = ["192.0.2.99:3478"]
        alternate_domain = "alt.example.org"
        drain_timeout = 30
        """

    @Test("Every key is parsed")
    func everyKey() throws {
        let c = try ConfigurationLoader.parse(Self.full)
        #expect(c.listen == [TransportAddress("127.0.0.1:3479")!, TransportAddress("[::1]:3480")!])
        #expect(c.tlsListen == [TransportAddress("127.0.0.1:5349")!])
        #expect(c.shards == 3)
        #expect(c.software == "Traverse")
        #expect(c.stateDirectory == "/var/lib/traverse")
        #expect(c.logLevel == "debug")
        #expect(c.logFormat == "json")
        #expect(c.redactAddresses == false)
        #expect(c.realm == "example.org")
        #expect(c.users == ["alice": "secret", "bob": "pw"])
        #expect(c.usersFile == "/etc/traverse/users")
        #expect(c.secrets == ["s1", "s2"])
        #expect(c.restSeparator == "-")
        #expect(c.nonceLifetime == 300)
        #expect(c.relayAddresses == [IPAddress("10.0.0.5")!, IPAddress("2001:db8::5")!])
        #expect(c.externalAddresses == [IPAddress("10.0.0.5")!: IPAddress("192.0.2.5")!])
        #expect(c.portRange == 50000...50100)
        #expect(c.allowPeers == [CIDR("127.0.0.0/8")!, CIDR("::1/128")!])
        #expect(c.denyPeers == [CIDR("8.8.8.0/24")!])
        #expect(c.bannedClients == [CIDR("203.0.113.0/24")!])
        #expect(c.maxAllocations == 500)
        #expect(c.maxAllocationsPerUser == 5)
        #expect(c.maxPermissionsPerAllocation == 8)
        #expect(c.maxChannelsPerAllocation == 9)
        #expect(c.defaultLifetime == 300)
        #expect(c.maxLifetime == 1800)
        #expect(c.bandwidthPerAllocation == 100_000)
        #expect(c.unauthenticatedRate == 20)
        #expect(c.legacyChannelNumbers == true)
        #expect(c.certificateFile == "/etc/traverse/cert.pem")
        #expect(c.privateKeyFile == "/etc/traverse/key.pem")
        #expect(c.adminListen == TransportAddress("127.0.0.1:9000"))
        #expect(c.adminToken == "tok")
        #expect(c.adminAllowedHosts == ["relay-1.internal", "metrics.example.org:8443", "[2001:db8::5]"])
        #expect(c.alternateServers == [TransportAddress("192.0.2.99:3478")!])
        #expect(c.alternateDomain == "alt.example.org")
        #expect(c.drainTimeout == 30)

        let core = c.coreConfiguration()
        #expect(core.software == "Traverse")
        #expect(core.maxAllocationsPerUser == 5)
        #expect(core.nonceLifetime == 300)
        #expect(core.legacyChannelNumbers)
        #expect(core.unauthenticatedRatePerSecond == 20)
        #expect(core.challengeOverflowBytesPerSecond == 4096)
        #expect(core.unauthenticatedReasonPhrases)
        #expect(core.alternateServers == [TransportAddress("192.0.2.99:3478")!])
        let relay = c.relayConfiguration()
        #expect(relay.portRange == 50000...50100)
        #expect(relay.shards == 3)
        #expect(relay.dtls.maxSessions == 900)
        #expect(relay.dtls.maxSessionsPerSource == 90)
        #expect(relay.dtls.maxHandshakes == 80)
        #expect(relay.dtls.maxHandshakesPerSource == 8)
        #expect(!relay.segmentationOffload)
        #expect(relay.pollLingerMicroseconds == 250)
        #expect(relay.logFullAddresses)
    }

    @Test("An empty file gives the defaults")
    func defaults() throws {
        let c = try ConfigurationLoader.parse("")
        let d = TraverseConfiguration()
        #expect(c.listen == d.listen)
        #expect(c.realm == "traverse")
        #expect(c.portRange == 49152...65535)
        #expect(c.maxAllocationsPerUser == 10)
        #expect(c.defaultLifetime == 600 && c.maxLifetime == 3600)
        #expect(c.software == nil)
        #expect(!c.hasCredentials)
    }

    @Test("Empty software and admin strings mean none")
    func emptyStrings() throws {
        let c = try ConfigurationLoader.parse("[server]\nsoftware = \"\"\n[admin]\nlisten = \"\"\ntoken = \"\"\n")
        #expect(c.software == nil)
        #expect(c.adminListen == nil)
        #expect(c.adminToken == nil)
    }

    func error(_ text: String) -> ConfigurationError? {
        do {
            _ = try ConfigurationLoader.parse(text)
            return nil
        } catch {
            return error
        }
    }

    @Test(
        "Unknown keys and sections are refused, naming the key",
        arguments: [
            ("[server]\nlisten_typo = []", "server.listen_typo"), ("[relay]\nport = 5", "relay.port"),
            ("[nonsense]\nx = 1", "nonsense.x"), ("[auth]\nrealms = \"x\"", "auth.realms"),
        ])
    func unknownKey(text: String, key: String) throws {
        let e = try #require(error(text))
        #expect(e.key == key)
        #expect(e.description.contains(key))
        #expect(e.reason.contains("unknown"))
    }

    @Test(
        "Bad values are refused, naming the key",
        arguments: [
            ("[relay]\nport_range = \"5-3\"", "relay.port_range"),
            ("[relay]\nport_range = \"0-10\"", "relay.port_range"),
            ("[relay]\nport_range = \"1000\"", "relay.port_range"),
            ("[relay]\nport_range = \"1-70000\"", "relay.port_range"),
            ("[server]\nlisten = [\"nonsense\"]", "server.listen"),
            ("[server]\nlisten = \"127.0.0.1:3478\"", "server.listen"),
            ("[server]\nlisten = [\"127.0.0.1\"]", "server.listen"),
            ("[log]\nlevel = \"loud\"", "log.level"),
            ("[log]\nformat = \"xml\"", "log.format"),
            ("[log]\nredact_addresses = \"yes\"", "log.redact_addresses"),
            ("[server]\nshards = -1", "server.shards"),
            ("[server]\npoll_linger_us = 20000", "server.poll_linger_us"),
            ("[server]\nudp_gso = 1", "server.udp_gso"),
            ("[limits]\nmax_allocations = -5", "limits.max_allocations"),
            ("[limits]\nmax_allocations_per_user = 0", "limits.max_allocations_per_user"),
            ("[limits]\nbandwidth_per_allocation = -1", "limits.bandwidth_per_allocation"),
            ("[limits]\ndefault_lifetime = -600", "limits.default_lifetime"),
            ("[limits]\nmax_lifetime = \"long\"", "limits.max_lifetime"),
            ("[limits]\nunauthenticated_rate = -1", "limits.unauthenticated_rate"),
            ("[limits]\nchallenge_overflow_bytes = -1", "limits.challenge_overflow_bytes"),
            ("[limits]\nmax_dtls_sessions = 0", "limits.max_dtls_sessions"),
            ("[limits]\nmax_dtls_handshakes_per_source = \"x\"", "limits.max_dtls_handshakes_per_source"),
            ("[auth]\nnonce_lifetime = -1", "auth.nonce_lifetime"),
            ("[auth]\nrealm = \"\"", "auth.realm"),
            ("[auth]\nrest_separator = \"::\"", "auth.rest_separator"),
            ("[auth]\nsecrets = [1, 2]", "auth.secrets"),
            ("[auth]\nusers = { alice = \"\" }", "auth.users.alice"),
            ("[auth]\nusers = { alice = 5 }", "auth.users.alice"),
            ("[relay]\naddresses = [\"not-an-ip\"]", "relay.addresses"),
            ("[relay]\nallow_peers = [\"10.0.0.0/33\"]", "relay.allow_peers"),
            ("[relay]\ndeny_peers = [\"x\"]", "relay.deny_peers"),
            ("[relay]\nbanned_clients = [\"1.2.3.4/99\"]", "relay.banned_clients"),
            ("[relay]\nexternal_addresses = { \"10.0.0.5\" = \"2001:db8::1\" }", "relay.external_addresses.10.0.0.5"),
            ("[admin]\nlisten = \"0.0.0.0:9000\"", "admin.listen"),
            ("[admin]\nalternate_servers = [\"nope\"]", "admin.alternate_servers"),
            ("[admin]\nallowed_hosts = \"relay.example\"", "admin.allowed_hosts"),
            ("[admin]\nallowed_hosts = [\"evil example\"]", "admin.allowed_hosts"),
            ("[admin]\nallowed_hosts = [\"relay.example:99999\"]", "admin.allowed_hosts"),
            ("[admin]\nallowed_hosts = [\"::1\"]", "admin.allowed_hosts"),
            ("[admin]\nallowed_hosts = [\"http://relay.example\"]", "admin.allowed_hosts"),
            ("[admin]\nallowed_hosts = [\"\"]", "admin.allowed_hosts"),
            ("[limits]\ndefault_lifetime = 1200\nmax_lifetime = 600", "limits.max_lifetime"),
            ("[server]\nlisten = []", "server.listen"),
            ("[server]\nlisten = [\"127.0.0.1:3478\", \"127.0.0.1:3478\"]", "server.listen"),
            ("[server]\nlisten = [\"127.0.0.1:3478\"]\ntls_listen = [\"127.0.0.1:3478\"]", "server.tls_listen"),
            ("[server]\nlisten = [\"127.0.0.1:9641\"]", "admin.listen"),
            ("server = 5", "server"),
        ])
    func badValue(text: String, key: String) throws {
        let e = try #require(error(text), "accepted: \(text)")
        #expect(e.key == key, "\(e)")
        #expect(e.description.contains(key))
    }

    @Test("A TOML syntax error is refused with its line")
    func syntax() throws {
        let e = try #require(error("[server]\nlisten = [\n"))
        #expect(e.reason.contains("TOML"))
    }
}

@Suite("Configuration overrides (flag > env > file > default)")
struct OverrideTests {
    @Test("Precedence: a flag beats the environment, which beats the file, which beats the default")
    func precedence() throws {
        let file = try ConfigurationLoader.parse(
            "[auth]\nrealm = \"file.example\"\n[relay]\nport_range = \"50000-50010\"\n[log]\nlevel = \"warning\"\n")
        #expect(TraverseConfiguration().realm == "traverse")
        #expect(file.realm == "file.example")

        let env = ConfigurationOverrides.fromEnvironment([
            "TRAVERSE_REALM": "env.example", "TRAVERSE_RELAY_PORTS": "51000-51010",
            "TRAVERSE_LISTEN": "127.0.0.1:4000, [::1]:4001", "TRAVERSE_USERS": "alice:a,bob:b",
        ])
        let afterEnv = try env.apply(to: file, flags: false)
        #expect(afterEnv.realm == "env.example")
        #expect(afterEnv.portRange == 51000...51010)
        #expect(afterEnv.listen == [TransportAddress("127.0.0.1:4000")!, TransportAddress("[::1]:4001")!])
        #expect(afterEnv.users == ["alice": "a", "bob": "b"])
        #expect(afterEnv.logLevel == "warning")  // from the file: not overridden

        var flags = ConfigurationOverrides()
        flags.realm = "flag.example"
        flags.listen = ["127.0.0.1:5000"]
        flags.users = ["alice:flagged"]
        flags.logLevel = "debug"
        flags.allowPeers = ["127.0.0.0/8"]
        flags.maxAllocationsPerUser = 1000
        flags.legacyChannelNumbers = true
        flags.secrets = ["sec"]
        flags.relayAddresses = ["127.0.0.1"]
        flags.stateDirectory = "/tmp/x"
        let final = try flags.apply(to: afterEnv, flags: true)
        #expect(final.realm == "flag.example")
        #expect(final.listen == [TransportAddress("127.0.0.1:5000")!])
        #expect(final.users == ["alice": "flagged", "bob": "b"])
        #expect(final.portRange == 51000...51010)  // from the environment
        #expect(final.logLevel == "debug")
        #expect(final.allowPeers == [CIDR("127.0.0.0/8")!])
        #expect(final.maxAllocationsPerUser == 1000)
        #expect(final.legacyChannelNumbers)
        #expect(final.secrets == ["sec"])
        #expect(final.relayAddresses == [IPAddress("127.0.0.1")!])
        #expect(final.stateDirectory == "/tmp/x")
    }

    @Test("Empty overrides change nothing")
    func empty() throws {
        let file = try ConfigurationLoader.parse("[auth]\nrealm = \"file.example\"\n")
        let c = try ConfigurationOverrides.fromEnvironment([:]).apply(to: file, flags: false)
        #expect(c.realm == "file.example")
        #expect(c.listen == file.listen)
    }

    @Test("Bad flag values name the flag; bad environment values name the variable")
    func badOverrides() throws {
        func key(_ o: ConfigurationOverrides, flags: Bool) -> String? {
            do {
                _ = try o.apply(to: TraverseConfiguration(), flags: flags)
                return nil
            } catch {
                return error.key
            }
        }
        var o = ConfigurationOverrides()
        o.listen = ["nonsense"]
        #expect(key(o, flags: true) == "--listen")
        #expect(key(o, flags: false) == "TRAVERSE_LISTEN")
        o = ConfigurationOverrides()
        o.relayPorts = "5-3"
        #expect(key(o, flags: true) == "--relay-ports")
        o = ConfigurationOverrides()
        o.logLevel = "loud"
        #expect(key(o, flags: true) == "--log-level")
        #expect(key(o, flags: false) == "TRAVERSE_LOG_LEVEL")
        o = ConfigurationOverrides()
        o.users = ["nocolon"]
        #expect(key(o, flags: true) == "--user")
        o = ConfigurationOverrides()
        o.allowPeers = ["x/y"]
        #expect(key(o, flags: true) == "--allow-peer")
        o = ConfigurationOverrides()
        o.relayAddresses = ["x"]
        #expect(key(o, flags: true) == "--relay-address")
        o = ConfigurationOverrides()
        o.maxAllocationsPerUser = -1
        #expect(key(o, flags: true) == "--user-quota")
        let env = ConfigurationOverrides.fromEnvironment(["TRAVERSE_USER_QUOTA": "many"])
        #expect(key(env, flags: false) == "TRAVERSE_USER_QUOTA")
    }
}

@Suite("Users file")
struct UsersFileTests {
    @Test("Plain passwords and 0x MD5 keys, comments and blank lines")
    func parse() throws {
        let key = Array("carol:example.org:pw".utf8).withUnsafeBytes { STUNDigest.md5($0) }
        let text = """
            # users
            alice:wonderland

              bob:has:colons  \r
            carol:0x\(Hex.encode(key).uppercased())
            """
        let users = try UsersFile.parse(text, realm: "example.org")
        #expect(Set(users.keys) == ["alice", "bob", "carol"])
        #expect(users["alice"] == UserKeys(username: "alice", realm: "example.org", password: "wonderland"))
        #expect(users["bob"] == UserKeys(username: "bob", realm: "example.org", password: "has:colons"))
        #expect(users["carol"]?.md5 == key)
        #expect(users["carol"]?.sha256 == nil)
        #expect(users["carol"]?.key(for: .sha256) == nil)
    }

    @Test("A file with CRLF line endings gives one user per line")
    func crlf() throws {
        let users = try UsersFile.parse("alice:one\r\nbob:two\r\n# c\r\ncarol:three\r\n", realm: "r")
        #expect(
            users == [
                "alice": UserKeys(username: "alice", realm: "r", password: "one"),
                "bob": UserKeys(username: "bob", realm: "r", password: "two"),
                "carol": UserKeys(username: "carol", realm: "r", password: "three"),
            ])
    }

    @Test(
        "Bad lines are refused with the line number",
        arguments: [("alice", 1), ("# x\n:pw", 2), ("a:b\nc:0x1234", 2), ("a:0xZZ", 1)])
    func bad(text: String, line: Int) throws {
        do {
            _ = try UsersFile.parse(text, realm: "r", path: "users.txt")
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.key == "users.txt:\(line)")
        }
    }

    @Test("A users file feeds the policy; a missing one is an error naming auth.users_file")
    func policy() throws {
        let path = "/tmp/traverse-ops-tests-users-\(getpid())"
        #expect(writeFile(path, "dave:pw\n"))
        var c = TraverseConfiguration()
        c.realm = "example.org"
        c.usersFile = path
        c.users = ["erin": "x"]
        let policy = try c.policy()
        #expect(Set(policy.credentials.users.keys) == ["dave", "erin"])
        #expect(c.hasCredentials)
        c.usersFile = path + "-missing"
        do {
            _ = try c.policy()
            Issue.record("missing users file accepted")
        } catch {
            #expect(error.key == "auth.users_file")
        }
        unlink(path)
    }
}

func writeFile(_ path: String, _ text: String) -> Bool {
    guard let f = fopen(path, "w") else { return false }
    defer { fclose(f) }
    return fputs(text, f) >= 0
}

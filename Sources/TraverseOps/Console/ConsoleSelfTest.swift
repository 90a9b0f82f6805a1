import STUNCodec
import TURNCore
import TraverseFleet

/// What the self-test page (`/check`) needs from the server: the TURN URLs of its listeners and,
/// when `auth.secrets` is set, a short-lived REST credential. The browser does the rest
/// (two `RTCPeerConnection`s relayed through each URL; see `ConsoleScript.check`).
enum ConsoleSelfTest {
    /// How long a minted credential is valid.
    static let credentialSeconds: Int64 = 300
    /// The user id in a minted credential's username (`<expiry>:traverse-console`), as the
    /// sessions list shows it while the self-test runs.
    static let credentialUser = "traverse-console"

    /// `GET /console/check.json`.
    struct Configuration: Encodable {
        /// `turn:` (UDP, TCP) and `turns:` (TLS) URLs of the bound listeners. A wildcard address
        /// is replaced by the host the browser used to reach the console.
        var urls: [String]
        /// Whether a REST secret is configured (`POST /console/credential` mints one).
        var rest: Bool
        var realm: String
    }

    /// `POST /console/credential`.
    struct Credential: Encodable {
        var username: String
        var password: String
        var ttl: Int64
        var expiresAt: Int64
        enum CodingKeys: String, CodingKey {
            case username, password, ttl
            case expiresAt = "expires_at"
        }
    }

    static func configuration(_ ops: Operations, hostHeader: String?) -> Configuration {
        let relay = ops.server.relay
        let fallback = hostHeader.flatMap(urlHost(ofHostHeader:))
        var urls: [String] = []
        func add(_ scheme: String, _ addresses: [TransportAddress], _ transport: String) {
            for a in addresses {
                let wildcard = a.ip == .anyIPv4 || a.ip == .anyIPv6
                let host: String
                if wildcard {
                    guard let fallback else { continue }
                    host = fallback
                } else {
                    host = a.family == .ipv6 ? "[\(a.ip)]" : "\(a.ip)"
                }
                let url = "\(scheme):\(host):\(a.port)?transport=\(transport)"
                if !urls.contains(url) { urls.append(url) }
            }
        }
        add("turn", relay.boundUDP, "udp")
        add("turn", relay.boundTCP, "tcp")
        add("turns", relay.boundTLS, "tcp")
        let policy = ops.server.shared.policy
        return Configuration(
            urls: urls, rest: !(policy.credentials.rest?.secrets.isEmpty ?? true), realm: policy.credentials.realm)
    }

    /// A credential from the first REST secret in force (the newest, by the rotation procedure),
    /// or nil without one.
    static func mint(_ ops: Operations, unixNow: Int64 = FleetBoard.nowMilliseconds() / 1000) -> Credential? {
        guard let rest = ops.server.shared.policy.credentials.rest, let secret = rest.secrets.first else { return nil }
        let expiry = unixNow + credentialSeconds
        let username = "\(expiry)\(rest.separator)\(credentialUser)"
        return Credential(
            username: username, password: RESTCredentials.password(secret: secret, username: username),
            ttl: credentialSeconds, expiresAt: expiry)
    }

    /// The host part of a `Host` header, as a URL writes it (`[v6]` in brackets); nil when it
    /// does not parse.
    static func urlHost(ofHostHeader value: String) -> String? {
        guard let h = AdminRequestPolicy.parseHost(value, defaultPort: 80) else { return nil }
        if let ip = h.ip { return ip.family == .ipv6 ? "[\(ip)]" : "\(ip)" }
        guard let colon = h.key.lastIndex(of: ":") else { return nil }
        return String(h.key[..<colon])
    }
}

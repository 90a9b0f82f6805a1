public import STUNCodec

/// Which admin requests are refused before any handler runs, so that a web page in a browser on
/// the host can neither act on the endpoint nor read it.
///
/// Invariant: a request reaches a handler only if its `Host` names the endpoint (the bound
/// address, `localhost` on loopback, or an `admin.allowed_hosts` entry), and a state-changing
/// request (any method but GET, HEAD and OPTIONS) only if it also carries `X-Traverse-Admin` and
/// no `Origin` other than the endpoint's own.
///
/// Why each check:
/// - `Host`: after DNS rebinding, a page of `evil.example` reaches 127.0.0.1 with
///   `Host: evil.example:9641`; an IP literal cannot be rebound, a name can.
/// - `X-Traverse-Admin`: a browser sends a cross-origin request with a custom header only after
///   a CORS preflight, which the endpoint never grants; a `text/plain` POST needs none.
/// - `Origin`: a browser names the page that sent a request; only the endpoint's own pages may act.
public struct AdminRequestPolicy: Sendable, Equatable {
    /// The header a state-changing request must carry (any value; `1` by convention).
    public static let requiredHeader = "X-Traverse-Admin"

    /// Allowed `host:port` values, lowercased, IP literals in canonical form.
    let hosts: Set<String>
    /// Bound to a wildcard address: any IP literal of its family, with its port, names it.
    let anyLiteral: AddressFamily?
    let port: UInt16

    /// What to do with a request.
    public enum Verdict: Sendable, Equatable {
        case allow
        /// Refuse with this HTTP status and a one-line reason.
        case refuse(status: Int, reason: String)
    }

    /// The policy of an endpoint bound to `bound` (port resolved), which also answers to
    /// `allowedHosts` (`NAME`, `NAME:PORT`, or an IP literal; no port means the bound port).
    /// Entries that do not parse are ignored: `ConfigurationLoader` refuses them first.
    public init(bound: TransportAddress, allowedHosts: [String] = []) {
        port = bound.port
        var hosts: Set<String> = [TransportAddress(ip: bound.ip, port: bound.port).description]
        let loopback = ConfigurationLoader.isLoopback(bound.ip)
        let wildcard = bound.ip == .anyIPv4 || bound.ip == .anyIPv6
        if loopback || wildcard { hosts.insert("localhost:\(bound.port)") }
        anyLiteral = wildcard ? bound.family : nil
        for entry in allowedHosts {
            if let h = Self.parseHost(entry, defaultPort: bound.port) { hosts.insert(h.key) }
        }
        self.hosts = hosts
    }

    /// Whether `entry` is a valid `admin.allowed_hosts` entry.
    public static func isValidEntry(_ entry: String) -> Bool { parseHost(entry, defaultPort: 1) != nil }

    /// Checks a request. `host` and `origin` are the header values (nil when absent).
    public func check(method: String, host: String?, origin: String?, hasAdminHeader: Bool) -> Verdict {
        guard let host, !host.isEmpty else { return .refuse(status: 400, reason: "a Host header is required") }
        guard allows(host, defaultPort: 80) else {
            return .refuse(
                status: 421, reason: "Host \(host.prefix(100)) is not this endpoint (see admin.allowed_hosts)")
        }
        let m = method.uppercased()
        if m == "GET" || m == "HEAD" || m == "OPTIONS" { return .allow }
        if let origin, !allowsOrigin(origin) {
            return .refuse(status: 403, reason: "cross-origin request refused (Origin \(origin.prefix(100)))")
        }
        guard hasAdminHeader else {
            return .refuse(status: 403, reason: "\(m) needs the header \(Self.requiredHeader): 1")
        }
        return .allow
    }

    /// Whether a `Host` value (port absent: `defaultPort`) names this endpoint.
    func allows(_ value: String, defaultPort: UInt16) -> Bool {
        guard let h = Self.parseHost(value, defaultPort: defaultPort) else { return false }
        if hosts.contains(h.key) { return true }
        if let family = anyLiteral, let ip = h.ip, ip.family == family, h.port == port { return true }
        return false
    }

    /// `scheme://host[:port]`, http or https, naming this endpoint; `null` never does.
    func allowsOrigin(_ origin: String) -> Bool {
        let o = origin.lowercased()
        let rest: Substring
        let defaultPort: UInt16
        if o.hasPrefix("http://") {
            rest = o.dropFirst(7)
            defaultPort = 80
        } else if o.hasPrefix("https://") {
            rest = o.dropFirst(8)
            defaultPort = 443
        } else {
            return false
        }
        guard !rest.contains("/") else { return false }
        return allows(String(rest), defaultPort: defaultPort)
    }

    /// A parsed `host[:port]`: its comparison key and, for an IP literal, the address.
    struct Host {
        var key: String
        var ip: IPAddress?
        var port: UInt16
    }

    /// Parses `NAME`, `NAME:PORT`, `1.2.3.4[:PORT]` or `[v6][:PORT]`; names are lowercased and
    /// lose a trailing dot, IP literals are written canonically.
    static func parseHost(_ text: String, defaultPort: UInt16) -> Host? {
        let t = text.lowercased()
        guard !t.isEmpty, t.utf8.count <= 255 else { return nil }
        var hostPart = Substring(t)
        var port = defaultPort
        if t.hasPrefix("[") {
            guard let close = t.firstIndex(of: "]") else { return nil }
            hostPart = t[t.index(after: t.startIndex)..<close]
            let rest = t[t.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":"), let p = parsePort(rest.dropFirst()) else { return nil }
                port = p
            }
            guard let ip = IPAddress(String(hostPart)), ip.family == .ipv6 else { return nil }
            return Host(key: TransportAddress(ip: ip, port: port).description, ip: ip, port: port)
        }
        if let colon = t.lastIndex(of: ":") {
            guard let p = parsePort(t[t.index(after: colon)...]) else { return nil }
            port = p
            hostPart = t[..<colon]
        }
        if let ip = IPAddress(String(hostPart)) {
            guard ip.family == .ipv4 else { return nil }  // IPv6 literals need brackets
            return Host(key: TransportAddress(ip: ip, port: port).description, ip: ip, port: port)
        }
        if hostPart.hasSuffix(".") { hostPart = hostPart.dropLast() }
        guard isHostName(hostPart) else { return nil }
        return Host(key: "\(hostPart):\(port)", ip: nil, port: port)
    }

    /// RFC 1123 names: dot-separated labels of letters, digits and inner hyphens.
    static func isHostName(_ s: Substring) -> Bool {
        guard !s.isEmpty else { return false }
        for label in s.split(separator: ".", omittingEmptySubsequences: false) {
            guard !label.isEmpty, label.utf8.count <= 63, label.first != "-", label.last != "-",
                label.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D })
            else { return false }
        }
        return true
    }

    static func parsePort(_ s: Substring) -> UInt16? {
        guard !s.isEmpty, s.utf8.count <= 5, s.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let p = UInt16(s),
            p > 0
        else { return nil }
        return p
    }
}

public import STUNCodec
import TURNCore

/// TURN long-term credentials: a username and password, either static or time-limited.
public struct TURNCredentials: Sendable, Equatable {
    /// The USERNAME sent to the server.
    public var username: String
    /// The password the long-term key is derived from.
    public var password: String

    /// Static credentials.
    public init(username: String, password: String) {
        self.username = username
        self.password = password
    }

    /// Time-limited ("TURN REST API") credentials: username `<expiry>:<userID>` and password
    /// base64(HMAC-SHA1(secret, username)), where `expiry` is a Unix time in seconds.
    public init(restSecret secret: String, userID: String, expiry: UInt64, separator: String = ":") {
        let name = userID.isEmpty ? "\(expiry)" : "\(expiry)\(separator)\(userID)"
        self.init(username: name, password: RESTCredentials.password(secret: Array(secret.utf8), username: name))
    }

    /// The long-term key: MD5(username ":" realm ":" password) (RFC 8489 §9.2.2).
    public func longTermKey(realm: String) -> [UInt8] {
        let text = Array("\(username):\(realm):\(password)".utf8)
        return text.withUnsafeBytes { STUNDigest.md5($0) }
    }
}

/// A parsed `turn:` URI (RFC 7065): host, port and transport. Only UDP is driven.
public struct TURNURL: Sendable, Equatable, CustomStringConvertible {
    /// The server's address.
    public var server: TransportAddress
    /// The `transport` parameter ("udp" when absent).
    public var transport: String

    /// Why a URL was refused.
    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case notTURN(String)
        case badHost(String)
        case badPort(String)
        case unsupportedTransport(String)

        public var description: String {
            switch self {
            case .notTURN(let s): "not a turn: URL: \(s) (expected turn:HOST:PORT?transport=udp)"
            case .badHost(let s): "host must be an IP literal or localhost: \(s)"
            case .badPort(let s): "bad port: \(s)"
            case .unsupportedTransport(let s): "only transport=udp is supported, not \(s)"
            }
        }
    }

    /// Parses `turn:HOST[:PORT][?transport=udp]`; HOST is an IPv4 literal, `[IPv6]` or `localhost`.
    public init(parsing text: String) throws(ParseError) {
        guard text.hasPrefix("turn:") else { throw .notTURN(text) }
        var rest = Substring(text.dropFirst(5))
        var transport = "udp"
        if let q = rest.firstIndex(of: "?") {
            let query = rest[rest.index(after: q)...]
            rest = rest[..<q]
            for item in query.split(separator: "&") {
                let kv = item.split(separator: "=", maxSplits: 1)
                if kv.count == 2 && kv[0].lowercased() == "transport" { transport = kv[1].lowercased() }
            }
        }
        guard transport == "udp" else { throw .unsupportedTransport(transport) }
        var hostText: Substring
        var portText: Substring? = nil
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw .badHost(String(rest)) }
            hostText = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if after.hasPrefix(":") { portText = after.dropFirst() } else if !after.isEmpty { throw .badHost(text) }
        } else if let colon = rest.lastIndex(of: ":") {
            hostText = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        } else {
            hostText = rest
        }
        let ip: IPAddress
        if hostText.lowercased() == "localhost" {
            ip = .loopbackIPv4
        } else if let parsed = IPAddress(String(hostText)) {
            ip = parsed
        } else {
            throw .badHost(String(hostText))
        }
        var port: UInt16 = 3478
        if let p = portText {
            guard let n = UInt16(p), n != 0 else { throw .badPort(String(p)) }
            port = n
        }
        self.server = TransportAddress(ip: ip, port: port)
        self.transport = transport
    }

    /// `turn:HOST:PORT?transport=udp`.
    public var description: String {
        "turn:\(server)?transport=\(transport)"
    }
}

extension IPAddress {
    /// Whether the address is loopback: 127.0.0.0/8, ::1, or an IPv4-mapped 127.0.0.0/8.
    public var isLoopback: Bool {
        switch self {
        case .v4(let a): return a >> 24 == 127
        case .v6(let hi, let lo):
            if hi == 0 && lo == 1 { return true }
            if hi == 0 && lo >> 32 == 0xFFFF { return (lo >> 24) & 0xFF == 127 }
            return false
        }
    }
}

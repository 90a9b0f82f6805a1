/// The address family of an IP address, with the numeric values STUN uses on the wire.
public enum AddressFamily: UInt8, Sendable, Hashable, CustomStringConvertible {
    /// IPv4: family 0x01 in address attributes.
    case ipv4 = 0x01
    /// IPv6: family 0x02 in address attributes.
    case ipv6 = 0x02

    /// `IPv4` or `IPv6`.
    public var description: String { self == .ipv4 ? "IPv4" : "IPv6" }
}

/// An IPv4 or IPv6 address held by value, so that addresses cost no allocation on the packet path.
///
/// Integers are in host order: `.v4(0x7F00_0001)` is 127.0.0.1 and `.v6(hi, lo)` holds the
/// 128 bits big-end first.
public enum IPAddress: Hashable, Sendable {
    /// An IPv4 address as a host-order integer: `0x7F00_0001` is 127.0.0.1.
    case v4(UInt32)
    /// An IPv6 address as two host-order halves: the first 64 bits, then the last 64 bits.
    case v6(UInt64, UInt64)

    /// The family of this address.
    @inlinable public var family: AddressFamily {
        if case .v4 = self { return .ipv4 }
        return .ipv6
    }

    /// The IPv4 "any" address, 0.0.0.0.
    public static let anyIPv4 = IPAddress.v4(0)
    /// The IPv6 "any" address, ::.
    public static let anyIPv6 = IPAddress.v6(0, 0)
    /// 127.0.0.1.
    public static let loopbackIPv4 = IPAddress.v4(0x7F00_0001)
    /// ::1.
    public static let loopbackIPv6 = IPAddress.v6(0, 1)

    /// Parses dotted-quad IPv4 or RFC 4291 text IPv6 (with `::` and an embedded dotted quad).
    /// A bracketed IPv6 form (`[::1]`) is accepted too. Returns nil for anything else.
    public init?(_ text: String) {
        var s = Substring(text)
        if s.hasPrefix("[") && s.hasSuffix("]") { s = s.dropFirst().dropLast() }
        if let v4 = IPAddress.parseIPv4(s) {
            self = .v4(v4)
        } else if let (hi, lo) = IPAddress.parseIPv6(s) {
            self = .v6(hi, lo)
        } else {
            return nil
        }
    }

    /// The 4 or 16 address bytes in network order.
    public var bytes: [UInt8] {
        switch self {
        case .v4(let a): return withUnsafeBytes(of: a.bigEndian) { Array($0) }
        case .v6(let hi, let lo):
            return withUnsafeBytes(of: hi.bigEndian) { Array($0) } + withUnsafeBytes(of: lo.bigEndian) { Array($0) }
        }
    }

    /// Builds an address from 4 or 16 network-order bytes.
    public init?(bytes: some Collection<UInt8>) {
        let b = Array(bytes)
        if b.count == 4 {
            self = .v4(b.reduce(0) { $0 << 8 | UInt32($1) })
        } else if b.count == 16 {
            let hi = b[0..<8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            let lo = b[8..<16].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            self = .v6(hi, lo)
        } else {
            return nil
        }
    }

    static func parseIPv4(_ s: Substring) -> UInt32? {
        var value: UInt32 = 0
        var parts = 0
        for part in s.split(separator: ".", omittingEmptySubsequences: false) {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy({ $0.isASCII && $0.isNumber }),
                let n = UInt32(part), n <= 255
            else { return nil }
            if part.count > 1 && part.first == "0" { return nil }  // no octal-looking forms
            value = value << 8 | n
            parts += 1
        }
        return parts == 4 ? value : nil
    }

    static func parseIPv6(_ s: Substring) -> (UInt64, UInt64)? {
        guard s.contains(":") else { return nil }
        var groups: [UInt16] = []
        var gapIndex: Int? = nil
        let halves = s.split(separator: "::", maxSplits: 2, omittingEmptySubsequences: false)
        guard halves.count <= 2 else { return nil }
        func parseGroups(_ part: Substring, allowTrailingIPv4: Bool) -> [UInt16]? {
            if part.isEmpty { return [] }
            var out: [UInt16] = []
            let items = part.split(separator: ":", omittingEmptySubsequences: false)
            for (i, item) in items.enumerated() {
                if i == items.count - 1 && allowTrailingIPv4 && item.contains(".") {
                    guard let v4 = parseIPv4(item) else { return nil }
                    out.append(UInt16(v4 >> 16))
                    out.append(UInt16(v4 & 0xFFFF))
                    continue
                }
                // Hex digits only: UInt16(_:radix:) alone would also take a sign ("+1", "-0").
                guard !item.isEmpty, item.utf8.count <= 4, item.utf8.allSatisfy(IPAddress.isASCIIHexDigit),
                    let g = UInt16(item, radix: 16)
                else { return nil }
                out.append(g)
            }
            return out
        }
        if halves.count == 2 {
            guard let head = parseGroups(halves[0], allowTrailingIPv4: false),
                let tail = parseGroups(halves[1], allowTrailingIPv4: true),
                head.count + tail.count <= 7
            else { return nil }
            groups = head
            gapIndex = head.count
            groups += Array(repeating: 0, count: 8 - head.count - tail.count) + tail
        } else {
            guard let all = parseGroups(halves[0], allowTrailingIPv4: true), all.count == 8 else { return nil }
            groups = all
        }
        _ = gapIndex
        let hi = groups[0..<4].reduce(UInt64(0)) { $0 << 16 | UInt64($1) }
        let lo = groups[4..<8].reduce(UInt64(0)) { $0 << 16 | UInt64($1) }
        return (hi, lo)
    }

    static func isASCIIHexDigit(_ c: UInt8) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66)
    }
}

extension IPAddress: CustomStringConvertible {
    /// Dotted quad for IPv4; RFC 5952 canonical text for IPv6.
    public var description: String {
        switch self {
        case .v4(let a):
            return "\(a >> 24).\(a >> 16 & 0xFF).\(a >> 8 & 0xFF).\(a & 0xFF)"
        case .v6(let hi, let lo):
            // RFC 5952 §5: an IPv4 address behind a well-known prefix is written dotted:
            // IPv4-mapped (::ffff:0:0/96) and the NAT64 prefix 64:ff9b::/96 (RFC 6052 §2.4).
            let v4 = IPAddress.v4(UInt32(truncatingIfNeeded: lo))
            if hi == 0 && lo >> 32 == 0x0000_FFFF { return "::ffff:\(v4)" }
            if hi == 0x0064_FF9B_0000_0000 && lo >> 32 == 0 { return "64:ff9b::\(v4)" }
            let groups: [UInt16] = (0..<8).map { i in
                let word = i < 4 ? hi : lo
                return UInt16(truncatingIfNeeded: word >> (UInt64(3 - i % 4) * 16))
            }
            // Longest run of two or more zero groups becomes "::".
            var bestStart = -1
            var bestLength = 1
            var i = 0
            while i < 8 {
                if groups[i] == 0 {
                    var j = i
                    while j < 8 && groups[j] == 0 { j += 1 }
                    if j - i > bestLength {
                        bestStart = i
                        bestLength = j - i
                    }
                    i = j
                } else {
                    i += 1
                }
            }
            func hex(_ g: UInt16) -> String { String(g, radix: 16) }
            if bestStart < 0 { return groups.map(hex).joined(separator: ":") }
            let head = groups[0..<bestStart].map(hex).joined(separator: ":")
            let tail = groups[(bestStart + bestLength)...].map(hex).joined(separator: ":")
            return head + "::" + tail
        }
    }
}

/// An IP address and a port: one end of a 5-tuple.
public struct TransportAddress: Hashable, Sendable, CustomStringConvertible {
    /// The IP address.
    public var ip: IPAddress
    /// The port, in host order.
    public var port: UInt16

    /// Makes an address from an IP address and a port.
    @inlinable public init(ip: IPAddress, port: UInt16) {
        self.ip = ip
        self.port = port
    }

    /// Parses `1.2.3.4:3478` or `[::1]:3478` (an IPv6 address must be bracketed, an IPv4 address
    /// must not be); returns nil otherwise.
    public init?(_ text: String) {
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            let host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":"), let port = Self.parsePort(rest.dropFirst()), let ip = IPAddress(String(host)),
                ip.family == .ipv6
            else { return nil }
            self.init(ip: ip, port: port)
        } else {
            guard let colon = text.lastIndex(of: ":"), let port = Self.parsePort(text[text.index(after: colon)...]),
                let ip = IPAddress(String(text[..<colon])), ip.family == .ipv4
            else { return nil }
            self.init(ip: ip, port: port)
        }
    }

    /// Decimal digits only: UInt16(_:) alone would also take a sign ("+80").
    static func parsePort(_ text: Substring) -> UInt16? {
        guard !text.isEmpty, text.utf8.count <= 5, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
            return nil
        }
        return UInt16(text)
    }

    /// The address family of `ip`.
    @inlinable public var family: AddressFamily { ip.family }

    /// `1.2.3.4:3478` for IPv4 and `[::1]:3478` for IPv6: the forms ``init(_:)`` parses.
    public var description: String {
        ip.family == .ipv4 ? "\(ip):\(port)" : "[\(ip)]:\(port)"
    }
}

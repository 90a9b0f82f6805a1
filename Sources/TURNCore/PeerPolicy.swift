public import STUNCodec

/// An IP prefix such as `10.0.0.0/8` or `fe80::/10`.
public struct CIDR: Hashable, Sendable, CustomStringConvertible {
    /// The first address of the prefix: host bits are zero.
    public let address: IPAddress
    /// The number of leading bits that count: 0–32 for IPv4, 0–128 for IPv6.
    public let prefixLength: Int

    /// Builds a prefix; host bits of `address` are cleared.
    public init?(address: IPAddress, prefixLength: Int) {
        let maxLength = address.family == .ipv4 ? 32 : 128
        guard (0...maxLength).contains(prefixLength) else { return nil }
        self.prefixLength = prefixLength
        self.address = CIDR.mask(address, prefixLength)
    }

    /// Parses `a.b.c.d/n`, `x::y/n`, or a bare address (a host prefix).
    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1)
        guard let first = parts.first, let ip = IPAddress(String(first)) else { return nil }
        let length: Int
        if parts.count == 2 {
            guard let n = Int(parts[1]) else { return nil }
            length = n
        } else {
            length = ip.family == .ipv4 ? 32 : 128
        }
        self.init(address: ip, prefixLength: length)
    }

    /// Whether `ip` lies inside this prefix (families must match).
    @inlinable public func contains(_ ip: IPAddress) -> Bool {
        guard ip.family == address.family else { return false }
        return CIDR.mask(ip, prefixLength) == address
    }

    @inlinable static func mask(_ ip: IPAddress, _ length: Int) -> IPAddress {
        switch ip {
        case .v4(let a):
            let m: UInt32 = length == 0 ? 0 : ~UInt32(0) << UInt32(32 - length)
            return .v4(a & m)
        case .v6(let hi, let lo):
            let mhi: UInt64 = length >= 64 ? ~0 : (length == 0 ? 0 : ~UInt64(0) << UInt64(64 - length))
            let mlo: UInt64 = length <= 64 ? 0 : (length == 128 ? ~0 : ~UInt64(0) << UInt64(128 - length))
            return .v6(hi & mhi, lo & mlo)
        }
    }

    /// `address/prefixLength`, such as `10.0.0.0/8`.
    public var description: String { "\(address)/\(prefixLength)" }
}

/// Which peer addresses an allocation may reach.
///
/// Deny by default: loopback, private, link-local, metadata, documentation, multicast and every
/// IPv6 form that embeds such an IPv4 address (CVE-2020-26262, CVE-2026-27624). An address is
/// canonicalised first: IPv4-mapped, IPv4-compatible, NAT64 (64:ff9b::/96), 6to4 (2002::/16) and
/// Teredo (2001::/32) forms are checked both as written and as the IPv4 address they carry.
/// The operator's allow list exempts prefixes from the default list; the deny list always wins.
public struct PeerPolicy: Sendable, Hashable {
    /// Prefixes denied unless allowed (see `../shared/README.md`).
    public static let defaultDenied: [CIDR] = [
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
        "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32", "::/128", "::1/128",
        "64:ff9b::/96", "100::/64", "2001::/32", "2001:db8::/32", "2002::/16", "fc00::/7", "fe80::/10",
        "fec0::/10", "ff00::/8", "::ffff:0:0/96", "::/96",
    ].map { CIDR($0)! }

    /// Prefixes exempt from the default deny list (e.g. `127.0.0.0/8` for tests).
    public var allowed: [CIDR]
    /// Prefixes always denied.
    public var denied: [CIDR]

    /// Makes a policy from the operator's lists; the default deny list always applies too.
    public init(allowed: [CIDR] = [], denied: [CIDR] = []) {
        self.allowed = allowed
        self.denied = denied
    }

    /// Why a peer is refused, for logs and metrics.
    public enum Verdict: Equatable, Sendable {
        /// The peer may be reached.
        case allowed
        /// Refused by ``PeerPolicy/defaultDenied``.
        case deniedByDefault
        /// Refused by the operator's ``PeerPolicy/denied`` list.
        case deniedByOperator
    }

    /// Decides whether `ip` may be a peer.
    public func verdict(for ip: IPAddress) -> Verdict {
        // No array of forms: this runs for every Send indication and must not allocate.
        let asWritten = singleVerdict(ip)
        guard let v4 = PeerPolicy.embeddedIPv4(ip) else { return asWritten }
        let embedded = singleVerdict(.v4(v4))
        if asWritten == .deniedByOperator || embedded == .deniedByOperator { return .deniedByOperator }
        if asWritten == .deniedByDefault || embedded == .deniedByDefault { return .deniedByDefault }
        return .allowed
    }

    /// Whether `ip` may be a peer.
    public func allows(_ ip: IPAddress) -> Bool { verdict(for: ip) == .allowed }

    func singleVerdict(_ ip: IPAddress) -> Verdict {
        for prefix in denied where prefix.contains(ip) { return .deniedByOperator }
        for prefix in allowed where prefix.contains(ip) { return .allowed }
        for prefix in PeerPolicy.defaultDenied where prefix.contains(ip) { return .deniedByDefault }
        return .allowed
    }

    /// The address as written plus the IPv4 address an IPv6 form embeds, if any.
    public static func forms(of ip: IPAddress) -> [IPAddress] {
        guard let v4 = embeddedIPv4(ip) else { return [ip] }
        return [ip, .v4(v4)]
    }

    /// The IPv4 address carried by an IPv4-mapped, -compatible, NAT64, 6to4 or Teredo address.
    public static func embeddedIPv4(_ ip: IPAddress) -> UInt32? {
        guard case .v6(let hi, let lo) = ip else { return nil }
        let low32 = UInt32(truncatingIfNeeded: lo)
        if hi == 0 && lo >> 32 == 0xFFFF { return low32 }  // ::ffff:a.b.c.d
        if hi == 0 && lo >> 32 == 0 && lo > 1 { return low32 }  // ::a.b.c.d (deprecated compatible form)
        if hi == 0x0064_FF9B_0000_0000 && lo >> 32 == 0 { return low32 }  // 64:ff9b::a.b.c.d
        if hi >> 48 == 0x2002 { return UInt32(truncatingIfNeeded: hi >> 16) }  // 2002:AABB:CCDD::
        if hi >> 32 == 0x2001_0000 { return ~low32 }  // Teredo: client address, inverted
        return nil
    }
}

/// Client addresses refused service (403), from configuration.
public struct ClientBanList: Sendable, Hashable {
    /// The banned prefixes.
    public var prefixes: [CIDR]
    /// Makes a ban list of `prefixes`.
    public init(_ prefixes: [CIDR] = []) { self.prefixes = prefixes }

    /// Whether `ip` (in any embedded form) is banned.
    public func isBanned(_ ip: IPAddress) -> Bool {
        if prefixes.isEmpty { return false }
        return PeerPolicy.forms(of: ip).contains { form in prefixes.contains { $0.contains(form) } }
    }
}

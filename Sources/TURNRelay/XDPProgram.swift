// The loaded XDP program: its attachments and its maps, shared by every shard.
//
// Invariant: immutable after `load`; every operation is a bpf(2) system call on a map, which the
// kernel serialises, so any shard may call them from its own queue. The links that attach the
// program are owned here (never pinned): `close()`, or the process ending however it ends,
// detaches the program. Only headers ever reach the maps; no payload is read here.
import CTraverseXDP
import STUNCodec
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// How the program runs on one interface.
public enum XDPAttachMode: String, Sendable, Hashable {
    /// In the driver (native XDP).
    case native
    /// In the kernel's generic hook (the driver has no XDP support): correct, but slower.
    case generic
}

/// Why the fast path could not start; the server then serves on the socket path.
public struct FastPathFailure: Error, Sendable, Hashable, CustomStringConvertible {
    /// A metric label: `object`, `load`, `interface` or `attach`.
    public var stage: String
    /// One line: what failed and the kernel's or libbpf's reason.
    public var reason: String

    public var description: String { "\(stage): \(reason)" }
}

/// The program's verdicts, in the order of `enum traverse_xdp_verdict` (`traverse_xdp_maps.h`).
public enum FastPathVerdict: Int, CaseIterable, Sendable {
    case forwardedToPeer, forwardedToClient
    case passNotUDP, passIPOptions, passNoBinding, passMalformed, passChannelExpired, passNoPermission
    case passNoChecksum, passPadding, passNoNeighbour, passNoRoute, passTooBig, passForwardingOff
    case dropRewriteFailed

    /// `forwarded`, `passed` or `dropped`.
    public var outcome: String {
        switch self {
        case .forwardedToPeer, .forwardedToClient: return "forwarded"
        case .dropRewriteFailed: return "dropped"
        default: return "passed"
        }
    }

    /// The direction or reason, as a metric label.
    public var reason: String {
        switch self {
        case .forwardedToPeer: return "to_peer"
        case .forwardedToClient: return "to_client"
        case .passNotUDP: return "not_udp"
        case .passIPOptions: return "ip_options_or_fragment"
        case .passNoBinding: return "no_binding"
        case .passMalformed: return "malformed"
        case .passChannelExpired: return "channel_expired"
        case .passNoPermission: return "no_permission"
        case .passNoChecksum: return "no_checksum"
        case .passPadding: return "padding"
        case .passNoNeighbour: return "no_neighbour"
        case .passNoRoute: return "no_route"
        case .passTooBig: return "too_big"
        case .passForwardingOff: return "forwarding_off"
        case .dropRewriteFailed: return "rewrite_failed"
        }
    }
}

/// The XDP program loaded into the kernel and attached to interfaces (see the top of this file).
public final class XDPProgram: @unchecked Sendable {
    private let handle: OpaquePointer
    /// Interfaces the program is attached to, and how.
    public let attachments: [(interface: String, mode: XDPAttachMode)]
    let channelsFD: Int32
    let peersFD: Int32
    let permissionsFD: Int32
    let channelCountersFD: Int32
    let peerCountersFD: Int32
    /// Possible CPUs: the length of a per-CPU map value.
    let cpus: Int
    private let closed = Atomic<Bool>(false)

    /// Loads the BPF object at `objectPath` and attaches it to each of `interfaces`.
    /// Where the build puts the object: beside the executable (`make build` compiles it there).
    public static var defaultObjectPath: String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return "traverse-xdp.bpf.o" }
        let exe = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let dir = exe.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        return dir + "/traverse-xdp.bpf.o"
    }

    public static func load(objectPath: String, interfaces: [String]) -> Result<XDPProgram, FastPathFailure> {
        guard access(objectPath, R_OK) == 0 else {
            return .failure(FastPathFailure(stage: "object", reason: "cannot read \(objectPath)"))
        }
        var reason = [CChar](repeating: 0, count: 512)
        guard let handle = traverse_xdp_load(objectPath, &reason, reason.count) else {
            return .failure(FastPathFailure(stage: "load", reason: Self.text(reason)))
        }
        var attached: [(String, XDPAttachMode)] = []
        for name in interfaces {
            let index = if_nametoindex(name)
            guard index != 0 else {
                traverse_xdp_close(handle)
                return .failure(FastPathFailure(stage: "interface", reason: "no interface named \(name)"))
            }
            let mode = traverse_xdp_attach(handle, Int32(index), &reason, reason.count)
            guard mode > 0 else {
                traverse_xdp_close(handle)
                return .failure(FastPathFailure(stage: "attach", reason: "\(name): \(Self.text(reason))"))
            }
            attached.append((name, mode == Int32(TRAVERSE_XDP_MODE_NATIVE.rawValue) ? .native : .generic))
        }
        return .success(XDPProgram(handle: handle, attachments: attached))
    }

    /// A C string in `buffer`, up to its terminating zero.
    private static func text(_ buffer: [CChar]) -> String {
        let end = buffer.firstIndex(of: 0) ?? buffer.endIndex
        return String(decoding: buffer[..<end].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private init(handle: OpaquePointer, attachments: [(interface: String, mode: XDPAttachMode)]) {
        self.handle = handle
        self.attachments = attachments
        channelsFD = traverse_xdp_channels_fd(handle)
        peersFD = traverse_xdp_peers_fd(handle)
        permissionsFD = traverse_xdp_permissions_fd(handle)
        channelCountersFD = traverse_xdp_channel_counters_fd(handle)
        peerCountersFD = traverse_xdp_peer_counters_fd(handle)
        cpus = max(1, Int(traverse_xdp_possible_cpus()))
    }

    /// Detaches the program from every interface and unloads it with its maps. Once.
    public func close() {
        guard closed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
        else { return }
        traverse_xdp_close(handle)
    }

    deinit { close() }

    /// The program's verdict counters, summed over CPUs, indexed by `FastPathVerdict`.
    public func verdicts() -> [UInt64] {
        var totals = [UInt64](repeating: 0, count: FastPathVerdict.allCases.count)
        guard !closed.load(ordering: .acquiring) else { return totals }
        _ = traverse_xdp_verdicts(handle, &totals, Int32(totals.count))
        return totals
    }

    // MARK: Map operations (0 or a negative errno)

    @discardableResult
    func update<K, V>(_ fd: Int32, _ key: K, _ value: V) -> Int32 {
        withUnsafeBytes(of: key) { k in
            withUnsafeBytes(of: value) { v in
                traverse_xdp_map_update(fd, k.baseAddress, v.baseAddress)
            }
        }
    }

    @discardableResult
    func insertIfAbsent<K, V>(_ fd: Int32, _ key: K, _ value: V) -> Int32 {
        withUnsafeBytes(of: key) { k in
            withUnsafeBytes(of: value) { v in
                traverse_xdp_map_insert(fd, k.baseAddress, v.baseAddress)
            }
        }
    }

    @discardableResult
    func delete<K>(_ fd: Int32, _ key: K) -> Int32 {
        withUnsafeBytes(of: key) { k in traverse_xdp_map_delete(fd, k.baseAddress) }
    }

    /// The per-CPU counters of a binding summed, optionally deleting them in the same call.
    func counters<K>(_ fd: Int32, _ key: K, delete: Bool) -> (packets: UInt64, bytes: UInt64)? {
        var values = [traverse_xdp_counters](repeating: traverse_xdp_counters(), count: cpus)
        let rc = withUnsafeBytes(of: key) { k in
            values.withUnsafeMutableBytes { v in
                delete
                    ? traverse_xdp_map_lookup_and_delete(fd, k.baseAddress, v.baseAddress)
                    : traverse_xdp_map_lookup(fd, k.baseAddress, v.baseAddress)
            }
        }
        guard rc == 0 else { return nil }
        var total: (packets: UInt64, bytes: UInt64) = (0, 0)
        for v in values {
            total.packets &+= v.packets
            total.bytes &+= v.bytes
        }
        return total
    }
}

public import STUNCodec

#if canImport(Glibc)
    import Glibc
#endif

/// Whether another process holds one of our listening addresses. Every listener is bound with
/// SO_REUSEPORT (the shards of one process share a port that way), so the kernel would let a
/// second instance bind the same address without a word and split clients between the two.
///
/// Two ways to tell, for two moments:
/// - before this process binds an address (start): a probe socket bound **without**
///   SO_REUSEPORT fails with EADDRINUSE when any socket already holds the address (for TCP the
///   probe sets SO_REUSEADDR, so only a listening socket counts, not connections in TIME_WAIT);
/// - once it holds the address (drain, `--takeover`): the kernel's socket tables
///   (/proc/net/{tcp,tcp6,udp,udp6}) list a listening socket on the same address whose inode is
///   not one of ours.
///
/// Invariant: nothing here keeps a socket open or changes one of ours.
public enum ListenerOwnership {
    /// The transport of a listening address.
    public enum Transport: String, Sendable, Hashable {
        case udp
        case tcp
    }

    /// Whether some socket already holds `address` for `transport`, so that binding it here
    /// would share it (or fail). Port 0 is never held. Call before this process binds it.
    public static func isHeld(_ address: TransportAddress, _ transport: Transport) -> Bool {
        if address.port == 0 { return false }
        let type = transport == .tcp ? Int32(SOCK_STREAM.rawValue) : Int32(SOCK_DGRAM.rawValue)
        guard let fd = try? Sockets.open(address.family, type: type) else { return false }
        defer { close(fd) }
        if transport == .tcp { Sockets.setInt(fd, SOL_SOCKET, SO_REUSEADDR, 1) }
        do {
            try Sockets.bind(fd, address)
            return false
        } catch {
            return error.code == EADDRINUSE
        }
    }

    /// The inode of the socket `fd` (as the kernel's socket tables show it), or nil.
    static func inode(_ fd: Int32) -> UInt64? {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return nil }
        return UInt64(st.st_ino)
    }

    /// Whether the kernel's socket table lists a socket listening on exactly `address` for
    /// `transport` (TCP: in LISTEN state; UDP: unconnected) whose inode is not in `ours`.
    static func heldElsewhere(_ address: TransportAddress, _ transport: Transport, ours: Set<UInt64>) -> Bool {
        let path = "/proc/net/\(transport.rawValue)\(address.family == .ipv6 ? "6" : "")"
        guard let table = readFile(path) else { return false }
        return othersListening(in: table, on: address, transport, ours: ours)
    }

    /// `heldElsewhere` on the text of a socket table.
    static func othersListening(
        in table: String, on address: TransportAddress, _ transport: Transport, ours: Set<UInt64>
    ) -> Bool {
        let local = tableAddress(address)
        let listening = transport == .tcp ? "0A" : "07"  // TCP_LISTEN; TCP_CLOSE (unconnected UDP)
        for line in table.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count > 9, fields[1] == local, fields[3] == listening, let inode = UInt64(fields[9]),
                inode != 0, !ours.contains(inode)
            else { continue }
            return true
        }
        return false
    }

    /// `address` as the socket tables write it: the address as native-endian 32-bit words of
    /// its network-order bytes, in hex, then the port in hex (`0100007F:0D96` on x86 for
    /// 127.0.0.1:3478).
    static func tableAddress(_ address: TransportAddress) -> Substring {
        func hex(_ v: UInt32, _ width: Int) -> String {
            let s = String(v, radix: 16, uppercase: true)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        var words: [UInt32]
        switch address.ip {
        case .v4(let a): words = [a]
        case .v6(let hi, let lo):
            words = [
                UInt32(truncatingIfNeeded: hi >> 32), UInt32(truncatingIfNeeded: hi),
                UInt32(truncatingIfNeeded: lo >> 32), UInt32(truncatingIfNeeded: lo),
            ]
        }
        return Substring(words.map { hex($0.bigEndian, 8) }.joined() + ":" + hex(UInt32(address.port), 4))
    }

    static func readFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

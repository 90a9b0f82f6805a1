public import STUNCodec
import TraverseSystem

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
///   (/proc/net/{tcp,tcp6,udp,udp6}, read by TraverseSystem's `SocketTable`) list a listening socket on the same address whose inode is
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
        guard let table = TextFile.read(SocketTable.path(transport.rawValue, address.family), limit: .max) else {
            return false
        }
        return othersListening(in: table, on: address, transport, ours: ours)
    }

    /// `heldElsewhere` on the text of a socket table.
    static func othersListening(
        in table: String, on address: TransportAddress, _ transport: Transport, ours: Set<UInt64>
    ) -> Bool {
        let listening = transport == .tcp ? SocketTable.tcpListen : SocketTable.udpUnconnected
        return SocketTable.inodes(in: table, local: address, state: listening).contains {
            $0 != 0 && !ours.contains($0)
        }
    }
}

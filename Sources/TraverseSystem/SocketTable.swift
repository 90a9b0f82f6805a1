// The kernel's socket tables, /proc/net/{tcp,tcp6,udp,udp6}: which sockets hold which local
// address, in which state, under which inode. The parser takes text, so tests feed it samples.
// Invariant: lines that do not parse are skipped, never trusted.

package import STUNCodec

/// Reading `/proc/net/{tcp,tcp6,udp,udp6}`.
package enum SocketTable {
    /// `st` of a listening TCP socket.
    package static let tcpListen: Substring = "0A"
    /// `st` of an unconnected UDP socket (TCP_CLOSE).
    package static let udpUnconnected: Substring = "07"

    /// The table's path for `transport` ("tcp" or "udp") and the address family.
    package static func path(_ transport: String, _ family: AddressFamily) -> String {
        "/proc/net/\(transport)\(family == .ipv6 ? "6" : "")"
    }

    /// The inodes of the sockets in `table` bound to exactly `address` in `state`.
    package static func inodes(in table: String, local address: TransportAddress, state: Substring) -> [UInt64] {
        let local = tableAddress(address)
        var found: [UInt64] = []
        for line in table.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count > 9, fields[1] == local, fields[3] == state, let inode = UInt64(fields[9]) else {
                continue
            }
            found.append(inode)
        }
        return found
    }

    /// `address` as the socket tables write it: the address as native-endian 32-bit words of
    /// its network-order bytes, in hex, then the port in hex (`0100007F:0D96` on x86 for
    /// 127.0.0.1:3478).
    package static func tableAddress(_ address: TransportAddress) -> Substring {
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
}

// Conversions between STUNCodec's `TransportAddress` and the kernel's socket addresses.
// Invariant: nothing here allocates; both directions are inlinable, because the relay's packet
// path converts an address per datagram from another module (TURNRelay).

package import CTraverseSystem
package import STUNCodec

#if canImport(Glibc)
    import Glibc
#endif

/// Conversions between `TransportAddress` and the kernel's socket addresses, without allocating.
package enum SocketAddress {
    /// Writes `address` as a sockaddr_in/sockaddr_in6 into `storage`; returns its length.
    @inlinable @inline(__always)
    package static func write(_ address: TransportAddress, to storage: UnsafeMutablePointer<sockaddr_storage>)
        -> socklen_t
    {
        switch address.ip {
        case .v4(let a):
            return storage.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                sin.pointee = sockaddr_in()
                sin.pointee.sin_family = sa_family_t(AF_INET)
                sin.pointee.sin_port = address.port.bigEndian
                sin.pointee.sin_addr.s_addr = a.bigEndian
                return socklen_t(MemoryLayout<sockaddr_in>.size)
            }
        case .v6(let hi, let lo):
            return storage.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                sin6.pointee = sockaddr_in6()
                sin6.pointee.sin6_family = sa_family_t(AF_INET6)
                sin6.pointee.sin6_port = address.port.bigEndian
                withUnsafeMutableBytes(of: &sin6.pointee.sin6_addr) { b in
                    b.storeBytes(of: hi.bigEndian, toByteOffset: 0, as: UInt64.self)
                    b.storeBytes(of: lo.bigEndian, toByteOffset: 8, as: UInt64.self)
                }
                return socklen_t(MemoryLayout<sockaddr_in6>.size)
            }
        }
    }

    /// Reads a sockaddr_in/sockaddr_in6; nil for other families. An IPv4-mapped IPv6 address
    /// stays IPv6 (`::ffff:a.b.c.d`): policy code canonicalises it, not this conversion.
    @inlinable @inline(__always)
    package static func read(_ storage: UnsafeRawPointer) -> TransportAddress? {
        let family = storage.load(as: sockaddr.self).sa_family
        if family == sa_family_t(AF_INET) {
            let sin = storage.load(as: sockaddr_in.self)
            return TransportAddress(
                ip: .v4(UInt32(bigEndian: sin.sin_addr.s_addr)), port: UInt16(bigEndian: sin.sin_port))
        } else if family == sa_family_t(AF_INET6) {
            let b = UnsafeRawBufferPointer(start: storage + 8, count: 16)
            let port = UInt16(bigEndian: storage.load(fromByteOffset: 2, as: UInt16.self))
            return TransportAddress(ip: .v6(b.be64(0), b.be64(8)), port: port)
        }
        return nil
    }

    /// Calls `body` with `address` as a `sockaddr` and its length (for bind, connect …).
    static func withSockaddr<R>(
        _ address: TransportAddress, _ body: (UnsafePointer<sockaddr>, socklen_t) throws -> R
    ) rethrows -> R {
        var storage = sockaddr_storage()
        let length = write(address, to: &storage)
        return try withUnsafePointer(to: &storage) {
            try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, length) }
        }
    }

    /// Reads the address in a `sockaddr_storage` value.
    @inlinable
    package static func read(_ storage: sockaddr_storage) -> TransportAddress? {
        var s = storage
        return withUnsafePointer(to: &s) { read(UnsafeRawPointer($0)) }
    }
}

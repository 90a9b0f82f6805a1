// Small wrappers over socket(2) and friends: open, bind, listen, connect, options. Every socket is
// non-blocking and close-on-exec, and IPv6 sockets are IPv6-only; errno becomes `SocketError`.
// Used by the server (listeners, relays, RFC 6062 connections) and the load generator (one
// connected UDP socket per emulated client).

import CTraverseSystem
package import STUNCodec

#if canImport(Glibc)
    import Glibc
#endif

/// Small wrappers over socket(2) and friends that turn errno into `SocketError`.
package enum Sockets {
    /// AF_INET or AF_INET6.
    @inlinable
    package static func family(_ f: AddressFamily) -> Int32 { f == .ipv4 ? AF_INET : AF_INET6 }

    /// A non-blocking socket of `type` for `family`; IPv6 sockets are IPv6-only.
    package static func open(_ family: AddressFamily, type: Int32) throws(SocketError) -> Int32 {
        let fd = socket(Self.family(family), type | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError("socket") }
        if family == .ipv6 { setInt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1) }
        return fd
    }

    /// setsockopt with an int value; whether it succeeded.
    @discardableResult
    package static func setInt(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) -> Bool {
        var v = value
        return setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size)) == 0
    }

    /// Binds `fd` to `address`.
    package static func bind(_ fd: Int32, _ address: TransportAddress) throws(SocketError) {
        let rc = SocketAddress.withSockaddr(address) { Glibc.bind(fd, $0, $1) }
        guard rc == 0 else { throw SocketError("bind \(address)") }
    }

    /// A listening TCP socket on `address`, sharing the address with others (SO_REUSEADDR,
    /// SO_REUSEPORT): one per shard on a listening address, and a relay's listener beside the
    /// connections made from the same relayed address (RFC 6062).
    package static func listeningStream(_ address: TransportAddress, backlog: Int32) throws(SocketError) -> Int32 {
        let fd = try open(address.family, type: Int32(SOCK_STREAM.rawValue))
        setInt(fd, SOL_SOCKET, SO_REUSEADDR, 1)
        setInt(fd, SOL_SOCKET, SO_REUSEPORT, 1)
        do {
            try bind(fd, address)
        } catch {
            close(fd)
            throw error
        }
        guard listen(fd, backlog) == 0 else {
            let e = SocketError("listen \(address)")
            close(fd)
            throw e
        }
        return fd
    }

    /// The address `fd` is bound to.
    package static func localAddress(_ fd: Int32) -> TransportAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard rc == 0 else { return nil }
        return withUnsafePointer(to: &storage) { SocketAddress.read(UnsafeRawPointer($0)) }
    }

    /// Sets large socket buffers (the default ~208 KB drops bursts) and kernel drop reporting.
    package static func tuneDatagramSocket(_ fd: Int32, bufferBytes: Int32) {
        setInt(fd, SOL_SOCKET, SO_RCVBUF, bufferBytes)
        setInt(fd, SOL_SOCKET, SO_SNDBUF, bufferBytes)
        setInt(fd, SOL_SOCKET, SO_RXQ_OVFL, 1)
    }
}

/// Text of a NUL-terminated C buffer.
package func stringFromC(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

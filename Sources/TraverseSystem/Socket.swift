import CTraverseSystem
import STUNCodec

#if canImport(Glibc)
    import Glibc
#endif

/// A socket call that failed, with the call's name and errno's text.
public struct SocketError: Error, CustomStringConvertible, Sendable {
    public let operation: String
    public let code: Int32

    /// Captures errno now.
    public init(_ operation: String) {
        self.operation = operation
        self.code = errno
    }

    public init(_ operation: String, code: Int32) {
        self.operation = operation
        self.code = code
    }

    public var description: String { "\(operation) failed: \(String(cString: strerror(code)))" }
}

/// Conversions between `TransportAddress` and the kernel's socket addresses, without allocating.
enum SocketAddress {
    /// Writes `address` as a sockaddr_in/sockaddr_in6 into `storage`; returns its length.
    @inline(__always)
    static func write(_ address: TransportAddress, to storage: UnsafeMutablePointer<sockaddr_storage>) -> socklen_t {
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

    /// Reads a sockaddr_in/sockaddr_in6; nil for other families.
    @inline(__always)
    static func read(_ storage: UnsafeRawPointer) -> TransportAddress? {
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
}

/// Small wrappers over socket(2) and friends that turn errno into `SocketError`.
enum Sockets {
    static func family(_ f: AddressFamily) -> Int32 { f == .ipv4 ? AF_INET : AF_INET6 }

    /// A non-blocking socket of `type` for `family`; IPv6 sockets are IPv6-only.
    static func open(_ family: AddressFamily, type: Int32) throws(SocketError) -> Int32 {
        let fd = socket(Self.family(family), type | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError("socket") }
        if family == .ipv6 { setInt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1) }
        return fd
    }

    @discardableResult
    static func setInt(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) -> Bool {
        var v = value
        return setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size)) == 0
    }

    /// Binds `fd` to `address`.
    static func bind(_ fd: Int32, _ address: TransportAddress) throws(SocketError) {
        var storage = sockaddr_storage()
        let length = SocketAddress.write(address, to: &storage)
        let rc = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, length) }
        }
        guard rc == 0 else { throw SocketError("bind \(address)") }
    }

    /// A listening TCP socket on `address`, sharing the address with others (SO_REUSEADDR,
    /// SO_REUSEPORT): one per shard on a listening address, and a relay's listener beside the
    /// connections made from the same relayed address (RFC 6062).
    static func listeningStream(_ address: TransportAddress, backlog: Int32) throws(SocketError) -> Int32 {
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
    static func localAddress(_ fd: Int32) -> TransportAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard rc == 0 else { return nil }
        return withUnsafePointer(to: &storage) { SocketAddress.read(UnsafeRawPointer($0)) }
    }

    /// Sets large socket buffers (the default ~208 KB drops bursts) and kernel drop reporting.
    static func tuneDatagramSocket(_ fd: Int32, bufferBytes: Int32) {
        setInt(fd, SOL_SOCKET, SO_RCVBUF, bufferBytes)
        setInt(fd, SOL_SOCKET, SO_SNDBUF, bufferBytes)
        setInt(fd, SOL_SOCKET, SO_RXQ_OVFL, 1)
    }
}

/// Clocks read once per batch, never per packet.
enum Clock {
    static func monotonicMilliseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
    }

    static func unixSeconds() -> Int64 { Int64(time(nil)) }
}

/// Text of a NUL-terminated C buffer.
func stringFromC(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

import Glibc
import STUNCodec

/// A tiny blocking UDP socket for tests: bind, sendto, recvfrom with a poll timeout.
final class UDPSocket {
    let fd: Int32
    let family: AddressFamily

    init(bind address: TransportAddress, sendBuffer: Int32? = nil) throws {
        family = address.family
        fd = socket(family == .ipv4 ? AF_INET : AF_INET6, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw UDPError.socket(errno) }
        if var size = sendBuffer {
            _ = setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        let rc = UDPSocket.withSockaddr(address) { sa, len in Glibc.bind(fd, sa, len) }
        guard rc == 0 else {
            close(fd)
            throw UDPError.bind(errno)
        }
    }

    deinit { close(fd) }

    /// The bound local address.
    var localAddress: TransportAddress {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return UDPSocket.address(storage)!
    }

    @discardableResult
    func send(_ bytes: [UInt8], to address: TransportAddress) -> Bool {
        let n = bytes.withUnsafeBytes { b in
            UDPSocket.withSockaddr(address) { sa, len in sendto(fd, b.baseAddress, b.count, 0, sa, len) }
        }
        return n == bytes.count
    }

    /// Waits up to `timeout` milliseconds for one datagram.
    func receive(timeout: Int32 = 2000) -> (bytes: [UInt8], from: TransportAddress)? {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, timeout) == 1 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let n = buffer.withUnsafeMutableBytes { b in
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    recvfrom(fd, b.baseAddress, b.count, 0, $0, &len)
                }
            }
        }
        guard n >= 0, let from = UDPSocket.address(storage) else { return nil }
        return (Array(buffer[0..<n]), from)
    }

    /// Receives until a datagram passes `accept` or the time runs out.
    func receive(timeout: Int32 = 2000, where accept: ([UInt8]) -> Bool) -> (bytes: [UInt8], from: TransportAddress)? {
        for _ in 0..<20 {
            guard let r = receive(timeout: timeout) else { return nil }
            if accept(r.bytes) { return r }
        }
        return nil
    }

    static func withSockaddr<R>(_ a: TransportAddress, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        switch a.ip {
        case .v4(let v):
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = a.port.bigEndian
            sa.sin_addr.s_addr = v.bigEndian
            return withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    body($0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        case .v6:
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            sa.sin6_port = a.port.bigEndian
            let bytes = a.ip.bytes
            withUnsafeMutableBytes(of: &sa.sin6_addr) { for i in 0..<16 { $0[i] = bytes[i] } }
            return withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    body($0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        }
    }

    static func address(_ storage: sockaddr_storage) -> TransportAddress? {
        var s = storage
        switch Int32(s.ss_family) {
        case AF_INET:
            return withUnsafePointer(to: &s) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { p in
                    TransportAddress(
                        ip: .v4(UInt32(bigEndian: p.pointee.sin_addr.s_addr)),
                        port: UInt16(bigEndian: p.pointee.sin_port))
                }
            }
        case AF_INET6:
            return withUnsafePointer(to: &s) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { p in
                    var a = p.pointee.sin6_addr
                    let bytes = withUnsafeBytes(of: &a) { Array($0) }
                    return TransportAddress(ip: IPAddress(bytes: bytes)!, port: UInt16(bigEndian: p.pointee.sin6_port))
                }
            }
        default:
            return nil
        }
    }
}

enum UDPError: Error {
    case socket(Int32)
    case bind(Int32)
}

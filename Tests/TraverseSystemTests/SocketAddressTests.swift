import Glibc
import STUNCodec
import Testing
import TraverseSystem

@Suite("sockaddr ⇄ TransportAddress")
struct SocketAddressTests {
    func roundTrip(_ address: TransportAddress) -> (TransportAddress?, socklen_t) {
        var storage = sockaddr_storage()
        let length = SocketAddress.write(address, to: &storage)
        return (SocketAddress.read(storage), length)
    }

    @Test func ipv4() throws {
        let a = TransportAddress(ip: try #require(IPAddress("192.0.2.10")), port: 3478)
        let (back, length) = roundTrip(a)
        #expect(back == a)
        #expect(length == socklen_t(MemoryLayout<sockaddr_in>.size))
        // Network byte order in the kernel's structure.
        var storage = sockaddr_storage()
        _ = SocketAddress.write(a, to: &storage)
        let bytes = withUnsafeBytes(of: &storage) { Array($0.prefix(8)) }
        #expect(Int32(storage.ss_family) == AF_INET)
        #expect(bytes[2...7] == [0x0D, 0x96, 192, 0, 2, 10])
    }

    @Test func ipv6() throws {
        let a = TransportAddress(ip: try #require(IPAddress("2001:db8::1:2")), port: 65535)
        let (back, length) = roundTrip(a)
        #expect(back == a)
        #expect(length == socklen_t(MemoryLayout<sockaddr_in6>.size))
        var storage = sockaddr_storage()
        _ = SocketAddress.write(a, to: &storage)
        let bytes = withUnsafeBytes(of: &storage) { Array($0[8..<24]) }
        #expect(bytes == [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2])
    }

    @Test func ipv4MappedStaysIPv6() throws {
        // Canonicalising ::ffff:a.b.c.d is the peer policy's job; the conversion keeps it as is.
        let a = TransportAddress(ip: try #require(IPAddress("::ffff:127.0.0.1")), port: 9)
        let (back, _) = roundTrip(a)
        #expect(back == a)
        #expect(back?.family == .ipv6)
    }

    @Test func otherFamiliesReadAsNil() {
        var storage = sockaddr_storage()
        storage.ss_family = sa_family_t(AF_UNIX)
        #expect(SocketAddress.read(storage) == nil)
    }

    @Test func boundSocketReportsItsAddress() throws {
        let fd = try Sockets.open(.ipv4, type: Int32(SOCK_DGRAM.rawValue))
        defer { close(fd) }
        try Sockets.bind(fd, TransportAddress(ip: .loopbackIPv4, port: 0))
        let local = try #require(Sockets.localAddress(fd))
        #expect(local.ip == .loopbackIPv4)
        #expect(local.port != 0)
    }

    @Test func socketErrorCarriesTheCall() {
        let e = SocketError("bind 127.0.0.1:1", code: EADDRINUSE)
        #expect(e.description == "bind 127.0.0.1:1 failed: Address already in use")
    }
}

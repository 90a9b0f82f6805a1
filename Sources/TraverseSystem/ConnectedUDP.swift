// A UDP socket connected to one address, as an emulated client holds one towards the TURN
// server it loads. Invariant: the descriptor is non-blocking and close-on-exec; `close()` is
// the owner's to call, once.

import CTraverseSystem
package import STUNCodec

#if canImport(Glibc)
    import Glibc
#endif

/// A non-blocking UDP socket connected to one server address, with large buffers and the
/// kernel's per-socket drop counter (SO_RXQ_OVFL) turned on.
package struct ConnectedUDPSocket {
    /// The descriptor.
    package let fd: Int32

    /// Opens a socket, sizes its buffers (forcing past rmem_max/wmem_max when allowed), and
    /// connects it to `server`.
    package init(connectTo server: TransportAddress, bufferBytes: Int) throws(SocketError) {
        let fd = socket(
            Sockets.family(server.family),
            Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError("socket") }
        let size = Int32(bufferBytes)
        // SO_RCVBUFFORCE/SO_SNDBUFFORCE pass rmem_max when running as root; fall back otherwise.
        if !Sockets.setInt(fd, SOL_SOCKET, SO_RCVBUFFORCE, size) { Sockets.setInt(fd, SOL_SOCKET, SO_RCVBUF, size) }
        if !Sockets.setInt(fd, SOL_SOCKET, SO_SNDBUFFORCE, size) { Sockets.setInt(fd, SOL_SOCKET, SO_SNDBUF, size) }
        Sockets.setInt(fd, SOL_SOCKET, SO_RXQ_OVFL, 1)
        let rc = SocketAddress.withSockaddr(server) { connect(fd, $0, $1) }
        guard rc == 0 else {
            let e = errno
            _ = Glibc.close(fd)
            throw SocketError("connect", code: e)
        }
        self.fd = fd
    }

    /// Sends one datagram; false if it could not be sent now.
    package func send(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) == $0.count }
    }

    /// Closes the socket.
    package func close() { _ = Glibc.close(fd) }
}

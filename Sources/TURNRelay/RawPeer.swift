// The peer side of an RFC 6062 data connection: bytes copied both ways unchanged.
//
// Invariant: what waits for the peer socket is bounded (`OutputBuffer`); past the bound the data
// connection closes as a slow reader. Confined to the client connection's shard queue.
import Dispatch

#if canImport(Glibc)
    import Glibc
#endif

/// The peer side of an RFC 6062 data connection, on the client connection's shard.
final class RawPeer {
    static let outboundLimit = 1 << 20
    let fd: Int32
    weak var connection: StreamConnection?
    let queue: DispatchQueue
    let closer: DescriptorCloser
    var readSource: (any DispatchSourceRead)?
    var writeSource: (any DispatchSourceWrite)?
    var outbound = OutputBuffer(limit: RawPeer.outboundLimit)
    var closed = false
    let chunk: UnsafeMutableRawPointer

    init(fd: Int32, connection: StreamConnection) {
        self.fd = fd
        self.connection = connection
        self.queue = connection.shard.queue
        closer = DescriptorCloser(fd)
        chunk = .allocate(byteCount: 16 << 10, alignment: 16)
    }

    deinit { chunk.deallocate() }

    func start() {
        let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        closer.retain()
        let closer = self.closer
        source.setCancelHandler { closer.release() }
        source.setEventHandler { [weak self] in self?.onReadable() }
        readSource = source
        source.activate()
    }

    func onReadable() {
        guard !closed, let connection else { return }
        let n = recv(fd, chunk, 16 << 10, Int32(MSG_DONTWAIT))
        if n > 0 {
            connection.write(UnsafeRawBufferPointer(start: chunk, count: n))
        } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
            connection.close(.peerClosed)
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer) {
        guard !closed, !bytes.isEmpty, let connection else { return }
        var sent = 0
        if outbound.isEmpty {
            let r = send(fd, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
            if r < 0 && errno != EAGAIN && errno != EINTR {
                connection.close(.readError)
                return
            }
            sent = max(0, r)
        }
        if sent < bytes.count {
            if !outbound.append(UnsafeRawBufferPointer(rebasing: bytes[sent...])) {
                connection.close(.slowReader)
                return
            }
            if writeSource == nil {
                let source = DispatchSource.makeWriteSource(fileDescriptor: fd, queue: queue)
                closer.retain()
                let closer = self.closer
                source.setCancelHandler { closer.release() }
                source.setEventHandler { [weak self] in self?.onWritable() }
                writeSource = source
                source.activate()
            }
        }
    }

    func onWritable() {
        guard !closed, let connection else { return }
        let r = outbound.withPending { send(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
        if r > 0 { outbound.consume(r) }
        if r < 0 && errno != EAGAIN && errno != EINTR {
            connection.close(.readError)
            return
        }
        if outbound.isEmpty {
            writeSource?.cancel()
            writeSource = nil
        }
    }

    func close() {
        if closed { return }
        closed = true
        closer.retain()
        writeSource?.cancel()
        writeSource = nil
        readSource?.cancel()
        readSource = nil
        closer.release()
    }
}

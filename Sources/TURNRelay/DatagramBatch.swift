import CTraverseSystem
import STUNCodec

#if canImport(Glibc)
    import Glibc
#endif

/// Receive buffers for `recvmmsg`, allocated once at stable addresses and reused for every batch.
///
/// Each buffer keeps `headroom` free bytes in front of the payload, so that a relay can write a
/// ChannelData or Data-indication header in place and send the payload without copying it.
final class ReceiveBatch {
    let capacity: Int
    let bufferSize: Int
    let headroom: Int
    static let controlSize = 64
    let storage: UnsafeMutableRawPointer
    let addresses: UnsafeMutablePointer<sockaddr_storage>
    let iovecs: UnsafeMutablePointer<iovec>
    let headers: UnsafeMutablePointer<traverse_mmsghdr>
    let control: UnsafeMutableRawPointer

    init(capacity: Int, bufferSize: Int, headroom: Int) {
        self.capacity = capacity
        self.bufferSize = bufferSize
        self.headroom = headroom
        storage = .allocate(byteCount: capacity * bufferSize, alignment: 16)
        addresses = .allocate(capacity: capacity)
        iovecs = .allocate(capacity: capacity)
        headers = .allocate(capacity: capacity)
        control = .allocate(byteCount: capacity * Self.controlSize, alignment: 16)
        headers.initialize(repeating: traverse_mmsghdr(), count: capacity)
        addresses.initialize(repeating: sockaddr_storage(), count: capacity)
        iovecs.initialize(repeating: iovec(), count: capacity)
    }

    deinit {
        storage.deallocate()
        addresses.deallocate()
        iovecs.deallocate()
        headers.deallocate()
        control.deallocate()
    }

    /// The start of message `i`'s payload.
    @inline(__always) func payload(_ i: Int) -> UnsafeMutableRawPointer { storage + i * bufferSize + headroom }

    /// Receives up to `capacity` datagrams; returns how many (0 when none are waiting), or -1.
    @inline(__always)
    func receive(_ fd: Int32) -> Int {
        for i in 0..<capacity {
            iovecs[i].iov_base = payload(i)
            iovecs[i].iov_len = bufferSize - headroom - 4  // room for padding after the payload
            headers[i].msg_hdr.msg_name = UnsafeMutableRawPointer(addresses + i)
            headers[i].msg_hdr.msg_namelen = socklen_t(MemoryLayout<sockaddr_storage>.size)
            headers[i].msg_hdr.msg_iov = iovecs + i
            headers[i].msg_hdr.msg_iovlen = 1
            headers[i].msg_hdr.msg_control = control + i * Self.controlSize
            headers[i].msg_hdr.msg_controllen = Self.controlSize
            headers[i].msg_hdr.msg_flags = 0
            headers[i].msg_len = 0
        }
        let n = traverse_recvmmsg(fd, headers, UInt32(capacity), Int32(MSG_DONTWAIT))
        if n < 0 { return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1 }
        return Int(n)
    }

    /// Bytes received in message `i`.
    @inline(__always) func length(_ i: Int) -> Int { Int(headers[i].msg_len) }

    /// Whether message `i` was cut short by the buffer.
    @inline(__always) func truncated(_ i: Int) -> Bool { headers[i].msg_hdr.msg_flags & Int32(MSG_TRUNC) != 0 }

    /// The kernel's cumulative drop count reported with message `i` (SO_RXQ_OVFL), or -1.
    @inline(__always) func kernelDrops(_ i: Int) -> Int64 {
        withUnsafePointer(to: &headers[i].msg_hdr) { traverse_cmsg_rxq_overflow($0) }
    }
}

/// Outgoing datagrams collected during one receive batch and sent with `sendmmsg`, one call per
/// run of datagrams that leave through the same socket.
final class SendBatch {
    let capacity: Int
    static let replySize = 2048
    let replies: UnsafeMutableRawPointer
    let addresses: UnsafeMutablePointer<sockaddr_storage>
    let iovecs: UnsafeMutablePointer<iovec>
    let headers: UnsafeMutablePointer<traverse_mmsghdr>
    let sockets: UnsafeMutablePointer<Int32>
    private(set) var count = 0
    /// Datagrams the kernel refused (counted as drops by the caller).
    var failed = 0

    init(capacity: Int) {
        self.capacity = capacity
        replies = .allocate(byteCount: capacity * Self.replySize, alignment: 16)
        addresses = .allocate(capacity: capacity)
        iovecs = .allocate(capacity: capacity)
        headers = .allocate(capacity: capacity)
        sockets = .allocate(capacity: capacity)
        headers.initialize(repeating: traverse_mmsghdr(), count: capacity)
        addresses.initialize(repeating: sockaddr_storage(), count: capacity)
        iovecs.initialize(repeating: iovec(), count: capacity)
        sockets.initialize(repeating: -1, count: capacity)
    }

    deinit {
        replies.deallocate()
        addresses.deallocate()
        iovecs.deallocate()
        headers.deallocate()
        sockets.deallocate()
    }

    /// The reply buffer of the next slot, for a response written in place.
    @inline(__always) var nextReplyBuffer: UnsafeMutableRawBufferPointer {
        if count == capacity { flush() }
        return UnsafeMutableRawBufferPointer(start: replies + count * Self.replySize, count: Self.replySize)
    }

    /// Queues `length` bytes at `bytes` to `destination` through `fd`. The bytes must stay valid
    /// until the next `flush()` (they point into the receive batch or the reply buffers).
    @inline(__always)
    func enqueue(fd: Int32, to destination: TransportAddress, bytes: UnsafeRawPointer, length: Int) {
        if count == capacity { flush() }
        let i = count
        iovecs[i].iov_base = UnsafeMutableRawPointer(mutating: bytes)
        iovecs[i].iov_len = length
        let nameLength = SocketAddress.write(destination, to: addresses + i)
        headers[i].msg_hdr = msghdr()
        headers[i].msg_hdr.msg_name = UnsafeMutableRawPointer(addresses + i)
        headers[i].msg_hdr.msg_namelen = nameLength
        headers[i].msg_hdr.msg_iov = iovecs + i
        headers[i].msg_hdr.msg_iovlen = 1
        sockets[i] = fd
        count += 1
    }

    /// Queues the reply written into `nextReplyBuffer`.
    @inline(__always)
    func enqueueReply(fd: Int32, to destination: TransportAddress, length: Int) {
        let buffer = nextReplyBuffer
        enqueue(fd: fd, to: destination, bytes: buffer.baseAddress!, length: length)
    }

    /// Sends everything queued.
    func flush() {
        var start = 0
        while start < count {
            let fd = sockets[start]
            var end = start + 1
            while end < count && sockets[end] == fd { end += 1 }
            var offset = start
            while offset < end {
                let n = traverse_sendmmsg(fd, headers + offset, UInt32(end - offset), Int32(MSG_DONTWAIT))
                if n <= 0 {
                    // EAGAIN (buffer full) or a per-destination error: drop this one, go on.
                    failed += 1
                    offset += 1
                } else {
                    offset += Int(n)
                }
            }
            start = end
        }
        count = 0
    }
}

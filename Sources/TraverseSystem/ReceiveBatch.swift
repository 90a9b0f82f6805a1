// Receive buffers for recvmmsg(2): fixed arrays of buffers, sockaddrs, iovecs, mmsghdrs and
// control space at stable addresses, allocated once and reused for every batch.
// Invariant: nothing is allocated after `init`; every field recvmmsg writes is reset before each
// call. Not thread-safe: one owner (a shard's queue, or the load generator's thread).
// The per-datagram accessors are inlinable: the relay calls them per packet from TURNRelay.

package import CTraverseSystem

#if canImport(Glibc)
    import Glibc
#endif

/// Receive buffers for `recvmmsg`, allocated once at stable addresses and reused for every batch.
///
/// Each buffer keeps `headroom` free bytes in front of the payload, so that a relay can write a
/// ChannelData or Data-indication header in place and send the payload without copying it.
package final class ReceiveBatch {
    /// Datagrams one `receive` takes at most.
    package let capacity: Int
    /// Bytes of one buffer: headroom, payload, 4 bytes for padding.
    package let bufferSize: Int
    /// Free bytes in front of each payload.
    package let headroom: Int
    /// Control bytes per message (GRO segment size, SO_RXQ_OVFL).
    package static let controlSize = 64
    @usableFromInline let storage: UnsafeMutableRawPointer
    /// The sender of each message.
    package let addresses: UnsafeMutablePointer<sockaddr_storage>
    @usableFromInline let iovecs: UnsafeMutablePointer<iovec>
    @usableFromInline let headers: UnsafeMutablePointer<traverse_mmsghdr>
    @usableFromInline let control: UnsafeMutableRawPointer

    /// `capacity` buffers of `bufferSize` bytes, each with `headroom` bytes before its payload.
    package init(capacity: Int, bufferSize: Int, headroom: Int) {
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

    /// The largest datagram a buffer takes whole, keeping 4 bytes after it for padding.
    @inlinable package var maxPayload: Int { bufferSize - headroom - 4 }

    /// The start of message `i`'s payload.
    @inlinable @inline(__always) package func payload(_ i: Int) -> UnsafeMutableRawPointer {
        storage + i * bufferSize + headroom
    }

    /// Receives up to `capacity` datagrams; returns how many (0 when none are waiting), or -1.
    @inlinable @inline(__always)
    package func receive(_ fd: Int32) -> Int {
        for i in 0..<capacity {
            iovecs[i].iov_base = payload(i)
            iovecs[i].iov_len = maxPayload
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
    @inlinable @inline(__always) package func length(_ i: Int) -> Int { Int(headers[i].msg_len) }

    /// Whether message `i` was cut short by the buffer.
    @inlinable @inline(__always) package func truncated(_ i: Int) -> Bool {
        headers[i].msg_hdr.msg_flags & Int32(MSG_TRUNC) != 0
    }

    /// The segment size of message `i` when UDP GRO merged several datagrams into it, or 0.
    @inlinable @inline(__always) package func groSegmentSize(_ i: Int) -> Int {
        withUnsafePointer(to: &headers[i].msg_hdr) { Int(traverse_cmsg_gro_segment_size($0)) }
    }

    /// The kernel's cumulative drop count reported with message `i` (SO_RXQ_OVFL), or -1.
    @inlinable @inline(__always) package func kernelDrops(_ i: Int) -> Int64 {
        withUnsafePointer(to: &headers[i].msg_hdr) { traverse_cmsg_rxq_overflow($0) }
    }
}

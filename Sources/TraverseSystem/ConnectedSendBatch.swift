// Datagrams built in place and sent with sendmmsg(2) on one connected socket (no addresses), as
// the load generator sends media. Invariant: slots, iovecs and mmsghdrs sit at stable addresses,
// allocated once in `init`; nothing is allocated per datagram. Not thread-safe: one owner.

package import CTraverseSystem

#if canImport(Glibc)
    import Glibc
#endif

/// Fixed datagram slots, iovecs and mmsghdrs for `sendmmsg` on a connected socket.
///
/// Fill slot `count` through `slot(_:)`, set its length with `setLength(_:_:)`, increment
/// `count`, then `flush(fd:)`.
package final class ConnectedSendBatch {
    /// Datagrams at most.
    package let capacity: Int
    /// Bytes of one slot.
    package let slotSize: Int
    @usableFromInline let buffers: UnsafeMutableRawPointer
    @usableFromInline let iovecs: UnsafeMutablePointer<iovec>
    @usableFromInline let headers: UnsafeMutablePointer<traverse_mmsghdr>
    /// Datagrams filled.
    package var count = 0

    /// `capacity` zeroed slots of `slotSize` bytes.
    package init(capacity: Int, slotSize: Int) {
        self.capacity = capacity
        self.slotSize = slotSize
        buffers = .allocate(byteCount: capacity * slotSize, alignment: 64)
        buffers.initializeMemory(as: UInt8.self, repeating: 0, count: capacity * slotSize)
        iovecs = .allocate(capacity: capacity)
        headers = .allocate(capacity: capacity)
        for i in 0..<capacity {
            iovecs[i] = iovec(iov_base: buffers + i * slotSize, iov_len: slotSize)
            headers[i] = traverse_mmsghdr()
            headers[i].msg_hdr.msg_iov = iovecs + i
            headers[i].msg_hdr.msg_iovlen = 1
        }
    }

    deinit {
        buffers.deallocate()
        iovecs.deallocate()
        headers.deallocate()
    }

    /// The bytes of slot `i`.
    @inlinable @inline(__always) package func slot(_ i: Int) -> UnsafeMutableRawPointer { buffers + i * slotSize }

    /// Sets datagram `i`'s length for sending.
    @inlinable @inline(__always) package func setLength(_ i: Int, _ n: Int) { iovecs[i].iov_len = n }

    /// Sends the `count` queued datagrams on `fd`; returns how many the kernel took, and errno
    /// when it stopped early. `count` is 0 afterwards.
    package func flush(fd: Int32) -> (sent: Int, errno: Int32) {
        var done = 0
        var err: Int32 = 0
        while done < count {
            let n = traverse_sendmmsg(fd, headers + done, UInt32(count - done), Int32(MSG_DONTWAIT))
            if n <= 0 {
                err = n < 0 ? errno : 0
                if err == EINTR { continue }
                break
            }
            done += Int(n)
        }
        count = 0
        return (done, err)
    }
}

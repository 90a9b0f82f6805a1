// Outgoing datagrams for sendmmsg(2), gathered during one receive batch and sent together, with
// UDP GSO for runs to one destination.
// Invariant: nothing is allocated after `init`; a queued datagram's bytes are referenced, never
// copied, and must stay valid until `flush()`. Not thread-safe: one owner (a shard's queue).
// Queueing is inlinable: the relay queues per packet from TURNRelay.

package import CTraverseSystem
package import STUNCodec

#if canImport(Glibc)
    import Glibc
#endif

/// Outgoing datagrams collected during one receive batch and sent with `sendmmsg`, one call per
/// run of datagrams that leave through the same socket.
///
/// A datagram is one to three iovecs: its bytes where they already are (a receive buffer with the
/// header written into its headroom, or a reply buffer), or a header written into the entry's own
/// header slot, the payload where it was received, and zero padding. Nothing is copied.
///
/// With UDP GSO on, consecutive datagrams in such a run that go to the same destination with the
/// same size (the last may be shorter) leave as one message with a UDP_SEGMENT size: the kernel
/// walks its send path once for the whole run and splits it at the end. Video frames are sent as
/// several equal-sized packets back to back, and a peer's burst to a client comes out of one
/// receive batch in order, so these runs are common.
package final class SendBatch {
    /// Datagrams queued at most before an early flush.
    package let capacity: Int
    /// Bytes of a reply buffer.
    package static let replySize = 2048
    /// Bytes of a header slot: a Data indication header with an IPv6 XOR-PEER-ADDRESS fits.
    package static let headerSlotSize = 64
    /// Most datagrams in one GSO message (the kernel's UDP_MAX_SEGMENTS is 64 or more).
    package static let maxSegments = 64
    /// Most payload bytes in one GSO message (one IP packet's worth).
    package static let maxSegmentedBytes = 65_000
    @usableFromInline static let controlSize = 32
    @usableFromInline let replies: UnsafeMutableRawPointer
    @usableFromInline let headerSlots: UnsafeMutableRawPointer
    /// Four zero bytes: the padding iovec of Data indications whose payload is not 4-aligned.
    @usableFromInline let zeros: UnsafeMutableRawPointer
    @usableFromInline let addresses: UnsafeMutablePointer<sockaddr_storage>
    @usableFromInline let iovecs: UnsafeMutablePointer<iovec>
    /// The first iovec of each queued datagram, and its length in bytes.
    @usableFromInline let firstIovec: UnsafeMutablePointer<Int>
    @usableFromInline let lengths: UnsafeMutablePointer<Int>
    @usableFromInline let headers: UnsafeMutablePointer<traverse_mmsghdr>
    @usableFromInline let sockets: UnsafeMutablePointer<Int32>
    /// The messages handed to `sendmmsg`: one per datagram, or one per GSO run.
    @usableFromInline let packed: UnsafeMutablePointer<traverse_mmsghdr>
    /// The datagrams each packed message carries.
    @usableFromInline let packedDatagrams: UnsafeMutablePointer<Int>
    /// The first queued datagram of each packed message.
    @usableFromInline let packedFirst: UnsafeMutablePointer<Int>
    @usableFromInline let control: UnsafeMutableRawPointer
    /// Datagrams queued.
    @usableFromInline package internal(set) var count = 0
    @usableFromInline var iovecCount = 0
    /// Datagrams the kernel refused (counted as drops by the caller).
    package var failed = 0
    /// Whether runs to one destination are sent as GSO messages.
    package private(set) var segmentationOffload: Bool
    /// GSO messages sent, and the datagrams they carried.
    package private(set) var segmentedSends: UInt64 = 0
    /// Datagrams carried by those GSO messages.
    package private(set) var segmentedDatagrams: UInt64 = 0

    /// Room for `capacity` datagrams; `segmentationOffload` turns GSO runs on.
    package init(capacity: Int, segmentationOffload: Bool = true) {
        self.capacity = capacity
        self.segmentationOffload = segmentationOffload
        replies = .allocate(byteCount: capacity * Self.replySize, alignment: 16)
        headerSlots = .allocate(byteCount: capacity * Self.headerSlotSize, alignment: 16)
        zeros = .allocate(byteCount: 4, alignment: 4)
        zeros.initializeMemory(as: UInt8.self, repeating: 0, count: 4)
        addresses = .allocate(capacity: capacity)
        iovecs = .allocate(capacity: capacity * 3)
        firstIovec = .allocate(capacity: capacity)
        lengths = .allocate(capacity: capacity)
        headers = .allocate(capacity: capacity)
        sockets = .allocate(capacity: capacity)
        packed = .allocate(capacity: capacity)
        packedDatagrams = .allocate(capacity: capacity)
        packedFirst = .allocate(capacity: capacity)
        control = .allocate(byteCount: capacity * Self.controlSize, alignment: 16)
        headers.initialize(repeating: traverse_mmsghdr(), count: capacity)
        packed.initialize(repeating: traverse_mmsghdr(), count: capacity)
        packedDatagrams.initialize(repeating: 0, count: capacity)
        packedFirst.initialize(repeating: 0, count: capacity)
        firstIovec.initialize(repeating: 0, count: capacity)
        lengths.initialize(repeating: 0, count: capacity)
        addresses.initialize(repeating: sockaddr_storage(), count: capacity)
        iovecs.initialize(repeating: iovec(), count: capacity * 3)
        sockets.initialize(repeating: -1, count: capacity)
    }

    deinit {
        replies.deallocate()
        headerSlots.deallocate()
        zeros.deallocate()
        addresses.deallocate()
        iovecs.deallocate()
        firstIovec.deallocate()
        lengths.deallocate()
        headers.deallocate()
        sockets.deallocate()
        packed.deallocate()
        packedDatagrams.deallocate()
        packedFirst.deallocate()
        control.deallocate()
    }

    /// The reply buffer of the next slot, for a response written in place.
    @inlinable @inline(__always) package var nextReplyBuffer: UnsafeMutableRawBufferPointer {
        if count == capacity { flush() }
        return UnsafeMutableRawBufferPointer(start: replies + count * Self.replySize, count: Self.replySize)
    }

    /// The header slot of the next datagram, for `enqueue(fd:to:headerLength:payload:length:padding:)`.
    @inlinable @inline(__always) package var nextHeaderSlot: UnsafeMutableRawPointer {
        if count == capacity { flush() }
        return headerSlots + count * Self.headerSlotSize
    }

    /// Starts datagram `count` to `destination` through `fd`; its iovecs follow.
    @inlinable @inline(__always) func begin(fd: Int32, to destination: TransportAddress) -> Int {
        if count == capacity { flush() }
        let i = count
        firstIovec[i] = iovecCount
        let nameLength = SocketAddress.write(destination, to: addresses + i)
        headers[i].msg_hdr = msghdr()
        headers[i].msg_hdr.msg_name = UnsafeMutableRawPointer(addresses + i)
        headers[i].msg_hdr.msg_namelen = nameLength
        headers[i].msg_hdr.msg_iov = iovecs + iovecCount
        sockets[i] = fd
        return i
    }

    @inlinable @inline(__always) func append(_ base: UnsafeRawPointer, _ length: Int) {
        iovecs[iovecCount].iov_base = UnsafeMutableRawPointer(mutating: base)
        iovecs[iovecCount].iov_len = length
        iovecCount += 1
    }

    /// Queues `length` bytes at `bytes` to `destination` through `fd`. The bytes must stay valid
    /// until the next `flush()` (they point into the receive batch or the reply buffers).
    @inlinable @inline(__always)
    package func enqueue(fd: Int32, to destination: TransportAddress, bytes: UnsafeRawPointer, length: Int) {
        let i = begin(fd: fd, to: destination)
        append(bytes, length)
        headers[i].msg_hdr.msg_iovlen = 1
        lengths[i] = length
        count += 1
    }

    /// Queues a datagram made of the `headerLength` bytes written into `nextHeaderSlot`, then
    /// `length` payload bytes at `payload` (valid until the next `flush()`), then `padding` zeros.
    @inlinable @inline(__always)
    package func enqueue(
        fd: Int32, to destination: TransportAddress, headerLength: Int, payload: UnsafeRawPointer, length: Int,
        padding: Int
    ) {
        let i = begin(fd: fd, to: destination)
        append(headerSlots + i * Self.headerSlotSize, headerLength)
        append(payload, length)
        if padding > 0 { append(zeros, padding) }
        headers[i].msg_hdr.msg_iovlen = padding > 0 ? 3 : 2
        lengths[i] = headerLength + length + padding
        count += 1
    }

    /// Queues the reply written into `nextReplyBuffer`.
    @inlinable @inline(__always)
    package func enqueueReply(fd: Int32, to destination: TransportAddress, length: Int) {
        let buffer = nextReplyBuffer
        enqueue(fd: fd, to: destination, bytes: buffer.baseAddress!, length: length)
    }

    /// Whether queued datagrams `i` and `j` go to the same address.
    @inline(__always) func sameDestination(_ i: Int, _ j: Int) -> Bool {
        let length = headers[i].msg_hdr.msg_namelen
        return length == headers[j].msg_hdr.msg_namelen && memcmp(addresses + i, addresses + j, Int(length)) == 0
    }

    /// Packs queued datagrams `start..<end` (one socket) into `packed`; returns how many messages.
    @inline(__always) func pack(_ start: Int, _ end: Int) -> Int {
        var messages = 0
        var i = start
        while i < end {
            var j = i + 1
            let segment = lengths[i]
            if segmentationOffload {
                var total = segment
                // Equal sizes, then at most one shorter datagram to end the run.
                while j < end && j - i < Self.maxSegments && sameDestination(i, j) {
                    let length = lengths[j]
                    if length > segment || total + length > Self.maxSegmentedBytes { break }
                    total += length
                    j += 1
                    if length < segment { break }
                }
            }
            packed[messages] = headers[i]
            packedFirst[messages] = i
            packedDatagrams[messages] = j - i
            if j - i > 1 {
                // The run's iovecs are consecutive: the kernel cuts their concatenation every
                // `segment` bytes, which is exactly where one datagram ends and the next begins.
                let c = control + messages * Self.controlSize
                let endIovec = j < count ? firstIovec[j] : iovecCount
                packed[messages].msg_hdr.msg_iovlen = endIovec - firstIovec[i]
                packed[messages].msg_hdr.msg_control = c
                packed[messages].msg_hdr.msg_controllen = traverse_cmsg_put_udp_segment(
                    c, Self.controlSize, UInt16(segment))
            }
            messages += 1
            i = j
        }
        return messages
    }

    /// Sends everything queued.
    package func flush() {
        var start = 0
        while start < count {
            let fd = sockets[start]
            var end = start + 1
            while end < count && sockets[end] == fd { end += 1 }
            let messages = pack(start, end)
            var offset = 0
            while offset < messages {
                let n = traverse_sendmmsg(fd, packed + offset, UInt32(messages - offset), Int32(MSG_DONTWAIT))
                if n > 0 {
                    for k in offset..<offset + Int(n) where packedDatagrams[k] > 1 {
                        segmentedSends &+= 1
                        segmentedDatagrams &+= UInt64(packedDatagrams[k])
                    }
                    offset += Int(n)
                    continue
                }
                let error = errno
                if packedDatagrams[offset] > 1 && error != EAGAIN && error != EWOULDBLOCK && error != ENOBUFS {
                    // The run could not leave as one message (EIO: the device cannot offload;
                    // EINVAL/EMSGSIZE: a segment does not fit the path MTU): send it datagram by
                    // datagram, so each gets its own outcome, and stop offloading after EIO.
                    if error == EIO { segmentationOffload = false }
                    sendEach(fd, first: packedFirst[offset], count: packedDatagrams[offset])
                } else {
                    // EAGAIN (buffer full) or a per-destination error: drop this message, go on.
                    failed += packedDatagrams[offset]
                }
                offset += 1
            }
            start = end
        }
        count = 0
        iovecCount = 0
    }

    /// Sends queued datagrams `first..<first+count` one by one.
    private func sendEach(_ fd: Int32, first: Int, count: Int) {
        var offset = first
        let end = first + count
        while offset < end {
            let n = traverse_sendmmsg(fd, headers + offset, UInt32(end - offset), Int32(MSG_DONTWAIT))
            if n <= 0 {
                failed += 1
                offset += 1
            } else {
                offset += Int(n)
            }
        }
    }
}

// The shard's epoll set and its doorbell: every UDP socket a shard owns (listeners and relay
// sockets) is watched through one descriptor, so that one wakeup serves every socket that
// became readable.
//
// Invariant: the epoll descriptor and the doorbell are owned here and closed exactly once
// (`close()`, or `deinit` if never closed). Tokens are typed (`PollToken`): what a ready event
// names is decoded in one place. Confined to the owning shard's queue, except `ring()`, which
// any thread may call.
import CTraverseSystem

#if canImport(Glibc)
    import Glibc
#endif

/// What a ready event in a shard's epoll set names.
enum PollToken: Equatable {
    /// The UDP (or DTLS) listener at this index of the shard's listener list.
    case listener(index: Int)
    /// A UDP relay socket and the allocation slot it belongs to.
    case relay(fd: Int32, slot: Int)
    /// The doorbell: work was posted to the queue from another thread.
    case doorbell

    private static let listenerBit: UInt64 = 1 << 63
    private static let doorbellValue: UInt64 = 1 << 62

    /// The 64 bits epoll carries: the top bit marks a listener (index below), the doorbell has a
    /// value of its own, and a relay socket is its descriptor with the slot in the high half.
    var encoded: UInt64 {
        switch self {
        case .listener(let index): Self.listenerBit | UInt64(index)
        case .relay(let fd, let slot): UInt64(UInt32(bitPattern: fd)) | UInt64(slot) << 32
        case .doorbell: Self.doorbellValue
        }
    }

    @inline(__always) init(encoded: UInt64) {
        if encoded == Self.doorbellValue {
            self = .doorbell
        } else if encoded & Self.listenerBit != 0 {
            self = .listener(index: Int(encoded & 0xFFFF_FFFF))
        } else {
            self = .relay(fd: Int32(bitPattern: UInt32(truncatingIfNeeded: encoded)), slot: Int(encoded >> 32))
        }
    }
}

/// An epoll descriptor with a doorbell (an eventfd) in it, and the buffer ready tokens land in.
final class PollSet {
    /// How many ready events one call returns at most.
    static let batch = 256

    let descriptor: Int32
    let doorbell: Int32
    private let ready: UnsafeMutablePointer<UInt64>
    private var closed = false

    init() {
        descriptor = traverse_epoll_create()
        precondition(descriptor >= 0, "epoll_create1 failed")
        doorbell = traverse_doorbell_create()
        precondition(doorbell >= 0, "eventfd failed")
        ready = .allocate(capacity: Self.batch)
        traverse_epoll_add(descriptor, doorbell, PollToken.doorbell.encoded)
    }

    deinit {
        close()
        ready.deallocate()
    }

    /// Watches `fd` for input, reporting it as `token`.
    func add(_ fd: Int32, _ token: PollToken) { traverse_epoll_add(descriptor, fd, token.encoded) }

    /// Stops watching `fd` (before it is closed).
    func remove(_ fd: Int32) { traverse_epoll_remove(descriptor, fd) }

    /// Ready events now, without waiting; how many (read them with `token(at:)`).
    @inline(__always) func poll() -> Int { Int(traverse_epoll_ready(descriptor, ready, Int32(Self.batch))) }

    /// Ready events, waiting up to `nanoseconds` for the first.
    @inline(__always) func wait(nanoseconds: Int64) -> Int {
        Int(traverse_epoll_wait(descriptor, ready, Int32(Self.batch), nanoseconds))
    }

    /// The `i`th token of the last `poll`/`wait`.
    @inline(__always) func token(at i: Int) -> PollToken { PollToken(encoded: ready[i]) }

    /// Wakes the shard if it is lingering on its sockets. Any thread.
    func ring() { traverse_doorbell_ring(doorbell) }

    /// Resets the doorbell after it rang.
    func clearDoorbell() { traverse_doorbell_clear(doorbell) }

    /// Closes both descriptors (once). The Dispatch source watching `descriptor` must have been
    /// cancelled first; its cancel handler calls this.
    func close() {
        if closed { return }
        closed = true
        Glibc.close(doorbell)
        Glibc.close(descriptor)
    }
}

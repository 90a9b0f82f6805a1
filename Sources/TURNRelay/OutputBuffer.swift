// Bytes waiting to be written to a stream socket (a client's TCP/TLS connection, an RFC 6062
// peer connection), or held until a peer connection is attached.
//
// Invariant: never holds more than `limit` bytes (an append that would exceed it is refused, and
// the owner closes the connection as a slow reader); consuming is O(1) amortised (the consumed
// prefix is dropped once it is at least half the storage, never byte by byte).

/// A bounded FIFO of bytes with high and low watermarks for read backpressure: an owner pauses
/// reading its other side above `highWater` and resumes below `lowWater`.
struct OutputBuffer {
    /// The most bytes held at once.
    let limit: Int
    /// Above this many bytes the owner pauses the input that feeds it.
    let highWater: Int
    /// Below this many bytes the owner resumes that input.
    let lowWater: Int
    private var storage: [UInt8] = []
    private var head = 0

    init(limit: Int, highWater: Int? = nil, lowWater: Int? = nil) {
        precondition(limit > 0)
        self.limit = limit
        self.highWater = min(highWater ?? limit, limit)
        self.lowWater = min(lowWater ?? self.highWater / 2, self.highWater)
    }

    /// Bytes waiting.
    var count: Int { storage.count - head }
    var isEmpty: Bool { count == 0 }
    /// Whether the owner should pause its input.
    var isAboveHighWater: Bool { count > highWater }
    /// Whether a paused input may resume.
    var isBelowLowWater: Bool { count < lowWater }

    /// Whether `n` more bytes fit under the limit.
    func hasRoom(for n: Int) -> Bool { count + n <= limit }

    /// Appends `bytes`; false (nothing appended) when they would exceed `limit`.
    mutating func append(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard hasRoom(for: bytes.count) else { return false }
        if head > 0 && head * 2 >= storage.count {
            storage.removeFirst(head)
            head = 0
        }
        storage.append(contentsOf: bytes)
        return true
    }

    /// Calls `body` with the waiting bytes, oldest first.
    func withPending<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try storage.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[head...])) }
    }

    /// Drops the first `n` waiting bytes (written). Emptied, the storage is kept if it is small.
    mutating func consume(_ n: Int) {
        precondition(n >= 0 && n <= count)
        head += n
        if head == storage.count {
            storage.removeAll(keepingCapacity: storage.capacity <= 64 << 10)
            head = 0
        }
    }

    /// Takes every waiting byte out.
    mutating func takeAll() -> [UInt8] {
        let bytes = Array(storage[head...])
        storage = []
        head = 0
        return bytes
    }
}

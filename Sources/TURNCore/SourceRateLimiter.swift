// A fixed table of per-source budgets for unauthenticated answers (reflection and flood
// limits). Invariant: its memory is fixed at creation, whatever the number of sources.
import STUNCodec

/// Per-source limits on unauthenticated answers, in a fixed table: bounded memory whatever the
/// number of sources, and no per-client state beyond a hashed bucket.
///
/// Each bucket (a source IP, hashed) holds two budgets, refilled every second:
/// - `ratePerSecond` answers of any kind (Binding, challenges, errors);
/// - once those are spent, `overflowBytesPerSecond` bytes of challenges (401/438) only.
///
/// An attacker who spoofs a victim's IP from other ports spends the first budget at once; the
/// second keeps answering challenges, so the victim's own Allocate still gets its 401 while the
/// bytes sent towards that IP stay bounded by `ratePerSecond` answers plus
/// `overflowBytesPerSecond` bytes per second (per shard).
struct SourceRateLimiter {
    struct Bucket {
        var tokens: Int32
        var overflowBytes: Int32
        var lastRefill: UInt64
    }
    /// What the limiter allows for one answer.
    enum Grant {
        /// Within the source's answers for this second.
        case answer
        /// A challenge from the overflow byte budget of this bucket (charge it once written).
        case overflow(bucket: Int)
        /// Nothing more to this source this second.
        case refused
    }
    var buckets: [Bucket]
    let ratePerSecond: Int32
    let overflowBytesPerSecond: Int32

    init(ratePerSecond: Int, overflowBytesPerSecond: Int = 0, tableSize: Int = 4096) {
        self.ratePerSecond = Int32(clamping: ratePerSecond)
        self.overflowBytesPerSecond = Int32(clamping: overflowBytesPerSecond)
        buckets = Array(
            repeating: Bucket(
                tokens: Int32(clamping: ratePerSecond), overflowBytes: Int32(clamping: overflowBytesPerSecond),
                lastRefill: 0),
            count: tableSize)
    }

    mutating func allow(_ ip: IPAddress, now: UInt64, challenge: Bool) -> Grant {
        if ratePerSecond <= 0 { return .answer }
        var h = Hasher()
        h.combine(ip)
        let i = Int(UInt(bitPattern: h.finalize()) % UInt(buckets.count))
        let elapsed = now &- buckets[i].lastRefill
        if elapsed >= 1000 {
            buckets[i].tokens = ratePerSecond
            buckets[i].overflowBytes = overflowBytesPerSecond
            buckets[i].lastRefill = now
        }
        if buckets[i].tokens > 0 {
            buckets[i].tokens -= 1
            return .answer
        }
        return challenge && buckets[i].overflowBytes > 0 ? .overflow(bucket: i) : .refused
    }

    /// Charges a challenge sent from the overflow budget.
    mutating func spendOverflow(_ bucket: Int, bytes: Int) {
        buckets[bucket].overflowBytes -= Int32(clamping: bytes)
    }
}

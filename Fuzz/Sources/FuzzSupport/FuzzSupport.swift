/// Helpers shared by the fuzz targets: reading decisions out of the fuzzer's input, a seeded
/// generator, and the check that turns a broken invariant into a crash libFuzzer reports.

#if canImport(Glibc)
    import Glibc
#endif

/// Whether `FUZZ_TRACE` is set: targets then describe what they do on stderr (to read a crash
/// input or a seed; far too slow for fuzzing).
public let tracing = getenv("FUZZ_TRACE") != nil

/// Writes `line` to stderr when tracing.
@inlinable
public func trace(_ line: @autoclosure () -> String) {
    guard tracing else { return }
    var text = line() + "\n"
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

/// Stops the process with `message` when `condition` is false. libFuzzer sees the trap as a
/// crash and saves the input that caused it.
@inlinable
public func invariant(
    _ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String, file: StaticString = #fileID,
    line: UInt = #line
) {
    if !condition() { fatalError("invariant broken: \(message())", file: file, line: line) }
}

/// The fuzzer's input read as a stream of small decisions. Reads past the end return zeros, so
/// every input decodes to something; `isAtEnd` tells a loop when to stop.
public struct FuzzInput {
    public let bytes: UnsafeRawBufferPointer
    public private(set) var offset = 0

    public init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    public var isAtEnd: Bool { offset >= bytes.count }
    public var remaining: Int { max(0, bytes.count - offset) }

    public mutating func byte() -> UInt8 {
        guard offset < bytes.count else { return 0 }
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func u16() -> UInt16 { UInt16(byte()) << 8 | UInt16(byte()) }

    public mutating func u32() -> UInt32 { UInt32(u16()) << 16 | UInt32(u16()) }

    public mutating func u64() -> UInt64 { UInt64(u32()) << 32 | UInt64(u32()) }

    /// Up to `n` bytes (fewer at the end of the input), borrowed from the input.
    public mutating func take(_ n: Int) -> UnsafeRawBufferPointer {
        let k = min(max(0, n), remaining)
        defer { offset += k }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + k)])
    }

    /// One of `choices`, chosen by the next byte.
    public mutating func pick<T>(_ choices: [T]) -> T { choices[Int(byte()) % choices.count] }
}

/// SplitMix64: a small deterministic generator, so that what a run derives from an input is
/// the same every time the input is replayed.
public struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// FNV-1a over `bytes`: a seed derived from the whole input.
public func fnv1a(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
    return h
}

/// Lowercase hex of `bytes`, for messages.
public func hexString(_ bytes: some Sequence<UInt8>) -> String {
    bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
}

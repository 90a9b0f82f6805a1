import STUNCodec

/// Bytes from a hex string; whitespace is ignored.
func hex(_ text: String) -> [UInt8] {
    let digits = text.filter { !$0.isWhitespace }
    precondition(digits.count % 2 == 0, "odd number of hex digits")
    var out: [UInt8] = []
    var index = digits.startIndex
    while index < digits.endIndex {
        let next = digits.index(index, offsetBy: 2)
        out.append(UInt8(digits[index..<next], radix: 16)!)
        index = next
    }
    return out
}

/// The error `STUNMessageView(validating:)` throws for `bytes`, or nil when they are valid.
func parseError(_ bytes: [UInt8]) -> STUNParseError? {
    bytes.withUnsafeBytes { b -> STUNParseError? in
        do throws(STUNParseError) {
            _ = try STUNMessageView(validating: b)
            return nil
        } catch {
            return error
        }
    }
}

/// Validates `bytes` and hands the borrowed view to `body`; the view must not escape.
func withView<R>(_ bytes: [UInt8], _ body: (STUNMessageView) throws -> R) throws -> R {
    try bytes.withUnsafeBytes { b in
        let view = try STUNMessageView(validating: b)
        return try body(view)
    }
}

/// Writes a message with `STUNMessageWriter` into a scratch buffer and returns the bytes.
func write(
    type: STUNMessageType, transactionID: STUNTransactionID, cookie: UInt32 = stunMagicCookie,
    capacity: Int = 2048, _ body: (inout STUNMessageWriter) throws -> Void
) throws -> [UInt8] {
    var buffer = [UInt8](repeating: 0, count: capacity)
    let count = try buffer.withUnsafeMutableBytes { raw in
        var writer = try STUNMessageWriter(into: raw, type: type, transactionID: transactionID, cookie: cookie)
        try body(&writer)
        return writer.count
    }
    return Array(buffer[0..<count])
}

/// The key bytes of a short-term credential or any UTF-8 text.
func utf8(_ text: String) -> [UInt8] { Array(text.utf8) }

/// A small deterministic generator (SplitMix64) so that generated cases are reproducible.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The RFC 5769 test vectors (the bytes of sections 2.1 to 2.4).
enum RFC5769 {
    /// Short-term password of 2.1–2.3.
    static let password = "VOkJxbRl1RmTxUk/WvJxBt"
    static let transactionID = STUNTransactionID(high: 0xb7e7_a701_bc34_d686, low: 0xfa87_dfae)

    /// 2.1 Sample Request.
    static let request = hex(
        """
        00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
        00 24 00 04 6e 00 01 ff
        80 29 00 08 93 2f f9 b1 51 26 3b 36
        00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
        00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
        80 28 00 04 e5 7a 3b cf
        """)

    /// 2.2 Sample IPv4 Response.
    static let ipv4Response = hex(
        """
        01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
        00 20 00 08 00 01 a1 47 e1 12 a6 43
        00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
        80 28 00 04 c0 7d 4c 96
        """)

    /// 2.3 Sample IPv6 Response.
    static let ipv6Response = hex(
        """
        01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
        00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
        00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
        80 28 00 04 c8 fb 0b 4c
        """)

    /// 2.4 Sample Request with Long-Term Authentication.
    static let longTermRequest = hex(
        """
        00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
        00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
        00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76 79 36 34 73 41
        00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
        00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66
        """)
    static let longTermTransactionID = STUNTransactionID(high: 0x78ad_3433_c6ad_72c0, low: 0x29da_412e)
    /// マトリックス
    static let longTermUsername = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}"
    /// "The<U+00AD>M<U+00AA>tr<U+2168>" after SASLprep.
    static let longTermPassword = "TheMatrIX"
    static let realm = "example.org"
    static let nonce = "f//499k954d6OL34oL9FSTvy64sA"
}

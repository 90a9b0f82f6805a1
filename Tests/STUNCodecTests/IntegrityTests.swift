import STUNCodec
import Testing

@Suite("Integrity")
struct IntegrityTests {
    let key = utf8(RFC5769.password)

    func verifies(_ bytes: [UInt8], key: [UInt8], sha256: Bool = false) -> Bool {
        bytes.withUnsafeBytes { raw in
            guard let view = try? STUNMessageView(validating: raw) else { return false }
            return key.withUnsafeBytes {
                sha256 ? view.verifyMessageIntegritySHA256(key: $0) : view.verifyMessageIntegrity(key: $0)
            }
        }
    }

    @Test("a wrong key fails")
    func wrongKey() {
        #expect(verifies(RFC5769.request, key: key))
        #expect(!verifies(RFC5769.request, key: []))
        #expect(!verifies(RFC5769.request, key: key + [1]))
        // HMAC pads a short key with zeros (RFC 2104): a trailing zero byte is the same key.
        #expect(verifies(RFC5769.request, key: key + [0]))
        #expect(!verifies(RFC5769.request, key: Array(key.dropLast())))
        var oneBit = key
        oneBit[0] ^= 1
        #expect(!verifies(RFC5769.request, key: oneBit))
    }

    @Test("flipping any byte covered by MESSAGE-INTEGRITY fails (or the message no longer parses)")
    func flippedBytes() throws {
        // The long-term vector has no FINGERPRINT, so most flips still parse and reach the MAC check.
        let ltKey = utf8("\(RFC5769.longTermUsername):\(RFC5769.realm):\(RFC5769.longTermPassword)").withUnsafeBytes {
            STUNDigest.md5($0)
        }
        for vector in [(RFC5769.longTermRequest, ltKey), (RFC5769.request, key)] {
            let (bytes, k) = vector
            #expect(verifies(bytes, key: k))
            let end = try withView(bytes) { $0.integrityOffset! + 24 }
            var reachedMAC = 0
            for i in 0..<end {
                for mask: UInt8 in [0x01, 0x80] {
                    var flipped = bytes
                    flipped[i] ^= mask
                    fixFingerprint(&flipped)
                    #expect(!verifies(flipped, key: k), "byte \(i) mask \(mask)")
                    if parseError(flipped) == nil { reachedMAC += 1 }
                }
            }
            #expect(reachedMAC > 0)
        }
    }

    /// Recomputes a trailing FINGERPRINT, as an attacker could, so that a change reaches the MAC check.
    func fixFingerprint(_ bytes: inout [UInt8]) {
        let n = bytes.count
        guard n >= 28, bytes[n - 8] == 0x80, bytes[n - 7] == 0x28 else { return }
        let crc = CRC32.checksum(Array(bytes[0..<(n - 8)])) ^ stunFingerprintXOR
        for (i, shift) in [24, 16, 8, 0].enumerated() { bytes[n - 4 + i] = UInt8(crc >> UInt32(shift) & 0xFF) }
    }

    @Test("MESSAGE-INTEGRITY-SHA256 truncated to 16…32 bytes verifies", arguments: [16, 20, 24, 28, 32])
    func sha256Truncated(length: Int) throws {
        let message = STUNMessage(
            type: STUNMessageType(method: .allocate, class: .request), transactionID: RFC5769.transactionID,
            attributes: [.username("user"), .realm("example.org"), .requestedTransport(17)])
        let bytes = try message.encoded(key: key, integrity: [.sha256(length: length)], fingerprint: true)
        #expect(verifies(bytes, key: key, sha256: true))
        #expect(!verifies(bytes, key: key))
        #expect(!verifies(bytes, key: key + [1], sha256: true))
        // Independently: HMAC-SHA256 over the header (length ending after MI-SHA256) and the attributes.
        let offset = try withView(bytes) { $0.integritySHA256Offset! }
        var signed = Array(bytes[0..<offset])
        let length16 = offset + 4 + length - stunHeaderSize
        signed[2] = UInt8(length16 >> 8)
        signed[3] = UInt8(length16 & 0xFF)
        let mac = STUNDigest.hmacSHA256(key: key, signed)
        #expect(Array(bytes[(offset + 4)..<(offset + 4 + length)]) == Array(mac.prefix(length)))
        // A flipped byte in the truncated MAC fails.
        var flipped = bytes
        flipped[offset + 4 + length - 1] ^= 0x40
        fixFingerprint(&flipped)
        #expect(parseError(flipped) == nil)
        #expect(!verifies(flipped, key: key, sha256: true))
    }

    @Test("the writer rejects MI-SHA256 lengths outside 16…32 or not a multiple of 4", arguments: [0, 12, 18, 33, 36])
    func badTruncation(length: Int) {
        #expect(throws: STUNEncodingError.valueTooLong(.messageIntegritySHA256)) {
            _ = try STUNMessage(type: .bindingRequest).encoded(key: [1], integrity: [.sha256(length: length)])
        }
    }

    @Test("keys longer than the HMAC block are hashed first (RFC 2104)")
    func longKey() {
        // RFC 2202 test case 6: HMAC-SHA1 with an 80-byte key of 0xaa.
        let mac = STUNDigest.hmacSHA1(
            key: [UInt8](repeating: 0xAA, count: 80), utf8("Test Using Larger Than Block-Size Key - Hash Key First"))
        #expect(mac == hex("aa4ae5e15272d00e95705637ce8a3b55ed402112"))
        // RFC 4231 test case 6 for HMAC-SHA256 (131-byte key).
        let mac256 = STUNDigest.hmacSHA256(
            key: [UInt8](repeating: 0xAA, count: 131), utf8("Test Using Larger Than Block-Size Key - Hash Key First"))
        #expect(mac256 == hex("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"))
    }

    @Test("digests")
    func digests() {
        #expect(utf8("").withUnsafeBytes { STUNDigest.md5($0) } == hex("d41d8cd98f00b204e9800998ecf8427e"))
        #expect(
            utf8("abc").withUnsafeBytes { STUNDigest.sha256($0) }
                == hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"))
        #expect(CRC32.checksum(utf8("123456789")) == 0xCBF4_3926)
        #expect(STUNDigest.randomBytes(16).count == 16)
        #expect(STUNDigest.randomBytes(16) != STUNDigest.randomBytes(16))
    }

    @Test("constant-time equality")
    func constantTimeEqual() {
        func eq(_ a: [UInt8], _ b: [UInt8]) -> Bool {
            a.withUnsafeBytes { x in b.withUnsafeBytes { y in STUNDigest.constantTimeEqual(x, y) } }
        }
        #expect(eq([], []))
        #expect(eq([1, 2, 3], [1, 2, 3]))
        #expect(!eq([1, 2, 3], [1, 2, 4]))
        #expect(!eq([0x80, 2, 3], [0, 2, 3]))
        #expect(!eq([1, 2, 3], [1, 2]))
        #expect(!eq([], [0]))
        let a = [UInt8](repeating: 7, count: 32)
        var b = a
        #expect(eq(a, b))
        b[31] = 8
        #expect(!eq(a, b))
    }
}

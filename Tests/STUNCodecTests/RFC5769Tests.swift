import STUNCodec
import Testing

/// The four messages of RFC 5769, parsed, verified and written again.
@Suite("RFC 5769 test vectors")
struct RFC5769Tests {
    let shortTermKey = utf8(RFC5769.password)

    /// MD5(username ":" realm ":" password), the RFC 5389 long-term key.
    var longTermKey: [UInt8] {
        utf8("\(RFC5769.longTermUsername):\(RFC5769.realm):\(RFC5769.longTermPassword)").withUnsafeBytes {
            STUNDigest.md5($0)
        }
    }

    @Test("2.1 sample request: attributes, MESSAGE-INTEGRITY and FINGERPRINT")
    func sampleRequest() throws {
        try withView(RFC5769.request) { view in
            #expect(view.type == .bindingRequest)
            #expect(!view.isClassicSTUN)
            #expect(view.transactionID == RFC5769.transactionID)
            #expect(view.string(.software) == "STUN test client")
            #expect(view.string(.username) == "evtj:h6vY")
            #expect(view.uint32(.priority) == 0x6e00_01ff)
            #expect(view.value(of: .iceControlled).map { Array($0) } == hex("93 2f f9 b1 51 26 3b 36"))
            #expect(view.integrityOffset == 76)
            #expect(view.integritySHA256Offset == nil)
            #expect(view.fingerprintOffset == 100)
            #expect(view.attributesEnd == 76)
            #expect(view.unknownComprehensionRequired.isEmpty)
            #expect(shortTermKey.withUnsafeBytes { view.verifyMessageIntegrity(key: $0) })
            #expect(!utf8("VOkJxbRl1RmTxUk/WvJxBT").withUnsafeBytes { view.verifyMessageIntegrity(key: $0) })
            #expect(!shortTermKey.withUnsafeBytes { view.verifyMessageIntegritySHA256(key: $0) })
        }
        // FINGERPRINT recomputed independently of the parser.
        let crc = CRC32.checksum(Array(RFC5769.request[0..<100])) ^ stunFingerprintXOR
        #expect(crc == 0xe57a_3bcf)
        // MESSAGE-INTEGRITY recomputed independently: header with the length ending after MI.
        var signed = Array(RFC5769.request[0..<76])
        signed[3] = 76 + 24 - 20
        #expect(STUNDigest.hmacSHA1(key: shortTermKey, signed) == Array(RFC5769.request[80..<100]))
    }

    @Test("2.1 sample request: the owned model")
    func sampleRequestOwned() throws {
        let message = try STUNMessage(parsing: RFC5769.request)
        #expect(message.type == .bindingRequest)
        #expect(message.transactionID == RFC5769.transactionID)
        #expect(
            message.attributes == [
                .software("STUN test client"),
                .priority(0x6e00_01ff),
                .iceControlled(0x932f_f9b1_5126_3b36),
                .username("evtj:h6vY"),
                .messageIntegrity(Array(RFC5769.request[80..<100])),
                .fingerprint(0xe57a_3bcf),
            ])
    }

    @Test("2.1 sample request: written again byte for byte (with the vector's 0x20 padding)")
    func sampleRequestRewritten() throws {
        let key = shortTermKey
        let bytes = try write(type: .bindingRequest, transactionID: RFC5769.transactionID) { w in
            try w.append(.software, string: "STUN test client")
            try w.append(.priority, uint32: 0x6e00_01ff)
            try w.append(.iceControlled, uint64: 0x932f_f9b1_5126_3b36)
            try w.append(.username, string: "evtj:h6vY")
            // The vector pads USERNAME with spaces; receivers ignore padding, the MAC covers it.
            let end = w.count
            w.withPatchedPadding(at: (end - 3)..<end, to: 0x20)
            try key.withUnsafeBytes { try w.appendMessageIntegrity(key: $0) }
            try w.appendFingerprint()
        }
        #expect(bytes == RFC5769.request)
    }

    @Test("2.1 sample request: re-encoded from the owned model with fresh integrity")
    func sampleRequestReencoded() throws {
        let parsed = try STUNMessage(parsing: RFC5769.request)
        var plain = parsed
        plain.attributes.removeAll { $0.type == .messageIntegrity || $0.type == .fingerprint }
        let encoded = try plain.encoded(key: shortTermKey, integrity: [.sha1], fingerprint: true)
        #expect(encoded.count == RFC5769.request.count)
        // Only USERNAME's padding (zero instead of 0x20) and so MI and FINGERPRINT differ.
        let differing = (0..<encoded.count).filter { encoded[$0] != RFC5769.request[$0] }
        #expect(differing.allSatisfy { (73..<76).contains($0) || $0 >= 80 })
        #expect(Array(encoded[73..<76]) == [0, 0, 0])
        let reparsed = try STUNMessage(parsing: encoded)
        #expect(Array(reparsed.attributes.prefix(4)) == Array(parsed.attributes.prefix(4)))
        try withView(encoded) { view in
            #expect(shortTermKey.withUnsafeBytes { view.verifyMessageIntegrity(key: $0) })
        }
    }

    @Test("2.2 IPv4 response: XOR-MAPPED-ADDRESS 192.0.2.1:32853")
    func ipv4Response() throws {
        let expected = TransportAddress(ip: IPAddress("192.0.2.1")!, port: 32853)
        try withView(RFC5769.ipv4Response) { view in
            #expect(view.type == .bindingSuccess)
            #expect(view.transactionID == RFC5769.transactionID)
            #expect(view.string(.software) == "test vector")
            #expect(view.xorAddress(.xorMappedAddress) == expected)
            #expect(view.fingerprintOffset != nil)
            #expect(shortTermKey.withUnsafeBytes { view.verifyMessageIntegrity(key: $0) })
        }
        let message = try STUNMessage(parsing: RFC5769.ipv4Response)
        #expect(message.first(.xorMappedAddress) == .xorMappedAddress(expected))
        try checkResponseRewrite(RFC5769.ipv4Response, address: expected)
    }

    @Test("2.3 IPv6 response: XOR-MAPPED-ADDRESS [2001:db8:1234:5678:11:2233:4455:6677]:32853")
    func ipv6Response() throws {
        let expected = TransportAddress(ip: IPAddress("2001:db8:1234:5678:11:2233:4455:6677")!, port: 32853)
        #expect(expected.ip == .v6(0x2001_0db8_1234_5678, 0x0011_2233_4455_6677))
        try withView(RFC5769.ipv6Response) { view in
            #expect(view.type == .bindingSuccess)
            #expect(view.string(.software) == "test vector")
            #expect(view.xorAddress(.xorMappedAddress) == expected)
            #expect(shortTermKey.withUnsafeBytes { view.verifyMessageIntegrity(key: $0) })
        }
        try checkResponseRewrite(RFC5769.ipv6Response, address: expected)
    }

    /// Writes SOFTWARE "test vector" (padded with 0x20 as in the vector), the address, MI and
    /// FINGERPRINT, and expects the vector's exact bytes; then re-encodes the owned model, whose
    /// only difference is the zero padding byte and so the MAC and CRC.
    func checkResponseRewrite(_ vector: [UInt8], address: TransportAddress) throws {
        let key = shortTermKey
        let bytes = try write(type: .bindingSuccess, transactionID: RFC5769.transactionID) { w in
            try w.append(.software, string: "test vector")
            w.withPatchedPadding(at: 35..<36, to: 0x20)
            try w.append(.xorMappedAddress, address: address)
            try key.withUnsafeBytes { try w.appendMessageIntegrity(key: $0) }
            try w.appendFingerprint()
        }
        #expect(bytes == vector)

        // The owned model copied verbatim (stored MI and FINGERPRINT) differs only in the padding byte.
        let parsed = try STUNMessage(parsing: vector)
        let verbatim = try parsed.encoded()
        #expect((0..<vector.count).filter { verbatim[$0] != vector[$0] } == [35])
        // Re-encoded with fresh integrity, it verifies and means the same.
        var plain = parsed
        plain.attributes.removeAll { $0.type == .messageIntegrity || $0.type == .fingerprint }
        let fresh = try plain.encoded(key: key, integrity: [.sha1], fingerprint: true)
        #expect(fresh.count == vector.count)
        let reparsed = try STUNMessage(parsing: fresh)
        #expect(Array(reparsed.attributes.prefix(2)) == plain.attributes)
        try withView(fresh) { view in
            #expect(key.withUnsafeBytes { view.verifyMessageIntegrity(key: $0) })
        }
    }

    @Test("2.4 long-term request: key MD5(username:realm:password) verifies MESSAGE-INTEGRITY")
    func longTermRequest() throws {
        let key = longTermKey
        #expect(key.count == 16)
        try withView(RFC5769.longTermRequest) { view in
            #expect(view.type == .bindingRequest)
            #expect(view.transactionID == RFC5769.longTermTransactionID)
            #expect(view.string(.username) == RFC5769.longTermUsername)
            #expect(view.string(.realm) == RFC5769.realm)
            #expect(view.string(.nonce) == RFC5769.nonce)
            #expect(view.fingerprintOffset == nil)
            #expect(key.withUnsafeBytes { view.verifyMessageIntegrity(key: $0) })
            #expect(!utf8(RFC5769.longTermPassword).withUnsafeBytes { view.verifyMessageIntegrity(key: $0) })
        }
    }

    @Test("2.4 long-term request: re-encoding reproduces the exact bytes")
    func longTermRequestReencoded() throws {
        let parsed = try STUNMessage(parsing: RFC5769.longTermRequest)
        #expect(
            parsed.attributes.prefix(3) == [
                .username(RFC5769.longTermUsername), .nonce(RFC5769.nonce), .realm(RFC5769.realm),
            ])
        // Copied verbatim, with the stored MESSAGE-INTEGRITY.
        #expect(try parsed.encoded() == RFC5769.longTermRequest)
        // Signed afresh with the derived key (this vector's padding is zero, so nothing differs).
        var plain = parsed
        plain.attributes.removeAll { $0.type == .messageIntegrity }
        #expect(try plain.encoded(key: longTermKey, integrity: [.sha1]) == RFC5769.longTermRequest)
    }
}

extension STUNMessageWriter {
    /// Overwrites padding bytes already written (the RFC 5769 vectors pad with 0x20 in places).
    mutating func withPatchedPadding(at range: Range<Int>, to byte: UInt8) {
        let base = UnsafeMutableRawPointer(mutating: message.baseAddress!)
        for i in range { base.storeBytes(of: byte, toByteOffset: i, as: UInt8.self) }
    }
}

import STUNCodec
import Testing

/// A STUN header followed by `body`; `length` overrides the header's length field.
func rawMessage(type: UInt16 = 0x0001, cookie: UInt32 = stunMagicCookie, length: Int? = nil, _ body: [UInt8] = [])
    -> [UInt8]
{
    let n = length ?? body.count
    var out: [UInt8] = [UInt8(type >> 8), UInt8(type & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)]
    out += [UInt8(cookie >> 24), UInt8(cookie >> 16 & 0xFF), UInt8(cookie >> 8 & 0xFF), UInt8(cookie & 0xFF)]
    out += hex("01 02 03 04 05 06 07 08 09 0a 0b 0c")
    return out + body
}

/// One attribute: type, length (`declared` overrides it) and the value padded with zeros to 4.
func tlv(_ type: STUNAttributeType, _ value: [UInt8], declared: Int? = nil) -> [UInt8] {
    let n = declared ?? value.count
    var out: [UInt8] = [UInt8(type.rawValue >> 8), UInt8(type.rawValue & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)]
    out += value
    while out.count % 4 != 0 { out.append(0) }
    return out
}

struct MalformedCase: Sendable, CustomTestStringConvertible {
    let name: String
    let bytes: [UInt8]
    let error: STUNParseError
    var testDescription: String { name }
}

@Suite("Malformed input")
struct MalformedTests {
    static let cases: [MalformedCase] = {
        var cases: [MalformedCase] = []
        func add(_ name: String, _ bytes: [UInt8], _ error: STUNParseError) {
            cases.append(MalformedCase(name: name, bytes: bytes, error: error))
        }
        let xorV4 = hex("00 01 a1 47 e1 12 a6 43")
        add("zero-length datagram", [], .truncatedHeader)
        add("one byte", [0x00], .truncatedHeader)
        add("truncated header (19 bytes)", Array(rawMessage().prefix(19)), .truncatedHeader)
        add("first two bits 11", rawMessage(type: 0xC001), .notSTUN)
        add("first bit set (0x80)", rawMessage(type: 0x8001), .notSTUN)
        add("second bit set (0x40, ChannelData)", rawMessage(type: 0x4001), .notSTUN)
        add("bad cookie on an Allocate request", rawMessage(type: 0x0003, cookie: 0x1234_5678), .badMagicCookie)
        add("bad cookie on a Binding success response", rawMessage(type: 0x0101, cookie: 0), .badMagicCookie)
        add("bad cookie on a Binding indication", rawMessage(type: 0x0011, cookie: 0x2112_A443), .badMagicCookie)
        add("bad cookie on a Send indication", rawMessage(type: 0x0016, cookie: 0), .badMagicCookie)
        add("length 2", rawMessage(length: 2, [0, 0]), .lengthNotMultipleOfFour)
        add("length 6", rawMessage(length: 6, [0, 0, 0, 0, 0, 0]), .lengthNotMultipleOfFour)
        add("length 7 past the datagram", rawMessage(length: 7), .lengthNotMultipleOfFour)
        add("length past the datagram", rawMessage(length: 8), .lengthMismatch)
        add("length far past the datagram", rawMessage(length: 0xFFFC, tlv(.software, utf8("abcd"))), .lengthMismatch)
        add("length shorter than the datagram", rawMessage(length: 0, tlv(.software, utf8("abcd"))), .lengthMismatch)
        add(
            "length short by one attribute",
            rawMessage(length: 8, tlv(.lifetime, [0, 0, 0, 1]) + tlv(.lifetime, [0, 0, 0, 2])), .lengthMismatch)
        var big = rawMessage(length: 0xFFFC)
        big += [UInt8](repeating: 0, count: 65_536 - big.count)
        add("64 KiB datagram (the length field cannot say 65516)", big, .lengthMismatch)
        add(
            "attribute value overruns by its padding",
            rawMessage(tlv(.software, utf8("abcdefgh"), declared: 9)), .attributeOverrun(.software))
        add(
            "attribute value overruns the message",
            rawMessage(tlv(.username, utf8("abcd"), declared: 100)), .attributeOverrun(.username))
        add(
            "last attribute overruns, after a valid one",
            rawMessage(tlv(.lifetime, [0, 0, 2, 88]) + tlv(.data, [1, 2, 3, 4], declared: 5)), .attributeOverrun(.data))
        add(
            "unknown attribute overruns",
            rawMessage(tlv(STUNAttributeType(0x7777), [], declared: 4)), .attributeOverrun(STUNAttributeType(0x7777)))
        add(
            "USERNAME of 509 bytes", rawMessage(tlv(.username, [UInt8](repeating: 0x61, count: 509))),
            .invalidAttributeLength(.username))
        add(
            "REALM of 764 bytes", rawMessage(tlv(.realm, [UInt8](repeating: 0x61, count: 764))),
            .invalidAttributeLength(.realm))
        add(
            "MESSAGE-INTEGRITY of 19 bytes", rawMessage(tlv(.messageIntegrity, [UInt8](repeating: 1, count: 19))),
            .invalidAttributeLength(.messageIntegrity))
        add(
            "MESSAGE-INTEGRITY of 21 bytes", rawMessage(tlv(.messageIntegrity, [UInt8](repeating: 1, count: 21))),
            .invalidAttributeLength(.messageIntegrity))
        for n in [0, 12, 18, 34, 36] {
            add(
                "MESSAGE-INTEGRITY-SHA256 of \(n) bytes",
                rawMessage(tlv(.messageIntegritySHA256, [UInt8](repeating: 1, count: n))),
                .invalidAttributeLength(.messageIntegritySHA256))
        }
        add(
            "FINGERPRINT of 8 bytes", rawMessage(tlv(.fingerprint, [0, 0, 0, 0, 0, 0, 0, 0])),
            .invalidAttributeLength(.fingerprint))
        add("LIFETIME of 3 bytes", rawMessage(tlv(.lifetime, [0, 0, 1])), .invalidAttributeLength(.lifetime))
        add(
            "DONT-FRAGMENT with a value", rawMessage(tlv(.dontFragment, [0, 0, 0, 0])),
            .invalidAttributeLength(.dontFragment))
        add("EVEN-PORT of 4 bytes", rawMessage(tlv(.evenPort, [0x80, 0, 0, 0])), .invalidAttributeLength(.evenPort))
        add("ERROR-CODE of 3 bytes", rawMessage(tlv(.errorCode, [0, 0, 4])), .invalidAttributeLength(.errorCode))
        add(
            "UNKNOWN-ATTRIBUTES of odd length", rawMessage(tlv(.unknownAttributes, [0, 1, 0])),
            .invalidAttributeLength(.unknownAttributes))
        add("empty ALTERNATE-DOMAIN", rawMessage(tlv(.alternateDomain, [])), .invalidAttributeLength(.alternateDomain))
        add(
            "USERHASH of 31 bytes", rawMessage(tlv(.userhash, [UInt8](repeating: 7, count: 31))),
            .invalidAttributeLength(.userhash))
        add(
            "MAPPED-ADDRESS of 12 bytes", rawMessage(tlv(.mappedAddress, xorV4 + [0, 0, 0, 0])),
            .invalidAttributeLength(.mappedAddress))
        add(
            "XOR-MAPPED-ADDRESS with family 3", rawMessage(tlv(.xorMappedAddress, hex("00 03 a1 47 e1 12 a6 43"))),
            .invalidAddressFamily(.xorMappedAddress))
        add(
            "XOR-PEER-ADDRESS with family 0", rawMessage(tlv(.xorPeerAddress, hex("00 00 a1 47 e1 12 a6 43"))),
            .invalidAddressFamily(.xorPeerAddress))
        add(
            "XOR-RELAYED-ADDRESS: IPv6 family with 8 bytes",
            rawMessage(tlv(.xorRelayedAddress, hex("00 02 a1 47 e1 12 a6 43"))),
            .invalidAddressFamily(.xorRelayedAddress))
        add(
            "ALTERNATE-SERVER: IPv4 family with 20 bytes",
            rawMessage(tlv(.alternateServer, xorV4 + [UInt8](repeating: 0, count: 12))),
            .invalidAddressFamily(.alternateServer))

        var badFingerprint = RFC5769.ipv4Response
        badFingerprint[badFingerprint.count - 1] ^= 0x01
        add("FINGERPRINT off by one bit", badFingerprint, .badFingerprint)
        var softwareFlipped = RFC5769.request
        softwareFlipped[25] ^= 0x20
        add("a byte changed under FINGERPRINT", softwareFlipped, .badFingerprint)
        var afterFingerprint = RFC5769.ipv4Response + tlv(.software, utf8("late"))
        afterFingerprint[3] += 8
        add("attribute after FINGERPRINT", afterFingerprint, .fingerprintNotLast)
        var twoFingerprints = RFC5769.ipv4Response + tlv(.fingerprint, [0, 0, 0, 0])
        twoFingerprints[3] += 8
        add("two FINGERPRINTs", twoFingerprints, .fingerprintNotLast)
        return cases
    }()

    @Test("each malformed input fails with its exact error", arguments: cases)
    func malformed(_ c: MalformedCase) {
        #expect(parseError(c.bytes) == c.error)
    }

    @Test("an RFC 3489 Binding request (no magic cookie) is accepted as classic STUN")
    func classicSTUN() throws {
        let bytes = rawMessage(type: 0x0001, cookie: 0xDEAD_BEEF, tlv(.software, utf8("old client")))
        try withView(bytes) { view in
            #expect(view.isClassicSTUN)
            #expect(view.cookie == 0xDEAD_BEEF)
            #expect(view.type == .bindingRequest)
            #expect(view.transactionID == STUNTransactionID(high: 0x0102_0304_0506_0708, low: 0x090A_0B0C))
            #expect(view.string(.software) == "old client")
        }
        try withView(rawMessage()) { view in #expect(!view.isClassicSTUN) }
    }

    @Test("a header alone is a valid message")
    func headerOnly() throws {
        try withView(rawMessage(type: 0x0101)) { view in
            #expect(view.type == .bindingSuccess)
            #expect(view.attributesEnd == stunHeaderSize)
            #expect(view.value(of: .software) == nil)
            var count = 0
            view.forEachAttribute { _, _ in
                count += 1
                return true
            }
            #expect(count == 0)
        }
    }

    @Test("attributes after MESSAGE-INTEGRITY are ignored, except MI-SHA256 and FINGERPRINT")
    func ignoredAfterIntegrity() throws {
        let key = utf8("secret")
        let tid = STUNTransactionID(high: 1, low: 2)
        let bytes = try write(type: .bindingRequest, transactionID: tid) { w in
            try w.append(.username, string: "alice")
            try key.withUnsafeBytes { try w.appendMessageIntegrity(key: $0) }
            // Ignored: not visible, not validated (an over-long USERNAME), not reported as unknown.
            try w.append(.software, string: "after MI")
            try [UInt8](repeating: 0x61, count: 600).withUnsafeBytes { try w.append(.username, bytes: $0) }
            try w.append(STUNAttributeType(0x0077), uint32: 1)
            try key.withUnsafeBytes { try w.appendMessageIntegritySHA256(key: $0, length: 20) }
            // Ignored after MI-SHA256 too.
            try w.append(.lifetime, uint32: 600)
            try w.appendFingerprint()
        }
        try withView(bytes) { view in
            #expect(view.string(.username) == "alice")
            #expect(view.value(of: .software) == nil)
            #expect(view.value(of: .lifetime) == nil)
            #expect(view.value(of: STUNAttributeType(0x0077)) == nil)
            #expect(view.unknownComprehensionRequired.isEmpty)
            #expect(view.integrityOffset == 32)
            #expect(view.integritySHA256Offset != nil)
            #expect(view.fingerprintOffset == bytes.count - 8)
            #expect(view.attributesEnd == 32)
            #expect(key.withUnsafeBytes { view.verifyMessageIntegrity(key: $0) })
            #expect(key.withUnsafeBytes { view.verifyMessageIntegritySHA256(key: $0) })
        }
        let owned = try STUNMessage(parsing: bytes)
        #expect(owned.attributes.map(\.type) == [.username, .messageIntegrity, .messageIntegritySHA256, .fingerprint])
    }

    @Test("attributes after MI-SHA256 alone are ignored; a later MESSAGE-INTEGRITY is ignored too")
    func ignoredAfterSHA256() throws {
        let key = utf8("k")
        let bytes = try write(type: .bindingRequest, transactionID: STUNTransactionID(high: 3, low: 4)) { w in
            try w.append(.realm, string: "example.org")
            try key.withUnsafeBytes { try w.appendMessageIntegritySHA256(key: $0) }
            try w.append(.nonce, string: "ignored")
            try key.withUnsafeBytes { try w.appendMessageIntegrity(key: $0) }
        }
        try withView(bytes) { view in
            #expect(view.string(.realm) == "example.org")
            #expect(view.value(of: .nonce) == nil)
            #expect(view.integrityOffset == nil)
            #expect(view.integritySHA256Offset == 36)
            #expect(view.attributesEnd == 36)
            #expect(key.withUnsafeBytes { view.verifyMessageIntegritySHA256(key: $0) })
            #expect(!key.withUnsafeBytes { view.verifyMessageIntegrity(key: $0) })
        }
    }

    @Test("duplicate attributes: the first one wins")
    func duplicates() throws {
        let body =
            tlv(.username, utf8("first")) + tlv(.lifetime, [0, 0, 0, 30]) + tlv(.username, utf8("second"))
            + tlv(.lifetime, [0, 0, 0, 60])
        try withView(rawMessage(body)) { view in
            #expect(view.string(.username) == "first")
            #expect(view.uint32(.lifetime) == 30)
        }
        let owned = try STUNMessage(parsing: rawMessage(body))
        #expect(owned.first(.username) == .username("first"))
        #expect(owned.attributes.count == 4)
    }

    @Test("unknown comprehension-required attributes are collected; optional ones are not")
    func unknownAttributes() throws {
        var body: [UInt8] = []
        body += tlv(STUNAttributeType(0x0031), [1, 2, 3, 4])
        body += tlv(STUNAttributeType(0x8031), [1])
        body += tlv(.username, utf8("bob"))
        body += tlv(STUNAttributeType(0x7FFF), [])
        body += tlv(STUNAttributeType(0x0031), [5])  // a duplicate is listed once
        body += tlv(STUNAttributeType(0xFFFF), [9, 9])
        body += tlv(.priority, [0, 0, 0, 1])  // ICE attributes are understood
        body += tlv(.useCandidate, [])
        try withView(rawMessage(body)) { view in
            #expect(view.unknownComprehensionRequired.array == [STUNAttributeType(0x0031), STUNAttributeType(0x7FFF)])
            #expect(view.unknownComprehensionRequired.contains(STUNAttributeType(0x7FFF)))
            #expect(!view.unknownComprehensionRequired.contains(STUNAttributeType(0x8031)))
            #expect(view.string(.username) == "bob")
        }
        // At most eight are kept (enough for a 420 answer), without allocating.
        var many: [UInt8] = []
        for t in UInt16(0x0040)..<0x0050 { many += tlv(STUNAttributeType(t), []) }
        try withView(rawMessage(many)) { view in
            #expect(view.unknownComprehensionRequired.count == STUNAttributeTypeList.capacity)
            #expect(view.unknownComprehensionRequired[7] == STUNAttributeType(0x0047))
        }
    }

    @Test("the first malformed attribute is reported even after valid ones")
    func reportsFirst() {
        let body = tlv(.username, utf8("ok")) + tlv(.lifetime, [0, 0, 1]) + tlv(.evenPort, [0, 0])
        #expect(parseError(rawMessage(body)) == .invalidAttributeLength(.lifetime))
    }

    @Test("parse errors have distinct metric labels")
    func reasons() {
        let all: [STUNParseError] = [
            .truncatedHeader, .notSTUN, .badMagicCookie, .lengthNotMultipleOfFour, .lengthMismatch,
            .attributeOverrun(.data), .invalidAttributeLength(.data), .invalidAddressFamily(.data),
            .fingerprintNotLast, .badFingerprint,
        ]
        #expect(Set(all.map(\.reason)).count == all.count)
        #expect(all.allSatisfy { !$0.description.isEmpty })
    }
}

import STUNCodec
import Testing

/// parse(encode(m)) == m over seeded random messages.
@Suite("Round trips")
struct RoundTripTests {
    /// Generates valid attributes of every kind that the owned model round-trips exactly.
    struct MessageGenerator {
        var g: SeededGenerator

        mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &g) }
        mutating func u8() -> UInt8 { UInt8.random(in: .min ... .max, using: &g) }
        mutating func u16() -> UInt16 { UInt16.random(in: .min ... .max, using: &g) }
        mutating func u32() -> UInt32 { UInt32.random(in: .min ... .max, using: &g) }
        mutating func u64() -> UInt64 { g.next() }
        mutating func bool() -> Bool { Bool.random(using: &g) }
        mutating func bytes(_ range: ClosedRange<Int>) -> [UInt8] { (0..<int(range)).map { _ in u8() } }

        /// Text of `byteRange` UTF-8 bytes: mostly ASCII, sometimes 2- and 3-byte scalars.
        mutating func text(_ byteRange: ClosedRange<Int>) -> String {
            let target = int(byteRange)
            var s = ""
            while s.utf8.count < target {
                let room = target - s.utf8.count
                switch int(0...9) {
                case 0 where room >= 3: s.unicodeScalars.append(Unicode.Scalar(UInt32(int(0x30A0...0x30FF)))!)
                case 1 where room >= 2: s.unicodeScalars.append(Unicode.Scalar(UInt32(int(0xC0...0x17F)))!)
                default: s.unicodeScalars.append(Unicode.Scalar(UInt8(int(0x20...0x7E))))
                }
            }
            return s
        }

        mutating func address() -> TransportAddress {
            bool()
                ? TransportAddress(ip: .v4(u32()), port: u16())
                : TransportAddress(ip: .v6(u64(), u64()), port: u16())
        }

        mutating func family() -> AddressFamily { bool() ? .ipv4 : .ipv6 }

        mutating func errorCode() -> Int { int(3...6) * 100 + int(0...99) }

        /// Attribute types this codec does not know, comprehension-required or not.
        mutating func unknownType() -> UInt16 {
            let candidates: [UInt16] = [0x0050, 0x0051, 0x00FF, 0x7FFE, 0x8050, 0x80FE, 0xC001, 0xFFFF]
            return candidates[int(0...(candidates.count - 1))]
        }

        mutating func attribute() -> STUNAttribute {
            switch int(0...38) {
            case 0: return .mappedAddress(address())
            case 1: return .xorMappedAddress(address())
            case 2: return .xorPeerAddress(address())
            case 3: return .xorRelayedAddress(address())
            case 4: return .alternateServer(address())
            case 5: return .responseOrigin(address())
            case 6: return .otherAddress(address())
            case 7: return .username(text(0...STUNLimits.maxUsernameBytes))
            case 8: return .userhash(bytes(32...32))
            case 9: return .realm(text(0...64))
            case 10: return .nonce(text(0...STUNLimits.maxPhraseBytes))
            case 11: return .software(text(0...40))
            case 12: return .alternateDomain(text(1...255))
            case 13: return .errorCode(code: errorCode(), reason: text(0...STUNLimits.maxPhraseBytes))
            case 14: return .unknownAttributes((0..<int(0...7)).map { _ in u16() })
            case 15:
                return .passwordAlgorithms(
                    (0..<int(0...3)).map { _ in PasswordAlgorithm(number: u16(), parameters: bytes(0...9)) })
            case 16: return .passwordAlgorithm(PasswordAlgorithm(number: u16(), parameters: bytes(0...9)))
            case 17: return .channelNumber(u16())
            case 18: return .lifetime(u32())
            case 19: return .data(bytes(0...300))
            case 20: return .requestedAddressFamily(family())
            case 21: return .additionalAddressFamily(family())
            case 22: return .addressErrorCode(family: family(), code: errorCode(), reason: text(0...40))
            case 23: return .evenPort(reserve: bool())
            case 24: return .requestedTransport(u8())
            case 25: return .dontFragment
            case 26: return .reservationToken(u64())
            case 27: return .icmp(type: u8(), code: u8(), data: u32())
            case 28: return .connectionID(u32())
            case 29: return .changeRequest(u32())
            case 30: return .responsePort(u16())
            case 31: return .padding(bytes(0...64))
            case 32: return .mobilityTicket(bytes(0...64))
            case 33: return .priority(u32())
            case 34: return .useCandidate
            case 35: return .iceControlled(u64())
            case 36: return .iceControlling(u64())
            case 37: return .other(type: unknownType(), value: bytes(0...33))
            default: return .software("")
            }
        }

        mutating func message() -> STUNMessage {
            let method = STUNMethod(rawValue: UInt16(int(0...0x0FFF)))
            let classes: [STUNMessageClass] = [.request, .indication, .successResponse, .errorResponse]
            let type = STUNMessageType(method: method, class: classes[int(0...3)])
            let tid = STUNTransactionID(high: u64(), low: u32())
            return STUNMessage(type: type, transactionID: tid, attributes: (0..<int(0...12)).map { _ in attribute() })
        }

        mutating func integrity() -> [STUNIntegrityAlgorithm] {
            switch int(0...3) {
            case 0: return []
            case 1: return [.sha1]
            case 2: return [.sha256(length: 4 * int(4...8))]
            default: return [.sha1, .sha256(length: 4 * int(4...8))]
            }
        }
    }

    @Test("every generated attribute kind is covered")
    func coverage() {
        var gen = MessageGenerator(g: SeededGenerator(seed: 1))
        var kinds = Set<UInt16>()
        for _ in 0..<5000 { kinds.insert(gen.attribute().type.rawValue) }
        // All 37 named kinds (every case but the integrity ones, FINGERPRINT and .other), and unknown ones.
        #expect(kinds.filter { STUNAttributeType($0).isKnown }.count == 37)
        #expect(kinds.contains { !STUNAttributeType($0).isKnown })
    }

    /// Found by fuzz-stun (Fuzz/corpus/fuzz-stun/crash-*): values the model has no faithful case for
    /// stay raw bytes, so that every parsed message encodes back to what it was.
    @Test("ERROR-CODE numbers above 99 and text that is not UTF-8 stay raw bytes and encode back")
    func undecodableValues() throws {
        let errorCode = STUNAttributeType.errorCode.rawValue
        let message = STUNMessage(
            type: STUNMessageType(method: .allocate, class: .errorResponse),
            transactionID: STUNTransactionID(high: 1, low: 2),
            attributes: [
                .other(type: errorCode, value: [0, 0, 0x4F, 0xDE] + Array("bad".utf8)),  // 7 and 222: "922"
                .other(type: errorCode, value: [0, 0, 4, 1] + [UInt8](repeating: 0xFF, count: 300)),
                .other(type: STUNAttributeType.username.rawValue, value: [UInt8](repeating: 0xFF, count: 200)),
                .other(type: STUNAttributeType.realm.rawValue, value: Array("ex".utf8) + [0xC3]),
                .username("alice"),
            ])
        let bytes = try message.encoded()
        let parsed = try STUNMessage(parsing: bytes)
        #expect(parsed == message)
        #expect(try parsed.encoded() == bytes)
    }

    @Test("plain messages", arguments: [UInt64(1), 2, 3, 4])
    func plain(seed: UInt64) throws {
        var gen = MessageGenerator(g: SeededGenerator(seed: seed))
        for _ in 0..<100 {
            let message = gen.message()
            let bytes = try message.encoded()
            #expect(bytes.count % 4 == 0)
            #expect(Int(bytes[2]) << 8 | Int(bytes[3]) == bytes.count - stunHeaderSize)
            let parsed = try STUNMessage(parsing: bytes)
            #expect(parsed == message)
            // Encoding is deterministic: the parsed copy writes the same bytes.
            #expect(try parsed.encoded() == bytes)
        }
    }

    @Test("with integrity (SHA1, SHA256 truncated 16…32) and FINGERPRINT", arguments: [UInt64(11), 12, 13, 14])
    func protected(seed: UInt64) throws {
        var gen = MessageGenerator(g: SeededGenerator(seed: seed))
        for _ in 0..<100 {
            let message = gen.message()
            let key = gen.bytes(0...80)  // beyond 64 bytes HMAC hashes the key first
            let integrity = gen.integrity()
            let fingerprint = gen.bool()
            let bytes = try message.encoded(key: key, integrity: integrity, fingerprint: fingerprint)
            let parsed = try STUNMessage(parsing: bytes)
            #expect(parsed.type == message.type)
            #expect(parsed.transactionID == message.transactionID)
            #expect(Array(parsed.attributes.prefix(message.attributes.count)) == message.attributes)
            let trailer = parsed.attributes.dropFirst(message.attributes.count).map(\.type)
            var expected: [STUNAttributeType] = integrity.map {
                if case .sha1 = $0 { return .messageIntegrity } else { return .messageIntegritySHA256 }
            }
            if fingerprint { expected.append(.fingerprint) }
            #expect(trailer == expected)

            try withView(bytes) { view in
                #expect((view.fingerprintOffset != nil) == fingerprint)
                let hasSHA1 = integrity.contains(.sha1)
                let sha256Length = integrity.compactMap { a -> Int? in
                    if case .sha256(let n) = a { return n } else { return nil }
                }.first
                #expect(key.withUnsafeBytes { view.verifyMessageIntegrity(key: $0) } == hasSHA1)
                #expect(key.withUnsafeBytes { view.verifyMessageIntegritySHA256(key: $0) } == (sha256Length != nil))
                if let n = sha256Length, let offset = view.integritySHA256Offset {
                    #expect(Int(view.bytes.be16(offset + 2)) == n)
                }
                // Not `key + [0]`: HMAC pads short keys with zeros, so that one is the same key.
                var wrong = key
                if wrong.isEmpty { wrong = [1] } else { wrong[wrong.count / 2] ^= 0x01 }
                #expect(!wrong.withUnsafeBytes { view.verifyMessageIntegrity(key: $0) })
                #expect(!wrong.withUnsafeBytes { view.verifyMessageIntegritySHA256(key: $0) })
            }
            // Copying the stored integrity and FINGERPRINT verbatim reproduces the bytes.
            #expect(try parsed.encoded() == bytes)
        }
    }

    @Test("the view sees the same attributes as the owned model")
    func viewMatchesModel() throws {
        var gen = MessageGenerator(g: SeededGenerator(seed: 99))
        for _ in 0..<50 {
            let message = gen.message()
            let bytes = try message.encoded()
            try withView(bytes) { view in
                var seen: [STUNAttributeType] = []
                view.forEachAttribute { t, _ in
                    seen.append(t)
                    return true
                }
                #expect(seen == message.attributes.map(\.type))
                for a in message.attributes {
                    #expect(view.contains(a.type))
                }
                let unknownRequired = message.attributes.map(\.type).filter {
                    !$0.isKnown && $0.isComprehensionRequired
                }
                #expect(view.unknownComprehensionRequired.array == Array(unknownRequired.uniqued().prefix(8)))
            }
        }
    }
}

extension Array where Element: Hashable {
    func uniqued() -> [Element] {
        var seen = Set<Element>()
        return filter { seen.insert($0).inserted }
    }
}

extension UnsafeRawBufferPointer {
    func be16(_ offset: Int) -> UInt16 { UInt16(self[offset]) << 8 | UInt16(self[offset + 1]) }
}

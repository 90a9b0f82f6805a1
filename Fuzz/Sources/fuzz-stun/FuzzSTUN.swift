// fuzz-stun: the STUN parser (`STUNMessageView`), the owned model (`STUNMessage`) and the writer
// (`STUNMessageWriter`), fed arbitrary bytes.
//
// Invariant: for any bytes, `STUNMessageView(validating:)` returns or throws; it never traps or
// reads outside the input (AddressSanitizer). When it accepts the bytes:
//  1. the offsets it reports lie inside the message, every attribute accessor reads inside it,
//     and a FINGERPRINT it accepted matches a CRC-32 computed here bit by bit;
//  2. MESSAGE-INTEGRITY and MESSAGE-INTEGRITY-SHA256 verification agree with an HMAC computed
//     here from the RFC 8489 §14.5/§14.6 recipe, for the RFC 5769 keys;
//  3. round trip: the owned model re-encoded by the writer (FINGERPRINT recomputed when the
//     input had one) parses again to the same type, transaction ID and attributes, and encoding
//     that again gives the same bytes (the writer's output is a fixed point);
//  4. the same attributes signed with a key (MESSAGE-INTEGRITY, -SHA256 truncated to a length
//     taken from the input, FINGERPRINT) parse, verify under that key and not under another;
//     with one bit flipped, the fingerprinted message no longer parses with its FINGERPRINT, and
//     one bit flipped before the end of an integrity attribute makes that attribute fail to verify.
// A broken invariant traps, which libFuzzer reports as a crash.
import FuzzSupport
import STUNCodec

/// RFC 5769's short-term password (§2.1–2.3) and long-term key (§2.4, MD5 of user:realm:password).
let keys: [[UInt8]] = [
    Array("VOkJxbRl1RmTxUk/WvJxBt".utf8),
    Array("\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}:example.org:TheMatrIX".utf8).withUnsafeBytes {
        STUNDigest.md5($0)
    },
]
let otherKey = Array("not the key".utf8)

/// Every attribute type the codec knows, plus one it does not, for the accessors.
let knownTypes: [STUNAttributeType] = [
    .mappedAddress, .username, .messageIntegrity, .errorCode, .unknownAttributes, .realm, .nonce,
    .messageIntegritySHA256, .passwordAlgorithm, .userhash, .xorMappedAddress, .passwordAlgorithms,
    .alternateDomain, .software, .alternateServer, .fingerprint, .channelNumber, .lifetime, .xorPeerAddress, .data,
    .xorRelayedAddress, .requestedAddressFamily, .evenPort, .requestedTransport, .dontFragment, .reservationToken,
    .additionalAddressFamily, .addressErrorCode, .icmp, .connectionID, .changeRequest, .padding, .responsePort,
    .responseOrigin, .otherAddress, .mobilityTicket, .priority, .useCandidate, .iceControlled, .iceControlling,
    STUNAttributeType(0x7FFF),
]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    let view: STUNMessageView
    do {
        view = try STUNMessageView(validating: bytes)
    } catch {
        if error == .badFingerprint { checkRejectedFingerprint(bytes) }
        return 0
    }
    checkView(view)
    checkIntegrity(view)
    let model = STUNMessage(view)
    let encoded = checkRoundTrip(model, hadFingerprint: view.fingerprintOffset != nil)
    checkSigning(model, encodedSize: encoded.count, seed: fnv1a(bytes))
    return 0
}

// MARK: 1. Offsets and accessors

func checkView(_ v: STUNMessageView) {
    let n = v.bytes.count
    invariant(n >= stunHeaderSize && n % 4 == 0, "accepted a message of \(n) bytes")
    invariant(v.attributesEnd >= stunHeaderSize && v.attributesEnd <= n, "attributesEnd \(v.attributesEnd) of \(n)")
    for (name, offset, length) in [
        ("MESSAGE-INTEGRITY", v.integrityOffset, 20), ("MESSAGE-INTEGRITY-SHA256", v.integritySHA256Offset, 16),
        ("FINGERPRINT", v.fingerprintOffset, 4),
    ] {
        if let offset {
            invariant(offset >= v.attributesEnd && offset + 4 + length <= n, "\(name) at \(offset) of \(n)")
        }
    }
    if let fp = v.fingerprintOffset {
        invariant(fp + 8 == n, "FINGERPRINT at \(fp) is not last in \(n) bytes")
        let crc = bitwiseCRC32(UnsafeRawBufferPointer(rebasing: v.bytes[0..<fp])) ^ stunFingerprintXOR
        invariant(crc == v.bytes.be32(fp + 4), "FINGERPRINT accepted with a wrong CRC")
    }
    if v.isClassicSTUN { invariant(v.type == .bindingRequest, "classic STUN accepted for \(v.type)") }
    for i in 0..<v.unknownComprehensionRequired.count {
        let t = v.unknownComprehensionRequired[i]
        invariant(t.isComprehensionRequired && !t.isKnown, "\(t) reported as unknown")
    }

    let start = v.bytes.baseAddress!
    var walked = stunHeaderSize
    v.forEachAttribute { _, value in
        let at = value.baseAddress.map { $0 - UnsafeRawPointer(start) } ?? walked + 4
        invariant(at == walked + 4 && at + value.count <= v.attributesEnd, "attribute value at \(at) out of place")
        walked = at + ((value.count + 3) & ~3)
        return true
    }
    invariant(walked == v.attributesEnd, "attributes end at \(walked), view says \(v.attributesEnd)")

    for t in knownTypes {
        if let value = v.value(of: t), let base = value.baseAddress {
            invariant(base >= UnsafeRawPointer(start) && base + value.count <= start + n, "\(t) value outside")
        }
    }
    _ = v.xorAddress(.xorMappedAddress)
    _ = v.xorAddress(.xorPeerAddress)
    _ = v.xorAddress(.xorRelayedAddress)
    _ = v.plainAddress(.mappedAddress)
    _ = v.plainAddress(.alternateServer)
    _ = v.errorCode
    _ = v.uint32(.lifetime)
    _ = v.uint32(.channelNumber)
    _ = v.uint32(.requestedTransport)
    _ = v.string(.username)
    _ = v.string(.realm)
    _ = v.string(.nonce)
}

/// A message the parser refused for its FINGERPRINT must really have a wrong CRC.
func checkRejectedFingerprint(_ bytes: UnsafeRawBufferPointer) {
    let fp = bytes.count - 8
    guard fp >= stunHeaderSize, bytes.be16(fp) == STUNAttributeType.fingerprint.rawValue else { return }
    let crc = bitwiseCRC32(UnsafeRawBufferPointer(rebasing: bytes[0..<fp])) ^ stunFingerprintXOR
    invariant(crc != bytes.be32(fp + 4), "a correct FINGERPRINT was refused")
}

/// CRC-32 (zlib's), bit by bit: independent of the codec's table.
func bitwiseCRC32(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
    var c: UInt32 = 0xFFFF_FFFF
    for b in bytes {
        c ^= UInt32(b)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0xEDB8_8320 : c >> 1 }
    }
    return ~c
}

// MARK: 2. Integrity against an independent HMAC

func checkIntegrity(_ v: STUNMessageView) {
    for key in keys {
        key.withUnsafeBytes { k in
            if let offset = v.integrityOffset {
                let expected = Array(independentMAC(v.bytes, upTo: offset, macLength: 20, key: key, sha256: false))
                let stored = Array(v.bytes[(offset + 4)..<(offset + 24)])
                invariant(
                    v.verifyMessageIntegrity(key: k) == (expected == stored), "MESSAGE-INTEGRITY verdict differs")
            } else {
                invariant(!v.verifyMessageIntegrity(key: k), "MESSAGE-INTEGRITY verified without the attribute")
            }
            if let offset = v.integritySHA256Offset {
                let length = Int(v.bytes.be16(offset + 2))
                let expected = Array(independentMAC(v.bytes, upTo: offset, macLength: length, key: key, sha256: true))
                let stored = Array(v.bytes[(offset + 4)..<(offset + 4 + length)])
                invariant(
                    v.verifyMessageIntegritySHA256(key: k) == (expected == stored),
                    "MESSAGE-INTEGRITY-SHA256 verdict differs")
            } else {
                invariant(!v.verifyMessageIntegritySHA256(key: k), "SHA256 integrity verified without the attribute")
            }
        }
    }
}

/// RFC 8489 §14.5: the HMAC over the header, its length patched to end after the integrity
/// attribute, and the attributes before it; truncated to `macLength`.
func independentMAC(_ bytes: UnsafeRawBufferPointer, upTo offset: Int, macLength: Int, key: [UInt8], sha256: Bool)
    -> ArraySlice<UInt8>
{
    var input = Array(bytes[0..<offset])
    let length = offset + 4 + macLength - stunHeaderSize
    input[2] = UInt8(length >> 8)
    input[3] = UInt8(length & 0xFF)
    let mac = sha256 ? STUNDigest.hmacSHA256(key: key, input) : STUNDigest.hmacSHA1(key: key, input)
    return mac[0..<macLength]
}

// MARK: 3. Round trip through the owned model and the writer

/// The model without FINGERPRINT, whose value depends on the bytes before it.
func withoutFingerprint(_ m: STUNMessage) -> STUNMessage {
    var copy = m
    copy.attributes.removeAll { $0.type == .fingerprint }
    return copy
}

func parse(_ bytes: [UInt8], _ what: String) -> STUNMessage {
    do {
        return try STUNMessage(parsing: bytes)
    } catch {
        fatalError("invariant broken: \(what) does not parse (\(error)): \(hexString(bytes))")
    }
}

func encode(_ m: STUNMessage, fingerprint: Bool, _ what: String) -> [UInt8] {
    do {
        return try m.encoded(fingerprint: fingerprint)
    } catch {
        fatalError("invariant broken: \(what) does not encode (\(error)): \(m)")
    }
}

func checkRoundTrip(_ model: STUNMessage, hadFingerprint: Bool) -> [UInt8] {
    let first = withoutFingerprint(model)
    let bytes = encode(first, fingerprint: hadFingerprint, "the parsed message")
    let again = parse(bytes, "the re-encoded message")
    invariant(again.type == model.type, "type \(model.type) became \(again.type)")
    invariant(again.transactionID == model.transactionID, "transaction ID changed")
    invariant(
        (again.first(.fingerprint) != nil) == hadFingerprint, "FINGERPRINT presence changed")
    let second = withoutFingerprint(again)
    invariant(
        second.attributes == first.attributes, "attributes changed:\n  \(first.attributes)\n  \(second.attributes)")
    let bytesAgain = encode(second, fingerprint: hadFingerprint, "the re-parsed message")
    invariant(bytesAgain == bytes, "encoding is not a fixed point")
    return bytes
}

// MARK: 4. Signing, and single-bit flips

func checkSigning(_ model: STUNMessage, encodedSize: Int, seed: UInt64) {
    var plain = model
    plain.attributes.removeAll {
        $0.type == .messageIntegrity || $0.type == .messageIntegritySHA256 || $0.type == .fingerprint
    }
    var g = SplitMix64(seed: seed)
    let key = keys[Int(g.next() % 2)]
    let truncated = 16 + 4 * Int(g.next() % 5)
    // Room for MESSAGE-INTEGRITY (24), -SHA256 (4 + truncated) and FINGERPRINT (8).
    guard encodedSize + 24 + 4 + truncated + 8 <= stunHeaderSize + 0xFFFF else { return }

    let signed: [UInt8]
    do {
        signed = try plain.encoded(key: key, integrity: [.sha1, .sha256(length: truncated)], fingerprint: true)
    } catch {
        fatalError("invariant broken: signing failed (\(error))")
    }
    signed.withUnsafeBytes { b in
        let v: STUNMessageView
        do {
            v = try STUNMessageView(validating: b)
        } catch {
            fatalError("invariant broken: a signed message does not parse (\(error))")
        }
        key.withUnsafeBytes { k in
            invariant(v.verifyMessageIntegrity(key: k), "MESSAGE-INTEGRITY does not verify under its key")
            invariant(v.verifyMessageIntegritySHA256(key: k), "MESSAGE-INTEGRITY-SHA256 does not verify under its key")
        }
        otherKey.withUnsafeBytes { k in
            invariant(!v.verifyMessageIntegrity(key: k), "MESSAGE-INTEGRITY verifies under another key")
            invariant(!v.verifyMessageIntegritySHA256(key: k), "MESSAGE-INTEGRITY-SHA256 verifies under another key")
        }
        var reparsed = STUNMessage(v)
        reparsed.attributes.removeAll {
            $0.type == .messageIntegrity || $0.type == .messageIntegritySHA256 || $0.type == .fingerprint
        }
        invariant(reparsed.attributes == plain.attributes, "signing changed the attributes")
    }

    // Any one bit flipped in a fingerprinted message: CRC-32 catches every single-bit error, so
    // the message must not parse with its FINGERPRINT (a flip in a length or type field may
    // swallow or rename that attribute; then there is none to check).
    var flipped = signed
    let bit = Int(g.next() % UInt64(signed.count * 8))
    flipped[bit / 8] ^= 1 << (bit % 8)
    flipped.withUnsafeBytes { b in
        guard let v = try? STUNMessageView(validating: b) else { return }
        invariant(v.fingerprintOffset == nil, "a message with bit \(bit) flipped parses with its FINGERPRINT")
    }

    // Without FINGERPRINT: one bit flipped before the end of an integrity attribute.
    let unfingerprinted: [UInt8]
    do {
        unfingerprinted = try plain.encoded(key: key, integrity: [.sha1, .sha256(length: truncated)])
    } catch {
        fatalError("invariant broken: signing failed (\(error))")
    }
    let miEnd = unfingerprinted.count - (4 + truncated)
    for (end, sha256) in [(miEnd, false), (unfingerprinted.count, true)] {
        var copy = unfingerprinted
        let bit = Int(g.next() % UInt64(end * 8))
        copy[bit / 8] ^= 1 << (bit % 8)
        copy.withUnsafeBytes { b in
            guard let v = try? STUNMessageView(validating: b) else { return }
            let verified = key.withUnsafeBytes {
                sha256 ? v.verifyMessageIntegritySHA256(key: $0) : v.verifyMessageIntegrity(key: $0)
            }
            invariant(!verified, "integrity (sha256: \(sha256)) verifies with bit \(bit) flipped")
        }
    }
}

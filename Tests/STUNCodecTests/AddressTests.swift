import STUNCodec
import Testing

@Suite("Addresses")
struct AddressTests {
    @Test(
        "IPv4 parsing and formatting",
        arguments: [
            ("0.0.0.0", UInt32(0)), ("127.0.0.1", 0x7F00_0001), ("192.0.2.1", 0xC000_0201),
            ("255.255.255.255", 0xFFFF_FFFF), ("10.0.0.10", 0x0A00_000A),
        ])
    func ipv4(text: String, value: UInt32) {
        #expect(IPAddress(text) == .v4(value))
        #expect(IPAddress.v4(value).description == text)
        #expect(IPAddress(text)?.family == .ipv4)
        #expect(
            IPAddress(text)?.bytes == [
                UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF),
            ])
    }

    /// Inputs and their RFC 5952 canonical text.
    @Test(
        "IPv6 parsing and RFC 5952 formatting",
        arguments: [
            ("::", "::"),
            ("::1", "::1"),
            ("0:0:0:0:0:0:0:1", "::1"),
            ("1::", "1::"),
            ("2001:db8::1", "2001:db8::1"),
            ("2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),  // first of equal runs
            ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"),  // longest run
            ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),  // a single zero group stays
            ("2001:db8:1234:5678:11:2233:4455:6677", "2001:db8:1234:5678:11:2233:4455:6677"),
            ("fe80::abcd:ef01", "fe80::abcd:ef01"),
            ("1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"),
            ("::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("::ffff:1.2.3.4", "::ffff:1.2.3.4"),  // RFC 5952 §5: mixed notation for IPv4-mapped
            ("::FFFF:7f00:1", "::ffff:127.0.0.1"),
            ("64:ff9b::192.0.2.33", "64:ff9b::192.0.2.33"),  // RFC 6052 well-known prefix
            ("::1.2.3.4", "::102:304"),  // IPv4-compatible (deprecated): no special form
            ("1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304"),
        ])
    func ipv6(text: String, canonical: String) throws {
        let address = try #require(IPAddress(text))
        #expect(address.family == .ipv6)
        #expect(address.description == canonical)
        #expect(IPAddress(canonical) == address)
        #expect(address.bytes.count == 16)
        #expect(IPAddress(bytes: address.bytes) == address)
    }

    @Test("IPv4-mapped text is the expected 128 bits")
    func mappedValue() {
        #expect(IPAddress("::ffff:1.2.3.4") == .v6(0, 0x0000_FFFF_0102_0304))
        #expect(IPAddress("::ffff:1.2.3.4") != IPAddress("1.2.3.4"))
        #expect(IPAddress("2001:db8:1234:5678:11:2233:4455:6677") == .v6(0x2001_0db8_1234_5678, 0x0011_2233_4455_6677))
    }

    @Test(
        "malformed addresses are rejected",
        arguments: [
            "", " ", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.-1", "01.2.3.4", "1.2.3.04", "1..3.4", "1.2.3.4 ",
            " 1.2.3.4", "+1.2.3.4", "1.2.3.+4", "0x1.2.3.4", "١.2.3.4", "1.2.3.4/24", ":", ":::", "::::", "1::2::3",
            ":1:2:3:4:5:6:7", "1:2:3:4:5:6:7:", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7::8", "1:2:3:4:5:6:7",
            "12345::", "g::1", "::g", "+1::", "::+1", "::-1", "1::-0", "1.2.3.4::", "::1.2.3", "::1.2.3.256",
            "::ffff:1.2.3.4.5", "fe80::1%eth0", "[::1", "::1]", "[[::1]]", "2001:db8::1 ", "1:2:3:4:5:6:7:8:1.2.3.4",
        ])
    func rejected(text: String) {
        #expect(IPAddress(text) == nil)
    }

    @Test("bytes initializer")
    func fromBytes() {
        #expect(IPAddress(bytes: [192, 0, 2, 1]) == .v4(0xC000_0201))
        #expect(IPAddress(bytes: [1, 2, 3]) == nil)
        #expect(IPAddress(bytes: [UInt8](repeating: 0, count: 15)) == nil)
        #expect(IPAddress(bytes: [UInt8](repeating: 0, count: 16)) == .anyIPv6)
    }

    @Test(
        "transport address parsing and formatting",
        arguments: [
            ("1.2.3.4:3478", "1.2.3.4", UInt16(3478)), ("[::1]:5349", "::1", 5349),
            ("[2001:db8::1]:0", "2001:db8::1", 0), ("0.0.0.0:65535", "0.0.0.0", 65535),
            ("[::ffff:127.0.0.1]:80", "::ffff:127.0.0.1", 80),
        ])
    func transportAddress(text: String, ip: String, port: UInt16) throws {
        let address = try #require(TransportAddress(text))
        #expect(address.ip == IPAddress(ip))
        #expect(address.port == port)
        #expect(address.description == text)
        #expect(TransportAddress(address.description) == address)
    }

    @Test(
        "malformed transport addresses are rejected",
        arguments: [
            "", "1.2.3.4", "1.2.3.4:", "1.2.3.4:65536", "1.2.3.4:-1", "1.2.3.4:+80", "1.2.3.4: 80", "1.2.3.4:8 0",
            "::1:80", "[::1]", "[::1]80", "[::1]:", "[1.2.3.4]:80", "[::1:80", "2001:db8::1:3478", ":80", "[]:80",
            "1.2.3.4:0x50",
        ])
    func transportRejected(text: String) {
        #expect(TransportAddress(text) == nil)
    }

    static let roundTripAddresses: [TransportAddress] = [
        TransportAddress(ip: .v4(0xC000_0201), port: 32853),
        TransportAddress(ip: .v4(0), port: 0),
        TransportAddress(ip: .v4(0xFFFF_FFFF), port: 0xFFFF),
        TransportAddress(ip: .v6(0x2001_0db8_1234_5678, 0x0011_2233_4455_6677), port: 32853),
        TransportAddress(ip: .v6(0, 1), port: 1),
        TransportAddress(ip: .v6(~0, ~0), port: 0xFFFF),
    ]

    @Test("XOR and plain address encodings round-trip", arguments: roundTripAddresses)
    func addressCoding(address: TransportAddress) {
        var g = SeededGenerator(seed: UInt64(address.port) &* 31 &+ 7)
        let tid = STUNTransactionID(high: g.next(), low: UInt32(truncatingIfNeeded: g.next()))
        var buffer = [UInt8](repeating: 0xEE, count: 20)
        for xor in [true, false] {
            let n = buffer.withUnsafeMutableBytes {
                AddressCoding.encode(address, xor: xor, transactionID: tid, into: $0.baseAddress!)
            }
            #expect(n == (address.family == .ipv4 ? 8 : 20))
            #expect(buffer[0] == 0)
            #expect(buffer[1] == address.family.rawValue)
            buffer.withUnsafeBytes { raw in
                let value = UnsafeRawBufferPointer(rebasing: raw[0..<n])
                if xor {
                    #expect(AddressCoding.decodeXOR(value, transactionID: tid) == address)
                } else {
                    #expect(AddressCoding.decodePlain(value) == address)
                }
            }
        }
    }

    @Test("XOR encoding matches RFC 5769 bytes")
    func xorMatchesVectors() {
        var buffer = [UInt8](repeating: 0, count: 20)
        let v4 = TransportAddress(ip: .v4(0xC000_0201), port: 32853)
        let n4 = buffer.withUnsafeMutableBytes {
            AddressCoding.encode(v4, xor: true, transactionID: RFC5769.transactionID, into: $0.baseAddress!)
        }
        #expect(Array(buffer[0..<n4]) == hex("00 01 a1 47 e1 12 a6 43"))
        let v6 = TransportAddress(ip: .v6(0x2001_0db8_1234_5678, 0x0011_2233_4455_6677), port: 32853)
        let n6 = buffer.withUnsafeMutableBytes {
            AddressCoding.encode(v6, xor: true, transactionID: RFC5769.transactionID, into: $0.baseAddress!)
        }
        #expect(Array(buffer[0..<n6]) == hex("00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9"))
    }

    @Test("decoders reject a family that does not match the length")
    func decodeMismatch() {
        let bad = hex("00 02 a1 47 e1 12 a6 43")
        bad.withUnsafeBytes { raw in
            #expect(AddressCoding.decodePlain(raw) == nil)
            #expect(AddressCoding.decodeXOR(raw, transactionID: RFC5769.transactionID) == nil)
        }
    }
}

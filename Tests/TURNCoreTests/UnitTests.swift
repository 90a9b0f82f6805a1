import STUNCodec
import TURNCore
import Testing

@Suite("CIDR")
struct CIDRTests {
    @Test("Parsing, host bits cleared, bare addresses are host prefixes")
    func parsing() throws {
        let a = try #require(CIDR("10.1.2.3/8"))
        #expect(a.address == IPAddress("10.0.0.0"))
        #expect(a.prefixLength == 8)
        #expect(a.description == "10.0.0.0/8")
        #expect(CIDR("192.0.2.1")?.prefixLength == 32)
        #expect(CIDR("2001:db8::1")?.prefixLength == 128)
        #expect(CIDR("2001:db8::1/32")?.description == "2001:db8::/32")
        #expect(CIDR("fe80::1/10")?.address == IPAddress("fe80::"))
        #expect(CIDR("0.0.0.0/0")?.prefixLength == 0)
        #expect(CIDR("::/0")?.prefixLength == 0)
    }

    @Test(
        "Bad prefixes are refused",
        arguments: ["10.0.0.0/33", "::/129", "10.0.0.0/-1", "nonsense", "10.0.0.0/x", "", "/8"])
    func bad(text: String) {
        #expect(CIDR(text) == nil)
    }

    @Test("Containment at every boundary")
    func contains() {
        let v4 = CIDR("192.168.0.0/16")!
        #expect(v4.contains(IPAddress("192.168.0.0")!))
        #expect(v4.contains(IPAddress("192.168.255.255")!))
        #expect(!v4.contains(IPAddress("192.169.0.0")!))
        #expect(!v4.contains(IPAddress("192.167.255.255")!))
        #expect(!v4.contains(IPAddress("::ffff:192.168.0.1")!))  // families must match
        #expect(CIDR("0.0.0.0/0")!.contains(IPAddress("255.255.255.255")!))
        #expect(CIDR("1.2.3.4/32")!.contains(IPAddress("1.2.3.4")!))
        #expect(!CIDR("1.2.3.4/32")!.contains(IPAddress("1.2.3.5")!))
        let v6 = CIDR("2001:db8::/32")!
        #expect(v6.contains(IPAddress("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")!))
        #expect(!v6.contains(IPAddress("2001:db9::")!))
        let long = CIDR("2001:db8::ff00/120")!
        #expect(long.contains(IPAddress("2001:db8::ffff")!))
        #expect(!long.contains(IPAddress("2001:db8::1:ff00")!))
        let mid = CIDR("2001:db8:0:0:8000::/65")!
        #expect(mid.contains(IPAddress("2001:db8::ffff:0:0:1")!))
        #expect(!mid.contains(IPAddress("2001:db8::7fff:0:0:1")!))
        #expect(CIDR("::/0")!.contains(IPAddress("ffff::")!))
        #expect(CIDR("::1/128")!.contains(.loopbackIPv6))
        #expect(!CIDR("::1/128")!.contains(IPAddress("::2")!))
    }
}

@Suite("PeerPolicy")
struct PeerPolicyTests {
    static let denied = [
        "127.0.0.1", "127.255.255.254", "::ffff:127.0.0.1", "0.0.0.0", "0.1.2.3", "::", "::1", "64:ff9b::7f00:1",
        "64:ff9b::a00:1", "2002:7f00:1::", "2002:a00:1::", "169.254.169.254", "10.1.2.3", "172.16.5.4",
        "172.31.255.255",
        "192.168.1.1", "100.64.0.1", "192.0.0.8", "192.0.2.1", "198.18.0.1", "198.51.100.7", "203.0.113.9",
        "224.0.0.251", "239.255.255.250", "240.0.0.1", "255.255.255.255", "fe80::1", "fc00::1", "fd12:3456::1",
        "ff02::1", "2001:db8::1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::10.0.0.1", "::ffff:8.8.8.8",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2", "fec0::1", "100::1",
    ]

    @Test("Denied by default", arguments: denied)
    func deniedByDefault(text: String) throws {
        let ip = try #require(IPAddress(text))
        #expect(!PeerPolicy().allows(ip))
        #expect(PeerPolicy().verdict(for: ip) == .deniedByDefault)
    }

    static let allowed = [
        "8.8.8.8", "1.1.1.1", "172.32.0.1", "172.15.255.255", "100.128.0.1", "169.255.0.1", "11.0.0.1",
        "2001:4860:4860::8888", "2606:4700::1111", "2003::1",
    ]

    @Test("Public addresses are allowed", arguments: allowed)
    func publicAllowed(text: String) throws {
        #expect(PeerPolicy().allows(try #require(IPAddress(text))))
    }

    @Test("The allow list exempts prefixes; embedded forms of an allowed IPv4 still need their IPv6 form allowed")
    func allowList() {
        let p = PeerPolicy(allowed: [CIDR("127.0.0.0/8")!])
        #expect(p.allows(IPAddress("127.0.0.1")!))
        #expect(p.allows(IPAddress("127.1.2.3")!))
        #expect(!p.allows(IPAddress("::ffff:127.0.0.1")!))
        #expect(!p.allows(IPAddress("10.0.0.1")!))
        #expect(!p.allows(IPAddress("::1")!))
        let v6 = PeerPolicy(allowed: [CIDR("::1/128")!])
        #expect(v6.allows(.loopbackIPv6))
        #expect(!v6.allows(.loopbackIPv4))
    }

    @Test("An allowed IPv6 form that embeds a denied IPv4 stays denied (CVE-2020-26262)")
    func embeddedBypass() {
        // The operator allows all of 2002::/16 and the NAT64 prefix, but the embedded IPv4 is loopback.
        let p = PeerPolicy(allowed: [CIDR("2002::/16")!, CIDR("64:ff9b::/96")!, CIDR("::ffff:0:0/96")!])
        #expect(!p.allows(IPAddress("2002:7f00:1::")!))
        #expect(!p.allows(IPAddress("64:ff9b::127.0.0.1")!))
        #expect(!p.allows(IPAddress("::ffff:127.0.0.1")!))
        #expect(p.allows(IPAddress("2002:808:808::")!))
        #expect(p.allows(IPAddress("64:ff9b::8.8.8.8")!))
    }

    @Test("The deny list always wins, in every embedded form")
    func denyList() {
        let p = PeerPolicy(allowed: [CIDR("0.0.0.0/0")!], denied: [CIDR("8.8.8.0/24")!])
        #expect(p.verdict(for: IPAddress("8.8.8.8")!) == .deniedByOperator)
        #expect(p.verdict(for: IPAddress("::ffff:8.8.8.8")!) == .deniedByOperator)
        #expect(p.verdict(for: IPAddress("64:ff9b::8.8.8.8")!) == .deniedByOperator)
        #expect(p.verdict(for: IPAddress("2002:808:808::1")!) == .deniedByOperator)
        #expect(p.allows(IPAddress("8.8.4.4")!))
        #expect(p.allows(IPAddress("127.0.0.1")!))
    }

    @Test("Embedded IPv4 extraction")
    func embedded() {
        func e(_ s: String) -> IPAddress? { PeerPolicy.embeddedIPv4(IPAddress(s)!).map { .v4($0) } }
        #expect(e("::ffff:1.2.3.4") == IPAddress("1.2.3.4"))
        #expect(e("::1.2.3.4") == IPAddress("1.2.3.4"))
        #expect(e("64:ff9b::1.2.3.4") == IPAddress("1.2.3.4"))
        #expect(e("2002:102:304::") == IPAddress("1.2.3.4"))
        // Teredo: the client IPv4 is the last 32 bits inverted.
        #expect(e("2001:0:4136:e378:8000:63bf:3fff:fdd2") == IPAddress("192.0.2.45"))
        #expect(e("::1") == nil)
        #expect(e("::") == nil)
        #expect(e("2001:db8::1") == nil)
        #expect(e("1.2.3.4") == nil)
        #expect(PeerPolicy.forms(of: IPAddress("8.8.8.8")!) == [IPAddress("8.8.8.8")!])
    }

    @Test("Client ban list matches embedded forms")
    func banList() {
        let b = ClientBanList([CIDR("203.0.113.0/24")!])
        #expect(b.isBanned(IPAddress("203.0.113.7")!))
        #expect(b.isBanned(IPAddress("::ffff:203.0.113.7")!))
        #expect(!b.isBanned(IPAddress("203.0.114.7")!))
        #expect(!ClientBanList().isBanned(IPAddress("203.0.113.7")!))
    }
}

@Suite("Base64 and Hex")
struct EncodingTests {
    @Test(
        "RFC 4648 §10 vectors",
        arguments: [
            ("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ])
    func base64(plain: String, encoded: String) {
        #expect(Base64.encode(Array(plain.utf8)) == encoded)
        #expect(Base64.decode(encoded) == Array(plain.utf8))
    }

    @Test("Base64 round-trips every byte value and decodes unpadded text")
    func base64Bytes() {
        let all = (0...255).map { UInt8($0) }
        #expect(Base64.decode(Base64.encode(all)) == all)
        #expect(Base64.encode([0xFB, 0xFF, 0xBF]) == "+/+/")
        #expect(Base64.decode("Zm9vYg") == Array("foob".utf8))
        #expect(Base64.decode("Zm9vYmE") == Array("fooba".utf8))
    }

    @Test(
        "Base64 refuses characters outside the alphabet and impossible lengths",
        arguments: ["Zm9v!", "Zm 9v", "Z", "Zm9vY", "-_-_"])
    func base64Bad(text: String) {
        #expect(Base64.decode(text) == nil)
    }

    @Test("Hex encodes lower case and decodes either case")
    func hex() {
        #expect(Hex.encode([0x00, 0x7F, 0xAB, 0xFF]) == "007fabff")
        #expect(Hex.encode([]) == "")
        #expect(Hex.decode("007FABff") == [0x00, 0x7F, 0xAB, 0xFF])
        #expect(Hex.decode("") == [])
        let all = (0...255).map { UInt8($0) }
        #expect(Hex.decode(Hex.encode(all)) == all)
    }

    @Test("Hex refuses odd lengths and non-hex characters", arguments: ["abc", "0g", "zz", "0x12", " 1"])
    func hexBad(text: String) {
        #expect(Hex.decode(text) == nil)
    }

    @Test("MD5(\"user:realm:pass\") is the RFC 8489 example key")
    func md5Example() {
        #expect(Hex.encode(md5Key("user", "realm", "pass")) == "8493fbc53ba582fb4c044c456bdc40eb")
    }
}

@Suite("NonceIssuer")
struct NonceTests {
    let client = TransportAddress("203.0.113.5:40000")!
    let secret = [UInt8](repeating: 7, count: 32)

    @Test("Cookies per feature set (erratum 6290 bit order)")
    func cookies() {
        #expect(NonceIssuer.cookie([]) == "obMatJos2AAAA")
        #expect(NonceIssuer.cookie(.passwordAlgorithms) == "obMatJos2AAAB")
        #expect(NonceIssuer.cookie(.usernameAnonymity) == "obMatJos2AAAC")
        #expect(NonceIssuer.cookie([.passwordAlgorithms, .usernameAnonymity]) == "obMatJos2AAAD")
        #expect(NonceIssuer.features(of: "obMatJos2AAAD0000") == [.passwordAlgorithms, .usernameAnonymity])
        #expect(NonceIssuer.features(of: "plain-nonce") == nil)
    }

    @Test("A fresh nonce is valid for its client and carries its features")
    func valid() {
        let n = NonceIssuer(secret: secret, lifetime: 600, features: .passwordAlgorithms)
        let nonce = n.issue(for: client, now: 1000)
        #expect(nonce.hasPrefix("obMatJos2AAAB"))
        #expect(nonce.utf8.count == 28)  // cookie 13 + 15 characters of timestamp, salt and MAC
        #expect(n.check(nonce, from: client, now: 1000) == .valid(.passwordAlgorithms))
        #expect(n.check(nonce, from: client, now: 1600) == .valid(.passwordAlgorithms))
        #expect(n.check(nonce, from: client, now: 1601) == .stale(.passwordAlgorithms))
    }

    @Test("A nonce is invalid from another address, under another secret, or altered; valid from another port")
    func invalid() {
        let n = NonceIssuer(secret: secret, lifetime: 600, features: .passwordAlgorithms)
        let nonce = n.issue(for: client, now: 1000)
        #expect(n.check(nonce, from: TransportAddress("203.0.113.6:40000")!, now: 1000) == .invalid)
        #expect(n.check(nonce, from: TransportAddress("203.0.113.5:40001")!, now: 1000) == .valid(.passwordAlgorithms))
        let other = NonceIssuer(secret: [UInt8](repeating: 8, count: 32), lifetime: 600, features: .passwordAlgorithms)
        #expect(other.check(nonce, from: client, now: 1000) == .invalid)
        // Changing the features (bid-down) or the timestamp breaks the MAC.
        var bytes = Array(nonce.utf8)
        bytes[12] = UInt8(ascii: "A")
        #expect(n.check(String(decoding: bytes, as: UTF8.self), from: client, now: 1000) == .invalid)
        bytes = Array(nonce.utf8)
        bytes[20] = bytes[20] == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
        #expect(n.check(String(decoding: bytes, as: UTF8.self), from: client, now: 1000) == .invalid)
        #expect(n.check("", from: client, now: 1000) == .invalid)
        #expect(n.check(String(nonce.dropLast()), from: client, now: 1000) == .invalid)
        #expect(n.check(nonce + "x", from: client, now: 1000) == .invalid)
    }

    @Test("Every nonce issued is distinct, even to one client in one second")
    func distinct() {
        let n = NonceIssuer(secret: secret, lifetime: 600, features: [])
        let a = n.issue(for: client, now: 1000)
        #expect(a != n.issue(for: TransportAddress("203.0.113.5:40001")!, now: 1000))
        #expect(a != n.issue(for: client, now: 1001))
        #expect(a != n.issue(for: client, now: 1000))
    }

    @Test("Timestamps wrap around 2^32 seconds without becoming stale")
    func wrap() {
        let n = NonceIssuer(secret: secret, lifetime: 600, features: [])
        let nonce = n.issue(for: client, now: 0xFFFF_FFF0)
        #expect(n.check(nonce, from: client, now: 0x1_0000_0010) == .valid([]))
    }
}

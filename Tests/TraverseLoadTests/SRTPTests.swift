import STUNCodec
import Testing

@testable import TraverseLoad

@Suite struct SRTPTests {
    let key = (0..<30).map { UInt8($0 &* 7 &+ 3) }

    func packet(_ seq: UInt64, length: Int = 150) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: length + SRTPSession.maxTrailer)
        buffer.withUnsafeMutableBytes {
            RTPProbe.write(
                to: $0.baseAddress!, length: length, payloadType: 111, ssrc: 0x0100, sequence: seq, rtpTimestamp: 960,
                sendTime: 123_456_789, step: 3, kind: 0, marker: false)
        }
        return buffer
    }

    @Test func roundTripRecoversThePacket() throws {
        let tx = try SRTPSession(key: key, inbound: false)
        let rx = try SRTPSession(key: key, inbound: true)
        var p = packet(7)
        let plain = Array(p[0..<150])
        let n = try #require(p.withUnsafeMutableBytes { tx.protect($0.baseAddress!, length: 150) })
        #expect(n == 150 + SRTPSession.tagLength)
        #expect(Array(p[12..<150]) != Array(plain[12..<150]), "payload is encrypted")
        let result = p.withUnsafeMutableBytes { rx.unprotect($0.baseAddress!, length: n) }
        #expect(result == .ok(length: 150))
        #expect(Array(p[0..<150]) == plain)
        let probe = try #require(p.withUnsafeBytes { RTPProbe.read($0.baseAddress!, length: 150) })
        #expect(probe == RTPProbe.Probe(ssrc: 0x0100, sequence: 7, sendTime: 123_456_789, step: 3, kind: 0))
    }

    @Test func flippedByteIsAnAuthenticationFailure() throws {
        let tx = try SRTPSession(key: key, inbound: false)
        let rx = try SRTPSession(key: key, inbound: true)
        for (i, offset) in [20, 2, 155].enumerated() {
            var p = packet(UInt64(i))
            let n = try #require(p.withUnsafeMutableBytes { tx.protect($0.baseAddress!, length: 150) })
            p[offset] ^= 0x01
            #expect(p.withUnsafeMutableBytes { rx.unprotect($0.baseAddress!, length: n) } == .authenticationFailure)
        }
    }

    @Test func duplicateIsAReplayAndAWrongKeyFails() throws {
        let tx = try SRTPSession(key: key, inbound: false)
        let rx = try SRTPSession(key: key, inbound: true)
        let other = try SRTPSession(key: [UInt8](repeating: 9, count: 30), inbound: true)
        var p = packet(1)
        let n = try #require(p.withUnsafeMutableBytes { tx.protect($0.baseAddress!, length: 150) })
        var copy = p
        var copy2 = p
        #expect(p.withUnsafeMutableBytes { rx.unprotect($0.baseAddress!, length: n) } == .ok(length: 150))
        #expect(copy.withUnsafeMutableBytes { rx.unprotect($0.baseAddress!, length: n) } == .replay)
        #expect(copy2.withUnsafeMutableBytes { other.unprotect($0.baseAddress!, length: n) } == .authenticationFailure)
    }
}

@Suite struct CredentialTests {
    // Computed with Python: base64.b64encode(hmac.new(b"north-secret", b"1700000000:alice", hashlib.sha1).digest())
    @Test func restPasswordMatchesAKnownValue() {
        let c = TURNCredentials(restSecret: "north-secret", userID: "alice", expiry: 1_700_000_000)
        #expect(c.username == "1700000000:alice")
        #expect(c.password == "g+jb180fcj+xlpA/2mP60OdIgU0=")
    }

    @Test func perClientRESTUsernames() {
        let source = CredentialSource.restSecret(secret: "s", userID: "load", ttl: 60, sameUser: false)
        #expect(source.credentials(client: 3, now: 1000).username == "1060:load-3")
        let same = CredentialSource.restSecret(secret: "s", userID: "load", ttl: 60, sameUser: true)
        #expect(same.credentials(client: 3, now: 1000).username == "1060:load")
    }

    // hashlib.md5(b"alice:traverse:wonderland").hexdigest()
    @Test func longTermKeyIsMD5OfUserRealmPassword() {
        let key = TURNCredentials(username: "alice", password: "wonderland").longTermKey(realm: "traverse")
        let hex = key.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }
        #expect(hex.joined() == "4a89d9150c78db6954ae95791953d233")
    }

    @Test func base64Vectors() {
        let vectors = ["": "", "f": "Zg==", "fo": "Zm8=", "foo": "Zm9v", "foob": "Zm9vYg==", "fooba": "Zm9vYmE="]
        for (plain, encoded) in vectors { #expect(Base64.encode(Array(plain.utf8)) == encoded) }
    }
}

@Suite struct URLTests {
    @Test func parsesTURNURLs() throws {
        #expect(try TURNURL(parsing: "turn:127.0.0.1:3478?transport=udp").server == TransportAddress("127.0.0.1:3478"))
        #expect(try TURNURL(parsing: "turn:[::1]:5000").server == TransportAddress("[::1]:5000"))
        #expect(try TURNURL(parsing: "turn:localhost").server == TransportAddress("127.0.0.1:3478"))
        #expect(throws: TURNURL.ParseError.unsupportedTransport("tcp")) {
            try TURNURL(parsing: "turn:127.0.0.1:3478?transport=tcp")
        }
        #expect(throws: TURNURL.ParseError.self) { try TURNURL(parsing: "stun:127.0.0.1") }
    }

    @Test func refusesNonLoopbackUnlessAllowed() throws {
        var c = LoadConfiguration(
            url: try TURNURL(parsing: "turn:192.0.2.1:3478"), credentials: .staticUser(username: "a", password: "b"),
            duration: 1)
        #expect(throws: LoadConfiguration.Invalid.self) { try c.validate() }
        c.allowNonLoopback = true
        try c.validate()
        for ok in ["127.0.0.1", "127.9.8.7", "::1", "::ffff:127.0.0.1"] { #expect(IPAddress(ok)!.isLoopback) }
        for bad in ["128.0.0.1", "::2", "10.0.0.1", "::ffff:10.0.0.1"] { #expect(!IPAddress(bad)!.isLoopback) }
    }

    @Test func boundsAreEnforced() throws {
        let url = try TURNURL(parsing: "turn:127.0.0.1:3478")
        var c = LoadConfiguration(url: url, credentials: .staticUser(username: "a", password: "b"), duration: 100_000)
        #expect(throws: LoadConfiguration.Invalid.self) { try c.validate() }
        c.duration = 5
        c.calls = LoadConfiguration.maxCalls + 1
        #expect(throws: LoadConfiguration.Invalid.self) { try c.validate() }
    }
}

import CSRTPCrypto
import STUNCodec
import Testing

@testable import TraverseLoad

/// The OpenSSL AES-ICM and HMAC-SHA1 that `SRTPSession.initialise()` registers into libsrtp in
/// place of Debian's NSS ones: accepted by libsrtp's self tests, and byte-for-byte what stock
/// libsrtp produces.
@Suite struct SRTPCryptoTests {
    /// RFC 3711 Appendix B.3's master key and master salt.
    let key = Hex.decode("E1F97A0D3E018BE0D64FA32C06DE4139" + "0EC675AD498AFEEBB6960B3AABE6")!

    /// An RTP packet of `length` bytes (at least the 12-byte header) with `SRTPSession.maxTrailer`
    /// spare bytes: V=2, payload type 111, sequence `seq`, timestamp 0xDECAFBAD, SSRC 0xCAFEBABE,
    /// payload bytes 0, 1, 2, …
    func packet(seq: UInt16, length: Int) -> [UInt8] {
        var p = [UInt8](repeating: 0, count: length + SRTPSession.maxTrailer)
        let header: [UInt8] = [
            0x80, 0x6F, UInt8(seq >> 8), UInt8(seq & 0xFF), 0xDE, 0xCA, 0xFB, 0xAD, 0xCA, 0xFE, 0xBA, 0xBE,
        ]
        p.replaceSubrange(0..<12, with: header)
        for i in 12..<length { p[i] = UInt8(truncatingIfNeeded: i - 12) }
        return p
    }

    @Test func registrationPassesLibsrtpSelfTests() throws {
        // The first call registers (and throws if a self test failed); registering again re-runs
        // libsrtp's self tests of all three replacements, against the data of the one in place.
        try SRTPSession.initialise()
        #expect(traverse_srtp_use_openssl() == 0)
    }

    @Test func roundTripAtManySizes() throws {
        let tx = try SRTPSession(key: key, inbound: false)
        let rx = try SRTPSession(key: key, inbound: true)
        let sizes = [12 + 1, 12 + 2, 12 + 15, 12 + 16, 12 + 17, 44, 100, 172, 200, 1024, 1199, 1200]
        for (i, size) in sizes.enumerated() {
            var p = packet(seq: UInt16(100 + i), length: size)
            let plain = Array(p[0..<size])
            let n = try #require(p.withUnsafeMutableBytes { tx.protect($0.baseAddress!, length: size) })
            #expect(n == size + SRTPSession.tagLength)
            #expect(Array(p[0..<12]) == Array(plain[0..<12]), "the header stays in the clear")
            #expect(Array(p[12..<size]) != Array(plain[12..<size]), "the payload is encrypted (\(size) bytes)")
            #expect(p.withUnsafeMutableBytes { rx.unprotect($0.baseAddress!, length: n) } == .ok(length: size))
            #expect(Array(p[0..<size]) == plain)
        }
    }

    /// Expected bytes produced by stock libsrtp2 2.5.0 (Debian, NSS backend) before any replacement:
    /// a throwaway C program linking -lsrtp2 called srtp_init, srtp_create with
    /// srtp_crypto_policy_set_rtp_default / _rtcp_default, ssrc_any_outbound and the 30-byte key
    /// above, then srtp_protect on the packets `packet(seq: 0x1234, length: 44)` and
    /// `packet(seq: 0x1235, length: 44)` in that order, and printed the results in hex.
    @Test func protectMatchesStockLibsrtp() throws {
        let expected = [
            "806f1234decafbadcafebabe" + "e5ff75e44837d5742f0673b5333b81a68f0181f1a158b29c49be2d2fb3729321"
                + "e6f01304a17a52c49577",
            "806f1235decafbadcafebabe" + "ba933651fe6d4d9a5b7c864965d846440fdfa4278cc28108860309f8f3532051"
                + "1f2c39cc2c8d7ba4a2ca",
        ]
        let tx = try SRTPSession(key: key, inbound: false)
        let rx = try SRTPSession(key: key, inbound: true)
        for (i, hex) in expected.enumerated() {
            var p = packet(seq: 0x1234 + UInt16(i), length: 44)
            let n = try #require(p.withUnsafeMutableBytes { tx.protect($0.baseAddress!, length: 44) })
            #expect(n == 54)
            #expect(Hex.encode(Array(p[0..<n])) == hex)
            #expect(p.withUnsafeMutableBytes { rx.unprotect($0.baseAddress!, length: n) } == .ok(length: 44))
            #expect(Array(p[0..<44]) == Array(packet(seq: 0x1234 + UInt16(i), length: 44)[0..<44]))
        }
    }

    @Test func anyFlippedByteIsAnAuthenticationFailure() throws {
        let tx = try SRTPSession(key: key, inbound: false)
        let rx = try SRTPSession(key: key, inbound: true)
        // The header (authenticated, not encrypted), the payload, and the tag itself.
        for (i, offset) in [1, 11, 12, 100, 199, 200, 209].enumerated() {
            var p = packet(seq: UInt16(500 + i), length: 200)
            let n = try #require(p.withUnsafeMutableBytes { tx.protect($0.baseAddress!, length: 200) })
            p[offset] ^= 0x80
            #expect(p.withUnsafeMutableBytes { rx.unprotect($0.baseAddress!, length: n) } == .authenticationFailure)
        }
        // Untouched packets still pass: the failures left the receiver's state alone.
        for i in 0..<2 {
            var p = packet(seq: UInt16(600 + i), length: 200)
            let n = try #require(p.withUnsafeMutableBytes { tx.protect($0.baseAddress!, length: 200) })
            #expect(p.withUnsafeMutableBytes { rx.unprotect($0.baseAddress!, length: n) } == .ok(length: 200))
        }
    }
}

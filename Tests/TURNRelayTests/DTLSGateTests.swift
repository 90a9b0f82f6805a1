import COpenSSL
import Glibc
import STUNCodec
import Synchronization
import Testing

@testable import TURNRelay

/// A DTLS 1.2 ClientHello record (RFC 6347 §4.2.2) carrying `cookie` (message 1 when it has one,
/// as a client's second hello is).
func dtlsClientHello(cookie: [UInt8] = []) -> [UInt8] {
    let suites: [UInt16] = [0xC02B, 0xC02F, 0x009C, 0x002F]
    func be16(_ v: Int) -> [UInt8] { [UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
    func be24(_ v: Int) -> [UInt8] { [UInt8(v >> 16 & 0xFF)] + be16(v) }
    let extensions =
        be16(0x000A) + be16(6) + be16(4) + be16(0x001D) + be16(0x0017)  // supported groups
        + be16(0x000D) + be16(4) + be16(2) + be16(0x0403)  // signature algorithms
    var body: [UInt8] = [0xFE, 0xFD] + (0..<32).map { _ in UInt8.random(in: 0...255) } + [0]
    body += [UInt8(cookie.count)] + cookie
    body += be16(2 * suites.count) + suites.flatMap { be16(Int($0)) } + [1, 0]
    body += be16(extensions.count) + extensions
    let handshake = [1] + be24(body.count) + be16(cookie.isEmpty ? 0 : 1) + be24(0) + be24(body.count) + body
    return [22, 0xFE, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0] + be16(handshake.count) + handshake
}

@Suite("DTLS records") struct DTLSRecordTests {
    @Test func clientHelloIsRecognisedAndOthersAreNot() {
        let hello = dtlsClientHello()
        hello.withUnsafeBytes { #expect(DTLSRecord.startsWithClientHello($0)) }
        var wrongType = hello
        wrongType[0] = 23
        wrongType.withUnsafeBytes { #expect(!DTLSRecord.startsWithClientHello($0)) }
        var laterEpoch = hello
        laterEpoch[4] = 1
        laterEpoch.withUnsafeBytes { #expect(!DTLSRecord.startsWithClientHello($0)) }
        var tlsVersion = hello
        tlsVersion[1] = 3
        tlsVersion.withUnsafeBytes { #expect(!DTLSRecord.startsWithClientHello($0)) }
        // A record length past the datagram, and every truncation.
        var long = hello
        long[11] = 0xFF
        long.withUnsafeBytes { #expect(!DTLSRecord.startsWithClientHello($0)) }
        for n in 0..<25 { Array(hello[0..<n]).withUnsafeBytes { #expect(!DTLSRecord.startsWithClientHello($0)) } }
    }

    @Test func recordsArePackedIntoDatagramsAtRecordBoundaries() {
        func record(_ payload: Int) -> [UInt8] {
            [22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, UInt8(payload >> 8), UInt8(payload & 0xFF)]
                + [UInt8](repeating: 7, count: payload)
        }
        let records = record(500) + record(600) + record(1500) + record(10)
        records.withUnsafeBytes { r in
            #expect(DTLSRecord.datagramEnd(r, from: 0, mtu: 1200) == 1126)  // two records fit
            #expect(DTLSRecord.datagramEnd(r, from: 1126, mtu: 1200) == 1126 + 1513)  // a large one alone
            #expect(DTLSRecord.datagramEnd(r, from: 2639, mtu: 1200) == r.count)
            #expect(DTLSRecord.datagramEnd(r, from: r.count, mtu: 1200) == r.count)
        }
        // A truncated record ends the run at the end of the bytes.
        let truncated = Array(record(100).prefix(50))
        truncated.withUnsafeBytes { #expect(DTLSRecord.datagramEnd($0, from: 0, mtu: 1200) == 50) }
    }
}

@Suite("DTLS admission") struct DTLSGateTests {
    static let context: TLSContext = {
        let dir = "/tmp/traverse-dtls-gate-tests-\(getpid())"
        mkdir(dir, 0o700)
        let store = try! TLSContextStore.selfSigned(in: dir)
        return store.dtls
    }()

    func gate(_ limits: DTLSLimits = DTLSLimits(), sessions: Int = 100, handshakes: Int = 100) -> DTLSGate {
        DTLSGate(
            limits: limits, sessionBudget: ConnectionBudget(maxTotal: sessions),
            handshakeBudget: ConnectionBudget(maxTotal: handshakes))
    }

    /// The cookie of a HelloVerifyRequest in the gate's output.
    func cookie(_ gate: DTLSGate, _ length: Int) -> [UInt8] {
        let answer = Array(UnsafeRawBufferPointer(rebasing: gate.output[0..<length]))
        #expect(answer[0] == 22 && answer[13] == 3)  // handshake record, hello_verify_request
        let n = Int(answer[13 + 12 + 2])
        return Array(answer[(13 + 12 + 3)..<(13 + 12 + 3 + n)])
    }

    /// Runs the cookie exchange for `client`: the verdict for its second hello.
    func exchange(_ gate: DTLSGate, _ client: TransportAddress) -> DTLSGate.Verdict {
        let first = dtlsClientHello().withUnsafeBytes { gate.receive($0, from: client, context: Self.context) }
        guard case .answer(let length) = first else {
            Issue.record("expected a HelloVerifyRequest, got \(first)")
            return .drop
        }
        let echoed = dtlsClientHello(cookie: cookie(gate, length))
        return echoed.withUnsafeBytes { gate.receive($0, from: client, context: Self.context) }
    }

    @Test func helloWithoutCookieIsAnsweredAndNothingIsKept() {
        let g = gate()
        for i in 0..<1000 {
            let client = TransportAddress(ip: .v4(0x7F02_0000 | UInt32(i)), port: 5000)
            let verdict = dtlsClientHello().withUnsafeBytes { g.receive($0, from: client, context: Self.context) }
            guard case .answer = verdict else {
                Issue.record("expected an answer, got \(verdict)")
                return
            }
        }
        #expect(g.counters.helloVerifyRequests == 1000)
        #expect(g.sessions.budget.taken == 0)
        #expect(g.handshakes.budget.taken == 0)
    }

    @Test func cookieIsBoundToAddressAndPort() {
        let g = gate()
        let client = TransportAddress(ip: .v4(0x7F00_0001), port: 5000)
        let first = dtlsClientHello().withUnsafeBytes { g.receive($0, from: client, context: Self.context) }
        guard case .answer(let length) = first else {
            Issue.record("no answer")
            return
        }
        let echoed = dtlsClientHello(cookie: cookie(g, length))
        // The same cookie from another port is not proof: answered again, nothing admitted.
        let other = TransportAddress(ip: .v4(0x7F00_0001), port: 5001)
        let verdict = echoed.withUnsafeBytes { g.receive($0, from: other, context: Self.context) }
        guard case .answer = verdict else {
            Issue.record("a cookie from another port was accepted: \(verdict)")
            return
        }
        let right = echoed.withUnsafeBytes { g.receive($0, from: client, context: Self.context) }
        guard case .admit(let ssl) = right else {
            Issue.record("the right cookie was refused: \(right)")
            return
        }
        SSL_free(ssl)
    }

    @Test func capsPerSourceAndTotalRefuseProvenClients() {
        var limits = DTLSLimits()
        limits.maxHandshakesPerSource = 2
        let g = gate(limits, sessions: 3)
        var admitted: [OpaquePointer] = []
        let ip: UInt32 = 0x7F00_0001
        for port in 1...3 {
            if case .admit(let ssl) = exchange(g, TransportAddress(ip: .v4(ip), port: UInt16(port))) {
                admitted.append(ssl)
            }
        }
        #expect(admitted.count == 2)  // the third handshake from one IP is over its cap
        #expect(g.counters.sessionsRefused == 1)
        // A finished handshake frees its slot for the same IP.
        g.handshakeFinished(.v4(ip))
        if case .admit(let ssl) = exchange(g, TransportAddress(ip: .v4(ip), port: 4)) { admitted.append(ssl) }
        #expect(admitted.count == 3)
        // The server-wide session budget (3) is now full: another IP is refused too.
        if case .admit(let ssl) = exchange(g, TransportAddress(ip: .v4(ip + 1), port: 1)) { admitted.append(ssl) }
        #expect(admitted.count == 3)
        #expect(g.counters.sessionsRefused == 2)
        // Closing sessions gives every slot back.
        g.sessionClosed(.v4(ip), handshaking: false)
        g.sessionClosed(.v4(ip), handshaking: true)
        g.sessionClosed(.v4(ip), handshaking: true)
        #expect(g.sessions.budget.taken == 0)
        #expect(g.handshakes.budget.taken == 0)
        for ssl in admitted { SSL_free(ssl) }
    }

    @Test func notAClientHelloIsDropped() {
        let g = gate()
        let client = TransportAddress(ip: .v4(0x7F00_0001), port: 5000)
        for bytes in [[UInt8](), [0, 1, 0, 0], [UInt8](repeating: 0x17, count: 100)] {
            let verdict = bytes.withUnsafeBytes { g.receive($0, from: client, context: Self.context) }
            guard case .drop = verdict else {
                Issue.record("expected a drop, got \(verdict)")
                return
            }
        }
        #expect(g.counters.hellosDropped == 3)
        #expect(g.counters.helloVerifyRequests == 0)
    }
}

import STUNCodec
import Testing

@testable import TraverseLoad

/// A fake TURN server answering in-process: 401 with REALM and NONCE to anything without
/// integrity, 438 once when asked, and success with XOR-RELAYED-ADDRESS (signed) otherwise.
struct FakeResponder {
    var realm = "traverse"
    var nonce = "nonce-1"
    var staleOnce = false
    let credentials = TURNCredentials(username: "alice", password: "wonderland")
    var seen: [STUNMessage] = []

    mutating func answer(_ request: [UInt8]) throws -> [UInt8] {
        let message = try STUNMessage(parsing: request)
        seen.append(message)
        let key = credentials.longTermKey(realm: realm)
        let errorType = message.type.errorResponse
        guard case .username(let user)? = message.first(.username) else {
            return try STUNMessage(
                type: errorType, transactionID: message.transactionID,
                attributes: [.errorCode(code: 401, reason: "Unauthorized"), .realm(realm), .nonce(nonce)]
            ).encoded()
        }
        let verified = request.withUnsafeBytes { b in
            (try? STUNMessageView(validating: b)).map { v in key.withUnsafeBytes { v.verifyMessageIntegrity(key: $0) } }
        }
        guard user == credentials.username, verified == true else {
            return try STUNMessage(
                type: errorType, transactionID: message.transactionID,
                attributes: [.errorCode(code: 401, reason: "Unauthorized"), .realm(realm), .nonce(nonce)]
            ).encoded()
        }
        if staleOnce {
            staleOnce = false
            nonce = "nonce-2"
            return try STUNMessage(
                type: errorType, transactionID: message.transactionID,
                attributes: [.errorCode(code: 438, reason: "Stale Nonce"), .realm(realm), .nonce(nonce)]
            ).encoded()
        }
        guard case .nonce(let n)? = message.first(.nonce), n == nonce else {
            return try STUNMessage(
                type: errorType, transactionID: message.transactionID,
                attributes: [.errorCode(code: 438, reason: "Stale Nonce"), .nonce(nonce)]
            ).encoded()
        }
        let relayed = TransportAddress("127.0.0.1:40001")!
        return try STUNMessage(
            type: message.type.successResponse, transactionID: message.transactionID,
            attributes: [.xorRelayedAddress(relayed), .lifetime(600)]
        ).encoded(key: key, integrity: [.sha1])
    }
}

func deliver(_ bytes: [UInt8], to client: inout TURNClient, now: UInt64 = 0) throws -> [TURNClientEvent] {
    try bytes.withUnsafeBytes { b in
        let view = try STUNMessageView(validating: b)
        return client.handle(view, now: now)
    }
}

@Suite struct TURNClientTests {
    @Test func allocateRunsTheLongTermCredentialDance() throws {
        var server = FakeResponder()
        var client = TURNClient(credentials: TURNCredentials(username: "alice", password: "wonderland"))
        let first = client.start(.allocate(lifetime: 600), now: 0)
        let firstMessage = try STUNMessage(parsing: first)
        #expect(firstMessage.type == STUNMessageType(method: .allocate, class: .request))
        #expect(firstMessage.first(.requestedTransport) == .requestedTransport(17))
        #expect(firstMessage.first(.messageIntegrity) == nil, "the first request is unauthenticated")

        let events = try deliver(try server.answer(first), to: &client)
        guard case .send(let second)? = events.first else {
            Issue.record("expected a resend, got \(events)")
            return
        }
        let secondMessage = try STUNMessage(parsing: second)
        #expect(secondMessage.first(.username) == .username("alice"))
        #expect(secondMessage.first(.realm) == .realm("traverse"))
        #expect(secondMessage.first(.nonce) == .nonce("nonce-1"))
        #expect(secondMessage.transactionID != firstMessage.transactionID)
        #expect(client.key == TURNCredentials(username: "alice", password: "wonderland").longTermKey(realm: "traverse"))

        let done = try deliver(try server.answer(second), to: &client)
        guard case .succeeded(.allocate, let response)? = done.first else {
            Issue.record("expected success, got \(done)")
            return
        }
        #expect(response.first(.xorRelayedAddress) == .xorRelayedAddress(TransportAddress("127.0.0.1:40001")!))
        #expect(client.inFlight == 0)
        #expect(client.counters.unauthorised == 1)

        // Later requests are authenticated from the start.
        let permission = client.start(.createPermission(peer: TransportAddress("127.0.0.1:40002")!), now: 0)
        let answer = try server.answer(permission)
        #expect(try STUNMessage(parsing: answer).type.messageClass == .successResponse)
        #expect(try deliver(answer, to: &client).count == 1)
    }

    @Test func staleNonceIsRetriedWithTheNewNonce() throws {
        var server = FakeResponder()
        var client = TURNClient(credentials: TURNCredentials(username: "alice", password: "wonderland"))
        var datagram = client.start(.allocate(lifetime: nil), now: 0)
        guard case .send(let d)? = try deliver(try server.answer(datagram), to: &client).first else {
            Issue.record("no resend after 401")
            return
        }
        datagram = d
        server.staleOnce = true
        guard case .send(let retry)? = try deliver(try server.answer(datagram), to: &client).first else {
            Issue.record("no resend after 438")
            return
        }
        #expect(try STUNMessage(parsing: retry).first(.nonce) == .nonce("nonce-2"))
        guard case .succeeded? = try deliver(try server.answer(retry), to: &client).first else {
            Issue.record("no success after the stale-nonce retry")
            return
        }
        #expect(client.counters.staleNonces == 1)
    }

    @Test func wrongPasswordFailsAfterBoundedRetries() throws {
        var server = FakeResponder()
        var client = TURNClient(credentials: TURNCredentials(username: "alice", password: "wrong"))
        var datagram = client.start(.allocate(lifetime: nil), now: 0)
        var failed = false
        for _ in 0..<5 {
            let events = try deliver(try server.answer(datagram), to: &client)
            if case .send(let d)? = events.first {
                datagram = d
            } else if case .failed(_, let reason)? = events.first {
                #expect(reason.hasPrefix("401"))
                failed = true
                break
            }
        }
        #expect(failed)
        #expect(server.seen.count <= 3)
    }

    @Test func forgedSuccessIsRejected() throws {
        var server = FakeResponder()
        var client = TURNClient(credentials: TURNCredentials(username: "alice", password: "wonderland"))
        let first = client.start(.allocate(lifetime: nil), now: 0)
        guard case .send(let second)? = try deliver(try server.answer(first), to: &client).first else { return }
        let message = try STUNMessage(parsing: second)
        let forged = try STUNMessage(
            type: message.type.successResponse, transactionID: message.transactionID,
            attributes: [.xorRelayedAddress(TransportAddress("127.0.0.1:1")!)]
        ).encoded(key: Array(repeating: 1, count: 16), integrity: [.sha1])
        guard case .failed? = try deliver(forged, to: &client).first else {
            Issue.record("a response signed with the wrong key was accepted")
            return
        }
        #expect(client.counters.badIntegrity == 1)
    }

    @Test func retransmitsThenGivesUp() {
        var client = TURNClient(credentials: TURNCredentials(username: "a", password: "b"))
        client.initialRTO = 100
        client.maxSends = 3
        _ = client.start(.allocate(lifetime: nil), now: 0)
        #expect(client.poll(now: 50).isEmpty)
        guard case .send? = client.poll(now: 100).first else {
            Issue.record("no retransmission")
            return
        }
        #expect(client.poll(now: 250).isEmpty)  // the timeout doubled to 200
        #expect(client.poll(now: 300).count == 1)
        guard case .failed? = client.poll(now: 10_000).first else {
            Issue.record("no failure")
            return
        }
        #expect(client.counters.retransmissions == 2)
    }
}

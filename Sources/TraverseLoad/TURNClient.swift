public import STUNCodec

/// A TURN request the client can make.
public enum TURNRequest: Sendable, Equatable {
    /// Allocate a UDP relayed address.
    case allocate(lifetime: UInt32?)
    /// Refresh the allocation; lifetime 0 deletes it.
    case refresh(lifetime: UInt32)
    /// Install or refresh a permission for `peer`'s IP.
    case createPermission(peer: TransportAddress)
    /// Bind (or refresh) `channel` to `peer`.
    case channelBind(peer: TransportAddress, channel: UInt16)

    var method: STUNMethod {
        switch self {
        case .allocate: .allocate
        case .refresh: .refresh
        case .createPermission: .createPermission
        case .channelBind: .channelBind
        }
    }
}

/// What the client wants done after it has been told something.
public enum TURNClientEvent: Sendable, Equatable {
    /// Send this datagram to the server.
    case send([UInt8])
    /// The request succeeded; `response` is the server's answer.
    case succeeded(TURNRequest, response: STUNMessage)
    /// The request failed for good.
    case failed(TURNRequest, reason: String)
}

/// Counters of the control path, for the report.
public struct TURNClientCounters: Sendable, Equatable {
    /// Requests sent, first transmissions only.
    public var requests = 0
    /// Retransmissions after a timeout.
    public var retransmissions = 0
    /// 401 answers (the first one of each client is expected: it carries REALM and NONCE).
    public var unauthorised = 0
    /// 438 Stale Nonce answers, each retried with the new nonce.
    public var staleNonces = 0
    /// Responses whose MESSAGE-INTEGRITY did not verify under the long-term key.
    public var badIntegrity = 0
    /// Requests that failed for good.
    public var failures = 0
}

/// A sans-I/O TURN client (RFC 8656 over UDP) for one 5-tuple: it builds requests, matches
/// answers by transaction ID, runs the long-term credential mechanism (401 → REALM/NONCE →
/// MESSAGE-INTEGRITY with MD5(user:realm:pass); 438 → retry with the new nonce) and retransmits
/// on timeouts. The caller owns the socket and the clock (monotonic nanoseconds).
public struct TURNClient {
    struct Pending {
        var request: TURNRequest
        var transactionID: STUNTransactionID
        var datagram: [UInt8]
        var nextSend: UInt64
        var rto: UInt64
        var sends: Int
        var authAttempts: Int
        var staleRetries: Int
    }

    /// The credentials.
    public let credentials: TURNCredentials
    /// REALM learnt from the server's 401.
    public private(set) var realm: String?
    /// NONCE learnt from the server (updated by 401, 438 and any answer that carries one).
    public private(set) var nonce: String?
    /// MD5(user:realm:pass), once the realm is known.
    public private(set) var key: [UInt8]?
    /// Control-path counters.
    public private(set) var counters = TURNClientCounters()
    /// Initial retransmission timeout in nanoseconds (RFC 8489 suggests 500 ms; loopback needs less).
    public var initialRTO: UInt64 = 250_000_000
    /// Transmissions before a request fails.
    public var maxSends = 6
    /// Add SOFTWARE to requests.
    public var software: String? = "traverse-load"

    var pending: [Pending] = []

    /// A client that will authenticate with `credentials`.
    public init(credentials: TURNCredentials) {
        self.credentials = credentials
    }

    /// Requests in flight.
    public var inFlight: Int { pending.count }

    /// Starts `request` at time `now`; returns the datagram to send.
    public mutating func start(_ request: TURNRequest, now: UInt64) -> [UInt8] {
        let tid = STUNTransactionID.random()
        let datagram = encode(request, transactionID: tid)
        pending.append(
            Pending(
                request: request, transactionID: tid, datagram: datagram, nextSend: now + initialRTO,
                rto: initialRTO, sends: 1, authAttempts: key == nil ? 0 : 1, staleRetries: 0))
        counters.requests += 1
        return datagram
    }

    /// Builds the request's bytes: authenticated once a realm and nonce are known.
    public func encode(_ request: TURNRequest, transactionID: STUNTransactionID) -> [UInt8] {
        var attrs: [STUNAttribute] = []
        switch request {
        case .allocate(let lifetime):
            attrs.append(.requestedTransport(17))
            if let l = lifetime { attrs.append(.lifetime(l)) }
        case .refresh(let lifetime):
            attrs.append(.lifetime(lifetime))
        case .createPermission(let peer):
            attrs.append(.xorPeerAddress(peer))
        case .channelBind(let peer, let channel):
            attrs.append(.channelNumber(channel))
            attrs.append(.xorPeerAddress(peer))
        }
        if let s = software { attrs.append(.software(s)) }
        var message = STUNMessage(type: .init(method: request.method, class: .request), transactionID: transactionID)
        if let realm, let nonce, let key {
            attrs.append(.username(credentials.username))
            attrs.append(.realm(realm))
            attrs.append(.nonce(nonce))
            message.attributes = attrs
            return (try? message.encoded(key: key, integrity: [.sha1], fingerprint: true)) ?? []
        }
        message.attributes = attrs
        return (try? message.encoded(fingerprint: true)) ?? []
    }

    /// Whether `transactionID` belongs to a request in flight.
    public func isPending(_ transactionID: STUNTransactionID) -> Bool {
        pending.contains { $0.transactionID == transactionID }
    }

    /// Handles a STUN response from the server; returns what to do (nothing for a stray answer).
    public mutating func handle(_ view: STUNMessageView, now: UInt64) -> [TURNClientEvent] {
        guard view.type.messageClass == .successResponse || view.type.messageClass == .errorResponse,
            let index = pending.firstIndex(where: { $0.transactionID == view.transactionID })
        else { return [] }
        var p = pending[index]
        if let n = view.string(.nonce) { nonce = n }
        if view.type.messageClass == .successResponse {
            pending.remove(at: index)
            if let key, view.integrityOffset != nil {
                let ok = key.withUnsafeBytes { view.verifyMessageIntegrity(key: $0) }
                if !ok {
                    counters.badIntegrity += 1
                    counters.failures += 1
                    return [.failed(p.request, reason: "response MESSAGE-INTEGRITY does not verify")]
                }
            }
            return [.succeeded(p.request, response: STUNMessage(view))]
        }
        let code = view.errorCode ?? 0
        switch code {
        case 401 where p.authAttempts < 2:
            counters.unauthorised += 1
            guard let r = view.string(.realm), let n = view.string(.nonce) else {
                pending.remove(at: index)
                counters.failures += 1
                return [.failed(p.request, reason: "401 without REALM and NONCE")]
            }
            if r != realm || key == nil {
                realm = r
                key = credentials.longTermKey(realm: r)
            }
            nonce = n
            p.authAttempts += 1
            return [.send(resend(&p, at: index, now: now))]
        case 438 where p.staleRetries < 3:
            counters.staleNonces += 1
            guard view.string(.nonce) != nil else {
                pending.remove(at: index)
                counters.failures += 1
                return [.failed(p.request, reason: "438 without NONCE")]
            }
            if let r = view.string(.realm), r != realm {
                realm = r
                key = credentials.longTermKey(realm: r)
            }
            p.staleRetries += 1
            return [.send(resend(&p, at: index, now: now))]
        default:
            if code == 401 { counters.unauthorised += 1 }
            pending.remove(at: index)
            counters.failures += 1
            let reason: String
            if case .errorCode(let c, let text)? = STUNMessage(view).first(.errorCode) {
                reason = "\(c) \(text)"
            } else {
                reason = "error response without ERROR-CODE"
            }
            return [.failed(p.request, reason: reason)]
        }
    }

    /// Re-encodes a request with a fresh transaction ID and the current credentials.
    private mutating func resend(_ p: inout Pending, at index: Int, now: UInt64) -> [UInt8] {
        p.transactionID = .random()
        p.datagram = encode(p.request, transactionID: p.transactionID)
        p.rto = initialRTO
        p.nextSend = now + initialRTO
        p.sends = 1
        pending[index] = p
        return p.datagram
    }

    /// The earliest time a retransmission is due, if any request is in flight.
    public var nextTimeout: UInt64? { pending.map(\.nextSend).min() }

    /// Retransmits what has timed out and fails what has been sent too often.
    public mutating func poll(now: UInt64) -> [TURNClientEvent] {
        var events: [TURNClientEvent] = []
        var i = 0
        while i < pending.count {
            if pending[i].nextSend <= now {
                if pending[i].sends >= maxSends {
                    let p = pending.remove(at: i)
                    counters.failures += 1
                    events.append(.failed(p.request, reason: "no answer after \(p.sends) transmissions"))
                    continue
                }
                pending[i].sends += 1
                pending[i].rto *= 2
                pending[i].nextSend = now + pending[i].rto
                counters.retransmissions += 1
                events.append(.send(pending[i].datagram))
            }
            i += 1
        }
        return events
    }
}

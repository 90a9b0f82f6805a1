public import STUNCodec

/// What to do with a message that came from a client.
public enum ClientMessageOutcome {
    /// Send the `length` bytes written into the response buffer back to the client.
    case reply(length: Int)
    /// Send `payload` from the relay socket `handle` to `peer` (a Send indication's DATA).
    case relay(handle: Int32, peer: TransportAddress, payload: UnsafeRawBufferPointer)
    /// Nothing to send (dropped and counted, or an indication that needs no answer).
    case none
    /// An Allocate waits for the fleet-wide quota: ask `shared.fleet.quota` for `username`
    /// under `limit`, then hand the verdict and the same request to `resumeAllocate`.
    case awaitQuota(username: String, limit: Int)
}

/// How a datagram from a peer reaches the client.
public enum PeerRoute: Equatable {
    /// Wrap it in ChannelData with this channel number.
    case channel(UInt16, FiveTuple)
    /// Wrap it in a Data indication.
    case indication(FiveTuple)
    /// Drop it (counted).
    case drop
}

/// The authenticated identity of a request, and how to protect the answer.
struct AuthContext {
    var username: String
    var key: [UInt8]
    var respondWithSHA256: Bool
}

/// The TURN server logic of one shard (RFC 8489, RFC 8656): authentication, allocations,
/// permissions, channels and their lifetimes. It performs no I/O: it reads messages handed to
/// it, writes answers into buffers it is given, asks the `RelaySocketProvider` passed to a call
/// for what that call needs at once (a relay socket), and returns everything else it decided as
/// `effects`. It holds no reference to the I/O layer. Time is passed in.
///
/// Not thread-safe by design: each shard owns one core and calls it from its serial queue only.
public final class TURNServerCore {
    /// The settings the core was made with; fixed for its lifetime.
    public let configuration: CoreConfiguration
    /// The state this core shares with the other shards' cores: policy, quotas, draining, fleet.
    public let shared: SharedServerState
    var nonces: NonceIssuer
    /// Counters, summed across shards when scraped.
    public var counters = CoreCounters()
    /// Allocation events since the caller last drained them.
    public var events: [AllocationEvent] = []
    /// What the I/O layer must carry out or mirror (relay sockets to close, bindings made and
    /// removed), in the order decided, since the caller last drained them.
    public var effects: [CoreEffect] = []

    var slots: [Allocation?] = []
    var freeSlots: [Int] = []
    var byFiveTuple: [FiveTuple: Int] = [:]
    /// Allocates waiting for the fleet-wide quota, by 5-tuple (bounded by `maxPendingQuota`).
    var pendingQuota: [FiveTuple: STUNTransactionID] = [:]
    /// The verdict `resumeAllocate` is applying, and whether the request used it.
    var verdict: (fiveTuple: FiveTuple, transactionID: STUNTransactionID, verdict: QuotaVerdict)?
    var verdictUsed = false
    static let maxPendingQuota = 1024
    var rateLimiter: SourceRateLimiter
    var policyGeneration = -1
    /// A policy replaced since the last sweep, which applies it to existing allocations.
    var policyChangedSinceSweep = false
    var policy: CorePolicy
    let encodedPasswordAlgorithms: [UInt8]

    /// How long a transaction's response is remembered for retransmissions (RFC 8489 §6.3.1).
    static let transactionMemoryMilliseconds: UInt64 = 40_000

    /// Makes the core of one shard.
    ///
    /// - Parameters:
    ///   - configuration: The TURN settings.
    ///   - shared: The state shared by every shard's core; the core reads the policy in force from it.
    ///   - nonceSecret: The key of the stateless nonces; give every shard of a server the same one.
    public init(
        configuration: CoreConfiguration, shared: SharedServerState,
        nonceSecret: [UInt8] = STUNDigest.randomBytes(32)
    ) {
        self.configuration = configuration
        self.shared = shared
        self.policy = shared.policy
        var features: SecurityFeatures = [.passwordAlgorithms]
        if !policy.credentials.users.isEmpty { features.insert(.usernameAnonymity) }
        self.nonces = NonceIssuer(secret: nonceSecret, lifetime: configuration.nonceLifetime, features: features)
        self.rateLimiter = SourceRateLimiter(
            ratePerSecond: configuration.unauthenticatedRatePerSecond,
            overflowBytesPerSecond: configuration.challengeOverflowBytesPerSecond)
        var encoded = [UInt8]()
        for a in configuration.passwordAlgorithms {
            encoded += [
                UInt8(a.number >> 8), UInt8(a.number & 0xFF), UInt8(a.parameters.count >> 8),
                UInt8(a.parameters.count & 0xFF),
            ]
            encoded += a.parameters + [UInt8](repeating: 0, count: (4 - a.parameters.count % 4) % 4)
        }
        self.encodedPasswordAlgorithms = encoded
    }

    /// Allocations held by this shard.
    public var allocationCount: Int { byFiveTuple.count }

    /// The allocation in `slot`, if any (for the I/O layer's relay-socket events).
    public func allocation(inSlot slot: Int) -> Allocation? {
        slot < slots.count ? slots[slot] : nil
    }

    /// The slot of the allocation on `fiveTuple`.
    public func slot(for fiveTuple: FiveTuple) -> Int? { byFiveTuple[fiveTuple] }

    func refreshPolicyIfNeeded() {
        let g = shared.policyGeneration
        if g != policyGeneration {
            let previous = policy
            policy = shared.policy
            if policyGeneration >= 0 {
                policyChangedSinceSweep = true
                reviewCredentials(previous: previous)
            }
            policyGeneration = g
            var features: SecurityFeatures = [.passwordAlgorithms]
            if !policy.credentials.users.isEmpty { features.insert(.usernameAnonymity) }
            nonces.features = features
        }
    }

    // MARK: - Messages from clients

    /// Handles a STUN message from a client on `fiveTuple`. A response, if any, is written into
    /// `response` (which must hold at least 1500 bytes). `relays` opens what an Allocate, Connect or
    /// ConnectionBind needs during this call; it is not kept.
    public func handleSTUN(
        _ m: STUNMessageView, from fiveTuple: FiveTuple, now: CoreTime, response: UnsafeMutableRawBufferPointer,
        relays: any RelaySocketProvider
    ) -> ClientMessageOutcome {
        switch m.type.messageClass {
        case .indication:
            if m.type.method == .send { return handleSend(m, fiveTuple, now) }
            return .none  // Binding indications (keepalives) and others need no answer.
        case .successResponse, .errorResponse:
            counters.drop(.unexpectedClass)
            return .none
        case .request:
            break
        }
        // (The second pass of an Allocate that waited for the fleet quota is not counted again.)
        if verdict?.fiveTuple != fiveTuple { counters.requests[Self.countedMethod(m.type.method).rawValue] &+= 1 }
        refreshPolicyIfNeeded()

        // A retransmission of a request already answered on this allocation gets the same answer.
        if let slot = byFiveTuple[fiveTuple], let a = slots[slot], a.lastTransaction == m.transactionID,
            now.milliseconds &- a.lastResponseAt < Self.transactionMemoryMilliseconds,
            a.lastResponse.count <= response.count
        {
            a.lastResponse.withUnsafeBytes { response.copyMemory(from: $0) }
            return .reply(length: a.lastResponse.count)
        }

        if m.type.method == .binding { return handleBinding(m, fiveTuple, now, response) }
        // A request from a client whose Allocate waits for the fleet quota: answered once the
        // verdict is in (a retransmission must not ask twice).
        if pendingQuota[fiveTuple] != nil, verdict?.fiveTuple != fiveTuple {
            counters.drop(.quotaPending)
            return .none
        }

        if policy.bannedClients.isBanned(fiveTuple.client.ip) {
            counters.drop(.bannedClient)
            return unauthenticatedError(m, fiveTuple, now, 403, "Forbidden", response)
        }

        switch m.type.method {
        case .allocate, .refresh, .createPermission, .channelBind, .connect, .connectionBind:
            break
        default:
            return unauthenticatedError(m, fiveTuple, now, 400, "Unsupported method", response)
        }

        // A request without integrity that lacks what its method requires cannot succeed even
        // once authenticated: dropped and counted rather than challenged (an attacker's smallest
        // request must not buy the largest answer).
        if m.integrityOffset == nil && m.integritySHA256Offset == nil && !Self.hasRequiredAttributes(m) {
            counters.drop(.incompleteRequest)
            return .none
        }

        let existingSlot = byFiveTuple[fiveTuple]
        let existing = existingSlot.flatMap { slots[$0] }
        let auth: AuthContext
        switch authenticate(m, fiveTuple, now, allocation: existing, response) {
        case .accepted(let a): auth = a
        case .answered(let outcome): return outcome
        }
        if !m.unknownComprehensionRequired.isEmpty {
            let unknown = m.unknownComprehensionRequired
            return reply(m, auth, now, response, slot: nil, error: (420, "Unknown Attribute")) { w in
                try w.append(.unknownAttributes, length: unknown.count * 2) { v in
                    for i in 0..<unknown.count {
                        v.storeBytes(of: unknown[i].rawValue.bigEndian, toByteOffset: i * 2, as: UInt16.self)
                    }
                }
            }
        }
        if let existing, existing.username != auth.username {
            counters.authFailures[AuthFailure.wrongUsername.rawValue] &+= 1
            return reply(m, auth, now, response, slot: nil, error: (441, "Wrong Credentials"))
        }

        switch m.type.method {
        case .allocate:
            if existingSlot != nil {
                return reply(m, auth, now, response, slot: nil, error: (437, "Allocation Mismatch"))
            }
            return handleAllocate(m, fiveTuple, auth, now, response, relays)
        case .connectionBind:
            return handleConnectionBind(m, fiveTuple, auth, now, response, relays)
        default:
            guard let slot = existingSlot else {
                return reply(m, auth, now, response, slot: nil, error: (437, "Allocation Mismatch"))
            }
            switch m.type.method {
            case .refresh: return handleRefresh(m, slot, auth, now, response)
            case .createPermission: return handleCreatePermission(m, slot, auth, now, response)
            case .connect: return handleConnect(m, slot, auth, now, response, relays)
            default: return handleChannelBind(m, slot, auth, now, response)
            }
        }
    }

    /// Whether `m` carries the attributes its method cannot do without (RFC 8656 §7.2, §9.1,
    /// §11.2; RFC 6062 §4.3, §4.4).
    static func hasRequiredAttributes(_ m: STUNMessageView) -> Bool {
        switch m.type.method {
        case .allocate: m.value(of: .requestedTransport) != nil
        case .createPermission, .connect: m.value(of: .xorPeerAddress) != nil
        case .channelBind: m.value(of: .channelNumber) != nil && m.value(of: .xorPeerAddress) != nil
        case .connectionBind: m.value(of: .connectionID) != nil
        default: true
        }
    }

    /// A request the parser refused. One case is answered rather than dropped: a USERNAME longer
    /// than RFC 8489 §14.3 allows (more than 508 bytes) in an otherwise well-framed request gets
    /// 400 Bad Request, within the unauthenticated rate limit, so that a client with a broken
    /// configuration learns why. Everything else is dropped and counted by the caller.
    public func handleMalformed(
        _ bytes: UnsafeRawBufferPointer, _ error: STUNParseError, from fiveTuple: FiveTuple, now: CoreTime,
        response out: UnsafeMutableRawBufferPointer
    ) -> ClientMessageOutcome {
        let type = STUNMessageType(wireValue: bytes.count >= 20 ? bytes.be16(0) : 0)
        guard error == .invalidAttributeLength(.username), bytes.count >= 20, bytes.be32(4) == stunMagicCookie,
            bytes[0] & 0xC0 == 0, type.messageClass == .request
        else {
            counters.drop(.malformedSTUN)
            return .none
        }
        counters.requests[Self.countedMethod(type.method).rawValue] &+= 1
        guard allowUnauthenticatedAnswer(to: fiveTuple, now) else { return .none }
        counters.countError(400)
        do throws(STUNEncodingError) {
            var w = try STUNMessageWriter(
                into: out, type: type.errorResponse,
                transactionID: STUNTransactionID(high: bytes.be64(8), low: bytes.be32(16)))
            try w.appendErrorCode(400, reason: configuration.unauthenticatedReasonPhrases ? "Bad Request" : "")
            return .reply(length: w.count)
        } catch {
            return .none
        }
    }

    static func countedMethod(_ m: STUNMethod) -> CountedMethod {
        switch m {
        case .binding: .binding
        case .allocate: .allocate
        case .refresh: .refresh
        case .createPermission: .createPermission
        case .channelBind: .channelBind
        case .send: .send
        case .connect: .connect
        case .connectionBind: .connectionBind
        default: .other
        }
    }

    func reply(
        _ m: STUNMessageView, _ auth: AuthContext, _ now: CoreTime, _ out: UnsafeMutableRawBufferPointer, slot: Int?,
        error: (STUNErrorCode, String)? = nil, _ body: (inout STUNMessageWriter) throws -> Void = { _ in }
    ) -> ClientMessageOutcome {
        if let error { counters.countError(error.0) }
        do {
            var w = try STUNMessageWriter(
                into: out, type: error == nil ? m.type.successResponse : m.type.errorResponse,
                transactionID: m.transactionID)
            if let error { try w.appendErrorCode(error.0, reason: error.1) }
            try body(&w)
            if let software = configuration.software, m.type.method == .allocate || m.type.method == .refresh {
                try w.append(.software, string: software)
            }
            try auth.key.withUnsafeBytes { k in
                if auth.respondWithSHA256 {
                    try w.appendMessageIntegritySHA256(key: k)
                } else {
                    try w.appendMessageIntegrity(key: k)
                }
            }
            if m.fingerprintOffset != nil { try w.appendFingerprint() }
            if let slot, slots[slot] != nil {
                slots[slot]!.lastTransaction = m.transactionID
                slots[slot]!.lastResponse = Array(w.message)
                slots[slot]!.lastResponseAt = now.milliseconds
            }
            return .reply(length: w.count)
        } catch {
            return .none
        }
    }

}

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
/// it, writes answers into buffers it is given, and asks a `RelaySocketProvider` for relay
/// sockets. Time is passed in.
///
/// Not thread-safe by design: each shard owns one core and calls it from its serial queue only.
public final class TURNServerCore {
    /// The settings the core was made with; fixed for its lifetime.
    public let configuration: CoreConfiguration
    /// The state this core shares with the other shards' cores: policy, quotas, draining, fleet.
    public let shared: SharedServerState
    let relays: any RelaySocketProvider
    var nonces: NonceIssuer
    /// Counters, summed across shards when scraped.
    public var counters = CoreCounters()
    /// Allocation events since the caller last drained them.
    public var events: [AllocationEvent] = []

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
    ///   - relays: Opens and closes relay sockets. The core keeps it and calls it synchronously,
    ///     from within its own methods.
    ///   - nonceSecret: The key of the stateless nonces; give every shard of a server the same one.
    public init(
        configuration: CoreConfiguration, shared: SharedServerState, relays: any RelaySocketProvider,
        nonceSecret: [UInt8] = STUNDigest.randomBytes(32)
    ) {
        self.configuration = configuration
        self.shared = shared
        self.relays = relays
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
    /// `response` (which must hold at least 1500 bytes).
    public func handleSTUN(
        _ m: STUNMessageView, from fiveTuple: FiveTuple, now: CoreTime, response: UnsafeMutableRawBufferPointer
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
            return handleAllocate(m, fiveTuple, auth, now, response)
        case .connectionBind:
            return handleConnectionBind(m, fiveTuple, auth, now, response)
        default:
            guard let slot = existingSlot else {
                return reply(m, auth, now, response, slot: nil, error: (437, "Allocation Mismatch"))
            }
            switch m.type.method {
            case .refresh: return handleRefresh(m, slot, auth, now, response)
            case .createPermission: return handleCreatePermission(m, slot, auth, now, response)
            case .connect: return handleConnect(m, slot, auth, now, response)
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

    // MARK: Binding (RFC 8489 §7.3)

    func handleBinding(
        _ m: STUNMessageView, _ fiveTuple: FiveTuple, _ now: CoreTime, _ out: UnsafeMutableRawBufferPointer
    )
        -> ClientMessageOutcome
    {
        guard allowUnauthenticatedAnswer(to: fiveTuple, now) else { return .none }
        do throws(STUNEncodingError) {
            var w = try STUNMessageWriter(
                into: out, type: m.type.successResponse, transactionID: m.transactionID, cookie: m.cookie)
            if !m.unknownComprehensionRequired.isEmpty {
                return unauthenticatedError(m, fiveTuple, now, 420, "Unknown Attribute", out)
            }
            if m.isClassicSTUN {
                try w.append(.mappedAddress, address: fiveTuple.client)
            } else {
                try w.append(.xorMappedAddress, address: fiveTuple.client)
            }
            if let software = configuration.software { try w.append(.software, string: software) }
            if m.fingerprintOffset != nil { try w.appendFingerprint() }
            return .reply(length: w.count)
        } catch {
            return .none
        }
    }

    // MARK: Authentication (RFC 8489 §9.2.4, in the order the RFC gives)

    enum AuthOutcome {
        case accepted(AuthContext)
        case answered(ClientMessageOutcome)
    }

    func authenticate(
        _ m: STUNMessageView, _ fiveTuple: FiveTuple, _ now: CoreTime, allocation: Allocation?,
        _ out: UnsafeMutableRawBufferPointer
    ) -> AuthOutcome {
        let hasMI = m.integrityOffset != nil
        let hasMI256 = m.integritySHA256Offset != nil
        // 1. No integrity: challenge.
        guard hasMI || hasMI256 else {
            counters.authFailures[AuthFailure.missingCredentials.rawValue] &+= 1
            return .answered(challenge(m, fiveTuple, now, 401, "Unauthenticated", out))
        }
        // 2. Integrity without the attributes it needs.
        let username = m.string(.username)
        let userhash = m.value(of: .userhash).map { Array($0) }
        guard username != nil || userhash != nil, let realm = m.string(.realm), let nonce = m.string(.nonce) else {
            counters.authFailures[AuthFailure.badRequest.rawValue] &+= 1
            return .answered(unauthenticatedError(m, fiveTuple, now, 400, "Bad Request", out))
        }
        // 3. Password algorithm, with bid-down protection.
        let nonceCheck = nonces.check(nonce, from: fiveTuple.client, now: now.seconds)
        let offered: SecurityFeatures
        switch nonceCheck {
        case .valid(let f), .stale(let f): offered = f
        case .invalid: offered = NonceIssuer.features(of: nonce) ?? []
        }
        var algorithm = PasswordAlgorithm.md5
        var legacy = true
        if offered.contains(.passwordAlgorithms) {
            let list = m.value(of: .passwordAlgorithms)
            let chosen = m.value(of: .passwordAlgorithm)
            if list != nil || chosen != nil {
                guard let list, let chosen, chosen.count >= 4,
                    list.elementsEqual(encodedPasswordAlgorithms),
                    let pick = configuration.passwordAlgorithms.first(where: { $0.number == chosen.be16(0) })
                else {
                    counters.authFailures[AuthFailure.badRequest.rawValue] &+= 1
                    return .answered(unauthenticatedError(m, fiveTuple, now, 400, "Bad Request", out))
                }
                algorithm = pick
                legacy = false
            }
        }
        // 4. The user must exist (and REST credentials must not have expired).
        var name = username ?? ""
        if username == nil, let userhash {
            guard offered.contains(.usernameAnonymity), let known = policy.credentials.userhashIndex[userhash] else {
                counters.authFailures[AuthFailure.unknownUser.rawValue] &+= 1
                return .answered(challenge(m, fiveTuple, now, 401, "Unauthenticated", out))
            }
            name = known
        }
        guard realm == policy.credentials.realm else {
            counters.authFailures[AuthFailure.wrongRealm.rawValue] &+= 1
            return .answered(challenge(m, fiveTuple, now, 401, "Unauthenticated", out))
        }
        var keys = policy.credentials.candidateKeys(username: name, algorithm: algorithm, unixNow: now.unixSeconds)
        // An expired REST username is refused outright: the allocation's remembered key lets it
        // survive a secret rotation, not outlive the expiry the username carries.
        let expired =
            policy.credentials.users[name] == nil
            && (policy.credentials.rest?.expiry(of: name).map { $0 < now.unixSeconds } ?? false)
        // A key whose credential was removed is no longer accepted (`reviewCredentials`).
        let revoked = allocation?.revokeAfter.map { $0 < now.unixSeconds } ?? false
        if !expired, !revoked, let allocation, allocation.username == name,
            algorithm == .md5 || allocation.key.count == 32
        {
            keys.append(allocation.key)
        }
        if keys.isEmpty {
            counters.authFailures[(expired ? AuthFailure.expiredCredentials : .unknownUser).rawValue] &+= 1
            return .answered(challenge(m, fiveTuple, now, 401, "Unauthenticated", out))
        }
        // 5. The MAC: MESSAGE-INTEGRITY-SHA256 when present, else MESSAGE-INTEGRITY.
        let verified = keys.first { key in
            key.withUnsafeBytes { k in
                hasMI256 ? m.verifyMessageIntegritySHA256(key: k) : m.verifyMessageIntegrity(key: k)
            }
        }
        guard let key = verified else {
            counters.authFailures[AuthFailure.badIntegrity.rawValue] &+= 1
            return .answered(challenge(m, fiveTuple, now, 401, "Unauthenticated", out))
        }
        // 6. The nonce must still be fresh (and ours).
        guard case .valid = nonceCheck else {
            counters.authFailures[AuthFailure.staleNonce.rawValue] &+= 1
            return .answered(challenge(m, fiveTuple, now, 438, "Stale Nonce", out))
        }
        return .accepted(AuthContext(username: name, key: key, respondWithSHA256: !legacy || (hasMI256 && !hasMI)))
    }

    /// Whether the per-source budget of answers to unauthenticated requests allows one more;
    /// a refusal is counted as a rate-limited drop.
    func allowUnauthenticatedAnswer(to fiveTuple: FiveTuple, _ now: CoreTime) -> Bool {
        if case .answer = rateLimiter.allow(fiveTuple.client.ip, now: now.milliseconds, challenge: false) {
            return true
        }
        counters.drop(.rateLimited)
        return false
    }

    /// 401/438 with REALM, a fresh NONCE and PASSWORD-ALGORITHMS, in its smallest form (no reason
    /// phrase unless configured; SOFTWARE only when configured). Rate limited per source IP: once the IP's answers
    /// for this second are spent, challenges still go out from a byte budget of their own, so
    /// that a client whose IP is spoofed by a flood still gets its challenge (Docs/security.md §3).
    func challenge(
        _ m: STUNMessageView, _ fiveTuple: FiveTuple, _ now: CoreTime, _ code: Int, _ reason: String,
        _ out: UnsafeMutableRawBufferPointer
    ) -> ClientMessageOutcome {
        let grant = rateLimiter.allow(fiveTuple.client.ip, now: now.milliseconds, challenge: true)
        if case .refused = grant {
            counters.drop(.rateLimited)
            return .none
        }
        counters.countError(code)
        do throws(STUNEncodingError) {
            var w = try STUNMessageWriter(into: out, type: m.type.errorResponse, transactionID: m.transactionID)
            try w.appendErrorCode(code, reason: configuration.unauthenticatedReasonPhrases ? reason : "")
            try w.append(.realm, string: policy.credentials.realm)
            try w.append(.nonce, string: nonces.issue(for: fiveTuple.client, now: now.seconds))
            let algorithms = encodedPasswordAlgorithms
            try algorithms.withUnsafeBytes { b in
                Result { () throws(STUNEncodingError) in try w.append(.passwordAlgorithms, bytes: b) }
            }.get()
            if let software = configuration.software, m.type.method == .allocate || m.type.method == .refresh {
                try w.append(.software, string: software)
            }
            if m.fingerprintOffset != nil { try w.appendFingerprint() }
            if case .overflow(let bucket) = grant {
                rateLimiter.spendOverflow(bucket, bytes: w.count)
                counters.overflowChallenges &+= 1
            }
            return .reply(length: w.count)
        } catch {
            return .none
        }
    }

    /// An error answer to a request that has not authenticated: no integrity, rate limited.
    func unauthenticatedError(
        _ m: STUNMessageView, _ fiveTuple: FiveTuple, _ now: CoreTime, _ code: Int, _ reason: String,
        _ out: UnsafeMutableRawBufferPointer
    ) -> ClientMessageOutcome {
        guard allowUnauthenticatedAnswer(to: fiveTuple, now) else { return .none }
        counters.countError(code)
        do throws(STUNEncodingError) {
            var w = try STUNMessageWriter(
                into: out, type: m.type.errorResponse, transactionID: m.transactionID, cookie: m.cookie)
            try w.appendErrorCode(code, reason: configuration.unauthenticatedReasonPhrases ? reason : "")
            if code == 420 {
                let unknown = m.unknownComprehensionRequired
                try w.append(.unknownAttributes, length: unknown.count * 2) { v in
                    for i in 0..<unknown.count {
                        v.storeBytes(of: unknown[i].rawValue.bigEndian, toByteOffset: i * 2, as: UInt16.self)
                    }
                }
            }
            if m.fingerprintOffset != nil { try w.appendFingerprint() }
            return .reply(length: w.count)
        } catch {
            return .none
        }
    }

    /// Writes an authenticated answer (success, or `error`), protected with the request's key and
    /// algorithm, and remembers it on the allocation in `slot` for retransmissions.
    func reply(
        _ m: STUNMessageView, _ auth: AuthContext, _ now: CoreTime, _ out: UnsafeMutableRawBufferPointer, slot: Int?,
        error: (Int, String)? = nil, _ body: (inout STUNMessageWriter) throws -> Void = { _ in }
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

    // MARK: Allocate (RFC 8656 §7.2)

    func handleAllocate(
        _ m: STUNMessageView, _ fiveTuple: FiveTuple, _ auth: AuthContext, _ now: CoreTime,
        _ out: UnsafeMutableRawBufferPointer
    ) -> ClientMessageOutcome {
        // Draining, full, or (in a fleet) above the redirect load: send the client to another
        // node when one can take it (the fleet's board first, then the static list). With none,
        // a draining node answers 508, a full one finds out below, a loaded one serves.
        let redirect: RedirectReason? =
            shared.isDraining
            ? .draining
            : shared.allocationCount >= shared.effectiveCapacity(configured: configuration.maxAllocations)
                ? .full : shared.fleet.isOverloaded ? .load : nil
        if let redirect {
            if let alternate = alternate(for: fiveTuple) {
                counters.redirects[redirect.rawValue] &+= 1
                let domain = fiveTuple.transport == .tls ? configuration.alternateDomain : nil
                return reply(m, auth, now, out, slot: nil, error: (300, "Try Alternate")) { w in
                    try w.append(.alternateServer, address: alternate)
                    if let domain { try w.append(.alternateDomain, string: domain) }
                }
            }
            if redirect == .draining {
                return reply(m, auth, now, out, slot: nil, error: (508, "Insufficient Capacity"))
            }
        }
        guard let transport = m.value(of: .requestedTransport) else {
            return reply(m, auth, now, out, slot: nil, error: (400, "Missing REQUESTED-TRANSPORT"))
        }
        let tcpRelay = transport[0] == 6 && configuration.tcpRelaysEnabled
        guard transport[0] == 17 || tcpRelay else {
            return reply(m, auth, now, out, slot: nil, error: (442, "Unsupported Transport Protocol"))
        }
        if tcpRelay {
            // RFC 6062 §5.1: a TCP allocation is made over a TCP or TLS control connection, with
            // none of the UDP-only attributes.
            guard fiveTuple.transport == .tcp || fiveTuple.transport == .tls else {
                return reply(m, auth, now, out, slot: nil, error: (400, "TCP allocations need a TCP or TLS connection"))
            }
            if m.contains(.evenPort) || m.contains(.reservationToken) || m.contains(.additionalAddressFamily)
                || m.contains(.dontFragment)
            {
                return reply(m, auth, now, out, slot: nil, error: (400, "Bad Request"))
            }
        }
        let dontFragment = m.contains(.dontFragment)
        let token = m.value(of: .reservationToken).map { $0.be64(0) }
        let requestedFamily = m.value(of: .requestedAddressFamily).map { AddressFamily(rawValue: $0[0]) }
        let additionalFamily = m.value(of: .additionalAddressFamily).map { AddressFamily(rawValue: $0[0]) }
        let evenPort = m.value(of: .evenPort).map { $0[0] & 0x80 != 0 }
        if token != nil && (evenPort != nil || requestedFamily != nil || additionalFamily != nil) {
            return reply(m, auth, now, out, slot: nil, error: (400, "Bad Request"))
        }
        if requestedFamily != nil && additionalFamily != nil {
            return reply(m, auth, now, out, slot: nil, error: (400, "Bad Request"))
        }
        var families: [AddressFamily]
        if let requestedFamily {
            guard let f = requestedFamily, configuration.relayFamilies.contains(f) else {
                return reply(m, auth, now, out, slot: nil, error: (440, "Address Family not Supported"))
            }
            families = [f]
        } else {
            guard configuration.relayFamilies.contains(.ipv4) else {
                return reply(m, auth, now, out, slot: nil, error: (440, "Address Family not Supported"))
            }
            families = [.ipv4]
        }
        if evenPort == true && additionalFamily != nil {
            return reply(m, auth, now, out, slot: nil, error: (400, "Bad Request"))
        }
        if let additionalFamily {
            guard additionalFamily == .ipv6 else {
                return reply(m, auth, now, out, slot: nil, error: (400, "Bad Request"))
            }
            families.append(.ipv6)
        }

        // The fleet-wide quota, when there is a fleet: asked once, asynchronously; the request
        // is handled again with the verdict (`resumeAllocate`). A grant still meets this node's
        // count below: one that lands after allocations counted here while the fleet could not be
        // asked (`unavailable(countLocally: true)`) must not take the user past the quota.
        var fleetCounted = false
        if shared.fleet.quota != nil {
            if let v = verdict, v.fiveTuple == fiveTuple, v.transactionID == m.transactionID {
                verdictUsed = true
                switch v.verdict {
                case .granted:
                    fleetCounted = true
                case .refused:
                    counters.quotaRefusals[1] &+= 1
                    return reply(m, auth, now, out, slot: nil, error: (486, "Allocation Quota Reached"))
                case .unavailable(countLocally: true):
                    fleetCounted = true
                case .unavailable(countLocally: false):
                    return reply(m, auth, now, out, slot: nil, error: (508, "Insufficient Capacity"))
                }
            } else {
                guard pendingQuota.count < Self.maxPendingQuota else {
                    return reply(m, auth, now, out, slot: nil, error: (508, "Insufficient Capacity"))
                }
                pendingQuota[fiveTuple] = m.transactionID
                return .awaitQuota(username: auth.username, limit: configuration.maxAllocationsPerUser)
            }
        }
        if let code = shared.reserve(
            username: auth.username, maxTotal: configuration.maxAllocations,
            maxPerUser: configuration.maxAllocationsPerUser)
        {
            // Counted fleet-wide but not made here: give the count back.
            if fleetCounted { shared.fleet.quota?.release(username: auth.username) }
            if code == 508, let alternate = alternate(for: fiveTuple) {
                counters.redirects[RedirectReason.full.rawValue] &+= 1
                let domain = fiveTuple.transport == .tls ? configuration.alternateDomain : nil
                return reply(m, auth, now, out, slot: nil, error: (300, "Try Alternate")) { w in
                    try w.append(.alternateServer, address: alternate)
                    if let domain { try w.append(.alternateDomain, string: domain) }
                }
            }
            if code == 486 { counters.quotaRefusals[0] &+= 1 }
            return reply(
                m, auth, now, out, slot: nil,
                error: code == 486 ? (486, "Allocation Quota Reached") : (508, "Insufficient Capacity"))
        }

        let slot =
            freeSlots.popLast()
            ?? {
                slots.append(nil); return slots.count - 1
            }()
        var opened: [RelayEndpoint] = []
        var failedFamily: (AddressFamily, Int)? = nil
        var reservationToken: UInt64? = nil
        for family in families {
            var request = RelayRequest(family: family, slot: slot)
            request.evenPort = evenPort != nil
            request.reserveNextPort = evenPort == true
            request.reservationToken = token
            request.dontFragment = dontFragment
            request.transport = tcpRelay ? 6 : 17
            switch relays.openRelay(request) {
            case .opened(let endpoint, let newToken):
                opened.append(endpoint)
                if newToken != nil { reservationToken = newToken }
            case .failed(let code):
                failedFamily = (family, code)
            }
        }
        guard !opened.isEmpty else {
            freeSlots.append(slot)
            shared.release(username: auth.username)
            return reply(m, auth, now, out, slot: nil, error: (failedFamily?.1 ?? 508, "Insufficient Capacity"))
        }

        let lifetime = grantedLifetime(m.uint32(.lifetime))
        var allocation = Allocation(
            fiveTuple: fiveTuple, username: auth.username, key: auth.key, relays: opened,
            expiry: now.milliseconds + UInt64(lifetime) * 1000, now: now.milliseconds)
        allocation.respondWithSHA256 = auth.respondWithSHA256
        allocation.relayTransport = tcpRelay ? 6 : 17
        if configuration.bandwidthPerAllocation > 0 {
            allocation.bucketIn = TokenBucket(
                bytesPerSecond: configuration.bandwidthPerAllocation, now: now.milliseconds)
            allocation.bucketOut = allocation.bucketIn
        }
        slots[slot] = allocation
        byFiveTuple[fiveTuple] = slot
        for r in opened { counters.allocationsCreated[r.address.family == .ipv4 ? 0 : 1] &+= 1 }
        events.append(
            .created(
                fiveTuple: fiveTuple, username: auth.username, relays: opened.map { advertised($0.address) },
                lifetime: lifetime))

        let advertisedRelays = opened.map { advertised($0.address) }
        return reply(m, auth, now, out, slot: slot) { w in
            for r in advertisedRelays { try w.append(.xorRelayedAddress, address: r) }
            try w.append(.lifetime, uint32: lifetime)
            if let reservationToken { try w.append(.reservationToken, uint64: reservationToken) }
            try w.append(.xorMappedAddress, address: fiveTuple.client)
            if let (family, code) = failedFamily {
                try w.appendAddressErrorCode(family: family, code, reason: "Insufficient Capacity")
            }
        }
    }

    /// Where to send a new client of `fiveTuple`: a live, lightly loaded node of the fleet of the
    /// same transport and family, else the first static alternate of the client's family.
    func alternate(for fiveTuple: FiveTuple) -> TransportAddress? {
        shared.fleet.alternate(for: fiveTuple)
            ?? configuration.alternateServers.first { $0.family == fiveTuple.client.family }
    }

    /// The address clients are told: the configured public address for a private relay IP.
    func advertised(_ address: TransportAddress) -> TransportAddress {
        guard let ip = configuration.externalAddresses[address.ip] else { return address }
        return TransportAddress(ip: ip, port: address.port)
    }

    /// RFC 8656 §7.2: min(requested, max), but never below the default.
    func grantedLifetime(_ requested: UInt32?) -> UInt32 {
        guard let requested else { return configuration.defaultLifetime }
        return max(configuration.defaultLifetime, min(requested, configuration.maxLifetime))
    }

    // MARK: Refresh (RFC 8656 §8)

    func handleRefresh(
        _ m: STUNMessageView, _ slot: Int, _ auth: AuthContext, _ now: CoreTime, _ out: UnsafeMutableRawBufferPointer
    ) -> ClientMessageOutcome {
        var a = slots[slot]!
        var onlyFamily: AddressFamily? = nil
        if let raf = m.value(of: .requestedAddressFamily) {
            guard let f = AddressFamily(rawValue: raf[0]), a.relay(for: f) != nil else {
                return reply(m, auth, now, out, slot: slot, error: (443, "Peer Address Family Mismatch"))
            }
            onlyFamily = f
        }
        let requested = m.uint32(.lifetime)
        if requested == 0 {
            if let onlyFamily, a.relays.count > 1 {
                if let r = a.relay(for: onlyFamily) { relays.closeRelay(r) }
                a.relays.removeAll { $0.address.family == onlyFamily }
                slots[slot] = a
            } else {
                // Answer first (the answer needs the key), then delete.
                let outcome = reply(m, auth, now, out, slot: nil) { w in try w.append(.lifetime, uint32: 0) }
                free(slot, reason: .refreshedToZero, now: now)
                return outcome
            }
            return reply(m, auth, now, out, slot: slot) { w in try w.append(.lifetime, uint32: 0) }
        }
        let lifetime = grantedLifetime(requested)
        a.expiry = now.milliseconds + UInt64(lifetime) * 1000
        slots[slot] = a
        return reply(m, auth, now, out, slot: slot) { w in try w.append(.lifetime, uint32: lifetime) }
    }

    // MARK: CreatePermission (RFC 8656 §10)

    func handleCreatePermission(
        _ m: STUNMessageView, _ slot: Int, _ auth: AuthContext, _ now: CoreTime, _ out: UnsafeMutableRawBufferPointer
    ) -> ClientMessageOutcome {
        let a = slots[slot]!
        var peers: [IPAddress] = []
        var invalid = false
        m.forEachAttribute { t, v in
            if t == .xorPeerAddress {
                if let p = m.decodeXORAddress(v) { peers.append(p.ip) } else { invalid = true }
            }
            return true
        }
        if peers.isEmpty || invalid {
            return reply(m, auth, now, out, slot: slot, error: (400, "Bad Request"))
        }
        if peers.contains(where: { a.relay(for: $0.family) == nil }) {
            return reply(m, auth, now, out, slot: slot, error: (443, "Peer Address Family Mismatch"))
        }
        if peers.contains(where: { !policy.peers.allows($0) }) {
            counters.drop(.peerDenied)
            return reply(m, auth, now, out, slot: slot, error: (403, "Forbidden"))
        }
        let newCount = Set(peers).subtracting(a.permissions.filter { $0.expiry > now.milliseconds }.map(\.peer)).count
        if a.permissions.filter({ $0.expiry > now.milliseconds }).count + newCount
            > configuration.maxPermissionsPerAllocation
        {
            return reply(m, auth, now, out, slot: slot, error: (508, "Insufficient Capacity"))
        }
        for p in peers { installPermission(slot, p, now) }
        return reply(m, auth, now, out, slot: slot)
    }

    func installPermission(_ slot: Int, _ ip: IPAddress, _ now: CoreTime) {
        let expiry = now.milliseconds + UInt64(configuration.permissionLifetime) * 1000
        if let i = slots[slot]!.permissions.firstIndex(where: { $0.peer == ip }) {
            slots[slot]!.permissions[i].expiry = expiry
        } else {
            slots[slot]!.permissions.append(Permission(peer: ip, expiry: expiry))
        }
    }

    // MARK: ChannelBind (RFC 8656 §12.2)

    func handleChannelBind(
        _ m: STUNMessageView, _ slot: Int, _ auth: AuthContext, _ now: CoreTime, _ out: UnsafeMutableRawBufferPointer
    ) -> ClientMessageOutcome {
        let a = slots[slot]!
        guard let numberValue = m.value(of: .channelNumber), let peer = m.xorAddress(.xorPeerAddress) else {
            return reply(m, auth, now, out, slot: slot, error: (400, "Bad Request"))
        }
        let number = numberValue.be16(0)
        let range = configuration.legacyChannelNumbers ? ChannelData.legacyChannelRange : ChannelData.channelRange
        guard range.contains(number) else {
            return reply(m, auth, now, out, slot: slot, error: (400, "Bad Request"))
        }
        let live = a.channels.filter { $0.expiry > now.milliseconds }
        if live.contains(where: { $0.number == number && $0.peer != peer })
            || live.contains(where: { $0.peer == peer && $0.number != number })
        {
            return reply(m, auth, now, out, slot: slot, error: (400, "Bad Request"))
        }
        guard a.relay(for: peer.family) != nil else {
            return reply(m, auth, now, out, slot: slot, error: (443, "Peer Address Family Mismatch"))
        }
        guard policy.peers.allows(peer.ip) else {
            counters.drop(.peerDenied)
            return reply(m, auth, now, out, slot: slot, error: (403, "Forbidden"))
        }
        let isNew = !live.contains { $0.number == number }
        if isNew && live.count >= configuration.maxChannelsPerAllocation {
            return reply(m, auth, now, out, slot: slot, error: (508, "Insufficient Capacity"))
        }
        // The permission the binding installs counts against the allocation's permissions.
        if !a.hasPermission(peer.ip, now: now.milliseconds),
            a.permissions.filter({ $0.expiry > now.milliseconds }).count >= configuration.maxPermissionsPerAllocation
        {
            return reply(m, auth, now, out, slot: slot, error: (508, "Insufficient Capacity"))
        }
        let expiry = now.milliseconds + UInt64(configuration.channelLifetime) * 1000
        slots[slot]!.channels.removeAll { $0.number == number || $0.peer == peer }
        slots[slot]!.channels.append(ChannelBinding(number: number, peer: peer, expiry: expiry))
        installPermission(slot, peer.ip, now)
        return reply(m, auth, now, out, slot: slot)
    }

    // MARK: Connect and ConnectionBind (RFC 6062 §5.2, §5.4)

    func handleConnect(
        _ m: STUNMessageView, _ slot: Int, _ auth: AuthContext, _ now: CoreTime, _ out: UnsafeMutableRawBufferPointer
    ) -> ClientMessageOutcome {
        let a = slots[slot]!
        guard a.relayTransport == 6 else {
            return reply(m, auth, now, out, slot: slot, error: (400, "Not a TCP allocation"))
        }
        guard let peer = m.xorAddress(.xorPeerAddress) else {
            return reply(m, auth, now, out, slot: slot, error: (400, "Bad Request"))
        }
        guard let relay = a.relay(for: peer.family) else {
            return reply(m, auth, now, out, slot: slot, error: (443, "Peer Address Family Mismatch"))
        }
        guard policy.peers.allows(peer.ip) else {
            counters.drop(.peerDenied)
            return reply(m, auth, now, out, slot: slot, error: (403, "Forbidden"))
        }
        if let code = relays.startConnect(slot: slot, relay: relay, peer: peer, transactionID: m.transactionID) {
            return reply(
                m, auth, now, out, slot: slot,
                error: code == 446 ? (446, "Connection Already Exists") : (447, "Connection Timeout or Failure"))
        }
        return .none  // answered by `connectResult` once the connection is made or fails
    }

    /// Writes the answer to a Connect whose TCP connection to the peer succeeded (with
    /// CONNECTION-ID) or failed (447), protected like the allocation's other answers. Returns the
    /// answer's length and the control connection to send it on, or nil if the allocation is gone.
    public func connectResult(
        slot: Int, transactionID: STUNTransactionID, connectionID: UInt32?, now: CoreTime,
        response out: UnsafeMutableRawBufferPointer
    ) -> (length: Int, control: FiveTuple)? {
        guard slot < slots.count, let a = slots[slot] else { return nil }
        if connectionID == nil { counters.countError(447) }
        let type = STUNMessageType(method: .connect, class: connectionID == nil ? .errorResponse : .successResponse)
        do {
            var w = try STUNMessageWriter(into: out, type: type, transactionID: transactionID)
            if let connectionID {
                try w.append(.connectionID, uint32: connectionID)
            } else {
                try w.appendErrorCode(447, reason: "Connection Timeout or Failure")
            }
            try a.key.withUnsafeBytes { k in
                if a.respondWithSHA256 {
                    try w.appendMessageIntegritySHA256(key: k)
                } else {
                    try w.appendMessageIntegrity(key: k)
                }
            }
            return (w.count, a.fiveTuple)
        } catch {
            return nil
        }
    }

    /// Whether a peer may open a TCP connection to the relayed address of `slot` (RFC 6062 §5.3:
    /// only with a permission, and the peer policy applies); the control connection to tell.
    public func inboundConnectionAllowed(slot: Int, peer: TransportAddress, now: CoreTime) -> FiveTuple? {
        guard slot < slots.count, let a = slots[slot], a.hasPermission(peer.ip, now: now.milliseconds),
            policy.peers.allows(peer.ip)
        else {
            counters.drop(.noPermission)
            return nil
        }
        return a.fiveTuple
    }

    func handleConnectionBind(
        _ m: STUNMessageView, _ fiveTuple: FiveTuple, _ auth: AuthContext, _ now: CoreTime,
        _ out: UnsafeMutableRawBufferPointer
    ) -> ClientMessageOutcome {
        guard fiveTuple.transport == .tcp || fiveTuple.transport == .tls, let id = m.uint32(.connectionID),
            relays.bindConnection(id: id, username: auth.username, dataConnection: fiveTuple)
        else {
            return reply(m, auth, now, out, slot: nil, error: (400, "Bad Request"))
        }
        return reply(m, auth, now, out, slot: nil)
    }

    // MARK: Send indication (RFC 8656 §11.2)

    func handleSend(_ m: STUNMessageView, _ fiveTuple: FiveTuple, _ now: CoreTime) -> ClientMessageOutcome {
        counters.requests[CountedMethod.send.rawValue] &+= 1
        guard let slot = byFiveTuple[fiveTuple] else {
            counters.drop(.noAllocation)
            return .none
        }
        guard let peer = m.xorAddress(.xorPeerAddress), let data = m.value(of: .data) else {
            counters.drop(.badIndication)
            return .none
        }
        guard let relay = slots[slot]!.relay(for: peer.family) else {
            counters.drop(.badIndication)
            return .none
        }
        guard slots[slot]!.hasPermission(peer.ip, now: now.milliseconds) else {
            counters.drop(.noPermission)
            return .none
        }
        guard policy.peers.allows(peer.ip) else {
            counters.drop(.peerDenied)
            return .none
        }
        guard chargeClientToPeer(slot, data.count, now) else { return .none }
        counters.relayedPacketsClientToPeer[1] &+= 1
        counters.relayedBytesClientToPeer[1] &+= UInt64(data.count)
        return .relay(handle: relay.handle, peer: peer, payload: data)
    }

    @inline(__always)
    func chargeClientToPeer(_ slot: Int, _ n: Int, _ now: CoreTime) -> Bool {
        if slots[slot]!.bucketIn != nil, !slots[slot]!.bucketIn!.take(n, now: now.milliseconds) {
            counters.drop(.bandwidthExceeded)
            return false
        }
        slots[slot]!.traffic.packetsFromClient &+= 1
        slots[slot]!.traffic.bytesFromClient &+= UInt64(n)
        return true
    }

    // MARK: - The packet path

    /// Where a ChannelData message from a client goes: the relay socket and the bound peer.
    /// Returns nil (and counts the drop) when there is no allocation or the channel is unbound.
    public func routeChannelData(channel: UInt16, length: Int, from fiveTuple: FiveTuple, now: CoreTime)
        -> (handle: Int32, peer: TransportAddress)?
    {
        guard let slot = byFiveTuple[fiveTuple] else {
            counters.drop(.noAllocation)
            return nil
        }
        return routeChannelData(channel: channel, length: length, slot: slot, now: now)
    }

    /// As `routeChannelData(channel:length:from:now:)` for a caller that knows the slot
    /// (stream connections remember theirs).
    public func routeChannelData(channel: UInt16, length: Int, slot: Int, now: CoreTime)
        -> (handle: Int32, peer: TransportAddress)?
    {
        guard let a = slots[slot] else {
            counters.drop(.noAllocation)
            return nil
        }
        guard let peer = a.peer(onChannel: channel, now: now.milliseconds), let relay = a.relay(for: peer.family) else {
            counters.drop(.unboundChannel)
            return nil
        }
        guard a.hasPermission(peer.ip, now: now.milliseconds) else {
            counters.drop(.noPermission)
            return nil
        }
        guard chargeClientToPeer(slot, length, now) else { return nil }
        counters.relayedPacketsClientToPeer[0] &+= 1
        counters.relayedBytesClientToPeer[0] &+= UInt64(length)
        return (relay.handle, peer)
    }

    /// How a datagram of `length` bytes from `peer`, received on the relay socket of `slot`,
    /// reaches the client.
    public func routePeerData(slot: Int, from peer: TransportAddress, length: Int, now: CoreTime) -> PeerRoute {
        guard slot < slots.count, let a = slots[slot] else {
            counters.drop(.noAllocation)
            return .drop
        }
        guard a.hasPermission(peer.ip, now: now.milliseconds) else {
            counters.drop(.noPermission)
            return .drop
        }
        if slots[slot]!.bucketOut != nil, !slots[slot]!.bucketOut!.take(length, now: now.milliseconds) {
            counters.drop(.bandwidthExceeded)
            return .drop
        }
        slots[slot]!.traffic.packetsToClient &+= 1
        slots[slot]!.traffic.bytesToClient &+= UInt64(length)
        if let number = a.channel(to: peer, now: now.milliseconds) {
            counters.relayedPacketsPeerToClient[0] &+= 1
            counters.relayedBytesPeerToClient[0] &+= UInt64(length)
            return .channel(number, a.fiveTuple)
        }
        counters.relayedPacketsPeerToClient[1] &+= 1
        counters.relayedBytesPeerToClient[1] &+= UInt64(length)
        return .indication(a.fiveTuple)
    }

    /// Whether an ICMP error about `peer` on the relay of `slot` may be passed to the client
    /// (RFC 8656 §11.5: only with a permission for the peer).
    public func routeICMP(slot: Int, peer: TransportAddress, now: CoreTime) -> FiveTuple? {
        guard slot < slots.count, let a = slots[slot], a.hasPermission(peer.ip, now: now.milliseconds) else {
            return nil
        }
        return a.fiveTuple
    }

    // MARK: - Lifetimes

    /// Reaps expired allocations, permissions and channels, and closes allocations of clients the
    /// current policy bans and those whose credential was removed (`reviewCredentials`). Called
    /// about once a second; costs nothing per packet.
    public func sweep(now: CoreTime) {
        refreshPolicyIfNeeded()
        let policyChanged = policyChangedSinceSweep
        policyChangedSinceSweep = false
        let t = now.milliseconds
        for slot in slots.indices {
            guard let a = slots[slot] else { continue }
            if a.expiry <= t {
                free(slot, reason: .expired, now: now)
            } else if policy.bannedClients.isBanned(a.fiveTuple.client.ip) {
                free(slot, reason: .banned, now: now)
            } else if let r = a.revokeAfter, r < now.unixSeconds {
                free(slot, reason: .revoked, now: now)
            } else {
                if a.permissions.contains(where: { $0.expiry <= t }) {
                    slots[slot]!.permissions.removeAll { $0.expiry <= t }
                }
                if a.channels.contains(where: { $0.expiry <= t }) { slots[slot]!.channels.removeAll { $0.expiry <= t } }
                if policyChanged {
                    // A reloaded policy applies to permissions already granted, ChannelData included.
                    let peers = policy.peers
                    slots[slot]!.permissions.removeAll { !peers.allows($0.peer) }
                    slots[slot]!.channels.removeAll { !peers.allows($0.peer.ip) }
                }
                if a.lastTransaction != nil && t &- a.lastResponseAt >= Self.transactionMemoryMilliseconds {
                    slots[slot]!.lastTransaction = nil
                    slots[slot]!.lastResponse = []
                }
            }
        }
    }

    /// Ends the allocation on `fiveTuple` (its stream connection closed, or shutdown).
    public func closeAllocation(on fiveTuple: FiveTuple, reason: AllocationEndReason, now: CoreTime) {
        if let slot = byFiveTuple[fiveTuple] { free(slot, reason: reason, now: now) }
    }

    /// Ends every allocation made through the listener `server` over `transport` (a listener
    /// handed over to another instance).
    public func closeAllocations(
        servedAt server: TransportAddress, transport: TransportProtocol, reason: AllocationEndReason, now: CoreTime
    ) {
        for slot in slots.indices {
            if let a = slots[slot], a.fiveTuple.server == server, a.fiveTuple.transport == transport {
                free(slot, reason: reason, now: now)
            }
        }
    }

    /// Ends every allocation of this shard.
    public func closeAll(reason: AllocationEndReason, now: CoreTime) {
        for slot in slots.indices where slots[slot] != nil { free(slot, reason: reason, now: now) }
    }

    func free(_ slot: Int, reason: AllocationEndReason, now: CoreTime) {
        guard let a = slots[slot] else { return }
        for r in a.relays { relays.closeRelay(r) }
        slots[slot] = nil
        byFiveTuple[a.fiveTuple] = nil
        freeSlots.append(slot)
        shared.release(username: a.username)
        events.append(
            .ended(
                fiveTuple: a.fiveTuple, username: a.username, durationMilliseconds: now.milliseconds &- a.createdAt,
                traffic: a.traffic, reason: reason))
    }
}

/// Per-source limits on unauthenticated answers, in a fixed table: bounded memory whatever the
/// number of sources, and no per-client state beyond a hashed bucket.
///
/// Each bucket (a source IP, hashed) holds two budgets, refilled every second:
/// - `ratePerSecond` answers of any kind (Binding, challenges, errors);
/// - once those are spent, `overflowBytesPerSecond` bytes of challenges (401/438) only.
///
/// An attacker who spoofs a victim's IP from other ports spends the first budget at once; the
/// second keeps answering challenges, so the victim's own Allocate still gets its 401 while the
/// bytes sent towards that IP stay bounded by `ratePerSecond` answers plus
/// `overflowBytesPerSecond` bytes per second (per shard).
struct SourceRateLimiter {
    struct Bucket {
        var tokens: Int32
        var overflowBytes: Int32
        var lastRefill: UInt64
    }
    /// What the limiter allows for one answer.
    enum Grant {
        /// Within the source's answers for this second.
        case answer
        /// A challenge from the overflow byte budget of this bucket (charge it once written).
        case overflow(bucket: Int)
        /// Nothing more to this source this second.
        case refused
    }
    var buckets: [Bucket]
    let ratePerSecond: Int32
    let overflowBytesPerSecond: Int32

    init(ratePerSecond: Int, overflowBytesPerSecond: Int = 0, tableSize: Int = 4096) {
        self.ratePerSecond = Int32(clamping: ratePerSecond)
        self.overflowBytesPerSecond = Int32(clamping: overflowBytesPerSecond)
        buckets = Array(
            repeating: Bucket(
                tokens: Int32(clamping: ratePerSecond), overflowBytes: Int32(clamping: overflowBytesPerSecond),
                lastRefill: 0),
            count: tableSize)
    }

    mutating func allow(_ ip: IPAddress, now: UInt64, challenge: Bool) -> Grant {
        if ratePerSecond <= 0 { return .answer }
        var h = Hasher()
        h.combine(ip)
        let i = Int(UInt(bitPattern: h.finalize()) % UInt(buckets.count))
        let elapsed = now &- buckets[i].lastRefill
        if elapsed >= 1000 {
            buckets[i].tokens = ratePerSecond
            buckets[i].overflowBytes = overflowBytesPerSecond
            buckets[i].lastRefill = now
        }
        if buckets[i].tokens > 0 {
            buckets[i].tokens -= 1
            return .answer
        }
        return challenge && buckets[i].overflowBytes > 0 ? .overflow(bucket: i) : .refused
    }

    /// Charges a challenge sent from the overflow budget.
    mutating func spendOverflow(_ bucket: Int, bytes: Int) {
        buckets[bucket].overflowBytes -= Int32(clamping: bytes)
    }
}

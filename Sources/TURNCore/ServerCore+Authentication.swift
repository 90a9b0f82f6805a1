// Binding and authentication (RFC 8489 §7.3, §9.2.4): who a request is, in the RFC's order,
// and the small, rate-limited answers an unauthenticated source may get.
import STUNCodec

extension TURNServerCore {
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
        _ m: STUNMessageView, _ fiveTuple: FiveTuple, _ now: CoreTime, _ code: STUNErrorCode, _ reason: String,
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
        _ m: STUNMessageView, _ fiveTuple: FiveTuple, _ now: CoreTime, _ code: STUNErrorCode, _ reason: String,
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
}

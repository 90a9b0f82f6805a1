import STUNCodec

/// Removal revokes: an allocation lives only as long as the credential it was made with is
/// configured. Each allocation remembers its key (so that a REST secret can rotate without
/// cutting calls); after every policy change that key is checked against the credentials now in
/// force, and an allocation whose key can no longer be derived is marked (`revokeAfter`) and
/// ended by the sweep:
///
/// - a static user removed, or given another password or key (a realm change changes every
///   key): at the next sweep;
/// - a REST secret no longer listed: once the username's expiry has passed. Until then the
///   allocation may refresh with its remembered key, which is what a rotation needs.
///
/// Invariant: after a policy change, an allocation whose `revokeAfter` is nil has a key derivable
/// from the credentials in force. Runs on policy changes only, never per packet.
extension TURNServerCore {
    /// Marks (or unmarks) every allocation after the policy changed from `previous`.
    func reviewCredentials(previous: CorePolicy) {
        let credentials = policy.credentials
        for slot in slots.indices {
            guard let a = slots[slot] else { continue }
            if credentials.derives(a.key, for: a.username) {
                slots[slot]!.revokeAfter = nil
            } else if a.revokeAfter == nil {
                slots[slot]!.revokeAfter = Self.revocationTime(
                    username: a.username, current: credentials, previous: previous.credentials)
            }
        }
    }

    /// When an allocation of `username` whose key is gone ends: now for a static user (or
    /// anything that is not a REST username), at its expiry for a REST username.
    static func revocationTime(username: String, current: CredentialStore, previous: CredentialStore) -> Int64 {
        if previous.users[username] != nil || current.users[username] != nil { return .min }
        let rest = current.rest ?? previous.rest
        return rest?.expiry(of: username) ?? .min
    }
}

extension CredentialStore {
    /// Whether `key` (an MD5 or SHA-256 long-term key) is the key of `username` under these
    /// credentials: the static user's, or one derived from a configured REST secret.
    public func derives(_ key: [UInt8], for username: String) -> Bool {
        let algorithm: PasswordAlgorithm = key.count == 32 ? .sha256 : .md5
        if let user = users[username] { return user.key(for: algorithm) == key }
        guard let rest, rest.expiry(of: username) != nil else { return false }
        for secret in rest.secrets {
            let password = RESTCredentials.password(secret: secret, username: username)
            if UserKeys(username: username, realm: realm, password: password).key(for: algorithm) == key { return true }
        }
        return false
    }
}

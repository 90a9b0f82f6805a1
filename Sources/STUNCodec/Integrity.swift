internal import CTraverseCrypto

/// Checking MESSAGE-INTEGRITY and MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.5, §14.6).
extension STUNMessageView {
    /// Whether MESSAGE-INTEGRITY (HMAC-SHA1) is present and correct for `key`; compared in constant time.
    public func verifyMessageIntegrity(key: UnsafeRawBufferPointer) -> Bool {
        guard let offset = integrityOffset else { return false }
        var mac = (UInt64(0), UInt64(0), UInt32(0))
        return withUnsafeMutableBytes(of: &mac) { out -> Bool in
            Self.mac(bytes, upTo: offset, macLength: 20, key: key, sha256: false, into: out.baseAddress!)
            return traverse_constant_time_equal(out.baseAddress!, bytes.baseAddress! + offset + 4, 20) == 1
        }
    }

    /// Whether MESSAGE-INTEGRITY-SHA256 is present and correct for `key`; compared in constant time
    /// over the truncated length the sender chose.
    public func verifyMessageIntegritySHA256(key: UnsafeRawBufferPointer) -> Bool {
        guard let offset = integritySHA256Offset else { return false }
        let n = Int(bytes.be16(offset + 2))
        var mac = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        return withUnsafeMutableBytes(of: &mac) { out -> Bool in
            Self.mac(bytes, upTo: offset, macLength: n, key: key, sha256: true, into: out.baseAddress!)
            return traverse_constant_time_equal(out.baseAddress!, bytes.baseAddress! + offset + 4, n) == 1
        }
    }

    /// Computes the HMAC for an integrity attribute that starts at `offset`: over the header with
    /// its length patched to end after that attribute, then the attributes before it.
    static func mac(
        _ bytes: UnsafeRawBufferPointer, upTo offset: Int, macLength: Int, key: UnsafeRawBufferPointer, sha256: Bool,
        into out: UnsafeMutableRawPointer
    ) {
        var header = (UInt64(0), UInt64(0), UInt32(0))
        withUnsafeMutableBytes(of: &header) { h in
            h.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[0..<stunHeaderSize]))
            h.storeBytes(
                of: UInt16(offset + 4 + macLength - stunHeaderSize).bigEndian, toByteOffset: 2, as: UInt16.self)
            let body = bytes.baseAddress! + stunHeaderSize
            let bodyLength = offset - stunHeaderSize
            if sha256 {
                traverse_hmac_sha256(
                    key.baseAddress, key.count, h.baseAddress, stunHeaderSize, body, bodyLength,
                    out.assumingMemoryBound(to: UInt8.self))
            } else {
                traverse_hmac_sha1(
                    key.baseAddress, key.count, h.baseAddress, stunHeaderSize, body, bodyLength,
                    out.assumingMemoryBound(to: UInt8.self))
            }
        }
    }
}

/// Digests, HMACs and random bytes for long-term keys (RFC 8489 §9.2.2, §14.4), REST passwords
/// and nonces, computed by OpenSSL with its state on the stack. Each digest is returned in a new
/// array.
public enum STUNDigest {
    /// MD5 of `data`.
    public static func md5(_ data: UnsafeRawBufferPointer) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 16)
        out.withUnsafeMutableBufferPointer { traverse_md5(data.baseAddress, data.count, $0.baseAddress) }
        return out
    }

    /// SHA-256 of `data`.
    public static func sha256(_ data: UnsafeRawBufferPointer) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        out.withUnsafeMutableBufferPointer { traverse_sha256(data.baseAddress, data.count, $0.baseAddress) }
        return out
    }

    /// HMAC-SHA1 of `data` under `key` (REST credentials, stateless nonces).
    public static func hmacSHA1(key: [UInt8], _ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 20)
        key.withUnsafeBytes { k in
            data.withUnsafeBytes { d in
                out.withUnsafeMutableBufferPointer {
                    traverse_hmac_sha1(k.baseAddress, k.count, d.baseAddress, d.count, nil, 0, $0.baseAddress)
                }
            }
        }
        return out
    }

    /// HMAC-SHA256 of `data` under `key`.
    public static func hmacSHA256(key: [UInt8], _ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        key.withUnsafeBytes { k in
            data.withUnsafeBytes { d in
                out.withUnsafeMutableBufferPointer {
                    traverse_hmac_sha256(k.baseAddress, k.count, d.baseAddress, d.count, nil, 0, $0.baseAddress)
                }
            }
        }
        return out
    }

    /// Constant-time equality of two byte buffers (false when lengths differ).
    public static func constantTimeEqual(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        guard a.count == b.count else { return false }
        if a.count == 0 { return true }
        return traverse_constant_time_equal(a.baseAddress, b.baseAddress, a.count) == 1
    }

    /// Cryptographically strong random bytes.
    public static func randomBytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes {
            precondition(traverse_random_bytes($0.baseAddress, count) == 1, "RAND_bytes failed")
        }
        return out
    }
}

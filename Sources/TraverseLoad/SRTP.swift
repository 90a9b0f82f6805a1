internal import CSRTP
internal import CSRTPCrypto
import Synchronization

/// What `SRTPSession.unprotect` found.
public enum SRTPUnprotectResult: Equatable, Sendable {
    /// Authentic: the plaintext RTP packet is `length` bytes long, in place.
    case ok(length: Int)
    /// The authentication tag did not match: the packet was corrupted (or forged).
    case authenticationFailure
    /// The replay check rejected a packet index already seen: a duplicate.
    case replay
    /// The index is older than the replay window: reordered too far to accept.
    case tooOld
    /// Any other libsrtp error, with its status code.
    case otherError(Int32)
}

/// Errors from setting up libsrtp.
public struct SRTPError: Error, CustomStringConvertible, Sendable {
    /// The libsrtp status code.
    public let status: Int32
    /// What was being done.
    public let operation: String
    /// A human-readable summary.
    public var description: String { "libsrtp \(operation) failed with status \(status)" }
}

/// One direction of one libsrtp session with the AES_CM_128_HMAC_SHA1_80 profile: an outbound
/// session protects every SSRC it is given, an inbound one unprotects every SSRC it sees.
///
/// Not thread-safe: each session is used by one thread (the generator's event loop).
public final class SRTPSession {
    /// The master key plus master salt size of AES_CM_128_HMAC_SHA1_80 (16 + 14 bytes).
    public static let masterKeyLength = 30
    /// The authentication tag SRTP adds to each packet (HMAC-SHA1 truncated to 80 bits).
    public static let tagLength = 10
    /// Extra space a protected packet may need (the tag, plus libsrtp's maximum trailer).
    public static let maxTrailer = Int(SRTP_MAX_TRAILER_LEN)

    private static let initialised: Mutex<Result<Void, SRTPError>?> = Mutex(nil)

    private var session: srtp_t?

    /// Initialises libsrtp once per process, then replaces its AES-ICM and HMAC-SHA1 with the
    /// OpenSSL ones of CSRTPCrypto (Debian's libsrtp2 uses NSS, which sets up a PKCS #11 context
    /// per packet). libsrtp accepts a replacement only after its known-answer self test passes.
    public static func initialise() throws(SRTPError) {
        let result = initialised.withLock { state -> Result<Void, SRTPError> in
            if let s = state { return s }
            let s = initialiseOnce()
            state = s
            return s
        }
        try result.get()
    }

    private static func initialiseOnce() -> Result<Void, SRTPError> {
        let status = Int32(srtp_init().rawValue)
        guard status == 0 else { return .failure(SRTPError(status: status, operation: "srtp_init")) }
        let replaced = traverse_srtp_use_openssl()
        guard replaced == 0 else {
            return .failure(SRTPError(status: replaced, operation: "srtp_replace (OpenSSL crypto)"))
        }
        return .success(())
    }

    /// Creates a session. `key` is the 30-byte master key and salt; `inbound` selects unprotect;
    /// `replayWindow` is the receiver's replay window in packets (64…32768).
    public init(key: [UInt8], inbound: Bool, replayWindow: Int = 1024) throws(SRTPError) {
        precondition(key.count == Self.masterKeyLength, "SRTP master key must be 30 bytes")
        try Self.initialise()
        var policy = srtp_policy_t()
        // AES_CM_128_HMAC_SHA1_80 is libsrtp's default profile (the header's macro for it is not imported).
        srtp_crypto_policy_set_rtp_default(&policy.rtp)
        srtp_crypto_policy_set_rtcp_default(&policy.rtcp)
        policy.ssrc.type = inbound ? ssrc_any_inbound : ssrc_any_outbound
        policy.window_size = UInt(max(64, min(0x8000, replayWindow)))
        policy.allow_repeat_tx = 0
        var keyCopy = key
        var created: srtp_t? = nil
        let status = keyCopy.withUnsafeMutableBufferPointer { kb -> Int32 in
            policy.key = kb.baseAddress
            return Int32(srtp_create(&created, &policy).rawValue)
        }
        guard status == 0 else { throw SRTPError(status: status, operation: "srtp_create") }
        session = created
    }

    deinit {
        if let s = session { srtp_dealloc(s) }
    }

    /// Protects the RTP packet of `length` bytes at `packet` in place; the buffer must have
    /// `maxTrailer` spare bytes after it. Returns the SRTP length, or nil on error.
    @inline(__always)
    public func protect(_ packet: UnsafeMutableRawPointer, length: Int) -> Int? {
        var n = Int32(length)
        let status = srtp_protect(session, packet, &n)
        return status == srtp_err_status_ok ? Int(n) : nil
    }

    /// Unprotects the SRTP packet of `length` bytes at `packet` in place.
    @inline(__always)
    public func unprotect(_ packet: UnsafeMutableRawPointer, length: Int) -> SRTPUnprotectResult {
        var n = Int32(length)
        let status = srtp_unprotect(session, packet, &n)
        switch status {
        case srtp_err_status_ok: return .ok(length: Int(n))
        case srtp_err_status_auth_fail: return .authenticationFailure
        case srtp_err_status_replay_fail: return .replay
        case srtp_err_status_replay_old: return .tooOld
        default: return .otherError(Int32(status.rawValue))
        }
    }
}

/// The RTP packets the generator sends, laid out so that each costs one header write, one
/// payload write and one `srtp_protect`.
///
/// RTP header (12 bytes): V=2, payload type, 16-bit sequence, timestamp, SSRC. The payload starts
/// with a 24-byte probe: magic "TVLD", the 64-bit stream sequence number, the monotonic send time
/// in nanoseconds, a step index (ramp mode) and the stream kind; the rest is filler.
public enum RTPProbe {
    /// RTP fixed header size.
    public static let headerSize = 12
    /// The probe at the start of the payload.
    public static let probeSize = 24
    /// "TVLD".
    public static let magic: UInt32 = 0x5456_4C44
    /// The smallest RTP packet that carries a probe.
    public static let minimumPacket = headerSize + probeSize

    /// Writes a complete RTP packet of `length` bytes (header, probe, filler) at `out`.
    @inline(__always)
    public static func write(
        to out: UnsafeMutableRawPointer, length: Int, payloadType: UInt8, ssrc: UInt32, sequence: UInt64,
        rtpTimestamp: UInt32, sendTime: UInt64, step: UInt16, kind: UInt8, marker: Bool
    ) {
        out.storeBytes(of: UInt8(0x80), toByteOffset: 0, as: UInt8.self)
        out.storeBytes(of: (marker ? 0x80 : 0) | (payloadType & 0x7F), toByteOffset: 1, as: UInt8.self)
        out.storeBytes(of: UInt16(truncatingIfNeeded: sequence).bigEndian, toByteOffset: 2, as: UInt16.self)
        out.storeBytes(of: rtpTimestamp.bigEndian, toByteOffset: 4, as: UInt32.self)
        out.storeBytes(of: ssrc.bigEndian, toByteOffset: 8, as: UInt32.self)
        out.storeBytes(of: magic.bigEndian, toByteOffset: 12, as: UInt32.self)
        out.storeBytes(of: sequence.bigEndian, toByteOffset: 16, as: UInt64.self)
        out.storeBytes(of: sendTime.bigEndian, toByteOffset: 24, as: UInt64.self)
        out.storeBytes(of: step.bigEndian, toByteOffset: 32, as: UInt16.self)
        out.storeBytes(of: kind, toByteOffset: 34, as: UInt8.self)
        out.storeBytes(of: UInt8(0), toByteOffset: 35, as: UInt8.self)
        // Filler: a pattern that does not compress to zeros; encryption hides it anyway.
        var i = minimumPacket
        while i + 8 <= length {
            out.storeBytes(of: UInt64(0xA5A5_5A5A_C3C3_3C3C), toByteOffset: i, as: UInt64.self)
            i += 8
        }
        while i < length {
            out.storeBytes(of: UInt8(0x5A), toByteOffset: i, as: UInt8.self)
            i += 1
        }
    }

    /// A decoded probe.
    public struct Probe: Equatable, Sendable {
        /// The SSRC from the RTP header.
        public var ssrc: UInt32
        /// The 64-bit stream sequence number.
        public var sequence: UInt64
        /// Monotonic send time in nanoseconds.
        public var sendTime: UInt64
        /// The ramp step the packet was sent in.
        public var step: UInt16
        /// The stream kind (0 audio, 1 video, 2 blast).
        public var kind: UInt8
    }

    /// Reads the probe from a plaintext RTP packet, or nil if it carries none.
    @inline(__always)
    public static func read(_ p: UnsafeRawPointer, length: Int) -> Probe? {
        guard length >= minimumPacket,
            UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 12, as: UInt32.self)) == magic
        else { return nil }
        return Probe(
            ssrc: UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt32.self)),
            sequence: UInt64(bigEndian: p.loadUnaligned(fromByteOffset: 16, as: UInt64.self)),
            sendTime: UInt64(bigEndian: p.loadUnaligned(fromByteOffset: 24, as: UInt64.self)),
            step: UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 32, as: UInt16.self)),
            kind: p.load(fromByteOffset: 34, as: UInt8.self))
    }
}

import COpenSSL
import CTraverseTLS
import STUNCodec

#if canImport(Glibc)
    import Glibc
#endif

/// Caps on DTLS sessions, separate from the TCP/TLS connection budget so that a flood on one
/// transport never locks out clients of the other. Totals are server-wide; per-source caps are
/// counted per shard (the kernel hashes a client's 5-tuple to one shard).
public struct DTLSLimits: Sendable, Equatable {
    /// Sessions (in their handshake or established) on the whole server.
    public var maxSessions = 10_000
    /// Sessions from one client IP.
    public var maxSessionsPerSource = 256
    /// Sessions still in their handshake on the whole server.
    public var maxHandshakes = 1_000
    /// Sessions still in their handshake from one client IP.
    public var maxHandshakesPerSource = 16

    public init() {}
}

/// DTLS admission counters of one shard (summed across shards when scraped).
public struct DTLSCounters: Sendable, Equatable {
    /// ClientHellos answered with a HelloVerifyRequest (no cookie, or a stale or forged one).
    public var helloVerifyRequests: UInt64 = 0
    /// Datagrams from unknown clients dropped before any state: not a ClientHello, unparsable,
    /// or DTLS not configured.
    public var hellosDropped: UInt64 = 0
    /// Clients that echoed a valid cookie but were over a session or handshake cap.
    public var sessionsRefused: UInt64 = 0

    public init() {}

    /// Adds another shard's counters.
    public mutating func add(_ o: DTLSCounters) {
        helloVerifyRequests &+= o.helloVerifyRequests
        hellosDropped &+= o.hellosDropped
        sessionsRefused &+= o.sessionsRefused
    }
}

/// The DTLS door of one shard: answers ClientHellos statelessly until one carries a valid
/// cookie, admits sessions within their caps, and owns the buffers that all the shard's sessions
/// share (decrypted records, encrypted output).
///
/// Invariant: nothing is allocated or remembered for a client before it has echoed a cookie bound
/// to its address and port (proof that it receives datagrams there). The one `SSL` used to
/// answer hellos is reused for every unknown client; it becomes the session of the first client
/// that proves its address, and a new one is made for the next. Confined to the shard's queue.
final class DTLSGate {
    static let mtu = 1200
    /// Room for one decrypted record (a DTLS record carries at most 2^14 bytes; OpenSSL's reads
    /// are bounded by this capacity).
    static let plainCapacity = 65_536 + 64

    let limits: DTLSLimits
    /// Sessions and handshakes in progress, per source on this shard and server-wide.
    private(set) var sessions: SourceAdmission
    private(set) var handshakes: SourceAdmission
    var counters = DTLSCounters()
    /// Decrypted records of whichever session is being read (one at a time on the queue).
    let plain: UnsafeMutableRawPointer
    /// Encrypted output of whichever session is flushing.
    private(set) var output: UnsafeMutableRawBufferPointer
    private var scratch: OpaquePointer?
    private var scratchContext: TLSContext?
    private let scratchAddress: OpaquePointer

    init(limits: DTLSLimits, sessionBudget: ConnectionBudget, handshakeBudget: ConnectionBudget) {
        self.limits = limits
        sessions = SourceAdmission(maxPerSource: limits.maxSessionsPerSource, budget: sessionBudget)
        handshakes = SourceAdmission(maxPerSource: limits.maxHandshakesPerSource, budget: handshakeBudget)
        plain = .allocate(byteCount: Self.plainCapacity, alignment: 16)
        output = .allocate(byteCount: 16_384, alignment: 16)
        scratchAddress = BIO_ADDR_new()
    }

    deinit {
        if let scratch { SSL_free(scratch) }
        BIO_ADDR_free(scratchAddress)
        plain.deallocate()
        output.deallocate()
    }

    /// What to do with a datagram from a client that has no session.
    enum Verdict {
        /// Send the HelloVerifyRequest now in `output[0..<length]`.
        case answer(length: Int)
        /// Nothing to send; counted.
        case drop
        /// A valid cookie: this `SSL` holds the ClientHello and becomes the client's session;
        /// its session and handshake slots are taken.
        case admit(OpaquePointer)
    }

    /// Runs the cookie exchange for one datagram from `client`, without keeping anything for it
    /// unless it proves its address and is within the caps.
    func receive(_ datagram: UnsafeRawBufferPointer, from client: TransportAddress, context: TLSContext?) -> Verdict {
        guard let context, DTLSRecord.startsWithClientHello(datagram), let ssl = scratchSession(context) else {
            counters.hellosDropped &+= 1
            return .drop
        }
        let r = withUnsafeTemporaryAllocation(byteCount: 18, alignment: 8) { peer in
            let count = Self.writePeer(client, to: peer)
            return traverse_dtls_listen(
                ssl, scratchAddress, datagram.baseAddress, datagram.count, peer.baseAddress, count)
        }
        if r != 1 {
            let length = takeOutput(ssl)
            if length > 0 {
                counters.helloVerifyRequests &+= 1
                return .answer(length: length)
            }
            counters.hellosDropped &+= 1
            return .drop
        }
        // The client proved its address: admit it within the caps, or forget it.
        let ip = client.ip
        guard sessions.hasRoom(ip), handshakes.hasRoom(ip), sessions.admit(ip) else { return refuse() }
        guard handshakes.admit(ip) else {
            sessions.release(ip)
            return refuse()
        }
        scratch = nil  // the session owns it now
        return .admit(ssl)
    }

    /// A session of `ip` finished its handshake: its handshake slot is free.
    func handshakeFinished(_ ip: IPAddress) {
        handshakes.release(ip)
    }

    /// A session of `ip` closed (`handshaking`: before its handshake finished).
    func sessionClosed(_ ip: IPAddress, handshaking: Bool) {
        if handshaking { handshakeFinished(ip) }
        sessions.release(ip)
    }

    /// Moves what `ssl` has produced into `output`, growing it if a flight is larger; the length taken.
    func takeOutput(_ ssl: OpaquePointer) -> Int {
        let pending = traverse_dtls_output_pending(ssl)
        if pending == 0 { return 0 }
        if pending > output.count {
            output.deallocate()
            output = .allocate(byteCount: pending, alignment: 16)
        }
        return traverse_dtls_take_output(ssl, output.baseAddress, output.count)
    }

    /// The bytes the cookie is bound to: the client's IP address, then its port (big-endian).
    static func writePeer(_ client: TransportAddress, to out: UnsafeMutableRawBufferPointer) -> Int {
        var n = 0
        switch client.ip {
        case .v4(let a):
            out.storeBytes(of: a.bigEndian, toByteOffset: 0, as: UInt32.self)
            n = 4
        case .v6(let hi, let lo):
            out.storeBytes(of: hi.bigEndian, toByteOffset: 0, as: UInt64.self)
            out.storeBytes(of: lo.bigEndian, toByteOffset: 8, as: UInt64.self)
            n = 16
        }
        out.storeBytes(of: client.port.bigEndian, toByteOffset: n, as: UInt16.self)
        return n + 2
    }

    private func refuse() -> Verdict {
        counters.sessionsRefused &+= 1
        // The scratch holds this client's hello: start the next client from a clean one.
        if let scratch { SSL_free(scratch) }
        scratch = nil
        return .drop
    }

    /// The scratch session, made anew after a certificate reload or after it became a session.
    private func scratchSession(_ context: TLSContext) -> OpaquePointer? {
        if let scratch, scratchContext === context { return scratch }
        if let scratch { SSL_free(scratch) }
        scratch = traverse_dtls_new(context.context, Int32(Self.mtu))
        scratchContext = context
        return scratch
    }
}

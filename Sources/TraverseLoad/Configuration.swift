public import STUNCodec

/// How the generator offers load.
public enum LoadMode: String, Sendable, Codable, CaseIterable {
    /// N calls of audio (and video) at their real rates for a duration.
    case paced
    /// Every client sends as fast as it can, in batches.
    case blast
    /// Offered packets/s rise step by step until loss passes a threshold; reports the knee.
    case ramp
}

/// Where the credentials come from.
public enum CredentialSource: Sendable, Equatable {
    /// One static user for every client.
    case staticUser(username: String, password: String)
    /// TURN REST shared secret: each client gets `<expiry>:<userID>-<n>` (or `<expiry>:<userID>` when
    /// `sameUser`), valid for `ttl` seconds.
    case restSecret(secret: String, userID: String, ttl: UInt64, sameUser: Bool)

    /// The credentials of client `index` at Unix time `now`.
    public func credentials(client index: Int, now: UInt64) -> TURNCredentials {
        switch self {
        case .staticUser(let u, let p): return TURNCredentials(username: u, password: p)
        case .restSecret(let secret, let userID, let ttl, let sameUser):
            return TURNCredentials(
                restSecret: secret, userID: sameUser ? userID : "\(userID)-\(index)", expiry: now + ttl)
        }
    }
}

/// Everything a run needs. Limits are enforced by `validate()`.
public struct LoadConfiguration: Sendable {
    /// Longest run accepted, in seconds.
    public static let maxDuration = 600.0
    /// Most calls accepted (each is two clients, each with its own socket and allocation).
    public static let maxCalls = 1000

    /// The TURN server.
    public var url: TURNURL
    /// Credentials.
    public var credentials: CredentialSource
    /// Load mode.
    public var mode: LoadMode = .paced
    /// Calls (pairs of TURN clients).
    public var calls: Int = 10
    /// Seconds of media (for ramp: the longest the ramp may take).
    public var duration: Double
    /// Send audio in paced mode.
    public var audio = true
    /// SRTP audio packet size in bytes.
    public var audioPacketSize = 160
    /// Audio packets per second per direction.
    public var audioPacketsPerSecond = 50
    /// Video bitrate per direction in kbit/s (0: no video).
    public var videoKbps = 0
    /// Video frames per second.
    public var videoFPS = 30
    /// Largest SRTP video packet.
    public var maxVideoPacket = 1200
    /// SRTP packet size in blast and ramp modes.
    public var packetSize = 200
    /// Packets each client queues per sendmmsg in blast mode.
    public var blastBatch = 32
    /// Send indications instead of ChannelData.
    public var useSendIndications = false
    /// Seconds between refreshes of allocations, permissions and channel bindings.
    public var refreshInterval = 5.0
    /// Requested allocation lifetime.
    public var allocationLifetime: UInt32 = 600
    /// Flip one byte of one protected packet (debug: shows corruption is detected).
    public var corruptOne = false
    /// Ramp: first offered rate (packets/s over all clients).
    public var rampStartPPS = 5_000.0
    /// Ramp: increase per step.
    public var rampStepPPS = 5_000.0
    /// Ramp: seconds per step.
    public var rampStepSeconds = 2.0
    /// Ramp: loss ratio that ends the ramp (0.001 = 0.1 %).
    public var lossThreshold = 0.001
    /// Seconds to keep receiving after sending stops.
    public var drainSeconds = 0.5
    /// Seconds allowed for allocation, permissions and channel bindings.
    public var setupTimeout = 15.0
    /// Socket buffer size (each direction).
    public var socketBufferBytes = 4 << 20
    /// SRTP replay window at the receivers.
    public var replayWindow = 1024
    /// A process to sample (CPU time, peak RSS) over the media phase: the server under test.
    public var serverPID: Int32? = nil
    /// Accept a target outside loopback.
    public var allowNonLoopback = false
    /// Echo peers. Empty: each call's two clients send to each other's relayed address. Not empty:
    /// every client permits and binds a channel to one of these (client i to peer i mod count),
    /// which sends each datagram back (turnutils_peer): the client receives its own packets, and
    /// each crosses the relay twice, client → peer and peer → client.
    public var peers: [TransportAddress] = []
    /// With `peers`: no TURN server at all. Each client sends its SRTP straight to its echo peer
    /// and receives the echo: the same load and the same echo work without a relay, the baseline
    /// a relay's cost is measured against.
    public var direct = false

    /// A configuration with the required fields.
    public init(url: TURNURL, credentials: CredentialSource, duration: Double) {
        self.url = url
        self.credentials = credentials
        self.duration = duration
    }

    /// Sets `peers` from `IP:PORT` / `[IPv6]:PORT` texts.
    public mutating func setPeers(_ texts: [String]) throws(Invalid) {
        var parsed: [TransportAddress] = []
        for text in texts {
            guard let address = TransportAddress(text) else {
                throw Invalid(description: "--peer must be IP:PORT or [IPv6]:PORT, not \(text)")
            }
            parsed.append(address)
        }
        peers = parsed
    }

    /// Why a configuration was refused.
    public struct Invalid: Error, CustomStringConvertible, Sendable {
        /// The reason.
        public let description: String
    }

    /// Checks bounds and the loopback rule.
    public func validate() throws(Invalid) {
        for target in [url.server] + peers where !(target.ip.isLoopback || allowNonLoopback) {
            throw Invalid(
                description:
                    "refusing target \(target): not loopback (127.0.0.0/8, ::1); pass --allow-non-loopback to drive it"
            )
        }
        guard !direct || !peers.isEmpty else { throw Invalid(description: "--direct needs at least one --peer") }
        guard !direct || !useSendIndications else {
            throw Invalid(description: "--direct sends no TURN framing: it excludes --send-indications")
        }
        guard duration > 0, duration <= Self.maxDuration else {
            throw Invalid(description: "--duration must be in (0, \(Int(Self.maxDuration))] seconds")
        }
        guard calls >= 1, calls <= Self.maxCalls else {
            throw Invalid(description: "--calls must be in 1...\(Self.maxCalls)")
        }
        guard packetSize >= RTPProbe.minimumPacket + SRTPSession.tagLength, packetSize <= 1400 else {
            throw Invalid(
                description: "--packet-size must be in \(RTPProbe.minimumPacket + SRTPSession.tagLength)...1400")
        }
        guard audioPacketSize >= RTPProbe.minimumPacket + SRTPSession.tagLength, audioPacketSize <= 1400 else {
            throw Invalid(description: "audio packet size out of range")
        }
        guard maxVideoPacket >= 100, maxVideoPacket <= 1400 else {
            throw Invalid(description: "--max-video-packet must be in 100...1400")
        }
        guard videoKbps >= 0, videoKbps <= 50_000, videoFPS >= 1, videoFPS <= 120 else {
            throw Invalid(description: "video bitrate must be in 0...50000 kbit/s and fps in 1...120")
        }
        guard mode != .paced || audio || videoKbps > 0 else {
            throw Invalid(description: "paced mode needs audio or video")
        }
        guard rampStartPPS > 0, rampStepPPS > 0, rampStepSeconds >= 0.5, lossThreshold >= 0 else {
            throw Invalid(description: "ramp parameters out of range")
        }
        guard blastBatch >= 1, blastBatch <= 256 else { throw Invalid(description: "--batch must be in 1...256") }
        guard refreshInterval >= 1 else { throw Invalid(description: "--refresh-interval must be at least 1 s") }
    }
}

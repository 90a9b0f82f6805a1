// The load generator's engine: its endpoints (one per emulated client), its state, and the run
// from set-up through media and drain to the report; each phase lives in its own file beside this
// one (Engine+Setup, Engine+Media, Engine+Receive, Engine+Report).
// Invariant: one thread drives everything (non-blocking sockets, one poll set); nothing here is
// shared across threads.
import Histogram
import STUNCodec
import TraverseSystem

#if canImport(Glibc)
    import Glibc
#endif

/// Stream kinds carried in the probe and the low byte of the SSRC.
enum StreamKind: UInt8 {
    case audio = 0
    case video = 1
    case probe = 2
}

/// One outgoing RTP stream of a client.
struct SendStream {
    var kind: StreamKind
    var ssrc: UInt32
    var payloadType: UInt8
    /// Next send time (monotonic ns).
    var nextDue: UInt64
    /// Time between sending events (ns).
    var interval: UInt64
    /// Packets per event (a video frame is split in several).
    var packetsPerEvent: Int
    /// Plaintext RTP length of each packet.
    var rtpLength: Int
    var rtpTimestampStep: UInt32
    var sequence: UInt64 = 0
    var rtpTimestamp: UInt32 = 0
}

/// One incoming RTP stream of a client.
struct ReceiveStream {
    var tracker = SequenceTracker()
    var jitter = JitterEstimator()
}

/// What a client is doing during setup.
enum ClientPhase: Equatable {
    case allocating
    case waitingForPeer
    case permitting
    case binding
    case ready
    case failed(String)
}

/// One emulated WebRTC endpoint: a TURN client with its own socket, allocation and SRTP sessions.
final class Endpoint {
    let index: Int
    let peerIndex: Int
    var socket: ConnectedUDPSocket
    var client: TURNClient
    /// Times this client moved to a new local port after a 437 (the server still held an allocation
    /// for the old 5-tuple, e.g. one left over from an earlier run).
    var mismatches = 0
    var phase: ClientPhase = .allocating
    var relayed: TransportAddress?
    /// The peer's relayed address (where this client sends).
    var peerRelayed: TransportAddress?
    let channel: UInt16 = 0x4000
    let tx: SRTPSession
    let rx: SRTPSession
    var streams: [SendStream] = []
    var receiveStreams = [ReceiveStream](repeating: ReceiveStream(), count: 3)
    var socketDrops: Int64 = 0

    init(index: Int, peerIndex: Int, socket: ConnectedUDPSocket, client: TURNClient, key: [UInt8], replayWindow: Int)
        throws(SRTPError)
    {
        self.index = index
        self.peerIndex = peerIndex
        self.socket = socket
        self.client = client
        tx = try SRTPSession(key: key, inbound: false)
        rx = try SRTPSession(key: key, inbound: true, replayWindow: replayWindow)
    }

    func ssrc(_ kind: StreamKind) -> UInt32 { UInt32(index + 1) << 8 | UInt32(kind.rawValue) }
}

/// Errors that end a run.
public struct LoadError: Error, CustomStringConvertible, Sendable {
    /// What went wrong.
    public let description: String
    /// A failure with `message`.
    public init(_ message: String) { description = message }
}

/// The load generator: one thread, non-blocking sockets, epoll, sendmmsg/recvmmsg.
///
/// Phases: set-up (Allocate with the long-term credential dance, CreatePermission, ChannelBind for
/// every client), media (paced, blast or ramp, with periodic refreshes), drain, and tear-down
/// (Refresh with lifetime 0).
public final class LoadEngine {
    let config: LoadConfiguration
    var endpoints: [Endpoint] = []
    let poll: EventPoll
    let sendBatch: ConnectedSendBatch
    let receiveBatch: ReceiveBatch
    let scratch: UnsafeMutableRawPointer
    let log: (String) -> Void

    // Counters.
    var sent: UInt64 = 0
    var received: UInt64 = 0
    var receivedBytes: UInt64 = 0
    var authFailures: UInt64 = 0
    var replays: UInt64 = 0
    var tooOld: UInt64 = 0
    var srtpOther: UInt64 = 0
    var malformed: UInt64 = 0
    var sendFailures: UInt64 = 0
    var refreshRounds = 0
    var corrupted = false
    var controlFailures: [String] = []

    // Histograms and series.
    var latency = LatencyHistogram.make()
    var jitterHistogram = LatencyHistogram.make()
    var secondLatency = LatencyHistogram.make()
    var stepLatency = LatencyHistogram.make()
    var mediaStart: UInt64 = 0
    var currentSecond = 0
    var sentPerSecond: [UInt64] = []
    var receivedPerSecond: [UInt64] = []
    var secondPercentiles: [(Double, Double, Double)] = []
    var step: UInt16 = 0
    var sentPerStep: [UInt64] = []
    var receivedPerStep: [UInt64] = []
    var stepLatencies: [LatencySummary] = []
    var collectingMedia = false
    /// The ramp step whose loss passed the threshold, if the ramp stopped on loss.
    var rampFailedStep: Int? = nil

    /// Prepares a run; `log` receives progress lines (to stderr).
    public init(configuration: LoadConfiguration, log: @escaping (String) -> Void = { _ in }) throws {
        try configuration.validate()
        config = configuration
        self.log = log
        poll = try EventPoll()
        sendBatch = ConnectedSendBatch(capacity: 64, slotSize: 1536)
        receiveBatch = ReceiveBatch(capacity: 64, bufferSize: 2048 + 4, headroom: 0)
        scratch = .allocate(byteCount: 2048, alignment: 16)
    }

    deinit {
        for e in endpoints { e.socket.close() }
        scratch.deallocate()
    }

    // MARK: Run

    /// Runs all phases and returns the report.
    public func run() throws -> LoadRunReport {
        try SRTPSession.initialise()
        ProcessLimits.raiseFileLimit()
        let now0 = UInt64(Clock.unixSeconds())
        let clientCount = config.calls * 2
        let echo = !config.peers.isEmpty
        for i in 0..<clientCount {
            let target = config.direct ? config.peers[i % config.peers.count] : config.url.server
            let socket = try ConnectedUDPSocket(connectTo: target, bufferBytes: config.socketBufferBytes)
            var client = TURNClient(credentials: config.credentials.credentials(client: i, now: now0))
            client.initialRTO = 250_000_000
            let callKey: [UInt8]
            if i % 2 == 0 {
                callKey = STUNDigest.randomBytes(SRTPSession.masterKeyLength)
            } else {
                callKey = endpointsKey[i / 2]
            }
            if i % 2 == 0 { endpointsKey.append(callKey) }
            let e = try Endpoint(
                index: i, peerIndex: echo ? i : i ^ 1, socket: socket, client: client, key: callKey,
                replayWindow: config.replayWindow)
            endpoints.append(e)
            try poll.add(socket.fd, token: UInt64(i))
        }
        let setupStart = Clock.monotonicNanoseconds()
        if config.direct {
            // No TURN: every client is ready to send straight to its echo peer.
            for e in endpoints {
                e.peerRelayed = config.peers[e.index % config.peers.count]
                e.phase = .ready
            }
        } else {
            do {
                try setUp()
            } catch {
                tearDown()  // release what was allocated
                throw error
            }
        }
        let setupSeconds = Double(Clock.monotonicNanoseconds() - setupStart) / 1e9
        if !config.direct {
            log("setup: \(clientCount) clients allocated, permitted and bound in \(fmt(setupSeconds, 2)) s")
        }

        let serverBefore = config.serverPID.flatMap { ProcessSample.read(pid: $0) }
        let machineBefore = MachineCPU.read()
        let cpuBefore = ProcessStats.cpuNanoseconds()
        let mediaSeconds = try media()
        drain()
        let cpuAfter = ProcessStats.cpuNanoseconds()
        let machineAfter = MachineCPU.read()
        let serverAfter = config.serverPID.flatMap { ProcessSample.read(pid: $0) }
        let wall = Double(Clock.monotonicNanoseconds() - mediaStart) / 1e9
        closeSecond(upTo: Int((Double(Clock.monotonicNanoseconds() - mediaStart) / 1e9).rounded(.down)))
        tearDown()
        return report(
            mediaSeconds: mediaSeconds, wall: wall, setupSeconds: setupSeconds,
            generatorCPU: Double(cpuAfter - cpuBefore) / 1e9, serverBefore: serverBefore, serverAfter: serverAfter,
            machine: Self.machineSample(machineBefore, machineAfter))
    }

    var endpointsKey: [[UInt8]] = []

}

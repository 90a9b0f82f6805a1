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
        for i in 0..<clientCount {
            let socket = try ConnectedUDPSocket(connectTo: config.url.server, bufferBytes: config.socketBufferBytes)
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
                index: i, peerIndex: i ^ 1, socket: socket, client: client, key: callKey,
                replayWindow: config.replayWindow)
            endpoints.append(e)
            try poll.add(socket.fd, token: UInt64(i))
        }
        let setupStart = Clock.monotonicNanoseconds()
        do {
            try setUp()
        } catch {
            tearDown()  // release what was allocated
            throw error
        }
        let setupSeconds = Double(Clock.monotonicNanoseconds() - setupStart) / 1e9
        log("setup: \(clientCount) clients allocated, permitted and bound in \(fmt(setupSeconds, 2)) s")

        let serverBefore = config.serverPID.flatMap { ProcessSample.read(pid: $0) }
        let cpuBefore = ProcessStats.cpuNanoseconds()
        let mediaSeconds = try media()
        drain()
        let cpuAfter = ProcessStats.cpuNanoseconds()
        let serverAfter = config.serverPID.flatMap { ProcessSample.read(pid: $0) }
        let wall = Double(Clock.monotonicNanoseconds() - mediaStart) / 1e9
        closeSecond(upTo: Int((Double(Clock.monotonicNanoseconds() - mediaStart) / 1e9).rounded(.down)))
        tearDown()
        return report(
            mediaSeconds: mediaSeconds, wall: wall, setupSeconds: setupSeconds,
            generatorCPU: Double(cpuAfter - cpuBefore) / 1e9, serverBefore: serverBefore, serverAfter: serverAfter)
    }

    var endpointsKey: [[UInt8]] = []

    // MARK: Set-up

    func setUp() throws {
        let start = Clock.monotonicNanoseconds()
        for e in endpoints {
            let d = e.client.start(.allocate(lifetime: config.allocationLifetime), now: start)
            if !e.socket.send(d) { sendFailures += 1 }
        }
        let deadline = start + UInt64(config.setupTimeout * 1e9)
        while true {
            let ready = endpoints.filter { $0.phase == .ready }.count
            if ready == endpoints.count { return }
            if let failed = endpoints.first(where: {
                if case .failed = $0.phase { return true } else { return false }
            }), case .failed(let why) = failed.phase {
                throw LoadError("client \(failed.index) failed during set-up: \(why)")
            }
            let now = Clock.monotonicNanoseconds()
            if now > deadline {
                let phases = Dictionary(grouping: endpoints, by: { "\($0.phase)" }).mapValues(\.count)
                throw LoadError("set-up timed out after \(config.setupTimeout) s; client phases: \(phases)")
            }
            receiveReady(timeoutMilliseconds: 5, now: now)
            pollTimers(now: Clock.monotonicNanoseconds())
        }
    }

    func pollTimers(now: UInt64) {
        for e in endpoints where e.client.inFlight > 0 {
            handle(e.client.poll(now: now), endpoint: e, now: now)
        }
    }

    func handle(_ events: [TURNClientEvent], endpoint e: Endpoint, now: UInt64) {
        for event in events {
            switch event {
            case .send(let d):
                if !e.socket.send(d) { sendFailures += 1 }
            case .succeeded(let request, let response):
                succeeded(request, response: response, endpoint: e, now: now)
            case .failed(let request, let reason):
                if case .allocate = request, e.phase == .allocating, reason.hasPrefix("437"), e.mismatches < 3,
                    let fresh = try? ConnectedUDPSocket(
                        connectTo: config.url.server, bufferBytes: config.socketBufferBytes)
                {
                    // 437 Allocation Mismatch: this 5-tuple already has an allocation. Use a new port.
                    e.mismatches += 1
                    e.socket.close()
                    e.socket = fresh
                    poll.replace(token: UInt64(e.index), with: fresh.fd)
                    handle(
                        [.send(e.client.start(.allocate(lifetime: config.allocationLifetime), now: now))], endpoint: e,
                        now: now)
                } else if e.phase != .ready {
                    e.phase = .failed("\(request): \(reason)")
                } else if !collectingMedia && request == .refresh(lifetime: 0) {
                    // Tear-down; nothing to do.
                } else {
                    controlFailures.append("client \(e.index) \(request): \(reason)")
                }
            }
        }
    }

    func succeeded(_ request: TURNRequest, response: STUNMessage, endpoint e: Endpoint, now: UInt64) {
        switch request {
        case .allocate:
            guard case .xorRelayedAddress(let relayed)? = response.first(.xorRelayedAddress) else {
                e.phase = .failed("Allocate success without XOR-RELAYED-ADDRESS")
                return
            }
            e.relayed = relayed
            e.phase = .waitingForPeer
            let peer = endpoints[e.peerIndex]
            if peer.phase == .waitingForPeer, let pr = peer.relayed {
                for (a, b) in [(e, peer), (peer, e)] {
                    a.peerRelayed = b.relayed
                    a.phase = .permitting
                    handle(
                        [.send(a.client.start(.createPermission(peer: b.relayed ?? pr), now: now))], endpoint: a,
                        now: now)
                }
            }
        case .createPermission:
            if e.phase == .permitting, let peer = e.peerRelayed {
                if config.useSendIndications {
                    e.phase = .ready
                } else {
                    e.phase = .binding
                    handle(
                        [.send(e.client.start(.channelBind(peer: peer, channel: e.channel), now: now))], endpoint: e,
                        now: now)
                }
            }
        case .channelBind:
            if e.phase == .binding { e.phase = .ready }
        case .refresh:
            break
        }
    }

    func refreshAll(now: UInt64) {
        refreshRounds += 1
        for e in endpoints {
            guard let peer = e.peerRelayed else { continue }
            var events: [TURNClientEvent] = [
                .send(e.client.start(.refresh(lifetime: config.allocationLifetime), now: now))
            ]
            events.append(.send(e.client.start(.createPermission(peer: peer), now: now)))
            if !config.useSendIndications {
                events.append(.send(e.client.start(.channelBind(peer: peer, channel: e.channel), now: now)))
            }
            handle(events, endpoint: e, now: now)
        }
    }

    func tearDown() {
        let start = Clock.monotonicNanoseconds()
        for e in endpoints where e.relayed != nil {
            handle([.send(e.client.start(.refresh(lifetime: 0), now: start))], endpoint: e, now: start)
        }
        let deadline = start + 1_500_000_000
        while Clock.monotonicNanoseconds() < deadline && endpoints.contains(where: { $0.client.inFlight > 0 }) {
            receiveReady(timeoutMilliseconds: 5, now: Clock.monotonicNanoseconds())
            pollTimers(now: Clock.monotonicNanoseconds())
        }
    }

    // MARK: Media

    /// Plaintext RTP length for an SRTP packet of `srtpSize` bytes.
    func rtpLength(_ srtpSize: Int) -> Int { max(RTPProbe.minimumPacket, srtpSize - SRTPSession.tagLength) }

    func configureStreams(start: UInt64) {
        var rng = SystemRandomNumberGenerator()
        for e in endpoints {
            e.streams = []
            switch config.mode {
            case .paced:
                if config.audio {
                    let interval = 1_000_000_000 / UInt64(config.audioPacketsPerSecond)
                    e.streams.append(
                        SendStream(
                            kind: .audio, ssrc: e.ssrc(.audio), payloadType: 111,
                            nextDue: start + UInt64.random(in: 0..<interval, using: &rng), interval: interval,
                            packetsPerEvent: 1, rtpLength: rtpLength(config.audioPacketSize),
                            rtpTimestampStep: UInt32(48_000 / config.audioPacketsPerSecond)))
                }
                if config.videoKbps > 0 {
                    let frameBytes = max(1, config.videoKbps * 1000 / 8 / config.videoFPS)
                    let packets = (frameBytes + config.maxVideoPacket - 1) / config.maxVideoPacket
                    let size = min(
                        config.maxVideoPacket, max(RTPProbe.minimumPacket + SRTPSession.tagLength, frameBytes / packets)
                    )
                    let interval = 1_000_000_000 / UInt64(config.videoFPS)
                    e.streams.append(
                        SendStream(
                            kind: .video, ssrc: e.ssrc(.video), payloadType: 96,
                            nextDue: start + UInt64.random(in: 0..<interval, using: &rng), interval: interval,
                            packetsPerEvent: packets, rtpLength: rtpLength(size),
                            rtpTimestampStep: UInt32(90_000 / config.videoFPS)))
                }
            case .ramp:
                let interval = rampInterval(step: 0)
                e.streams.append(
                    SendStream(
                        kind: .probe, ssrc: e.ssrc(.probe), payloadType: 100,
                        nextDue: start + UInt64.random(in: 0..<interval, using: &rng), interval: interval,
                        packetsPerEvent: 1, rtpLength: rtpLength(config.packetSize), rtpTimestampStep: 160))
            case .blast:
                e.streams.append(
                    SendStream(
                        kind: .probe, ssrc: e.ssrc(.probe), payloadType: 100, nextDue: start, interval: 0,
                        packetsPerEvent: config.blastBatch, rtpLength: rtpLength(config.packetSize),
                        rtpTimestampStep: 160))
            }
        }
    }

    func rampOffered(step: Int) -> Double { config.rampStartPPS + Double(step) * config.rampStepPPS }

    func rampInterval(step: Int) -> UInt64 {
        UInt64(max(1.0, Double(endpoints.count) * 1e9 / rampOffered(step: step)))
    }

    /// A short description of the offered media.
    func mediaDescription() -> String {
        switch config.mode {
        case .paced:
            var parts: [String] = []
            if config.audio {
                parts.append("audio \(config.audioPacketsPerSecond) pkt/s × \(config.audioPacketSize) B")
            }
            if config.videoKbps > 0 {
                let frameBytes = max(1, config.videoKbps * 1000 / 8 / config.videoFPS)
                let packets = (frameBytes + config.maxVideoPacket - 1) / config.maxVideoPacket
                parts.append(
                    "video \(config.videoKbps) kbit/s (\(config.videoFPS) fps × \(packets) pkt of ≤\(config.maxVideoPacket) B)"
                )
            }
            return parts.joined(separator: " + ") + " per direction"
        case .blast:
            return "blast \(config.packetSize) B, batches of \(config.blastBatch)"
        case .ramp:
            return
                "ramp \(config.packetSize) B from \(Int(config.rampStartPPS)) pkt/s by \(Int(config.rampStepPPS)) every \(config.rampStepSeconds) s"
        }
    }

    /// Runs the media phase; returns its length in seconds.
    func media() throws -> Double {
        let start = Clock.monotonicNanoseconds()
        mediaStart = start
        collectingMedia = true
        let seconds = Int(config.duration.rounded(.up)) + Int(config.drainSeconds.rounded(.up)) + 3
        sentPerSecond = Array(repeating: 0, count: seconds)
        receivedPerSecond = Array(repeating: 0, count: seconds)
        secondPercentiles = Array(repeating: (0, 0, 0), count: seconds)
        let maxSteps = config.mode == .ramp ? Int((config.duration / config.rampStepSeconds).rounded(.up)) + 1 : 1
        sentPerStep = Array(repeating: 0, count: maxSteps + 1)
        receivedPerStep = Array(repeating: 0, count: maxSteps + 1)
        configureStreams(start: start)
        var end = start + UInt64(config.duration * 1e9)
        let refreshEvery = UInt64(config.refreshInterval * 1e9)
        var nextRefresh = start + refreshEvery
        var nextTimers = start + 10_000_000
        let stepLength = UInt64(config.rampStepSeconds * 1e9)
        var nextStep = start + stepLength
        var pendingEvaluation: (step: Int, at: UInt64)? = nil
        var now = start
        while now < end {
            var nextDue = UInt64.max
            if config.mode == .blast {
                for e in endpoints { sendBlast(e, now: now) }
                nextDue = now
            } else {
                for e in endpoints {
                    let due = sendDue(e, now: now)
                    if due < nextDue { nextDue = due }
                }
            }
            now = Clock.monotonicNanoseconds()
            var timeout: Int32 = 0
            if nextDue > now {
                // Sleep until the next packet is due (at least 1 ms, the epoll resolution); this
                // batches the packets of many streams into one wakeup.
                timeout = Int32(min(10, max(1, (nextDue - now) / 1_000_000)))
            }
            receiveReady(timeoutMilliseconds: timeout, now: now)
            now = Clock.monotonicNanoseconds()
            rollSecond(now: now)
            if now >= nextTimers {
                pollTimers(now: now)
                nextTimers = now + 10_000_000
            }
            if now >= nextRefresh {
                refreshAll(now: now)
                nextRefresh += refreshEvery
            }
            if config.mode == .ramp {
                if now >= nextStep {
                    pendingEvaluation = (Int(step), now + UInt64(min(0.5, config.rampStepSeconds / 2) * 1e9))
                    stepLatencies.append(LatencySummary(nanoseconds: stepLatency))
                    stepLatency.reset()
                    step += 1
                    if Int(step) >= maxSteps {
                        end = now
                        break
                    }
                    let interval = rampInterval(step: Int(step))
                    for e in endpoints {
                        e.streams[0].interval = interval
                        e.streams[0].nextDue = max(e.streams[0].nextDue, now)
                    }
                    log(
                        "ramp: step \(step) offers \(Int(rampOffered(step: Int(step)))) pkt/s (previous: loss \(fmt(100 * stepLoss(Int(step) - 1), 3)) % so far)"
                    )
                    nextStep += stepLength
                }
                if let p = pendingEvaluation, now >= p.at {
                    pendingEvaluation = nil
                    if stepLoss(p.step) > config.lossThreshold {
                        log(
                            "ramp: loss \(fmt(100 * stepLoss(p.step), 3)) % at \(Int(rampOffered(step: p.step))) pkt/s passes the threshold; stopping"
                        )
                        rampFailedStep = p.step
                        end = now
                        break
                    }
                }
            }
        }
        return Double(min(now, end) - start) / 1e9
    }

    func stepLoss(_ s: Int) -> Double {
        guard s >= 0, s < sentPerStep.count, sentPerStep[s] > 0 else { return 0 }
        return 1 - Double(min(receivedPerStep[s], sentPerStep[s])) / Double(sentPerStep[s])
    }

    func drain() {
        let deadline = Clock.monotonicNanoseconds() + UInt64(config.drainSeconds * 1e9)
        var now = Clock.monotonicNanoseconds()
        while now < deadline {
            receiveReady(timeoutMilliseconds: 2, now: now)
            now = Clock.monotonicNanoseconds()
            rollSecond(now: now)
        }
        collectingMedia = false
    }

    func rollSecond(now: UInt64) {
        let s = Int((now - mediaStart) / 1_000_000_000)
        if s > currentSecond { closeSecond(upTo: s) }
    }

    func closeSecond(upTo s: Int) {
        while currentSecond < s {
            if currentSecond < secondPercentiles.count {
                let l = LatencySummary(nanoseconds: secondLatency)
                secondPercentiles[currentSecond] = (l.p50, l.p99, l.p999)
            }
            secondLatency.reset()
            currentSecond += 1
        }
    }

    /// Sends every packet due on `e`'s streams; returns the next due time.
    @inline(__always)
    func sendDue(_ e: Endpoint, now: UInt64) -> UInt64 {
        var next = UInt64.max
        for i in e.streams.indices {
            while e.streams[i].nextDue <= now {
                for _ in 0..<e.streams[i].packetsPerEvent {
                    queue(e, stream: i, now: now, marker: false)
                }
                e.streams[i].rtpTimestamp &+= e.streams[i].rtpTimestampStep
                e.streams[i].nextDue += e.streams[i].interval
            }
            next = min(next, e.streams[i].nextDue)
        }
        flush(e)
        return next
    }

    @inline(__always)
    func sendBlast(_ e: Endpoint, now: UInt64) {
        for _ in 0..<e.streams[0].packetsPerEvent { queue(e, stream: 0, now: now, marker: false) }
        e.streams[0].rtpTimestamp &+= e.streams[0].rtpTimestampStep
        flush(e)
    }

    /// Builds one protected packet for stream `i` of `e` into the send batch.
    @inline(__always)
    func queue(_ e: Endpoint, stream i: Int, now: UInt64, marker: Bool) {
        if sendBatch.count == sendBatch.capacity { flush(e) }
        let slot = sendBatch.slot(sendBatch.count)
        let s = e.streams[i]
        let framed = config.useSendIndications ? scratch : slot + ChannelData.headerSize
        let sendTime = Clock.monotonicNanoseconds()
        RTPProbe.write(
            to: framed, length: s.rtpLength, payloadType: s.payloadType, ssrc: s.ssrc, sequence: s.sequence,
            rtpTimestamp: s.rtpTimestamp, sendTime: sendTime, step: step, kind: s.kind.rawValue, marker: marker)
        guard var length = e.tx.protect(framed, length: s.rtpLength) else {
            srtpOther += 1
            return
        }
        e.streams[i].sequence += 1
        if config.corruptOne && !corrupted && sent >= 100 {
            corrupted = true
            framed.storeBytes(
                of: framed.load(fromByteOffset: 20, as: UInt8.self) ^ 0x01, toByteOffset: 20, as: UInt8.self)
            log("corrupt-one: flipped byte 20 of SRTP packet \(s.sequence) of ssrc \(s.ssrc)")
        }
        if config.useSendIndications {
            guard let peer = e.peerRelayed else { return }
            let buffer = UnsafeMutableRawBufferPointer(start: slot, count: sendBatch.slotSize)
            let tid = STUNTransactionID(
                high: UInt64(e.index) << 32 | (s.sequence & 0xFFFF_FFFF), low: UInt32(s.kind.rawValue))
            do {
                var w = try STUNMessageWriter(
                    into: buffer, type: .init(method: .send, class: .indication), transactionID: tid)
                try w.append(.xorPeerAddress, address: peer)
                try w.append(.data, bytes: UnsafeRawBufferPointer(start: framed, count: length))
                length = w.count
            } catch {
                malformed += 1
                return
            }
        } else {
            ChannelData.writeHeader(channel: e.channel, payloadLength: length, to: slot)
            length += ChannelData.headerSize
        }
        sendBatch.setLength(sendBatch.count, length)
        sendBatch.count += 1
        if collectingMedia {
            let sec = Int((sendTime - mediaStart) / 1_000_000_000)
            if sec < sentPerSecond.count { sentPerSecond[sec] += 1 }
            if Int(step) < sentPerStep.count { sentPerStep[Int(step)] += 1 }
        }
        sent += 1
    }

    @inline(__always)
    func flush(_ e: Endpoint) {
        let queued = sendBatch.count
        guard queued > 0 else { return }
        let (done, _) = sendBatch.flush(fd: e.socket.fd)
        if done < queued {
            // Not sent: take them back out of the counts.
            let missing = UInt64(queued - done)
            sendFailures += missing
            sent -= missing
            let sec = Int((Clock.monotonicNanoseconds() - mediaStart) / 1_000_000_000)
            if sec < sentPerSecond.count { sentPerSecond[sec] -= min(sentPerSecond[sec], missing) }
            if Int(step) < sentPerStep.count { sentPerStep[Int(step)] -= min(sentPerStep[Int(step)], missing) }
        }
    }

    // MARK: Receive

    /// Waits for readable sockets and drains them.
    func receiveReady(timeoutMilliseconds: Int32, now: UInt64) {
        let n = poll.wait(timeoutMilliseconds: timeoutMilliseconds)
        for k in 0..<n {
            let e = endpoints[Int(poll.token(k))]
            while true {
                let count = receiveBatch.receive(e.socket.fd)
                if count <= 0 { break }
                let t = Clock.monotonicNanoseconds()
                for i in 0..<count { receive(i, endpoint: e, now: t) }
                let drops = receiveBatch.kernelDrops(count - 1)
                if drops > e.socketDrops { e.socketDrops = drops }
                if count < receiveBatch.capacity { break }
            }
        }
    }

    @inline(__always)
    func receive(_ i: Int, endpoint e: Endpoint, now: UInt64) {
        let p = receiveBatch.payload(i)
        let n = receiveBatch.length(i)
        guard n >= 4, !receiveBatch.truncated(i) else {
            malformed += 1
            return
        }
        let first = p.load(as: UInt8.self)
        switch ChannelData.classify(firstByte: first) {
        case .channelData:
            let channel = UInt16(bigEndian: p.loadUnaligned(as: UInt16.self))
            let length = Int(UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
            guard channel == e.channel, length + 4 <= n else {
                malformed += 1
                return
            }
            media(p + 4, length: length, endpoint: e, now: now)
        case .stun:
            let bytes = UnsafeRawBufferPointer(start: p, count: n)
            guard let view = try? STUNMessageView(validating: bytes) else {
                malformed += 1
                return
            }
            if view.type.method == .data && view.type.messageClass == .indication {
                guard let data = view.value(of: .data), let base = data.baseAddress else {
                    malformed += 1
                    return
                }
                media(UnsafeMutableRawPointer(mutating: base), length: data.count, endpoint: e, now: now)
            } else {
                handle(e.client.handle(view, now: now), endpoint: e, now: now)
            }
        case .other:
            malformed += 1
        }
    }

    @inline(__always)
    func media(_ p: UnsafeMutableRawPointer, length: Int, endpoint e: Endpoint, now: UInt64) {
        switch e.rx.unprotect(p, length: length) {
        case .ok(let plain):
            guard let probe = RTPProbe.read(p, length: plain), Int(probe.ssrc >> 8) - 1 == e.peerIndex,
                probe.kind < 3, probe.ssrc & 0xFF == UInt32(probe.kind)
            else {
                malformed += 1
                return
            }
            let outcome = e.receiveStreams[Int(probe.kind)].tracker.record(probe.sequence)
            if outcome == .duplicate { return }
            received += 1
            receivedBytes += UInt64(length)
            let transit = now >= probe.sendTime ? now - probe.sendTime : 0
            let clamped = min(transit, LatencyHistogram.highest)
            latency.record(clamped)
            secondLatency.record(clamped)
            if config.mode == .ramp { stepLatency.record(clamped) }
            if let d = e.receiveStreams[Int(probe.kind)].jitter.record(transit: Int64(transit)) {
                jitterHistogram.record(min(d, LatencyHistogram.highest))
            }
            if collectingMedia {
                let sec = Int((now - mediaStart) / 1_000_000_000)
                if sec < receivedPerSecond.count { receivedPerSecond[sec] += 1 }
            }
            if Int(probe.step) < receivedPerStep.count { receivedPerStep[Int(probe.step)] += 1 }
        case .authenticationFailure: authFailures += 1
        case .replay: replays += 1
        case .tooOld: tooOld += 1
        case .otherError: srtpOther += 1
        }
    }

    // MARK: Report

    func report(
        mediaSeconds: Double, wall: Double, setupSeconds: Double, generatorCPU: Double, serverBefore: ProcessSample?,
        serverAfter: ProcessSample?
    ) -> LoadRunReport {
        var counters = TURNClientCounters()
        var duplicates = replays
        var reordered: UInt64 = 0
        var jitterSum = 0.0
        var jitterStreams = 0
        var socketDrops: UInt64 = 0
        for e in endpoints {
            let c = e.client.counters
            counters.requests += c.requests
            counters.retransmissions += c.retransmissions
            counters.unauthorised += c.unauthorised
            counters.staleNonces += c.staleNonces
            counters.badIntegrity += c.badIntegrity
            counters.failures += c.failures
            for r in e.receiveStreams where r.tracker.highest != nil {
                duplicates += r.tracker.duplicates
                reordered += r.tracker.reordered
                jitterSum += r.jitter.jitter
                jitterStreams += 1
            }
            socketDrops += UInt64(max(0, e.socketDrops))
        }
        let lost = sent > received ? sent - received : 0
        var warnings = controlFailures.prefix(20).map { $0 }
        if controlFailures.count > 20 { warnings.append("… and \(controlFailures.count - 20) more control failures") }
        let cpuPercent = wall > 0 ? 100 * generatorCPU / wall : 0
        if cpuPercent > 90 {
            warnings.append(
                "the generator used \(fmt(cpuPercent, 0)) % of a core: it may be the bottleneck (fewer calls, or blast)"
            )
        }
        if socketDrops > 0 {
            warnings.append("\(socketDrops) datagrams were dropped at the generator's own sockets (counted as loss)")
        }
        var server: ServerSample? = nil
        if let pid = config.serverPID {
            if let b = serverBefore, let a = serverAfter {
                let cpu = Double(a.cpuTicks - b.cpuTicks) / Double(ProcessSample.ticksPerSecond)
                let relayed = sent + received
                server = ServerSample(
                    pid: pid, cpuSeconds: cpu, relayedDatagrams: relayed,
                    cpuMicrosecondsPerRelayedDatagram: relayed > 0 ? cpu * 1e6 / Double(relayed) : 0,
                    peakRSSKiB: a.peakRSSKiB)
            } else {
                warnings.append("could not read /proc/\(pid): no server figures")
            }
        }
        var steps: [RampStep] = []
        var knee: Double? = nil
        if config.mode == .ramp {
            let reported = rampFailedStep.map { $0 + 1 } ?? Int(step)
            for s in 0..<min(reported, sentPerStep.count) where sentPerStep[s] > 0 {
                let loss = stepLoss(s)
                steps.append(
                    RampStep(
                        offeredPPS: rampOffered(step: s), sent: sentPerStep[s], received: receivedPerStep[s],
                        loss: loss,
                        latency: s < stepLatencies.count
                            ? stepLatencies[s] : LatencySummary(nanoseconds: LatencyHistogram.make())))
            }
            // A step counts only if the generator really offered its rate: past its own limit
            // the offered rate is a fiction and "no loss" says nothing about the server.
            var generatorLimited: RampStep? = nil
            for s in steps {
                if Double(s.sent) < 0.98 * s.offeredPPS * config.rampStepSeconds {
                    generatorLimited = s
                    break
                }
                if s.loss <= config.lossThreshold { knee = s.offeredPPS } else { break }
            }
            if let g = generatorLimited, knee != nil, knee! < g.offeredPPS {
                warnings.append(
                    "the generator could not offer \(Int(g.offeredPPS)) pkt/s (it sent \(Int(Double(g.sent) / config.rampStepSeconds)) pkt/s): the knee is at least \(Int(knee!)) pkt/s, limited by the generator"
                )
            } else if rampFailedStep == nil, let last = steps.last {
                warnings.append(
                    "the ramp ended (duration) before loss passed the threshold: the knee is at least \(Int(last.offeredPPS)) pkt/s"
                )
            }
        }
        var series: [SecondSample] = []
        let lastSecond = min(sentPerSecond.count, max(1, Int(mediaSeconds.rounded(.up))))
        for s in 0..<lastSecond {
            let (p50, p99, p999) = secondPercentiles[s]
            series.append(
                SecondSample(
                    second: s, offeredPPS: Double(sentPerSecond[s]), deliveredPPS: Double(receivedPerSecond[s]),
                    p50: p50,
                    p99: p99, p999: p999))
        }
        return LoadRunReport(
            target: config.url.description, mode: config.mode.rawValue, calls: config.calls, clients: endpoints.count,
            framing: config.useSendIndications ? "send-indication" : "channel", media: mediaDescription(),
            durationSeconds: mediaSeconds, sent: sent, received: received, lost: lost,
            lossRatio: sent > 0 ? Double(lost) / Double(sent) : 0, duplicates: duplicates, reordered: reordered,
            authFailures: authFailures, srtpTooOld: tooOld, srtpOtherErrors: srtpOther, malformed: malformed,
            sendFailures: sendFailures, generatorSocketDrops: socketDrops,
            offeredPPS: mediaSeconds > 0 ? Double(sent) / mediaSeconds : 0,
            deliveredPPS: mediaSeconds > 0 ? Double(received) / mediaSeconds : 0,
            deliveredMbps: mediaSeconds > 0 ? Double(receivedBytes) * 8 / mediaSeconds / 1e6 : 0,
            latency: LatencySummary(nanoseconds: latency), jitter: LatencySummary(nanoseconds: jitterHistogram),
            rfc3550JitterMicroseconds: jitterStreams > 0 ? jitterSum / Double(jitterStreams) / 1000 : 0,
            control: ControlSummary(
                requests: counters.requests, retransmissions: counters.retransmissions,
                unauthorised: counters.unauthorised, staleNonces: counters.staleNonces,
                badIntegrity: counters.badIntegrity, failures: counters.failures, refreshRounds: refreshRounds,
                setupSeconds: setupSeconds),
            generatorCPUPercent: cpuPercent, server: server, rampSteps: steps, kneePPS: knee,
            lossThreshold: config.mode == .ramp ? config.lossThreshold : nil, seconds: series, warnings: warnings)
    }
}

/// Formats `v` with `digits` decimals.
func fmt(_ v: Double, _ digits: Int) -> String {
    guard v.isFinite else { return "\(v)" }
    var p = 1.0
    for _ in 0..<digits { p *= 10 }
    let r = (v * p).rounded() / p
    if digits == 0 { return String(Int(r)) }
    var s = String(r)
    if let dot = s.firstIndex(of: ".") {
        let decimals = s.distance(from: dot, to: s.endIndex) - 1
        if decimals < digits { s += String(repeating: "0", count: digits - decimals) }
    } else {
        s += "." + String(repeating: "0", count: digits)
    }
    if s.contains("e") { return String(v) }
    return s
}

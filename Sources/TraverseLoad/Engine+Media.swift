// The load generator's media phase: streams per call (paced, blast or ramp), SRTP protection,
// batched sends, per-second accounting and the ramp's steps.
// Invariant: every packet sent is counted once in its second and its stream.
import Histogram
import STUNCodec
import TraverseSystem

#if canImport(Glibc)
    import Glibc
#endif

extension LoadEngine {
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
        let framed = config.useSendIndications ? scratch : config.direct ? slot : slot + ChannelData.headerSize
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
        } else if !config.direct {
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
}

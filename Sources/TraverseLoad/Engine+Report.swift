// The load generator's report: the run's figures gathered into a `LoadRunReport`, and number
// formatting for the text form.
import Histogram
import STUNCodec
import TraverseSystem

#if canImport(Glibc)
    import Glibc
#endif

extension LoadEngine {
    // MARK: Report

    func report(
        mediaSeconds: Double, wall: Double, setupSeconds: Double, generatorCPU: Double, serverBefore: ProcessSample?,
        serverAfter: ProcessSample?, machine: MachineSample? = nil
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
            framing: config.direct ? "direct" : config.useSendIndications ? "send-indication" : "channel",
            topology: config.direct ? "direct" : config.peers.isEmpty ? "pairs" : "echo",
            media: mediaDescription(),
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
            generatorCPUPercent: cpuPercent, server: server, machine: machine, rampSteps: steps, kneePPS: knee,
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

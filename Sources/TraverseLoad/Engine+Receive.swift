// The load generator's receive side: batched reads, SRTP unprotection and the probe's latency,
// loss and reorder accounting.
// Invariant: a packet is counted received only once it authenticates.
import Histogram
import STUNCodec
import TraverseSystem

#if canImport(Glibc)
    import Glibc
#endif

extension LoadEngine {
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
            // Straight from an echo peer (--direct): bare SRTP, no TURN framing.
            if config.direct { media(p, length: n, endpoint: e, now: now) } else { malformed += 1 }
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
}

// The load generator's set-up and tear-down: Allocate with the long-term credential exchange,
// CreatePermission and ChannelBind for every client, refreshes, and Refresh 0 at the end.
// Invariant: every allocation made is refreshed before it expires and released at tear-down.
import Histogram
import STUNCodec
import TraverseSystem

#if canImport(Glibc)
    import Glibc
#endif

extension LoadEngine {
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
            if !config.peers.isEmpty {
                // Echo topology: permit and bind this client's echo peer.
                let echoPeer = config.peers[e.index % config.peers.count]
                e.peerRelayed = echoPeer
                e.phase = .permitting
                handle([.send(e.client.start(.createPermission(peer: echoPeer), now: now))], endpoint: e, now: now)
                return
            }
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
        guard !config.direct else { return }
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
}

// The TURN core's packet path, each step required to cost no heap allocation: routing a
// client's ChannelData or Send indication to a peer, and a peer's datagram back to the client
// (as ChannelData or as a Data indication). The allocation, permission and channel are set up
// once, through the real Allocate/ChannelBind/CreatePermission exchange, before measuring.
import Benchmark
import STUNCodec
import TURNCore

/// Hands out made-up relay sockets: the benchmark measures decisions, not syscalls.
final class FakeRelays: RelaySocketProvider, @unchecked Sendable {
    var next: Int32 = 100
    func openRelay(_ request: RelayRequest) -> RelayOpenResult {
        next += 1
        let address = TransportAddress(ip: .v4(0xC633_6401), port: UInt16(50_000 + next))
        return .opened(RelayEndpoint(handle: next, address: address), reservationToken: nil)
    }
}

/// The provider handed to every call (the core keeps none).
nonisolated(unsafe) let fakeRelays = FakeRelays()

let realm = "traverse"
let now = CoreTime(milliseconds: 1_000_000, unixSeconds: 1_700_000_000)
let client = FiveTuple(
    client: TransportAddress("198.51.100.7:54321")!, server: TransportAddress("192.0.2.1:3478")!, transport: .udp)
let channelPeer = TransportAddress("203.0.113.9:5000")!
let indicationPeer = TransportAddress("203.0.113.10:6000")!
let key = Array("alice:\(realm):wonderland".utf8).withUnsafeBytes { STUNDigest.md5($0) }

/// A core with one allocation for `client`, a channel 0x4000 to `channelPeer` and a permission
/// for `indicationPeer`, made through real requests.
func makeCore() -> TURNServerCore {
    let shared = SharedServerState(
        policy: CorePolicy(
            credentials: CredentialStore(realm: realm, passwords: ["alice": "wonderland"]),
            peers: PeerPolicy(allowed: [CIDR("203.0.113.0/24")!])))
    let core = TURNServerCore(configuration: CoreConfiguration(), shared: shared)
    var response = [UInt8](repeating: 0, count: 2048)
    func send(_ m: STUNMessage, signed: Bool) -> STUNMessage? {
        let bytes = try! m.encoded(key: signed ? key : nil, integrity: signed ? [.sha1] : [])
        return bytes.withUnsafeBytes { b in
            response.withUnsafeMutableBytes { out -> STUNMessage? in
                let view = try! STUNMessageView(validating: b)
                guard
                    case .reply(let n) = core.handleSTUN(
                        view, from: client, now: now, response: out, relays: fakeRelays)
                else {
                    return nil
                }
                return try? STUNMessage(parsing: Array(out[0..<n]))
            }
        }
    }
    let challenge = send(
        STUNMessage(type: .init(method: .allocate, class: .request), attributes: [.requestedTransport(17)]),
        signed: false)!
    guard case .nonce(let nonce)? = challenge.first(.nonce) else { fatalError("no nonce") }
    let credentials: [STUNAttribute] = [.username("alice"), .realm(realm), .nonce(nonce)]
    _ = send(
        STUNMessage(
            type: .init(method: .allocate, class: .request), attributes: [.requestedTransport(17)] + credentials),
        signed: true)
    _ = send(
        STUNMessage(
            type: .init(method: .channelBind, class: .request),
            attributes: [.channelNumber(0x4000), .xorPeerAddress(channelPeer)] + credentials), signed: true)
    _ = send(
        STUNMessage(
            type: .init(method: .createPermission, class: .request),
            attributes: [.xorPeerAddress(indicationPeer)] + credentials), signed: true)
    precondition(core.slot(for: client) != nil, "allocation failed")
    return core
}

let benchmarks: @Sendable () -> Void = {
    let zeroMallocs: [BenchmarkMetric: BenchmarkThresholds] = [
        .mallocCountTotal: .init(absolute: [.p0: 0, .p25: 0, .p50: 0, .p75: 0, .p90: 0, .p99: 0, .p100: 0])
    ]
    Benchmark.defaultConfiguration = .init(
        metrics: [.mallocCountTotal, .throughput, .wallClock],
        warmupIterations: 10,
        scalingFactor: .kilo,
        maxDuration: .seconds(2),
        maxIterations: 1_000,
        thresholds: zeroMallocs
    )

    Benchmark("ChannelData client→peer: parse + route") { benchmark in
        let core = makeCore()
        var datagram = [UInt8](repeating: 0xAB, count: 4 + 160)
        datagram[0] = 0x40
        datagram[1] = 0x00
        datagram[2] = 0
        datagram[3] = 160
        benchmark.startMeasurement()
        datagram.withUnsafeBytes { bytes in
            for _ in benchmark.scaledIterations {
                let frame = try! ChannelData.parse(bytes)
                blackHole(
                    core.routeChannelData(channel: frame.channel, length: frame.payload.count, from: client, now: now))
            }
        }
        benchmark.stopMeasurement()
    }

    Benchmark("Peer→client on a channel: route") { benchmark in
        let core = makeCore()
        let slot = core.slot(for: client)!
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(core.routePeerData(slot: slot, from: channelPeer, length: 160, now: now))
        }
        benchmark.stopMeasurement()
    }

    Benchmark("Peer→client as Data indication: route") { benchmark in
        let core = makeCore()
        let slot = core.slot(for: client)!
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(core.routePeerData(slot: slot, from: indicationPeer, length: 160, now: now))
        }
        benchmark.stopMeasurement()
    }

    Benchmark("Send indication client→peer: parse + route") { benchmark in
        let core = makeCore()
        let indication = try! STUNMessage(
            type: .init(method: .send, class: .indication),
            attributes: [.xorPeerAddress(indicationPeer), .data([UInt8](repeating: 0xCD, count: 160))]
        ).encoded()
        var response = [UInt8](repeating: 0, count: 2048)
        benchmark.startMeasurement()
        indication.withUnsafeBytes { bytes in
            response.withUnsafeMutableBytes { out in
                for _ in benchmark.scaledIterations {
                    let view = try! STUNMessageView(validating: bytes)
                    if case .relay(let handle, let peer, let payload) = core.handleSTUN(
                        view, from: client, now: now, response: out, relays: fakeRelays)
                    {
                        blackHole(handle)
                        blackHole(peer)
                        blackHole(payload.count)
                    }
                }
            }
        }
        benchmark.stopMeasurement()
    }
}

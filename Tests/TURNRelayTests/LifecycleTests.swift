import Foundation
import Logging
import STUNCodec
import TURNCore
import Testing

@testable import TURNRelay

/// Descriptors open in this process now.
func openDescriptors() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1 }

@Suite("Stopping a RelayServer releases its shards and every descriptor") struct LifecycleTests {
    final class WeakShard {
        weak var shard: Shard?
        init(_ shard: Shard) { self.shard = shard }
    }

    let tls: TLSContextStore
    let logger: Logger

    init() throws {
        let dir = "/tmp/traverse-lifecycle-tests"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        tls = try TLSContextStore.selfSigned(in: dir)
        var l = Logger(label: "lifecycle")
        l.logLevel = .critical
        logger = l
    }

    /// One server on UDP, TCP, TLS and DTLS with two shards, started, given an allocation (a relay
    /// socket), stopped and released; its shards, held weakly.
    func cycle() throws -> [WeakShard] {
        var c = RelayConfiguration()
        c.listen = [TransportAddress("127.0.0.1:0")!]
        c.tlsListen = [TransportAddress("127.0.0.1:0")!]
        c.shards = 2
        c.portRange = 52000...52999
        let shared = SharedServerState(
            policy: CorePolicy(credentials: CredentialStore(realm: "example.org", passwords: ["alice": "wonderland"])))
        var server: RelayServer? = try RelayServer(
            configuration: c, coreConfiguration: CoreConfiguration(), shared: shared, tls: tls, logger: logger)
        server!.start()
        let client = try TURNClient(server: server!.boundUDP[0])
        let allocated = try client.allocate()
        #expect(allocated.type.messageClass == .successResponse)
        server!.stop()
        let shards = server!.shards.map(WeakShard.init)
        for s in server!.shards { s.queue.sync {} }  // let cancel handlers run
        server = nil
        return shards
    }

    @Test func fiftyStartStopCyclesLeaveNoDescriptorAndNoShard() throws {
        _ = try cycle()  // process-wide descriptors made once (Dispatch's own) are not leaks
        let before = openDescriptors()
        var shards: [WeakShard] = []
        for _ in 0..<50 { shards += try cycle() }
        // Let the last queues finish their cancel handlers.
        Thread.sleep(forTimeInterval: 0.2)
        let after = openDescriptors()
        // Other suites run alongside and open a few of their own; one leaked descriptor per
        // cycle would be 50 or more (each cycle opens about 16).
        #expect(after - before < 10, "descriptors before \(before), after \(after)")
        #expect(shards.allSatisfy { $0.shard == nil }, "a stopped, released server kept a shard alive")
    }
}

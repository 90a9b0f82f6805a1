import COpenSSL
import Glibc
import Logging
import STUNCodec
import TURNCore
import Testing
import TraverseOps

@testable import TURNRelay

/// A DTLS 1.2 client over a connected UDP socket (OpenSSL's datagram BIO), for tests.
final class DTLSTestClient {
    let context: OpaquePointer
    let ssl: OpaquePointer
    let fd: Int32

    init(server: TransportAddress) throws {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        self.fd = fd
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var peer = sockaddr_in()
        peer.sin_family = sa_family_t(AF_INET)
        peer.sin_port = server.port.bigEndian
        if case .v4(let a) = server.ip { peer.sin_addr.s_addr = a.bigEndian }
        _ = withUnsafePointer(to: &peer) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        context = SSL_CTX_new(DTLS_client_method())!
        ssl = SSL_new(context)!
        let bio = BIO_new_dgram(fd, BIO_NOCLOSE)!
        _ = withUnsafeMutablePointer(to: &peer) { BIO_ctrl(bio, BIO_CTRL_DGRAM_SET_CONNECTED, 0, $0) }
        SSL_set_bio(ssl, bio, bio)
        guard SSL_connect(ssl) == 1 else { throw UDPError.socket(EPROTO) }
    }

    deinit {
        SSL_free(ssl)
        SSL_CTX_free(context)
        close(fd)
    }

    /// Sends `bytes` as one DTLS record.
    func send(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { SSL_write(ssl, $0.baseAddress, Int32($0.count)) }
    }
}

@Suite("DTLS ingress counts every refusal once") struct DTLSIngressTests {
    @Test func channelDataRefusedByTheCoreIsNotAlsoCountedAsMalformed() async throws {
        var c = TraverseConfiguration()
        c.listen = [TransportAddress("127.0.0.1:0")!]
        c.tlsListen = [TransportAddress("127.0.0.1:0")!]
        c.users = ["alice": "wonderland"]
        c.shards = 1
        c.portRange = 53000...53999
        c.stateDirectory = "/tmp/traverse-dtls-ingress-tests"
        var logger = Logger(label: "dtls-ingress")
        logger.logLevel = .critical
        let server = try TraverseServer(configuration: c, logger: logger)
        defer { server.stop() }
        let client = try DTLSTestClient(server: server.relay.boundDTLS[0])

        func drops() async -> [UInt64] { await server.relay.counters().drops }
        func waitForChange(from old: [UInt64]) async throws -> [UInt64] {
            for _ in 0..<200 {
                let now = await drops()
                if now != old {
                    try await Task.sleep(for: .milliseconds(50))  // anything counted later lands too
                    return await drops()
                }
                try await Task.sleep(for: .milliseconds(10))
            }
            return await drops()
        }
        let malformed = DropReason.malformedChannelData.rawValue
        let noAllocation = DropReason.noAllocation.rawValue

        // Well-formed ChannelData from a client without an allocation: the core refuses it
        // (no allocation), and that is the only count.
        var before = await drops()
        client.send([0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4])
        var after = try await waitForChange(from: before)
        #expect(after[noAllocation] == before[noAllocation] + 1)
        #expect(after[malformed] == before[malformed])
        #expect(after.reduce(0, +) == before.reduce(0, +) + 1)

        // ChannelData whose length field exceeds the record: malformed, once.
        before = after
        client.send([0x40, 0x00, 0x00, 0x64, 1, 2, 3, 4])
        after = try await waitForChange(from: before)
        #expect(after[malformed] == before[malformed] + 1)
        #expect(after.reduce(0, +) == before.reduce(0, +) + 1)
    }
}

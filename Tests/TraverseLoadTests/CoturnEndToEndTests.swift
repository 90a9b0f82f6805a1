import Foundation
import Testing

@testable import TraverseLoad

/// End to end against coturn, when `turnserver` is installed: a short paced run with one byte
/// flipped shows exactly one SRTP authentication failure and one lost packet, and REST
/// credentials are accepted.
@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/turnserver")), .serialized)
struct CoturnEndToEndTests {
    /// Starts coturn on a random port; `extra` adds flags.
    func withCoturn(_ extra: [String], _ body: (UInt16) throws -> Void) throws {
        let port = UInt16.random(in: 36_100...36_999)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/turnserver")
        p.arguments =
            [
                "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", "--listening-port=\(port)",
                "--allow-loopback-peers", "--lt-cred-mech", "--realm", "traverse", "--no-tls", "--no-dtls", "--no-cli",
                "--min-port", "37000", "--max-port", "37999", "--log-file", "stdout",
            ] + extra
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer {
            // The child may inherit a blocked SIGTERM from the test runner's thread: escalate.
            p.terminate()
            var waited = 0
            while p.isRunning && waited < 20 {
                Thread.sleep(forTimeInterval: 0.1)
                waited += 1
            }
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
            p.waitUntilExit()
        }
        Thread.sleep(forTimeInterval: 0.5)
        try body(port)
    }

    @Test func corruptedPacketIsDetected() throws {
        try withCoturn(["--user", "alice:wonderland"]) { port in
            var c = LoadConfiguration(
                url: try TURNURL(parsing: "turn:127.0.0.1:\(port)?transport=udp"),
                credentials: .staticUser(username: "alice", password: "wonderland"), duration: 2)
            c.calls = 2
            c.videoKbps = 300
            c.corruptOne = true
            c.refreshInterval = 1
            let report = try LoadEngine(configuration: c).run()
            #expect(report.sent > 500)
            #expect(report.authFailures == 1)
            #expect(report.lost == 1)
            #expect(report.control.failures == 0)
            #expect(report.control.refreshRounds >= 1)
        }
    }

    @Test func restCredentialsAndSendIndications() throws {
        try withCoturn(["--use-auth-secret", "--static-auth-secret", "north-secret"]) { port in
            var c = LoadConfiguration(
                url: try TURNURL(parsing: "turn:127.0.0.1:\(port)"),
                credentials: .restSecret(secret: "north-secret", userID: "load", ttl: 600, sameUser: false),
                duration: 1)
            c.calls = 2
            c.useSendIndications = true
            let report = try LoadEngine(configuration: c).run()
            #expect(report.sent > 100)
            #expect(report.lost == 0)
            #expect(report.authFailures == 0)
            #expect(report.framing == "send-indication")
        }
    }
}

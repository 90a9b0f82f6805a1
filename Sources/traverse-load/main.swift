import ArgumentParser
import Foundation
import TraverseLoad

/// `traverse-load`: emulated WebRTC calls (SRTP over TURN) against any TURN server over UDP.
@main
struct TraverseLoadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "traverse-load",
        abstract:
            "Drive a TURN server with emulated WebRTC calls (SRTP via libsrtp2) and measure loss, latency and jitter.",
        discussion: """
            Each call is two TURN clients that allocate, permit each other's relayed address, bind a
            channel (or use Send indications) and exchange SRTP. Targets outside loopback are refused
            unless --allow-non-loopback is given. Runs are bounded: --duration is required (at most
            \(Int(LoadConfiguration.maxDuration)) s) and --calls is at most \(LoadConfiguration.maxCalls).
            """)

    @Argument(
        help: "The server, as turn:HOST:PORT?transport=udp (HOST an IP literal or localhost); not needed with --direct."
    )
    var url: String?

    @Option(
        help: ArgumentHelp(
            "An echo peer IP:PORT ([IPv6]:PORT); repeatable. Every client binds a channel to one (client i to peer i mod count) and receives its own packets back, instead of each call's clients sending to each other.",
            valueName: "address"))
    var peer: [String] = []

    @Flag(
        help:
            "With --peer: no TURN server; send the same SRTP load straight to the echo peers (the baseline a relay's cost is measured against)."
    )
    var direct = false

    @Option(help: "Static credentials USER:PASSWORD.")
    var user: String?

    @Option(
        help: "TURN REST shared secret: usernames <expiry>:<user-id>-<n>, password base64(HMAC-SHA1(secret, username))."
    )
    var secret: String?

    @Option(help: "User id for REST credentials.")
    var userId: String = "load"

    @Flag(help: "With --secret, give every client the same REST username instead of one per client.")
    var sameUser = false

    @Option(help: "Validity of REST credentials in seconds.")
    var ttl: UInt64 = 86_400

    @Option(help: "paced, blast or ramp.")
    var mode: String = "paced"

    @Option(help: "Calls (each is two TURN clients).")
    var calls: Int = 10

    @Option(help: "Seconds of media (required; for ramp the longest the ramp may run).")
    var duration: Double

    @Flag(help: "No audio stream in paced mode.")
    var noAudio = false

    @Option(help: "Audio SRTP packet size in bytes (paced).")
    var audioSize: Int = 160

    @Option(help: "Video bitrate per direction in kbit/s (paced; 0 = audio only).")
    var videoKbps: Int = 0

    @Option(help: "Video frames per second.")
    var videoFps: Int = 30

    @Option(help: "Largest video SRTP packet in bytes.")
    var maxVideoPacket: Int = 1200

    @Option(help: "SRTP packet size in bytes (blast and ramp).")
    var packetSize: Int = 200

    @Option(help: "Packets per sendmmsg per client in blast mode.")
    var batch: Int = 32

    @Flag(help: "Use Send/Data indications instead of channels.")
    var sendIndications = false

    @Option(help: "Seconds between refreshes of allocations, permissions and channels.")
    var refreshInterval: Double = 5

    @Option(help: "Ramp: first offered rate in packets/s (all clients together).")
    var rampStart: Double = 5_000

    @Option(help: "Ramp: increase per step in packets/s.")
    var rampStep: Double = 5_000

    @Option(help: "Ramp: seconds per step.")
    var stepSeconds: Double = 2

    @Option(help: "Ramp: loss (percent) that ends the ramp.")
    var lossThreshold: Double = 0.1

    @Option(help: "Seconds to keep receiving after sending stops.")
    var drain: Double = 0.5

    @Option(help: "Sample this process (the server) for CPU time per relayed datagram and peak RSS.")
    var serverPid: Int32?

    @Flag(help: "Debug: flip one byte of one SRTP packet after protection (shows corruption is detected).")
    var corruptOne = false

    @Flag(help: "Allow a target outside 127.0.0.0/8 and ::1.")
    var allowNonLoopback = false

    @Option(help: "Write the report as JSON to this file.")
    var json: String?

    @Option(help: "Write an SVG plot (rates and latency per second) to this file.")
    var plot: String?

    @Flag(help: "Exit 1 when any packet was lost or failed SRTP authentication.")
    var strict = false

    mutating func run() throws {
        let turnURL: TURNURL
        do {
            guard let target = url ?? (direct ? peer.first.map({ "turn:" + $0 }) : nil) else {
                throw ValidationError("give the server's turn: URL (or --direct with --peer)")
            }
            turnURL = try TURNURL(parsing: target)
        } catch let error as ValidationError { throw error } catch { throw ValidationError("\(error)") }
        let credentials: CredentialSource
        if direct && user == nil && secret == nil {
            credentials = .staticUser(username: "", password: "")  // unused: no TURN server
        } else if let secret {
            credentials = .restSecret(secret: secret, userID: userId, ttl: ttl, sameUser: sameUser)
        } else if let user, let colon = user.firstIndex(of: ":") {
            credentials = .staticUser(
                username: String(user[..<colon]), password: String(user[user.index(after: colon)...]))
        } else {
            throw ValidationError("give --user USER:PASSWORD or --secret SECRET")
        }
        guard let loadMode = LoadMode(rawValue: mode) else {
            throw ValidationError("--mode must be paced, blast or ramp")
        }
        var c = LoadConfiguration(url: turnURL, credentials: credentials, duration: duration)
        c.mode = loadMode
        c.calls = calls
        c.audio = !noAudio
        c.audioPacketSize = audioSize
        c.videoKbps = videoKbps
        c.videoFPS = videoFps
        c.maxVideoPacket = maxVideoPacket
        c.packetSize = packetSize
        c.blastBatch = batch
        c.useSendIndications = sendIndications
        c.refreshInterval = refreshInterval
        c.rampStartPPS = rampStart
        c.rampStepPPS = rampStep
        c.rampStepSeconds = stepSeconds
        c.lossThreshold = lossThreshold / 100
        c.drainSeconds = drain
        c.serverPID = serverPid
        c.corruptOne = corruptOne
        c.allowNonLoopback = allowNonLoopback
        do { try c.setPeers(peer) } catch { throw ValidationError(error.description) }
        c.direct = direct
        do { try c.validate() } catch { throw ValidationError(error.description) }

        let engine = try LoadEngine(configuration: c) { line in
            FileHandle.standardError.write(Data(("traverse-load: " + line + "\n").utf8))
        }
        let report: LoadRunReport
        do {
            report = try engine.run()
        } catch {
            FileHandle.standardError.write(Data("traverse-load: error: \(error)\n".utf8))
            throw ExitCode(2)
        }
        print(report.table(), terminator: "")
        if let json {
            try report.json().write(to: URL(fileURLWithPath: json))
        }
        if let plot {
            try Data(report.svg().utf8).write(to: URL(fileURLWithPath: plot))
        }
        if strict && (report.lost > 0 || report.authFailures > 0) { throw ExitCode(1) }
    }
}

/// One second of the media phase.
public struct SecondSample: Codable, Sendable, Equatable {
    /// Seconds since the media phase began.
    public var second: Int
    /// Packets sent in this second.
    public var offeredPPS: Double
    /// Authentic packets received in this second.
    public var deliveredPPS: Double
    /// Latency percentiles of the packets received in this second, in microseconds.
    public var p50: Double
    /// 99th percentile (µs).
    public var p99: Double
    /// 99.9th percentile (µs).
    public var p999: Double
}

/// One step of a ramp.
public struct RampStep: Codable, Sendable, Equatable {
    /// Offered rate (packets/s over all clients).
    public var offeredPPS: Double
    /// Packets sent in the step.
    public var sent: UInt64
    /// Of those, received authentic and unique.
    public var received: UInt64
    /// 1 - received/sent.
    public var loss: Double
    /// Latency percentiles of the step's packets (µs).
    public var latency: LatencySummary
}

/// Figures for the server process given by `--server-pid`, over the media phase plus drain.
public struct ServerSample: Codable, Sendable, Equatable {
    /// Its pid.
    public var pid: Int32
    /// User + system CPU seconds used.
    public var cpuSeconds: Double
    /// Datagrams it relayed, estimated as packets sent + packets received by the generator:
    /// each media packet crosses the relay twice (client → relayed address → peer's relayed
    /// address, then peer's allocation → peer's client).
    public var relayedDatagrams: UInt64
    /// CPU microseconds per relayed datagram.
    public var cpuMicrosecondsPerRelayedDatagram: Double
    /// Peak resident set (VmHWM) at the end, in KiB.
    public var peakRSSKiB: UInt64
}

/// Control-path figures over all clients.
public struct ControlSummary: Codable, Sendable, Equatable {
    /// Requests sent (first transmissions).
    public var requests: Int
    /// Retransmissions.
    public var retransmissions: Int
    /// 401 answers.
    public var unauthorised: Int
    /// 438 answers.
    public var staleNonces: Int
    /// Responses with a bad MESSAGE-INTEGRITY.
    public var badIntegrity: Int
    /// Requests that failed for good.
    public var failures: Int
    /// Refresh rounds done in the media phase.
    public var refreshRounds: Int
    /// Seconds from the first Allocate to every client being ready.
    public var setupSeconds: Double
}

/// The result of a run.
public struct LoadRunReport: Codable, Sendable {
    /// The target.
    public var target: String
    /// Load mode.
    public var mode: String
    /// Calls.
    public var calls: Int
    /// Clients (two per call).
    public var clients: Int
    /// "channel", "send-indication" or "direct" (no TURN framing).
    public var framing: String
    /// "pairs" (each call's clients send to each other through the relay), "echo" (every client
    /// to an echo peer through the relay) or "direct" (to the echo peer, no relay).
    public var topology: String?
    /// Description of the offered media.
    public var media: String
    /// Media phase length in seconds (without drain).
    public var durationSeconds: Double

    /// Packets sent.
    public var sent: UInt64
    /// Authentic, unique packets received.
    public var received: UInt64
    /// sent - received.
    public var lost: UInt64
    /// lost / sent.
    public var lossRatio: Double
    /// Duplicates (srtp replay rejections plus duplicates the tracker saw).
    public var duplicates: UInt64
    /// Packets that arrived after a later one.
    public var reordered: UInt64
    /// SRTP authentication failures (corruption).
    public var authFailures: UInt64
    /// Packets too old for the SRTP replay window.
    public var srtpTooOld: UInt64
    /// Other SRTP errors.
    public var srtpOtherErrors: UInt64
    /// Datagrams that were neither valid media nor STUN, or arrived on the wrong channel or from the
    /// wrong stream.
    public var malformed: UInt64
    /// Datagrams the kernel would not take from the generator.
    public var sendFailures: UInt64
    /// Datagrams dropped by the kernel at the generator's own sockets (SO_RXQ_OVFL).
    public var generatorSocketDrops: UInt64

    /// Packets sent per second.
    public var offeredPPS: Double
    /// Packets received per second.
    public var deliveredPPS: Double
    /// Received SRTP payload in Mbit/s.
    public var deliveredMbps: Double
    /// One-way latency (µs).
    public var latency: LatencySummary
    /// |D(i-1,i)| transit-time differences (µs).
    public var jitter: LatencySummary
    /// Mean over streams of the RFC 3550 jitter estimate (µs).
    public var rfc3550JitterMicroseconds: Double

    /// Control path.
    public var control: ControlSummary
    /// The generator's own CPU use over the media phase, in % of one core.
    public var generatorCPUPercent: Double
    /// The server's figures, with `--server-pid`.
    public var server: ServerSample?
    /// Machine-wide CPU (all processes and the kernel) over the media phase and drain.
    public var machine: MachineSample?
    /// Ramp steps.
    public var rampSteps: [RampStep]
    /// Highest offered rate whose loss stayed at or below the threshold (ramp).
    public var kneePPS: Double?
    /// The ramp's loss threshold.
    public var lossThreshold: Double?
    /// Per-second series.
    public var seconds: [SecondSample]
    /// Problems worth a look (setup failures, a saturated generator …).
    public var warnings: [String]
}

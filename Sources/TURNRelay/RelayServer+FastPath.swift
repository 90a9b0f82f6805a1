// Starting and reporting the kernel fast path (XDP): loaded once for the whole server, shared by
// every shard's `FastPathMirror`, detached when the server stops.
//
// Invariant: a fast path that cannot start (no capability, no BTF, a verifier refusal, a missing
// interface or object) never stops the server: one log line with the reason, a failure the
// metrics count, and the socket path serves everything.
import Logging
import TraverseSystem

/// The kernel fast path setting (`server.fast_path`).
public enum FastPathMode: String, Sendable, Hashable, CaseIterable {
    /// Every datagram takes the socket path.
    case off
    /// Bound-channel ChannelData over UDP is relayed by an XDP program.
    case xdp
}

/// What the fast path is doing, for `/metrics` and the logs.
public struct FastPathStatus: Sendable {
    /// The configured mode.
    public var mode: FastPathMode
    /// Interfaces the program is attached to, and how (empty when off or failed).
    public var attachments: [(interface: String, mode: XDPAttachMode)]
    /// Why it could not start, when configured but failed.
    public var failure: FastPathFailure?
    /// Verdict counters, indexed by `FastPathVerdict`.
    public var verdicts: [UInt64]
    /// Channels mirrored in the program's maps.
    public var channels: Int
}

extension RelayServer {
    /// Loads and attaches the program when configured; on failure logs one line and returns the
    /// failure (the socket path serves).
    static func startFastPath(_ configuration: RelayConfiguration, logger: Logger) -> (XDPProgram?, FastPathFailure?) {
        guard configuration.fastPath == .xdp else { return (nil, nil) }
        let object = configuration.fastPathObject ?? XDPProgram.defaultObjectPath
        switch XDPProgram.load(objectPath: object, interfaces: configuration.fastPathInterfaces) {
        case .success(let program):
            for a in program.attachments {
                logger.notice(
                    "fast path attached", metadata: ["interface": "\(a.interface)", "mode": "\(a.mode.rawValue)"])
            }
            return (program, nil)
        case .failure(let failure):
            logger.error(
                "fast path unavailable; serving on the socket path",
                metadata: ["stage": "\(failure.stage)", "reason": "\(failure.reason)"])
            return (nil, failure)
        }
    }

    /// The fast path's state; its traffic counters are harvested into the cores first.
    public func fastPathStatus() async -> FastPathStatus {
        var channels = 0
        for shard in shards {
            channels += await shard.snapshot {
                shard.fastPath?.harvest(shard.core)
                return shard.fastPath?.channelCount ?? 0
            }
        }
        return FastPathStatus(
            mode: configuration.fastPath, attachments: fastPathProgram?.attachments ?? [],
            failure: fastPathFailure,
            verdicts: fastPathProgram?.verdicts() ?? [UInt64](repeating: 0, count: FastPathVerdict.allCases.count),
            channels: channels)
    }
}

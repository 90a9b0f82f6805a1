public import Logging
public import STUNCodec
public import ServiceLifecycle
import TURNRelay
import UnixSignals

/// A running server's parts as swift-service-lifecycle `Service`s, run by one `ServiceGroup`
/// (`ServerServices.group`). The group turns SIGTERM into a graceful shutdown and SIGINT into
/// cancellation; SIGHUP is the reloader's.
///
/// Graceful shutdown goes through the services in reverse order, each one finishing before the
/// next is told, so the order of `group`'s list is the order of a stop:
///
/// 1. `DrainService`: drains (new allocations refused, existing ones relay on) until no
///    allocation is left or `admin.drain_timeout` passes; a second SIGTERM ends the wait at once.
///    The admin endpoint, the sampler and the fleet keep running meanwhile (`/readyz` answers 503,
///    the board shows the node draining).
/// 2. the fleet (when configured) leaves the board;
/// 3. the reloader and the sampler stop;
/// 4. `RelayService` stops the data path (every socket closed, every allocation ended);
/// 5. `AdminService` closes the admin listener.
///
/// On SIGINT every service is cancelled at once: the data path stops without a drain. Either
/// way the group returns and `traverse` exits with status 0.
public enum ServerServices {
    /// The group of `operations`' server: its data path, admin endpoint (`admin`), sampler,
    /// reloader and fleet (when `operations.fleet` is set).
    public static func group(operations: Operations, admin: AdminService, logger: Logger) -> ServiceGroup {
        var services: [any Service] = [
            admin, RelayService(operations: operations, logger: logger), SamplerService(operations: operations),
            ReloadService(operations: operations),
        ]
        if let fleet = operations.fleet { services.append(FleetLifecycle(fleet: fleet)) }
        services.append(DrainService(operations: operations, logger: logger))
        // The group's own lines are debug-level: below what `traverse` logs by default.
        return ServiceGroup(
            services: services, gracefulShutdownSignals: [.sigterm], cancellationSignals: [.sigint], logger: logger)
    }
}

/// The data path: serving from the start, stopped last but one (or at once on SIGINT).
struct RelayService: Service {
    let operations: Operations
    let logger: Logger

    func run() async {
        do {
            try await gracefulShutdown()
        } catch {
            logger.notice("stopping", metadata: ["signal": "SIGINT"])
        }
        operations.shutdown()
        operations.server.stop()
    }
}

/// SIGTERM's drain: the first service told of a graceful shutdown.
struct DrainService: Service {
    let operations: Operations
    let logger: Logger

    func run() async {
        do {
            try await gracefulShutdown()
        } catch {
            return  // SIGINT: no drain
        }
        // The group stops listening for SIGTERM once it has one; a second one ends the drain.
        let again = await UnixSignalsSequence(trapping: .sigterm)
        let operations = self.operations
        let outcome = await withTaskGroup(of: Operations.DrainOutcome?.self) { group in
            group.addTask { await operations.drain(trigger: "SIGTERM") }
            group.addTask {
                for await _ in again { return nil }
                return Operations.DrainOutcome.drained  // cancelled: the drain child answered first
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        if let outcome {
            logger.notice("stopping", metadata: ["signal": "SIGTERM", "drain": "\(outcome)"])
        } else {
            logger.notice("stopping now", metadata: ["signal": "SIGTERM"])
        }
    }
}

/// The 1 s sampler of `Operations` (load window, console history, lapsing bans).
struct SamplerService: Service {
    let operations: Operations

    func run() async {
        let operations = self.operations
        await cancelWhenGracefulShutdown { await operations.runSampler() }
    }
}

/// SIGHUP reloads the configuration (`Operations.reload`).
struct ReloadService: Service {
    let operations: Operations

    func run() async {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        let operations = self.operations
        await cancelWhenGracefulShutdown {
            for await _ in signals { operations.reload(trigger: "SIGHUP") }
        }
    }
}

/// The fleet: joined before the group starts; leaves the board on a graceful shutdown, after the
/// drain (on SIGINT it is left to expire, as the process ends at once).
struct FleetLifecycle: Service {
    let fleet: FleetService

    func run() async {
        do {
            try await gracefulShutdown()
            fleet.stop()
        } catch {}
    }
}

/// The admin endpoint: started before the group (a bind failure ends `serve` with status 1), or,
/// for an instance started with `--takeover` while the instance it replaces still listens on the
/// admin address, tried every second until that address is free. Closed last.
public final class AdminService: Service, Sendable {
    private enum Start {
        case started(AdminServer)
        case deferred(
            operations: Operations, listen: TransportAddress, token: String?, allowedHosts: [String], logger: Logger)
        case none
    }
    private let start: Start
    private let announce: @Sendable (TransportAddress?) -> Void

    /// A service for an admin endpoint already listening (or none). `announce` is called when the
    /// service runs: after the service group traps SIGTERM and SIGINT, so that whoever waits for
    /// the announcement (a supervisor, a test) can signal the server at once.
    public init(started: AdminServer?, announce: @escaping @Sendable (TransportAddress?) -> Void = { _ in }) {
        start = started.map { .started($0) } ?? .none
        self.announce = announce
    }

    /// A service that calls `announce` with no admin address when it runs, starts the endpoint
    /// once `listen` is free, then calls `announce` again with its address.
    public init(
        deferredFor operations: Operations, listen: TransportAddress, token: String?, allowedHosts: [String],
        logger: Logger, announce: @escaping @Sendable (TransportAddress?) -> Void
    ) {
        start = .deferred(
            operations: operations, listen: listen, token: token, allowedHosts: allowedHosts, logger: logger)
        self.announce = announce
    }

    public func run() async {
        var admin: AdminServer? = nil
        switch start {
        case .none: announce(nil)
        case .started(let server):
            admin = server
            announce(server.address)
        case .deferred(let operations, let listen, let token, let allowedHosts, let logger):
            // Serving already, without the admin endpoint until the address is free.
            announce(nil)
            admin = await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(1))
                    if Task.isCancelled || ListenerOwnership.isHeld(listen, .tcp) { continue }
                    do throws(AdminServer.StartError) {
                        return try await AdminServer.start(
                            operations: operations, listen: listen, token: token, allowedHosts: allowedHosts,
                            logger: logger)
                    } catch {
                        logger.warning("admin endpoint not started yet", metadata: ["error": "\(error)"])
                    }
                }
                return nil
            }
            if let admin { announce(admin.address) }
        }
        try? await gracefulShutdown()
        await admin?.stop()
    }
}

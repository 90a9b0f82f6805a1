public import Logging
public import STUNCodec
import Synchronization
import TURNCore
public import TraverseFleet

/// The fleet side of a running node (`[fleet]`): starts the coordinator, feeds it this node's
/// board entry, and connects what the fleet decides to the core through `FleetHooks`: load-aware
/// ALTERNATE-SERVER, the fleet-wide per-user quota, fleet-wide bans, usage records, and
/// sessions ended from any node.
///
/// Runs on the fleet queue and the operations layer's tasks; shards only read the hooks.
public final class FleetService: Sendable {
    public let coordinator: FleetCoordinator
    public let quota: FleetQuota
    let operations: Operations
    let advertised: [String: [String]]

    /// Builds the service for `operations`' server; call `start` to begin publishing.
    public init(
        configuration: FleetConfiguration, operations: Operations, admin: STUNCodec.TransportAddress?, logger: Logger
    ) {
        self.operations = operations
        let server = operations.server
        var addresses: [String: [String]] = [:]
        if configuration.advertise.isEmpty {
            addresses["udp"] = server.relay.boundUDP.map(\.description)
            addresses["tcp"] = server.relay.boundTCP.map(\.description)
            addresses["tls"] = server.relay.boundTLS.map(\.description)
            addresses["dtls"] = server.relay.boundDTLS.map(\.description)
        } else {
            for (t, a) in configuration.advertise { addresses[t.rawValue, default: []].append(a.description) }
        }
        let advertised = addresses.filter { !$0.value.isEmpty }
        self.advertised = advertised
        let node = configuration.nodeID
        let adminText = admin?.description
        let redirectLoad = configuration.redirectLoad
        let shared = server.shared
        coordinator = FleetCoordinator(configuration: configuration, bans: server.bans, logger: logger) {
            [operations] in
            let report = operations.latestLoadReport()
            shared.fleet.setOverloaded(report.load >= redirectLoad)
            return BoardEntry(
                node: node, load: report.load, allocations: report.allocations, capacity: report.capacity,
                bitsPerSecond: report.bitsPerSecondIn + report.bitsPerSecondOut, draining: report.draining,
                full: report.allocations >= report.capacity, addresses: advertised, admin: adminText,
                updatedMilliseconds: 0,
                details: LoadDetails(
                    bitsPerSecondIn: report.bitsPerSecondIn, bitsPerSecondOut: report.bitsPerSecondOut,
                    packetsPerSecondIn: report.packetsPerSecondIn, packetsPerSecondOut: report.packetsPerSecondOut,
                    cpu: report.cpu, cores: report.cores, windowSeconds: report.windowSeconds))
        }
        quota = FleetQuota(coordinator: coordinator)
    }

    /// Starts publishing, installs the hooks and follows bans and events.
    public func start() {
        let server = operations.server
        let board = coordinator.board
        server.shared.fleet.setAlternateChooser { fiveTuple in
            let transport: FleetTransport =
                switch fiveTuple.transport {
                case .udp: .udp
                case .tcp: .tcp
                case .tls: .tls
                case .dtls: .dtls
                }
            return board.alternate(transport, fiveTuple.client.family, now: FleetBoard.nowMilliseconds())
        }
        server.shared.fleet.setQuota(quota)
        // Fleet bans live in the server's ban book (`server.bans`), which the coordinator keeps
        // in step with Redis; the server applies every change to its policy.
        let quota = self.quota
        coordinator.onReregister = { [coordinator] connection in
            quota.republish(connection)
            coordinator.republishBans()
        }
        coordinator.onEvent = { [server] event in
            switch event {
            case .kill(let node, let id) where node == "*" || node == self.coordinator.configuration.nodeID:
                if let n = UInt64(id) { Task { await server.relay.endSessions(.id(n)) } }
            case .killUser(let hash):
                let identity = self.coordinator.identity
                Task { await server.relay.endSessions(.users { identity.userHash($0) == hash }) }
            default: break
            }
        }
        let identity = coordinator.identity
        let nodeID = coordinator.configuration.nodeID
        let coordinator = self.coordinator
        server.relay.observeAllocations { event in
            guard case .ended(let ft, let username, let duration, let traffic, let reason) = event else { return }
            let end = FleetBoard.nowMilliseconds()
            coordinator.recordUsage(
                UsageRecord(
                    node: nodeID, userHash: identity.userHash(username), transport: "\(ft.transport)",
                    family: ft.client.family == .ipv4 ? "ipv4" : "ipv6", start: end - Int64(duration), end: end,
                    traffic: traffic, reason: reason.rawValue))
        }
        coordinator.queue.async { [quota] in quota.clearStaleFields() }
        coordinator.start()
    }

    /// Leaves the board and stops.
    public func stop() {
        operations.server.shared.fleet.setAlternateChooser(nil)
        operations.server.shared.fleet.setQuota(nil)
        coordinator.stop()
    }
}

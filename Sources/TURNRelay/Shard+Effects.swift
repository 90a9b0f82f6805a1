// Carrying out the core's decisions: the effects it returned (relay sockets to close, routing
// changes to mirror) and its allocation events (logged, then handed to observers).
//
// Invariants: effects are carried out in the order the core decided them, before the shard
// serves another socket; a relay socket is closed only after the send batch is flushed (nothing
// queued may go out on a closed or reused descriptor); allocation logs carry redacted client
// addresses unless configured otherwise, and never a username. On the shard's queue.
import Logging
import TURNCore

extension Shard {
    /// Drains `core.effects` and `core.events`.
    func drainEffects() {
        if !core.effects.isEmpty {
            let effects = core.effects
            core.effects.removeAll(keepingCapacity: true)
            var flushed = false
            for effect in effects {
                switch effect {
                case .closeRelay(let endpoint):
                    if !flushed {
                        tx.flush()
                        flushed = true
                    }
                    closeRelay(endpoint)
                case .permissionInstalled, .permissionRemoved, .channelBound, .channelRemoved, .allocationEnded:
                    // The socket path reads the core's own state; the kernel fast path keeps a
                    // copy of it in its maps.
                    fastPath?.apply(effect, core)
                }
            }
        }
        if !core.events.isEmpty { drainEvents() }
    }

    /// Logs each allocation event and hands it to the observer.
    private func drainEvents() {
        let events = core.events
        core.events.removeAll(keepingCapacity: true)
        let full = configuration.logFullAddresses
        for e in events {
            var event = e
            switch e {
            case .created(let ft, _, let relays, let lifetime):
                logger.info(
                    "allocation created",
                    metadata: [
                        "client": "\(AddressRedaction.format(ft.client, full: full))", "transport": "\(ft.transport)",
                        "relay": "\(relays.map(\.description).joined(separator: ","))", "lifetime": "\(lifetime)",
                    ])
            case .ended(let ft, let username, let duration, var traffic, let reason):
                // What the fast path relayed since its last harvest belongs to the totals too.
                if let t = fastPath?.takeEndedTraffic(ft) {
                    traffic.add(t)
                    event = .ended(
                        fiveTuple: ft, username: username, durationMilliseconds: duration, traffic: traffic,
                        reason: reason)
                }
                logger.info(
                    "allocation ended",
                    metadata: [
                        "client": "\(AddressRedaction.format(ft.client, full: full))", "transport": "\(ft.transport)",
                        "duration_ms": "\(duration)", "reason": "\(reason.rawValue)",
                        "packets_in": "\(traffic.packetsFromClient)", "bytes_in": "\(traffic.bytesFromClient)",
                        "packets_out": "\(traffic.packetsToClient)", "bytes_out": "\(traffic.bytesToClient)",
                    ])
                streamWriters[ft]?.allocationEnded()
            }
            eventObserver?(event)
        }
    }
}

// Carrying out the core's decisions: the effects it returned (relay sockets to close, routing
// changes to mirror) and its allocation events (logged, then handed to observers).
//
// Invariants: effects are carried out in the order the core decided them, before the shard
// serves another socket; the kernel fast path's copy is updated before the send batch is flushed
// (no answer leaves while the kernel still relays what it ended); a relay socket is closed only after the send batch is flushed (nothing
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
            // The kernel's copy first, in the core's order, before anything below flushes the
            // send batch: an answer (a Refresh 0's, say) never reaches the client while the
            // program still relays what that answer ended.
            if fastPath != nil {
                for effect in effects { fastPath!.apply(effect, core) }
            }
            var flushed = false
            for case .closeRelay(let endpoint) in effects {
                if !flushed {
                    tx.flush()
                    flushed = true
                }
                closeRelay(endpoint)
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

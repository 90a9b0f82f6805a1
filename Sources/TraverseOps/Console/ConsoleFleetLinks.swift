import STUNCodec
import Synchronization

/// Which nodes of the board have a console this node can reach: each other node's admin
/// address is asked for `/healthz` (with this node's token, 1 s timeout, all at once), and the
/// answer is kept for `ttl` seconds so that the board's page (polling every 2 s) does not probe
/// at that rate. A node whose admin endpoint is unset, a wildcard address, stale, or does not
/// answer 200 gets no link. This node's own console is `/`.
final class ConsoleFleetLinks: Sendable {
    private struct Entry {
        var url: String?
        var checked: Double
    }
    private let cache = Mutex<[String: Entry]>([:])
    let ttl: Double

    init(ttl: Double = 10) { self.ttl = ttl }

    /// Console URLs by node name.
    func consoles(_ board: FleetView, token: String?) async -> [String: String] {
        let now = LoadTracker.monotonicSeconds()
        var out: [String: String] = [:]
        var probes: [(node: String, address: TransportAddress)] = []
        for node in board.nodes {
            if node.node == board.selfID {
                out[node.node] = "/"
                continue
            }
            guard node.state != "stale", let text = node.admin, let address = TransportAddress(text),
                address.ip != .anyIPv4, address.ip != .anyIPv6
            else { continue }
            if let e = cache.withLock({ $0[node.node] }), now - e.checked < ttl {
                if let url = e.url { out[node.node] = url }
            } else {
                probes.append((node.node, address))
            }
        }
        let found = await withTaskGroup(of: (String, String?).self) { group in
            for p in probes {
                group.addTask {
                    let r = try? await AdminClient.fetch(
                        "GET", "/healthz", to: p.address, token: token, timeoutSeconds: 1)
                    return (p.node, r?.status == 200 ? "http://\(p.address)/" : nil)
                }
            }
            var results: [(String, String?)] = []
            for await r in group { results.append(r) }
            return results
        }
        cache.withLock { c in
            for (node, url) in found { c[node] = Entry(url: url, checked: now) }
        }
        for case (let node, let url?) in found { out[node] = url }
        return out
    }
}

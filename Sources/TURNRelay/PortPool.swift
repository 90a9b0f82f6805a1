import STUNCodec
import Synchronization
import TURNCore

#if canImport(Glibc)
    import Glibc
#endif

/// The relay port range, shared by all shards: which ports are in use, per address family, and
/// which are held by an RFC 8656 EVEN-PORT reservation. Touched only when allocations are made
/// or end, never per packet.
final class PortPool: Sendable {
    struct Reservation {
        var family: AddressFamily
        var port: UInt16
        var expiry: UInt64
        /// The reserved port's socket, bound when the reservation was made so that no other
        /// process can take the port before the client redeems it; -1 until attached.
        var socket: Int32 = -1
    }
    struct State {
        var used: [AddressFamily: Set<UInt16>] = [:]
        var reservations: [UInt64: Reservation] = [:]
        var cursor: UInt32 = 0
    }

    let range: ClosedRange<UInt16>
    /// RFC 8656 §7.2: a reserved port is held at least 30 seconds.
    static let reservationMilliseconds: UInt64 = 30_000
    private let state = Mutex(State())

    init(range: ClosedRange<UInt16>) {
        self.range = range
        state.withLock { $0.cursor = UInt32.random(in: 0..<UInt32(range.count)) }
    }

    /// Ports free for `family` now.
    func freeCount(_ family: AddressFamily) -> Int {
        state.withLock { range.count - ($0.used[family]?.count ?? 0) }
    }

    /// Takes a free port (even when asked); with `reserveNext`, also holds port+1 under a new token.
    func take(_ family: AddressFamily, even: Bool, reserveNext: Bool, now: UInt64) -> (UInt16, UInt64?)? {
        state.withLock { s in
            let n = UInt32(range.count)
            for step in 0..<n {
                let port = UInt16(UInt32(range.lowerBound) + (s.cursor &+ step) % n)
                if even && port % 2 != 0 { continue }
                if s.used[family, default: []].contains(port) { continue }
                if reserveNext {
                    guard port < range.upperBound, !s.used[family, default: []].contains(port + 1) else { continue }
                    let token = UInt64.random(in: 1...UInt64.max)
                    s.used[family, default: []].insert(port + 1)
                    s.reservations[token] = Reservation(
                        family: family, port: port + 1, expiry: now + Self.reservationMilliseconds)
                    s.used[family, default: []].insert(port)
                    s.cursor = s.cursor &+ step &+ 1
                    return (port, token)
                }
                s.used[family, default: []].insert(port)
                s.cursor = s.cursor &+ step &+ 1
                return (port, nil)
            }
            return nil
        }
    }

    /// Keeps the bound socket of the port reserved under `token` until it is redeemed or expires.
    func attach(socket: Int32, to token: UInt64) {
        state.withLock { $0.reservations[token]?.socket = socket }
    }

    /// Drops a reservation whose port could not be bound (another process holds it): the port
    /// goes back to the pool.
    func cancel(_ token: UInt64) {
        state.withLock { s in
            guard let r = s.reservations.removeValue(forKey: token) else { return }
            s.used[r.family]?.remove(r.port)
            if r.socket >= 0 { close(r.socket) }
        }
    }

    /// Redeems a reservation token: the reserved port and its bound socket, now owned by the
    /// caller. An expired token gives nil (its port is freed).
    func redeem(_ token: UInt64, now: UInt64) -> (AddressFamily, UInt16, Int32)? {
        state.withLock { s in
            guard let r = s.reservations.removeValue(forKey: token) else { return nil }
            guard r.expiry > now else {
                s.used[r.family]?.remove(r.port)
                if r.socket >= 0 { close(r.socket) }
                return nil
            }
            return (r.family, r.port, r.socket)
        }
    }

    /// Returns a port to the pool.
    func release(_ family: AddressFamily, _ port: UInt16) {
        _ = state.withLock { $0.used[family]?.remove(port) }
    }

    /// Frees the ports of reservations that were never redeemed.
    func expireReservations(now: UInt64) {
        state.withLock { s in
            for (token, r) in s.reservations where r.expiry <= now {
                s.reservations[token] = nil
                s.used[r.family]?.remove(r.port)
                if r.socket >= 0 { close(r.socket) }
            }
        }
    }

    /// Ends every reservation and closes the sockets holding reserved ports (the server stops).
    func releaseHeldSockets() {
        expireReservations(now: .max)
    }
}

// Readiness over a few thousand sockets with poll(2), for the load generator. Invariant: a
// socket's token is its index in `fds`, given in order by `add`, and stays its own when the
// socket is replaced. Not thread-safe: one owner thread.

#if canImport(Glibc)
    package import Glibc
#endif

/// Readiness over a set of sockets with poll(2). (With at most a few thousand sockets and about a
/// thousand wake-ups per second poll costs little; readable sockets are drained with recvmmsg.)
package final class EventPoll {
    /// The watched sockets, in token order.
    package var fds: [pollfd] = []
    /// Tokens of the sockets found readable by the last `wait`.
    package var ready: [Int] = []

    /// An empty set.
    package init() throws(SocketError) {}

    /// Watches `socket`; `token` must be the number of sockets added before.
    package func add(_ socket: Int32, token: UInt64) throws(SocketError) {
        precondition(Int(token) == fds.count, "tokens are the sockets' indices")
        fds.append(pollfd(fd: socket, events: Int16(POLLIN), revents: 0))
    }

    /// Watches `socket` in place of the one `token` named.
    package func replace(token: UInt64, with socket: Int32) {
        fds[Int(token)].fd = socket
    }

    /// Waits up to `timeoutMilliseconds` (0 polls); returns how many sockets are readable.
    package func wait(timeoutMilliseconds: Int32) -> Int {
        ready.removeAll(keepingCapacity: true)
        let n = fds.withUnsafeMutableBufferPointer { Glibc.poll($0.baseAddress, nfds_t($0.count), timeoutMilliseconds) }
        guard n > 0 else { return 0 }
        for i in fds.indices where fds[i].revents != 0 { ready.append(i) }
        return ready.count
    }

    /// The token of the `i`th readable socket.
    @inline(__always) package func token(_ i: Int) -> UInt64 { UInt64(ready[i]) }
}

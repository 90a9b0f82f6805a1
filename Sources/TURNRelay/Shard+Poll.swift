// The shard's poll loop: one Dispatch wakeup serves every UDP socket the epoll set reports
// readable, then lingers briefly while datagrams keep coming.
//
// Invariant: runs on the shard's queue only; returns to Dispatch within the linger budget, and at
// once when the doorbell rang (work posted from another thread waits behind it).

import TraverseSystem

extension Shard {
    /// Serves every UDP socket the epoll set reports readable; then, while datagrams keep coming
    /// within `pollLingerMicroseconds` of each other, keeps serving them for up to
    /// `pollLingerBudgetMilliseconds` before returning the queue to Dispatch.
    func drainReadySockets() {
        assertOnQueue()
        if stopped { return }
        let lingerNs = Int64(configuration.pollLingerMicroseconds) * 1000
        let budgetMs = configuration.pollLingerBudgetMilliseconds
        let started = lingerNs > 0 ? Clock.monotonicMilliseconds() : 0
        var n = poll.poll()
        var fullRounds = 0
        while true {
            if n > 0 { serveReady(n) }
            if n == PollSet.batch && fullRounds < 8 {
                fullRounds += 1
                n = poll.poll()
                continue
            }
            if doorbellRang {
                // Work was put on the queue from another thread: let it run now.
                doorbellRang = false
                return
            }
            if lingerNs == 0 || Clock.monotonicMilliseconds() &- started >= budgetMs { return }
            n = poll.wait(nanoseconds: lingerNs)
            if n <= 0 { return }
            fullRounds = 0
        }
    }

    @inline(__always) func serveReady(_ n: Int) {
        for i in 0..<n {
            switch poll.token(at: i) {
            case .doorbell:
                poll.clearDoorbell()
                doorbellRang = true
            case .listener(let index):
                if index < listeners.count && listeners[index].fd >= 0 { drainListener(listeners[index]) }
            case .relay(let fd, let slot):
                // The socket may have closed earlier in this batch (and its number been reused).
                if relaySockets.isUDPRelay(fd, slot: slot) { drainRelay(fd: fd, slot: slot) }
            }
        }
    }
}

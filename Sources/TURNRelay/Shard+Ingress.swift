// Client ingress: every message a client sends, whatever its transport, enters the core through
// one routine, `handleClientMessage` — a UDP datagram (from `drainListener`), a frame of a TCP or
// TLS stream (`StreamConnection`), the plaintext of a DTLS record (`DTLSSession`).
//
// Invariants: STUN goes to the core and its answer goes back the way the request came
// (`deliverReply`); ChannelData is relayed when the core routes it; every refusal is counted
// exactly once (by this file when the bytes are not STUN or ChannelData or do not parse, else by
// the core). Nothing here allocates, locks or logs per packet. On the shard's queue.
import STUNCodec
import TURNCore
import TraverseSystem

extension Shard {
    /// Receives and handles what a UDP (or DTLS) listening socket holds, in bounded batches so
    /// that relay sockets on this queue get their turn.
    func drainListener(_ listener: Listener) {
        assertOnQueue()
        let t = now()
        for _ in 0..<16 {
            let n = rx.receive(listener.fd)
            if n <= 0 { break }
            relaySockets.noteKernelDrops(listener.fd, n, rx)
            for i in 0..<n {
                guard let client = SocketAddress.read(rx.addresses + i) else { continue }
                let datagram = UnsafeRawBufferPointer(start: rx.payload(i), count: rx.length(i))
                if listener.dtls {
                    if !rx.truncated(i) { handleDTLSDatagram(datagram, from: client, listener: listener, t) }
                } else if rx.truncated(i) {
                    core.counters.drop(.notSTUNOrChannelData)
                } else {
                    handleClientMessage(
                        datagram, from: FiveTuple(client: client, server: listener.address, transport: .udp), t)
                }
            }
            tx.flush()
            if n < rx.capacity { break }
        }
        finishBatch()
    }

    /// One whole message from a client on any transport: STUN to the core, ChannelData relayed
    /// to its peer, anything else dropped and counted.
    @inline(__always)
    func handleClientMessage(_ message: UnsafeRawBufferPointer, from fiveTuple: FiveTuple, _ t: CoreTime) {
        guard let first = message.first else {
            core.counters.drop(.notSTUNOrChannelData)
            return
        }
        let legacy = core.configuration.legacyChannelNumbers
        switch ChannelData.classify(firstByte: first, legacyRange: legacy) {
        case .channelData:
            relayChannelData(message, from: fiveTuple, t, legacy: legacy)
        case .stun:
            handleSTUN(message, from: fiveTuple, t)
        case .other:
            core.counters.drop(.notSTUNOrChannelData)
        }
    }

    /// A ChannelData message from a client: relayed to its peer when the core routes it; a
    /// message that does not parse is counted here, every other refusal by the core.
    @inline(__always)
    func relayChannelData(_ frame: UnsafeRawBufferPointer, from fiveTuple: FiveTuple, _ t: CoreTime, legacy: Bool) {
        guard let data = try? ChannelData.parse(frame, legacyRange: legacy) else {
            core.counters.drop(.malformedChannelData)
            return
        }
        if let (handle, peer) = core.routeChannelData(
            channel: data.channel, length: data.payload.count, from: fiveTuple, now: t)
        {
            tx.enqueue(
                fd: handle, to: peer, bytes: data.payload.baseAddress ?? frame.baseAddress!,
                length: data.payload.count)
        }
    }

    /// Parses a STUN message from a client and carries out the core's decision: an answer, a
    /// Send indication's payload relayed, or an Allocate that waits for the fleet quota.
    @inline(__always)
    func handleSTUN(_ bytes: UnsafeRawBufferPointer, from fiveTuple: FiveTuple, _ t: CoreTime) {
        let buffer = tx.nextReplyBuffer
        let outcome: ClientMessageOutcome
        do {
            let view = try STUNMessageView(validating: bytes)
            outcome = core.handleSTUN(view, from: fiveTuple, now: t, response: buffer, relays: self)
        } catch {
            outcome = core.handleMalformed(bytes, error, from: fiveTuple, now: t, response: buffer)
        }
        switch outcome {
        case .reply(let length):
            deliverReply(buffer, length, to: fiveTuple)
        case .relay(let handle, let peer, let payload):
            tx.enqueue(
                fd: handle, to: peer, bytes: payload.baseAddress ?? UnsafeRawPointer(buffer.baseAddress!),
                length: payload.count)
        case .awaitQuota(let username, let limit):
            askFleetQuota(bytes, fiveTuple, username: username, limit: limit)
        case .none:
            break
        }
        // Relay sockets the core closed are closed now, before anything else reaches them.
        if !core.effects.isEmpty { drainEffects() }
    }

    /// Sends the answer the core wrote in `buffer` (from `tx.nextReplyBuffer`) to the client of
    /// `fiveTuple`: queued in the send batch for UDP, written to the stream otherwise.
    @inline(__always)
    func deliverReply(_ buffer: UnsafeMutableRawBufferPointer, _ length: Int, to fiveTuple: FiveTuple) {
        if fiveTuple.transport == .udp {
            if let fd = listenerFD(for: fiveTuple.server) {
                tx.enqueueReply(fd: fd, to: fiveTuple.client, length: length)
            }
        } else {
            streamWriters[fiveTuple]?.write(
                UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(buffer)[0..<length]))
        }
    }

    /// The UDP listener socket bound to `address` on this shard.
    @inline(__always) func listenerFD(for address: TransportAddress) -> Int32? {
        for l in listeners where l.address == address && l.fd >= 0 && !l.dtls { return l.fd }
        return nil
    }

    /// Ends a batch: failed sends counted, the core's effects carried out.
    func finishBatch() {
        if tx.failed > 0 {
            core.counters.drops[DropReason.sendFailed.rawValue] &+= UInt64(tx.failed)
            tx.failed = 0
        }
        if !core.effects.isEmpty || !core.events.isEmpty { drainEffects() }
    }
}

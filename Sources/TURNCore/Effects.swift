// What the core decided that the I/O layer carries out, as typed values.
//
// Invariant: the core never performs I/O and holds no reference to the I/O layer. Anything a
// decision needs at once (a relay socket for an Allocate, an RFC 6062 connect or bind) is asked
// through the `RelaySocketProvider` passed to that one call; everything else it decided is
// appended to `TURNServerCore.effects`, in the order decided, for the I/O layer to drain after
// the call. Binding effects mirror the core's routing state exactly, so a copy kept elsewhere (a
// kernel fast path) that applies them in order never relays what the core would refuse.
public import STUNCodec

/// The transport of an allocation's relayed address (RFC 8656 REQUESTED-TRANSPORT, RFC 6062).
/// The raw value is the IANA protocol number the attribute carries.
public enum RelayTransport: UInt8, Sendable, Hashable {
    /// A UDP relay socket (RFC 8656).
    case udp = 17
    /// A TCP listening relay socket for peer connections (RFC 6062).
    case tcp = 6
}

/// One thing the core decided that the I/O layer must do or know, drained from
/// `TURNServerCore.effects` on the shard's queue.
public enum CoreEffect: Sendable, Hashable {
    /// Close this relay socket and give its port back (an allocation, or one family of a
    /// dual-stack allocation, ended).
    case closeRelay(RelayEndpoint)
    /// A permission for `peer` on the allocation in `slot` was installed or refreshed; it allows
    /// traffic until `expiry` (core milliseconds, the clock `CoreTime.milliseconds` is read from).
    case permissionInstalled(slot: Int, peer: IPAddress, expiry: UInt64)
    /// The permission for `peer` on `slot` is gone (expired at a sweep, or denied by a reloaded
    /// policy). Its expiry stamp had already stopped it if it expired.
    case permissionRemoved(slot: Int, peer: IPAddress)
    /// `channel` on the allocation in `slot` is bound (or refreshed) to `peer` until `expiry`
    /// (core milliseconds). A binding always comes with a `permissionInstalled` for the peer.
    case channelBound(slot: Int, channel: UInt16, peer: TransportAddress, expiry: UInt64)
    /// The binding of `channel` on `slot` is gone (expired at a sweep, or denied by a reloaded
    /// policy).
    case channelRemoved(slot: Int, channel: UInt16, peer: TransportAddress)
    /// The allocation in `slot` ended: every permission and channel it had is gone with it (its
    /// relays come as `closeRelay` effects just before).
    case allocationEnded(slot: Int)
}

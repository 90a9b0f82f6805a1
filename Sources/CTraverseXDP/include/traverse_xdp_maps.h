// The maps shared by the XDP program (bpf/traverse_xdp.bpf.c) and the process that fills them.
//
// Invariant: this file is the one definition of every key and value; both sides include it, so
// a layout change cannot reach one side only. Addresses and ports are in network byte order; an
// IPv4 address fills the first 4 bytes of its 16 and the rest are zero. Expiries are
// CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns()), the clock the core's milliseconds come from.
#ifndef TRAVERSE_XDP_MAPS_H
#define TRAVERSE_XDP_MAPS_H

#include <linux/types.h>

/// Families as stored in keys and values.
#define TRAVERSE_XDP_INET 4
#define TRAVERSE_XDP_INET6 6

/// Capacity of each binding map (channels, peers, permissions).
#define TRAVERSE_XDP_MAX_BINDINGS 262144

/// A client's channel: the 5-tuple a ChannelData datagram arrives on, and its channel number.
struct traverse_xdp_channel_key {
    __u8 client_ip[16];
    __u8 server_ip[16];
    __be16 client_port;
    __be16 server_port;
    __be16 channel;
    __u8 family;
    __u8 pad;
};

/// Where a client's channel goes: the allocation's relayed address and the bound peer, and the
/// channel's expiry. A refresh rewrites the value; the counters live apart (`channel_counters`)
/// so that a refresh never loses a count.
struct traverse_xdp_channel_value {
    __u8 relay_ip[16];
    __u8 peer_ip[16];
    __be16 relay_port;
    __be16 peer_port;
    __u32 pad;
    __u64 expiry_ns;
};

/// What the program forwarded on one binding, per CPU (`channel_counters`, `peer_counters`,
/// keyed like `channels` and `peers`): datagrams and payload bytes.
struct traverse_xdp_counters {
    __u64 packets;
    __u64 bytes;
};

/// A peer's datagram: the relayed address it was sent to and its source.
struct traverse_xdp_peer_key {
    __u8 relay_ip[16];
    __u8 peer_ip[16];
    __be16 relay_port;
    __be16 peer_port;
    __u8 family;
    __u8 pad[3];
};

/// Where a peer's datagram goes: the client's 5-tuple and the channel bound to the peer, and the
/// channel's expiry.
struct traverse_xdp_peer_value {
    __u8 client_ip[16];
    __u8 server_ip[16];
    __be16 client_port;
    __be16 server_port;
    __be16 channel;
    __u16 pad;
    __u64 expiry_ns;
};

/// A permission: the allocation's relayed address (of the peer's family) and the peer's IP.
struct traverse_xdp_permission_key {
    __u8 relay_ip[16];
    __u8 peer_ip[16];
    __be16 relay_port;
    __u8 family;
    __u8 pad;
};

/// A permission's expiry.
struct traverse_xdp_permission_value {
    __u64 expiry_ns;
};

/// The program's verdicts, each counted per CPU in the `verdicts` array.
enum traverse_xdp_verdict {
    TRAVERSE_XDP_FORWARDED_TO_PEER = 0,
    TRAVERSE_XDP_FORWARDED_TO_CLIENT,
    TRAVERSE_XDP_PASS_NOT_UDP,
    TRAVERSE_XDP_PASS_IP_OPTIONS,
    TRAVERSE_XDP_PASS_NO_BINDING,
    TRAVERSE_XDP_PASS_MALFORMED,
    TRAVERSE_XDP_PASS_CHANNEL_EXPIRED,
    TRAVERSE_XDP_PASS_NO_PERMISSION,
    TRAVERSE_XDP_PASS_NO_CHECKSUM,
    TRAVERSE_XDP_PASS_PADDING,
    TRAVERSE_XDP_PASS_NO_NEIGHBOUR,
    TRAVERSE_XDP_PASS_NO_ROUTE,
    TRAVERSE_XDP_PASS_TOO_BIG,
    TRAVERSE_XDP_PASS_FORWARDING_OFF,
    TRAVERSE_XDP_DROP_REWRITE_FAILED,
    TRAVERSE_XDP_VERDICT_COUNT
};

#endif

// Traverse's kernel fast path: relays bound-channel ChannelData over UDP in XDP, both ways.
//
// Client -> peer: a UDP datagram whose (client, server, channel) is in `channels`, whose
// ChannelData length fits the datagram, and whose peer has a live permission loses its 4-byte
// header and goes to the peer from the relayed address. Peer -> client: a UDP datagram to a
// relayed address from a peer in `peers` (a bound channel) with a live permission gets the
// ChannelData header and goes to the client from the server address it used.
//
// Invariants:
// - Anything the program does not forward is passed to the socket path untouched (XDP_PASS):
//   STUN, Send and Data indications, unknown bindings, malformed ChannelData, fragments, IP
//   options, IPv6 extension headers, expired entries, missing neighbours. The socket path then
//   does exactly what it would without the program. A packet is dropped only when a rewrite
//   already begun fails, and that is counted.
// - Expiry stamps are compared with bpf_ktime_get_ns() (CLOCK_MONOTONIC), the clock the core's
//   lifetimes come from: forwarding stops at expiry, not at the process's next sweep.
// - Only headers are read or written. The payload is never read, copied or kept; checksums are
//   updated incrementally (RFC 1624) from the header words that change.
//
// The license string is the kernel's condition for bpf_fib_lookup (a GPL-only helper).
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "../include/traverse_xdp_maps.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

/// TTL / hop limit of relayed datagrams: the relay sends them anew, as a socket would.
#define RELAY_TTL 64
/// The largest payload relayed here (a 9000-byte jumbo frame's); larger ones take the socket path.
#define MAX_PAYLOAD 9000

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, TRAVERSE_XDP_MAX_BINDINGS);
    __type(key, struct traverse_xdp_channel_key);
    __type(value, struct traverse_xdp_channel_value);
} channels SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, TRAVERSE_XDP_MAX_BINDINGS);
    __type(key, struct traverse_xdp_peer_key);
    __type(value, struct traverse_xdp_peer_value);
} peers SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, TRAVERSE_XDP_MAX_BINDINGS);
    __type(key, struct traverse_xdp_permission_key);
    __type(value, struct traverse_xdp_permission_value);
} permissions SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
    __uint(max_entries, TRAVERSE_XDP_MAX_BINDINGS);
    __type(key, struct traverse_xdp_channel_key);
    __type(value, struct traverse_xdp_counters);
} channel_counters SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
    __uint(max_entries, TRAVERSE_XDP_MAX_BINDINGS);
    __type(key, struct traverse_xdp_peer_key);
    __type(value, struct traverse_xdp_counters);
} peer_counters SEC(".maps");

/// The interfaces the program is attached to, by ifindex: a datagram is redirected only to one of
/// them (a driver can transmit an XDP frame only where XDP is set up); any other egress is left to
/// the socket path.
struct {
    __uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
    __uint(max_entries, 64);
    __type(key, __u32);
    __type(value, __u32);
} egress SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, TRAVERSE_XDP_VERDICT_COUNT);
    __type(key, __u32);
    __type(value, __u64);
} verdicts SEC(".maps");

static __always_inline int count(__u32 verdict, int action) {
    __u64 *n = bpf_map_lookup_elem(&verdicts, &verdict);
    if (n) *n += 1;
    return action;
}

// MARK: Checksums (RFC 1624: HC' = ~(~HC + ~m + m'))

static __always_inline __u32 csum_add(__u32 sum, __u32 word16) {
    return sum + word16;
}

static __always_inline __u32 csum_sub(__u32 sum, __u32 word16) {
    return sum + ((~word16) & 0xffff);
}

static __always_inline __u32 csum_add_words(__u32 sum, const void *p, int bytes) {
    const __u16 *w = p;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        if (i * 2 < bytes) sum = csum_add(sum, w[i]);
    }
    return sum;
}

static __always_inline __u32 csum_sub_words(__u32 sum, const void *p, int bytes) {
    const __u16 *w = p;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        if (i * 2 < bytes) sum = csum_sub(sum, w[i]);
    }
    return sum;
}

static __always_inline __u16 csum_fold(__u32 sum) {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return (__u16)sum;
}

/// The one's complement sum of a byte at `offset` from the start of the checksummed data (a
/// 16-bit word in memory order: the byte first at even offsets, second at odd ones).
static __always_inline __u32 byte_word(__u8 b, __u32 offset) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return (offset & 1) ? (__u32)b << 8 : (__u32)b;
#else
    return (offset & 1) ? (__u32)b : (__u32)b << 8;
#endif
}

static __always_inline __u16 ipv4_header_checksum(struct iphdr *ip) {
    __u32 sum = 0;
    ip->check = 0;
    const __u16 *w = (const __u16 *)ip;
#pragma unroll
    for (int i = 0; i < 10; i++) sum += w[i];
    return ~csum_fold(sum);
}

// MARK: Parsing

struct packet {
    void *data;
    void *end;
    struct ethhdr *eth;
    struct iphdr *ip4;
    struct ipv6hdr *ip6;
    struct udphdr *udp;
    __u8 family;
    __u32 l3_offset;  // bytes before the IP header
    __u32 payload_length;  // UDP payload bytes per the UDP header
};

/// Parses Ethernet (a VLAN tag passes), IPv4 without options or fragments, or IPv6 whose next
/// header is UDP; the frame must end where the UDP datagram does (no Ethernet trailer). Returns a verdict index when the packet is not
/// for the program, else -1.
static __always_inline int parse(struct xdp_md *ctx, struct packet *p) {
    p->data = (void *)(long)ctx->data;
    p->end = (void *)(long)ctx->data_end;
    p->eth = p->data;
    if ((void *)(p->eth + 1) > p->end) return TRAVERSE_XDP_PASS_NOT_UDP;
    __u16 proto = p->eth->h_proto;
    if (proto == bpf_htons(ETH_P_IP)) {
        struct iphdr *ip = (void *)(p->eth + 1);
        if ((void *)(ip + 1) > p->end) return TRAVERSE_XDP_PASS_NOT_UDP;
        if (ip->protocol != IPPROTO_UDP) return TRAVERSE_XDP_PASS_NOT_UDP;
        if (ip->ihl != 5 || (ip->frag_off & bpf_htons(0x3fff)) != 0) return TRAVERSE_XDP_PASS_IP_OPTIONS;
        struct udphdr *udp = (void *)(ip + 1);
        if ((void *)(udp + 1) > p->end) return TRAVERSE_XDP_PASS_NOT_UDP;
        __u32 ip_len = bpf_ntohs(ip->tot_len);
        __u32 udp_len = bpf_ntohs(udp->len);
        if (udp_len < sizeof(*udp) || ip_len != sizeof(*ip) + udp_len) return TRAVERSE_XDP_PASS_MALFORMED;
        if ((void *)udp + udp_len > p->end) return TRAVERSE_XDP_PASS_MALFORMED;
        if ((void *)udp + udp_len < p->end) return TRAVERSE_XDP_PASS_PADDING;  // an Ethernet trailer
        p->ip4 = ip;
        p->ip6 = 0;
        p->udp = udp;
        p->family = TRAVERSE_XDP_INET;
        p->payload_length = udp_len - sizeof(*udp);
        return -1;
    }
    if (proto == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip = (void *)(p->eth + 1);
        if ((void *)(ip + 1) > p->end) return TRAVERSE_XDP_PASS_NOT_UDP;
        if (ip->nexthdr != IPPROTO_UDP) return TRAVERSE_XDP_PASS_IP_OPTIONS;
        struct udphdr *udp = (void *)(ip + 1);
        if ((void *)(udp + 1) > p->end) return TRAVERSE_XDP_PASS_NOT_UDP;
        __u32 udp_len = bpf_ntohs(udp->len);
        if (udp_len < sizeof(*udp) || bpf_ntohs(ip->payload_len) != udp_len) return TRAVERSE_XDP_PASS_MALFORMED;
        if ((void *)udp + udp_len > p->end) return TRAVERSE_XDP_PASS_MALFORMED;
        if ((void *)udp + udp_len < p->end) return TRAVERSE_XDP_PASS_PADDING;
        p->ip4 = 0;
        p->ip6 = ip;
        p->udp = udp;
        p->family = TRAVERSE_XDP_INET6;
        p->payload_length = udp_len - sizeof(*udp);
        return -1;
    }
    return TRAVERSE_XDP_PASS_NOT_UDP;
}

static __always_inline void copy_ip(__u8 *to, const void *from, __u8 family) {
    __builtin_memcpy(to, from, 4);
    if (family == TRAVERSE_XDP_INET6) __builtin_memcpy(to + 4, (const __u8 *)from + 4, 12);
}

static __always_inline int live(__u64 expiry_ns, __u64 now) {
    return now < expiry_ns;
}

static __always_inline int permitted(const __u8 *relay_ip, __be16 relay_port, const __u8 *peer_ip, __u8 family,
                                     __u64 now) {
    struct traverse_xdp_permission_key key = {};
    __builtin_memcpy(key.relay_ip, relay_ip, 16);
    __builtin_memcpy(key.peer_ip, peer_ip, 16);
    key.relay_port = relay_port;
    key.family = family;
    struct traverse_xdp_permission_value *v = bpf_map_lookup_elem(&permissions, &key);
    return v && live(v->expiry_ns, now);
}

// MARK: Sending

/// Fills the Ethernet addresses from a FIB lookup for the rewritten packet and picks XDP_TX
/// (same interface) or a redirect. Returns the action, or -1 with `*verdict` set to pass.
static __always_inline int route(struct xdp_md *ctx, struct ethhdr *eth, __u8 family, const __u8 *src,
                                 const __u8 *dst, __u16 tot_len, int *verdict) {
    struct bpf_fib_lookup fib = {};
    fib.ifindex = ctx->ingress_ifindex;
    fib.l4_protocol = IPPROTO_UDP;
    fib.tot_len = tot_len;
    if (family == TRAVERSE_XDP_INET) {
        fib.family = AF_INET;
        __builtin_memcpy(&fib.ipv4_src, src, 4);
        __builtin_memcpy(&fib.ipv4_dst, dst, 4);
    } else {
        fib.family = AF_INET6;
        __builtin_memcpy(fib.ipv6_src, src, 16);
        __builtin_memcpy(fib.ipv6_dst, dst, 16);
    }
    // From an egress perspective: the relay originates these datagrams.
    long rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), BPF_FIB_LOOKUP_OUTPUT);
    if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
        *verdict = TRAVERSE_XDP_PASS_NO_NEIGHBOUR;
        return -1;
    }
    if (rc == BPF_FIB_LKUP_RET_FWD_DISABLED) {
        // The kernel's FIB helper answers only where forwarding is on for the interface
        // (net.ipv4.conf.IF.forwarding, net.ipv6.conf.IF.forwarding): Docs/deployment.md.
        *verdict = TRAVERSE_XDP_PASS_FORWARDING_OFF;
        return -1;
    }
    if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED) {
        *verdict = TRAVERSE_XDP_PASS_TOO_BIG;
        return -1;
    }
    if (rc != BPF_FIB_LKUP_RET_SUCCESS) {
        *verdict = TRAVERSE_XDP_PASS_NO_ROUTE;
        return -1;
    }
    __builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
    __builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
    if (fib.ifindex == ctx->ingress_ifindex) return XDP_TX;
    __u32 out = fib.ifindex;
    if (!bpf_map_lookup_elem(&egress, &out)) {
        *verdict = TRAVERSE_XDP_PASS_NO_ROUTE;
        return -1;
    }
    return bpf_redirect_map(&egress, out, 0);
}

/// A relayed datagram's new form: its addresses and ports, its UDP length, the ChannelData words
/// written right after the UDP header (`header_words` of `header`: 2 adds a header, 1 changes
/// the channel number, 0 writes none), the bytes removed at the front (`head`: 4 strips a
/// header, -4 makes room for one) and at the end (`tail`: padding), and the UDP checksum sum
/// with the payload's own changes (ChannelData words, padding) already in it.
struct rewrite {
    const __u8 *src_ip;
    const __u8 *dst_ip;
    __be16 src_port;
    __be16 dst_port;
    __u32 udp_len;
    int head;
    __u32 tail;
    __be16 header[2];
    int header_words;
    __u32 sum;
};

/// Rewrites the datagram's headers as `r` says and sends it on. Returns the XDP action with
/// `*sent` set, or (with `*sent` clear) XDP_PASS when it cannot leave this way (the packet is
/// untouched) or XDP_DROP when a rewrite already begun failed; both counted.
static __always_inline int emit(struct xdp_md *ctx, struct packet *p, struct rewrite *r, int *sent) {
    *sent = 0;
    __u16 old_check = p->udp->check;
    struct ethhdr eth = *p->eth;
    struct udphdr udp = *p->udp;
    __u32 sum = r->sum;
    // The UDP length appears twice: in the pseudo-header and in the header.
    sum = csum_sub(sum, udp.len);
    sum = csum_sub(sum, udp.len);
    sum = csum_sub(sum, udp.source);
    sum = csum_sub(sum, udp.dest);
    udp.len = bpf_htons(r->udp_len);
    udp.source = r->src_port;
    udp.dest = r->dst_port;
    sum = csum_add(sum, udp.len);
    sum = csum_add(sum, udp.len);
    sum = csum_add(sum, udp.source);
    sum = csum_add(sum, udp.dest);
    int verdict = 0;
    int action;
    struct iphdr ip4;
    struct ipv6hdr ip6;
    __u32 ip_size;
    if (p->family == TRAVERSE_XDP_INET) {
        ip4 = *p->ip4;
        sum = csum_sub_words(sum, &ip4.saddr, 4);
        sum = csum_sub_words(sum, &ip4.daddr, 4);
        __builtin_memcpy(&ip4.saddr, r->src_ip, 4);
        __builtin_memcpy(&ip4.daddr, r->dst_ip, 4);
        sum = csum_add_words(sum, &ip4.saddr, 4);
        sum = csum_add_words(sum, &ip4.daddr, 4);
        ip4.tot_len = bpf_htons(sizeof(struct iphdr) + r->udp_len);
        ip4.ttl = RELAY_TTL;
        ip4.check = ipv4_header_checksum(&ip4);
        ip_size = sizeof(struct iphdr);
    } else {
        ip6 = *p->ip6;
        sum = csum_sub_words(sum, &ip6.saddr, 16);
        sum = csum_sub_words(sum, &ip6.daddr, 16);
        __builtin_memcpy(&ip6.saddr, r->src_ip, 16);
        __builtin_memcpy(&ip6.daddr, r->dst_ip, 16);
        sum = csum_add_words(sum, &ip6.saddr, 16);
        sum = csum_add_words(sum, &ip6.daddr, 16);
        ip6.payload_len = bpf_htons(r->udp_len);
        ip6.hop_limit = RELAY_TTL;
        ip_size = sizeof(struct ipv6hdr);
    }
    // IPv4 allows no checksum (0), kept as it came; IPv6 requires one.
    if (old_check != 0 || p->family == TRAVERSE_XDP_INET6) {
        __u16 c = ~csum_fold(sum);
        udp.check = c ? c : 0xffff;
    }
    action = route(ctx, &eth, p->family, r->src_ip, r->dst_ip, ip_size + r->udp_len, &verdict);
    if (action < 0) return count(verdict, XDP_PASS);
    // Nothing was changed in the packet until here; from here a failure drops it.
    if (r->tail && bpf_xdp_adjust_tail(ctx, -(int)r->tail)) return count(TRAVERSE_XDP_DROP_REWRITE_FAILED, XDP_DROP);
    if (r->head && bpf_xdp_adjust_head(ctx, r->head)) return count(TRAVERSE_XDP_DROP_REWRITE_FAILED, XDP_DROP);
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    __u8 *l4;
    if (p->family == TRAVERSE_XDP_INET) {
        if (data + sizeof(eth) + sizeof(ip4) + sizeof(udp) > end) return count(TRAVERSE_XDP_DROP_REWRITE_FAILED, XDP_DROP);
        __builtin_memcpy(data + sizeof(eth), &ip4, sizeof(ip4));
        l4 = data + sizeof(eth) + sizeof(ip4);
    } else {
        if (data + sizeof(eth) + sizeof(ip6) + sizeof(udp) > end) return count(TRAVERSE_XDP_DROP_REWRITE_FAILED, XDP_DROP);
        __builtin_memcpy(data + sizeof(eth), &ip6, sizeof(ip6));
        l4 = data + sizeof(eth) + sizeof(ip6);
    }
    __builtin_memcpy(data, &eth, sizeof(eth));
    __builtin_memcpy(l4, &udp, sizeof(udp));
    if (r->header_words) {
        if ((void *)(l4 + sizeof(udp) + 4) > end) return count(TRAVERSE_XDP_DROP_REWRITE_FAILED, XDP_DROP);
        if (r->header_words == 2) __builtin_memcpy(l4 + sizeof(udp), r->header, 4);
        else __builtin_memcpy(l4 + sizeof(udp), r->header, 2);
    }
    *sent = 1;
    return action;
}

static __always_inline void add_counts(void *map, const void *key, __u32 bytes) {
    struct traverse_xdp_counters *c = bpf_map_lookup_elem(map, key);
    if (c) {
        c->packets += 1;
        c->bytes += bytes;
    }
}

// MARK: Client -> relay -> relay -> client (hairpin)

/// A ChannelData datagram from client A whose peer is client B's relayed address on this server,
/// where B has a channel bound to A's relayed address: the relay's two hops done at once. The
/// datagram keeps its size; its ChannelData header gets B's channel number, its addresses and
/// ports become B's server address and B. What each hop would check is checked: A's channel and
/// permission (by the caller), B's channel and B's permission for A's relayed address.
static __always_inline int hairpin(struct xdp_md *ctx, struct packet *p, struct traverse_xdp_channel_key *from,
                                   struct traverse_xdp_peer_key *to_key, struct traverse_xdp_peer_value *to,
                                   __u8 *payload, __u32 length, __u32 padding, __u64 now) {
    if (!live(to->expiry_ns, now)) return count(TRAVERSE_XDP_PASS_CHANNEL_EXPIRED, XDP_PASS);
    if (!permitted(to_key->relay_ip, to_key->relay_port, to_key->peer_ip, p->family, now))
        return count(TRAVERSE_XDP_PASS_NO_PERMISSION, XDP_PASS);
    // Padding would reach B as it came; the socket path sends none.
    if (padding) return count(TRAVERSE_XDP_PASS_PADDING, XDP_PASS);
    struct rewrite r = {
        .src_ip = to->server_ip, .dst_ip = to->client_ip, .src_port = to->server_port,
        .dst_port = to->client_port, .udp_len = sizeof(struct udphdr) + p->payload_length,
        .header = {to->channel, 0}, .header_words = 1,
    };
    r.sum = csum_add(csum_sub((__u16)~p->udp->check, *(__u16 *)payload), to->channel);
    int sent;
    int action = emit(ctx, p, &r, &sent);
    if (!sent) return action;
    add_counts(&channel_counters, from, length);
    add_counts(&peer_counters, to_key, length);
    count(TRAVERSE_XDP_FORWARDED_TO_PEER, 0);
    return count(TRAVERSE_XDP_FORWARDED_TO_CLIENT, action);
}

// MARK: Client -> peer

static __always_inline int client_to_peer(struct xdp_md *ctx, struct packet *p, __u64 now) {
    __u8 *payload = (void *)(p->udp + 1);
    if ((void *)(payload + 4) > p->end) return -1;
    __u16 channel = ((__u16)payload[0] << 8) | payload[1];
    if (channel < 0x4000 || channel > 0x7fff) return -1;
    struct traverse_xdp_channel_key key = {};
    if (p->family == TRAVERSE_XDP_INET) {
        copy_ip(key.client_ip, &p->ip4->saddr, TRAVERSE_XDP_INET);
        copy_ip(key.server_ip, &p->ip4->daddr, TRAVERSE_XDP_INET);
    } else {
        copy_ip(key.client_ip, &p->ip6->saddr, TRAVERSE_XDP_INET6);
        copy_ip(key.server_ip, &p->ip6->daddr, TRAVERSE_XDP_INET6);
    }
    key.client_port = p->udp->source;
    key.server_port = p->udp->dest;
    key.channel = bpf_htons(channel);
    key.family = p->family;
    struct traverse_xdp_channel_value *v = bpf_map_lookup_elem(&channels, &key);
    if (!v) return -1;  // not a bound channel of this 5-tuple: the socket path decides

    // The checks of the socket path's ChannelData parse; anything it would refuse it refuses.
    __u32 length = ((__u32)payload[2] << 8) | payload[3];
    if (4 + length > p->payload_length) return count(TRAVERSE_XDP_PASS_MALFORMED, XDP_PASS);
    __u32 padding = p->payload_length - 4 - length;
    if (padding > 3) return count(TRAVERSE_XDP_PASS_PADDING, XDP_PASS);
    // Bounded for the verifier; a larger datagram than a jumbo frame carries takes the socket path.
    if (length > MAX_PAYLOAD) return count(TRAVERSE_XDP_PASS_TOO_BIG, XDP_PASS);
    if (!live(v->expiry_ns, now)) return count(TRAVERSE_XDP_PASS_CHANNEL_EXPIRED, XDP_PASS);
    if (!permitted(v->relay_ip, v->relay_port, v->peer_ip, p->family, now))
        return count(TRAVERSE_XDP_PASS_NO_PERMISSION, XDP_PASS);
    if (p->udp->check == 0 && p->family == TRAVERSE_XDP_INET6) return count(TRAVERSE_XDP_PASS_NO_CHECKSUM, XDP_PASS);

    // A peer that is another allocation's relayed address on this server (both ends of a call
    // relayed here) with a channel back: straight to that allocation's client.
    struct traverse_xdp_peer_key hairpin_key = {};
    __builtin_memcpy(hairpin_key.relay_ip, v->peer_ip, 16);
    __builtin_memcpy(hairpin_key.peer_ip, v->relay_ip, 16);
    hairpin_key.relay_port = v->peer_port;
    hairpin_key.peer_port = v->relay_port;
    hairpin_key.family = p->family;
    struct traverse_xdp_peer_value *h = bpf_map_lookup_elem(&peers, &hairpin_key);
    if (h) return hairpin(ctx, p, &key, &hairpin_key, h, payload, length, padding, now);

    // Removed from the payload: the ChannelData header and any padding.
    __u32 sum = (__u16)~p->udp->check;
    sum = csum_sub(sum, *(__u16 *)payload);
    sum = csum_sub(sum, *(__u16 *)(payload + 2));
    __u8 *pad = payload + 4 + length;
#pragma unroll
    for (__u32 i = 0; i < 3; i++) {
        if (i < padding) {
            if ((void *)(pad + i + 1) > p->end) return count(TRAVERSE_XDP_PASS_MALFORMED, XDP_PASS);
            sum = csum_sub(sum, byte_word(pad[i], 4 + length + i));
        }
    }
    struct rewrite r = {
        .src_ip = v->relay_ip, .dst_ip = v->peer_ip, .src_port = v->relay_port, .dst_port = v->peer_port,
        .udp_len = sizeof(struct udphdr) + length, .head = 4, .tail = padding, .sum = sum,
    };
    int sent;
    int action = emit(ctx, p, &r, &sent);
    if (!sent) return action;
    add_counts(&channel_counters, &key, length);
    return count(TRAVERSE_XDP_FORWARDED_TO_PEER, action);
}

// MARK: Peer -> client

static __always_inline int peer_to_client(struct xdp_md *ctx, struct packet *p, __u64 now) {
    struct traverse_xdp_peer_key key = {};
    if (p->family == TRAVERSE_XDP_INET) {
        copy_ip(key.relay_ip, &p->ip4->daddr, TRAVERSE_XDP_INET);
        copy_ip(key.peer_ip, &p->ip4->saddr, TRAVERSE_XDP_INET);
    } else {
        copy_ip(key.relay_ip, &p->ip6->daddr, TRAVERSE_XDP_INET6);
        copy_ip(key.peer_ip, &p->ip6->saddr, TRAVERSE_XDP_INET6);
    }
    key.relay_port = p->udp->dest;
    key.peer_port = p->udp->source;
    key.family = p->family;
    struct traverse_xdp_peer_value *v = bpf_map_lookup_elem(&peers, &key);
    if (!v) return -1;  // no channel to this peer (a Data indication, or not ours)
    if (!live(v->expiry_ns, now)) return count(TRAVERSE_XDP_PASS_CHANNEL_EXPIRED, XDP_PASS);
    if (!permitted(key.relay_ip, key.relay_port, key.peer_ip, p->family, now))
        return count(TRAVERSE_XDP_PASS_NO_PERMISSION, XDP_PASS);
    if (p->udp->check == 0 && p->family == TRAVERSE_XDP_INET6) return count(TRAVERSE_XDP_PASS_NO_CHECKSUM, XDP_PASS);
    __u32 length = p->payload_length;
    if (length > 0xffff - 4 - sizeof(struct udphdr) - sizeof(struct ipv6hdr))
        return count(TRAVERSE_XDP_PASS_TOO_BIG, XDP_PASS);

    // Added in front of the payload: the ChannelData header.
    struct rewrite r = {
        .src_ip = v->server_ip, .dst_ip = v->client_ip, .src_port = v->server_port, .dst_port = v->client_port,
        .udp_len = sizeof(struct udphdr) + 4 + length, .head = -4,
        .header = {v->channel, bpf_htons(length)}, .header_words = 2,
    };
    r.sum = csum_add(csum_add((__u16)~p->udp->check, r.header[0]), r.header[1]);
    int sent;
    int action = emit(ctx, p, &r, &sent);
    if (!sent) return action;
    add_counts(&peer_counters, &key, length);
    return count(TRAVERSE_XDP_FORWARDED_TO_CLIENT, action);
}

SEC("xdp")
int traverse_relay(struct xdp_md *ctx) {
    struct packet p = {};
    int verdict = parse(ctx, &p);
    if (verdict >= 0) return count(verdict, XDP_PASS);
    __u64 now = bpf_ktime_get_ns();
    int action = client_to_peer(ctx, &p, now);
    if (action >= 0) return action;
    action = peer_to_client(ctx, &p, now);
    if (action >= 0) return action;
    return count(TRAVERSE_XDP_PASS_NO_BINDING, XDP_PASS);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";

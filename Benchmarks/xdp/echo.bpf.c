// An echo peer in XDP, for bench-xdp.sh (ECHO=xdp): a UDP/IPv4 datagram to a port in
// [ECHO_PORT_LO, ECHO_PORT_HI] goes back where it came from (Ethernet and IP addresses and UDP
// ports swapped, XDP_TX); anything else passes. Swapping leaves both checksums valid (a ones'
// complement sum does not depend on the order of its words), so the payload is never touched.
// A user-space echo peer (turnutils_peer, one thread) tops out below what a relay with a kernel
// fast path carries on this machine; this one costs next to nothing, the same for every server.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#ifndef ECHO_PORT_LO
#define ECHO_PORT_LO 20000
#endif
#ifndef ECHO_PORT_HI
#define ECHO_PORT_HI ECHO_PORT_LO
#endif

SEC("xdp")
int echo(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP)) return XDP_PASS;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > end || ip->ihl != 5 || ip->protocol != IPPROTO_UDP) return XDP_PASS;
    if (ip->frag_off & bpf_htons(0x3FFF)) return XDP_PASS;
    struct udphdr *udp = (void *)(ip + 1);
    if ((void *)(udp + 1) > end) return XDP_PASS;
    __u16 port = bpf_ntohs(udp->dest);
    if (port < ECHO_PORT_LO || port > ECHO_PORT_HI) return XDP_PASS;
    unsigned char mac[ETH_ALEN];
    __builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
    __builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
    __builtin_memcpy(eth->h_source, mac, ETH_ALEN);
    __be32 a = ip->saddr;
    ip->saddr = ip->daddr;
    ip->daddr = a;
    __be16 p = udp->source;
    udp->source = udp->dest;
    udp->dest = p;
    return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";

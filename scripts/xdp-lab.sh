#!/usr/bin/env bash
# The XDP lab: a network namespace for the relay server, joined to this namespace by a veth pair.
#
#   scripts/xdp-lab.sh up     # create (idempotent: an old lab is removed first)
#   scripts/xdp-lab.sh down   # remove
#
# Server side (namespace $LAB_NS): $LAB_SERVER_IF with $LAB_NET.2/24 and ${LAB_NET6}2/64; the XDP
# program is attached here by the server (server.fast_path_interfaces). Client side (this
# namespace): $LAB_CLIENT_IF with $LAB_NET.1/24 and ${LAB_NET6}1/64 (clients and echo peers bind
# here). Defaults: 10.77.0 and fd77::, one queue per veth end (VETH_QUEUES), and a pass program on
# the client side (CLIENT_XDP_OBJECT replaces it, e.g. Benchmarks/xdp's echo program).
#
# Two things veth needs that a NIC does not:
# - a datagram sent back out with XDP_TX reaches the other end only when that end's veth runs an
#   XDP program too (any, even one that only passes): a pass program is attached client side;
# - a veth hands its peer packets whose UDP checksum is left for offload (CHECKSUM_PARTIAL), which
#   an XDP program cannot complete: transmit checksum offload is turned off on both ends so that
#   senders write full checksums, as packets from a real network have.
# The FIB helper the program uses answers only where forwarding is on for the interface, so the
# server side enables it (see Docs/deployment.md).
set -euo pipefail

LAB_NS=${LAB_NS:-tvx}
LAB_SERVER_IF=${LAB_SERVER_IF:-tvx1}
LAB_CLIENT_IF=${LAB_CLIENT_IF:-tvx0}
CLANG=${CLANG:-clang}
PASS_DIR=${PASS_DIR:-/tmp/traverse-xdp-lab}
LAB_NET=${LAB_NET:-10.77.0}
LAB_NET6=${LAB_NET6:-fd77::}
VETH_QUEUES=${VETH_QUEUES:-1}
CLIENT_XDP_OBJECT=${CLIENT_XDP_OBJECT:-}

down() {
    ip link del "$LAB_CLIENT_IF" 2>/dev/null || true
    ip netns del "$LAB_NS" 2>/dev/null || true
}

up() {
    down
    ip netns add "$LAB_NS"
    ip link add "$LAB_CLIENT_IF" numtxqueues "$VETH_QUEUES" numrxqueues "$VETH_QUEUES" type veth \
        peer name "$LAB_SERVER_IF" numtxqueues "$VETH_QUEUES" numrxqueues "$VETH_QUEUES"
    ip link set "$LAB_SERVER_IF" netns "$LAB_NS"
    ip addr add "$LAB_NET.1/24" dev "$LAB_CLIENT_IF"
    ip -6 addr add "${LAB_NET6}1/64" dev "$LAB_CLIENT_IF" nodad
    ip link set "$LAB_CLIENT_IF" up
    ip -n "$LAB_NS" link set lo up
    ip -n "$LAB_NS" addr add "$LAB_NET.2/24" dev "$LAB_SERVER_IF"
    ip -n "$LAB_NS" -6 addr add "${LAB_NET6}2/64" dev "$LAB_SERVER_IF" nodad
    ip -n "$LAB_NS" link set "$LAB_SERVER_IF" up
    ip netns exec "$LAB_NS" sysctl -qw "net.ipv4.conf.$LAB_SERVER_IF.forwarding=1" \
        "net.ipv6.conf.$LAB_SERVER_IF.forwarding=1"
    ethtool -K "$LAB_CLIENT_IF" tx off >/dev/null
    ip netns exec "$LAB_NS" ethtool -K "$LAB_SERVER_IF" tx off >/dev/null
    mkdir -p "$PASS_DIR"
    printf '%s\n' '#include <linux/bpf.h>' '#include <bpf/bpf_helpers.h>' \
        'SEC("xdp") int pass(struct xdp_md *ctx) { return XDP_PASS; }' \
        'char LICENSE[] SEC("license") = "GPL";' >"$PASS_DIR/pass.bpf.c"
    "$CLANG" -O2 -g -target bpf -I"/usr/include/$(uname -m)-linux-gnu" -c "$PASS_DIR/pass.bpf.c" \
        -o "$PASS_DIR/pass.bpf.o"
    ip link set dev "$LAB_CLIENT_IF" xdpdrv obj "${CLIENT_XDP_OBJECT:-$PASS_DIR/pass.bpf.o}" sec xdp
    # Neighbours resolved once, so that the first relayed datagrams do not wait for ARP/ND.
    ip netns exec "$LAB_NS" ping -c1 -W1 "$LAB_NET.1" >/dev/null 2>&1 || true
}

case "${1:-}" in
up) up ;;
down) down ;;
*)
    echo "usage: $0 up|down" >&2
    exit 2
    ;;
esac

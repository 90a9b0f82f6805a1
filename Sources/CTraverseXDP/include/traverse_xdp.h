// Loading, attaching and filling Traverse's XDP program through libbpf.
//
// Invariant: a loaded program is attached only through bpf_link objects owned by the returned
// handle, never pinned: when the process exits, however it exits, the kernel closes the links
// and detaches the program, so nothing relays for allocations that no longer exist.
#ifndef TRAVERSE_XDP_H
#define TRAVERSE_XDP_H

#include <stddef.h>
#include <stdint.h>

#include "traverse_xdp_maps.h"

/// A loaded program with its maps and the links that attach it.
typedef struct traverse_xdp traverse_xdp;

/// How a program was attached to an interface.
enum traverse_xdp_mode {
    /// In the driver (native XDP).
    TRAVERSE_XDP_MODE_NATIVE = 1,
    /// In the generic (skb) hook, where the driver has no XDP support.
    TRAVERSE_XDP_MODE_GENERIC = 2,
};

/// Opens the BPF object at `path` and loads its program and maps into the kernel. Returns NULL
/// on failure with a one-line reason (no capability, no BTF, the verifier's last line) in
/// `reason`.
traverse_xdp *traverse_xdp_load(const char *path, char *reason, size_t reason_size);

/// Attaches the program to interface `ifindex`, natively if the driver can, generically
/// otherwise. Returns a `traverse_xdp_mode`, or a negative errno with a reason.
int traverse_xdp_attach(traverse_xdp *xdp, int ifindex, char *reason, size_t reason_size);

/// Detaches from every interface and unloads the program and its maps.
void traverse_xdp_close(traverse_xdp *xdp);

/// The map file descriptors.
int traverse_xdp_channels_fd(const traverse_xdp *xdp);
int traverse_xdp_peers_fd(const traverse_xdp *xdp);
int traverse_xdp_permissions_fd(const traverse_xdp *xdp);
int traverse_xdp_channel_counters_fd(const traverse_xdp *xdp);
int traverse_xdp_peer_counters_fd(const traverse_xdp *xdp);

/// The number of possible CPUs: the length of a per-CPU map's value.
int traverse_xdp_possible_cpus(void);

/// Sums the per-CPU verdict counters into `totals[0..<count]` (count at most
/// TRAVERSE_XDP_VERDICT_COUNT). Returns 0, or a negative errno.
int traverse_xdp_verdicts(const traverse_xdp *xdp, uint64_t *totals, int count);

/// Map operations (0 or a negative errno).
int traverse_xdp_map_update(int fd, const void *key, const void *value);
int traverse_xdp_map_insert(int fd, const void *key, const void *value);  // only if absent
int traverse_xdp_map_lookup(int fd, const void *key, void *value);
int traverse_xdp_map_delete(int fd, const void *key);
int traverse_xdp_map_lookup_and_delete(int fd, const void *key, void *value);

/// bpf_ktime_get_ns()'s clock (CLOCK_MONOTONIC) in nanoseconds, for tests.
uint64_t traverse_xdp_monotonic_ns(void);

#endif

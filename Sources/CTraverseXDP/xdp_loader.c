// libbpf glue for Traverse's XDP program: load, attach through owned links, map operations.
// Invariant: nothing is pinned and no link outlives the handle (see traverse_xdp.h).
#include "traverse_xdp.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/if_link.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TRAVERSE_XDP_MAX_LINKS 16

struct traverse_xdp {
    struct bpf_object *object;
    struct bpf_program *program;
    int link_fds[TRAVERSE_XDP_MAX_LINKS];
    int link_count;
    int channels_fd, peers_fd, permissions_fd, verdicts_fd, channel_counters_fd, peer_counters_fd, egress_fd;
};

// libbpf's messages: the last non-empty warning line is kept as the reason of a failed load
// (the verifier's verdict comes last); nothing is printed.
static __thread char last_message[256];

static int keep_last_line(enum libbpf_print_level level, const char *format, va_list args) {
    if (level == LIBBPF_DEBUG) return 0;
    char line[sizeof(last_message)];
    vsnprintf(line, sizeof(line), format, args);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == ' ')) line[--n] = 0;
    if (n > 0 && strncmp(line, "-- END PROG LOAD LOG --", 23) != 0) memcpy(last_message, line, n + 1);
    return 0;
}

static void set_reason(char *reason, size_t size, const char *what, int err) {
    if (!reason || size == 0) return;
    if (last_message[0])
        snprintf(reason, size, "%s: %s (%s)", what, strerror(err), last_message);
    else
        snprintf(reason, size, "%s: %s", what, strerror(err));
}

traverse_xdp *traverse_xdp_load(const char *path, char *reason, size_t reason_size) {
    libbpf_set_print(keep_last_line);
    last_message[0] = 0;
    traverse_xdp *x = calloc(1, sizeof(*x));
    if (!x) {
        set_reason(reason, reason_size, "out of memory", ENOMEM);
        return NULL;
    }
    x->object = bpf_object__open_file(path, NULL);
    int err = libbpf_get_error(x->object);
    if (err) {
        x->object = NULL;
        set_reason(reason, reason_size, "cannot open the BPF object", -err);
        free(x);
        return NULL;
    }
    x->program = bpf_object__find_program_by_name(x->object, "traverse_relay");
    if (!x->program) {
        set_reason(reason, reason_size, "the BPF object has no program traverse_relay", ENOENT);
        bpf_object__close(x->object);
        free(x);
        return NULL;
    }
    err = bpf_object__load(x->object);
    if (err) {
        set_reason(reason, reason_size, "cannot load the XDP program", -err);
        bpf_object__close(x->object);
        free(x);
        return NULL;
    }
    x->channels_fd = bpf_object__find_map_fd_by_name(x->object, "channels");
    x->peers_fd = bpf_object__find_map_fd_by_name(x->object, "peers");
    x->permissions_fd = bpf_object__find_map_fd_by_name(x->object, "permissions");
    x->verdicts_fd = bpf_object__find_map_fd_by_name(x->object, "verdicts");
    x->channel_counters_fd = bpf_object__find_map_fd_by_name(x->object, "channel_counters");
    x->peer_counters_fd = bpf_object__find_map_fd_by_name(x->object, "peer_counters");
    x->egress_fd = bpf_object__find_map_fd_by_name(x->object, "egress");
    if (x->egress_fd < 0 || x->channels_fd < 0 || x->peers_fd < 0 || x->permissions_fd < 0 || x->verdicts_fd < 0 ||
        x->channel_counters_fd < 0 || x->peer_counters_fd < 0) {
        set_reason(reason, reason_size, "the BPF object lacks a map", ENOENT);
        bpf_object__close(x->object);
        free(x);
        return NULL;
    }
    return x;
}

int traverse_xdp_attach(traverse_xdp *x, int ifindex, char *reason, size_t reason_size) {
    if (x->link_count >= TRAVERSE_XDP_MAX_LINKS) {
        set_reason(reason, reason_size, "too many interfaces", E2BIG);
        return -E2BIG;
    }
    last_message[0] = 0;
    int prog_fd = bpf_program__fd(x->program);
    // The link's file descriptor is the attachment: closing it (or the process ending) detaches.
    LIBBPF_OPTS(bpf_link_create_opts, native, .flags = XDP_FLAGS_DRV_MODE);
    int fd = bpf_link_create(prog_fd, ifindex, BPF_XDP, &native);
    int mode = TRAVERSE_XDP_MODE_NATIVE;
    if (fd < 0) {
        LIBBPF_OPTS(bpf_link_create_opts, generic, .flags = XDP_FLAGS_SKB_MODE);
        fd = bpf_link_create(prog_fd, ifindex, BPF_XDP, &generic);
        mode = TRAVERSE_XDP_MODE_GENERIC;
    }
    if (fd < 0) {
        int err = errno;
        set_reason(reason, reason_size, "cannot attach the XDP program", err);
        return -err;
    }
    x->link_fds[x->link_count++] = fd;
    // A redirect may now leave through this interface.
    __u32 key = (__u32)ifindex, value = (__u32)ifindex;
    if (bpf_map_update_elem(x->egress_fd, &key, &value, BPF_ANY) != 0) {
        int err = errno;
        set_reason(reason, reason_size, "cannot add the interface to the egress map", err);
        return -err;
    }
    return mode;
}

void traverse_xdp_close(traverse_xdp *x) {
    if (!x) return;
    for (int i = 0; i < x->link_count; i++) close(x->link_fds[i]);
    bpf_object__close(x->object);
    free(x);
}

int traverse_xdp_channels_fd(const traverse_xdp *x) { return x->channels_fd; }
int traverse_xdp_peers_fd(const traverse_xdp *x) { return x->peers_fd; }
int traverse_xdp_permissions_fd(const traverse_xdp *x) { return x->permissions_fd; }
int traverse_xdp_channel_counters_fd(const traverse_xdp *x) { return x->channel_counters_fd; }
int traverse_xdp_peer_counters_fd(const traverse_xdp *x) { return x->peer_counters_fd; }
int traverse_xdp_possible_cpus(void) { return libbpf_num_possible_cpus(); }

int traverse_xdp_verdicts(const traverse_xdp *x, uint64_t *totals, int count) {
    int cpus = libbpf_num_possible_cpus();
    if (cpus <= 0) return cpus < 0 ? cpus : -EINVAL;
    uint64_t *per_cpu = calloc((size_t)cpus, sizeof(uint64_t));
    if (!per_cpu) return -ENOMEM;
    for (__u32 k = 0; k < (__u32)count && k < TRAVERSE_XDP_VERDICT_COUNT; k++) {
        totals[k] = 0;
        if (bpf_map_lookup_elem(x->verdicts_fd, &k, per_cpu) != 0) {
            int err = -errno;
            free(per_cpu);
            return err;
        }
        for (int c = 0; c < cpus; c++) totals[k] += per_cpu[c];
    }
    free(per_cpu);
    return 0;
}

int traverse_xdp_map_update(int fd, const void *key, const void *value) {
    return bpf_map_update_elem(fd, key, value, BPF_ANY) ? -errno : 0;
}

int traverse_xdp_map_insert(int fd, const void *key, const void *value) {
    return bpf_map_update_elem(fd, key, value, BPF_NOEXIST) ? -errno : 0;
}

int traverse_xdp_map_lookup(int fd, const void *key, void *value) {
    return bpf_map_lookup_elem(fd, key, value) ? -errno : 0;
}

int traverse_xdp_map_delete(int fd, const void *key) {
    return bpf_map_delete_elem(fd, key) ? -errno : 0;
}

int traverse_xdp_map_lookup_and_delete(int fd, const void *key, void *value) {
    return bpf_map_lookup_and_delete_elem(fd, key, value) ? -errno : 0;
}

uint64_t traverse_xdp_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#define _GNU_SOURCE 1
#include "CTraverseSystem.h"

#include <errno.h>
#include <malloc.h>
#include <linux/errqueue.h>
#include <netinet/udp.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <sys/socket.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif

_Static_assert(sizeof(traverse_mmsghdr) == sizeof(struct mmsghdr), "mmsghdr layout");
_Static_assert(offsetof(traverse_mmsghdr, msg_len) == offsetof(struct mmsghdr, msg_len), "mmsghdr layout");

int traverse_recvmmsg(int fd, traverse_mmsghdr *msgs, unsigned int count, int flags) {
    return recvmmsg(fd, (struct mmsghdr *)msgs, count, flags, NULL);
}

int traverse_sendmmsg(int fd, traverse_mmsghdr *msgs, unsigned int count, int flags) {
    return sendmmsg(fd, (struct mmsghdr *)msgs, count, flags);
}

size_t traverse_cmsg_space(size_t payload) { return CMSG_SPACE(payload); }

int traverse_enable_udp_gro(int fd) {
    int on = 1;
    return setsockopt(fd, SOL_UDP, UDP_GRO, &on, sizeof on);
}

int traverse_cmsg_gro_segment_size(const struct msghdr *msg) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)msg); c; c = CMSG_NXTHDR((struct msghdr *)msg, c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
            int size = 0;
            memcpy(&size, CMSG_DATA(c), sizeof size);
            return size;
        }
    }
    return 0;
}

int64_t traverse_cmsg_rxq_overflow(const struct msghdr *msg) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)msg); c; c = CMSG_NXTHDR((struct msghdr *)msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
            uint32_t dropped = 0;
            memcpy(&dropped, CMSG_DATA(c), sizeof dropped);
            return dropped;
        }
    }
    return -1;
}

size_t traverse_cmsg_put_udp_segment(void *control, size_t control_len, uint16_t segment_size) {
    if (control_len < CMSG_SPACE(sizeof(uint16_t))) return 0;
    memset(control, 0, CMSG_SPACE(sizeof(uint16_t)));
    struct cmsghdr *c = (struct cmsghdr *)control;
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    memcpy(CMSG_DATA(c), &segment_size, sizeof segment_size);
    return CMSG_SPACE(sizeof(uint16_t));
}

int traverse_set_dont_fragment(int fd, int family, int on) {
    if (family == AF_INET6) {
        int v = on ? IPV6_PMTUDISC_DO : IPV6_PMTUDISC_DONT;
        return setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &v, sizeof v);
    }
    int v = on ? IP_PMTUDISC_DO : IP_PMTUDISC_DONT;
    return setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &v, sizeof v);
}

int traverse_enable_recverr(int fd, int family) {
    int on = 1;
    if (family == AF_INET6) return setsockopt(fd, IPPROTO_IPV6, IPV6_RECVERR, &on, sizeof on);
    return setsockopt(fd, IPPROTO_IP, IP_RECVERR, &on, sizeof on);
}

int traverse_read_icmp_error(int fd, traverse_icmp_error *out) {
    uint8_t data[64];
    uint8_t control[512];
    struct iovec iov = {.iov_base = data, .iov_len = sizeof data};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    memset(out, 0, sizeof *out);
    msg.msg_name = &out->destination;
    msg.msg_namelen = sizeof out->destination;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    if (recvmsg(fd, &msg, MSG_ERRQUEUE | MSG_DONTWAIT) < 0) return -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        int v4 = c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_RECVERR;
        int v6 = c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_RECVERR;
        if (!v4 && !v6) continue;
        struct sock_extended_err err;
        memcpy(&err, CMSG_DATA(c), sizeof err);
        if (err.ee_origin != SO_EE_ORIGIN_ICMP && err.ee_origin != SO_EE_ORIGIN_ICMP6) return 0;
        out->type = err.ee_type;
        out->code = err.ee_code;
        out->info = err.ee_info;
        out->is_ipv6 = v6;
        return 1;
    }
    return 0;
}

int traverse_accept(int fd, struct sockaddr_storage *address, socklen_t *length) {
    return accept4(fd, (struct sockaddr *)address, length, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

int traverse_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int traverse_epoll_add(int epfd, int fd, uint64_t token) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = token};
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

int traverse_epoll_remove(int epfd, int fd) { return epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL); }

int traverse_epoll_ready(int epfd, uint64_t *tokens, int max) {
    struct epoll_event events[256];
    if (max > 256) max = 256;
    int n = epoll_wait(epfd, events, max, 0);
    for (int i = 0; i < n; i++) tokens[i] = events[i].data.u64;
    return n;
}

int traverse_epoll_wait(int epfd, uint64_t *tokens, int max, int64_t timeout_ns) {
    struct epoll_event events[256];
    if (max > 256) max = 256;
    struct timespec t = {.tv_sec = timeout_ns / 1000000000, .tv_nsec = timeout_ns % 1000000000};
    int n = epoll_pwait2(epfd, events, max, &t, NULL);
    for (int i = 0; i < n; i++) tokens[i] = events[i].data.u64;
    return n;
}

int traverse_malloc_trim(void) { return malloc_trim(0); }

int traverse_doorbell_create(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

void traverse_doorbell_ring(int fd) {
    uint64_t one = 1;
    ssize_t r = write(fd, &one, sizeof one);
    (void)r;  // EAGAIN: already ringing, which is all that is needed
}

void traverse_doorbell_clear(int fd) {
    uint64_t n;
    ssize_t r = read(fd, &n, sizeof n);
    (void)r;
}

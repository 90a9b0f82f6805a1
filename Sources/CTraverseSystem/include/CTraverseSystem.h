// CTraverseSystem: Linux socket calls that Glibc's Swift overlay does not expose because
// they sit behind _GNU_SOURCE: recvmmsg/sendmmsg, struct mmsghdr, the CMSG_* macros,
// UDP GSO/GRO and the IP_RECVERR error queue; and glibc's malloc_trim. Kept minimal; the policy lives in Swift.
#ifndef TRAVERSE_CTRAVERSESYSTEM_H
#define TRAVERSE_CTRAVERSESYSTEM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <netinet/in.h>

/// Same layout as the kernel's struct mmsghdr (checked by a static assertion in the .c file).
typedef struct traverse_mmsghdr {
    struct msghdr msg_hdr;
    unsigned int msg_len;
} traverse_mmsghdr;

/// recvmmsg(2) without a timeout. Returns the number of messages or -1 with errno set.
int traverse_recvmmsg(int fd, traverse_mmsghdr *msgs, unsigned int count, int flags);

/// sendmmsg(2). Returns the number of messages sent or -1 with errno set.
int traverse_sendmmsg(int fd, traverse_mmsghdr *msgs, unsigned int count, int flags);

/// Space a control buffer needs for one cmsg carrying `payload` bytes (CMSG_SPACE).
size_t traverse_cmsg_space(size_t payload);

/// malloc_trim(3) (glibc, <malloc.h>): gives free heap memory back to the system; 1 if any was.
int traverse_malloc_trim(void);

/// Turns on UDP generic receive offload; returns 0 or -1.
int traverse_enable_udp_gro(int fd);

/// Segment size reported by UDP GRO in a received message's control data, or 0.
int traverse_cmsg_gro_segment_size(const struct msghdr *msg);

/// Kernel drop counter (SO_RXQ_OVFL) in a received message's control data; -1 when absent.
int64_t traverse_cmsg_rxq_overflow(const struct msghdr *msg);

/// Writes a UDP_SEGMENT cmsg (UDP GSO) into control; returns the bytes used or 0 if it does not fit.
size_t traverse_cmsg_put_udp_segment(void *control, size_t control_len, uint16_t segment_size);

/// Sets the "don't fragment" behaviour (IP_MTU_DISCOVER / IPV6_MTU_DISCOVER = DO); returns 0 or -1.
int traverse_set_dont_fragment(int fd, int family, int on);

/// Turns on IP_RECVERR / IPV6_RECVERR so ICMP errors can be read from the error queue.
int traverse_enable_recverr(int fd, int family);

/// An ICMP error read from a socket's error queue.
typedef struct traverse_icmp_error {
    struct sockaddr_storage destination;  ///< the peer the failed datagram was sent to
    uint8_t type;
    uint8_t code;
    uint32_t info;  ///< e.g. the next-hop MTU for "fragmentation needed"
    int is_ipv6;
} traverse_icmp_error;

/// Reads one ICMP error from the error queue (MSG_ERRQUEUE). Returns 1 when one was read,
/// 0 when the queue held something that is not an ICMP error, -1 with errno (EAGAIN when empty).
int traverse_read_icmp_error(int fd, traverse_icmp_error *out);

/// accept4(2) with SOCK_NONBLOCK | SOCK_CLOEXEC.
int traverse_accept(int fd, struct sockaddr_storage *address, socklen_t *length);

/// A level-triggered epoll set (epoll_create1 with EPOLL_CLOEXEC); -1 on failure.
/// A shard watches all its UDP sockets through one such set and one Dispatch source on it, so
/// that a wakeup serves every socket that became readable, not one.
int traverse_epoll_create(void);

/// Watches `fd` for input, reporting `token` when it is readable (or has an error).
int traverse_epoll_add(int epfd, int fd, uint64_t token);

/// Stops watching `fd`.
int traverse_epoll_remove(int epfd, int fd);

/// Ready tokens without waiting: fills up to `max` (at most 256) and returns how many.
int traverse_epoll_ready(int epfd, uint64_t *tokens, int max);

/// An eventfd (non-blocking, close-on-exec) used as a doorbell in an epoll set; -1 on failure.
int traverse_doorbell_create(void);

/// Makes the doorbell readable (wakes an epoll wait on a set that holds it).
void traverse_doorbell_ring(int fd);

/// Makes the doorbell unreadable again.
void traverse_doorbell_clear(int fd);

/// Like traverse_epoll_ready, but sleeps up to `timeout_ns` for the first ready socket
/// (epoll_pwait2). Returns 0 when none became ready in time, -1 with errno on failure.
int traverse_epoll_wait(int epfd, uint64_t *tokens, int max, int64_t timeout_ns);

#endif

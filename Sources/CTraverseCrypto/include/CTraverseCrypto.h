// CTraverseCrypto: the digest and MAC primitives STUN needs, computed with the system's
// OpenSSL (libcrypto) on caller-provided stack memory so that checking or adding
// MESSAGE-INTEGRITY costs no heap allocation per message.
//
// Every MAC takes its input as two segments because STUN integrity is computed over a
// header whose length field is rewritten: the caller passes the patched 20-byte header and
// then the attribute bytes that follow it, without copying the message.
#ifndef TRAVERSE_CTRAVERSECRYPTO_H
#define TRAVERSE_CTRAVERSECRYPTO_H

#include <stddef.h>
#include <stdint.h>

/// HMAC-SHA1 over (part1 || part2); writes 20 bytes to out.
void traverse_hmac_sha1(const void *key, size_t key_len,
                        const void *part1, size_t len1,
                        const void *part2, size_t len2,
                        uint8_t out[20]);

/// HMAC-SHA256 over (part1 || part2); writes 32 bytes to out.
void traverse_hmac_sha256(const void *key, size_t key_len,
                          const void *part1, size_t len1,
                          const void *part2, size_t len2,
                          uint8_t out[32]);

/// MD5 of data (the RFC 8489 long-term key for the MD5 password algorithm).
void traverse_md5(const void *data, size_t len, uint8_t out[16]);

/// SHA-256 of data (USERHASH and the SHA-256 password algorithm).
void traverse_sha256(const void *data, size_t len, uint8_t out[32]);

/// Constant-time comparison: returns 1 when the buffers are equal, 0 otherwise.
int traverse_constant_time_equal(const void *a, const void *b, size_t len);

/// Fills buf with cryptographically strong random bytes; returns 1 on success.
int traverse_random_bytes(void *buf, size_t len);

#endif

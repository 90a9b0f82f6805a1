// The low-level digest interfaces keep their whole state in a stack struct, which is what
// lets integrity checks run without touching the heap. OpenSSL 3 marks them deprecated in
// favour of EVP, whose contexts allocate; we accept the deprecation on purpose.
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include "CTraverseCrypto.h"

#include <openssl/crypto.h>
#include <openssl/md5.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <string.h>

#define HMAC_BLOCK 64

void traverse_sha256(const void *data, size_t len, uint8_t out[32]);

static void pad_key(const void *key, size_t key_len, uint8_t block[HMAC_BLOCK], int sha256) {
    memset(block, 0, HMAC_BLOCK);
    if (key_len > HMAC_BLOCK) {
        if (sha256) {
            traverse_sha256(key, key_len, block);
        } else {
            SHA_CTX ctx;
            SHA1_Init(&ctx);
            SHA1_Update(&ctx, key, key_len);
            SHA1_Final(block, &ctx);
        }
    } else if (key_len > 0) {
        memcpy(block, key, key_len);
    }
}

void traverse_hmac_sha1(const void *key, size_t key_len, const void *part1, size_t len1, const void *part2,
                        size_t len2, uint8_t out[20]) {
    uint8_t block[HMAC_BLOCK], pad[HMAC_BLOCK], inner[SHA_DIGEST_LENGTH];
    pad_key(key, key_len, block, 0);
    SHA_CTX ctx;
    for (int i = 0; i < HMAC_BLOCK; i++) pad[i] = block[i] ^ 0x36;
    SHA1_Init(&ctx);
    SHA1_Update(&ctx, pad, HMAC_BLOCK);
    if (len1) SHA1_Update(&ctx, part1, len1);
    if (len2) SHA1_Update(&ctx, part2, len2);
    SHA1_Final(inner, &ctx);
    for (int i = 0; i < HMAC_BLOCK; i++) pad[i] = block[i] ^ 0x5c;
    SHA1_Init(&ctx);
    SHA1_Update(&ctx, pad, HMAC_BLOCK);
    SHA1_Update(&ctx, inner, sizeof inner);
    SHA1_Final(out, &ctx);
    OPENSSL_cleanse(block, sizeof block);
    OPENSSL_cleanse(pad, sizeof pad);
}

void traverse_hmac_sha256(const void *key, size_t key_len, const void *part1, size_t len1, const void *part2,
                          size_t len2, uint8_t out[32]) {
    uint8_t block[HMAC_BLOCK], pad[HMAC_BLOCK], inner[SHA256_DIGEST_LENGTH];
    pad_key(key, key_len, block, 1);
    SHA256_CTX ctx;
    for (int i = 0; i < HMAC_BLOCK; i++) pad[i] = block[i] ^ 0x36;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, pad, HMAC_BLOCK);
    if (len1) SHA256_Update(&ctx, part1, len1);
    if (len2) SHA256_Update(&ctx, part2, len2);
    SHA256_Final(inner, &ctx);
    for (int i = 0; i < HMAC_BLOCK; i++) pad[i] = block[i] ^ 0x5c;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, pad, HMAC_BLOCK);
    SHA256_Update(&ctx, inner, sizeof inner);
    SHA256_Final(out, &ctx);
    OPENSSL_cleanse(block, sizeof block);
    OPENSSL_cleanse(pad, sizeof pad);
}

// The one-shot MD5()/SHA256() of OpenSSL 3 go through EVP and allocate; these do not.
void traverse_md5(const void *data, size_t len, uint8_t out[16]) {
    MD5_CTX ctx;
    MD5_Init(&ctx);
    MD5_Update(&ctx, data, len);
    MD5_Final(out, &ctx);
}

void traverse_sha256(const void *data, size_t len, uint8_t out[32]) {
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, data, len);
    SHA256_Final(out, &ctx);
}

int traverse_constant_time_equal(const void *a, const void *b, size_t len) { return CRYPTO_memcmp(a, b, len) == 0; }

int traverse_random_bytes(void *buf, size_t len) { return RAND_bytes(buf, (int)len) == 1; }

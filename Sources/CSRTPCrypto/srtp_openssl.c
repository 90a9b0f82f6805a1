// AES-ICM and HMAC-SHA1 for libsrtp, computed with OpenSSL's libcrypto and registered through
// libsrtp's public replacement API (srtp_replace_cipher_type / srtp_replace_auth_type).
//
// Each srtp_cipher_t / srtp_auth_t is allocated together with its state in one block; all the
// per-key work (the AES key schedule inside an EVP_CIPHER_CTX, the HMAC ipad and opad SHA-1
// states) happens in init, so set_iv, encrypt, start, update and compute never allocate.
//
// The low-level SHA1_* interface keeps its whole state in a plain struct that can be copied,
// which is what makes "start" a memcpy. OpenSSL 3 marks it deprecated in favour of EVP, whose
// contexts allocate; we accept the deprecation on purpose (as CTraverseCrypto does).
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include "CSRTPCrypto.h"

#include <srtp2/auth.h>
#include <srtp2/cipher.h>
#include <srtp2/srtp.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// MARK: - AES-ICM (RFC 3711 section 4.1.1)

#define ICM_BLOCK 16
// The block counter is the low 16 bits of the counter block; a key stream segment ends before
// it would wrap (RFC 3711 section 4.1.1, 2^16 blocks at most).
#define ICM_SEGMENT_BLOCKS 0x10000u

typedef struct {
    EVP_CIPHER_CTX *ctx;        // AES-CTR with this session's key, created once
    const EVP_CIPHER *evp;      // EVP_aes_128_ctr() or EVP_aes_256_ctr()
    int key_size;               // AES key octets (16 or 32); the 14-octet salt follows the key
    uint8_t offset[ICM_BLOCK];  // salt || 0x0000
    size_t remaining;           // key stream octets left before the 16-bit block counter wraps
} icm_state;

typedef struct {
    srtp_cipher_t cipher;  // first, so that an srtp_cipher_t * is an icm_cipher *
    icm_state state;
} icm_cipher;

static const srtp_cipher_type_t traverse_aes_icm_128;
static const srtp_cipher_type_t traverse_aes_icm_256;

static srtp_err_status_t icm_alloc(srtp_cipher_t **c, int key_len, int tag_len) {
    (void)tag_len;  // counter mode has no tag
    const srtp_cipher_type_t *type;
    const EVP_CIPHER *evp;
    int key_size, algorithm;
    switch (key_len) {
    case SRTP_AES_ICM_128_KEY_LEN_WSALT:
        type = &traverse_aes_icm_128;
        evp = EVP_aes_128_ctr();
        key_size = SRTP_AES_128_KEY_LEN;
        algorithm = SRTP_AES_ICM_128;
        break;
    case SRTP_AES_ICM_256_KEY_LEN_WSALT:
        type = &traverse_aes_icm_256;
        evp = EVP_aes_256_ctr();
        key_size = SRTP_AES_256_KEY_LEN;
        algorithm = SRTP_AES_ICM_256;
        break;
    default:
        return srtp_err_status_bad_param;
    }
    if (evp == NULL) return srtp_err_status_cipher_fail;

    icm_cipher *ic = calloc(1, sizeof *ic);
    if (ic == NULL) return srtp_err_status_alloc_fail;
    ic->state.ctx = EVP_CIPHER_CTX_new();
    if (ic->state.ctx == NULL) {
        free(ic);
        return srtp_err_status_alloc_fail;
    }
    ic->state.evp = evp;
    ic->state.key_size = key_size;
    ic->cipher.type = type;
    ic->cipher.state = &ic->state;
    ic->cipher.key_len = key_len;
    ic->cipher.algorithm = algorithm;
    *c = &ic->cipher;
    return srtp_err_status_ok;
}

static srtp_err_status_t icm_dealloc(srtp_cipher_t *c) {
    icm_cipher *ic = (icm_cipher *)c;
    if (ic == NULL) return srtp_err_status_ok;
    EVP_CIPHER_CTX_free(ic->state.ctx);
    OPENSSL_cleanse(ic, sizeof *ic);
    free(ic);
    return srtp_err_status_ok;
}

// key is the AES key followed by the 14-octet salt.
static srtp_err_status_t icm_init(void *state, const uint8_t *key) {
    icm_state *s = state;
    memset(s->offset, 0, sizeof s->offset);
    memcpy(s->offset, key + s->key_size, SRTP_SALT_LEN);
    s->remaining = (size_t)ICM_SEGMENT_BLOCKS * ICM_BLOCK;
    // Until set_iv, the counter block is the offset itself (what libsrtp's own AES-ICM does).
    if (EVP_EncryptInit_ex(s->ctx, s->evp, NULL, key, s->offset) != 1) return srtp_err_status_cipher_fail;
    return srtp_err_status_ok;
}

// counter block = offset XOR iv; libsrtp passes an iv whose low 16 bits are zero for SRTP, SRTCP
// and key derivation, so the block counter starts at zero.
static srtp_err_status_t icm_set_iv(void *state, uint8_t *iv, srtp_cipher_direction_t direction) {
    (void)direction;  // counter mode: encryption and decryption are the same operation
    icm_state *s = state;
    uint8_t counter[ICM_BLOCK];
    for (int i = 0; i < ICM_BLOCK; i++) counter[i] = s->offset[i] ^ iv[i];
    unsigned block = ((unsigned)counter[ICM_BLOCK - 2] << 8) | counter[ICM_BLOCK - 1];
    s->remaining = (size_t)(ICM_SEGMENT_BLOCKS - block) * ICM_BLOCK;
    // Only the IV changes: the key schedule stays, and OpenSSL resets its partial-block state.
    if (EVP_EncryptInit_ex(s->ctx, NULL, NULL, NULL, counter) != 1) return srtp_err_status_cipher_fail;
    return srtp_err_status_ok;
}

// Encrypts (or, identically, decrypts) in place.
static srtp_err_status_t icm_encrypt(void *state, uint8_t *buffer, unsigned int *octets) {
    icm_state *s = state;
    size_t n = *octets;
    // Refuse what would carry out of the 16-bit block counter, where OpenSSL's 128-bit counter
    // and SRTP's segment would disagree.
    if (n > s->remaining) return srtp_err_status_terminus;
    if (n == 0) return srtp_err_status_ok;
    int out_len = 0;
    if (EVP_EncryptUpdate(s->ctx, buffer, &out_len, buffer, (int)n) != 1 || (size_t)out_len != n) {
        return srtp_err_status_cipher_fail;
    }
    s->remaining -= n;
    return srtp_err_status_ok;
}

// RFC 3711 Appendix B.2 (AES-CM test vectors): session key 2B7E1516...4F3C, session salt
// F0F1...FCFD, SSRC, rollover counter and sequence number zero, so the counter block is the salt
// followed by the block counter. The key stream is the encryption of zeros; the RFC lists the
// first three blocks (counters ...0000 to ...0002) and the last three of its 65282-block segment
// (counters ...FEFF to ...FF01), which the second case reaches by starting the IV at 0xFEFF.
static const uint8_t icm_128_key[SRTP_AES_ICM_128_KEY_LEN_WSALT] = {
    0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f, 0x3c,
    0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd,
};
// RFC 6188 section 7.1 (AES_256_CM test cases): the same salt, counters and layout with a
// 256-bit session key.
static const uint8_t icm_256_key[SRTP_AES_ICM_256_KEY_LEN_WSALT] = {
    0x57, 0xf8, 0x2f, 0xe3, 0x61, 0x3f, 0xd1, 0x70, 0xa8, 0x5e, 0xc9, 0x3c, 0x40, 0xb1, 0xf0, 0x92,
    0x2e, 0xc4, 0xcb, 0x0d, 0xc0, 0x25, 0xb5, 0x82, 0x72, 0x14, 0x7c, 0xc4, 0x38, 0x94, 0x4a, 0x98,
    0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd,
};
// libsrtp's test-case struct takes a non-const index pointer; nothing writes through it.
static uint8_t icm_iv_first[ICM_BLOCK] = {0};
static uint8_t icm_iv_last[ICM_BLOCK] = {[14] = 0xfe, [15] = 0xff};
static const uint8_t icm_zeros[48] = {0};

static const uint8_t icm_128_first[48] = {
    0xe0, 0x3e, 0xad, 0x09, 0x35, 0xc9, 0x5e, 0x80, 0xe1, 0x66, 0xb1, 0x6d, 0xd9, 0x2b, 0x4e, 0xb4,
    0xd2, 0x35, 0x13, 0x16, 0x2b, 0x02, 0xd0, 0xf7, 0x2a, 0x43, 0xa2, 0xfe, 0x4a, 0x5f, 0x97, 0xab,
    0x41, 0xe9, 0x5b, 0x3b, 0xb0, 0xa2, 0xe8, 0xdd, 0x47, 0x79, 0x01, 0xe4, 0xfc, 0xa8, 0x94, 0xc0,
};
static const uint8_t icm_128_last[48] = {
    0xec, 0x8c, 0xdf, 0x73, 0x98, 0x60, 0x7c, 0xb0, 0xf2, 0xd2, 0x16, 0x75, 0xea, 0x9e, 0xa1, 0xe4,
    0x36, 0x2b, 0x7c, 0x3c, 0x67, 0x73, 0x51, 0x63, 0x18, 0xa0, 0x77, 0xd7, 0xfc, 0x50, 0x73, 0xae,
    0x6a, 0x2c, 0xc3, 0x78, 0x78, 0x89, 0x37, 0x4f, 0xbe, 0xb4, 0xc8, 0x1b, 0x17, 0xba, 0x6c, 0x44,
};
static const uint8_t icm_256_first[48] = {
    0x92, 0xbd, 0xd2, 0x8a, 0x93, 0xc3, 0xf5, 0x25, 0x11, 0xc6, 0x77, 0xd0, 0x8b, 0x55, 0x15, 0xa4,
    0x9d, 0xa7, 0x1b, 0x23, 0x78, 0xa8, 0x54, 0xf6, 0x70, 0x50, 0x75, 0x6d, 0xed, 0x16, 0x5b, 0xac,
    0x63, 0xc4, 0x86, 0x8b, 0x70, 0x96, 0xd8, 0x84, 0x21, 0xb5, 0x63, 0xb8, 0xc9, 0x4c, 0x9a, 0x31,
};
static const uint8_t icm_256_last[48] = {
    0xce, 0xa5, 0x18, 0xc9, 0x0f, 0xd9, 0x1c, 0xed, 0x9c, 0xbb, 0x18, 0xc0, 0x78, 0xa5, 0x47, 0x11,
    0x3d, 0xbc, 0x48, 0x14, 0xf4, 0xda, 0x5f, 0x00, 0xa0, 0x87, 0x72, 0xb6, 0x3c, 0x6a, 0x04, 0x6d,
    0x6e, 0xb2, 0x46, 0x91, 0x30, 0x62, 0xa1, 0x68, 0x91, 0x43, 0x3e, 0x97, 0xdd, 0x01, 0xa5, 0x7f,
};

static const srtp_cipher_test_case_t icm_128_test_last = {
    SRTP_AES_ICM_128_KEY_LEN_WSALT, icm_128_key, icm_iv_last, 48, icm_zeros, 48, icm_128_last, 0, NULL, 0, NULL,
};
static const srtp_cipher_test_case_t icm_128_test_first = {
    SRTP_AES_ICM_128_KEY_LEN_WSALT, icm_128_key, icm_iv_first, 48, icm_zeros, 48, icm_128_first, 0, NULL, 0,
    &icm_128_test_last,
};
static const srtp_cipher_test_case_t icm_256_test_last = {
    SRTP_AES_ICM_256_KEY_LEN_WSALT, icm_256_key, icm_iv_last, 48, icm_zeros, 48, icm_256_last, 0, NULL, 0, NULL,
};
static const srtp_cipher_test_case_t icm_256_test_first = {
    SRTP_AES_ICM_256_KEY_LEN_WSALT, icm_256_key, icm_iv_first, 48, icm_zeros, 48, icm_256_first, 0, NULL, 0,
    &icm_256_test_last,
};

static const srtp_cipher_type_t traverse_aes_icm_128 = {
    icm_alloc,    icm_dealloc, icm_init, NULL, icm_encrypt, icm_encrypt, icm_set_iv, NULL,
    "AES-128 counter mode using OpenSSL (Traverse)", &icm_128_test_first, SRTP_AES_ICM_128,
};
static const srtp_cipher_type_t traverse_aes_icm_256 = {
    icm_alloc,    icm_dealloc, icm_init, NULL, icm_encrypt, icm_encrypt, icm_set_iv, NULL,
    "AES-256 counter mode using OpenSSL (Traverse)", &icm_256_test_first, SRTP_AES_ICM_256,
};

// MARK: - HMAC-SHA1 (RFC 2104)

#define SHA1_BLOCK 64

typedef struct {
    SHA_CTX inner;    // after hashing key XOR ipad
    SHA_CTX outer;    // after hashing key XOR opad
    SHA_CTX running;  // the inner hash of the message being authenticated
} hmac_state;

typedef struct {
    srtp_auth_t auth;  // first, so that an srtp_auth_t * is an hmac_auth *
    hmac_state state;
} hmac_auth;

static const srtp_auth_type_t traverse_hmac_sha1;

static srtp_err_status_t hmac_alloc(srtp_auth_t **a, int key_len, int out_len) {
    if (key_len < 0 || out_len < 0 || out_len > SHA_DIGEST_LENGTH) return srtp_err_status_bad_param;
    hmac_auth *h = calloc(1, sizeof *h);
    if (h == NULL) return srtp_err_status_alloc_fail;
    h->auth.type = &traverse_hmac_sha1;
    h->auth.state = &h->state;
    h->auth.out_len = out_len;
    h->auth.key_len = key_len;
    h->auth.prefix_len = 0;
    *a = &h->auth;
    return srtp_err_status_ok;
}

static srtp_err_status_t hmac_dealloc(srtp_auth_t *a) {
    hmac_auth *h = (hmac_auth *)a;
    if (h == NULL) return srtp_err_status_ok;
    OPENSSL_cleanse(h, sizeof *h);
    free(h);
    return srtp_err_status_ok;
}

static srtp_err_status_t hmac_init(void *state, const uint8_t *key, int key_len) {
    hmac_state *s = state;
    if (key_len < 0) return srtp_err_status_bad_param;
    uint8_t block[SHA1_BLOCK] = {0}, pad[SHA1_BLOCK];
    if (key_len > SHA1_BLOCK) {
        // RFC 2104: a key longer than the block is replaced by its hash.
        SHA_CTX k;
        if (SHA1_Init(&k) != 1 || SHA1_Update(&k, key, (size_t)key_len) != 1 || SHA1_Final(block, &k) != 1) {
            return srtp_err_status_auth_fail;
        }
        OPENSSL_cleanse(&k, sizeof k);
    } else if (key_len > 0) {
        memcpy(block, key, (size_t)key_len);
    }
    int ok = 1;
    for (int i = 0; i < SHA1_BLOCK; i++) pad[i] = block[i] ^ 0x36;
    ok &= SHA1_Init(&s->inner) == 1 && SHA1_Update(&s->inner, pad, SHA1_BLOCK) == 1;
    for (int i = 0; i < SHA1_BLOCK; i++) pad[i] = block[i] ^ 0x5c;
    ok &= SHA1_Init(&s->outer) == 1 && SHA1_Update(&s->outer, pad, SHA1_BLOCK) == 1;
    OPENSSL_cleanse(block, sizeof block);
    OPENSSL_cleanse(pad, sizeof pad);
    if (!ok) return srtp_err_status_auth_fail;
    // libsrtp's self test computes straight after init, without start.
    s->running = s->inner;
    return srtp_err_status_ok;
}

static srtp_err_status_t hmac_start(void *state) {
    hmac_state *s = state;
    s->running = s->inner;
    return srtp_err_status_ok;
}

static srtp_err_status_t hmac_update(void *state, const uint8_t *buffer, int octets) {
    hmac_state *s = state;
    if (octets < 0) return srtp_err_status_bad_param;
    if (SHA1_Update(&s->running, buffer, (size_t)octets) != 1) return srtp_err_status_auth_fail;
    return srtp_err_status_ok;
}

// Adds the last octets, finishes the inner hash, hashes it under the outer state and writes the
// first tag_len octets of the result.
static srtp_err_status_t hmac_compute(void *state, const uint8_t *buffer, int octets, int tag_len, uint8_t *tag) {
    hmac_state *s = state;
    if (octets < 0 || tag_len < 0 || tag_len > SHA_DIGEST_LENGTH) return srtp_err_status_bad_param;
    uint8_t inner[SHA_DIGEST_LENGTH], mac[SHA_DIGEST_LENGTH];
    SHA_CTX outer = s->outer;
    int ok = SHA1_Update(&s->running, buffer, (size_t)octets) == 1 && SHA1_Final(inner, &s->running) == 1 &&
             SHA1_Update(&outer, inner, SHA_DIGEST_LENGTH) == 1 && SHA1_Final(mac, &outer) == 1;
    if (ok) memcpy(tag, mac, (size_t)tag_len);
    OPENSSL_cleanse(&outer, sizeof outer);
    OPENSSL_cleanse(inner, sizeof inner);
    OPENSSL_cleanse(mac, sizeof mac);
    return ok ? srtp_err_status_ok : srtp_err_status_auth_fail;
}

// RFC 2202 section 3 (test cases for HMAC-SHA-1): cases 1 to 6, case 5 with its 96-bit
// truncation, case 6 with a key longer than the block.
static const uint8_t hmac_key_1[20] = {
    0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b,
    0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b,
};
static const uint8_t hmac_data_1[] = "Hi There";
static const uint8_t hmac_tag_1[20] = {
    0xb6, 0x17, 0x31, 0x86, 0x55, 0x05, 0x72, 0x64, 0xe2, 0x8b,
    0xc0, 0xb6, 0xfb, 0x37, 0x8c, 0x8e, 0xf1, 0x46, 0xbe, 0x00,
};
static const uint8_t hmac_key_2[] = "Jefe";
static const uint8_t hmac_data_2[] = "what do ya want for nothing?";
static const uint8_t hmac_tag_2[20] = {
    0xef, 0xfc, 0xdf, 0x6a, 0xe5, 0xeb, 0x2f, 0xa2, 0xd2, 0x74,
    0x16, 0xd5, 0xf1, 0x84, 0xdf, 0x9c, 0x25, 0x9a, 0x7c, 0x79,
};
static const uint8_t hmac_key_3[20] = {
    0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
    0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
};
static const uint8_t hmac_data_3[50] = {
    0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd,
    0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd,
    0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd,
};
static const uint8_t hmac_tag_3[20] = {
    0x12, 0x5d, 0x73, 0x42, 0xb9, 0xac, 0x11, 0xcd, 0x91, 0xa3,
    0x9a, 0xf4, 0x8a, 0xa1, 0x7b, 0x4f, 0x63, 0xf1, 0x75, 0xd3,
};
static const uint8_t hmac_key_4[25] = {
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d,
    0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19,
};
static const uint8_t hmac_data_4[50] = {
    0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd,
    0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd,
    0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd,
};
static const uint8_t hmac_tag_4[20] = {
    0x4c, 0x90, 0x07, 0xf4, 0x02, 0x62, 0x50, 0xc6, 0xbc, 0x84,
    0x14, 0xf9, 0xbf, 0x50, 0xc8, 0x6c, 0x2d, 0x72, 0x35, 0xda,
};
static const uint8_t hmac_key_5[20] = {
    0x0c, 0x0c, 0x0c, 0x0c, 0x0c, 0x0c, 0x0c, 0x0c, 0x0c, 0x0c,
    0x0c, 0x0c, 0x0c, 0x0c, 0x0c, 0x0c, 0x0c, 0x0c, 0x0c, 0x0c,
};
static const uint8_t hmac_data_5[] = "Test With Truncation";
static const uint8_t hmac_tag_5_96[12] = {
    0x4c, 0x1a, 0x03, 0x42, 0x4b, 0x55, 0xe0, 0x7f, 0xe7, 0xf2, 0x7b, 0xe1,
};
static const uint8_t hmac_key_6[80] = {
    0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
    0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
    0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
    0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
    0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
};
static const uint8_t hmac_data_6[] = "Test Using Larger Than Block-Size Key - Hash Key First";
static const uint8_t hmac_tag_6[20] = {
    0xaa, 0x4a, 0xe5, 0xe1, 0x52, 0x72, 0xd0, 0x0e, 0x95, 0x70,
    0x56, 0x37, 0xce, 0x8a, 0x3b, 0x55, 0xed, 0x40, 0x21, 0x12,
};

// The string literals' terminating NUL is not part of the data (sizeof - 1).
static const srtp_auth_test_case_t hmac_test_6 = {
    sizeof hmac_key_6, hmac_key_6, sizeof hmac_data_6 - 1, hmac_data_6, sizeof hmac_tag_6, hmac_tag_6, NULL,
};
static const srtp_auth_test_case_t hmac_test_5 = {
    sizeof hmac_key_5, hmac_key_5, sizeof hmac_data_5 - 1, hmac_data_5, sizeof hmac_tag_5_96, hmac_tag_5_96,
    &hmac_test_6,
};
static const srtp_auth_test_case_t hmac_test_4 = {
    sizeof hmac_key_4, hmac_key_4, sizeof hmac_data_4, hmac_data_4, sizeof hmac_tag_4, hmac_tag_4, &hmac_test_5,
};
static const srtp_auth_test_case_t hmac_test_3 = {
    sizeof hmac_key_3, hmac_key_3, sizeof hmac_data_3, hmac_data_3, sizeof hmac_tag_3, hmac_tag_3, &hmac_test_4,
};
static const srtp_auth_test_case_t hmac_test_2 = {
    sizeof hmac_key_2 - 1, hmac_key_2, sizeof hmac_data_2 - 1, hmac_data_2, sizeof hmac_tag_2, hmac_tag_2,
    &hmac_test_3,
};
static const srtp_auth_test_case_t hmac_test_1 = {
    sizeof hmac_key_1, hmac_key_1, sizeof hmac_data_1 - 1, hmac_data_1, sizeof hmac_tag_1, hmac_tag_1, &hmac_test_2,
};

static const srtp_auth_type_t traverse_hmac_sha1 = {
    hmac_alloc,   hmac_dealloc, hmac_init, hmac_compute, hmac_update, hmac_start,
    "HMAC-SHA1 using OpenSSL (Traverse)", &hmac_test_1, SRTP_HMAC_SHA1,
};

// MARK: - Registration

int traverse_srtp_use_openssl(void) {
    srtp_err_status_t status = srtp_replace_cipher_type(&traverse_aes_icm_128, SRTP_AES_ICM_128);
    if (status == srtp_err_status_ok) status = srtp_replace_cipher_type(&traverse_aes_icm_256, SRTP_AES_ICM_256);
    if (status == srtp_err_status_ok) status = srtp_replace_auth_type(&traverse_hmac_sha1, SRTP_HMAC_SHA1);
    return (int)status;
}

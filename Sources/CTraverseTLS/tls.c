#include "CTraverseTLS.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static const unsigned char alpn_turn[] = "stun.turn";
static const unsigned char alpn_discovery[] = "stun.nat-discovery";

static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg) {
    (void)ssl;
    (void)arg;
    for (unsigned int i = 0; i < inlen;) {
        unsigned int n = in[i];
        if (i + 1 + n > inlen) break;
        const unsigned char *p = in + i + 1;
        if ((n == sizeof alpn_turn - 1 && memcmp(p, alpn_turn, n) == 0) ||
            (n == sizeof alpn_discovery - 1 && memcmp(p, alpn_discovery, n) == 0)) {
            *out = p;
            *outlen = (unsigned char)n;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + n;
    }
    // A client offering only other protocols still gets TURN: lenient, as deployed clients expect.
    return SSL_TLSEXT_ERR_NOACK;
}

static unsigned char cookie_secret[32];
static int cookie_secret_ready = 0;

typedef struct {
    size_t len;
    unsigned char bytes[32];
} peer_bytes;

static int peer_index = -1;

static void free_peer(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp) {
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    OPENSSL_free(ptr);
}

static int make_cookie(SSL *ssl, unsigned char *cookie, unsigned int *len) {
    if (!cookie_secret_ready) {
        RAND_bytes(cookie_secret, sizeof cookie_secret);
        cookie_secret_ready = 1;
    }
    // The cookie binds the handshake to the client's address: only a client that receives
    // datagrams at that address can complete it (no amplification towards a forged source).
    const peer_bytes *peer = peer_index >= 0 ? SSL_get_ex_data(ssl, peer_index) : NULL;
    unsigned int out = 0;
    HMAC(EVP_sha256(), cookie_secret, sizeof cookie_secret, peer ? peer->bytes : (const unsigned char *)"",
         peer ? peer->len : 0, cookie, &out);
    *len = out;
    return 1;
}

static int check_cookie(SSL *ssl, const unsigned char *cookie, unsigned int len) {
    unsigned char expected[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    make_cookie(ssl, expected, &n);
    return n == len && CRYPTO_memcmp(expected, cookie, n) == 0;
}

SSL_CTX *traverse_tls_server_context(const char *certificate_path, const char *key_path, int stream, char *error,
                                     size_t error_len) {
    SSL_CTX *ctx = SSL_CTX_new(stream ? TLS_server_method() : DTLS_server_method());
    if (!ctx) goto fail;
    SSL_CTX_set_min_proto_version(ctx, stream ? TLS1_2_VERSION : DTLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(ctx, certificate_path) != 1) goto fail;
    if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1) goto fail;
    if (SSL_CTX_check_private_key(ctx) != 1) goto fail;
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    if (!stream) {
        SSL_CTX_set_cookie_generate_cb(ctx, make_cookie);
        SSL_CTX_set_cookie_verify_cb(ctx, check_cookie);
    }
    return ctx;
fail:
    traverse_tls_last_error(error, error_len);
    if (ctx) SSL_CTX_free(ctx);
    return NULL;
}

SSL_CTX *traverse_tls_client_context(int stream, int verify) {
    SSL_CTX *ctx = SSL_CTX_new(stream ? TLS_client_method() : DTLS_client_method());
    if (!ctx) return NULL;
    SSL_CTX_set_verify(ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return ctx;
}

void traverse_tls_set_modes(SSL *ssl) {
    SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

size_t traverse_tls_alpn(const SSL *ssl, char *out, size_t out_len) {
    const unsigned char *p = NULL;
    unsigned int n = 0;
    SSL_get0_alpn_selected(ssl, &p, &n);
    if (!p || n == 0 || n + 1 > out_len) return 0;
    memcpy(out, p, n);
    out[n] = 0;
    return n;
}

void traverse_tls_last_error(char *out, size_t out_len) {
    unsigned long e = ERR_get_error();
    unsigned long next;
    while ((next = ERR_get_error()) != 0) e = next;  // the last is the most specific
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    snprintf(out, out_len, "%s", reason ? reason : "unknown");
}

int traverse_tls_generate_self_signed(const char *certificate_path, const char *key_path, const char *common_name,
                                      int days) {
    int ok = 0;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = X509_new();
    FILE *f = NULL;
    if (!key || !cert) goto done;
    X509_set_version(cert, 2);
    unsigned char serial[16];
    RAND_bytes(serial, sizeof serial);
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert));
    BN_free(bn);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), (long)days * 86400);
    X509_set_pubkey(cert, key);
    X509_NAME *name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)common_name, -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, cert, cert, NULL, NULL, 0);
    X509_EXTENSION *san =
        X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1");
    if (san) {
        X509_add_ext(cert, san, -1);
        X509_EXTENSION_free(san);
    }
    if (!X509_sign(cert, key, EVP_sha256())) goto done;
    mode_t old = umask(077);
    f = fopen(key_path, "wb");
    umask(old);
    if (!f || !PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)) goto done;
    fclose(f);
    f = fopen(certificate_path, "wb");
    if (!f || !PEM_write_X509(f, cert)) goto done;
    ok = 1;
done:
    if (f) fclose(f);
    X509_free(cert);
    EVP_PKEY_free(key);
    return ok;
}

int traverse_tls_certificate_fingerprint(const char *certificate_path, char *out, size_t out_len) {
    FILE *f = fopen(certificate_path, "rb");
    if (!f) return 0;
    X509 *cert = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!cert) return 0;
    unsigned char md[32];
    unsigned int n = 0;
    X509_digest(cert, EVP_sha256(), md, &n);
    X509_free(cert);
    if (out_len < n * 2 + 1) return 0;
    for (unsigned int i = 0; i < n; i++) snprintf(out + i * 2, 3, "%02x", md[i]);
    return 1;
}

SSL *traverse_dtls_new(SSL_CTX *ctx, int mtu) {
    if (peer_index < 0) peer_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, free_peer);
    SSL *ssl = SSL_new(ctx);
    if (!ssl) return NULL;
    BIO *in = BIO_new(BIO_s_mem());
    BIO *out = BIO_new(BIO_s_mem());
    peer_bytes *p = OPENSSL_zalloc(sizeof *p);
    if (!in || !out || !p) {
        BIO_free(in);
        BIO_free(out);
        OPENSSL_free(p);
        SSL_free(ssl);
        return NULL;
    }
    BIO_set_mem_eof_return(in, -1);
    BIO_set_mem_eof_return(out, -1);
    SSL_set_bio(ssl, in, out);
    SSL_set_ex_data(ssl, peer_index, p);
    SSL_set_options(ssl, SSL_OP_COOKIE_EXCHANGE | SSL_OP_NO_QUERY_MTU);
    // An idle session gives its record buffers back (they are allocated again when needed).
    SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
    DTLS_set_link_mtu(ssl, mtu);
    SSL_set_mtu(ssl, mtu - 28);
    SSL_set_accept_state(ssl);
    return ssl;
}

int traverse_dtls_listen(SSL *ssl, BIO_ADDR *scratch_address, const void *datagram, size_t len, const void *peer,
                         size_t peer_len) {
    peer_bytes *p = SSL_get_ex_data(ssl, peer_index);
    if (!p) return -1;
    p->len = peer_len < sizeof p->bytes ? peer_len : sizeof p->bytes;
    memcpy(p->bytes, peer, p->len);
    // Whatever an earlier call left behind (an unread record, an unsent answer) is not this client's.
    (void)BIO_reset(SSL_get_rbio(ssl));
    (void)BIO_reset(SSL_get_wbio(ssl));
    if (BIO_write(SSL_get_rbio(ssl), datagram, (int)len) != (int)len) return -1;
    int r = DTLSv1_listen(ssl, scratch_address);
    if (r != 1) (void)BIO_reset(SSL_get_rbio(ssl));
    ERR_clear_error();
    return r;
}

int traverse_dtls_feed(SSL *ssl, const void *data, size_t len) {
    return BIO_write(SSL_get_rbio(ssl), data, (int)len);
}

size_t traverse_dtls_output_pending(SSL *ssl) { return BIO_ctrl_pending(SSL_get_wbio(ssl)); }

size_t traverse_dtls_take_output(SSL *ssl, void *out, size_t cap) {
    int n = BIO_read(SSL_get_wbio(ssl), out, (int)cap);
    return n > 0 ? (size_t)n : 0;
}

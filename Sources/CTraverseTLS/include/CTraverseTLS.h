// CTraverseTLS: the few OpenSSL (libssl) operations Traverse needs that Swift cannot call
// directly: macros (SSL_CTX_set_min_proto_version, SSL_set_mode), the ALPN selection callback
// (RFC 7443: "stun.turn", "stun.nat-discovery"), DTLS cookie callbacks, and generating the
// self-signed certificate of the zero-setup default.
#ifndef TRAVERSE_CTRAVERSETLS_H
#define TRAVERSE_CTRAVERSETLS_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

/// A TLS (stream=1) or DTLS (stream=0) server context from PEM files, TLS 1.2 minimum, with
/// ALPN selection and partial writes enabled. Returns NULL and fills `error` on failure.
SSL_CTX *traverse_tls_server_context(const char *certificate_path, const char *key_path, int stream, char *error,
                                     size_t error_len);

/// A client context (tests, load generator): no verification unless `verify` is 1.
SSL_CTX *traverse_tls_client_context(int stream, int verify);

/// SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER).
void traverse_tls_set_modes(SSL *ssl);

/// The negotiated ALPN protocol copied into out (NUL-terminated); 0 when none.
size_t traverse_tls_alpn(const SSL *ssl, char *out, size_t out_len);

/// Text of the last queued OpenSSL error (e.g. "unsupported protocol", "no shared cipher"),
/// clearing the queue; "unknown" when empty.
void traverse_tls_last_error(char *out, size_t out_len);

/// Writes a self-signed P-256 certificate and key for `common_name` (and 127.0.0.1, ::1,
/// localhost as subject alternative names), valid `days` days. Returns 1 on success.
int traverse_tls_generate_self_signed(const char *certificate_path, const char *key_path, const char *common_name,
                                      int days);

/// The SHA-256 fingerprint of the certificate in a PEM file, as hex into out; 1 on success.
int traverse_tls_certificate_fingerprint(const char *certificate_path, char *out, size_t out_len);

/// A DTLS server session reading and writing through memory buffers (datagrams come from and go
/// to the shard's UDP socket), with cookie exchange on and record buffers released when idle.
/// A shard keeps one as its scratch for `traverse_dtls_listen`; the one that admits a client
/// becomes that client's session.
SSL *traverse_dtls_new(SSL_CTX *ctx, int mtu);

/// Stateless cookie exchange (RFC 6347 §4.2.1) on a scratch session: binds `peer` (the client's
/// address and port bytes) into the cookie and runs DTLSv1_listen over one datagram. Returns 1
/// when the datagram is a ClientHello with a valid cookie (the session now holds it and goes on
/// with SSL_accept); 0 when it was answered with a HelloVerifyRequest (waiting in the output
/// buffer) or dropped (nothing waiting); -1 on an internal error. Nothing is kept per client.
int traverse_dtls_listen(SSL *ssl, BIO_ADDR *scratch_address, const void *datagram, size_t len, const void *peer,
                         size_t peer_len);

/// Hands one received datagram to the session.
int traverse_dtls_feed(SSL *ssl, const void *data, size_t len);

/// Bytes the session has produced and not yet taken.
size_t traverse_dtls_output_pending(SSL *ssl);

/// Takes up to `cap` produced bytes (whole DTLS records, concatenated).
size_t traverse_dtls_take_output(SSL *ssl, void *out, size_t cap);

#endif

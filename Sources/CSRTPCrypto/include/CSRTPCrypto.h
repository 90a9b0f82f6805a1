// CSRTPCrypto: OpenSSL (libcrypto) implementations of the two primitives behind libsrtp's
// AES_CM_128_HMAC_SHA1_80 profile, registered into libsrtp in place of its own.
//
// Debian builds libsrtp2 against NSS, whose backend creates a PKCS #11 context for every
// packet (once for AES-ICM's IV, once for HMAC-SHA1's start). That made the load generator,
// not the server under test, the bottleneck. These replacements keep all per-key state
// (an EVP cipher context; the precomputed HMAC inner and outer SHA-1 states) from init on,
// so protecting or unprotecting a packet allocates nothing.
#ifndef TRAVERSE_CSRTPCRYPTO_H
#define TRAVERSE_CSRTPCRYPTO_H

/// Replaces libsrtp's AES-ICM-128, AES-ICM-256 and HMAC-SHA1 implementations with the
/// OpenSSL-based ones of this module, through libsrtp's public `srtp_replace_cipher_type` and
/// `srtp_replace_auth_type`.
///
/// Call it after `srtp_init()` has succeeded and before creating sessions; sessions created
/// earlier keep the implementation they were created with. libsrtp runs each replacement's
/// known-answer self test (RFC 3711 B.2, RFC 6188 7.1, RFC 2202 section 3), plus the test data
/// of the implementation being replaced, before accepting it; a replacement that fails is not
/// registered. Registering again is harmless. Not thread-safe: call it while no other thread
/// uses libsrtp.
///
/// Returns 0 on success, otherwise the `srtp_err_status_t` value of the first failure.
int traverse_srtp_use_openssl(void);

#endif

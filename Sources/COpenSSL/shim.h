// The parts of the system's OpenSSL (libssl-dev) that Traverse uses: TLS/DTLS for the
// I/O layer and the digest primitives behind STUN message integrity.
#ifndef TRAVERSE_COPENSSL_SHIM_H
#define TRAVERSE_COPENSSL_SHIM_H
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/crypto.h>
#include <openssl/x509.h>
#include <openssl/pem.h>
#endif

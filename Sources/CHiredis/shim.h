// The system's hiredis (Debian libhiredis-dev 0.14): the Redis client behind fleet coordination.
// hiredis 0.14 has no TLS: a fleet's Redis belongs on a private network or loopback.
#ifndef TRAVERSE_CHIREDIS_SHIM_H
#define TRAVERSE_CHIREDIS_SHIM_H
#include <hiredis/hiredis.h>
#endif

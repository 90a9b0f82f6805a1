// libsrtp2 (Debian libsrtp2-dev): SRTP protect/unprotect for the load generator's media.
#ifndef TRAVERSE_CSRTP_SHIM_H
#define TRAVERSE_CSRTP_SHIM_H
#include <srtp2/srtp.h>
#endif

/* sha256 (OpenSSL EVP underneath); the hex helpers come along from lib/hex.h. */
#ifndef HSM_HASH_H
#define HSM_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "lib/hex.h"

#define HSM_SHA256_LEN 32
#define HSM_SHA256_HEX 65 /* 64 hex digits + NUL */

void sha256_buf(const void *data, size_t len, uint8_t out[HSM_SHA256_LEN]);
#endif

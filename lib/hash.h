/* sha256 and hex helpers (OpenSSL EVP underneath). */
#ifndef HSM_HASH_H
#define HSM_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HSM_SHA256_LEN 32
#define HSM_SHA256_HEX 65 /* 64 hex digits + NUL */

void sha256_buf(const void *data, size_t len, uint8_t out[HSM_SHA256_LEN]);
/* Writes 2*len lowercase hex digits and a NUL into out (2*len+1 bytes). */
void hex_encode(const uint8_t *in, size_t len, char *out);
/* Decodes exactly 2*outlen hex digits from in (which must be that long and
 * NUL-terminated or longer); returns 0, or -1 on any non-hex digit or wrong length. */
int hex_decode(const char *in, uint8_t *out, size_t outlen);

#endif

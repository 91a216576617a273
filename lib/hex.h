/* Hex encoding of byte strings: libc only, so hsmd-guard can decode state records
 * without OpenSSL. */
#ifndef HSM_HEX_H
#define HSM_HEX_H

#include <stddef.h>
#include <stdint.h>

/* Writes 2*len lowercase hex digits and a NUL into out (2*len+1 bytes). */
void hex_encode(const uint8_t *in, size_t len, char *out);
/* The value of one hex digit (any case), or -1. */
int hex_digit(char c);
/* Decodes the first 2*outlen characters of in, which must all be hex digits (any
 * case); what follows them is not looked at. Returns 0, or -1 on a non-hex digit
 * (a NUL inside counts as one, so a short string fails safely). */
int hex_decode(const char *in, uint8_t *out, size_t outlen);

#endif

/* The framing of a peer's namespace feed (GET /v1/changes): a head line, then one
 * numbered record per line, each a namespace record (hsmd/nsrec.h):
 *
 *   hsm-changes 1 FEED SITE VOLUME NEXT MORE\n
 *   SEQ RECORD\n ...
 *
 * FEED is the 32 hex digits naming the serving site's feed (a new one after a catalog
 * rebuild), SITE and VOLUME name where the records come from, NEXT is the cursor to ask
 * from next, MORE is 1 when the answer was cut at its limit. Pure functions: what a
 * peer sends is parsed here before any of it is trusted, and fuzzed (tests/fuzz). */
#ifndef HSM_NSFEED_H
#define HSM_NSFEED_H

#include <stddef.h>
#include <stdint.h>

#include "lib/hsmxattr.h"

#define NS_FEED_ID_LEN 32

struct ns_feed_head {
	char feed[NS_FEED_ID_LEN + 1];
	char site[HSM_SITE_MAX + 1];
	char volume[HSM_SITE_MAX + 1];
	uint64_t next;
	int more; /* 0 or 1 */
};

/* Writes the head line with its '\n' into buf; returns its length, or -1 when it does
 * not fit or a field is not one a parser would accept. */
int nsfeed_format_head(const struct ns_feed_head *h, char *buf, size_t len);

/* Parses the head line at the start of body[0..len); returns the bytes it took with
 * its '\n', or -1 (why in err) when the line is missing, malformed or a field is out
 * of range. */
int nsfeed_parse_head(const char *body, size_t len, struct ns_feed_head *h, char *err,
		      size_t errlen);

/* The record line starting at body[*off]: its sequence and the record's bytes
 * (rec[0..*rec_len), not NUL-terminated). Returns 1 and moves *off past the line, 0 at
 * the end of the body (a last line without '\n' is an answer cut short: ignored),
 * -1 when the sequence is not a decimal number of 1..2^64-1. */
int nsfeed_next(const char *body, size_t len, size_t *off, uint64_t *seq, const char **rec,
		size_t *rec_len);

#endif

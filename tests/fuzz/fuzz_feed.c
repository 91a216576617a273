/* libFuzzer target for the framing of a peer's namespace feed (hsmd/nsfeed.h) with the
 * records inside it, as a puller reads an answer: a head that parses must format to the
 * same line, every numbered line is handed to the record parser, and nothing is read
 * past the body. Built and run by tests/fuzz/run feed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hsmd/nsfeed.h"
#include "hsmd/nsrec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *)data, *line;
	struct ns_feed_head head;
	char err[256], again[256];
	size_t off, len;
	uint64_t seq, last = 0;
	int r;

	r = nsfeed_parse_head(body, size, &head, err, sizeof(err));
	if (r < 0)
		return 0;
	if ((size_t)r > size || body[r - 1] != '\n')
		abort();
	if (nsfeed_format_head(&head, again, sizeof(again)) != r || memcmp(again, body, (size_t)r))
		abort(); /* one head, one spelling: what parses is what we would send */
	off = (size_t)r;
	while ((r = nsfeed_next(body, size, &off, &seq, &line, &len)) == 1) {
		struct ns_rec rec;

		if (off > size || line < body || line + len > body + size || seq == 0)
			abort();
		if (nsrec_parse(line, len, &rec, err, sizeof(err)) == 0)
			nsrec_clear(&rec);
		last = seq;
	}
	(void)last;
	return 0;
}

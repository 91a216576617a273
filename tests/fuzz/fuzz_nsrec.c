/* libFuzzer target for namespace records (hsmd/nsrec.h), what every peer sends: a line
 * that parses must format again, parse back to the same record, and format to the
 * same line (a record is state: it must survive the trip unchanged). Paths are
 * escaped and unescaped on the way. Built and run by tests/fuzz/run nsrec. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsmd/nsrec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char line[NS_LINE_MAX], again[NS_LINE_MAX], esc[3 * 4096 + 1], raw[4097];
	struct ns_rec r, back;
	char err[256];
	int n, m;

	if (nsrec_parse((const char *)data, size, &r, err, sizeof(err)) == 0) {
		n = nsrec_format(&r, line, sizeof(line));
		if (n < 0)
			abort(); /* a record we accepted must be one we can send */
		if (nsrec_parse(line, (size_t)n, &back, err, sizeof(err)) < 0)
			abort();
		m = nsrec_format(&back, again, sizeof(again));
		if (m != n || memcmp(line, again, (size_t)n))
			abort();
		if (back.kind != r.kind || back.deleted != r.deleted || strcmp(back.path, r.path) ||
		    back.size != r.size || back.version != r.version || back.nvv != r.nvv)
			abort();
		(void)nsrec_vv_compare(&r, &back);
		free(nsrec_conflict_path(r.path, r.owner, r.mtime_sec));
		nsrec_clear(&back);
		nsrec_clear(&r);
	}
	/* the path codec alone */
	if (size < sizeof(raw)) {
		memcpy(raw, data, size);
		raw[size] = '\0';
		if (ns_escape(raw, esc, sizeof(esc)) >= 0) {
			char out[4097];

			if (ns_unescape(esc, strlen(esc), out, sizeof(out)) < 0 || strcmp(out, raw))
				abort();
		}
		(void)ns_unescape((const char *)data, size, esc, sizeof(esc));
	}
	return 0;
}

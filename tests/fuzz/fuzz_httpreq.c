/* libFuzzer target for what a peer's client sends the peer server before a handler
 * sees it (lib/httpreq.h): the bytes are fed to one connection's reader in pieces the
 * first input byte sizes, pipelined requests one after the other, with small limits.
 * A request read whole must keep the limits, carry a path and well-formed headers, and
 * its path and query then go through the decoders and the data request parser
 * (hsmd/pdreq.h). A decoded path encodes and decodes back to itself. Built and run by
 * tests/fuzz/run httpreq. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hsmd/pdreq.h"
#include "lib/httpreq.h"
#include "recall/s3_request.h"

static const struct httpreq_limits lim = {512, 128, 1024};

static void check_headers(const struct httpreq *q)
{
	const char *p = q->hdr, *end;

	if (!p) {
		if (q->nhdr)
			abort();
		return;
	}
	end = p + q->hdr_len;
	for (size_t i = 0; i < q->nhdr; i++) {
		const char *v = p + strlen(p) + 1;

		if (v >= end || v + strlen(v) >= end + 1 || !httpreq_header(q, p))
			abort();
		p = v + strlen(v) + 1;
	}
}

static void check_target(const struct httpreq *q)
{
	char path[256], again[256], val[64];
	struct pd_target t;
	const char *why = NULL;
	char *enc;
	int r;

	if (https_path_decode(q->path, path, sizeof(path)) == 0) {
		if (strlen(path) >= sizeof(path))
			abort();
		enc = s3_uri_encode(path, strlen(path), 1);
		if (enc) {
			if (https_path_decode(enc, again, sizeof(again)) == 0 &&
			    strcmp(again, path))
				abort(); /* encoding then decoding must give the path back */
			free(enc);
		}
	}
	for (const char *const *k =
		 (const char *const[]){"owner", "version", "off", "len", "sha", "since", "", NULL};
	     *k; k++)
		if (https_query_get(q->query, *k, val, sizeof(val)) == 0 &&
		    strlen(val) >= sizeof(val))
			abort();
	if (strncmp(q->path, "/v1/data/", 9))
		return;
	r = pdreq_parse(q->path + 9, q->query, &t, &why);
	if (r < 0 && (!why || !why[0]))
		abort();
	if (r == 0 && (t.version == 0 || !t.owner[0] ||
		       (t.op == PD_CHUNK && (t.len == 0 || t.off > INT64_MAX - t.len))))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct httpreq_reader rd;
	size_t off = 1, piece;

	if (size < 1)
		return 0;
	piece = data[0] ? data[0] : size; /* 0: everything at once */
	httpreq_reader_init(&rd, &lim);
	while (off < size) {
		size_t n = size - off < piece ? size - off : piece, used = 0;
		const char *why = NULL;
		int status = 0;
		enum httpreq_result r =
		    httpreq_feed(&rd, (const char *)data + off, n, &used, &status, &why);

		if (used > n || (r == HTTPREQ_MORE && used != n))
			abort();
		off += used;
		if (r == HTTPREQ_REFUSE) {
			if (status < 400 || status > 499 || !why || !why[0])
				abort();
			break;
		}
		if (r == HTTPREQ_NOMEM)
			break;
		if (r == HTTPREQ_DONE) {
			struct httpreq *q = httpreq_take(&rd);

			if (!q || !q->method || q->path[0] != '/' ||
			    strlen(q->path) > lim.max_url || q->body_len > lim.max_body ||
			    (q->body && q->body[q->body_len]) ||
			    q->head != !strcmp(q->method, "HEAD") || !q->query)
				abort();
			check_headers(q);
			check_target(q);
			httpreq_free(q);
		}
	}
	httpreq_reader_clear(&rd);
	return 0;
}

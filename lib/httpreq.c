#include "lib/httpreq.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void httpreq_free(struct httpreq *q)
{
	if (!q)
		return;
	free(q->url);
	free(q->hdr);
	free(q->body);
	free(q);
}

/* Appends n bytes to *buf (length *len, capacity *cap), keeping room for a NUL. */
static int buf_add(char **buf, size_t *len, size_t *cap, const char *p, size_t n)
{
	if (n >= SIZE_MAX - *len - 1)
		return -1;
	if (*len + n + 1 > *cap) {
		size_t ncap = *cap ? *cap : 256;
		char *b;

		while (ncap < *len + n + 1)
			ncap = ncap < SIZE_MAX / 2 ? ncap * 2 : *len + n + 1;
		b = realloc(*buf, ncap);
		if (!b)
			return -1;
		*buf = b;
		*cap = ncap;
	}
	memcpy(*buf + *len, p, n);
	*len += n;
	(*buf)[*len] = '\0';
	return 0;
}

const char *httpreq_header(const struct httpreq *q, const char *name)
{
	const char *p = q->hdr;

	for (size_t i = 0; i < q->nhdr; i++) {
		const char *v = p + strlen(p) + 1;

		if (strcasecmp(p, name) == 0)
			return v;
		p = v + strlen(v) + 1;
	}
	return NULL;
}

/* ---- http-parser callbacks ----------------------------------------------------------- */

static struct httpreq_reader *reader_of(http_parser *p)
{
	return p->data;
}

/* Callbacks stop the parser (return 1) with the answer due in err_status. */
static int parser_stop(struct httpreq_reader *r, int status, const char *why)
{
	r->err_status = status;
	r->err_why = why;
	return 1;
}

static int parser_nomem(struct httpreq_reader *r)
{
	r->nomem = 1;
	return 1;
}

/* Header bytes up to the end of the data at at+len. */
static int header_too_big(struct httpreq_reader *r, const char *at, size_t len)
{
	return r->hdr_base + (size_t)(at + len - r->feed) > r->lim.max_header;
}

static int on_message_begin(http_parser *p)
{
	struct httpreq_reader *r = reader_of(p);

	httpreq_free(r->req);
	r->req = calloc(1, sizeof(*r->req));
	if (!r->req)
		return parser_nomem(r);
	r->in_request = 1;
	r->headers_done = r->msg_done = 0;
	r->hdr_base = 0;
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	struct httpreq_reader *r = reader_of(p);
	struct httpreq *q = r->req;

	if (header_too_big(r, at, len))
		return parser_stop(r, 431, "request header too large");
	if (q->url_len + len > r->lim.max_url)
		return parser_stop(r, 414, "URL too long");
	if (buf_add(&q->url, &q->url_len, &q->url_cap, at, len) < 0)
		return parser_nomem(r);
	return 0;
}

/* Ends the value being read: trailing blanks are not part of it. */
static int header_end_value(struct httpreq *q)
{
	if (q->hdr_last != 2)
		return 0;
	while (q->hdr_len && (q->hdr[q->hdr_len - 1] == ' ' || q->hdr[q->hdr_len - 1] == '\t'))
		q->hdr_len--;
	if (buf_add(&q->hdr, &q->hdr_len, &q->hdr_cap, "", 1) < 0)
		return -1;
	q->nhdr++;
	return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	struct httpreq_reader *r = reader_of(p);
	struct httpreq *q = r->req;

	if (r->headers_done)
		return 0; /* trailers of a chunked body: nothing we use */
	if (header_too_big(r, at, len))
		return parser_stop(r, 431, "request header too large");
	if (header_end_value(q) < 0)
		return parser_nomem(r);
	q->hdr_last = 1;
	if (buf_add(&q->hdr, &q->hdr_len, &q->hdr_cap, at, len) < 0)
		return parser_nomem(r);
	return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	struct httpreq_reader *r = reader_of(p);
	struct httpreq *q = r->req;

	if (r->headers_done)
		return 0;
	if (header_too_big(r, at, len))
		return parser_stop(r, 431, "request header too large");
	if (q->hdr_last == 1 && buf_add(&q->hdr, &q->hdr_len, &q->hdr_cap, "", 1) < 0)
		return parser_nomem(r);
	q->hdr_last = 2;
	if (buf_add(&q->hdr, &q->hdr_len, &q->hdr_cap, at, len) < 0)
		return parser_nomem(r);
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	struct httpreq_reader *r = reader_of(p);
	struct httpreq *q = r->req;
	const char *expect;
	char *qm;

	r->headers_done = 1;
	if (header_end_value(q) < 0)
		return parser_nomem(r);
	switch (p->method) {
	case HTTP_GET:
		q->method = "GET";
		break;
	case HTTP_HEAD:
		q->method = "HEAD";
		q->head = 1;
		break;
	case HTTP_POST:
		q->method = "POST";
		break;
	default:
		return parser_stop(r, 405, "method not allowed");
	}
	if (!q->url || q->url[0] != '/')
		return parser_stop(r, 400, "request target is not a path");
	qm = strchr(q->url, '?');
	if (qm)
		*qm++ = '\0';
	q->path = q->url;
	q->query = qm ? qm : "";
	if (p->flags & F_CONTENTLENGTH) {
		/* Refused before a byte of it is read; when the client waits for "100
		 * Continue" it never sends it at all. */
		if (p->content_length > r->lim.max_body)
			return parser_stop(r, 413, "request body too large");
		if (p->content_length > 0) {
			q->body = malloc((size_t)p->content_length + 1);
			if (!q->body)
				return parser_nomem(r);
			q->body_cap = (size_t)p->content_length + 1;
		}
	}
	expect = httpreq_header(q, "Expect");
	if (expect && strcasecmp(expect, "100-continue") == 0 && p->http_minor >= 1 &&
	    ((p->flags & F_CHUNKED) || ((p->flags & F_CONTENTLENGTH) && p->content_length > 0)))
		r->continue_due = 1;
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct httpreq_reader *r = reader_of(p);
	struct httpreq *q = r->req;

	if (len > r->lim.max_body - q->body_len)
		return parser_stop(r, 413, "request body too large");
	if (buf_add(&q->body, &q->body_len, &q->body_cap, at, len) < 0)
		return parser_nomem(r);
	return 0;
}

/* A chunk is announced with its size: refuse one that cannot fit before it comes. */
static int on_chunk_header(http_parser *p)
{
	struct httpreq_reader *r = reader_of(p);

	if (p->content_length > r->lim.max_body - r->req->body_len)
		return parser_stop(r, 413, "request body too large");
	return 0;
}

static int on_message_complete(http_parser *p)
{
	struct httpreq_reader *r = reader_of(p);

	r->msg_done = 1;
	r->req->keep_alive = http_should_keep_alive(p) && !p->upgrade;
	/* One request at a time: the parser stops right after this one, and the bytes of
	 * the next wait in the buffer until it is answered. */
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings httpreq_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
    .on_chunk_header = on_chunk_header,
};

/* ---- the reader ---------------------------------------------------------------------- */

void httpreq_reader_init(struct httpreq_reader *r, const struct httpreq_limits *lim)
{
	memset(r, 0, sizeof(*r));
	r->lim = *lim;
	http_parser_init(&r->parser, HTTP_REQUEST);
	r->parser.data = r;
}

void httpreq_reader_clear(struct httpreq_reader *r)
{
	httpreq_free(r->req);
	r->req = NULL;
}

int httpreq_reader_head(const struct httpreq_reader *r)
{
	return r->in_request && r->parser.method == HTTP_HEAD;
}

static enum httpreq_result refuse(int status, const char *msg, int *st, const char **why)
{
	*st = status;
	*why = msg;
	return HTTPREQ_REFUSE;
}

enum httpreq_result httpreq_feed(struct httpreq_reader *r, const char *buf, size_t len,
				 size_t *used, int *status, const char **why)
{
	enum http_errno e;
	size_t n;

	*used = 0;
	if (len == 0)
		return HTTPREQ_MORE;
	r->feed = buf;
	n = http_parser_execute(&r->parser, &httpreq_settings, buf, len);
	*used = n;
	e = HTTP_PARSER_ERRNO(&r->parser);
	if (r->nomem)
		return HTTPREQ_NOMEM;
	if (r->err_status)
		return refuse(r->err_status, r->err_why, status, why);
	if (e == HPE_HEADER_OVERFLOW)
		return refuse(431, "request header too large", status, why);
	if (e != HPE_OK && e != HPE_PAUSED) {
		snprintf(r->why_buf, sizeof(r->why_buf), "malformed request: %s",
			 http_errno_description(e));
		return refuse(400, r->why_buf, status, why);
	}
	if (r->in_request && !r->headers_done) {
		r->hdr_base += n;
		if (r->hdr_base > r->lim.max_header)
			return refuse(431, "request header too large", status, why);
	}
	if (r->msg_done) {
		http_parser_pause(&r->parser, 0);
		r->msg_done = 0;
		return HTTPREQ_DONE;
	}
	if (n == 0) /* no progress and no error: never spin on it */
		return refuse(400, "malformed request", status, why);
	return HTTPREQ_MORE;
}

struct httpreq *httpreq_take(struct httpreq_reader *r)
{
	struct httpreq *q = r->req;

	r->req = NULL;
	r->in_request = 0;
	return q;
}

/* ---- request targets ----------------------------------------------------------------- */

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Decodes src[0..n) into out (NUL-terminated). 0, -1 malformed or %00, -2 too long. */
static int pct_decode(const char *src, size_t n, int plus_space, char *out, size_t outlen)
{
	size_t o = 0;

	if (outlen == 0)
		return -2;
	for (size_t i = 0; i < n; i++) {
		int ch = (unsigned char)src[i];

		if (ch == '%') {
			int hi, lo;

			if (n - i < 3)
				return -1;
			hi = hexval((unsigned char)src[i + 1]);
			lo = hexval((unsigned char)src[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			ch = hi * 16 + lo;
			if (ch == 0)
				return -1;
			i += 2;
		} else if (ch == '+' && plus_space) {
			ch = ' ';
		} else if (ch == '\0') {
			return -1;
		}
		if (o + 1 >= outlen)
			return -2;
		out[o++] = (char)ch;
	}
	out[o] = '\0';
	return 0;
}

int https_path_decode(const char *raw, char *out, size_t outlen)
{
	return pct_decode(raw, strlen(raw), 0, out, outlen) == 0 ? 0 : -1;
}

int https_query_get(const char *query, const char *key, char *out, size_t outlen)
{
	size_t klen = strlen(key);
	const char *p = query;

	while (*p) {
		const char *end = strchr(p, '&'), *eq;
		size_t n = end ? (size_t)(end - p) : strlen(p);
		char kbuf[256];

		eq = memchr(p, '=', n);
		/* A key that cannot be decoded, or is longer than ours, is not ours. */
		if (klen + 2 <= sizeof(kbuf) &&
		    pct_decode(p, eq ? (size_t)(eq - p) : n, 1, kbuf, klen + 2) == 0 &&
		    strcmp(kbuf, key) == 0) {
			if (!eq) {
				if (outlen == 0)
					return -1;
				out[0] = '\0';
				return 0;
			}
			return pct_decode(eq + 1, n - (size_t)(eq + 1 - p), 1, out, outlen) == 0
				   ? 0
				   : -1;
		}
		if (!end)
			break;
		p = end + 1;
	}
	return 1;
}

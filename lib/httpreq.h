/* Reading HTTP/1.1 requests out of a connection's bytes (http-parser), with the peer
 * server's limits, and decoding their request targets. No I/O and no clock: bytes go
 * in, a whole request (or the status to refuse it with) comes out, so everything a
 * client can send before a handler sees it is one module, fuzzed in tests/fuzz
 * (fuzz_httpreq). lib/https_server.c feeds it what TLS decrypts. */
#ifndef HSM_HTTPREQ_H
#define HSM_HTTPREQ_H

#include <http_parser.h>
#include <stddef.h>

struct httpreq_limits {
	size_t max_header; /* request line and headers, bytes */
	size_t max_url;
	size_t max_body; /* Content-Length is refused above it before a byte is read */
};

/* A request read whole. Owned by whoever took it from the reader (httpreq_free). */
struct httpreq {
	const char *method; /* "GET", "HEAD" or "POST" */
	int head;	    /* HEAD: the answer carries no body */
	const char *path;   /* raw (still percent-encoded), starts with '/'; inside url */
	const char *query;  /* raw, after '?'; "" when none */
	char *body;	    /* NULL when empty; else a NUL follows it (not counted) */
	size_t body_len;
	int keep_alive; /* the client keeps the connection after the answer */
	/* The reader's own: */
	char *url; /* the request target, cut at '?' */
	size_t url_len, url_cap;
	char *hdr; /* "name\0value\0" pairs */
	size_t hdr_len, hdr_cap, nhdr;
	int hdr_last; /* 0 nothing yet, 1 in a name, 2 in a value */
	size_t body_cap;
};

/* One connection's reader. The caller reads in_request (the first byte of a request
 * has been parsed), headers_done, and continue_due (headers that ask for "100 Continue"
 * before the body were read; the caller clears it when it has taken note). */
struct httpreq_reader {
	http_parser parser;
	struct httpreq_limits lim;
	struct httpreq *req; /* being read; owned by the reader */
	int in_request, headers_done, msg_done, continue_due;
	/* set by the parser's callbacks within one httpreq_feed: */
	const char *feed; /* start of the bytes given to the parser now */
	size_t hdr_base;  /* header bytes parsed before feed */
	int err_status;
	const char *err_why;
	int nomem;
	char why_buf[128]; /* a refusal that names http-parser's error */
};

enum httpreq_result {
	HTTPREQ_MORE,	/* all bytes taken; the request is not whole yet */
	HTTPREQ_DONE,	/* a whole request: httpreq_take; bytes after it are not taken */
	HTTPREQ_REFUSE, /* answer *status with *why (a static or the reader's own string)
			 * and close: the connection cannot go on */
	HTTPREQ_NOMEM,	/* out of memory: close */
};

void httpreq_reader_init(struct httpreq_reader *r, const struct httpreq_limits *lim);
/* Frees a request being read. The reader can be initialized again. */
void httpreq_reader_clear(struct httpreq_reader *r);
/* Parses buf[0..len) and sets *used to the bytes taken (all of them, except after
 * DONE). On REFUSE, *status and *why say the answer; why stays valid until the next
 * call on r. */
enum httpreq_result httpreq_feed(struct httpreq_reader *r, const char *buf, size_t len,
				 size_t *used, int *status, const char **why);
/* After DONE: the request, now the caller's; the reader is ready for the next one. */
struct httpreq *httpreq_take(struct httpreq_reader *r);
/* 1 when the request being read is a HEAD (its refusal carries no body). */
int httpreq_reader_head(const struct httpreq_reader *r);
void httpreq_free(struct httpreq *q);

/* The value of header name (case-insensitive; the first if repeated), or NULL. */
const char *httpreq_header(const struct httpreq *q, const char *name);

/* Finds key in a raw query ("a=1&b=x%20y") and percent-decodes its value ('+' is a
 * space) into out. 0 found, 1 absent, -1 malformed, holding %00, or longer than
 * outlen - 1. A key without '=' has the value "". */
int https_query_get(const char *query, const char *key, char *out, size_t outlen);
/* Percent-decodes a raw path into out. 0, or -1 when malformed (bad escape), holding
 * %00, or longer than outlen - 1. '+' stays '+'. */
int https_path_decode(const char *raw, char *out, size_t outlen);

#endif

/* s3:// object store: S3's REST API over the asynchronous HTTP client (libcurl multi on
 * the loop), path-style URLs, SigV4 signing by libcurl.
 *
 * A store call is an op; an op runs one or more transfers (an HTTP exchange with its
 * retries): one for get/put/head/delete, one per page for list, and initiate + parts +
 * complete (or abort) for a multipart put. Transfers wait in one FIFO queue for one of
 * max_connections slots, so the limit holds across all ops. A transfer is retried with
 * exponential backoff and jitter on connection errors, timeouts, 5xx and throttling,
 * never on other 4xx answers.
 *
 * Callbacks reach the user only from loop callbacks (transfer done, timers), as the last
 * thing those do, so a user callback may start new ops or close the store. */
#include <curl/curl.h>
#include <errno.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/config.h"
#include "lib/http.h"
#include "lib/log.h"
#include "recall/s3_request.h"
#include "recall/store.h"

#define S3_XML_MAX	(16u << 20) /* the largest XML answer we accept (a list page) */
#define S3_SMALL_MAX	(1u << 20)  /* answers to put, delete, parts: small or empty */
#define S3_BACKOFF_BASE 0.2	    /* seconds before the first retry, doubled each time */
#define S3_BACKOFF_CAP	10.0
#define S3_MSG_MAX	1024

struct s3_op;
struct s3_xfer;

struct s3 {
	struct ev_loop *loop;
	struct http_client *http;
	char *endpoint; /* no trailing '/' */
	char *bucket;
	char *prefix;	 /* "" or without leading/trailing '/' */
	char *sigv4;	 /* "aws:amz:REGION:s3", NULL when anonymous */
	char *userpwd;	 /* "KEY:SECRET" */
	char *token_hdr; /* "x-amz-security-token: ...", or NULL */
	uint64_t threshold;
	uint64_t part_size;
	unsigned max_conns;
	int retries;
	double timeout;
	struct s3_xfer *qhead, *qtail; /* transfers waiting for a slot */
	unsigned running;	       /* transfers with a request in flight */
	unsigned nops;		       /* ops not yet answered: store_pending */
	struct s3_op *ops;
	ev_timer kick; /* starts queued transfers on the next loop turn */
	int closing;
	uint64_t rng;
};

/* What a finished transfer hands to its op. */
struct s3_result {
	int err;		/* 0: a 2xx answer (resp); else an errno-style code */
	long status;		/* HTTP status, 0 when no answer */
	struct http_resp *resp; /* the answer, NULL when none */
	const char *why;	/* the failure, for messages ("" on success) */
};

typedef void (*s3_done_fn)(struct s3_op *op, size_t part, struct s3_result *r);

struct s3_xfer {
	struct s3 *s;
	struct s3_op *op;
	struct s3_xfer *onext, *oprev; /* the op's transfers */
	struct s3_xfer *qnext;	       /* the queue */
	int queued;
	const char *method;
	char *url;
	const void *body; /* the op's memory */
	size_t body_len;
	size_t max_body;
	size_t part; /* multipart: part index */
	int error_in_200;
	int attempts;
	int start_failed;
	char step[64];
	char hdr_sha[96];
	char hdr_range[96];
	char why[S3_MSG_MAX];
	struct http_request *req;
	ev_timer backoff;
	s3_done_fn done;
};

enum s3_kind { S3_GET, S3_PUT, S3_HEAD, S3_DEL, S3_LIST };

struct s3_mpu {
	char *upload_id;
	uint64_t part_size;
	size_t nparts;
	size_t next;	 /* next part to queue */
	size_t finished; /* parts stored */
	unsigned outstanding;
	char **etags; /* nparts */
	char *xml;    /* CompleteMultipartUpload body */
	size_t xml_len;
	int fail_err; /* the first failure, reported after the abort */
	char fail_msg[S3_MSG_MAX];
};

struct s3_op {
	struct s3 *s;
	struct s3_op *prev, *next;
	enum s3_kind kind;
	char *key;    /* as the caller named it (the prefix, for list) */
	char *object; /* the name in the bucket */
	void (*cb)(void);
	void *arg;
	uint64_t off, len;   /* get */
	const uint8_t *data; /* put */
	size_t dlen;
	struct s3_mpu *mpu;
	char **keys; /* list */
	size_t nkeys, capkeys;
	unsigned pages;
	struct s3_xfer *xfers;
	ev_timer later; /* answers an op that failed before any transfer */
	int err;
	char msg[S3_MSG_MAX];
};

static const char s3_empty_sha[] =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

static const char *s3_verb(enum s3_kind k)
{
	static const char *const v[] = {"get", "put", "head", "delete", "list"};

	return v[k];
}

/* ---- answering ops ---------------------------------------------------------------- */

static void s3_keys_free(char **keys, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(keys[i]);
	free(keys);
}

static void s3_mpu_free(struct s3_mpu *m)
{
	if (!m)
		return;
	for (size_t i = 0; m->etags && i < m->nparts; i++)
		free(m->etags[i]);
	free(m->etags);
	free(m->upload_id);
	free(m->xml);
	free(m);
}

/* Sets the op's error message: "s3 VERB 'KEY' (URL): WHY". */
static void s3_op_error(struct s3_op *op, int err, const char *why)
{
	struct s3 *s = op->s;

	op->err = err;
	snprintf(op->msg, sizeof(op->msg), "s3 %s '%s' (%s/%s/%s): %s", s3_verb(op->kind),
		 op->key ? op->key : "", s->endpoint, s->bucket, op->object ? op->object : "", why);
}

/* Unlinks and frees op, then calls its callback: the last thing any caller does. */
static void s3_op_answer(struct s3_op *op, uint8_t *data, size_t len, int exists, uint64_t size)
{
	struct s3 *s = op->s;
	void (*cb)(void) = op->cb;
	void *arg = op->arg;
	enum s3_kind kind = op->kind;
	int err = op->err;
	char **keys = op->keys;
	size_t nkeys = op->nkeys;
	char msg[S3_MSG_MAX];

	snprintf(msg, sizeof(msg), "%s", op->msg);
	if (op->prev)
		op->prev->next = op->next;
	else
		s->ops = op->next;
	if (op->next)
		op->next->prev = op->prev;
	s->nops--;
	ev_timer_stop(s->loop, &op->later);
	s3_mpu_free(op->mpu);
	free(op->key);
	free(op->object);
	free(op);
	if (err) {
		free(data);
		s3_keys_free(keys, nkeys);
		data = NULL;
		len = 0;
		keys = NULL;
		nkeys = 0;
	}
	switch (kind) {
	case S3_GET:
		((store_get_cb)cb)(arg, err, err ? msg : NULL, data, len);
		break;
	case S3_PUT:
	case S3_DEL:
		((store_done_cb)cb)(arg, err, err ? msg : NULL);
		break;
	case S3_HEAD:
		((store_head_cb)cb)(arg, err, err ? msg : NULL, exists, size);
		break;
	case S3_LIST:
		((store_list_cb)cb)(arg, err, err ? msg : NULL, keys, nkeys);
		break;
	}
}

static void s3_op_fail(struct s3_op *op, int err, const char *why)
{
	s3_op_error(op, err, why);
	s3_op_answer(op, NULL, 0, 0, 0);
}

static void s3_op_later_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	s3_op_answer(w->data, NULL, 0, 0, 0);
}

/* For failures found inside the call that started the op: answer on the next turn. */
static void s3_op_fail_later(struct s3_op *op, int err, const char *why)
{
	s3_op_error(op, err, why);
	ev_timer_set(&op->later, 0.0, 0.0);
	ev_timer_start(op->s->loop, &op->later);
}

static struct s3_op *s3_op_new(struct s3 *s, enum s3_kind kind, const char *key, void (*cb)(void),
			       void *arg)
{
	struct s3_op *op = calloc(1, sizeof(*op));

	/* Without the op there is no way to answer the caller, now or later. */
	if (!op)
		abort();
	op->s = s;
	op->kind = kind;
	op->cb = cb;
	op->arg = arg;
	ev_init(&op->later, s3_op_later_cb);
	op->later.data = op;
	op->next = s->ops;
	if (s->ops)
		s->ops->prev = op;
	s->ops = op;
	s->nops++;
	op->key = strdup(key);
	/* For list, key is a prefix: "" still becomes "prefix/", only our objects. */
	op->object = s3_object_name(s->prefix, key);
	if (!op->key || !op->object) {
		s3_op_fail_later(op, EIO, "out of memory");
		return NULL;
	}
	return op;
}

/* ---- transfers -------------------------------------------------------------------- */

static double s3_random(struct s3 *s)
{
	/* xorshift64*: jitter needs spread, not secrecy. */
	s->rng ^= s->rng >> 12;
	s->rng ^= s->rng << 25;
	s->rng ^= s->rng >> 27;
	return (double)((s->rng * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

static void s3_kick(struct s3 *s)
{
	if (!s->closing && s->qhead && s->running < s->max_conns && !ev_is_active(&s->kick)) {
		ev_timer_set(&s->kick, 0.0, 0.0);
		ev_timer_start(s->loop, &s->kick);
	}
}

static void s3_enqueue(struct s3_xfer *x)
{
	struct s3 *s = x->s;

	x->qnext = NULL;
	x->queued = 1;
	if (s->qtail)
		s->qtail->qnext = x;
	else
		s->qhead = x;
	s->qtail = x;
	s3_kick(s);
}

static void s3_dequeue(struct s3_xfer *x)
{
	struct s3 *s = x->s;
	struct s3_xfer **pp = &s->qhead, *prev = NULL;

	while (*pp && *pp != x) {
		prev = *pp;
		pp = &(*pp)->qnext;
	}
	if (*pp) {
		*pp = x->qnext;
		if (s->qtail == x)
			s->qtail = prev;
	}
	x->queued = 0;
}

static void s3_xfer_free(struct s3_xfer *x)
{
	struct s3_op *op = x->op;

	if (x->queued)
		s3_dequeue(x);
	if (x->req) {
		http_cancel(x->req);
		x->s->running--;
		s3_kick(x->s);
	}
	ev_timer_stop(x->s->loop, &x->backoff);
	if (x->oprev)
		x->oprev->onext = x->onext;
	else
		op->xfers = x->onext;
	if (x->onext)
		x->onext->oprev = x->oprev;
	free(x->url);
	free(x);
}

/* Frees x and hands the result to its op: the last thing any caller does. */
static void s3_xfer_end(struct s3_xfer *x, struct s3_result *r)
{
	struct s3_op *op = x->op;
	s3_done_fn done = x->done;
	size_t part = x->part;
	char why[S3_MSG_MAX];

	/* r->why may point into x. */
	snprintf(why, sizeof(why), "%s", r->why);
	r->why = why;
	s3_xfer_free(x);
	done(op, part, r);
}

static void s3_xfer_fail(struct s3_xfer *x, int err, long status, struct http_resp *resp)
{
	struct s3_result r = {.err = err, .status = status, .resp = resp, .why = x->why};

	s3_xfer_end(x, &r);
}

static void s3_backoff_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct s3_xfer *x = w->data;

	(void)loop;
	(void)revents;
	if (x->start_failed)
		s3_xfer_fail(x, EIO, 0, NULL);
	else
		s3_enqueue(x);
}

/* Waits before the next attempt, or gives up with err after the last one. */
static void s3_xfer_retry(struct s3_xfer *x, int err, long status, struct http_resp *resp)
{
	struct s3 *s = x->s;
	double delay = S3_BACKOFF_BASE;
	size_t n = strlen(x->why);

	if (x->attempts > s->retries) {
		if (x->attempts > 1)
			snprintf(x->why + n, sizeof(x->why) - n, " (gave up after %d attempts)",
				 x->attempts);
		s3_xfer_fail(x, err, status, resp);
		return;
	}
	for (int i = 1; i < x->attempts && delay < S3_BACKOFF_CAP; i++)
		delay *= 2;
	if (delay > S3_BACKOFF_CAP)
		delay = S3_BACKOFF_CAP;
	/* Half fixed, half random: spreads out clients that failed together. */
	delay = delay / 2 + delay / 2 * s3_random(s);
	log_info("s3 %s '%s': %s; attempt %d of %d in %.2f s", s3_verb(x->op->kind), x->op->key,
		 x->why, x->attempts + 1, s->retries + 1, delay);
	ev_timer_set(&x->backoff, delay, 0.0);
	ev_timer_start(s->loop, &x->backoff);
}

static int s3_curl_transient(int code)
{
	switch (code) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
		return 1;
	default:
		return 0;
	}
}

/* An answer that is not a success: describe it, then retry or give up. */
static void s3_xfer_http_error(struct s3_xfer *x, struct http_resp *resp, const struct s3_error *e,
			       int have_code)
{
	const char *code = have_code ? e->code : "";

	if (have_code)
		snprintf(x->why, sizeof(x->why), "%s: HTTP %ld %s: %s", x->step, resp->status,
			 e->code, e->message[0] ? e->message : "(no message)");
	else
		snprintf(x->why, sizeof(x->why), "%s: HTTP %ld (no S3 error code)", x->step,
			 resp->status);
	if (s3_retryable(resp->status, code))
		s3_xfer_retry(x, EIO, resp->status, resp);
	else
		s3_xfer_fail(x, s3_status_errno(resp->status, code), resp->status, resp);
}

static void s3_xfer_http_done(void *arg, struct http_resp *resp)
{
	struct s3_xfer *x = arg;
	struct s3 *s = x->s;
	struct s3_error e;
	int have_code;

	x->req = NULL;
	s->running--;
	s3_kick(s);
	if (resp->curl_code) {
		snprintf(x->why, sizeof(x->why), "%s: %s", x->step, resp->error);
		if (s3_curl_transient(resp->curl_code))
			s3_xfer_retry(x, resp->timed_out ? ETIMEDOUT : EIO, 0, NULL);
		else
			s3_xfer_fail(x, EIO, 0, NULL);
		return;
	}
	if (resp->status >= 200 && resp->status < 300) {
		/* CompleteMultipartUpload may fail after its 200 has been sent. */
		if (!x->error_in_200 || s3_parse_error(resp->body, resp->body_len, &e) != 1) {
			struct s3_result r = {.status = resp->status, .resp = resp, .why = ""};

			s3_xfer_end(x, &r);
			return;
		}
		s3_xfer_http_error(x, resp, &e, 1);
		return;
	}
	have_code = s3_parse_error(resp->body, resp->body_len, &e) == 1;
	s3_xfer_http_error(x, resp, &e, have_code);
}

static void s3_xfer_start(struct s3_xfer *x)
{
	struct s3 *s = x->s;
	const char *headers[4];
	int n = 0;
	struct http_req req = {
	    .method = x->method,
	    .url = x->url,
	    .headers = headers,
	    .body = x->body,
	    .body_len = x->body_len,
	    .aws_sigv4 = s->sigv4,
	    .userpwd = s->userpwd,
	    .connect_timeout = s->timeout,
	    .stall_timeout = s->timeout,
	    .max_body = x->max_body,
	};
	char err[512];

	headers[n++] = x->hdr_sha;
	if (x->hdr_range[0])
		headers[n++] = x->hdr_range;
	if (s->token_hdr)
		headers[n++] = s->token_hdr;
	headers[n] = NULL;
	x->attempts++;
	x->req = http_start(s->http, &req, s3_xfer_http_done, x, err, sizeof(err));
	if (x->req) {
		s->running++;
		return;
	}
	/* Answer from the timer, so the queue walk that got here goes on undisturbed. */
	snprintf(x->why, sizeof(x->why), "%s: %s", x->step, err);
	x->start_failed = 1;
	ev_timer_set(&x->backoff, 0.0, 0.0);
	ev_timer_start(s->loop, &x->backoff);
}

static void s3_kick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct s3 *s = w->data;

	(void)loop;
	(void)revents;
	while (s->qhead && s->running < s->max_conns) {
		struct s3_xfer *x = s->qhead;

		s->qhead = x->qnext;
		if (!s->qhead)
			s->qtail = NULL;
		x->queued = 0;
		s3_xfer_start(x);
	}
}

/* A transfer of op: method on the op's object (or bucket, for list) with query. */
static struct s3_xfer *s3_xfer_new(struct s3_op *op, const char *method, const char *query,
				   s3_done_fn done, const char *step)
{
	struct s3 *s = op->s;
	struct s3_xfer *x = calloc(1, sizeof(*x));

	if (!x)
		return NULL;
	x->url = s3_url(s->endpoint, s->bucket, op->kind == S3_LIST ? NULL : op->object, query);
	if (!x->url) {
		free(x);
		return NULL;
	}
	x->s = s;
	x->op = op;
	x->method = method;
	x->done = done;
	x->max_body = S3_SMALL_MAX;
	snprintf(x->step, sizeof(x->step), "%s", step);
	snprintf(x->hdr_sha, sizeof(x->hdr_sha), "x-amz-content-sha256: %s", s3_empty_sha);
	ev_init(&x->backoff, s3_backoff_cb);
	x->backoff.data = x;
	x->onext = op->xfers;
	if (op->xfers)
		op->xfers->oprev = x;
	op->xfers = x;
	return x;
}

static void s3_xfer_set_body(struct s3_xfer *x, const void *body, size_t len)
{
	char sha[S3_SHA256_HEX];

	x->body = body;
	x->body_len = len;
	s3_payload_sha256(body, len, sha);
	snprintf(x->hdr_sha, sizeof(x->hdr_sha), "x-amz-content-sha256: %s", sha);
}

/* ---- get, put, head, delete ------------------------------------------------------- */

static void s3_get_done(struct s3_op *op, size_t part, struct s3_result *r)
{
	char *data;
	size_t len;

	(void)part;
	if (r->status == 416) {
		/* Reading at or past the end: a short object yields no bytes. */
		data = malloc(1);
		if (!data) {
			s3_op_fail(op, EIO, "out of memory");
			return;
		}
		s3_op_answer(op, (uint8_t *)data, 0, 0, 0);
		return;
	}
	if (r->err) {
		s3_op_fail(op, r->err, r->why);
		return;
	}
	if (r->status == 200 && (op->off || op->len)) {
		/* The whole object instead of the part asked for. */
		s3_op_fail(op, EIO, "the server ignored the Range header (HTTP 200, not 206)");
		return;
	}
	data = http_resp_take_body(r->resp, &len);
	s3_op_answer(op, (uint8_t *)data, len, 0, 0);
}

static void s3_get(void *impl, const char *key, uint64_t off, uint64_t len, store_get_cb cb,
		   void *arg)
{
	struct s3_op *op = s3_op_new(impl, S3_GET, key, (void (*)(void))cb, arg);
	struct s3_xfer *x;
	char range[S3_RANGE_MAX];
	int rc;

	if (!op)
		return;
	op->off = off;
	op->len = len;
	rc = s3_range(off, len, range);
	if (rc < 0 || (len && len > SIZE_MAX - 1)) {
		s3_op_fail_later(op, EINVAL, "offset + length out of range");
		return;
	}
	x = s3_xfer_new(op, "GET", NULL, s3_get_done, "GET");
	if (!x) {
		s3_op_fail_later(op, EIO, "out of memory");
		return;
	}
	if (rc)
		snprintf(x->hdr_range, sizeof(x->hdr_range), "Range: %s", range);
	x->max_body = (size_t)len; /* 0: the whole object, however large */
	s3_enqueue(x);
}

static void s3_done_simple(struct s3_op *op, size_t part, struct s3_result *r)
{
	(void)part;
	if (r->err)
		s3_op_fail(op, r->err, r->why);
	else
		s3_op_answer(op, NULL, 0, 0, 0);
}

static void s3_put_single(struct s3_op *op)
{
	struct s3_xfer *x = s3_xfer_new(op, "PUT", NULL, s3_done_simple, "PUT");

	if (!x) {
		s3_op_fail_later(op, EIO, "out of memory");
		return;
	}
	s3_xfer_set_body(x, op->data, op->dlen);
	s3_enqueue(x);
}

static void s3_mpu_start(struct s3_op *op);

static void s3_put(void *impl, const char *key, const void *data, size_t len, store_done_cb cb,
		   void *arg)
{
	struct s3 *s = impl;
	struct s3_op *op = s3_op_new(s, S3_PUT, key, (void (*)(void))cb, arg);

	if (!op)
		return;
	op->data = data;
	op->dlen = len;
	if (!data && len) {
		s3_op_fail_later(op, EINVAL, "no data");
		return;
	}
	if (len > s->threshold)
		s3_mpu_start(op);
	else
		s3_put_single(op);
}

static void s3_head_done(struct s3_op *op, size_t part, struct s3_result *r)
{
	(void)part;
	if (r->status == 404) {
		s3_op_answer(op, NULL, 0, 0, 0);
		return;
	}
	if (r->err) {
		s3_op_fail(op, r->err, r->why);
		return;
	}
	if (r->resp->content_length < 0) {
		s3_op_fail(op, EIO, "HEAD: the answer has no Content-Length");
		return;
	}
	s3_op_answer(op, NULL, 0, 1, (uint64_t)r->resp->content_length);
}

static void s3_simple(struct s3 *s, enum s3_kind kind, const char *method, const char *key,
		      s3_done_fn done, void (*cb)(void), void *arg)
{
	struct s3_op *op = s3_op_new(s, kind, key, cb, arg);
	struct s3_xfer *x;

	if (!op)
		return;
	x = s3_xfer_new(op, method, NULL, done, method);
	if (!x) {
		s3_op_fail_later(op, EIO, "out of memory");
		return;
	}
	s3_enqueue(x);
}

static void s3_head(void *impl, const char *key, store_head_cb cb, void *arg)
{
	s3_simple(impl, S3_HEAD, "HEAD", key, s3_head_done, (void (*)(void))cb, arg);
}

static void s3_del(void *impl, const char *key, store_done_cb cb, void *arg)
{
	/* S3 answers 204 for a key that does not exist: deleting is idempotent there. */
	s3_simple(impl, S3_DEL, "DELETE", key, s3_done_simple, (void (*)(void))cb, arg);
}

/* ---- multipart put ------------------------------------------------------------------ */

static void s3_mpu_abort_done(struct s3_op *op, size_t part, struct s3_result *r)
{
	struct s3_mpu *m = op->mpu;
	size_t n = strlen(m->fail_msg);

	(void)part;
	/* The failure that matters is the first; a failed abort leaves parts that S3
	 * keeps (and bills) until a lifecycle rule removes them: say so. */
	if (r->err && r->status != 404)
		snprintf(m->fail_msg + n, sizeof(m->fail_msg) - n,
			 "; aborting upload %s failed too: %s", m->upload_id, r->why);
	s3_op_fail(op, m->fail_err, m->fail_msg);
}

/* Stops the upload after a failure: cancels its other transfers, then aborts it. */
static void s3_mpu_fail(struct s3_op *op, int err, const char *why)
{
	struct s3_mpu *m = op->mpu;
	struct s3_param q[] = {{"uploadId", m->upload_id}};
	struct s3_xfer *x;
	char *query;

	m->fail_err = err;
	snprintf(m->fail_msg, sizeof(m->fail_msg), "%s", why);
	while (op->xfers)
		s3_xfer_free(op->xfers);
	m->outstanding = 0;
	if (!m->upload_id) {
		s3_op_fail(op, err, why);
		return;
	}
	query = s3_query(q, 1);
	x = query ? s3_xfer_new(op, "DELETE", query, s3_mpu_abort_done, "abort multipart upload")
		  : NULL;
	free(query);
	if (!x) {
		s3_op_fail(op, err, why);
		return;
	}
	s3_enqueue(x);
}

static void s3_mpu_complete_done(struct s3_op *op, size_t part, struct s3_result *r)
{
	(void)part;
	if (r->err) {
		s3_mpu_fail(op, r->err, r->why);
		return;
	}
	s3_op_answer(op, NULL, 0, 0, 0);
}

static void s3_mpu_complete(struct s3_op *op)
{
	struct s3_mpu *m = op->mpu;
	struct s3_param q[] = {{"uploadId", m->upload_id}};
	struct s3_xfer *x = NULL;
	char *query = s3_query(q, 1);

	m->xml = s3_complete_body(m->etags, m->nparts, &m->xml_len);
	if (query && m->xml)
		x = s3_xfer_new(op, "POST", query, s3_mpu_complete_done,
				"complete multipart upload");
	free(query);
	if (!x) {
		s3_mpu_fail(op, EIO, "complete multipart upload: out of memory");
		return;
	}
	s3_xfer_set_body(x, m->xml, m->xml_len);
	x->error_in_200 = 1;
	s3_enqueue(x);
}

static void s3_mpu_part_done(struct s3_op *op, size_t part, struct s3_result *r);

/* Queues parts until max_connections of them are on their way. */
static int s3_mpu_fill(struct s3_op *op)
{
	struct s3 *s = op->s;
	struct s3_mpu *m = op->mpu;

	while (m->next < m->nparts && m->outstanding < s->max_conns) {
		size_t i = m->next;
		uint64_t off = (uint64_t)i * m->part_size;
		size_t len =
		    (size_t)(op->dlen - off < m->part_size ? op->dlen - off : m->part_size);
		char num[24], step[64];
		struct s3_param q[] = {{"partNumber", num}, {"uploadId", m->upload_id}};
		char *query;
		struct s3_xfer *x = NULL;

		snprintf(num, sizeof(num), "%zu", i + 1);
		snprintf(step, sizeof(step), "upload part %zu of %zu", i + 1, m->nparts);
		query = s3_query(q, 2);
		if (query)
			x = s3_xfer_new(op, "PUT", query, s3_mpu_part_done, step);
		free(query);
		if (!x)
			return -1;
		x->part = i;
		s3_xfer_set_body(x, op->data + off, len);
		m->next++;
		m->outstanding++;
		s3_enqueue(x);
	}
	return 0;
}

static void s3_mpu_part_done(struct s3_op *op, size_t part, struct s3_result *r)
{
	struct s3_mpu *m = op->mpu;
	char why[S3_MSG_MAX];

	m->outstanding--;
	if (r->err) {
		s3_mpu_fail(op, r->err, r->why);
		return;
	}
	if (!r->resp->etag[0]) {
		snprintf(why, sizeof(why), "upload part %zu of %zu: the answer has no ETag",
			 part + 1, m->nparts);
		s3_mpu_fail(op, EIO, why);
		return;
	}
	m->etags[part] = strdup(r->resp->etag);
	if (!m->etags[part] || s3_mpu_fill(op) < 0) {
		s3_mpu_fail(op, EIO, "out of memory");
		return;
	}
	if (++m->finished == m->nparts)
		s3_mpu_complete(op);
}

static void s3_mpu_init_done(struct s3_op *op, size_t part, struct s3_result *r)
{
	struct s3_mpu *m = op->mpu;

	(void)part;
	if (r->err) {
		s3_mpu_fail(op, r->err, r->why);
		return;
	}
	if (s3_parse_upload_id(r->resp->body, r->resp->body_len, &m->upload_id) < 0) {
		s3_mpu_fail(op, EIO, "initiate multipart upload: malformed answer (no UploadId)");
		return;
	}
	if (s3_mpu_fill(op) < 0)
		s3_mpu_fail(op, EIO, "out of memory");
}

static void s3_mpu_start(struct s3_op *op)
{
	struct s3 *s = op->s;
	struct s3_param q[] = {{"uploads", NULL}};
	struct s3_mpu *m = calloc(1, sizeof(*m));
	struct s3_xfer *x = NULL;
	char *query;

	op->mpu = m;
	if (!m) {
		s3_op_fail_later(op, EIO, "out of memory");
		return;
	}
	m->part_size = s3_part_size(op->dlen, s->part_size);
	m->nparts = (size_t)((op->dlen + m->part_size - 1) / m->part_size);
	m->etags = calloc(m->nparts, sizeof(*m->etags));
	query = s3_query(q, 1);
	if (m->etags && query)
		x = s3_xfer_new(op, "POST", query, s3_mpu_init_done, "initiate multipart upload");
	free(query);
	if (!x) {
		s3_op_fail_later(op, EIO, "out of memory");
		return;
	}
	x->max_body = S3_XML_MAX;
	s3_enqueue(x);
}

/* ---- list ------------------------------------------------------------------------- */

static int s3_list_page(struct s3_op *op, const char *token);

static int s3_list_keep(struct s3_op *op, struct s3_list_page *page)
{
	struct s3 *s = op->s;
	size_t plen = strlen(s->prefix);

	for (size_t i = 0; i < page->n; i++) {
		char *k = page->keys[i];

		/* Our keys are "prefix/KEY": anything else is not ours to report. */
		if (plen && (strncmp(k, s->prefix, plen) != 0 || k[plen] != '/'))
			continue;
		if (op->nkeys == op->capkeys) {
			size_t cap = op->capkeys ? 2 * op->capkeys : 256;
			char **nk = realloc(op->keys, cap * sizeof(*nk));

			if (!nk)
				return -1;
			op->keys = nk;
			op->capkeys = cap;
		}
		if (plen)
			memmove(k, k + plen + 1, strlen(k + plen + 1) + 1);
		/* We never write such a key; whoever did, callers must not be handed a
		 * name like "../x" as if it were an object of ours. */
		if (!store_key_valid(k))
			continue;
		op->keys[op->nkeys++] = k;
		page->keys[i] = NULL;
	}
	return 0;
}

static void s3_list_done(struct s3_op *op, size_t part, struct s3_result *r)
{
	struct s3_list_page page;
	char why[128];
	int rc;

	(void)part;
	if (r->err) {
		s3_op_fail(op, r->err, r->why);
		return;
	}
	if (s3_parse_list(r->resp->body, r->resp->body_len, &page) < 0) {
		snprintf(why, sizeof(why), "list page %u: malformed ListObjectsV2 answer",
			 op->pages);
		s3_op_fail(op, EIO, why);
		return;
	}
	rc = s3_list_keep(op, &page);
	if (rc == 0 && page.truncated)
		rc = s3_list_page(op, page.next_token);
	s3_list_page_free(&page);
	if (rc < 0) {
		s3_op_fail(op, EIO, "out of memory");
		return;
	}
	if (!op->xfers)
		s3_op_answer(op, NULL, 0, 0, 0);
}

static int s3_list_page(struct s3_op *op, const char *token)
{
	struct s3_param q[3];
	size_t n = 0;
	char *query, step[32];
	struct s3_xfer *x;

	if (token)
		q[n++] = (struct s3_param){"continuation-token", token};
	q[n++] = (struct s3_param){"list-type", "2"};
	if (*op->object)
		q[n++] = (struct s3_param){"prefix", op->object};
	query = s3_query(q, n);
	if (!query)
		return -1;
	op->pages++;
	snprintf(step, sizeof(step), "list page %u", op->pages);
	x = s3_xfer_new(op, "GET", query, s3_list_done, step);
	free(query);
	if (!x)
		return -1;
	x->max_body = S3_XML_MAX;
	s3_enqueue(x);
	return 0;
}

static void s3_list(void *impl, const char *prefix, store_list_cb cb, void *arg)
{
	struct s3_op *op = s3_op_new(impl, S3_LIST, prefix, (void (*)(void))cb, arg);

	if (op && s3_list_page(op, NULL) < 0)
		s3_op_fail_later(op, EIO, "out of memory");
}

/* ---- the store -------------------------------------------------------------------- */

static unsigned s3_pending(const void *impl)
{
	return ((const struct s3 *)impl)->nops;
}

static void s3_free(struct s3 *s)
{
	free(s->endpoint);
	free(s->bucket);
	free(s->prefix);
	free(s->sigv4);
	if (s->userpwd)
		memset(s->userpwd, 0, strlen(s->userpwd));
	free(s->userpwd);
	free(s->token_hdr);
	free(s);
}

static void s3_close(void *impl)
{
	struct s3 *s = impl;

	s->closing = 1;
	ev_timer_stop(s->loop, &s->kick);
	/* Callbacks run here may start new ops: they join the list and end here too. A
	 * multipart upload cut short stays incomplete on the server (no time to abort it);
	 * a lifecycle rule for incomplete uploads cleans those up. */
	while (s->ops) {
		struct s3_op *op = s->ops;

		while (op->xfers)
			s3_xfer_free(op->xfers);
		s3_op_fail(op, ECANCELED, "cancelled: the store is closing");
	}
	http_client_free(s->http);
	s3_free(s);
}

static int s3_open_strings(struct s3 *s, const struct hsm_store_cfg *cfg, char *err, size_t errlen)
{
	const char *region = cfg->region && *cfg->region ? cfg->region : "us-east-1";
	size_t n;
	int rc = 0;

	if (cfg->endpoint && *cfg->endpoint)
		s->endpoint = strdup(cfg->endpoint);
	else if (asprintf(&s->endpoint, "https://s3.%s.amazonaws.com", region) < 0)
		s->endpoint = NULL;
	s->bucket = strdup(cfg->bucket);
	s->prefix = strdup(cfg->prefix ? cfg->prefix : "");
	if (cfg->access_key && *cfg->access_key) {
		if (asprintf(&s->sigv4, "aws:amz:%s:s3", region) < 0)
			s->sigv4 = NULL;
		if (asprintf(&s->userpwd, "%s:%s", cfg->access_key,
			     cfg->secret_key ? cfg->secret_key : "") < 0)
			s->userpwd = NULL;
		rc |= !s->sigv4 || !s->userpwd;
	}
	if (cfg->session_token && *cfg->session_token &&
	    asprintf(&s->token_hdr, "x-amz-security-token: %s", cfg->session_token) < 0) {
		s->token_hdr = NULL;
		rc = 1;
	}
	if (rc || !s->endpoint || !s->bucket || !s->prefix) {
		snprintf(err, errlen, "s3 store: out of memory");
		return -1;
	}
	n = strlen(s->endpoint);
	while (n && s->endpoint[n - 1] == '/')
		s->endpoint[--n] = '\0';
	n = strlen(s->prefix);
	while (n && s->prefix[n - 1] == '/')
		s->prefix[--n] = '\0';
	return 0;
}

static int s3_open_check(const struct hsm_store_cfg *cfg, char *err, size_t errlen)
{
	const char *ep = cfg->endpoint;

	if (cfg->kind != HSM_STORE_S3 || !cfg->bucket || !*cfg->bucket) {
		snprintf(err, errlen, "s3 store: no bucket configured");
		return -1;
	}
	if (ep && *ep && strncmp(ep, "http://", 7) != 0 && strncmp(ep, "https://", 8) != 0) {
		snprintf(err, errlen, "s3 store: endpoint '%s' is not an http(s) URL", ep);
		return -1;
	}
	if (cfg->max_connections < 1 || cfg->retries < 0 || cfg->timeout <= 0) {
		snprintf(err, errlen,
			 "s3 store: max_connections (%d) must be >= 1, retries (%d) >= 0 and "
			 "timeout (%g) > 0",
			 cfg->max_connections, cfg->retries, cfg->timeout);
		return -1;
	}
	if (cfg->access_key && *cfg->access_key && (!cfg->secret_key || !*cfg->secret_key)) {
		snprintf(err, errlen, "s3 store: an access key without a secret key");
		return -1;
	}
	return 0;
}

static void *s3_open(struct ev_loop *loop, struct pool *pool, const struct hsm_store_cfg *cfg,
		     char *err, size_t errlen)
{
	struct s3 *s;

	(void)pool;
	if (s3_open_check(cfg, err, errlen) < 0)
		return NULL;
	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "s3 store: out of memory");
		return NULL;
	}
	if (s3_open_strings(s, cfg, err, errlen) < 0) {
		s3_free(s);
		return NULL;
	}
	s->loop = loop;
	s->threshold = cfg->multipart_threshold;
	s->part_size = cfg->part_size < S3_PART_MIN ? S3_PART_MIN : cfg->part_size;
	s->max_conns = (unsigned)cfg->max_connections;
	s->retries = cfg->retries;
	s->timeout = cfg->timeout;
	s->rng = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)s;
	if (!s->rng)
		s->rng = 0x9E3779B97F4A7C15ULL;
	ev_init(&s->kick, s3_kick_cb);
	s->kick.data = s;
	s->http = http_client_new(loop, s->max_conns, err, errlen);
	if (!s->http) {
		s3_free(s);
		return NULL;
	}
	return s;
}

const struct store_backend store_backend_s3 = {
    .scheme = "s3",
    .open = s3_open,
    .get = s3_get,
    .put = s3_put,
    .head = s3_head,
    .del = s3_del,
    .list = s3_list,
    .pending = s3_pending,
    .close = s3_close,
};

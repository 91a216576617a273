#include "recall/peer_client.h"

#include <errno.h>
#include <ev.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/config.h"
#include "lib/hash.h"
#include "lib/http.h"
#include "lib/log.h"

/* Connections per peer: a recall keeps a window of chunks in flight, and several
 * recalls run at once; more connections than that only add TLS handshakes. */
#define PEER_MAX_CONNS 16
/* A manifest answer comes only after the peer has hashed the whole file: allow it
 * that long without a byte moving. */
#define PEER_MANIFEST_STALL_FACTOR 6.0
/* The slowest link a chunk must still cross within its total timeout, bytes/s. */
#define PEER_MIN_RATE (64.0 * 1024.0)
/* Answers of 429 retried per call, the pause doubling from 20 ms up to 1 s. */
#define PEER_BUSY_RETRIES 10

enum peer_call_kind { PC_DATA, PC_RESP, PC_PROBE };

struct peer_call {
	struct peer_client *pc;
	struct peer_call *prev, *next; /* in pc->calls */
	struct http_request *req;      /* NULL once finished, or when it never started */
	ev_timer defer;		       /* reports a failure to start, from the loop */
	int kind;		       /* enum peer_call_kind */
	size_t want_len;	       /* PC_DATA: exact answer length; 0 = any */
	peer_data_cb dcb;
	peer_resp_cb rcb;
	void *arg;
	char what[96]; /* for messages: "manifest of FID", "chunk at OFF" */
	int err;
	char msg[512];
	/* What peer_start was given, so that an answer of 429 (the peer's request rate
	 * limit) is retried after a pause instead of failing a recall that would succeed
	 * a moment later. */
	char path[2048];
	double connect_timeout, stall_timeout, total_timeout;
	size_t max_body;
	int retries, retrying;
};

struct peer_client {
	struct peers *ps;
	const struct hsm_peer_cfg *cfg; /* not owned */
	struct http_client *http;	/* owned */
	struct peer_call *calls;	/* in flight, owned */
	struct peer_call *probe;	/* the health probe in flight, also in calls */
	ev_timer probe_timer;		/* runs while the peer is down */
	struct peer_health health;
};

struct peers {
	struct ev_loop *loop;
	const struct hsm_config *cfg; /* not owned */
	size_t n;
	struct peer_client *clients; /* n of them, owned */
};

static void peer_probe_cb(struct ev_loop *loop, ev_timer *t, int revents);
static void peer_start(struct peer_call *call, const char *path, double connect_timeout,
		       double stall_timeout, double total_timeout, size_t max_body);

static void peer_unlink(struct peer_call *call)
{
	struct peer_client *pc = call->pc;

	if (call->prev)
		call->prev->next = call->next;
	else
		pc->calls = call->next;
	if (call->next)
		call->next->prev = call->prev;
	if (pc->probe == call)
		pc->probe = NULL;
}

static void peer_call_free(struct peer_call *call)
{
	ev_timer_stop(call->pc->ps->loop, &call->defer);
	peer_unlink(call);
	free(call);
}

static void peer_mark_up(struct peer_client *pc)
{
	pc->health.last_ok = time(NULL);
	pc->health.failures = 0;
	if (pc->health.up)
		return;
	pc->health.up = 1;
	ev_timer_stop(pc->ps->loop, &pc->probe_timer);
	log_info("site %s is reachable again", pc->cfg->name);
}

static void peer_mark_down(struct peer_client *pc, const char *why)
{
	pc->health.last_fail = time(NULL);
	pc->health.failures++;
	snprintf(pc->health.last_error, sizeof(pc->health.last_error), "%s", why);
	if (!pc->health.up)
		return;
	pc->health.up = 0;
	log_warnx("site %s is down (%s); probing it every %.0f s", pc->cfg->name, why,
		  PEER_PROBE_INTERVAL);
	ev_timer_set(&pc->probe_timer, PEER_PROBE_INTERVAL, PEER_PROBE_INTERVAL);
	ev_timer_start(pc->ps->loop, &pc->probe_timer);
}

/* The first line of an error answer, cut short and stripped of control bytes: the
 * peer is not trusted to send printable text. */
static void peer_first_line(const char *body, size_t len, char *out, size_t outlen)
{
	size_t o = 0;

	for (size_t i = 0; i < len && body[i] != '\n' && o + 1 < outlen && o < 200; i++) {
		unsigned char ch = (unsigned char)body[i];

		if (ch == '\r')
			continue;
		out[o++] = (ch < 0x20 || ch >= 0x7f) ? '?' : (char)ch;
	}
	out[o] = '\0';
	if (!o)
		snprintf(out, outlen, "no reason given");
}

/* Maps an HTTP answer or a failed transfer to errno and message; 0 for a usable 2xx. */
static int peer_classify(struct peer_call *call, struct http_resp *resp, char *msg, size_t msglen)
{
	struct peer_client *pc = call->pc;
	const char *site = pc->cfg->name;
	char line[256];

	if (resp->status == 0 || resp->timed_out || (resp->curl_code && !resp->too_large)) {
		snprintf(msg, msglen, "%s%s", resp->timed_out ? "timed out: " : "",
			 resp->error[0] ? resp->error : "no answer");
		peer_mark_down(pc, msg);
		return resp->timed_out ? ETIMEDOUT : EIO;
	}
	peer_mark_up(pc);
	if (resp->too_large) {
		snprintf(msg, msglen, "%s: answer too long (%s)", call->what, resp->error);
		return EIO;
	}
	if (resp->status >= 200 && resp->status < 300)
		return 0;
	peer_first_line(resp->body, resp->body_len, line, sizeof(line));
	switch (resp->status) {
	case 404:
		snprintf(msg, msglen, "%s: not resident at site %s (%s)", call->what, site, line);
		return ENOENT;
	case 409:
		snprintf(msg, msglen, "%s: site %s has another version (%s)", call->what, site,
			 line);
		return ESTALE;
	case 403:
		snprintf(msg, msglen, "%s: refused by site %s (%s)", call->what, site, line);
		return EACCES;
	default:
		snprintf(msg, msglen, "%s: site %s answered HTTP %ld (%s)", call->what, site,
			 resp->status, line);
		return EIO;
	}
}

static void peer_http_done(void *arg, struct http_resp *resp)
{
	struct peer_call *call = arg;
	struct peer_client *pc = call->pc;
	char msg[512];
	char *body;
	size_t len;
	int err;

	call->req = NULL;
	if (resp->status == 429 && call->kind != PC_PROBE && call->retries < PEER_BUSY_RETRIES) {
		double pause = 0.02 * (double)(1u << call->retries);

		call->retries++;
		call->retrying = 1;
		pc->health.busy++;
		ev_timer_set(&call->defer, pause < 1.0 ? pause : 1.0, 0.0);
		ev_timer_start(pc->ps->loop, &call->defer);
		return;
	}
	msg[0] = '\0';
	err = peer_classify(call, resp, msg, sizeof(msg));
	if (!err)
		pc->health.bytes_in += resp->body_len;
	if (!err && call->kind == PC_DATA && call->want_len && resp->body_len != call->want_len) {
		snprintf(msg, sizeof(msg), "%s: site %s sent %zu bytes, expected %zu", call->what,
			 pc->cfg->name, resp->body_len, call->want_len);
		err = EIO;
	}
	/* Unlinked before the callback runs: it may cancel other calls or free the set,
	 * never this one. */
	peer_unlink(call);
	switch (call->kind) {
	case PC_PROBE:
		if (!err && resp->status == 200)
			peer_mark_up(pc);
		else if (err && pc->health.up == 0)
			snprintf(pc->health.last_error, sizeof(pc->health.last_error), "%s", msg);
		break;
	case PC_DATA:
		if (err) {
			call->dcb(call->arg, err, msg, NULL, 0);
		} else {
			body = http_resp_take_body(resp, &len);
			call->dcb(call->arg, 0, NULL, (uint8_t *)body, len);
		}
		break;
	case PC_RESP:
		body = http_resp_take_body(resp, &len);
		call->rcb(call->arg, err, err ? msg : NULL, resp->status, body, len);
		break;
	}
	/* The callback may have freed the whole set: only call is still ours. (Its defer
	 * timer never ran: a started call fails through here.) */
	free(call);
}

/* A call that could not start still answers from the loop, as promised. */
static void peer_defer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct peer_call *call = t->data;

	(void)loop;
	(void)revents;
	ev_timer_stop(call->pc->ps->loop, &call->defer);
	if (call->retrying) {
		call->retrying = 0;
		peer_start(call, call->path, call->connect_timeout, call->stall_timeout,
			   call->total_timeout, call->max_body);
		return;
	}
	peer_unlink(call);
	if (call->kind == PC_DATA)
		call->dcb(call->arg, call->err, call->msg, NULL, 0);
	else if (call->kind == PC_RESP)
		call->rcb(call->arg, call->err, call->msg, 0, NULL, 0);
	free(call);
}

static struct peer_call *peer_call_new(struct peer_client *pc, int kind, void *arg)
{
	struct peer_call *call = calloc(1, sizeof(*call));

	if (!call)
		fatal("peer client: out of memory");
	call->pc = pc;
	call->kind = kind;
	call->arg = arg;
	ev_timer_init(&call->defer, peer_defer_cb, 0.0, 0.0);
	call->defer.data = call;
	call->next = pc->calls;
	if (pc->calls)
		pc->calls->prev = call;
	pc->calls = call;
	return call;
}

static void peer_call_fail(struct peer_call *call, int err, const char *msg)
{
	call->err = err;
	snprintf(call->msg, sizeof(call->msg), "%s", msg);
	ev_timer_start(call->pc->ps->loop, &call->defer);
}

/* Starts GET url with the TLS settings of the site; failures answer later. */
static void peer_start(struct peer_call *call, const char *path, double connect_timeout,
		       double stall_timeout, double total_timeout, size_t max_body)
{
	struct peer_client *pc = call->pc;
	const struct hsm_config *cfg = pc->ps->cfg;
	struct http_req rq;
	char url[2048], err[512];
	int n;

	if (path != call->path)
		snprintf(call->path, sizeof(call->path), "%s", path);
	call->connect_timeout = connect_timeout;
	call->stall_timeout = stall_timeout;
	call->total_timeout = total_timeout;
	call->max_body = max_body;
	pc->health.requests++;
	n = snprintf(url, sizeof(url), "%s%s", pc->cfg->url, path);
	if (n < 0 || (size_t)n >= sizeof(url)) {
		peer_call_fail(call, EINVAL, "URL too long");
		return;
	}
	memset(&rq, 0, sizeof(rq));
	rq.method = "GET";
	rq.url = url;
	rq.ca_file = cfg->tls_ca;
	rq.cert_file = cfg->tls_cert;
	rq.key_file = cfg->tls_key;
	rq.connect_timeout = connect_timeout;
	rq.stall_timeout = stall_timeout;
	rq.total_timeout = total_timeout;
	rq.max_body = max_body;
	call->req = http_start(pc->http, &rq, peer_http_done, call, err, sizeof(err));
	if (!call->req)
		peer_call_fail(call, EIO, err);
}

static void peer_probe_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct peer_client *pc = t->data;
	double timeout = pc->ps->cfg->peer_timeout;

	(void)loop;
	(void)revents;
	if (pc->health.up || pc->probe)
		return;
	pc->probe = peer_call_new(pc, PC_PROBE, NULL);
	snprintf(pc->probe->what, sizeof(pc->probe->what), "health probe");
	peer_start(pc->probe, "/v1/health",
		   timeout < PEER_PROBE_INTERVAL ? timeout : PEER_PROBE_INTERVAL, 0, timeout, 4096);
}

struct peers *peers_new(struct ev_loop *loop, const struct hsm_config *cfg, char *err,
			size_t errlen)
{
	struct peers *ps = calloc(1, sizeof(*ps));
	const char *const files[] = {cfg->tls_ca, cfg->tls_cert, cfg->tls_key};
	const char *const what[] = {"tls_ca", "tls_cert", "tls_key"};

	if (!ps || (cfg->npeers && !(ps->clients = calloc(cfg->npeers, sizeof(*ps->clients))))) {
		snprintf(err, errlen, "out of memory for the peer clients");
		free(ps);
		return NULL;
	}
	ps->loop = loop;
	ps->cfg = cfg;
	/* Checked here so that a missing key is one clear start-up error, not a TLS
	 * failure on every transfer that marks every peer down. */
	for (size_t i = 0; cfg->npeers && i < 3; i++) {
		if (!files[i]) {
			snprintf(err, errlen, "%s is required when peers are configured", what[i]);
			goto fail;
		}
		if (access(files[i], R_OK) < 0) {
			snprintf(err, errlen, "%s %s: %s", what[i], files[i], strerror(errno));
			goto fail;
		}
	}
	for (; ps->n < cfg->npeers; ps->n++) {
		struct peer_client *pc = &ps->clients[ps->n];
		char herr[256];

		pc->ps = ps;
		pc->cfg = &cfg->peers[ps->n];
		pc->health.up = 1;
		ev_timer_init(&pc->probe_timer, peer_probe_cb, PEER_PROBE_INTERVAL,
			      PEER_PROBE_INTERVAL);
		pc->probe_timer.data = pc;
		pc->http = http_client_new(loop, PEER_MAX_CONNS, herr, sizeof(herr));
		if (!pc->http) {
			snprintf(err, errlen, "peer %s: %s", pc->cfg->name, herr);
			goto fail;
		}
	}
	return ps;
fail:
	peers_free(ps);
	return NULL;
}

void peers_free(struct peers *ps)
{
	if (!ps)
		return;
	for (size_t i = 0; i < ps->n; i++) {
		struct peer_client *pc = &ps->clients[i];

		ev_timer_stop(ps->loop, &pc->probe_timer);
		/* Cancels the transfers without their callbacks; then the calls go. */
		http_client_free(pc->http);
		while (pc->calls)
			peer_call_free(pc->calls);
	}
	free(ps->clients);
	free(ps);
}

size_t peers_count(const struct peers *ps)
{
	return ps ? ps->n : 0;
}

struct peer_client *peers_at(struct peers *ps, size_t i)
{
	return ps && i < ps->n ? &ps->clients[i] : NULL;
}

struct peer_client *peers_find(struct peers *ps, const char *name)
{
	for (size_t i = 0; ps && i < ps->n; i++)
		if (!strcmp(ps->clients[i].cfg->name, name))
			return &ps->clients[i];
	return NULL;
}

unsigned peers_active(const struct peers *ps)
{
	unsigned n = 0;

	for (size_t i = 0; ps && i < ps->n; i++)
		for (const struct peer_call *c = ps->clients[i].calls; c; c = c->next)
			if (c->kind != PC_PROBE)
				n++;
	return n;
}

const char *peer_name(const struct peer_client *pc)
{
	return pc->cfg->name;
}

const struct peer_health *peer_health(const struct peer_client *pc)
{
	return &pc->health;
}

void peer_note_served(struct peer_client *pc, uint64_t bytes)
{
	if (pc)
		pc->health.bytes_served += bytes;
}

struct peer_call *peer_get_manifest(struct peer_client *pc, const char *volume,
				    const struct hsm_fid *fid, const char *owner, uint64_t version,
				    peer_data_cb cb, void *arg)
{
	struct peer_call *call = peer_call_new(pc, PC_DATA, arg);
	double t = pc->ps->cfg->peer_timeout;
	char fidhex[33], path[512];

	call->dcb = cb;
	hsm_fid_hex(fid, fidhex);
	snprintf(call->what, sizeof(call->what), "manifest");
	snprintf(path, sizeof(path), "/v1/data/%s/%s/manifest?owner=%s&version=%" PRIu64, volume,
		 fidhex, owner, version);
	peer_start(call, path, t, t * PEER_MANIFEST_STALL_FACTOR,
		   2 * t * PEER_MANIFEST_STALL_FACTOR, PEER_MANIFEST_MAX);
	return call;
}

struct peer_call *peer_get_chunk(struct peer_client *pc, const char *volume,
				 const struct hsm_fid *fid, const char *owner, uint64_t version,
				 uint64_t off, uint32_t len, const uint8_t sha256[32],
				 peer_data_cb cb, void *arg)
{
	struct peer_call *call = peer_call_new(pc, PC_DATA, arg);
	double t = pc->ps->cfg->peer_timeout;
	char fidhex[33], shahex[HSM_SHA256_HEX], path[640];

	call->dcb = cb;
	call->want_len = len;
	snprintf(call->what, sizeof(call->what), "chunk at %" PRIu64, off);
	if (len == 0 || len > PEER_CHUNK_MAX) {
		peer_call_fail(call, EINVAL, "chunk length out of range");
		return call;
	}
	hsm_fid_hex(fid, fidhex);
	hex_encode(sha256, 32, shahex);
	snprintf(path, sizeof(path),
		 "/v1/data/%s/%s/chunk?owner=%s&version=%" PRIu64 "&off=%" PRIu64 "&len=%" PRIu32
		 "&sha=%s",
		 volume, fidhex, owner, version, off, len, shahex);
	peer_start(call, path, t, t, 4 * t + (double)len / PEER_MIN_RATE, len);
	return call;
}

struct peer_call *peer_get(struct peer_client *pc, const char *path_and_query, double timeout,
			   size_t max_body, peer_resp_cb cb, void *arg)
{
	struct peer_call *call = peer_call_new(pc, PC_RESP, arg);
	double t = pc->ps->cfg->peer_timeout;

	call->rcb = cb;
	snprintf(call->what, sizeof(call->what), "GET %.80s", path_and_query);
	if (path_and_query[0] != '/') {
		peer_call_fail(call, EINVAL, "path must start with '/'");
		return call;
	}
	peer_start(call, path_and_query, t, 0, timeout > 0 ? timeout : t, max_body);
	return call;
}

void peer_cancel(struct peer_call *call)
{
	if (!call)
		return;
	if (call->req)
		http_cancel(call->req);
	peer_call_free(call);
}

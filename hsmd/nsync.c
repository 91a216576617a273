/* Namespace sync: the pullers that read each peer's feed and hand its records to
 * nsync_apply.c, start and stop, and the reports behind hsm peers and hsm conflicts. */
#include "hsmd/nsync.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <json-c/json.h>

#include "hsmd/catalog.h"
#include "hsmd/nsfeed.h"
#include "hsmd/nsrec.h"
#include "hsmd/nsync_int.h"
#include "hsmd/scan.h"
#include "hsmd/worker.h"
#include "lib/config.h"
#include "lib/log.h"
#include "lib/pathsafe.h"
#include "lib/http.h"
#include "lib/https_server.h"

/* ---- pulling ----------------------------------------------------------------------- */

static void ns_pull(struct ns_puller *p);

static size_t ns_ckey(const char *peer, const char *volume, char *key)
{
	size_t pl = strlen(peer), vl = strlen(volume);

	key[0] = 'c';
	memcpy(key + 1, peer, pl);
	key[1 + pl] = '\0';
	memcpy(key + 2 + pl, volume, vl);
	return 2 + pl + vl;
}

static void ns_save_cursor(struct ns_puller *p)
{
	char key[80], val[64], err[256];
	struct cat_kv_op op;
	int n = snprintf(val, sizeof(val), "%s %" PRIu64, p->feed[0] ? p->feed : "-", p->cursor);

	op = (struct cat_kv_op){key, ns_ckey(p->peer->name, p->v->cfg->name, key), val, (size_t)n};
	if (catalog_kv_write(p->ns->h->cat, &op, 1, err, sizeof(err)) < 0)
		log_warnx("nsync: save cursor of %s: %s", p->peer->name, err);
}

static void ns_load_cursor(struct ns_puller *p)
{
	char key[80], err[256], *val = NULL;
	size_t vlen;

	if (catalog_kv_get(p->ns->h->cat, key, ns_ckey(p->peer->name, p->v->cfg->name, key), &val,
			   &vlen, err, sizeof(err)) != 0)
		return;
	if (sscanf(val, "%32s %" SCNu64, p->feed, &p->cursor) != 2 || !strcmp(p->feed, "-")) {
		p->feed[0] = '\0';
		p->cursor = 0;
	}
	free(val);
}

static void ns_puller_down(struct ns_puller *p, const char *why)
{
	if (p->up || !p->last_error[0] || strcmp(p->last_error, why))
		log_warnx("nsync: peer %s (volume %s): %s; retrying", p->peer->name,
			  p->v->cfg->name, why);
	p->up = 0;
	snprintf(p->last_error, sizeof(p->last_error), "%s", why);
	p->backoff = p->backoff ? p->backoff * 2 : 0.5;
	/* short: a healed partition should not wait long for the next try */
	if (p->backoff > 3)
		p->backoff = 3;
	ev_timer_set(&p->timer, p->backoff, 0);
	ev_timer_start(p->ns->h->loop, &p->timer);
}

/* Applies an answer; returns the number of records, -1 on a malformed answer. */
static int ns_apply_answer(struct ns_puller *p, char *body, size_t len, int *more, int *busy)
{
	struct ns_feed_head head;
	char err[256];
	const char *line;
	size_t off, line_len;
	uint64_t seq;
	int n = 0, r;

	*busy = 0;
	r = nsfeed_parse_head(body, len, &head, err, sizeof(err));
	if (r < 0 || strcmp(head.site, p->peer->name) || strcmp(head.volume, p->v->cfg->name)) {
		log_warnx("nsync: peer %s: feed of %s refused: %s", p->peer->name, p->v->cfg->name,
			  r < 0 ? err : "it names another site or volume");
		return -1;
	}
	*more = head.more;
	if (strcmp(head.feed, p->feed)) {
		if (p->feed[0])
			log_info("nsync: peer %s has a new feed; applying its whole namespace",
				 p->peer->name);
		snprintf(p->feed, sizeof(p->feed), "%s", head.feed);
		p->cursor = 0;
	}
	off = (size_t)r;
	while ((r = nsfeed_next(body, len, &off, &seq, &line, &line_len)) == 1) {
		struct ns_rec rec;
		int rc;

		if (seq <= p->cursor) {
			log_warnx("nsync: peer %s: bad sequence in its feed", p->peer->name);
			return -1;
		}
		if (nsrec_parse(line, line_len, &rec, err, sizeof(err)) < 0) {
			log_warnx("nsync: peer %s: record %" PRIu64 " refused: %s", p->peer->name,
				  seq, err);
			p->cursor = seq;
			continue;
		}
		rc = ns_apply(p->ns, p->v, &rec);
		if (rc < 0)
			log_warnx("nsync: peer %s: record %" PRIu64 " (%s) not applied",
				  p->peer->name, seq, rec.path);
		nsrec_clear(&rec);
		if (rc == 1) {
			*busy = 1;
			break;
		}
		p->cursor = seq;
		p->applied++;
		n++;
	}
	if (r < 0) {
		log_warnx("nsync: peer %s: bad sequence in its feed", p->peer->name);
		return -1;
	}
	if (!*busy && !*more && head.next > p->cursor)
		p->cursor = head.next;
	return n;
}

static void ns_pull_done(void *arg, struct http_resp *resp)
{
	struct ns_puller *p = arg;
	char why[300];
	int more = 0, busy = 0, n;

	p->req = NULL;
	if (p->ns->stopping)
		return;
	if (resp->status != 200) {
		if (resp->status)
			snprintf(why, sizeof(why), "HTTP %ld: %.200s", resp->status, resp->body);
		else
			snprintf(why, sizeof(why), "%s",
				 resp->error[0] ? resp->error : "no answer");
		why[strcspn(why, "\n")] = '\0';
		ns_puller_down(p, why);
		return;
	}
	n = ns_apply_answer(p, resp->body, resp->body_len, &more, &busy);
	log_debug("nsync: peer %s (volume %s): %d records applied, cursor %" PRIu64 "%s%s",
		  p->peer->name, p->v->cfg->name, n, p->cursor, more ? ", more" : "",
		  busy ? ", a file is busy" : "");
	ns_rmdir_retry(p->ns);
	ns_save_cursor(p);
	if (n < 0) {
		ns_puller_down(p, "malformed feed answer");
		return;
	}
	if (!p->up)
		log_info("nsync: peer %s (volume %s) reachable", p->peer->name, p->v->cfg->name);
	p->up = 1;
	p->backoff = 0;
	p->last_ok = time(NULL);
	p->last_error[0] = '\0';
	/* at once when there is more; a busy file is retried a moment later */
	ev_timer_set(&p->timer, busy ? 1.0 : 0.0, 0);
	ev_timer_start(p->ns->h->loop, &p->timer);
}

static void ns_pull(struct ns_puller *p)
{
	struct nsync *ns = p->ns;
	const struct hsm_config *cfg = ns->h->cfg;
	char url[1024], err[256];
	struct http_req rq;

	snprintf(url, sizeof(url), "%s/v1/changes/%s?since=%" PRIu64 "&wait=%d&max=%d%s%s",
		 p->peer->url, p->v->cfg->name, p->cursor, NS_PULL_WAIT, NS_BATCH_DEFAULT,
		 p->feed[0] ? "&feed=" : "", p->feed);
	memset(&rq, 0, sizeof(rq));
	rq.method = "GET";
	rq.url = url;
	rq.ca_file = cfg->tls_ca;
	rq.cert_file = cfg->tls_cert;
	rq.key_file = cfg->tls_key;
	rq.connect_timeout = cfg->peer_timeout;
	rq.total_timeout = NS_PULL_WAIT + 5;
	rq.max_body = NS_BODY_MAX;
	p->polls++;
	p->req = http_start(ns->hc, &rq, ns_pull_done, p, err, sizeof(err));
	if (!p->req)
		ns_puller_down(p, err);
}

static void ns_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct ns_puller *p = t->data;

	(void)revents;
	ev_timer_stop(loop, t);
	if (!p->ns->stopping && !p->req)
		ns_pull(p);
}

/* ---- lifecycle --------------------------------------------------------------------- */

static int ns_load_head(struct nsync *ns, char *err, size_t errlen)
{
	char *val = NULL;
	size_t vlen;
	int r;

	r = catalog_kv_get(ns->h->cat, NS_SEQ_KEY, strlen(NS_SEQ_KEY), &val, &vlen, err, errlen);
	if (r < 0)
		return -1;
	ns->head = r == 0 ? strtoull(val, NULL, 10) : 0;
	free(val);
	val = NULL;
	r = catalog_kv_get(ns->h->cat, NS_FEED_KEY, strlen(NS_FEED_KEY), &val, &vlen, err, errlen);
	if (r < 0)
		return -1;
	if (r == 0 && vlen == 32) {
		memcpy(ns->feed, val, 33);
	} else {
		struct hsm_fid id;
		struct cat_kv_op op;

		/* a new feed: peers holding a cursor into an old one start over */
		if (hsm_fid_generate(&id) < 0) {
			snprintf(err, errlen, "cannot make a feed id: %s", strerror(errno));
			free(val);
			return -1;
		}
		hsm_fid_hex(&id, ns->feed);
		op = (struct cat_kv_op){NS_FEED_KEY, strlen(NS_FEED_KEY), ns->feed, 32};
		if (catalog_kv_write(ns->h->cat, &op, 1, err, errlen) < 0) {
			free(val);
			return -1;
		}
	}
	free(val);
	return 0;
}

struct nsync *nsync_new(struct hsmd *h, char *err, size_t errlen)
{
	struct nsync *ns = calloc(1, sizeof(*ns));

	if (!ns) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	ns->h = h;
	if (ns_load_head(ns, err, errlen) < 0 || ns_names_build(ns, err, errlen) < 0) {
		free(ns);
		return NULL;
	}
	if (h->cfg->npeers) {
		ns->hc = http_client_new(h->loop, 4, err, errlen);
		if (!ns->hc) {
			free(ns);
			return NULL;
		}
	}
	for (size_t i = 0; i < h->nvols; i++) {
		struct hsmd_vol *v = &h->vols[i];

		for (size_t j = 0; j < v->cfg->npeers; j++) {
			struct ns_puller *p = calloc(1, sizeof(*p));

			if (!p) {
				snprintf(err, errlen, "out of memory");
				nsync_free(ns);
				return NULL;
			}
			p->ns = ns;
			p->peer = &h->cfg->peers[v->cfg->peers[j]];
			p->v = v;
			ev_timer_init(&p->timer, ns_timer_cb, 0, 0);
			p->timer.data = p;
			ns_load_cursor(p);
			p->next = ns->pullers;
			ns->pullers = p;
		}
	}
	return ns;
}

void nsync_start(struct nsync *ns)
{
	for (struct ns_puller *p = ns->pullers; p; p = p->next)
		ns_pull(p);
}

void nsync_free(struct nsync *ns)
{
	if (!ns)
		return;
	ns->stopping = 1;
	while (ns->waiters) {
		struct ns_waiter *w = ns->waiters;

		ns->waiters = w->next;
		ev_timer_stop(ns->h->loop, &w->timer);
		https_respond(w->req, 503, "text/plain", NULL, strdup("shutting down\n"), 14);
		free(w);
	}
	/* cancels every pull in flight without calling back */
	if (ns->hc)
		http_client_free(ns->hc);
	while (ns->pullers) {
		struct ns_puller *p = ns->pullers;

		ns->pullers = p->next;
		ev_timer_stop(ns->h->loop, &p->timer);
		free(p);
	}
	for (size_t i = 0; i < ns->nrmdirs; i++)
		free(ns->rmdirs[i]);
	free(ns);
}

/* ---- reports ----------------------------------------------------------------------- */

static int ns_conflict_one(const char *k, size_t klen, const char *v, size_t vlen, void *arg)
{
	struct json_object *arr = arg, *o;
	const char *p, *sp, *base;
	char vol[HSM_SITE_MAX + 1], err[128];
	struct ns_rec r;

	(void)k;
	if (klen != 17)
		return 0;
	p = memchr(v, ' ', vlen);
	if (!p)
		return 0;
	sp = memchr(p + 1, ' ', vlen - (size_t)(p + 1 - v));
	if (!sp || sp - p - 1 > HSM_SITE_MAX)
		return 0;
	memcpy(vol, p + 1, (size_t)(sp - p - 1));
	vol[sp - p - 1] = '\0';
	if (nsrec_parse(sp + 1, vlen - (size_t)(sp + 1 - v), &r, err, sizeof(err)) < 0)
		return 0;
	base = strrchr(r.path, '/');
	base = base ? base + 1 : r.path;
	if (!r.deleted && r.kind == NS_FILE && strstr(base, ".conflict-")) {
		o = json_object_new_object();
		json_object_object_add(o, "volume", json_object_new_string(vol));
		json_object_object_add(o, "path", json_object_new_string(r.path));
		json_object_object_add(o, "site", json_object_new_string(r.owner));
		json_object_object_add(o, "mtime", json_object_new_int64(r.mtime_sec));
		json_object_object_add(o, "size", json_object_new_int64((int64_t)r.size));
		json_object_array_add(arr, o);
	}
	nsrec_clear(&r);
	return 0;
}

struct json_object *nsync_conflicts(struct nsync *ns)
{
	struct json_object *arr = json_object_new_array();
	char err[256];

	if (catalog_kv_scan(ns->h->cat, "s", 1, NULL, 0, ns_conflict_one, arr, err, sizeof(err)) <
	    0)
		log_warnx("nsync: conflicts: %s", err);
	return arr;
}

uint64_t nsync_applied(const struct nsync *ns)
{
	uint64_t n = 0;

	for (const struct ns_puller *p = ns ? ns->pullers : NULL; p; p = p->next)
		n += p->applied;
	return n;
}

struct json_object *nsync_status(struct nsync *ns)
{
	struct json_object *arr = json_object_new_array();

	for (struct ns_puller *p = ns->pullers; p; p = p->next) {
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "peer", json_object_new_string(p->peer->name));
		json_object_object_add(o, "volume", json_object_new_string(p->v->cfg->name));
		json_object_object_add(o, "up", json_object_new_boolean(p->up));
		json_object_object_add(o, "cursor", json_object_new_int64((int64_t)p->cursor));
		json_object_object_add(o, "applied", json_object_new_int64((int64_t)p->applied));
		json_object_object_add(o, "last_ok", json_object_new_int64(p->last_ok));
		json_object_object_add(o, "last_error", json_object_new_string(p->last_error));
		json_object_array_add(arr, o);
	}
	return arr;
}

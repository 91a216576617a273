/* Namespace sync: the feed this site publishes and the pullers that apply the peers'
 * feeds. Record format and merge rules: hsmd/nsrec.h; wire format: docs/protocol.md.
 *
 * Applying a remote record changes the volume through the admin mount (never watched),
 * from the worker itself (its own change events are ignored), and publishes the
 * record in our own feed unchanged: a site that learns of a change from B passes it
 * on to C, and equal version vectors stop the echo. */
#include "hsmd/nsync.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "hsmd/catalog.h"
#include "hsmd/nsrec.h"
#include "hsmd/scan.h"
#include "hsmd/worker.h"
#include "lib/config.h"
#include "lib/hash.h"
#include "lib/http.h"
#include "lib/https_server.h"
#include "lib/log.h"
#include "lib/pathsafe.h"

#define NS_WAIT_MAX	 60   /* seconds a long-poll may be held */
#define NS_PULL_WAIT	 10   /* what our pullers ask for: also how long a dead link can hide */
#define NS_BATCH_DEFAULT 1000 /* records per answer */
#define NS_BATCH_MAX	 10000
#define NS_BODY_MAX	 (32u << 20) /* answers we accept */
#define NS_SEQ_KEY	 "mnsync_seq"
#define NS_FEED_KEY	 "mnsync_feed"
#define NS_RMDIR_MAX	 1024
#define NS_WRITES_MAX	 4096 /* files written and not yet closed that we remember */

struct ns_waiter {
	struct nsync *ns;
	struct https_req *req;
	char volume[HSM_SITE_MAX + 1];
	uint64_t since;
	unsigned max;
	ev_timer timer;
	struct ns_waiter *next;
};

struct ns_puller {
	struct nsync *ns;
	const struct hsm_peer_cfg *peer;
	struct hsmd_vol *v;
	char feed[33];	 /* the peer's feed identity the cursor belongs to */
	uint64_t cursor; /* last of its records applied */
	struct http_request *req;
	ev_timer timer;
	double backoff;
	int up;
	uint64_t applied, polls;
	time_t last_ok;
	char last_error[256];
	struct ns_puller *next;
};

struct nsync {
	struct hsmd *h;
	uint64_t head;
	char feed[33];
	struct http_client *hc;
	struct ns_puller *pullers;
	struct ns_waiter *waiters;
	char *rmdirs[NS_RMDIR_MAX]; /* "VOLUME\0PATH" of directories to remove once empty */
	struct hsm_fid writes[NS_WRITES_MAX]; /* see nsync_note_write */
	size_t nwrites;
	int writes_lost; /* the list overflowed: every close counts as a write */
	size_t nrmdirs;
	int stopping;
};

/* ---- keys and storage -------------------------------------------------------------- */

static void ns_skey(const struct hsm_fid *fid, char key[17])
{
	key[0] = 's';
	memcpy(key + 1, fid->b, 16);
}

static size_t ns_qkey(const char *volume, uint64_t seq, char *key)
{
	size_t vl = strlen(volume);

	key[0] = 'q';
	memcpy(key + 1, volume, vl);
	key[1 + vl] = '\0';
	for (int i = 0; i < 8; i++)
		key[2 + vl + i] = (char)(seq >> (56 - 8 * i));
	return 10 + vl;
}

static size_t ns_ckey(const char *peer, const char *volume, char *key)
{
	size_t pl = strlen(peer), vl = strlen(volume);

	key[0] = 'c';
	memcpy(key + 1, peer, pl);
	key[1 + pl] = '\0';
	memcpy(key + 2 + pl, volume, vl);
	return 2 + pl + vl;
}

/* The published record of fid: 0 found, 1 none, -1 error. vol may be NULL. */
static int ns_load(struct nsync *ns, const struct hsm_fid *fid, struct ns_rec *rec, uint64_t *seq,
		   char vol[HSM_SITE_MAX + 1])
{
	char key[17], err[256], *val = NULL, *p, *sp;
	size_t vlen;
	int r;

	ns_skey(fid, key);
	r = catalog_kv_get(ns->h->cat, key, sizeof(key), &val, &vlen, err, sizeof(err));
	if (r != 0) {
		if (r < 0)
			log_warnx("nsync: %s", err);
		return r;
	}
	p = val;
	*seq = strtoull(p, &sp, 10);
	if (*sp != ' ')
		goto bad;
	p = sp + 1;
	sp = strchr(p, ' ');
	if (!sp || sp - p > HSM_SITE_MAX)
		goto bad;
	if (vol) {
		memcpy(vol, p, (size_t)(sp - p));
		vol[sp - p] = '\0';
	}
	p = sp + 1;
	if (nsrec_parse(p, vlen - (size_t)(p - val), rec, err, sizeof(err)) < 0)
		goto bad;
	free(val);
	return 0;
bad:
	log_warnx("nsync: damaged namespace record in the catalog (%s); it is republished",
		  err[0] ? err : "bad prefix");
	free(val);
	return 1;
}

static void ns_wake(struct nsync *ns, const char *volume);

/* Makes rec the published state of its fid in volume v: a new feed entry at the head,
 * the old one removed. */
static int ns_publish(struct nsync *ns, const char *volume, const struct ns_rec *rec)
{
	static char line[NS_LINE_MAX + 64];
	char skey[17], qkey[64], oldq[64], headv[24], err[256];
	struct cat_kv_op ops[4];
	struct ns_rec old;
	uint64_t oldseq = 0;
	char oldvol[HSM_SITE_MAX + 1];
	size_t n = 0;
	int len, pre;

	if (ns_load(ns, &rec->fid, &old, &oldseq, oldvol) == 0) {
		nsrec_clear(&old);
		ops[n++] = (struct cat_kv_op){oldq, ns_qkey(oldvol, oldseq, oldq), NULL, 0};
	}
	pre = snprintf(line, sizeof(line), "%" PRIu64 " %s ", ns->head + 1, volume);
	len = nsrec_format(rec, line + pre, sizeof(line) - (size_t)pre);
	if (len < 0) {
		log_warnx("nsync: cannot publish %s: record does not encode", rec->path);
		return -1;
	}
	ns_skey(&rec->fid, skey);
	snprintf(headv, sizeof(headv), "%" PRIu64, ns->head + 1);
	ops[n++] = (struct cat_kv_op){skey, sizeof(skey), line, (size_t)(pre + len)};
	ops[n++] = (struct cat_kv_op){qkey, ns_qkey(volume, ns->head + 1, qkey), rec->fid.b, 16};
	ops[n++] = (struct cat_kv_op){NS_SEQ_KEY, strlen(NS_SEQ_KEY), headv, strlen(headv)};
	if (catalog_kv_write(ns->h->cat, ops, n, err, sizeof(err)) < 0) {
		log_warnx("nsync: publish %s: %s", rec->path, err);
		return -1;
	}
	ns->head++;
	ns_wake(ns, volume);
	return 0;
}

/* ---- local changes ----------------------------------------------------------------- */

static int ns_write_state(int fd, const struct hsm_state *st, int flags)
{
	uint8_t buf[HSM_XATTR_MAX];
	int len = hsmx_encode(st, buf, sizeof(buf));

	if (len < 0) {
		errno = EINVAL;
		return -1;
	}
	return fsetxattr(fd, HSM_XATTR_NAME, buf, (size_t)len, flags);
}

static int ns_read_state(int fd, struct hsm_state *st)
{
	uint8_t buf[HSM_XATTR_MAX];
	char err[128];
	ssize_t n = fgetxattr(fd, HSM_XATTR_NAME, buf, sizeof(buf));

	if (n < 0)
		return -1;
	if (hsmx_decode(buf, (size_t)n, st, err, sizeof(err)) < 0) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

static const uint8_t ns_zero_id[32];

static void ns_from_local(struct ns_rec *n, const char *rel, const struct stat *sb,
			  const struct hsm_state *st)
{
	n->fid = st->fid;
	n->kind = NS_FILE;
	n->path = (char *)rel; /* borrowed: never cleared */
	n->mode = sb->st_mode & 07777;
	n->uid = sb->st_uid;
	n->gid = sb->st_gid;
	n->size = (uint64_t)sb->st_size;
	n->mtime_sec = sb->st_mtim.tv_sec;
	n->mtime_nsec = (uint32_t)sb->st_mtim.tv_nsec;
	snprintf(n->owner, sizeof(n->owner), "%s", st->owner);
	n->version = st->version;
	if (st->archived_version && memcmp(st->manifest_id, ns_zero_id, 32) != 0) {
		n->archived_version = st->archived_version;
		n->archived_size = st->archived_size;
		n->archived_mtime_sec = st->archived_mtime_sec;
		n->archived_mtime_nsec = st->archived_mtime_nsec;
		memcpy(n->manifest_id, st->manifest_id, 32);
	}
}

/* A new content version made here: the file's state record says so before the
 * record goes out, because peers ask for data by (owner, version). */
static int ns_new_content(struct hsmd *h, struct hsmd_vol *v, const char *rel, struct ns_rec *n,
			  uint64_t counter)
{
	struct hsm_state st;
	int fd = path_open_beneath(v->root_fd, rel, O_RDONLY | O_NONBLOCK | O_CLOEXEC, 0);

	if (fd < 0) {
		log_warn("nsync: %s/%s: open to record a new version", v->cfg->path, rel);
		return -1;
	}
	if (ns_read_state(fd, &st) < 0 || memcmp(st.fid.b, n->fid.b, 16) != 0) {
		log_warnx("nsync: %s/%s: state record changed under us", v->cfg->path, rel);
		close(fd);
		return -1;
	}
	snprintf(st.owner, sizeof(st.owner), "%s", h->cfg->site);
	st.version = counter;
	if (st.state == HSM_STATE_ARCHIVED)
		st.state = HSM_STATE_RESIDENT;
	if (ns_write_state(fd, &st, XATTR_REPLACE) < 0) {
		log_warn("nsync: %s/%s: record a new version", v->cfg->path, rel);
		close(fd);
		return -1;
	}
	close(fd);
	snprintf(n->owner, sizeof(n->owner), "%s", h->cfg->site);
	n->version = counter;
	return 0;
}

void nsync_note(struct hsmd *h, struct hsmd_vol *v, const char *rel, const struct stat *sb,
		struct hsm_state *st)
{
	struct nsync *ns = h->ns;
	const char *self = h->cfg->site;
	struct ns_rec p, n;
	uint64_t seq;
	char pvol[HSM_SITE_MAX + 1];
	int have, content, meta, arch;

	if (!ns || ns->stopping || h->ns_quiet)
		return;
	memset(&n, 0, sizeof(n));
	ns_from_local(&n, rel, sb, st);
	have = ns_load(ns, &st->fid, &p, &seq, pvol) == 0;
	if (!have) {
		/* First sight: the file's own vector (a copy hsmd made keeps its origin's). */
		n.nvv = st->nvv;
		memcpy(n.vv, st->vv, sizeof(n.vv));
		if (nsrec_vv_get(&n, n.owner) < n.version)
			nsrec_vv_set(&n, n.owner, n.version);
		ns_publish(ns, v->cfg->name, &n);
		return;
	}
	n.nvv = p.nvv;
	memcpy(n.vv, p.vv, sizeof(n.vv));
	if (p.deleted || strcmp(pvol, v->cfg->name) != 0) {
		/* A fid back from the dead (restored with its xattr) or moved between volumes:
		 * a change of ours that every site must see. */
		nsrec_vv_set(&n, self, nsrec_vv_get(&p, self) + 1);
		ns_publish(ns, v->cfg->name, &n);
		nsrec_clear(&p);
		return;
	}
	content =
	    !nsrec_same_content(&n, &p) ||
	    (st->state != HSM_STATE_STUB &&
	     (n.size != p.size ||
	      (!h->ns_attr_only && (n.mtime_sec != p.mtime_sec || n.mtime_nsec != p.mtime_nsec))));
	meta = strcmp(n.path, p.path) || n.mode != p.mode || n.uid != p.uid || n.gid != p.gid ||
	       n.mtime_sec != p.mtime_sec || n.mtime_nsec != p.mtime_nsec || n.size != p.size;
	arch = n.archived_version != p.archived_version ||
	       memcmp(n.manifest_id, p.manifest_id, 32) != 0;
	if (content) {
		uint64_t mine = nsrec_vv_get(&p, self);

		if (!strcmp(st->owner, self) && st->version > mine) {
			/* notify marked it dirty with a fresh counter already */
			nsrec_vv_set(&n, self, st->version);
		} else if (ns_new_content(h, v, rel, &n, mine + 1) == 0) {
			nsrec_vv_set(&n, self, mine + 1);
			snprintf(st->owner, sizeof(st->owner), "%s", self);
			st->version = mine + 1;
			if (st->state == HSM_STATE_ARCHIVED)
				st->state = HSM_STATE_RESIDENT;
		} else {
			nsrec_clear(&p);
			return;
		}
	} else if (meta) {
		nsrec_vv_set(&n, self, nsrec_vv_get(&p, self) + 1);
	} else if (!arch) {
		nsrec_clear(&p);
		return;
	}
	ns_publish(ns, v->cfg->name, &n);
	nsrec_clear(&p);
}

void nsync_note_write(struct hsmd *h, const struct hsm_fid *fid)
{
	struct nsync *ns = h->ns;

	if (!ns)
		return;
	for (size_t i = 0; i < ns->nwrites; i++)
		if (!memcmp(ns->writes[i].b, fid->b, 16))
			return;
	if (ns->nwrites == NS_WRITES_MAX) {
		ns->writes_lost = 1;
		return;
	}
	ns->writes[ns->nwrites++] = *fid;
}

int nsync_take_write(struct hsmd *h, const struct hsm_fid *fid)
{
	struct nsync *ns = h->ns;

	if (!ns || ns->writes_lost)
		return 1;
	for (size_t i = 0; i < ns->nwrites; i++) {
		if (!memcmp(ns->writes[i].b, fid->b, 16)) {
			ns->writes[i] = ns->writes[--ns->nwrites];
			return 1;
		}
	}
	return 0;
}

void nsync_note_gone(struct hsmd *h, struct hsmd_vol *v, const struct hsm_fid *fid)
{
	struct nsync *ns = h->ns;
	struct ns_rec p;
	uint64_t seq;

	if (!ns || ns->stopping || ns_load(ns, fid, &p, &seq, NULL) != 0)
		return;
	if (!p.deleted) {
		p.deleted = 1;
		nsrec_vv_set(&p, h->cfg->site, nsrec_vv_get(&p, h->cfg->site) + 1);
		ns_publish(ns, v->cfg->name, &p);
	}
	nsrec_clear(&p);
}

/* Directories and symlinks have no state record: their fid comes from their path. */
static void ns_note_other(struct hsmd *h, struct hsmd_vol *v, const char *rel, char kind,
			  const struct stat *sb, const char *target)
{
	struct nsync *ns = h->ns;
	char key[HSM_PATH_MAX + 8];
	struct ns_rec p, n;
	uint64_t seq;
	int have;

	if (!ns || ns->stopping || !*rel)
		return;
	memset(&n, 0, sizeof(n));
	snprintf(key, sizeof(key), "%c:%s", kind, rel);
	nsrec_dir_fid(v->cfg->name, key, &n.fid);
	have = ns_load(ns, &n.fid, &p, &seq, NULL) == 0;
	n.kind = kind;
	n.path = (char *)rel;
	n.target = (char *)target;
	snprintf(n.owner, sizeof(n.owner), "%s", h->cfg->site);
	if (have) {
		n.nvv = p.nvv;
		memcpy(n.vv, p.vv, sizeof(n.vv));
	}
	if (!sb) {
		if (!have || p.deleted)
			goto out;
		n.deleted = 1;
		n.mode = p.mode;
		n.uid = p.uid;
		n.gid = p.gid;
		n.target = NULL;
		snprintf(n.owner, sizeof(n.owner), "%s", p.owner);
		n.version = p.version;
	} else {
		n.mode = sb->st_mode & 07777;
		n.uid = sb->st_uid;
		n.gid = sb->st_gid;
		n.mtime_sec = sb->st_mtim.tv_sec;
		n.mtime_nsec = (uint32_t)sb->st_mtim.tv_nsec;
		if (have && !p.deleted && n.mode == p.mode && n.uid == p.uid && n.gid == p.gid &&
		    (kind != NS_LINK || (p.target && target && !strcmp(p.target, target))))
			goto out;
	}
	n.version = nsrec_vv_get(&n, h->cfg->site) + 1;
	nsrec_vv_set(&n, h->cfg->site, n.version);
	if (sb)
		snprintf(n.owner, sizeof(n.owner), "%s", h->cfg->site);
	ns_publish(ns, v->cfg->name, &n);
out:
	if (have)
		nsrec_clear(&p);
}

void nsync_note_dir(struct hsmd *h, struct hsmd_vol *v, const char *rel, const struct stat *sb)
{
	ns_note_other(h, v, rel, NS_DIR, sb, NULL);
}

void nsync_note_link(struct hsmd *h, struct hsmd_vol *v, const char *rel, const struct stat *sb,
		     const char *target)
{
	ns_note_other(h, v, rel, NS_LINK, sb, target);
}

/* ---- the feed ---------------------------------------------------------------------- */

struct ns_feed_ctx {
	struct nsync *ns;
	char *buf;
	size_t len, cap;
	unsigned n, max;
	uint64_t last;
	int more;
};

static int ns_feed_one(const char *k, size_t klen, const char *v, size_t vlen, void *arg)
{
	struct ns_feed_ctx *c = arg;
	char skey[17], err[256], *val = NULL, *sp;
	size_t len;
	uint64_t seq = 0;

	if (vlen != 16 || klen < 9)
		return 0;
	for (int i = 0; i < 8; i++)
		seq = seq << 8 | (uint8_t)k[klen - 8 + i];
	if (c->n >= c->max || c->len > (NS_BODY_MAX / 2)) {
		c->more = 1;
		return 1;
	}
	skey[0] = 's';
	memcpy(skey + 1, v, 16);
	if (catalog_kv_get(c->ns->h->cat, skey, sizeof(skey), &val, &len, err, sizeof(err)) != 0)
		return 0;
	/* "SEQ VOLUME LINE" -> "SEQ LINE" */
	sp = strchr(val, ' ');
	sp = sp ? strchr(sp + 1, ' ') : NULL;
	if (sp) {
		size_t need = 24 + strlen(sp);

		if (c->len + need + 1 > c->cap) {
			size_t ncap = (c->cap + need) * 2;
			char *nb = realloc(c->buf, ncap);

			if (!nb) {
				free(val);
				return -1;
			}
			c->buf = nb;
			c->cap = ncap;
		}
		c->len +=
		    (size_t)snprintf(c->buf + c->len, c->cap - c->len, "%" PRIu64 "%s\n", seq, sp);
		c->n++;
	}
	c->last = seq;
	free(val);
	return 0;
}

/* Builds the answer for records after since; returns the number of records. */
static unsigned ns_feed_answer(struct nsync *ns, struct https_req *req, const char *volume,
			       uint64_t since, unsigned max, int send_empty)
{
	struct ns_feed_ctx c = {ns, NULL, 0, 0, 0, max, since, 0};
	char prefix[64], start[64], hdr[200], err[256];
	size_t plen = ns_qkey(volume, 0, prefix) - 8;
	size_t slen = ns_qkey(volume, since + 1, start);
	int r, hl;

	r = catalog_kv_scan(ns->h->cat, prefix, plen, start, slen, ns_feed_one, &c, err,
			    sizeof(err));
	if (r < 0) {
		free(c.buf);
		https_respond(req, 500, "text/plain", NULL, strdup("catalog error\n"), 14);
		log_warnx("nsync: feed of %s: %s", volume, err);
		return 1;
	}
	if (!c.n && !send_empty) {
		free(c.buf);
		return 0;
	}
	hl = snprintf(hdr, sizeof(hdr), "hsm-changes 1 %s %s %s %" PRIu64 " %d\n", ns->feed,
		      ns->h->cfg->site, volume, c.last, c.more);
	{
		char *body = malloc((size_t)hl + c.len + 1);

		if (!body) {
			free(c.buf);
			https_respond(req, 503, "text/plain", NULL, NULL, 0);
			return 1;
		}
		memcpy(body, hdr, (size_t)hl);
		if (c.len)
			memcpy(body + hl, c.buf, c.len);
		body[(size_t)hl + c.len] = '\0';
		https_respond(req, 200, "text/plain", NULL, body, (size_t)hl + c.len);
	}
	free(c.buf);
	return c.n ? c.n : 1;
}

static void ns_waiter_unlink(struct nsync *ns, struct ns_waiter *w)
{
	for (struct ns_waiter **pp = &ns->waiters; *pp; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			return;
		}
	}
}

static void ns_waiter_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct ns_waiter *w = t->data;

	(void)revents;
	ev_timer_stop(loop, t);
	ns_waiter_unlink(w->ns, w);
	ns_feed_answer(w->ns, w->req, w->volume, w->since, w->max, 1);
	free(w);
}

static void ns_wake(struct nsync *ns, const char *volume)
{
	struct ns_waiter **pp = &ns->waiters;

	while (*pp) {
		struct ns_waiter *w = *pp;

		if (strcmp(w->volume, volume) != 0) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		ev_timer_stop(ns->h->loop, &w->timer);
		ns_feed_answer(ns, w->req, w->volume, w->since, w->max, 1);
		free(w);
	}
}

static int ns_query_u64(struct https_req *req, const char *key, uint64_t def, uint64_t max,
			uint64_t *out)
{
	char buf[32];
	char *end;
	int r = https_query_get(req->query, key, buf, sizeof(buf));

	if (r == 1) {
		*out = def;
		return 0;
	}
	if (r < 0 || !buf[0] || strspn(buf, "0123456789") != strlen(buf))
		return -1;
	errno = 0;
	*out = strtoull(buf, &end, 10);
	return errno || *out > max ? -1 : 0;
}

void nsync_serve_changes(struct nsync *ns, struct https_req *req, const char *peer,
			 const char *volume)
{
	uint64_t since, wait, max;
	char feed[40];
	struct ns_waiter *w;

	(void)peer;
	if (ns_query_u64(req, "since", 0, UINT64_MAX - 1, &since) < 0 ||
	    ns_query_u64(req, "wait", 0, NS_WAIT_MAX, &wait) < 0 ||
	    ns_query_u64(req, "max", NS_BATCH_DEFAULT, NS_BATCH_MAX, &max) < 0 || max == 0) {
		https_respond(req, 400, "text/plain", NULL,
			      strdup("bad since, wait or max: expected numbers (wait <= 60, "
				     "1 <= max <= 10000)\n"),
			      83);
		return;
	}
	/* A cursor into another feed (ours was rebuilt) means nothing: start over. */
	if (https_query_get(req->query, "feed", feed, sizeof(feed)) == 0 && strcmp(feed, ns->feed))
		since = 0;
	if (ns_feed_answer(ns, req, volume, since, (unsigned)max, wait == 0 || ns->stopping))
		return;
	w = calloc(1, sizeof(*w));
	if (!w) {
		ns_feed_answer(ns, req, volume, since, (unsigned)max, 1);
		return;
	}
	w->ns = ns;
	w->req = req;
	snprintf(w->volume, sizeof(w->volume), "%s", volume);
	w->since = since;
	w->max = (unsigned)max;
	ev_timer_init(&w->timer, ns_waiter_timeout, (double)wait, 0);
	w->timer.data = w;
	ev_timer_start(ns->h->loop, &w->timer);
	w->next = ns->waiters;
	ns->waiters = w;
}

/* ---- applying remote records ------------------------------------------------------- */

/* The directory that will hold rel (created with its parents when create), and the last
 * component. An fd, or -1 with errno. */
static int ns_parent(struct hsmd_vol *v, const char *rel, int create, const char **name)
{
	char buf[HSM_PATH_MAX + 1], *slash;
	int fd;

	snprintf(buf, sizeof(buf), "%s", rel);
	slash = strrchr(buf, '/');
	*name = slash ? rel + (slash - buf) + 1 : rel;
	if (!slash)
		return fcntl(v->root_fd, F_DUPFD_CLOEXEC, 0);
	*slash = '\0';
	fd = path_open_beneath(v->root_fd, buf, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (fd >= 0 || errno != ENOENT || !create)
		return fd;
	/* mkdir -p, one component at a time, each beneath the root */
	for (char *p = buf;; p++) {
		if (*p == '/' || *p == '\0') {
			char save = *p;

			*p = '\0';
			if (mkdirat(v->root_fd, buf, 0755) < 0 && errno != EEXIST) {
				int e = errno;

				*p = save;
				errno = e;
				return -1;
			}
			*p = save;
			if (!save)
				break;
		}
	}
	return path_open_beneath(v->root_fd, buf, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
}

static void ns_state_from_rec(struct hsm_state *st, const struct ns_rec *r, int state)
{
	memset(st, 0, sizeof(*st));
	st->state = (uint8_t)state;
	st->fid = r->fid;
	st->version = r->version;
	snprintf(st->owner, sizeof(st->owner), "%s", r->owner);
	if (r->archived_version) {
		st->archived_version = r->archived_version;
		st->archived_size = r->archived_size;
		memcpy(st->manifest_id, r->manifest_id, 32);
		st->archived_mtime_sec = r->archived_mtime_sec;
		st->archived_mtime_nsec = r->archived_mtime_nsec;
	}
	st->nvv = r->nvv;
	memcpy(st->vv, r->vv, sizeof(st->vv));
}

/* Notes the file now at rel in the catalog (which is where nsync_note finds it equal to
 * what was just published). */
static void ns_catalog_note(struct hsmd *h, struct hsmd_vol *v, const char *rel)
{
	struct hsm_state st;
	struct stat sb;
	int fd = path_open_beneath(v->root_fd, rel, O_RDONLY | O_NONBLOCK | O_CLOEXEC, 0);

	if (fd < 0)
		return;
	if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && ns_read_state(fd, &st) == 0)
		scan_note(h, v, rel, &sb, &st, NULL, CAT_J_CREATE);
	close(fd);
}

/* Creates the stub of r at r->path; EEXIST when the name is taken. */
static int ns_create_stub(struct hsmd *h, struct hsmd_vol *v, const struct ns_rec *r)
{
	struct timespec times[2];
	struct hsm_state st;
	const char *name;
	char proc[64];
	int dfd, fd, e;

	dfd = ns_parent(v, r->path, 1, &name);
	if (dfd < 0)
		return -1;
	fd = openat(dfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0)
		goto fail_dir;
	ns_state_from_rec(&st, r, r->size ? HSM_STATE_STUB : HSM_STATE_RESIDENT);
	times[0].tv_sec = 0;
	times[0].tv_nsec = UTIME_NOW;
	times[1].tv_sec = r->mtime_sec;
	times[1].tv_nsec = r->mtime_nsec;
	if (ftruncate(fd, (off_t)r->size) < 0 || fchown(fd, r->uid, r->gid) < 0 ||
	    fchmod(fd, r->mode) < 0 || ns_write_state(fd, &st, XATTR_CREATE) < 0 ||
	    futimens(fd, times) < 0)
		goto fail_fd;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if (linkat(AT_FDCWD, proc, dfd, name, AT_SYMLINK_FOLLOW) < 0)
		goto fail_fd;
	(void)h;
	close(fd);
	close(dfd);
	return 0;
fail_fd:
	e = errno;
	close(fd);
	errno = e;
fail_dir:
	e = errno;
	close(dfd);
	errno = e;
	return -1;
}

/* Opens the local file of fid: at path if it is there, else where the catalog has it.
 * Returns an fd (O_RDONLY) and its path in *where (malloc'd), or -1. */
static int ns_find_local(struct hsmd *h, struct hsmd_vol *v, const struct hsm_fid *fid,
			 const char *path, char **where, struct hsm_state *st)
{
	struct cat_record cr;
	char err[256];
	const char *tries[2] = {path, NULL};
	int fd;

	if (catalog_get(h->cat, fid, &cr, err, sizeof(err)) == 0) {
		if (!strcmp(cr.volume, v->cfg->name))
			tries[1] = cr.path;
	} else {
		cr.path = NULL;
	}
	for (int i = 0; i < 2; i++) {
		if (!tries[i])
			continue;
		fd = path_open_beneath(v->root_fd, tries[i], O_RDONLY | O_NONBLOCK | O_CLOEXEC, 0);
		if (fd < 0)
			continue;
		if (ns_read_state(fd, st) == 0 && !memcmp(st->fid.b, fid->b, 16)) {
			*where = strdup(tries[i]);
			free(cr.path);
			if (!*where) {
				close(fd);
				return -1;
			}
			return fd;
		}
		close(fd);
	}
	free(cr.path);
	return -1;
}

/* 1 if the local file (fd, state st) holds a change the published record l lacks:
 * notify has not reported it yet, and it must not be thrown away. */
static int ns_local_unpublished(int fd, const struct hsm_state *st, const struct ns_rec *l)
{
	struct stat sb;

	if (!l || l->deleted || fstat(fd, &sb) < 0)
		return 1;
	if (st->version != l->version || strcmp(st->owner, l->owner))
		return 1;
	if (st->state == HSM_STATE_STUB)
		return 0;
	return (uint64_t)sb.st_size != l->size || sb.st_mtim.tv_sec != l->mtime_sec ||
	       (uint32_t)sb.st_mtim.tv_nsec != l->mtime_nsec;
}

/* Turns the local resident copy into a stub of r: only while nobody has it open (the
 * write lease) and only if it holds nothing unpublished. 0, 1 busy (retry later), -1. */
static int ns_make_stub(struct hsmd *h, struct hsmd_vol *v, const char *where,
			const struct ns_rec *r, const struct ns_rec *l)
{
	struct timespec times[2] = {{0, UTIME_OMIT}, {r->mtime_sec, r->mtime_nsec}};
	struct hsm_state st, cur;
	int fd, rc = -1;

	fd = path_open_beneath(v->root_fd, where, O_RDWR | O_NONBLOCK | O_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (fcntl(fd, F_SETLEASE, F_WRLCK) < 0) {
		rc = errno == EAGAIN || errno == EBUSY ? 1 : -1;
		close(fd);
		return rc;
	}
	if (ns_read_state(fd, &cur) < 0 || memcmp(cur.fid.b, r->fid.b, 16) ||
	    (cur.state != HSM_STATE_STUB && ns_local_unpublished(fd, &cur, l))) {
		rc = 1;
		goto out;
	}
	/* Watched again before the data goes, as release does. */
	if (h->mv.unwatch && h->mv.unwatch(h->mv.unwatch_ctx, fd) < 0)
		goto out;
	ns_state_from_rec(&st, r, r->size ? HSM_STATE_STUB : HSM_STATE_RESIDENT);
	if (ns_write_state(fd, &st, XATTR_REPLACE) < 0 || ftruncate(fd, 0) < 0 ||
	    ftruncate(fd, (off_t)r->size) < 0 || futimens(fd, times) < 0)
		goto out;
	rc = 0;
out:
	if (rc < 0)
		log_warn("nsync: %s/%s: cannot make it a stub of the new version", v->cfg->path,
			 where);
	fcntl(fd, F_SETLEASE, F_UNLCK);
	close(fd);
	return rc;
}

static int ns_rename(struct hsmd_vol *v, const char *from, const char *to)
{
	const char *fname, *tname;
	int fdir, tdir, r, e;

	fdir = ns_parent(v, from, 0, &fname);
	if (fdir < 0)
		return -1;
	tdir = ns_parent(v, to, 1, &tname);
	if (tdir < 0) {
		e = errno;
		close(fdir);
		errno = e;
		return -1;
	}
	r = renameat2(fdir, fname, tdir, tname, RENAME_NOREPLACE);
	e = errno;
	close(fdir);
	close(tdir);
	errno = e;
	return r;
}

static void ns_rmdir_later(struct nsync *ns, const char *volume, const char *path)
{
	size_t vl = strlen(volume), pl = strlen(path);
	char *e;

	if (ns->nrmdirs == NS_RMDIR_MAX)
		return;
	e = malloc(vl + pl + 2);
	if (!e)
		return;
	memcpy(e, volume, vl + 1);
	memcpy(e + vl + 1, path, pl + 1);
	ns->rmdirs[ns->nrmdirs++] = e;
}

static void ns_rmdir_retry(struct nsync *ns)
{
	size_t keep = 0;

	/* deepest first: a parent empties once its children go */
	for (size_t i = ns->nrmdirs; i-- > 0;) {
		const char *vol = ns->rmdirs[i], *path = vol + strlen(vol) + 1, *name;
		const struct hsm_volume_cfg *vc = config_volume(ns->h->cfg, vol);
		struct hsmd_vol *v = NULL;
		int dfd;

		for (size_t j = 0; vc && j < ns->h->nvols; j++)
			if (ns->h->vols[j].cfg == vc)
				v = &ns->h->vols[j];
		if (v && (dfd = ns_parent(v, path, 0, &name)) >= 0) {
			int r = unlinkat(dfd, name, AT_REMOVEDIR);

			close(dfd);
			if (r < 0 && errno == ENOTEMPTY) {
				ns->rmdirs[keep++] = ns->rmdirs[i];
				continue;
			}
		}
		free(ns->rmdirs[i]);
	}
	ns->nrmdirs = keep;
}

/* Moves whatever holds r->path aside when r wins the name, or gives r its conflict name
 * when the holder wins. 0 = r->path may be retried. */
static int ns_collision(struct nsync *ns, struct hsmd_vol *v, struct ns_rec *r)
{
	struct hsmd *h = ns->h;
	struct hsm_state st;
	struct ns_rec g;
	uint64_t seq;
	char *np;
	int fd = path_open_beneath(v->root_fd, r->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC, 0);
	int have;

	if (fd < 0 || ns_read_state(fd, &st) < 0) {
		/* Not a file of ours (a directory, a symlink, unreadable): r steps aside. */
		if (fd >= 0)
			close(fd);
		goto rename_r;
	}
	close(fd);
	have = ns_load(ns, &st.fid, &g, &seq, NULL) == 0;
	if (have && (g.deleted || !nsrec_wins(r, &g))) {
		/* the holder wins; or it is a file whose removal we have not applied */
		nsrec_clear(&g);
		goto rename_r;
	}
	if (!have)
		/* a local file not published yet: it was here first at this site; r steps
		 * aside (its own site will see the clash when ours goes out). */
		goto rename_r;
	np = nsrec_conflict_path(g.path, g.owner, g.mtime_sec);
	if (!np || ns_rename(v, r->path, np) < 0) {
		log_warn("nsync: %s/%s: cannot move the losing version aside", v->cfg->path,
			 r->path);
		free(np);
		nsrec_clear(&g);
		return -1;
	}
	log_info("nsync: %s/%s: conflict: this site's version moved to %s", v->cfg->path, r->path,
		 np);
	free(g.path);
	g.path = np;
	if (!strcmp(g.owner, h->cfg->site))
		nsrec_vv_set(&g, h->cfg->site, nsrec_vv_get(&g, h->cfg->site) + 1);
	ns_publish(ns, v->cfg->name, &g);
	ns_catalog_note(h, v, np);
	nsrec_clear(&g);
	return 0;
rename_r:
	np = nsrec_conflict_path(r->path, r->owner, r->mtime_sec);
	if (!np)
		return -1;
	log_info("nsync: %s/%s: name taken; the version from %s becomes %s", v->cfg->path, r->path,
		 r->owner, np);
	free(r->path);
	r->path = np;
	return 0;
}

static int ns_drop_stub(struct hsmd_vol *v, const char *rel, const struct hsm_fid *fid);
static int ns_conflict_copy(struct nsync *ns, struct hsmd_vol *v, const struct ns_rec *loser,
			    int loser_is_local, struct ns_rec *c);

/* m is a conflict copy made elsewhere of data this site holds (it may be the only
 * holder: the site that wrote it), in the file m was split from. That file becomes the copy
 * (renamed, re-identified) instead of a stub nobody could fill; the record of the
 * original that follows makes a stub of the winner at the original name. 0 done,
 * -1 not applicable. */
static int ns_split_own(struct nsync *ns, struct hsmd_vol *v, const struct ns_rec *m)
{
	struct hsmd *h = ns->h;
	struct hsm_state st;
	char *where = NULL;
	int fd, r;

	if (!m->has_origin || m->deleted)
		return -1;
	fd = ns_find_local(h, v, &m->origin, m->path, &where, &st);
	if (fd < 0)
		return -1;
	if (st.state == HSM_STATE_STUB || st.version != m->version || strcmp(st.owner, m->owner)) {
		close(fd);
		free(where);
		return -1;
	}
	r = ns_rename(v, where, m->path);
	if (r < 0 && errno == EEXIST && ns_drop_stub(v, m->path, &m->fid) == 0)
		r = ns_rename(v, where, m->path);
	if (r == 0) {
		st.fid = m->fid;
		st.nvv = m->nvv;
		memcpy(st.vv, m->vv, sizeof(st.vv));
		if (ns_write_state(fd, &st, XATTR_REPLACE) < 0)
			log_warn("nsync: %s/%s: re-identify the conflict copy", v->cfg->path,
				 m->path);
		log_info("nsync: %s/%s: this site's version of %s kept as the conflict copy",
			 v->cfg->path, m->path, where);
	}
	close(fd);
	free(where);
	if (r < 0)
		return -1;
	ns_publish(ns, v->cfg->name, m);
	ns_catalog_note(h, v, m->path);
	return 0;
}

/* Brings the local namespace to m (the winner of a merge, or a dominating record),
 * l being what we published for that fid before (NULL if nothing). Publishes m.
 * 0 done, 1 busy (retry later), -1 failed. */
static int ns_make_local(struct nsync *ns, struct hsmd_vol *v, struct ns_rec *m,
			 const struct ns_rec *l)
{
	struct hsmd *h = ns->h;
	struct hsm_state st;
	char *where = NULL;
	const char *name;
	int fd = -1, r, dfd;

	if (m->kind == NS_DIR || m->kind == NS_LINK) {
		dfd = ns_parent(v, m->path, !m->deleted, &name);
		if (dfd < 0) {
			if (m->deleted)
				goto publish;
			return -1;
		}
		if (m->deleted) {
			struct stat sb;

			if (fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
			    ((m->kind == NS_DIR && S_ISDIR(sb.st_mode)) ||
			     (m->kind == NS_LINK && S_ISLNK(sb.st_mode)))) {
				if (unlinkat(dfd, name, m->kind == NS_DIR ? AT_REMOVEDIR : 0) < 0 &&
				    errno == ENOTEMPTY)
					ns_rmdir_later(ns, v->cfg->name, m->path);
			}
		} else if (m->kind == NS_DIR) {
			if (mkdirat(dfd, name, m->mode) < 0 && errno != EEXIST) {
				close(dfd);
				return -1;
			}
			fchownat(dfd, name, m->uid, m->gid, AT_SYMLINK_NOFOLLOW);
			fchmodat(dfd, name, m->mode, 0);
		} else {
			char cur[HSM_PATH_MAX + 1];
			ssize_t n = readlinkat(dfd, name, cur, sizeof(cur) - 1);

			if (n >= 0)
				cur[n] = '\0';
			if (n < 0 || strcmp(cur, m->target)) {
				if (n >= 0)
					unlinkat(dfd, name, 0);
				if (symlinkat(m->target, dfd, name) < 0) {
					close(dfd);
					return -1;
				}
			}
			fchownat(dfd, name, m->uid, m->gid, AT_SYMLINK_NOFOLLOW);
		}
		close(dfd);
		goto publish;
	}

	if (l && !l->deleted)
		fd = ns_find_local(h, v, &m->fid, l->path, &where, &st);
	else
		fd = ns_find_local(h, v, &m->fid, m->path, &where, &st);
	if (m->deleted) {
		if (fd >= 0) {
			if (st.state != HSM_STATE_STUB && ns_local_unpublished(fd, &st, l)) {
				/* a write of ours the deleter never saw: it survives */
				close(fd);
				free(where);
				return 0;
			}
			close(fd);
			dfd = ns_parent(v, where, 0, &name);
			if (dfd >= 0) {
				if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
					log_warn("nsync: %s/%s: delete", v->cfg->path, where);
				close(dfd);
			}
			{
				char err[256];

				if (catalog_delete(h->cat, &m->fid, err, sizeof(err)) < 0)
					log_warnx("nsync: %s", err);
			}
			free(where);
		}
		goto publish;
	}
	if (fd < 0 && ns_split_own(ns, v, m) == 0)
		return 0;
	if (fd < 0) {
		for (int tries = 0; tries < 3; tries++) {
			r = ns_create_stub(h, v, m);
			if (r == 0 || errno != EEXIST)
				break;
			if (ns_collision(ns, v, m) < 0)
				return -1;
		}
		if (r < 0) {
			log_warn("nsync: %s/%s: cannot create the stub", v->cfg->path, m->path);
			return -1;
		}
		ns_publish(ns, v->cfg->name, m);
		ns_catalog_note(h, v, m->path);
		return 0;
	}
	/* the file is here: move it, then bring its content and attributes along */
	if (strcmp(where, m->path) != 0) {
		for (int tries = 0; tries < 3; tries++) {
			r = ns_rename(v, where, m->path);
			if (r == 0 || errno != EEXIST)
				break;
			if (ns_collision(ns, v, m) < 0)
				break;
		}
		if (r < 0) {
			log_warn("nsync: %s: rename %s to %s", v->cfg->path, where, m->path);
			close(fd);
			free(where);
			return -1;
		}
		free(where);
		where = strdup(m->path);
	}
	if (m->has_conflict && l && !l->deleted && st.state != HSM_STATE_STUB &&
	    (st.version != m->version || strcmp(st.owner, m->owner))) {
		struct hsm_fid cf;

		nsrec_conflict_fid(&m->fid, st.owner, st.version, &cf);
		if (!memcmp(cf.b, m->conflict.b, 16) && nsrec_same_content(l, m) == 0 &&
		    l->version == st.version && !strcmp(l->owner, st.owner)) {
			/* our copy is the data that lost: it becomes the conflict copy, and
			 * the winner comes as a stub */
			struct ns_rec c;

			close(fd);
			memset(&c, 0, sizeof(c));
			r = ns_conflict_copy(ns, v, l, 1, &c);
			nsrec_clear(&c);
			free(where);
			if (r < 0)
				return -1;
			return ns_make_local(ns, v, m, NULL);
		}
	}
	if (st.version != m->version || strcmp(st.owner, m->owner)) {
		/* our own descriptor would stop the write lease */
		close(fd);
		r = ns_make_stub(h, v, where, m, l);
		if (r != 0) {
			free(where);
			return r;
		}
		fd = path_open_beneath(v->root_fd, where, O_RDONLY | O_NONBLOCK | O_CLOEXEC, 0);
		if (fd < 0) {
			log_warn("nsync: %s/%s: reopen", v->cfg->path, where);
			free(where);
			return -1;
		}
	} else if (st.state == HSM_STATE_STUB && m->archived_version &&
		   st.archived_version != m->archived_version) {
		/* the owner archived it since: the store is now a source too */
		st.archived_version = m->archived_version;
		st.archived_size = m->archived_size;
		memcpy(st.manifest_id, m->manifest_id, 32);
		st.archived_mtime_sec = m->archived_mtime_sec;
		st.archived_mtime_nsec = m->archived_mtime_nsec;
		if (ns_write_state(fd, &st, XATTR_REPLACE) < 0)
			log_warn("nsync: %s/%s: record the archived copy", v->cfg->path, where);
	}
	{
		struct stat sb;

		if (fstat(fd, &sb) == 0) {
			if ((sb.st_mode & 07777) != m->mode && fchmod(fd, m->mode) < 0)
				log_warn("nsync: %s/%s: chmod", v->cfg->path, where);
			if ((sb.st_uid != m->uid || sb.st_gid != m->gid) &&
			    fchown(fd, m->uid, m->gid) < 0)
				log_warn("nsync: %s/%s: chown", v->cfg->path, where);
			if (sb.st_mtim.tv_sec != m->mtime_sec ||
			    (uint32_t)sb.st_mtim.tv_nsec != m->mtime_nsec) {
				struct timespec t[2] = {{0, UTIME_OMIT},
							{m->mtime_sec, m->mtime_nsec}};

				futimens(fd, t);
			}
		}
	}
	close(fd);
	ns_publish(ns, v->cfg->name, m);
	ns_catalog_note(h, v, where);
	free(where);
	return 0;
publish:
	ns_publish(ns, v->cfg->name, m);
	return 0;
}

/* Removes the stub of fid at rel (made before the data it stands for turned up here).
 * 0, or -1 when rel is not such a stub. */
static int ns_drop_stub(struct hsmd_vol *v, const char *rel, const struct hsm_fid *fid)
{
	struct hsm_state st;
	const char *name;
	int fd = path_open_beneath(v->root_fd, rel, O_RDONLY | O_NONBLOCK | O_CLOEXEC, 0);
	int dfd, r = -1;

	if (fd < 0)
		return -1;
	if (ns_read_state(fd, &st) == 0 && st.state == HSM_STATE_STUB &&
	    !memcmp(st.fid.b, fid->b, 16) && (dfd = ns_parent(v, rel, 0, &name)) >= 0) {
		r = unlinkat(dfd, name, 0);
		close(dfd);
	}
	close(fd);
	return r;
}

/* Both sides wrote the data: the loser becomes a file of its own, at every site the same
 * (fid, name and vector all derived from the loser's record). */
static int ns_conflict_copy(struct nsync *ns, struct hsmd_vol *v, const struct ns_rec *loser,
			    int loser_is_local, struct ns_rec *c)
{
	struct hsmd *h = ns->h;

	if (nsrec_copy(c, loser) < 0)
		return -1;
	nsrec_conflict_fid(&loser->fid, loser->owner, loser->version, &c->fid);
	c->has_origin = 1;
	c->origin = loser->fid;
	free(c->path);
	c->path = nsrec_conflict_path(loser->path, loser->owner, loser->mtime_sec);
	c->nvv = 0;
	if (!c->path || nsrec_vv_set(c, loser->owner, loser->version) < 0)
		return -1;
	log_warnx("nsync: %s/%s: concurrent writes at %s and elsewhere; %s's version is kept as "
		  "%s",
		  v->cfg->path, loser->path, loser->owner, loser->owner, c->path);
	if (loser_is_local) {
		struct hsm_state st;
		char *where = NULL;
		int fd = ns_find_local(h, v, &loser->fid, loser->path, &where, &st);

		if (fd >= 0) {
			int r = ns_rename(v, where, c->path);

			if (r < 0 && errno == EEXIST && ns_drop_stub(v, c->path, &c->fid) == 0)
				r = ns_rename(v, where, c->path);
			if (r == 0) {
				st.fid = c->fid;
				st.nvv = c->nvv;
				memcpy(st.vv, c->vv, sizeof(st.vv));
				if (ns_write_state(fd, &st, XATTR_REPLACE) < 0)
					log_warn("nsync: %s/%s: re-identify the conflict copy",
						 v->cfg->path, c->path);
			}
			close(fd);
			free(where);
			if (r < 0)
				return -1;
			ns_publish(ns, v->cfg->name, c);
			ns_catalog_note(h, v, c->path);
			return 0;
		}
		/* nothing here to move: the copy is made from its record as a stub */
	}
	return ns_make_local(ns, v, c, NULL);
}

/* Merges concurrent r (remote) and l (ours) into *m. */
static int ns_merge(struct nsync *ns, struct hsmd_vol *v, const struct ns_rec *r,
		    const struct ns_rec *l, struct ns_rec *m)
{
	const struct ns_rec *content, *meta;

	if (r->deleted || l->deleted) {
		/* a write (or any live state) beats a concurrent delete */
		if (nsrec_copy(m, r->deleted && !l->deleted ? l : r) < 0)
			return -1;
		return nsrec_vv_merge(m, r->deleted && !l->deleted ? r : l);
	}
	if (r->kind == NS_FILE && !nsrec_same_content(r, l) &&
	    !nsrec_knows(r, l->owner, l->version) && !nsrec_knows(l, r->owner, r->version)) {
		int r_wins = nsrec_wins(r, l);
		struct ns_rec c;

		memset(&c, 0, sizeof(c));
		if (ns_conflict_copy(ns, v, r_wins ? l : r, r_wins, &c) < 0) {
			nsrec_clear(&c);
			return -1;
		}
		if (nsrec_copy(m, r_wins ? r : l) < 0) {
			nsrec_clear(&c);
			return -1;
		}
		m->has_conflict = 1;
		m->conflict = c.fid;
		nsrec_clear(&c);
		return nsrec_vv_merge(m, r_wins ? l : r);
	}
	/* one side's data is newer (or both the same): that data, and the names and
	 * attributes of the other side when they differ (it renamed, the other wrote) */
	content = nsrec_knows(l, r->owner, r->version) ? l : r;
	if (nsrec_same_content(r, l))
		meta = strcmp(r->path, l->path) >= 0 ? r : l;
	else
		meta = content == r ? l : r;
	if (nsrec_copy(m, content) < 0)
		return -1;
	if (strcmp(meta->path, content->path)) {
		free(m->path);
		m->path = strdup(meta->path);
		if (!m->path)
			return -1;
	}
	m->mode = meta->mode;
	m->uid = meta->uid;
	m->gid = meta->gid;
	return nsrec_vv_merge(m, content == r ? l : r);
}

/* 0 applied or nothing to do, 1 busy (retry later), -1 failed (skipped). */
static int ns_apply(struct nsync *ns, struct hsmd_vol *v, struct ns_rec *r)
{
	struct ns_rec l, m;
	uint64_t seq;
	char lvol[HSM_SITE_MAX + 1];
	int have, cmp, rc;

	have = ns_load(ns, &r->fid, &l, &seq, lvol) == 0;
	if (have && strcmp(lvol, v->cfg->name) != 0) {
		nsrec_clear(&l);
		return -1;
	}
	cmp = have ? nsrec_vv_compare(r, &l) : 1;
	if (cmp <= 0) {
		/* nothing new, but perhaps the owner's archive of this same version */
		if (cmp == 0 && r->archived_version && r->archived_version != l.archived_version &&
		    nsrec_same_content(r, &l))
			rc = ns_make_local(ns, v, r, &l);
		else
			rc = 0;
		nsrec_clear(&l);
		return rc;
	}
	memset(&m, 0, sizeof(m));
	if (cmp == 1)
		rc = nsrec_copy(&m, r);
	else
		rc = ns_merge(ns, v, r, &l, &m);
	if (rc == 0)
		rc = ns_make_local(ns, v, &m, have ? &l : NULL);
	else
		log_warnx("nsync: %s/%s: cannot merge concurrent changes", v->cfg->path, r->path);
	nsrec_clear(&m);
	if (have)
		nsrec_clear(&l);
	return rc;
}

/* ---- pulling ----------------------------------------------------------------------- */

static void ns_pull(struct ns_puller *p);

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
	char feed[40], site[HSM_SITE_MAX + 1], vol[HSM_SITE_MAX + 1], err[256];
	char *line = body, *end = body + len, *nl;
	uint64_t next;
	int n = 0, fmt;

	*busy = 0;
	nl = memchr(line, '\n', (size_t)(end - line));
	if (!nl)
		return -1;
	*nl = '\0';
	if (sscanf(line, "hsm-changes %d %39s %32s %32s %" SCNu64 " %d", &fmt, feed, site, vol,
		   &next, more) != 6 ||
	    fmt != 1 || strcmp(site, p->peer->name) || strcmp(vol, p->v->cfg->name) ||
	    strlen(feed) != 32)
		return -1;
	if (strcmp(feed, p->feed)) {
		if (p->feed[0])
			log_info("nsync: peer %s has a new feed; applying its whole namespace",
				 p->peer->name);
		snprintf(p->feed, sizeof(p->feed), "%s", feed);
		p->cursor = 0;
	}
	for (line = nl + 1; line < end; line = nl + 1) {
		struct ns_rec r;
		uint64_t seq;
		char *sp;
		int rc;

		nl = memchr(line, '\n', (size_t)(end - line));
		if (!nl)
			break;
		*nl = '\0';
		seq = strtoull(line, &sp, 10);
		if (*sp != ' ' || seq <= p->cursor) {
			log_warnx("nsync: peer %s: bad sequence in its feed", p->peer->name);
			return -1;
		}
		if (nsrec_parse(sp + 1, (size_t)(nl - sp - 1), &r, err, sizeof(err)) < 0) {
			log_warnx("nsync: peer %s: record %" PRIu64 " refused: %s", p->peer->name,
				  seq, err);
			p->cursor = seq;
			continue;
		}
		rc = ns_apply(p->ns, p->v, &r);
		if (rc < 0)
			log_warnx("nsync: peer %s: record %" PRIu64 " (%s) not applied",
				  p->peer->name, seq, r.path);
		nsrec_clear(&r);
		if (rc == 1) {
			*busy = 1;
			break;
		}
		p->cursor = seq;
		p->applied++;
		n++;
	}
	if (!*busy && !*more && next > p->cursor)
		p->cursor = next;
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
	if (ns_load_head(ns, err, errlen) < 0) {
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

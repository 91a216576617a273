/* Namespace sync, what this site publishes: local changes become records in its feed,
 * which peers read with long-polls (docs/protocol.md). */
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

#include "hsmd/catalog.h"
#include "hsmd/nsfeed.h"
#include "hsmd/nsrec.h"
#include "hsmd/nsync_int.h"
#include "hsmd/policy_run.h"
#include "hsmd/scan.h"
#include "hsmd/worker.h"
#include "lib/config.h"
#include "lib/log.h"
#include "lib/pathsafe.h"
#include "lib/https_server.h"

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

/* The published record of fid: 0 found, 1 none, -1 error. vol may be NULL. */
int ns_load(struct nsync *ns, const struct hsm_fid *fid, struct ns_rec *rec, uint64_t *seq,
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
int ns_publish(struct nsync *ns, const char *volume, const struct ns_rec *rec)
{
	static char line[NS_LINE_MAX + 64];
	char skey[17], qkey[64], oldq[64], headv[24], err[256];
	char nkey[HSM_PATH_MAX + HSM_SITE_MAX + 8];
	struct cat_kv_op ops[5];
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
	if (rec->kind == NS_DIR || rec->kind == NS_LINK) {
		size_t nl = ns_nkey(volume, rec->path, nkey, sizeof(nkey));

		if (nl)
			ops[n++] = (struct cat_kv_op){nkey, nl, rec->deleted ? NULL : &rec->kind,
						      rec->deleted ? 0 : 1};
	}
	if (catalog_kv_write(ns->h->cat, ops, n, err, sizeof(err)) < 0) {
		log_warnx("nsync: publish %s: %s", rec->path, err);
		return -1;
	}
	ns->head++;
	ns_wake(ns, volume);
	return 0;
}

/* ---- local changes ----------------------------------------------------------------- */

int ns_write_state(int fd, const struct hsm_state *st, int flags)
{
	uint8_t buf[HSM_XATTR_MAX];
	int len = hsmx_encode(st, buf, sizeof(buf));

	if (len < 0) {
		errno = EINVAL;
		return -1;
	}
	return fsetxattr(fd, HSM_XATTR_NAME, buf, (size_t)len, flags);
}

int ns_read_state(int fd, struct hsm_state *st)
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
	{
		char why[256];

		if (policy_engine_excluded(h, v, rel, sb, st, why, sizeof(why))) {
			/* Never published; one that was (renamed to an excluded name, or
			 * excluded by a new policy) leaves the other sites' namespace, but
			 * only if its data is here: a stub's data lives elsewhere, and
			 * withdrawing it would have its holder delete the only copy. */
			if (ns_load(ns, &st->fid, &p, &seq, NULL) == 0) {
				if (!p.deleted && st->state == HSM_STATE_STUB) {
					log_warnx("nsync: %s/%s is excluded (%s) but a stub: the "
						  "other sites keep it under its old name, as its "
						  "data is not here",
						  v->cfg->path, rel, why);
				} else if (!p.deleted) {
					p.deleted = 1;
					nsrec_vv_set(&p, self, nsrec_vv_get(&p, self) + 1);
					ns_publish(ns, v->cfg->name, &p);
					log_info(
					    "nsync: %s/%s is excluded (%s): withdrawn from the "
					    "other sites",
					    v->cfg->path, rel, why);
				}
				nsrec_clear(&p);
			}
			return;
		}
	}
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

int nsync_claim(struct hsmd *h, struct hsmd_vol *v, const char *rel, char *err, size_t errlen)
{
	struct nsync *ns = h->ns;
	const char *self = h->cfg->site;
	struct hsm_state st;
	struct ns_rec p, n;
	struct stat sb;
	uint64_t seq, mine;
	int fd;

	if (!ns) {
		snprintf(err, errlen, "no namespace sync");
		return -1;
	}
	fd = path_open_beneath(v->root_fd, rel, O_RDONLY | O_NONBLOCK | O_CLOEXEC, 0);
	if (fd < 0 || fstat(fd, &sb) < 0 || ns_read_state(fd, &st) < 0) {
		snprintf(err, errlen, "%s/%s: %s", v->cfg->path, rel, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	if (st.state == HSM_STATE_STUB) {
		snprintf(err, errlen, "%s/%s is not resident here", v->cfg->path, rel);
		return -1;
	}
	if (!strcmp(st.owner, self))
		return 0;
	if (ns_load(ns, &st.fid, &p, &seq, NULL) != 0) {
		snprintf(err, errlen, "%s/%s is not in the namespace feed yet", v->cfg->path, rel);
		return -1;
	}
	if (p.deleted || p.version != st.version || strcmp(p.owner, st.owner)) {
		snprintf(err, errlen, "%s/%s changed meanwhile; the next pass tries again",
			 v->cfg->path, rel);
		nsrec_clear(&p);
		return -1;
	}
	/* The same bytes under a version of ours: peers then ask this site for them, and
	 * the old owner's copy becomes a stub like any copy of an older version. */
	memset(&n, 0, sizeof(n));
	ns_from_local(&n, rel, &sb, &st);
	n.nvv = p.nvv;
	memcpy(n.vv, p.vv, sizeof(n.vv));
	mine = nsrec_vv_get(&p, self);
	nsrec_clear(&p);
	if (ns_new_content(h, v, rel, &n, mine + 1) < 0) {
		snprintf(err, errlen, "%s/%s: could not record the new owner", v->cfg->path, rel);
		return -1;
	}
	nsrec_vv_set(&n, self, mine + 1);
	ns_publish(ns, v->cfg->name, &n);
	snprintf(st.owner, sizeof(st.owner), "%s", self);
	st.version = mine + 1;
	if (st.state == HSM_STATE_ARCHIVED)
		st.state = HSM_STATE_RESIDENT;
	scan_note(h, v, rel, &sb, &st, NULL, CAT_J_STATE);
	log_info("nsync: %s/%s placed here: this site owns it now", v->cfg->path, rel);
	return 0;
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
		/* gone; a directory renamed away says where to (target), also when its
		 * removal was published already */
		if (!have || (p.deleted && (!target || (p.target && !strcmp(p.target, target)))))
			goto out;
		n.deleted = 1;
		n.mode = p.mode;
		n.uid = p.uid;
		n.gid = p.gid;
		n.target = kind == NS_DIR ? (char *)target : NULL;
		snprintf(n.owner, sizeof(n.owner), "%s", p.owner);
		n.version = p.version;
	} else {
		n.mode = sb->st_mode & 07777;
		n.uid = sb->st_uid;
		n.gid = sb->st_gid;
		n.mtime_sec = sb->st_mtim.tv_sec;
		n.mtime_nsec = (uint32_t)sb->st_mtim.tv_nsec;
		/* A directory's mtime moves with every name made or removed in it, and is
		 * part of what the sites must agree on. */
		if (have && !p.deleted && n.mode == p.mode && n.uid == p.uid && n.gid == p.gid &&
		    (kind != NS_LINK || (p.target && target && !strcmp(p.target, target))) &&
		    (kind != NS_DIR ||
		     (n.mtime_sec == p.mtime_sec && n.mtime_nsec == p.mtime_nsec)))
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

void nsync_note_dir_gone(struct hsmd *h, struct hsmd_vol *v, const char *rel, const char *to)
{
	if (!h->ns || h->ns->stopping)
		return;
	ns_names_retire_under(h->ns, v, rel);
	ns_note_other(h, v, rel, NS_DIR, NULL, to);
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
	struct ns_feed_head head;
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
	snprintf(head.feed, sizeof(head.feed), "%s", ns->feed);
	snprintf(head.site, sizeof(head.site), "%s", ns->h->cfg->site);
	snprintf(head.volume, sizeof(head.volume), "%s", volume);
	head.next = c.last;
	head.more = c.more;
	hl = nsfeed_format_head(&head, hdr, sizeof(hdr));
	if (hl < 0) {
		free(c.buf);
		https_respond(req, 500, "text/plain", NULL, strdup("bad feed head\n"), 14);
		log_warnx("nsync: feed of %s: its head line cannot be made", volume);
		return 1;
	}
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
		ns->wakeups++;
		ns_feed_answer(ns, w->req, w->volume, w->since, w->max, 1);
		free(w);
	}
}

uint64_t nsync_feed_wakeups(const struct nsync *ns)
{
	return ns ? ns->wakeups : 0;
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

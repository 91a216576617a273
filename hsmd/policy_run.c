/* The policy engine: passes over the catalog, plans, and jobs (policy_run.h). */
#include "hsmd/policy_run.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "hsmd/catalog.h"
#include "hsmd/control.h"
#include "hsmd/nsync.h"
#include "hsmd/ops.h"
#include "hsmd/worker.h"
#include "lib/config.h"
#include "lib/log.h"
#include "lib/pathsafe.h"
#include "lib/pool.h"
#include "policy/policy.h"
#include "recall/recall.h"

#define PE_CHUNK	 2048 /* catalog records per pool job */
#define PE_CHUNKS_IN_FLY 2
#define PE_JOURNAL_BATCH 20000 /* changed files evaluated per journal tick */
#define PE_JOURNAL_TICK	 1.0
#define PE_RUN_TICK	 0.05
#define PE_BURST	 0.25 /* seconds of a rate a bucket may save up */
#define PE_STARTS	 64   /* paced starts a bucket remembers for policy status */
#define PE_LIST_DEFAULT	 10000
#define PE_HASH		 4096
#define PE_HIGH_RETRY	 60.0 /* seconds between passes started by a high watermark */
#define PE_ERR_MAX	 4096

enum pe_class { PE_PREFETCH = 0, PE_ARCHIVE = 1, PE_RELEASE = 2, PE_NCLASSES = 3 };
static const char *const pe_class_name[] = {"prefetch", "archive", "release"};
static const char *const pe_class_verb[] = {"recall", "archive", "release"};

/* A compiled policy and who still evaluates it. */
struct pe_ref {
	struct policy *p; /* owned */
	unsigned refs;
	time_t loaded;
	unsigned warnings;
};

/* One catalog file while a pass looks at it. */
struct pe_item {
	struct hsm_fid fid;
	size_t vol; /* index into h->vols */
	char *path; /* owned; relative */
	int gone;   /* stat failed: not there any more */
	uint64_t size, blocks;
	int64_t atime, mtime, ctime;
	uint32_t uid, gid;
	uint8_t state, flags;
	uint64_t version, archived_version;
	char owner[HSM_SITE_MAX + 1];
	struct policy_decision d;
};

/* What a pass decided for one file: an entry of a plan list. */
struct pe_cand {
	struct pe_item it; /* its path owned here */
	const struct policy_rule *rule;
	int claim;	    /* prefetch: then take ownership (placement) */
	int below;	    /* release: its volume is below the rule's watermarks */
	const char *reason; /* skipped: why (static) */
};

struct pe_vec {
	struct pe_cand *v;
	size_t n, cap;
};

struct pe_waiter {
	struct ctl_conn *c;
	struct pe_waiter *next;
};

struct pe_pass {
	struct policy_engine *pe; /* NULL once the engine is gone */
	struct hsmd *h;
	struct pe_ref *ref; /* a reference held */
	int dry_run, full;
	size_t list_max;
	struct pe_waiter *waiters;
	/* full passes: where the catalog scan goes on */
	char next_key[17];
	size_t next_klen;
	int scan_done;
	/* incremental passes: the fids to look at */
	struct hsm_fid *fids;
	size_t nfids, next_fid;
	unsigned in_fly;
	uint64_t scanned, excluded, evaluated;
	struct pe_vec prefetch, archive, release, place, skipped;
	struct timespec t0;
	int failed;
	char error[256];
	struct pe_pass *next; /* in the engine's list of passes */
};

struct pe_job {
	int cls;
	struct hsm_fid fid;
	char *path; /* owned: user-visible absolute */
	uint64_t size;
	char dest[HSM_SITE_MAX + 1]; /* bucket: "store" or the peer data comes from */
	int claim;
	size_t vol;
	char *rel;		  /* points into path */
	struct policy_engine *pe; /* NULL once the engine is gone */
	struct pe_job *qnext;
	struct pe_job *hnext;
};

/* One transfer a limit let start: when (the clock the bucket refilled by), its size
 * and the rate then in force. */
struct pe_start {
	double t;
	uint64_t bytes, rate;
};

/* The allowance of one destination, and the starts it let through: policy status
 * shows them so that the pace can be checked from hsmd's own clock over any stretch
 * (the bytes started in [t_i, t_j) never exceed rate * (t_j - t_i) + one burst),
 * which a stopwatch outside cannot do on a loaded machine. */
struct pe_bucket {
	char dest[HSM_SITE_MAX + 1];
	double tokens;
	double last;
	uint64_t started, bytes;	   /* every paced start, for the totals */
	struct pe_start starts[PE_STARTS]; /* a ring: the latest at (started - 1) % N */
	struct pe_bucket *next;
};

struct policy_engine {
	struct hsmd *h;
	struct pe_ref *cur; /* NULL = no policy */
	char last_error[PE_ERR_MAX];
	time_t last_reload;
	ev_timer scan_t, journal_t, run_t;
	uint64_t jcursor;
	struct pe_pass *passes; /* every pass in flight, dry runs included */
	struct pe_pass *full;	/* the real full pass in flight, or NULL */
	struct pe_pass *incr;	/* the incremental pass in flight, or NULL */
	struct pe_job *qhead[PE_NCLASSES], *qtail[PE_NCLASSES];
	size_t qlen[PE_NCLASSES];
	struct pe_job *hash[PE_HASH]; /* queued and in flight, by fid */
	unsigned in_fly, own_recalls;
	int paused;	       /* hsm policy pause: passes plan and queue, no job starts */
	double last_high_pass; /* monotonic time of the last pass a watermark started */
	struct pe_bucket *buckets;
	uint64_t done[PE_NCLASSES], failed[PE_NCLASSES], bytes[PE_NCLASSES];
	uint64_t npasses, claims;
	double last_pass_secs;
	uint64_t last_pass_files;
	time_t last_pass_end;
};

static double pe_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- loading ---- */

/* Keeps a copy of a policy that compiled, so that a worker restarting while the
 * admin's file has an error carries on with the policy that was in force rather than
 * none (which would publish excluded files and stop every rule). */
static void pe_save_good(const struct hsm_config *cfg, const char *text, size_t len)
{
	char path[4200], tmp[4300];
	int fd;

	snprintf(path, sizeof(path), "%.4000s/policy.good", cfg->state_dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, text, len) != (ssize_t)len || fsync(fd) < 0 || close(fd) < 0 ||
	    rename(tmp, path) < 0) {
		log_warn("policy: cannot keep a copy of the good policy in %s", path);
		if (fd >= 0)
			close(fd);
		unlink(tmp);
	}
}

static struct pe_ref *pe_load(const struct hsm_config *cfg, const char *path, int save, char *err,
			      size_t errlen)
{
	const char *sites[HSM_PEERS_MAX + 1];
	struct policy_env env = {0};
	struct policy_diags d = {0};
	struct pe_ref *ref;
	struct policy *p;
	char *text;
	size_t off = 0;

	text = policy_read_file(path, &off, err, errlen);
	if (!text)
		return NULL;
	sites[0] = cfg->site;
	for (size_t i = 0; i < cfg->npeers && i < HSM_PEERS_MAX; i++)
		sites[1 + i] = cfg->peers[i].name;
	env.sites = sites;
	env.nsites = 1 + cfg->npeers;
	env.resolve = policy_resolve_system;
	p = policy_compile(path, text, off, &env, &d);
	if (p && save)
		pe_save_good(cfg, text, off);
	free(text);
	if (!p) {
		size_t o = 0;

		o += (size_t)snprintf(err, errlen, "policy %s: %zu error%s", path, d.errors,
				      d.errors == 1 ? "" : "s");
		for (size_t i = 0; i < d.n && o + 2 < errlen; i++) {
			char line[600];

			if (d.v[i].severity != POLICY_ERROR)
				continue;
			policy_diag_format(NULL, path, &d.v[i], line, sizeof(line));
			o += (size_t)snprintf(err + o, errlen - o, "\n%s", line);
		}
		policy_diags_free(&d);
		return NULL;
	}
	ref = calloc(1, sizeof(*ref));
	if (!ref) {
		policy_free(p);
		policy_diags_free(&d);
		snprintf(err, errlen, "policy %s: out of memory", path);
		return NULL;
	}
	for (size_t i = 0; i < d.n; i++) {
		char line[600];

		policy_diag_format(p, path, &d.v[i], line, sizeof(line));
		log_warnx("%s", line);
	}
	ref->p = p;
	ref->refs = 1;
	ref->loaded = time(NULL);
	ref->warnings = (unsigned)d.warnings;
	policy_diags_free(&d);
	return ref;
}

static struct pe_ref *pe_ref_get(struct pe_ref *r)
{
	if (r)
		r->refs++;
	return r;
}

static void pe_ref_put(struct pe_ref *r)
{
	if (r && --r->refs == 0) {
		policy_free(r->p);
		free(r);
	}
}

int policy_engine_check(const struct hsm_config *cfg, char *err, size_t errlen)
{
	struct pe_ref *r;

	if (!cfg->policy_file)
		return 0;
	r = pe_load(cfg, cfg->policy_file, 0, err, errlen);
	if (!r)
		return -1;
	pe_ref_put(r);
	return 0;
}

int policy_engine_reload(struct policy_engine *pe, char *err, size_t errlen)
{
	const char *file = pe->h->cfg->policy_file;
	struct pe_ref *r;

	pe->last_reload = time(NULL);
	if (!file) {
		snprintf(err, errlen, "no policy file is configured ([site] policy)");
		return -1;
	}
	r = pe_load(pe->h->cfg, file, 1, err, errlen);
	if (!r) {
		snprintf(pe->last_error, sizeof(pe->last_error), "%s", err);
		log_warnx("%s; the policy loaded before stays in force", err);
		return -1;
	}
	pe_ref_put(pe->cur);
	pe->cur = r;
	pe->last_error[0] = '\0';
	log_info("policy %s loaded (%u warning%s)", file, r->warnings, r->warnings == 1 ? "" : "s");
	/* A new policy may have a new interval and new rules: look at everything soon. */
	ev_timer_stop(pe->h->loop, &pe->scan_t);
	ev_timer_set(&pe->scan_t, 1.0, policy_scan_interval(r->p));
	ev_timer_start(pe->h->loop, &pe->scan_t);
	return 0;
}

/* ---- one file's attributes ---- */

struct pe_xattr_ctx {
	int root_fd;
	const char *rel;
};

static long pe_xattr(void *arg, const char *name, char *buf, size_t cap)
{
	struct pe_xattr_ctx *x = arg;
	char p[HSM_PATH_MAX + 64];
	ssize_t n;

	snprintf(p, sizeof(p), "/proc/self/fd/%d/%s", x->root_fd, x->rel);
	n = lgetxattr(p, name, buf, cap);
	return n < 0 ? -1 : (long)n;
}

static int pe_state(uint8_t s)
{
	return s == HSM_STATE_STUB	 ? POLICY_STUB
	       : s == HSM_STATE_ARCHIVED ? POLICY_ARCHIVED
					 : POLICY_RESIDENT;
}

static unsigned pe_flags(uint8_t state, uint8_t flags, uint64_t archived_version)
{
	unsigned f = 0;

	if (flags & HSM_FLAG_PINNED)
		f |= POLICY_F_PINNED;
	if (flags & HSM_FLAG_NOARCHIVE)
		f |= POLICY_F_NOARCHIVE;
	if (state == HSM_STATE_RESIDENT && archived_version)
		f |= POLICY_F_DIRTY;
	return f;
}

static void pe_file(struct policy_file *pf, const struct hsmd_vol *v, const struct pe_item *it,
		    struct pe_xattr_ctx *x)
{
	memset(pf, 0, sizeof(*pf));
	pf->volume = v->cfg->name;
	pf->path = it->path;
	pf->size = it->size;
	pf->atime = it->atime;
	pf->mtime = it->mtime;
	pf->ctime = it->ctime;
	pf->uid = it->uid;
	pf->gid = it->gid;
	pf->state = pe_state(it->state);
	pf->flags = pe_flags(it->state, it->flags, it->archived_version);
	pf->owner = it->owner;
	if (x) {
		x->root_fd = v->root_fd;
		x->rel = it->path;
		pf->xattr = pe_xattr;
		pf->xattr_arg = x;
	}
}

static void pe_item_from_stat(struct pe_item *it, const struct stat *sb)
{
	it->size = (uint64_t)sb->st_size;
	it->blocks = (uint64_t)sb->st_blocks;
	it->atime = sb->st_atim.tv_sec;
	it->mtime = sb->st_mtim.tv_sec;
	it->ctime = sb->st_ctim.tv_sec;
	it->uid = sb->st_uid;
	it->gid = sb->st_gid;
}

int policy_engine_excluded(struct hsmd *h, struct hsmd_vol *v, const char *rel,
			   const struct stat *sb, const struct hsm_state *st, char *why,
			   size_t whylen)
{
	struct policy_engine *pe = h->pe;
	const struct policy_rule *r = NULL;
	struct policy_file pf;
	struct pe_xattr_ctx x;
	struct pe_item it;

	if (!pe || !pe->cur)
		return 0;
	memset(&it, 0, sizeof(it));
	it.path = (char *)rel;
	pe_item_from_stat(&it, sb);
	if (st) {
		it.state = st->state;
		it.flags = st->flags;
		it.archived_version = st->archived_version;
		snprintf(it.owner, sizeof(it.owner), "%s", st->owner);
	} else {
		it.state = HSM_STATE_RESIDENT;
		snprintf(it.owner, sizeof(it.owner), "%s", h->cfg->site);
	}
	pe_file(&pf, v, &it, &x);
	if (!policy_excluded(pe->cur->p, &pf, time(NULL), &r))
		return 0;
	snprintf(why, whylen, "line %d: %s", policy_rule_line(r), policy_rule_text(r));
	return 1;
}

/* ---- job queue ---- */

static size_t pe_hash_of(const struct hsm_fid *fid)
{
	size_t x;

	memcpy(&x, fid->b, sizeof(x));
	return x % PE_HASH;
}

static struct pe_job *pe_job_find(struct policy_engine *pe, const struct hsm_fid *fid)
{
	for (struct pe_job *j = pe->hash[pe_hash_of(fid)]; j; j = j->hnext)
		if (!memcmp(j->fid.b, fid->b, 16))
			return j;
	return NULL;
}

static void pe_job_unhash(struct policy_engine *pe, struct pe_job *job)
{
	struct pe_job **pp = &pe->hash[pe_hash_of(&job->fid)];

	for (; *pp; pp = &(*pp)->hnext) {
		if (*pp == job) {
			*pp = job->hnext;
			return;
		}
	}
}

static void pe_job_free(struct pe_job *job)
{
	free(job->path);
	free(job);
}

static void pe_kick(struct policy_engine *pe)
{
	if (!ev_is_active(&pe->run_t)) {
		ev_timer_set(&pe->run_t, 0.0, PE_RUN_TICK);
		ev_timer_start(pe->h->loop, &pe->run_t);
	}
}

/* Queues a job for the file of c unless one for it is queued or running already. */
static void pe_enqueue(struct policy_engine *pe, int cls, const struct pe_cand *c)
{
	struct hsmd *h = pe->h;
	const struct hsmd_vol *v = &h->vols[c->it.vol];
	struct pe_job *job;
	size_t plen;

	if (pe_job_find(pe, &c->it.fid))
		return;
	job = calloc(1, sizeof(*job));
	plen = strlen(v->cfg->path) + 1 + strlen(c->it.path) + 1;
	if (!job || !(job->path = malloc(plen))) {
		free(job);
		log_warnx("policy: out of memory queueing %s of %s", pe_class_name[cls],
			  c->it.path);
		return;
	}
	snprintf(job->path, plen, "%s/%s", v->cfg->path, c->it.path);
	job->rel = job->path + strlen(v->cfg->path) + 1;
	job->cls = cls;
	job->fid = c->it.fid;
	job->size = c->it.size;
	job->claim = c->claim;
	job->vol = c->it.vol;
	job->pe = pe;
	if (cls == PE_ARCHIVE || !config_peer(h->cfg, c->it.owner) ||
	    c->it.archived_version == c->it.version)
		snprintf(job->dest, sizeof(job->dest), "store");
	else
		snprintf(job->dest, sizeof(job->dest), "%s", c->it.owner);
	job->hnext = pe->hash[pe_hash_of(&job->fid)];
	pe->hash[pe_hash_of(&job->fid)] = job;
	if (pe->qtail[cls])
		pe->qtail[cls]->qnext = job;
	else
		pe->qhead[cls] = job;
	pe->qtail[cls] = job;
	pe->qlen[cls]++;
	pe_kick(pe);
}

static struct pe_bucket *pe_bucket(struct policy_engine *pe, const char *dest)
{
	struct pe_bucket *b;

	for (b = pe->buckets; b; b = b->next)
		if (!strcmp(b->dest, dest))
			return b;
	b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	snprintf(b->dest, sizeof(b->dest), "%s", dest);
	b->last = pe_now();
	b->next = pe->buckets;
	pe->buckets = b;
	return b;
}

/* The rate in force for dest now: POLICY_RATE_UNLIMITED without a policy. */
static uint64_t pe_rate(struct policy_engine *pe, const char *dest)
{
	struct tm tm;
	time_t t = time(NULL);

	if (!pe->cur)
		return POLICY_RATE_UNLIMITED;
	localtime_r(&t, &tm);
	return policy_rate(pe->cur->p, dest, (tm.tm_wday + 6) % 7, tm.tm_hour * 60 + tm.tm_min);
}

/* 1 if a transfer of size bytes to/from dest may start at now (and takes its tokens):
 * the window is open and the bucket is not in debt. Paced per file: a file larger
 * than the burst puts the bucket in debt and the next waits until it is paid, so the
 * rate holds over any stretch of several files. */
static int pe_may_start(struct policy_engine *pe, const char *dest, uint64_t size, double now)
{
	struct pe_bucket *b;
	uint64_t rate = pe_rate(pe, dest);

	if (rate == POLICY_RATE_UNLIMITED)
		return 1;
	if (rate == 0)
		return 0;
	b = pe_bucket(pe, dest);
	if (!b)
		return 1;
	b->tokens += (now - b->last) * (double)rate;
	b->last = now;
	if (b->tokens > (double)rate * PE_BURST)
		b->tokens = (double)rate * PE_BURST;
	if (b->tokens < 0)
		return 0;
	b->tokens -= (double)size;
	return 1;
}

/* Remembers a transfer that started under a limit. Kept apart from pe_may_start so
 * that the record is of what did start, whatever the bucket decided. */
static void pe_note_start(struct policy_engine *pe, const char *dest, uint64_t size, double now)
{
	uint64_t rate = pe_rate(pe, dest);
	struct pe_bucket *b;
	struct pe_start *s;

	if (rate == POLICY_RATE_UNLIMITED || !(b = pe_bucket(pe, dest)))
		return;
	s = &b->starts[b->started % PE_STARTS];
	s->t = now;
	s->bytes = size;
	s->rate = rate;
	b->started++;
	b->bytes += size;
}

static void pe_job_done(void *arg, int ok, const char *error)
{
	struct pe_job *job = arg;
	struct policy_engine *pe = job->pe;

	if (!pe) {
		pe_job_free(job);
		return;
	}
	pe->in_fly--;
	if (job->cls == PE_PREFETCH)
		pe->own_recalls--;
	pe_job_unhash(pe, job);
	if (ok) {
		pe->done[job->cls]++;
		pe->bytes[job->cls] += job->size;
		log_debug("policy: %s of %s done", pe_class_name[job->cls], job->path);
	} else {
		pe->failed[job->cls]++;
		log_warnx("policy: %s of %s failed: %s", pe_class_name[job->cls], job->path, error);
	}
	if (ok && job->claim) {
		char err[256];

		if (nsync_claim(pe->h, &pe->h->vols[job->vol], job->rel, err, sizeof(err)) < 0)
			log_warnx("policy: placement of %s here: %s", job->path, err);
		else
			pe->claims++;
	}
	pe_job_free(job);
	pe_kick(pe);
}

/* Starts what may start: the highest class first, nothing while readers or batch
 * recalls wait (those are the recalls in flight that are not ours). */
static void pe_run_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct policy_engine *pe = t->data;
	struct hsmd *h = pe->h;
	unsigned jobs = h->cfg->policy_jobs ? (unsigned)h->cfg->policy_jobs : 4;
	size_t queued = 0;

	(void)revents;
	for (int c = 0; c < PE_NCLASSES; c++)
		queued += pe->qlen[c];
	if (!queued || pe->paused) {
		ev_timer_stop(loop, t);
		return;
	}
	while (pe->in_fly < jobs) {
		unsigned others = recall_active(&h->mv);
		struct pe_job *job = NULL;
		double now = pe_now();
		int c;

		others = others > pe->own_recalls ? others - pe->own_recalls : 0;
		if (others)
			return;
		for (c = 0; c < PE_NCLASSES && !job; c++) {
			struct pe_job *head = pe->qhead[c];

			if (!head)
				continue;
			if (c != PE_RELEASE && !pe_may_start(pe, head->dest, head->size, now))
				continue;
			job = head;
			pe->qhead[c] = head->qnext;
			if (!pe->qhead[c])
				pe->qtail[c] = NULL;
			pe->qlen[c]--;
			head->qnext = NULL;
		}
		if (!job)
			return;
		pe->in_fly++;
		if (job->cls != PE_RELEASE)
			pe_note_start(pe, job->dest, job->size, now);
		if (job->cls == PE_PREFETCH)
			pe->own_recalls++;
		if (ops_run_file(h, pe_class_verb[job->cls], job->path, pe_job_done, job) < 0) {
			pe_job_done(job, 0, "out of memory");
			return;
		}
	}
}

/* ---- passes ---- */

static int pe_vec_push(struct pe_vec *v, const struct pe_cand *c)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 64;
		struct pe_cand *n = realloc(v->v, cap * sizeof(*n));

		if (!n)
			return -1;
		v->v = n;
		v->cap = cap;
	}
	v->v[v->n++] = *c;
	return 0;
}

static void pe_vec_free(struct pe_vec *v)
{
	for (size_t i = 0; i < v->n; i++)
		free(v->v[i].it.path);
	free(v->v);
	memset(v, 0, sizeof(*v));
}

static void pe_pass_free(struct pe_pass *ps)
{
	pe_vec_free(&ps->prefetch);
	pe_vec_free(&ps->archive);
	pe_vec_free(&ps->release);
	pe_vec_free(&ps->place);
	pe_vec_free(&ps->skipped);
	free(ps->fids);
	pe_ref_put(ps->ref);
	while (ps->waiters) {
		struct pe_waiter *w = ps->waiters;

		ps->waiters = w->next;
		free(w);
	}
	free(ps);
}

struct pe_chunk {
	struct pe_pass *ps;
	struct pe_item *v;
	size_t n;
	int64_t now;
};

static void pe_chunk_free(struct pe_chunk *ch)
{
	for (size_t i = 0; i < ch->n; i++)
		free(ch->v[i].path);
	free(ch->v);
	free(ch);
}

/* Pool thread: stat and evaluate. Reads only what does not change after start (the
 * volumes) and the immutable policy the pass holds. */
static void pe_chunk_work(void *arg)
{
	struct pe_chunk *ch = arg;
	struct hsmd *h = ch->ps->h;

	for (size_t i = 0; i < ch->n; i++) {
		struct pe_item *it = &ch->v[i];
		const struct hsmd_vol *v = &h->vols[it->vol];
		struct policy_file pf;
		struct pe_xattr_ctx x;
		struct stat sb;

		if (fstatat(v->root_fd, it->path, &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(sb.st_mode) || sb.st_dev != v->dev) {
			it->gone = 1;
			continue;
		}
		pe_item_from_stat(it, &sb);
		pe_file(&pf, v, it, &x);
		policy_eval(ch->ps->ref->p, h->cfg->site, &pf, ch->now, &it->d);
	}
}

static void pe_pass_next(struct pe_pass *ps);
static void pe_pass_end(struct pe_pass *ps);

static void pe_take(struct pe_pass *ps, struct pe_vec *v, struct pe_item *it,
		    const struct policy_rule *rule, int claim, const char *reason)
{
	struct pe_cand c;

	memset(&c, 0, sizeof(c));
	c.it = *it;
	c.rule = rule;
	c.claim = claim;
	c.reason = reason;
	if (pe_vec_push(v, &c) < 0) {
		ps->failed = 1;
		snprintf(ps->error, sizeof(ps->error), "out of memory");
		return;
	}
	it->path = NULL; /* moved */
}

/* Sorts one file's decision into the pass's lists. */
static void pe_classify(struct pe_pass *ps, struct pe_item *it)
{
	const char *self = ps->h->cfg->site;
	const struct policy_rule *const *r = it->d.rule;
	int self_owned = !strcmp(it->owner, self);

	ps->evaluated++;
	if (it->d.exclude) {
		ps->excluded++;
		return;
	}
	if (r[POLICY_PLACE] && !strcmp(policy_rule_site(r[POLICY_PLACE]), self) && !self_owned) {
		/* placed here: hold the data, then own it */
		pe_take(ps, &ps->place, it, r[POLICY_PLACE], 1, NULL);
		return;
	}
	if (it->state == HSM_STATE_STUB && (r[POLICY_PREFETCH] || r[POLICY_PIN])) {
		pe_take(ps, &ps->prefetch, it,
			r[POLICY_PREFETCH] ? r[POLICY_PREFETCH] : r[POLICY_PIN], 0, NULL);
		return;
	}
	if (r[POLICY_ARCHIVE] && it->state == HSM_STATE_RESIDENT) {
		if (it->flags & HSM_FLAG_NOARCHIVE)
			pe_take(ps, &ps->skipped, it, r[POLICY_ARCHIVE], 0,
				"archive: noarchive flag");
		else if (!self_owned)
			pe_take(ps, &ps->skipped, it, r[POLICY_ARCHIVE], 0,
				"archive: its owner site archives it");
		else
			pe_take(ps, &ps->archive, it, r[POLICY_ARCHIVE], 0, NULL);
		return;
	}
	if (r[POLICY_RELEASE] && it->state != HSM_STATE_STUB) {
		const char *why = NULL;
		unsigned copies = r[POLICY_COPIES] ? policy_rule_copies(r[POLICY_COPIES]) : 0;

		if ((it->flags & HSM_FLAG_PINNED) || r[POLICY_PIN])
			why = "release: pinned";
		else if (r[POLICY_PREFETCH])
			why = "release: a prefetch rule keeps it here";
		else if (it->state == HSM_STATE_RESIDENT && it->archived_version)
			why = "release: dirty (modified since archived)";
		else if (it->state == HSM_STATE_RESIDENT || it->archived_version != it->version)
			why = "release: not archived";
		else if (copies > 1)
			/* Releasing leaves the store's copy; copies at other sites are not
			 * known here, so they are not counted. */
			why = "release: copies rule wants more full copies";
		pe_take(ps, why ? &ps->skipped : &ps->release, it, r[POLICY_RELEASE], 0, why);
	}
}

static void pe_chunk_done(void *arg)
{
	struct pe_chunk *ch = arg;
	struct pe_pass *ps = ch->ps;

	for (size_t i = 0; i < ch->n; i++)
		if (!ch->v[i].gone)
			pe_classify(ps, &ch->v[i]);
	pe_chunk_free(ch);
	ps->in_fly--;
	pe_pass_next(ps);
}

static int pe_item_from_rec(struct pe_pass *ps, const struct cat_record *rec, struct pe_item *it)
{
	struct hsmd *h = ps->h;
	size_t vi;

	for (vi = 0; vi < h->nvols; vi++)
		if (!strcmp(h->vols[vi].cfg->name, rec->volume))
			break;
	if (vi == h->nvols || !rec->path || !rec->path[0])
		return -1;
	memset(it, 0, sizeof(*it));
	it->path = strdup(rec->path);
	if (!it->path)
		return -1;
	it->fid = rec->fid;
	it->vol = vi;
	it->state = rec->state;
	it->flags = rec->flags;
	it->version = rec->version;
	it->archived_version = rec->archived_version;
	snprintf(it->owner, sizeof(it->owner), "%s", rec->owner);
	return 0;
}

struct pe_scan_ctx {
	struct pe_pass *ps;
	struct pe_chunk *ch;
};

static int pe_scan_one(const char *k, size_t klen, const char *v, size_t vlen, void *arg)
{
	struct pe_scan_ctx *sc = arg;
	struct cat_record rec;

	if (sc->ch->n == PE_CHUNK)
		return 1;
	memcpy(sc->ps->next_key, k, klen < 17 ? klen : 17);
	sc->ps->next_klen = klen < 17 ? klen : 17;
	if (klen != 17 || cat_record_decode((const uint8_t *)v, vlen, &rec) < 0)
		return 0;
	if (pe_item_from_rec(sc->ps, &rec, &sc->ch->v[sc->ch->n]) == 0)
		sc->ch->n++;
	cat_record_clear(&rec);
	return 0;
}

/* Reads the next chunk of catalog records on the loop and hands it to the pool. */
static void pe_pass_next(struct pe_pass *ps)
{
	if (!ps->pe)
		ps->scan_done = 1; /* the engine is gone: finish what is in flight */
	while (!ps->scan_done && !ps->failed && ps->in_fly < PE_CHUNKS_IN_FLY) {
		struct pe_chunk *ch = calloc(1, sizeof(*ch));
		char err[256];

		if (!ch || !(ch->v = calloc(PE_CHUNK, sizeof(*ch->v)))) {
			free(ch);
			ps->failed = 1;
			snprintf(ps->error, sizeof(ps->error), "out of memory");
			break;
		}
		ch->ps = ps;
		ch->now = time(NULL);
		if (ps->full) {
			struct pe_scan_ctx sc = {ps, ch};
			char start[18];
			size_t slen = ps->next_klen;
			int r;

			memcpy(start, ps->next_key, slen);
			if (slen)
				start[slen++] = '\0'; /* the key after the last one read */
			r = catalog_kv_scan(ps->h->cat, "f", 1, slen ? start : "f", slen ? slen : 1,
					    pe_scan_one, &sc, err, sizeof(err));
			if (r < 0) {
				ps->failed = 1;
				snprintf(ps->error, sizeof(ps->error), "catalog: %.200s", err);
			} else if (r == 0) {
				ps->scan_done = 1;
			}
		} else {
			while (ch->n < PE_CHUNK && ps->next_fid < ps->nfids) {
				struct cat_record rec;

				if (catalog_get(ps->h->cat, &ps->fids[ps->next_fid++], &rec, err,
						sizeof(err)) != 0)
					continue;
				if (pe_item_from_rec(ps, &rec, &ch->v[ch->n]) == 0)
					ch->n++;
				cat_record_clear(&rec);
			}
			if (ps->next_fid == ps->nfids)
				ps->scan_done = 1;
		}
		ps->scanned += ch->n;
		if (!ch->n) {
			pe_chunk_free(ch);
			continue;
		}
		ps->in_fly++;
		pool_submit(ps->h->pool, pe_chunk_work, pe_chunk_done, ch);
	}
	if ((ps->scan_done || ps->failed) && ps->in_fly == 0)
		pe_pass_end(ps);
}

static struct pe_pass *pe_pass_new(struct policy_engine *pe, int full, int dry_run)
{
	struct pe_pass *ps = calloc(1, sizeof(*ps));

	if (!ps)
		return NULL;
	ps->pe = pe;
	ps->h = pe->h;
	ps->ref = pe_ref_get(pe->cur);
	ps->full = full;
	ps->dry_run = dry_run;
	ps->list_max = PE_LIST_DEFAULT;
	clock_gettime(CLOCK_MONOTONIC, &ps->t0);
	ps->next = pe->passes;
	pe->passes = ps;
	return ps;
}

/* ---- plans ---- */

static int pe_order_cmp(const void *a, const void *b, void *arg)
{
	const struct pe_cand *x = a, *y = b;
	struct hsmd *h = arg;
	struct policy_file fx, fy;
	int lx = policy_rule_line(x->rule), ly = policy_rule_line(y->rule);

	if (lx != ly)
		return lx < ly ? -1 : 1;
	if (x->it.vol != y->it.vol)
		return x->it.vol < y->it.vol ? -1 : 1;
	pe_file(&fx, &h->vols[x->it.vol], &x->it, NULL);
	pe_file(&fy, &h->vols[y->it.vol], &y->it, NULL);
	return policy_order_cmp(x->rule, &fx, &fy);
}

struct pe_usage {
	uint64_t used, total; /* bytes, df's way: total = used + available to users */
};

static int pe_vol_usage(const struct hsmd_vol *v, struct pe_usage *u)
{
	struct statvfs sv;

	if (fstatvfs(v->root_fd, &sv) < 0)
		return -1;
	u->used = (uint64_t)(sv.f_blocks - sv.f_bfree) * sv.f_frsize;
	u->total = u->used + (uint64_t)sv.f_bavail * sv.f_frsize;
	return 0;
}

static unsigned pe_pct(uint64_t used, uint64_t total)
{
	return total ? (unsigned)((used * 100 + total - 1) / total) : 0;
}

/* The release list of a pass as it will be carried out: candidates of rules without
 * watermarks all go; those of a rule with watermarks go, in the rule's order, only on
 * a volume above its high mark and only until the estimate is at its low mark. The
 * others are marked below (kept, neither listed nor queued). */
static void pe_plan_release(struct pe_pass *ps)
{
	struct hsmd *h = ps->h;
	struct pe_vec *rv = &ps->release;
	size_t i = 0;

	if (!rv->n)
		return;
	qsort_r(rv->v, rv->n, sizeof(*rv->v), pe_order_cmp, h);
	while (i < rv->n) {
		const struct policy_rule *rule = rv->v[i].rule;
		size_t vol = rv->v[i].it.vol, j = i;
		unsigned high, low;
		struct pe_usage u;

		while (j < rv->n && rv->v[j].rule == rule && rv->v[j].it.vol == vol)
			j++;
		policy_rule_watermarks(rule, &high, &low);
		if (high) {
			uint64_t target, used;

			if (pe_vol_usage(&h->vols[vol], &u) < 0) {
				log_warn("policy: volume %s: statvfs", h->vols[vol].cfg->name);
				u.used = 0;
				u.total = 1;
			}
			used = u.used;
			target = u.total / 100 * low + (u.total % 100) * low / 100;
			for (size_t k = i; k < j; k++) {
				if (pe_pct(u.used, u.total) < high || used <= target) {
					rv->v[k].below = 1;
					continue;
				}
				used -= rv->v[k].it.blocks * 512 < used ? rv->v[k].it.blocks * 512
									: used;
			}
			if (pe_pct(u.used, u.total) >= high && used > target)
				log_warnx("policy: volume %s at %u%%: releasing every candidate of "
					  "line %d leaves it at %u%%, above its low mark %u%%",
					  h->vols[vol].cfg->name, pe_pct(u.used, u.total),
					  policy_rule_line(rule), pe_pct(used, u.total), low);
		}
		i = j;
	}
}

/* 1 if some volume is above the high mark of a release rule (checked each journal
 * tick: a full pass then releases). */
static int pe_over_high(struct policy_engine *pe)
{
	struct hsmd *h = pe->h;
	struct pe_usage u;
	unsigned high, low, lowest = 101;

	/* the lowest high mark of any release rule: rules are not tied to volumes */
	if (!pe->cur)
		return 0;
	for (size_t i = 0;; i++) {
		const struct policy_rule *r = policy_rule_at(pe->cur->p, i);

		if (!r)
			break;
		if (policy_rule_action(r) != POLICY_RELEASE)
			continue;
		policy_rule_watermarks(r, &high, &low);
		if (high && high < lowest)
			lowest = high;
	}
	if (lowest > 100)
		return 0;
	for (size_t i = 0; i < h->nvols; i++)
		if (pe_vol_usage(&h->vols[i], &u) == 0 && pe_pct(u.used, u.total) >= lowest)
			return 1;
	return 0;
}

static int pe_rule_has_marks(const struct policy_rule *r)
{
	unsigned high, low;

	policy_rule_watermarks(r, &high, &low);
	return high != 0;
}

/* ---- answers ---- */

static struct json_object *pe_cand_obj(struct hsmd *h, const char *action, const struct pe_cand *c)
{
	struct json_object *o = json_object_new_object();
	char p[HSM_PATH_MAX + 200];

	snprintf(p, sizeof(p), "%s/%s", h->vols[c->it.vol].cfg->path, c->it.path);
	json_object_object_add(o, "type", json_object_new_string("item"));
	json_object_object_add(o, "ok", json_object_new_boolean(1));
	json_object_object_add(o, "action", json_object_new_string(action));
	json_object_object_add(o, "path", json_object_new_string(p));
	json_object_object_add(o, "size", json_object_new_int64((int64_t)c->it.size));
	json_object_object_add(o, "state", json_object_new_string(hsm_state_name(c->it.state)));
	json_object_object_add(o, "owner", json_object_new_string(c->it.owner));
	if (c->rule)
		json_object_object_add(o, "line", json_object_new_int(policy_rule_line(c->rule)));
	if (c->reason)
		json_object_object_add(o, "reason", json_object_new_string(c->reason));
	return o;
}

/* Sends the pass's plan to c (item lines) and returns the totals. */
static struct json_object *pe_report(struct pe_pass *ps, struct ctl_conn *c)
{
	struct json_object *r = json_object_new_object(), *tot = json_object_new_object();
	const struct {
		const char *name;
		struct pe_vec *v;
	} lists[] = {{"recall", &ps->prefetch},
		     {"place", &ps->place},
		     {"archive", &ps->archive},
		     {"release", &ps->release},
		     {"skip", &ps->skipped}};
	struct timespec t1;
	size_t sent = 0;

	for (size_t l = 0; l < sizeof(lists) / sizeof(lists[0]); l++) {
		struct json_object *t = json_object_new_object();
		uint64_t files = 0, bytes = 0;

		for (size_t i = 0; i < lists[l].v->n; i++) {
			const struct pe_cand *cd = &lists[l].v->v[i];

			if (cd->below)
				continue;
			files++;
			bytes += cd->it.size;
			if (c && sent < ps->list_max) {
				ctl_send(c, pe_cand_obj(ps->h, lists[l].name, cd));
				sent++;
			}
		}
		json_object_object_add(t, "files", json_object_new_int64((int64_t)files));
		json_object_object_add(t, "bytes", json_object_new_int64((int64_t)bytes));
		json_object_object_add(tot, lists[l].name, t);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	json_object_object_add(r, "totals", tot);
	json_object_object_add(r, "scanned", json_object_new_int64((int64_t)ps->scanned));
	json_object_object_add(r, "evaluated", json_object_new_int64((int64_t)ps->evaluated));
	json_object_object_add(r, "excluded", json_object_new_int64((int64_t)ps->excluded));
	json_object_object_add(r, "dry_run", json_object_new_boolean(ps->dry_run));
	json_object_object_add(r, "listed", json_object_new_int64((int64_t)sent));
	json_object_object_add(r, "seconds",
			       json_object_new_double((double)(t1.tv_sec - ps->t0.tv_sec) +
						      (double)(t1.tv_nsec - ps->t0.tv_nsec) / 1e9));
	return r;
}

static void pe_pass_end(struct pe_pass *ps)
{
	struct policy_engine *pe = ps->pe;
	struct timespec t1;

	if (!ps->failed)
		pe_plan_release(ps);
	if (pe && !ps->dry_run && !ps->failed) {
		for (size_t i = 0; i < ps->prefetch.n; i++)
			pe_enqueue(pe, PE_PREFETCH, &ps->prefetch.v[i]);
		for (size_t i = 0; i < ps->place.n; i++)
			pe_enqueue(pe, PE_PREFETCH, &ps->place.v[i]);
		for (size_t i = 0; i < ps->archive.n; i++)
			pe_enqueue(pe, PE_ARCHIVE, &ps->archive.v[i]);
		for (size_t i = 0; i < ps->release.n; i++)
			/* watermarks are judged on full passes only: an incremental pass
			 * sees a few files, not the volume's candidates in order */
			if (!ps->release.v[i].below &&
			    (ps->full || !pe_rule_has_marks(ps->release.v[i].rule)))
				pe_enqueue(pe, PE_RELEASE, &ps->release.v[i]);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (pe && ps->full && !ps->dry_run) {
		pe->npasses++;
		pe->last_pass_secs = (double)(t1.tv_sec - ps->t0.tv_sec) +
				     (double)(t1.tv_nsec - ps->t0.tv_nsec) / 1e9;
		pe->last_pass_files = ps->scanned;
		pe->last_pass_end = time(NULL);
		log_info("policy pass: %llu files in %.2f s: %zu to recall, %zu to place, %zu to "
			 "archive, %zu release candidates",
			 (unsigned long long)ps->scanned, pe->last_pass_secs, ps->prefetch.n,
			 ps->place.n, ps->archive.n, ps->release.n);
	}
	if (ps->failed)
		log_warnx("policy pass failed: %s", ps->error);
	if (pe) {
		for (struct pe_pass **pp = &pe->passes; *pp; pp = &(*pp)->next) {
			if (*pp == ps) {
				*pp = ps->next;
				break;
			}
		}
	}
	if (pe && pe->full == ps)
		pe->full = NULL;
	if (pe && pe->incr == ps)
		pe->incr = NULL;
	for (struct pe_waiter *w = ps->waiters; w; w = w->next) {
		if (ps->failed)
			ctl_end(w->c, 0, 0, 0, ps->error, NULL);
		else
			ctl_end(w->c, 1, 0, 0, NULL, pe_report(ps, w->c));
	}
	pe_pass_free(ps);
}

/* ---- timers ---- */

static void pe_full_pass(struct policy_engine *pe)
{
	if (!pe->cur || pe->full)
		return;
	pe->full = pe_pass_new(pe, 1, 0);
	if (!pe->full) {
		log_warnx("policy: out of memory starting a pass");
		return;
	}
	pe_pass_next(pe->full);
}

static void pe_scan_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct policy_engine *pe = t->data;

	(void)loop;
	(void)revents;
	if (pe->h->scanning) {
		/* the start-up scan is still cataloguing: wait for it */
		ev_timer_stop(loop, t);
		ev_timer_set(t, 1.0, pe->cur ? policy_scan_interval(pe->cur->p) : 600);
		ev_timer_start(loop, t);
		return;
	}
	pe_full_pass(pe);
}

struct pe_jctx {
	struct hsm_fid *fids;
	size_t n, cap;
	uint64_t last;
};

static int pe_journal_one(const struct cat_journal_entry *e, void *arg)
{
	struct pe_jctx *j = arg;

	j->last = e->seq;
	if (e->op == CAT_J_DELETE)
		return 0;
	if (j->n == j->cap) {
		size_t cap = j->cap ? j->cap * 2 : 256;
		struct hsm_fid *n = realloc(j->fids, cap * sizeof(*n));

		if (!n)
			return 1;
		j->fids = n;
		j->cap = cap;
	}
	/* the same file changed twice in a row: look once */
	if (!j->n || memcmp(j->fids[j->n - 1].b, e->fid.b, 16))
		j->fids[j->n++] = e->fid;
	return j->n >= PE_JOURNAL_BATCH;
}

/* Follows the catalog's change journal: files that changed are evaluated within a
 * second, and a volume over a high watermark gets a full pass at once. */
static void pe_journal_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct policy_engine *pe = t->data;
	uint64_t head = catalog_journal_head(pe->h->cat);
	struct pe_jctx j = {0};
	char err[256];

	(void)loop;
	(void)revents;
	if (!pe->cur || pe->h->scanning)
		return;
	/* Over a high mark with too few candidates to reach the low one, every tick
	 * would start another full pass: one a minute is enough to catch up. */
	if (!pe->full && pe_now() - pe->last_high_pass >= PE_HIGH_RETRY && pe_over_high(pe)) {
		pe->last_high_pass = pe_now();
		pe_full_pass(pe);
	}
	if (pe->incr || head <= pe->jcursor)
		return;
	j.last = pe->jcursor;
	if (catalog_journal_foreach(pe->h->cat, pe->jcursor, pe_journal_one, &j, err, sizeof(err)) <
	    0) {
		log_warnx("policy: reading the change journal: %s", err);
		free(j.fids);
		return;
	}
	pe->jcursor = j.last;
	if (!j.n) {
		free(j.fids);
		return;
	}
	pe->incr = pe_pass_new(pe, 0, 0);
	if (!pe->incr) {
		free(j.fids);
		return;
	}
	pe->incr->fids = j.fids;
	pe->incr->nfids = j.n;
	pe_pass_next(pe->incr);
}

/* ---- life ---- */

struct policy_engine *policy_engine_new(struct hsmd *h, char *err, size_t errlen)
{
	struct policy_engine *pe = calloc(1, sizeof(*pe));

	if (!pe) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pe->h = h;
	pe->last_high_pass = -PE_HIGH_RETRY;
	if (h->cfg->policy_file) {
		pe->cur = pe_load(h->cfg, h->cfg->policy_file, 1, err, errlen);
		if (!pe->cur) {
			char good[4200], gerr[1024];

			snprintf(good, sizeof(good), "%.4000s/policy.good", h->cfg->state_dir);
			pe->cur = pe_load(h->cfg, good, 0, gerr, sizeof(gerr));
			if (!pe->cur) {
				free(pe);
				return NULL;
			}
			snprintf(pe->last_error, sizeof(pe->last_error), "%s", err);
			log_warnx("%s; carrying on with the last policy that compiled (%s)", err,
				  good);
		}
		log_info("policy %s loaded (%u warning%s)", h->cfg->policy_file, pe->cur->warnings,
			 pe->cur->warnings == 1 ? "" : "s");
	}
	ev_timer_init(&pe->scan_t, pe_scan_cb, 2.0,
		      pe->cur ? policy_scan_interval(pe->cur->p) : 600);
	pe->scan_t.data = pe;
	ev_timer_init(&pe->journal_t, pe_journal_cb, PE_JOURNAL_TICK, PE_JOURNAL_TICK);
	pe->journal_t.data = pe;
	ev_timer_init(&pe->run_t, pe_run_cb, 0.0, PE_RUN_TICK);
	pe->run_t.data = pe;
	return pe;
}

void policy_engine_start(struct policy_engine *pe)
{
	/* what is in the journal now is covered by the first full pass */
	pe->jcursor = catalog_journal_head(pe->h->cat);
	ev_timer_start(pe->h->loop, &pe->scan_t);
	ev_timer_start(pe->h->loop, &pe->journal_t);
}

void policy_engine_free(struct policy_engine *pe)
{
	if (!pe)
		return;
	ev_timer_stop(pe->h->loop, &pe->scan_t);
	ev_timer_stop(pe->h->loop, &pe->journal_t);
	ev_timer_stop(pe->h->loop, &pe->run_t);
	/* Passes in flight end on their own; their askers are gone with the control
	 * server, so they get no answer. */
	for (struct pe_pass *ps = pe->passes; ps; ps = ps->next) {
		ps->pe = NULL;
		while (ps->waiters) {
			struct pe_waiter *w = ps->waiters;

			ps->waiters = w->next;
			free(w);
		}
	}
	for (int c = 0; c < PE_NCLASSES; c++) {
		while (pe->qhead[c]) {
			struct pe_job *j = pe->qhead[c];

			pe->qhead[c] = j->qnext;
			pe_job_unhash(pe, j);
			pe_job_free(j);
		}
	}
	/* what is left in the hash is in flight: its callback frees it */
	for (size_t i = 0; i < PE_HASH; i++)
		for (struct pe_job *j = pe->hash[i]; j; j = j->hnext)
			j->pe = NULL;
	while (pe->buckets) {
		struct pe_bucket *b = pe->buckets;

		pe->buckets = b->next;
		free(b);
	}
	pe_ref_put(pe->cur);
	free(pe);
}

/* ---- the control verb ---- */

/* {DEST: {"rate","burst","started","bytes","starts":[{"t","bytes","rate"}...]}}: the
 * rate and burst in force now (rate null when unlimited), the starts oldest first. */
static struct json_object *pe_limits_json(struct policy_engine *pe)
{
	struct json_object *l = json_object_new_object();

	for (const struct pe_bucket *b = pe->buckets; b; b = b->next) {
		struct json_object *o = json_object_new_object(), *a = json_object_new_array();
		uint64_t rate = pe_rate(pe, b->dest);
		uint64_t n = b->started < PE_STARTS ? b->started : PE_STARTS;

		for (uint64_t i = b->started - n; i < b->started; i++) {
			const struct pe_start *s = &b->starts[i % PE_STARTS];
			struct json_object *e = json_object_new_object();

			json_object_object_add(e, "t", json_object_new_double(s->t));
			json_object_object_add(e, "bytes",
					       json_object_new_int64((int64_t)s->bytes));
			json_object_object_add(e, "rate", json_object_new_int64((int64_t)s->rate));
			json_object_array_add(a, e);
		}
		json_object_object_add(
		    o, "rate",
		    rate == POLICY_RATE_UNLIMITED ? NULL : json_object_new_int64((int64_t)rate));
		json_object_object_add(
		    o, "burst",
		    rate == POLICY_RATE_UNLIMITED
			? NULL
			: json_object_new_int64((int64_t)((double)rate * PE_BURST)));
		json_object_object_add(o, "started", json_object_new_int64((int64_t)b->started));
		json_object_object_add(o, "bytes", json_object_new_int64((int64_t)b->bytes));
		json_object_object_add(o, "starts", a);
		json_object_object_add(l, b->dest, o);
	}
	return l;
}

static void pe_status(struct policy_engine *pe, struct ctl_conn *c)
{
	struct json_object *r = json_object_new_object(), *q = json_object_new_object();
	const char *file = pe->h->cfg->policy_file;

	json_object_object_add(r, "file", file ? json_object_new_string(file) : NULL);
	json_object_object_add(r, "loaded", json_object_new_boolean(pe->cur != NULL));
	if (pe->cur) {
		json_object_object_add(r, "loaded_at", json_object_new_int64(pe->cur->loaded));
		json_object_object_add(r, "warnings", json_object_new_int(pe->cur->warnings));
		json_object_object_add(r, "scan_interval",
				       json_object_new_int((int)policy_scan_interval(pe->cur->p)));
	}
	if (pe->last_error[0])
		json_object_object_add(r, "last_reload_error",
				       json_object_new_string(pe->last_error));
	json_object_object_add(r, "passes", json_object_new_int64((int64_t)pe->npasses));
	json_object_object_add(r, "last_pass_seconds", json_object_new_double(pe->last_pass_secs));
	json_object_object_add(r, "last_pass_files",
			       json_object_new_int64((int64_t)pe->last_pass_files));
	json_object_object_add(r, "last_pass_end", json_object_new_int64(pe->last_pass_end));
	json_object_object_add(r, "placements", json_object_new_int64((int64_t)pe->claims));
	for (int i = 0; i < PE_NCLASSES; i++) {
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "queued", json_object_new_int64((int64_t)pe->qlen[i]));
		json_object_object_add(o, "done", json_object_new_int64((int64_t)pe->done[i]));
		json_object_object_add(o, "failed", json_object_new_int64((int64_t)pe->failed[i]));
		json_object_object_add(o, "bytes", json_object_new_int64((int64_t)pe->bytes[i]));
		json_object_object_add(q, pe_class_name[i], o);
	}
	json_object_object_add(r, "jobs", q);
	json_object_object_add(r, "limits", pe_limits_json(pe));
	json_object_object_add(r, "in_flight", json_object_new_int(pe->in_fly));
	json_object_object_add(r, "paused", json_object_new_boolean(pe->paused));
	ctl_end(c, 1, 0, 0, NULL, r);
}

struct pe_lines {
	struct json_object *a;
};

static void pe_explain_line(void *arg, const char *text)
{
	struct pe_lines *l = arg;

	json_object_array_add(l->a, json_object_new_string(text));
}

static void pe_explain(struct policy_engine *pe, struct ctl_conn *c, struct json_object *req)
{
	static const char *const names[] = {"archive",	"release", "pin",
					    "prefetch", "place",   "copies"};
	struct hsmd *h = pe->h;
	struct json_object *r, *dec;
	struct pe_lines lines;
	struct policy_decision d;
	struct policy_file pf;
	struct pe_xattr_ctx x;
	struct pe_item it;
	struct hsm_state st;
	struct hsmd_vol *v;
	struct stat sb;
	const char *path, *rel;
	char err[512];
	int fd, have;

	fd = ops_open_one(h, c, req, "policy explain", &v, &path, &rel);
	if (fd < 0)
		return;
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		/* errno is fstat's only when it failed; otherwise it is not a file */
		snprintf(err, sizeof(err), "%s: %s", path,
			 fstat(fd, &sb) < 0 ? strerror(errno) : "not a regular file");
		close(fd);
		ctl_end(c, 0, 0, 0, err, NULL);
		return;
	}
	{
		uint8_t rec[HSM_XATTR_MAX];
		ssize_t n = fgetxattr(fd, HSM_XATTR_NAME, rec, sizeof(rec));

		have = n >= 0 && hsmx_decode(rec, (size_t)n, &st, err, sizeof(err)) == 0;
	}
	close(fd);
	memset(&it, 0, sizeof(it));
	it.path = (char *)rel;
	it.vol = (size_t)(v - h->vols);
	pe_item_from_stat(&it, &sb);
	if (have) {
		it.state = st.state;
		it.flags = st.flags;
		it.archived_version = st.archived_version;
		it.version = st.version;
		snprintf(it.owner, sizeof(it.owner), "%s", st.owner);
	} else {
		it.state = HSM_STATE_RESIDENT;
		snprintf(it.owner, sizeof(it.owner), "%s", h->cfg->site);
	}
	r = json_object_new_object();
	json_object_object_add(r, "path", json_object_new_string(path));
	json_object_object_add(
	    r, "state", json_object_new_string(have ? hsm_state_name(st.state) : "unmanaged"));
	json_object_object_add(r, "owner", json_object_new_string(it.owner));
	json_object_object_add(r, "site", json_object_new_string(h->cfg->site));
	if (!pe->cur) {
		json_object_object_add(r, "policy", NULL);
		ctl_end(c, 1, 0, 0, NULL, r);
		return;
	}
	pe_file(&pf, v, &it, &x);
	lines.a = json_object_new_array();
	policy_explain(pe->cur->p, h->cfg->site, &pf, time(NULL), pe_explain_line, &lines);
	policy_eval(pe->cur->p, h->cfg->site, &pf, time(NULL), &d);
	dec = json_object_new_object();
	json_object_object_add(dec, "exclude",
			       d.exclude ? json_object_new_int(policy_rule_line(d.exclude)) : NULL);
	for (int a = 0; a < POLICY_NACTIONS; a++)
		json_object_object_add(dec, names[a],
				       d.rule[a] ? json_object_new_int(policy_rule_line(d.rule[a]))
						 : NULL);
	json_object_object_add(r, "policy", json_object_new_string(h->cfg->policy_file));
	json_object_object_add(r, "decision", dec);
	json_object_object_add(r, "lines", lines.a);
	ctl_end(c, 1, 0, 0, NULL, r);
}

void policy_engine_request(struct hsmd *h, struct ctl_conn *c, struct json_object *req)
{
	struct policy_engine *pe = h->pe;
	struct json_object *opts = NULL, *op = NULL, *dry = NULL, *max = NULL;
	const char *name;
	char err[PE_ERR_MAX];

	if (!pe) {
		ctl_end(c, 0, 0, 0, "the policy engine is not running", NULL);
		return;
	}
	if (json_object_object_get_ex(req, "opts", &opts) &&
	    !json_object_is_type(opts, json_type_object)) {
		ctl_end(c, 0, 0, 0, "\"opts\" must be an object", NULL);
		return;
	}
	if (!opts || !json_object_object_get_ex(opts, "op", &op) ||
	    !json_object_is_type(op, json_type_string)) {
		ctl_end(c, 0, 0, 0,
			"policy needs opts.op: status, reload, explain, run, pause or resume",
			NULL);
		return;
	}
	name = json_object_get_string(op);
	if (!strcmp(name, "status")) {
		pe_status(pe, c);
	} else if (!strcmp(name, "reload")) {
		if (policy_engine_reload(pe, err, sizeof(err)) < 0) {
			ctl_end(c, 0, 0, 0, err, NULL);
		} else {
			struct json_object *r = json_object_new_object();

			json_object_object_add(r, "file",
					       json_object_new_string(h->cfg->policy_file));
			json_object_object_add(r, "warnings",
					       json_object_new_int(pe->cur->warnings));
			ctl_end(c, 1, 0, 0, NULL, r);
		}
	} else if (!strcmp(name, "pause") || !strcmp(name, "resume")) {
		pe->paused = name[0] == 'p';
		log_info("policy jobs %s by hsm policy %s", pe->paused ? "paused" : "resumed",
			 name);
		if (!pe->paused)
			pe_kick(pe);
		ctl_end(c, 1, 0, 0, NULL, NULL);
	} else if (!strcmp(name, "explain")) {
		pe_explain(pe, c, req);
	} else if (!strcmp(name, "run")) {
		struct pe_waiter *w;
		struct pe_pass *ps;
		int dry_run = json_object_object_get_ex(opts, "dry_run", &dry) &&
			      json_object_get_boolean(dry);

		if (!pe->cur) {
			ctl_end(c, 0, 0, 0, "no policy is loaded ([site] policy)", NULL);
			return;
		}
		w = calloc(1, sizeof(*w));
		if (!w) {
			ctl_end(c, 0, 0, 0, "out of memory", NULL);
			return;
		}
		w->c = c;
		if (!dry_run && pe->full) {
			/* a pass is under way: its plan is the answer */
			w->next = pe->full->waiters;
			pe->full->waiters = w;
			return;
		}
		ps = pe_pass_new(pe, 1, dry_run);
		if (!ps) {
			free(w);
			ctl_end(c, 0, 0, 0, "out of memory", NULL);
			return;
		}
		if (json_object_object_get_ex(opts, "max", &max) &&
		    json_object_is_type(max, json_type_int) && json_object_get_int64(max) >= 0)
			ps->list_max = (size_t)json_object_get_int64(max);
		ps->waiters = w;
		if (!dry_run)
			pe->full = ps;
		pe_pass_next(ps);
	} else {
		snprintf(err, sizeof(err), "unknown policy op '%.64s'", name);
		ctl_end(c, 0, 0, 0, err, NULL);
	}
}

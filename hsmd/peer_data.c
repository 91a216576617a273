#include "hsmd/peer_data.h"

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
#include "hsmd/pdreq.h"
#include "hsmd/worker.h"
#include "lib/config.h"
#include "lib/hash.h"
#include "lib/https_server.h"
#include "lib/log.h"
#include "lib/manifest.h"
#include "lib/pathsafe.h"
#include "lib/pool.h"
#include "recall/peer_client.h"

#define PD_CACHE_MAX	  16	     /* manifests kept */
#define PD_CACHE_TEXT_MAX (8u << 20) /* a longer manifest is served but not kept */

/* A manifest computed, or being computed, for one content of one file. */
struct pd_manifest {
	struct pd_manifest *next; /* in the cache, most recent first */
	struct hsm_fid fid;
	uint64_t version;
	struct timespec ctime;
	int ready;  /* text is set; else the hash is running */
	char *text; /* owned */
	size_t len;
	struct pd_job *waiters; /* requests answered when the hash ends; owned */
};

/* One request, from the loop to the pool and back. */
struct pd_job {
	struct hsmd *h;
	struct https_req *req; /* the server's until https_respond */
	struct pd_job *next;   /* among a manifest's waiters */
	char peer[HSM_SITE_MAX + 1];
	int op;
	int root_fd; /* the volume's admin root, not owned */
	char *path;  /* below it, owned */
	int fd;	     /* owned while >= 0 */
	struct hsm_fid fid;
	char owner[HSM_SITE_MAX + 1];
	uint64_t version, off;
	uint32_t len, chunk_size;
	uint8_t sha[32];
	struct stat sb;		/* the file when it was opened */
	struct pd_manifest *pm; /* PD_MANIFEST: the entry this job hashes for */
	/* the answer */
	int status;
	char msg[256];
	char *body; /* owned until handed to https_respond */
	size_t blen;
};

/* The cache and counters belong to the worker's loop thread alone (pool work never
 * touches them): one worker per process, so file scope is enough. */
static struct pd_manifest *pd_cache;
static struct peer_data_stats pd_stats;

static void pd_job_free(struct pd_job *j)
{
	if (j->fd >= 0)
		close(j->fd);
	free(j->path);
	free(j->body);
	free(j);
}

/* Answers with one line of text and frees the job. */
static void pd_answer_error(struct pd_job *j)
{
	char *line = NULL;
	int n = asprintf(&line, "%s\n", j->msg[0] ? j->msg : "error");

	pd_stats.refused++;
	if (j->status >= 500)
		log_warnx("peer %s: data request failed: %s", j->peer, j->msg);
	else
		log_debug("peer %s: data request refused (%d): %s", j->peer, j->status, j->msg);
	https_respond(j->req, j->status, "text/plain", NULL, n < 0 ? NULL : line,
		      n < 0 ? 0 : (size_t)n);
	pd_job_free(j);
}

static void pd_refuse(struct https_req *req, int status, const char *fmt, const char *arg)
{
	char *line = NULL;
	int n = asprintf(&line, fmt, arg ? arg : "");

	pd_stats.refused++;
	https_respond(req, status, "text/plain", NULL, n < 0 ? NULL : line, n < 0 ? 0 : (size_t)n);
}

#define pd_set(j, st, ...)                                         \
	do {                                                       \
		(j)->status = (st);                                \
		snprintf((j)->msg, sizeof((j)->msg), __VA_ARGS__); \
	} while (0)

/* Pool: opens the file and checks that it holds what was asked for. 0, or -1 with
 * the answer set. */
static int pd_open_checked(struct pd_job *j)
{
	uint8_t rec[HSM_XATTR_MAX];
	struct hsm_state st;
	char err[128];
	ssize_t n;

	j->fd = path_open_beneath(j->root_fd, j->path,
				  O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0);
	if (j->fd < 0) {
		if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)
			pd_set(j, 404, "not here");
		else
			pd_set(j, 500, "open %s: %s", j->path, strerror(errno));
		return -1;
	}
	if (fstat(j->fd, &j->sb) < 0) {
		pd_set(j, 500, "stat %s: %s", j->path, strerror(errno));
		return -1;
	}
	if (!S_ISREG(j->sb.st_mode)) {
		pd_set(j, 404, "not a regular file");
		return -1;
	}
	n = fgetxattr(j->fd, HSM_XATTR_NAME, rec, sizeof(rec));
	if (n < 0) {
		if (errno == ENODATA)
			pd_set(j, 404, "not a managed file");
		else
			pd_set(j, 500, "read state of %s: %s", j->path, strerror(errno));
		return -1;
	}
	if (hsmx_decode(rec, (size_t)n, &st, err, sizeof(err)) < 0) {
		pd_set(j, 500, "state record of %s: %s", j->path, err);
		return -1;
	}
	if (memcmp(st.fid.b, j->fid.b, sizeof(st.fid.b)) != 0) {
		pd_set(j, 404, "not here (the path holds another file)");
		return -1;
	}
	if (st.state == HSM_STATE_STUB) {
		pd_set(j, 404, "not resident");
		return -1;
	}
	if (strcmp(st.owner, j->owner) != 0 || st.version != j->version) {
		pd_set(j, 409, "have version %" PRIu64 " of owner %s", st.version, st.owner);
		return -1;
	}
	return 0;
}

static int pd_same_content(const struct stat *a, const struct stat *b)
{
	return a->st_size == b->st_size && a->st_ino == b->st_ino &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Reads len bytes at off into buf. 0, or -1 with the answer set. */
static int pd_read(struct pd_job *j, uint8_t *buf, size_t len, uint64_t off)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = pread(j->fd, buf + got, len - got, (off_t)(off + got));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			pd_set(j, 500, "read %s at %" PRIu64 ": %s", j->path, off + got,
			       strerror(errno));
			return -1;
		}
		if (n == 0) {
			pd_set(j, 409, "file shrank while it was read");
			return -1;
		}
		got += (size_t)n;
	}
	return 0;
}

static void pd_chunk_work(void *arg)
{
	struct pd_job *j = arg;
	uint8_t sha[32];

	if (pd_open_checked(j) < 0)
		return;
	if (j->off > (uint64_t)j->sb.st_size || j->len > (uint64_t)j->sb.st_size - j->off) {
		pd_set(j, 409, "range beyond the end of the file (%lld bytes)",
		       (long long)j->sb.st_size);
		return;
	}
	j->body = malloc(j->len);
	if (!j->body) {
		pd_set(j, 500, "out of memory");
		return;
	}
	if (pd_read(j, (uint8_t *)j->body, j->len, j->off) < 0)
		return;
	/* The manifest promised these bytes; a file changed since must not serve others. */
	sha256_buf(j->body, j->len, sha);
	if (memcmp(sha, j->sha, 32) != 0) {
		pd_set(j, 409, "chunk content changed (sha256 differs)");
		return;
	}
	j->blen = j->len;
	j->status = 200;
}

static void pd_chunk_done(void *arg)
{
	struct pd_job *j = arg;

	if (j->status != 200) {
		pd_answer_error(j);
		return;
	}
	pd_stats.chunks_served++;
	pd_stats.bytes_served += j->blen;
	peer_note_served(peers_find(j->h->peers, j->peer), j->blen);
	https_respond(j->req, 200, "application/octet-stream", NULL, j->body, j->blen);
	j->body = NULL;
	pd_job_free(j);
}

static void pd_cache_unlink(struct pd_manifest *pm)
{
	struct pd_manifest **pp = &pd_cache;

	while (*pp && *pp != pm)
		pp = &(*pp)->next;
	if (*pp)
		*pp = pm->next;
}

static void pd_manifest_free(struct pd_manifest *pm)
{
	while (pm->waiters) {
		struct pd_job *w = pm->waiters;

		pm->waiters = w->next;
		pd_job_free(w);
	}
	free(pm->text);
	free(pm);
}

/* Drops the oldest ready entries beyond PD_CACHE_MAX (entries being hashed stay). */
static void pd_cache_trim(void)
{
	size_t n = 0;
	struct pd_manifest **pp = &pd_cache;

	while (*pp) {
		struct pd_manifest *pm = *pp;

		if (pm->ready && ++n > PD_CACHE_MAX) {
			*pp = pm->next;
			pd_manifest_free(pm);
			continue;
		}
		pp = &pm->next;
	}
}

static struct pd_manifest *pd_cache_find(const struct pd_job *j)
{
	for (struct pd_manifest *pm = pd_cache; pm; pm = pm->next)
		if (!memcmp(pm->fid.b, j->fid.b, 16) && pm->version == j->version &&
		    pm->ctime.tv_sec == j->sb.st_ctim.tv_sec &&
		    pm->ctime.tv_nsec == j->sb.st_ctim.tv_nsec)
			return pm;
	return NULL;
}

static void pd_send_manifest(struct pd_job *j, const char *text, size_t len)
{
	char *copy = malloc(len ? len : 1);

	if (!copy) {
		pd_set(j, 500, "out of memory");
		pd_answer_error(j);
		return;
	}
	memcpy(copy, text, len);
	pd_stats.manifests_served++;
	https_respond(j->req, 200, "text/plain", NULL, copy, len);
	pd_job_free(j);
}

/* Pool: hashes the open file chunk by chunk, as archive does. */
static void pd_hash_work(void *arg)
{
	struct pd_job *j = arg;
	struct hsm_manifest m;
	struct stat after;
	uint8_t *buf;

	if (manifest_init(&m, (uint64_t)j->sb.st_size, j->chunk_size) < 0) {
		pd_set(j, 500, "cannot plan the chunks of %s", j->path);
		return;
	}
	buf = malloc(j->chunk_size);
	if (!buf) {
		pd_set(j, 500, "out of memory");
		manifest_free(&m);
		return;
	}
	for (size_t i = 0; i < m.nchunks; i++) {
		if (pd_read(j, buf, m.chunks[i].length, m.chunks[i].offset) < 0)
			goto out;
		sha256_buf(buf, m.chunks[i].length, m.chunks[i].sha256);
	}
	/* A write while we read would give a manifest of no version at all. */
	if (fstat(j->fd, &after) < 0) {
		pd_set(j, 500, "stat %s: %s", j->path, strerror(errno));
		goto out;
	}
	if (!pd_same_content(&j->sb, &after)) {
		pd_set(j, 409, "file changed while it was hashed");
		goto out;
	}
	if (manifest_serialize(&m, &j->body, &j->blen) < 0) {
		pd_set(j, 500, "cannot serialize the manifest");
		goto out;
	}
	j->status = 200;
out:
	free(buf);
	manifest_free(&m);
}

static void pd_hash_done(void *arg)
{
	struct pd_job *j = arg;
	struct pd_manifest *pm = j->pm;
	struct pd_job *waiters = pm->waiters;

	pm->waiters = NULL;
	pd_stats.manifests_hashed++;
	if (j->status == 200 && j->blen <= PD_CACHE_TEXT_MAX) {
		pm->text = j->body;
		pm->len = j->blen;
		pm->ready = 1;
		j->body = NULL;
	} else {
		pd_cache_unlink(pm);
	}
	/* Everyone who asked while the hash ran gets the same answer. */
	for (struct pd_job *w = waiters, *next; w; w = next) {
		next = w->next;
		if (j->status == 200) {
			pd_send_manifest(w, pm->ready ? pm->text : j->body, j->blen);
		} else {
			w->status = j->status;
			snprintf(w->msg, sizeof(w->msg), "%s", j->msg);
			pd_answer_error(w);
		}
	}
	if (j->status == 200)
		pd_send_manifest(j, pm->ready ? pm->text : j->body, j->blen);
	else
		pd_answer_error(j);
	if (!pm->ready)
		pd_manifest_free(pm);
	pd_cache_trim();
}

static void pd_manifest_work(void *arg)
{
	(void)pd_open_checked(arg);
}

/* The file is open and checked: answer from the cache, wait for a hash in flight, or
 * start one. */
static void pd_manifest_opened(void *arg)
{
	struct pd_job *j = arg;
	struct pd_manifest *pm;

	if (j->status) {
		pd_answer_error(j);
		return;
	}
	pm = pd_cache_find(j);
	if (pm && pm->ready) {
		pd_stats.cache_hits++;
		pd_cache_unlink(pm);
		pm->next = pd_cache;
		pd_cache = pm;
		pd_send_manifest(j, pm->text, pm->len);
		return;
	}
	if (pm) {
		pd_stats.cache_hits++;
		close(j->fd);
		j->fd = -1;
		j->next = pm->waiters;
		pm->waiters = j;
		return;
	}
	pm = calloc(1, sizeof(*pm));
	if (!pm) {
		pd_set(j, 500, "out of memory");
		pd_answer_error(j);
		return;
	}
	pm->fid = j->fid;
	pm->version = j->version;
	pm->ctime = j->sb.st_ctim;
	pm->next = pd_cache;
	pd_cache = pm;
	j->pm = pm;
	pool_submit(j->h->pool, pd_hash_work, pd_hash_done, j);
}

/* Checks the request on the loop thread and fills j from t, which pdreq_parse returned
 * parsed (0) or refused (-1, why). Answers it and returns -1 when it is refused. */
static int pd_parse(struct hsmd *h, struct https_req *req, const char *peer_site,
		    const struct pd_target *t, int parsed, const char *why, struct pd_job *j)
{
	const struct hsm_peer_cfg *pcfg = config_peer(h->cfg, peer_site);
	const struct hsm_volume_cfg *vc = config_volume(h->cfg, t->vol);
	struct hsmd_vol *v = NULL;
	struct cat_record rec;
	char err[256], fidhex[40];
	int rc;

	if (pcfg && vc && config_volume_has_peer(vc, (int)(pcfg - h->cfg->peers)))
		for (size_t i = 0; i < h->nvols; i++)
			if (h->vols[i].cfg == vc)
				v = &h->vols[i];
	if (!v) {
		pd_refuse(req, 403, "volume %s is not shared with you\n", t->vol);
		return -1;
	}
	if (parsed < 0) {
		pd_refuse(req, 400, "%s", why);
		return -1;
	}
	j->op = t->op;
	j->fid = t->fid;
	snprintf(j->owner, sizeof(j->owner), "%s", t->owner);
	j->version = t->version;
	j->off = t->off;
	j->len = t->len;
	memcpy(j->sha, t->sha, sizeof(j->sha));
	rc = catalog_get(h->cat, &j->fid, &rec, err, sizeof(err));
	if (rc < 0) {
		hsm_fid_hex(&j->fid, fidhex);
		log_warnx("peer %s: catalog lookup of fid %s: %s", peer_site, fidhex, err);
		pd_refuse(req, 500, "catalog error\n", NULL);
		return -1;
	}
	if (rc == 1 || strcmp(rec.volume, vc->name) != 0) {
		if (rc == 0)
			cat_record_clear(&rec);
		pd_refuse(req, 404, "not here\n", NULL);
		return -1;
	}
	j->path = rec.path;
	rec.path = NULL;
	cat_record_clear(&rec);
	j->root_fd = v->root_fd;
	return 0;
}

int peer_data_handle(struct hsmd *h, struct https_req *req, const char *peer_site, const char *rest)
{
	struct pd_target t;
	const char *why = NULL;
	struct pd_job *j;
	int parsed = pdreq_parse(rest, req->query, &t, &why);

	if (parsed == 1)
		return 0;
	if (strcmp(req->method, "GET") && strcmp(req->method, "HEAD")) {
		pd_refuse(req, 405, "only GET\n", NULL);
		return 1;
	}
	j = calloc(1, sizeof(*j));
	if (!j) {
		pd_refuse(req, 500, "out of memory\n", NULL);
		return 1;
	}
	j->h = h;
	j->req = req;
	j->fd = -1;
	j->chunk_size = h->cfg->store.chunk_size;
	snprintf(j->peer, sizeof(j->peer), "%s", peer_site);
	if (pd_parse(h, req, peer_site, &t, parsed, why, j) < 0) {
		j->req = NULL;
		pd_job_free(j);
		return 1;
	}
	if (j->op == PD_CHUNK)
		pool_submit(h->pool, pd_chunk_work, pd_chunk_done, j);
	else
		pool_submit(h->pool, pd_manifest_work, pd_manifest_opened, j);
	return 1;
}

void peer_data_stats(struct peer_data_stats *out)
{
	*out = pd_stats;
}

void peer_data_free(void)
{
	while (pd_cache) {
		struct pd_manifest *pm = pd_cache;

		pd_cache = pm->next;
		pd_manifest_free(pm);
	}
}

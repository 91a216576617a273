#include "recall/recall.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "lib/hash.h"
#include "lib/log.h"
#include "lib/manifest.h"
#include "lib/pool.h"
#include "recall/peer_client.h"
#include "recall/store.h"

struct recall_waiter {
	recall_done_cb cb;
	void *arg;
	struct recall_waiter *next;
};

struct recall_job {
	struct mover *mv;
	struct recall_job *next; /* in mv->recalls */
	int fd;			 /* owned */
	struct hsm_state st;
	struct recall_waiter *waiters;
	struct hsm_manifest m;
	int have_manifest;
	size_t next_chunk;	      /* next chunk to fetch */
	size_t chunks_done;	      /* written and verified */
	unsigned in_flight;	      /* gets + pool writes outstanding */
	struct mover_error e;	      /* the first error */
	struct timespec atime, mtime; /* to restore */
	struct timespec ctime;	      /* after the state was written */
	int wrote;		      /* data has gone into the file */
	dev_t dev;
	ino_t ino;
	uint64_t bytes;
	uint64_t stub_size;	    /* st_size when the recall began */
	struct timespec stub_mtime; /* the stub's mtime then: restored after a peer recall */
	struct recall_source *src;  /* nsrc of them, owned */
	size_t nsrc;
	size_t cur;	/* the source being tried; nsrc before the first / after the last */
	int legacy;	/* mv->sources was NULL: the store alone, messages as they were */
	char why[1024]; /* "NAME: reason; ..." of every source that failed or was skipped */
};

/* One chunk between the store and the file. */
struct recall_chunk {
	struct recall_job *job;
	size_t idx;
	int zero;      /* all zeros: punch, do not fetch */
	uint8_t *data; /* owned */
	size_t len;
	int err;
	char msg[256];
};

static void recall_pump(struct recall_job *job);
static int recall_next_source(struct recall_job *job);

static int recall_zero_id(const uint8_t id[32])
{
	for (int i = 0; i < 32; i++)
		if (id[i])
			return 0;
	return 1;
}

#define recall_fail(job, ...) mover_fail(&(job)->e, __VA_ARGS__)

static void recall_unlink(struct recall_job *job)
{
	struct recall_job **pp = &job->mv->recalls;

	while (*pp && *pp != job)
		pp = &(*pp)->next;
	if (*pp)
		*pp = job->next;
}

static void recall_finish(struct recall_job *job)
{
	struct mover *mv = job->mv;
	struct recall_waiter *w, *next;
	char fid[33];

	recall_unlink(job);
	/* Closed before anyone is let in: an exec waiting on this recall fails with
	 * ETXTBSY while a writable descriptor of the file is open. */
	close(job->fd);
	job->fd = -1;
	hsm_fid_hex(&job->st.fid, fid);
	if (job->e.err) {
		mv->recalls_failed++;
		log_warnx("recall of fid %s failed: %s", fid, job->e.msg);
	} else {
		mv->recalls_done++;
		mv->bytes_recalled += job->bytes;
		if (job->src[job->cur].kind == RECALL_SRC_PEER)
			mv->recalls_from_peers++;
		else
			mv->recalls_from_store++;
		log_debug("recalled fid %s: %llu bytes", fid, (unsigned long long)job->bytes);
	}
	for (w = job->waiters; w; w = next) {
		next = w->next;
		w->cb(w->arg, job->e.err, job->e.err ? job->e.msg : NULL, job->bytes,
		      job->e.err ? NULL : &job->st,
		      job->e.err || !job->ctime.tv_sec ? NULL : &job->ctime);
		free(w);
	}
	if (job->have_manifest)
		manifest_free(&job->m);
	free(job->src);
	free(job);
}

/* The last step, on a pool thread: durable data, restored times, then the state. */
static void recall_commit_work(void *arg)
{
	struct recall_job *job = arg;
	struct timespec times[2] = {job->atime, job->mtime};
	struct hsm_state st = job->st;
	uint8_t rec[HSM_XATTR_MAX];
	int len;

	if (futimens(job->fd, times) < 0) {
		recall_fail(job, errno, "restore times: %s", strerror(errno));
		return;
	}
	if (fdatasync(job->fd) < 0) {
		recall_fail(job, errno, "sync data: %s", strerror(errno));
		return;
	}
	/* The content is exactly the archived version, so the file is archived again
	 * (it can be released without a new upload). A peer's copy of a version the store
	 * also holds is the same content; any other is resident only. */
	if (job->src[job->cur].kind == RECALL_SRC_STORE ||
	    (st.archived_version && st.archived_version == st.version &&
	     !recall_zero_id(st.manifest_id)))
		st.state = HSM_STATE_ARCHIVED;
	else
		st.state = HSM_STATE_RESIDENT;
	len = hsmx_encode(&st, rec, sizeof(rec));
	if (len < 0) {
		recall_fail(job, EINVAL, "cannot encode state record");
		return;
	}
	if (fsetxattr(job->fd, HSM_XATTR_NAME, rec, (size_t)len, XATTR_REPLACE) < 0) {
		recall_fail(job, errno, "set state: %s", strerror(errno));
		return;
	}
	/* No fsync of the state: the data is already durable, so a crash that loses
	 * this record leaves a stub holding its own verified data, which the next open
	 * simply recalls again (and the start-up scan tidies). One journal commit per
	 * recall instead of two. */
	job->st = st;
	{
		struct stat sb;

		if (fstat(job->fd, &sb) == 0)
			job->ctime = sb.st_ctim;
	}
	/* Not fatal: without the mark later reads just cost an event each. */
	if (job->mv->settle && job->mv->settle(job->mv->unwatch_ctx, job->fd) < 0)
		log_warn("recall: cannot add the ignore mark");
}

static void recall_commit_done(void *arg)
{
	recall_finish(arg);
}

static void recall_chunk_work(void *arg)
{
	struct recall_chunk *c = arg;
	const struct hsm_chunk *ch = &c->job->m.chunks[c->idx];
	uint8_t sha[32];
	size_t off = 0;

	if (c->zero) {
		/* Keeps the range a hole, and clears whatever an interrupted recall of the
		 * same version may have left there (it could only be zeros anyway). */
		if (fallocate(c->job->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)ch->offset, (off_t)ch->length) < 0) {
			c->err = errno;
			snprintf(c->msg, sizeof(c->msg), "punch zero chunk %zu: %s", c->idx,
				 strerror(errno));
		}
		c->len = ch->length;
		return;
	}
	if (c->len != ch->length) {
		c->err = EIO;
		snprintf(c->msg, sizeof(c->msg), "chunk %zu: got %zu bytes, expected %u", c->idx,
			 c->len, ch->length);
		return;
	}
	sha256_buf(c->data, c->len, sha);
	if (memcmp(sha, ch->sha256, 32) != 0) {
		c->err = EIO;
		snprintf(c->msg, sizeof(c->msg), "chunk %zu: sha256 mismatch (corrupt object)",
			 c->idx);
		return;
	}
	while (off < c->len) {
		ssize_t n =
		    pwrite(c->job->fd, c->data + off, c->len - off, (off_t)(ch->offset + off));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			c->err = n < 0 ? errno : EIO;
			snprintf(c->msg, sizeof(c->msg), "write at offset %llu: %s",
				 (unsigned long long)(ch->offset + off), strerror(c->err));
			return;
		}
		off += (size_t)n;
	}
	/* Start writeback now, so the fdatasync before the commit has little left to do
	 * and the disk works while later chunks are fetched. Advisory: errors surface in
	 * fdatasync. */
	sync_file_range(c->job->fd, (off_t)ch->offset, (off_t)c->len, SYNC_FILE_RANGE_WRITE);
}

static void recall_chunk_done(void *arg)
{
	struct recall_chunk *c = arg;
	struct recall_job *job = c->job;

	job->in_flight--;
	if (c->err)
		recall_fail(job, c->err, "%s", c->msg);
	else {
		job->chunks_done++;
		job->bytes += c->len;
	}
	free(c->data);
	free(c);
	recall_pump(job);
}

static void recall_chunk_got(void *arg, int err, const char *msg, uint8_t *data, size_t len)
{
	struct recall_chunk *c = arg;
	struct recall_job *job = c->job;

	if (err || job->e.err) {
		job->in_flight--;
		if (err)
			recall_fail(job, err == ENOENT ? EIO : err, "chunk %zu: %s", c->idx,
				    msg ? msg : strerror(err));
		free(data);
		free(c);
		recall_pump(job);
		return;
	}
	if (job->src[job->cur].kind == RECALL_SRC_PEER)
		job->mv->bytes_from_peers += len;
	else
		job->mv->bytes_from_store += len;
	c->data = data;
	c->len = len;
	pool_submit(job->mv->pool, recall_chunk_work, recall_chunk_done, c);
}

void mover_fail(struct mover_error *e, int err, const char *fmt, ...)
{
	va_list ap;

	if (e->err)
		return;
	e->err = err;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
}

static int recall_is_zero(struct mover *mv, const struct hsm_chunk *ch)
{
	if (mv->zero_len != ch->length) {
		uint8_t *z = calloc(1, ch->length ? ch->length : 1);

		if (!z)
			return 0;
		sha256_buf(z, ch->length, mv->zero_sha);
		mv->zero_len = ch->length;
		free(z);
	}
	return memcmp(mv->zero_sha, ch->sha256, 32) == 0;
}

/* A failed recall leaves the file as it found it: all hole (but the kept first page
 * of a recall-on-access stub) and the archived times, so it can be released and
 * recalled again. Best effort: the state is still stub, which is what matters. */
static void recall_undo_work(void *arg)
{
	struct recall_job *job = arg;
	struct timespec times[2] = {job->atime, job->mtime};
	off_t keep = (job->st.flags & HSM_FLAG_ON_ACCESS) ? 4096 : 0;
	off_t end = (off_t)(((job->stub_size + 65535) / 65536) * 65536);

	if (end > keep &&
	    fallocate(job->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, keep, end - keep) < 0)
		log_warn("recall: cannot free the partly written data");
	if (futimens(job->fd, times) < 0)
		log_warn("recall: cannot restore the times");
}

/* Keeps up to window chunks moving; finishes when everything has landed. */
static void recall_pump(struct recall_job *job)
{
	struct mover *mv = job->mv;

	while (!job->e.err && job->next_chunk < job->m.nchunks && job->in_flight < mv->window) {
		struct recall_chunk *c = calloc(1, sizeof(*c));
		char key[80];

		if (!c) {
			recall_fail(job, ENOMEM, "out of memory");
			break;
		}
		c->job = job;
		c->idx = job->next_chunk++;
		job->in_flight++;
		job->wrote = 1;
		if (recall_is_zero(mv, &job->m.chunks[c->idx])) {
			c->zero = 1;
			pool_submit(mv->pool, recall_chunk_work, recall_chunk_done, c);
			continue;
		}
		if (job->src[job->cur].kind == RECALL_SRC_PEER) {
			const struct recall_source *src = &job->src[job->cur];
			const struct hsm_chunk *ch = &job->m.chunks[c->idx];

			peer_get_chunk(src->peer, src->volume, &job->st.fid, job->st.owner,
				       job->st.version, ch->offset, ch->length, ch->sha256,
				       recall_chunk_got, c);
			continue;
		}
		manifest_chunk_key(job->m.chunks[c->idx].sha256, key);
		store_get(mv->store, key, 0, 0, recall_chunk_got, c);
	}
	if (job->in_flight)
		return;
	if (job->e.err && job->cur < job->nsrc && recall_next_source(job))
		return;
	if (job->e.err && job->wrote) {
		job->wrote = 0;
		job->in_flight++; /* the undo; never decremented: it finishes the job */
		pool_submit(mv->pool, recall_undo_work, recall_commit_done, job);
		return;
	}
	if (job->e.err || !job->have_manifest) {
		recall_finish(job);
		return;
	}
	if (job->chunks_done == job->m.nchunks) {
		job->in_flight++; /* the commit; never decremented: it finishes the job */
		pool_submit(mv->pool, recall_commit_work, recall_commit_done, job);
	}
}

static void recall_manifest_got(void *arg, int err, const char *msg, uint8_t *data, size_t len)
{
	struct recall_job *job = arg;
	int peer = job->src[job->cur].kind == RECALL_SRC_PEER;
	uint8_t id[32];
	char perr[256];
	struct stat sb;

	job->in_flight--;
	if (err) {
		recall_fail(job, err == ENOENT ? EIO : err, "manifest: %s",
			    msg ? msg : strerror(err));
		goto out;
	}
	/* A peer's manifest has no name to check it by: what vouches for the data is the
	 * sha256 of every chunk, and the size, which must be the stub's. */
	if (!peer) {
		manifest_id((const char *)data, len, id);
		if (memcmp(id, job->st.manifest_id, 32) != 0) {
			recall_fail(job, EIO, "manifest object does not match its id (corrupt)");
			goto out;
		}
	}
	if (manifest_parse((const char *)data, len, &job->m, perr, sizeof(perr)) < 0) {
		recall_fail(job, EIO, "manifest: %s", perr);
		goto out;
	}
	job->have_manifest = 1;
	if (!peer && job->m.size != job->st.archived_size) {
		recall_fail(job, EIO, "manifest size %llu differs from the stub's %llu",
			    (unsigned long long)job->m.size,
			    (unsigned long long)job->st.archived_size);
		goto out;
	}
	if (fstat(job->fd, &sb) < 0) {
		recall_fail(job, errno, "stat: %s", strerror(errno));
		goto out;
	}
	if ((uint64_t)sb.st_size != job->m.size) {
		recall_fail(job, EIO, "stub size %lld differs from the %s %llu",
			    (long long)sb.st_size, peer ? "manifest's" : "archived",
			    (unsigned long long)job->m.size);
		goto out;
	}
	job->atime = sb.st_atim;
	if (!peer || (job->st.archived_version && job->st.archived_version == job->st.version)) {
		/* The archived content's mtime, not the stub's: an interrupted recall may
		 * have touched the stub. */
		job->mtime.tv_sec = job->st.archived_mtime_sec;
		job->mtime.tv_nsec = job->st.archived_mtime_nsec;
	} else {
		job->mtime = job->stub_mtime;
	}
out:
	free(data);
	recall_pump(job);
}

/* Appends "NAME: reason" to the list of what went wrong. */
static void recall_why(struct recall_job *job, const char *name, const char *reason)
{
	size_t used = strlen(job->why);

	snprintf(job->why + used, sizeof(job->why) - used, "%s%s: %s", used ? "; " : "", name,
		 reason);
}

/* Starts the next source that is not skipped, after job->cur (or the first when cur
 * is nsrc). 1 if one started; 0 when none is left, with the final error in job->e. */
static int recall_source_begin(struct recall_job *job)
{
	struct mover *mv = job->mv;
	size_t i = job->cur >= job->nsrc ? 0 : job->cur + 1;
	char key[80];

	for (; i < job->nsrc && job->src[i].skip[0]; i++)
		recall_why(job, job->src[i].name, job->src[i].skip);
	if (i >= job->nsrc) {
		job->cur = job->nsrc;
		if (!job->legacy)
			mover_fail(&job->e, EIO, "%s",
				   job->why[0] ? job->why : "no source holds this version");
		return 0;
	}
	job->cur = i;
	job->in_flight++;
	if (job->src[i].kind == RECALL_SRC_PEER) {
		peer_get_manifest(job->src[i].peer, job->src[i].volume, &job->st.fid, job->st.owner,
				  job->st.version, recall_manifest_got, job);
		return 1;
	}
	manifest_object_key(job->st.manifest_id, key);
	store_get(mv->store, key, 0, 0, recall_manifest_got, job);
	return 1;
}

/* The current source failed and nothing of it is in flight: note why, forget its
 * manifest and progress, and go on with the next. 1 if another source started. */
static int recall_next_source(struct recall_job *job)
{
	struct recall_source *src = &job->src[job->cur];
	char fid[33];

	hsm_fid_hex(&job->st.fid, fid);
	if (!job->legacy) {
		log_warnx("recall of fid %s from %s failed: %s", fid, src->name, job->e.msg);
		recall_why(job, src->name, job->e.msg);
	}
	/* The store-only recall reports its own error as it always did; with sources,
	 * recall_source_begin names them all. */
	if (job->legacy)
		return 0;
	job->mv->source_failures++;
	memset(&job->e, 0, sizeof(job->e));
	if (job->have_manifest) {
		manifest_free(&job->m);
		job->have_manifest = 0;
	}
	memset(&job->m, 0, sizeof(job->m));
	job->next_chunk = 0;
	job->chunks_done = 0;
	job->bytes = 0;
	return recall_source_begin(job);
}

static struct recall_job *recall_find(const struct mover *mv, const struct hsm_fid *fid, dev_t dev,
				      ino_t ino)
{
	for (struct recall_job *j = mv->recalls; j; j = j->next)
		if (memcmp(j->st.fid.b, fid->b, sizeof(fid->b)) == 0 && j->dev == dev &&
		    j->ino == ino)
			return j;
	return NULL;
}

int recall_in_flight(const struct mover *mv, const struct hsm_fid *fid)
{
	for (struct recall_job *j = mv->recalls; j; j = j->next)
		if (memcmp(j->st.fid.b, fid->b, sizeof(fid->b)) == 0)
			return 1;
	return 0;
}

unsigned recall_active(const struct mover *mv)
{
	unsigned n = 0;

	for (struct recall_job *j = mv->recalls; j; j = j->next)
		n++;
	return n;
}

void recall_file(struct mover *mv, int data_fd, const struct hsm_state *st, recall_done_cb cb,
		 void *arg)
{
	struct recall_waiter *w = calloc(1, sizeof(*w));
	struct recall_job *job;
	struct stat sb;

	if (!w)
		fatal("recall: out of memory");
	/* An fd we cannot stat joins nothing: it gets a recall (and error) of its own. */
	if (fstat(data_fd, &sb) < 0)
		memset(&sb, 0, sizeof(sb));
	job = sb.st_ino ? recall_find(mv, &st->fid, sb.st_dev, sb.st_ino) : NULL;
	w->cb = cb;
	w->arg = arg;
	if (job) {
		close(data_fd);
		w->next = job->waiters;
		job->waiters = w;
		return;
	}
	job = calloc(1, sizeof(*job));
	if (!job)
		fatal("recall: out of memory");
	job->mv = mv;
	job->fd = data_fd;
	job->st = *st;
	job->dev = sb.st_dev;
	job->ino = sb.st_ino;
	job->waiters = w;
	job->next = mv->recalls;
	mv->recalls = job;
	job->stub_size = (uint64_t)sb.st_size;
	job->stub_mtime = sb.st_mtim;
	job->cur = 0;
	job->src = calloc(RECALL_SOURCES_MAX, sizeof(*job->src));
	if (!job->src)
		fatal("recall: out of memory");
	if (st->state != HSM_STATE_STUB) {
		recall_fail(job, EIO, "not a stub with an archived version");
	} else if (mv->sources) {
		job->nsrc =
		    mv->sources(mv->sources_ctx, st, sb.st_dev, job->src, RECALL_SOURCES_MAX);
		if (job->nsrc > RECALL_SOURCES_MAX)
			job->nsrc = RECALL_SOURCES_MAX;
		job->cur = job->nsrc;
		if (recall_source_begin(job))
			return;
	} else if (st->archived_version == 0) {
		recall_fail(job, EIO, "not a stub with an archived version");
	} else {
		job->legacy = 1;
		job->nsrc = 1;
		job->src[0].kind = RECALL_SRC_STORE;
		snprintf(job->src[0].name, sizeof(job->src[0].name), "store");
		job->cur = job->nsrc;
		if (recall_source_begin(job))
			return;
	}
	/* Nothing to fetch from; answered through the pool so the callback never runs
	 * inside this call. */
	job->cur = job->nsrc;
	job->in_flight++;
	pool_submit(mv->pool, NULL, recall_commit_done, job);
}

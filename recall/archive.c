#include "recall/archive.h"

#include <errno.h>
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
#include "recall/store.h"

struct archive_waiter {
	archive_done_cb cb;
	void *arg;
	struct archive_waiter *next;
};

struct archive_job {
	struct mover *mv;
	struct archive_job *next; /* in mv->archives */
	dev_t dev;		  /* the inode, for joining; 0/0 joins nothing */
	ino_t ino;
	int fd; /* owned */
	struct hsm_state st;
	struct archive_waiter *waiters; /* the first asker and those who joined */
	struct stat before;		/* the file when we started reading */
	struct hsm_manifest m;
	int have_manifest;
	char *mtext; /* serialized manifest, owned */
	size_t mlen;
	size_t next_chunk;
	size_t chunks_done;
	unsigned in_flight;
	struct mover_error e; /* the first error */
	struct archive_result res;
};

struct archive_chunk {
	struct archive_job *job;
	size_t idx;
	uint8_t *data; /* owned */
	size_t len;
	int err;
	char msg[256];
};

static void archive_pump(struct archive_job *job);

#define archive_fail(job, ...) mover_fail(&(job)->e, __VA_ARGS__)

static void archive_finish(struct archive_job *job)
{
	struct mover *mv = job->mv;
	struct archive_waiter *w, *next;
	struct archive_job **pp = &mv->archives;

	while (*pp && *pp != job)
		pp = &(*pp)->next;
	if (*pp)
		*pp = job->next;

	if (job->e.err) {
		mv->archives_failed++;
	} else {
		mv->archives_done++;
		if (!job->res.already)
			mv->bytes_archived += job->res.bytes;
		mv->chunks_uploaded += job->res.uploaded;
	}
	for (w = job->waiters; w; w = next) {
		next = w->next;
		w->cb(w->arg, job->e.err, job->e.err ? job->e.msg : NULL,
		      job->e.err ? NULL : &job->res);
		free(w);
	}
	close(job->fd);
	if (job->have_manifest)
		manifest_free(&job->m);
	free(job->mtext);
	free(job);
}

static int archive_same_content(const struct stat *a, const struct stat *b)
{
	return a->st_size == b->st_size && a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	       a->st_mtim.tv_nsec == b->st_mtim.tv_nsec && a->st_ino == b->st_ino;
}

static int archive_set_state(int fd, const struct hsm_state *st)
{
	uint8_t rec[HSM_XATTR_MAX];
	int len = hsmx_encode(st, rec, sizeof(rec));

	if (len < 0) {
		errno = EINVAL;
		return -1;
	}
	return fsetxattr(fd, HSM_XATTR_NAME, rec, (size_t)len, 0);
}

/* Pool thread: the content read is still the file's content; record it. */
static void archive_commit_work(void *arg)
{
	struct archive_job *job = arg;
	struct hsm_state prev = job->st, st = job->st;
	struct stat now;

	if (fstat(job->fd, &now) < 0) {
		archive_fail(job, errno, "stat: %s", strerror(errno));
		return;
	}
	if (!archive_same_content(&job->before, &now) ||
	    now.st_ctim.tv_sec != job->before.st_ctim.tv_sec ||
	    now.st_ctim.tv_nsec != job->before.st_ctim.tv_nsec) {
		archive_fail(job, EAGAIN, "file changed while it was archived");
		return;
	}
	st.state = HSM_STATE_ARCHIVED;
	st.archived_version = st.version;
	st.archived_size = job->m.size;
	manifest_id(job->mtext, job->mlen, st.manifest_id);
	st.archived_mtime_sec = now.st_mtim.tv_sec;
	st.archived_mtime_nsec = (uint32_t)now.st_mtim.tv_nsec;
	if (archive_set_state(job->fd, &st) < 0 || fsync(job->fd) < 0) {
		archive_fail(job, errno, "set state: %s", strerror(errno));
		return;
	}
	/* A write between the check above and the xattr would be in the file but not
	 * in the store: look again, and undo the claim if so. */
	if (fstat(job->fd, &now) < 0 || !archive_same_content(&job->before, &now)) {
		int e = errno;

		if (archive_set_state(job->fd, &prev) < 0 || fsync(job->fd) < 0)
			log_warn("archive: cannot restore the previous state record");
		archive_fail(job, e ? e : EAGAIN, "file changed while it was archived");
		return;
	}
	job->st = st;
	job->res.st = st;
	job->res.ctime = now.st_ctim;
}

static void archive_commit_done(void *arg)
{
	archive_finish(arg);
}

static void archive_manifest_put(void *arg, int err, const char *msg)
{
	struct archive_job *job = arg;

	if (err) {
		archive_fail(job, err, "manifest: %s", msg ? msg : strerror(err));
		archive_finish(job);
		return;
	}
	pool_submit(job->mv->pool, archive_commit_work, archive_commit_done, job);
}

static void archive_chunk_free(struct archive_chunk *c)
{
	free(c->data);
	free(c);
}

static void archive_chunk_put(void *arg, int err, const char *msg)
{
	struct archive_chunk *c = arg;
	struct archive_job *job = c->job;

	job->in_flight--;
	if (err)
		archive_fail(job, err, "chunk %zu: %s", c->idx, msg ? msg : strerror(err));
	else {
		job->chunks_done++;
		job->res.uploaded++;
	}
	archive_chunk_free(c);
	archive_pump(job);
}

static void archive_chunk_head(void *arg, int err, const char *msg, int exists, uint64_t size)
{
	struct archive_chunk *c = arg;
	struct archive_job *job = c->job;
	char key[80];

	if (err || job->e.err) {
		job->in_flight--;
		if (err)
			archive_fail(job, err, "chunk %zu: %s", c->idx, msg ? msg : strerror(err));
		archive_chunk_free(c);
		archive_pump(job);
		return;
	}
	/* Content-addressed: a whole object under this name already holds these bytes. */
	if (exists && size == c->len) {
		job->in_flight--;
		job->chunks_done++;
		archive_chunk_free(c);
		archive_pump(job);
		return;
	}
	manifest_chunk_key(job->m.chunks[c->idx].sha256, key);
	store_put(job->mv->store, key, c->data, c->len, archive_chunk_put, c);
}

static void archive_chunk_work(void *arg)
{
	struct archive_chunk *c = arg;
	struct hsm_chunk *ch = &c->job->m.chunks[c->idx];

	c->data = malloc(ch->length ? ch->length : 1);
	if (!c->data) {
		c->err = ENOMEM;
		snprintf(c->msg, sizeof(c->msg), "out of memory");
		return;
	}
	while (c->len < ch->length) {
		ssize_t n = pread(c->job->fd, c->data + c->len, ch->length - c->len,
				  (off_t)(ch->offset + c->len));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			c->err = n < 0 ? errno : EAGAIN;
			snprintf(c->msg, sizeof(c->msg), "read at %llu: %s",
				 (unsigned long long)(ch->offset + c->len),
				 n < 0 ? strerror(errno) : "file shrank while it was archived");
			return;
		}
		c->len += (size_t)n;
	}
	sha256_buf(c->data, c->len, ch->sha256);
}

static void archive_chunk_read(void *arg)
{
	struct archive_chunk *c = arg;
	struct archive_job *job = c->job;
	char key[80];

	if (c->err || job->e.err) {
		job->in_flight--;
		if (c->err)
			archive_fail(job, c->err, "chunk %zu: %s", c->idx, c->msg);
		archive_chunk_free(c);
		archive_pump(job);
		return;
	}
	manifest_chunk_key(job->m.chunks[c->idx].sha256, key);
	store_head(job->mv->store, key, archive_chunk_head, c);
}

static void archive_pump(struct archive_job *job)
{
	struct mover *mv = job->mv;
	char key[80];

	while (!job->e.err && job->next_chunk < job->m.nchunks && job->in_flight < mv->window) {
		struct archive_chunk *c = calloc(1, sizeof(*c));

		if (!c) {
			archive_fail(job, ENOMEM, "out of memory");
			break;
		}
		c->job = job;
		c->idx = job->next_chunk++;
		job->in_flight++;
		pool_submit(mv->pool, archive_chunk_work, archive_chunk_read, c);
	}
	if (job->in_flight)
		return;
	if (job->e.err) {
		archive_finish(job);
		return;
	}
	if (manifest_serialize(&job->m, &job->mtext, &job->mlen) < 0) {
		archive_fail(job, ENOMEM, "cannot serialize the manifest");
		archive_finish(job);
		return;
	}
	job->res.chunks = (unsigned)job->m.nchunks;
	job->res.bytes = job->m.size;
	{
		uint8_t id[32];

		manifest_id(job->mtext, job->mlen, id);
		manifest_object_key(id, key);
	}
	store_put(mv->store, key, job->mtext, job->mlen, archive_manifest_put, job);
}

static void archive_start_done(void *arg)
{
	struct archive_job *job = arg;

	if (job->e.err || job->res.already) {
		archive_finish(job);
		return;
	}
	archive_pump(job);
}

static void archive_start_work(void *arg)
{
	struct archive_job *job = arg;

	if (fstat(job->fd, &job->before) < 0) {
		archive_fail(job, errno, "stat: %s", strerror(errno));
		return;
	}
	if (!S_ISREG(job->before.st_mode)) {
		archive_fail(job, EINVAL, "not a regular file");
		return;
	}
	if (job->st.archived_version && job->st.archived_version == job->st.version) {
		if ((uint64_t)job->before.st_size == job->st.archived_size &&
		    job->before.st_mtim.tv_sec == job->st.archived_mtime_sec &&
		    (uint64_t)job->before.st_mtim.tv_nsec == job->st.archived_mtime_nsec &&
		    job->st.state == HSM_STATE_ARCHIVED) {
			job->res.already = 1;
			job->res.st = job->st;
			job->res.bytes = job->st.archived_size;
			return;
		}
		/* Written since its archive and the change not yet seen by hsmd: this is
		 * a new version. */
		job->st.version++;
	}
	if (manifest_init(&job->m, (uint64_t)job->before.st_size, job->mv->chunk_size) < 0) {
		archive_fail(job, errno ? errno : ENOMEM, "cannot plan chunks");
		return;
	}
	job->have_manifest = 1;
}

void archive_file(struct mover *mv, int fd, const struct hsm_state *st, archive_done_cb cb,
		  void *arg)
{
	struct archive_waiter *w = calloc(1, sizeof(*w));
	struct archive_job *job;
	struct stat sb;

	if (!w)
		fatal("archive: out of memory");
	w->cb = cb;
	w->arg = arg;
	if (fstat(fd, &sb) < 0)
		memset(&sb, 0, sizeof(sb));
	for (job = sb.st_ino ? mv->archives : NULL; job; job = job->next) {
		if (job->dev == sb.st_dev && job->ino == sb.st_ino) {
			/* Another name of the same inode: its archive is this one's. */
			close(fd);
			w->next = job->waiters;
			job->waiters = w;
			return;
		}
	}
	job = calloc(1, sizeof(*job));
	if (!job)
		fatal("archive: out of memory");
	job->mv = mv;
	job->fd = fd;
	job->st = *st;
	job->waiters = w;
	job->dev = sb.st_dev;
	job->ino = sb.st_ino;
	job->next = mv->archives;
	mv->archives = job;
	if (st->state == HSM_STATE_STUB && st->archived_version == st->version) {
		/* Its data is the archived copy: `hsm archive -r` of a tree with stubs in it
		 * has nothing to do for them. */
		job->res.already = 1;
		job->res.st = *st;
		job->res.bytes = st->archived_size;
	} else if (st->state == HSM_STATE_STUB) {
		archive_fail(job, EINVAL, "is a stub of a version the store does not hold");
	} else if (st->flags & HSM_FLAG_NOARCHIVE) {
		archive_fail(job, EPERM, "has the noarchive flag");
	}
	pool_submit(mv->pool, job->e.err || job->res.already ? NULL : archive_start_work,
		    archive_start_done, job);
}

#include "recall/release.h"

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
#include "recall/store.h"

/* Recall-on-access stubs keep their first page so SEEK_DATA walkers read it. */
#define RELEASE_KEEP_ON_ACCESS 4096

struct release_waiter {
	release_done_cb cb;
	void *arg;
	struct release_waiter *next;
};

struct release_job {
	struct mover *mv;
	struct release_job *next; /* in mv->releases */
	dev_t dev;		  /* the inode, for joining; 0/0 joins nothing */
	ino_t ino;
	int fd; /* owned */
	struct hsm_state st;
	struct timespec archived_ctime;
	struct release_waiter *waiters; /* the first asker and those who joined */
	struct hsm_manifest m;
	int have_manifest;
	struct mover_error e; /* the first error */
	struct release_result res;
};

#define release_fail(job, ...) mover_fail(&(job)->e, __VA_ARGS__)

static void release_done(void *arg)
{
	struct release_job *job = arg;
	struct mover *mv = job->mv;
	struct release_waiter *w, *next;
	struct release_job **pp = &mv->releases;

	while (*pp && *pp != job)
		pp = &(*pp)->next;
	if (*pp)
		*pp = job->next;
	if (job->e.err) {
		mv->releases_failed++;
	} else {
		mv->releases_done++;
		mv->bytes_released += job->res.freed;
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
	free(job);
}

/* Re-reads every chunk and compares it with the manifest: the proof, when the ctime
 * cannot give it, that the store holds exactly this content. */
static int release_rehash(struct release_job *job)
{
	uint8_t *buf = malloc(job->m.chunk_size ? job->m.chunk_size : 1);
	uint8_t sha[32];

	if (!buf) {
		release_fail(job, ENOMEM, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < job->m.nchunks; i++) {
		const struct hsm_chunk *ch = &job->m.chunks[i];
		size_t got = 0;

		while (got < ch->length) {
			ssize_t n =
			    pread(job->fd, buf + got, ch->length - got, (off_t)(ch->offset + got));

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				release_fail(job, n < 0 ? errno : EBUSY, "re-read: %s",
					     n < 0 ? strerror(errno) : "file shrank");
				free(buf);
				return -1;
			}
			got += (size_t)n;
		}
		sha256_buf(buf, got, sha);
		if (memcmp(sha, ch->sha256, 32) != 0) {
			release_fail(job, EBUSY,
				     "content differs from the archived version (modified since "
				     "archive; archive it again)");
			free(buf);
			return -1;
		}
	}
	free(buf);
	job->res.rehashed = 1;
	return 0;
}

/* Checks, under the lease, that the file is still exactly what was archived. */
static int release_verify(struct release_job *job, struct stat *sb)
{
	uint8_t rec[HSM_XATTR_MAX];
	struct hsm_state cur;
	char derr[200];
	ssize_t n = fgetxattr(job->fd, HSM_XATTR_NAME, rec, sizeof(rec));

	if (n < 0) {
		release_fail(job, errno, "read state: %s", strerror(errno));
		return -1;
	}
	if (hsmx_decode(rec, (size_t)n, &cur, derr, sizeof(derr)) < 0) {
		release_fail(job, EIO, "state record: %s", derr);
		return -1;
	}
	if (memcmp(cur.fid.b, job->st.fid.b, 16) != 0 || cur.version != job->st.version ||
	    cur.state != HSM_STATE_ARCHIVED || cur.archived_version != cur.version) {
		release_fail(job, EBUSY, "changed since the release was asked for (now %s)",
			     hsm_state_name(cur.state));
		return -1;
	}
	if (cur.flags & HSM_FLAG_PINNED) {
		release_fail(job, EPERM, "is pinned");
		return -1;
	}
	/* How the stub is recalled is the caller's choice (the volume's recall mode). */
	cur.flags =
	    (uint8_t)((cur.flags & ~HSM_FLAG_ON_ACCESS) | (job->st.flags & HSM_FLAG_ON_ACCESS));
	job->st = cur;
	if (fstat(job->fd, sb) < 0) {
		release_fail(job, errno, "stat: %s", strerror(errno));
		return -1;
	}
	if ((uint64_t)sb->st_size != cur.archived_size ||
	    sb->st_mtim.tv_sec != cur.archived_mtime_sec ||
	    (uint64_t)sb->st_mtim.tv_nsec != cur.archived_mtime_nsec) {
		release_fail(job, EBUSY,
			     "modified since archive (size or mtime differ); archive it again");
		return -1;
	}
	if (job->archived_ctime.tv_sec && sb->st_ctim.tv_sec == job->archived_ctime.tv_sec &&
	    sb->st_ctim.tv_nsec == job->archived_ctime.tv_nsec)
		return 0;
	return release_rehash(job);
}

/* Whether the write lease is still whole: an open (or truncate) of the inode by anyone
 * else starts breaking it, and after fs.lease-break-time the kernel lets that caller in
 * whatever we are doing. F_GETLEASE reports a lease being broken as its target type. */
static int release_lease_held(struct release_job *job, const char *when)
{
	int l = fcntl(job->fd, F_GETLEASE);

	if (l == F_WRLCK)
		return 1;
	if (l < 0)
		release_fail(job, errno, "check the write lease %s: %s", when, strerror(errno));
	else
		release_fail(job, EBUSY, "was opened by another process %s; not released", when);
	return 0;
}

/* Gives the ignore mark back to a file that stays resident: the release was refused. */
static void release_resettle(struct release_job *job)
{
	if (job->mv->settle && job->mv->settle(job->mv->unwatch_ctx, job->fd) < 0)
		log_warn("release: cannot restore the ignore mark of a file kept resident");
}

/* Puts the archived record back over a stub record whose data was never punched. */
static int release_unstub(struct release_job *job)
{
	uint8_t rec[HSM_XATTR_MAX];
	int len = hsmx_encode(&job->st, rec, sizeof(rec));

	if (len < 0 || fsetxattr(job->fd, HSM_XATTR_NAME, rec, (size_t)len, XATTR_REPLACE) < 0 ||
	    fsync(job->fd) < 0) {
		/* A stub record over whole data: every access recalls the same bytes. */
		log_warn("release: cannot put back the archived state of a file kept whole");
		return -1;
	}
	return 0;
}

/* The order is what keeps writers safe. The ignore mark goes first, so from then on
 * every open of the inode (an O_PATH fd reopened through /proc too: that is an open)
 * raises a permission event that the intercept holds until this release is over
 * (intercept_hold); such an opener never reaches the lease. Then the lease proves that
 * nobody has the file open or mapped, including a writer that opened before the
 * release. What is left is an opener that got past the event before the mark went, and
 * a path truncate(2), which breaks leases before its permission event: the lease is
 * checked again right before the stub record is written and right before the punch,
 * and a broken lease there refuses the release with the data and the resident record
 * as they were. After the punch an intruder can only come in through a held event,
 * which recalls first. */
static void release_work(void *arg)
{
	struct release_job *job = arg;
	struct hsm_state st;
	uint8_t rec[HSM_XATTR_MAX];
	struct stat sb, after;
	struct timespec times[2];
	off_t keep, end;
	int len;

	/* The kernel grants the write lease only while our descriptor is the inode's one
	 * open (check_conflicting_open counts the inode's readers and writers), whatever
	 * name opened it: tested on 6.18, a file with two hard links takes it, and an open
	 * through either name refuses it. So hard links need no other exclusion, only one
	 * release per inode (release_file joins a second one). */
	if (job->mv->unwatch && job->mv->unwatch(job->mv->unwatch_ctx, job->fd) < 0) {
		release_fail(job, errno, "remove ignore mark: %s", strerror(errno));
		release_resettle(job);
		return;
	}
	if (fcntl(job->fd, F_SETLEASE, F_WRLCK) < 0) {
		if (errno == EAGAIN || errno == EBUSY)
			release_fail(job, EBUSY, "is open or mapped by another process");
		else
			release_fail(job, errno, "write lease: %s", strerror(errno));
		release_resettle(job);
		return;
	}
	if (release_verify(job, &sb) < 0 || !release_lease_held(job, "while it was checked"))
		goto refuse;
	/* State first: a crash after it leaves a stub that still has its data, which a
	 * recall simply overwrites; the other order could leave a "resident" hole. */
	st = job->st;
	st.state = HSM_STATE_STUB;
	len = hsmx_encode(&st, rec, sizeof(rec));
	if (len < 0 || fsetxattr(job->fd, HSM_XATTR_NAME, rec, (size_t)len, XATTR_REPLACE) < 0 ||
	    fsync(job->fd) < 0) {
		release_fail(job, len < 0 ? EINVAL : errno, "set stub state: %s",
			     len < 0 ? "cannot encode" : strerror(errno));
		release_unstub(job);
		goto refuse;
	}
	if (!release_lease_held(job, "before its blocks were freed")) {
		if (release_unstub(job) < 0)
			goto unlock;
		goto refuse;
	}
	job->res.st = st;
	keep = (st.flags & HSM_FLAG_ON_ACCESS) ? RELEASE_KEEP_ON_ACCESS : 0;
	/* Rounded up past EOF: a hole that ends at an unaligned size leaves the last
	 * partial block allocated. */
	end = ((sb.st_size + 65535) / 65536) * 65536;
	if (sb.st_size > keep &&
	    fallocate(job->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, keep, end - keep) < 0) {
		/* The stub state is set and every access will recall: safe, just not
		 * freed. Report it. */
		release_fail(job, errno, "punch hole: %s", strerror(errno));
		goto unlock;
	}
	times[0] = sb.st_atim;
	times[1] = sb.st_mtim;
	if (futimens(job->fd, times) < 0 || fsync(job->fd) < 0) {
		release_fail(job, errno, "restore times: %s", strerror(errno));
		goto unlock;
	}
	if (fstat(job->fd, &after) == 0) {
		job->res.sb = after;
		if (after.st_blocks < sb.st_blocks)
			job->res.freed = (uint64_t)(sb.st_blocks - after.st_blocks) * 512;
	}
	goto unlock;
refuse:
	release_resettle(job);
unlock:
	if (fcntl(job->fd, F_SETLEASE, F_UNLCK) < 0)
		log_warn("release: cannot drop the write lease");
}

static void release_manifest_got(void *arg, int err, const char *msg, uint8_t *data, size_t len)
{
	struct release_job *job = arg;
	uint8_t id[32];
	char perr[256];

	if (err) {
		release_fail(job, err == ENOENT ? EIO : err,
			     "archived copy not usable: manifest: %s", msg ? msg : strerror(err));
		goto fail;
	}
	manifest_id((const char *)data, len, id);
	if (memcmp(id, job->st.manifest_id, 32) != 0) {
		release_fail(job, EIO, "archived manifest does not match its id (corrupt)");
		goto fail;
	}
	if (manifest_parse((const char *)data, len, &job->m, perr, sizeof(perr)) < 0) {
		release_fail(job, EIO, "archived manifest: %s", perr);
		goto fail;
	}
	job->have_manifest = 1;
	free(data);
	pool_submit(job->mv->pool, release_work, release_done, job);
	return;
fail:
	free(data);
	release_done(job);
}

static int release_add_waiter(struct mover *mv, dev_t dev, ino_t ino, release_done_cb cb, void *arg,
			      struct hsm_state *st)
{
	struct release_waiter *w;

	for (struct release_job *job = ino ? mv->releases : NULL; job; job = job->next) {
		if (job->dev != dev || job->ino != ino)
			continue;
		w = calloc(1, sizeof(*w));
		if (!w)
			fatal("release: out of memory");
		w->cb = cb;
		w->arg = arg;
		w->next = job->waiters;
		job->waiters = w;
		if (st)
			*st = job->st;
		return 1;
	}
	return 0;
}

int release_join(struct mover *mv, dev_t dev, ino_t ino, release_done_cb cb, void *arg,
		 struct hsm_state *st)
{
	return release_add_waiter(mv, dev, ino, cb, arg, st);
}

void release_file(struct mover *mv, int fd, const struct hsm_state *st,
		  struct timespec archived_ctime, release_done_cb cb, void *arg)
{
	struct release_waiter *w;
	struct release_job *job;
	struct stat sb;
	char key[80];

	if (fstat(fd, &sb) < 0)
		memset(&sb, 0, sizeof(sb));
	/* Another name of the same inode (a hard link): a second release would hold a
	 * second descriptor, which alone makes the kernel refuse the first one's write
	 * lease. */
	if (release_add_waiter(mv, sb.st_dev, sb.st_ino, cb, arg, NULL)) {
		close(fd);
		return;
	}
	w = calloc(1, sizeof(*w));
	if (!w)
		fatal("release: out of memory");
	w->cb = cb;
	w->arg = arg;
	job = calloc(1, sizeof(*job));
	if (!job)
		fatal("release: out of memory");
	job->mv = mv;
	job->fd = fd;
	job->st = *st;
	job->archived_ctime = archived_ctime;
	job->waiters = w;
	job->dev = sb.st_dev;
	job->ino = sb.st_ino;
	job->next = mv->releases;
	mv->releases = job;
	if (st->flags & HSM_FLAG_PINNED)
		release_fail(job, EPERM, "is pinned");
	else if (st->state != HSM_STATE_ARCHIVED || st->archived_version != st->version)
		release_fail(job, EBUSY, "is not archived (state %s); archive it first",
			     hsm_state_name(st->state));
	if (job->e.err) {
		pool_submit(mv->pool, NULL, release_done, job);
		return;
	}
	/* Fetching the manifest proves the store still holds this version. */
	manifest_object_key(st->manifest_id, key);
	store_get(mv->store, key, 0, 0, release_manifest_got, job);
}

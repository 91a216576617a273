/* file:// object store: one file per key under a root directory. Writes go to a
 * temporary file, are fsynced and renamed into place, so a reader sees a whole object
 * or none; all I/O runs on the pool, callbacks on the loop. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/config.h"
#include "lib/fdio.h"
#include "lib/pool.h"
#include "recall/store.h"

struct fstore {
	struct pool *pool;
	int root_fd; /* owned */
	char *root;  /* owned */
	unsigned pending;
};

enum fstore_op { FS_GET, FS_PUT, FS_HEAD, FS_DEL, FS_LIST };

struct fstore_job {
	struct fstore *fs;
	enum fstore_op op;
	char key[520];
	uint64_t off, len;
	const void *in; /* put: caller's bytes */
	size_t inlen;
	void *cb;
	void *arg;
	/* results */
	int err;
	char msg[700];
	uint8_t *data; /* get: malloc'd, handed to the callback */
	size_t datalen;
	int exists;
	uint64_t size;
	char **keys;
	size_t nkeys, capkeys;
};

static void fstore_fail(struct fstore_job *j, int err, const char *what)
{
	j->err = err;
	snprintf(j->msg, sizeof(j->msg), "file store %s: %s '%s': %s", j->fs->root, what, j->key,
		 strerror(err));
}

static int fstore_mkdirs(int root_fd, const char *key)
{
	char dir[520];
	char *slash;

	snprintf(dir, sizeof(dir), "%s", key);
	slash = strrchr(dir, '/');
	if (!slash)
		return 0;
	*slash = '\0';
	for (char *c = dir;; c++) {
		if (*c == '/' || *c == '\0') {
			char save = *c;

			*c = '\0';
			if (mkdirat(root_fd, dir, 0755) < 0 && errno != EEXIST)
				return -1;
			*c = save;
			if (!save)
				break;
		}
	}
	return 0;
}

static void fstore_do_get(struct fstore_job *j)
{
	struct stat st;
	int fd = openat(j->fs->root_fd, j->key, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	uint64_t want;

	if (fd < 0) {
		fstore_fail(j, errno, "open");
		return;
	}
	if (fstat(fd, &st) < 0) {
		fstore_fail(j, errno, "stat");
		goto out;
	}
	/* A directory made for longer keys is not an object. */
	if (!S_ISREG(st.st_mode)) {
		fstore_fail(j, ENOENT, "open");
		goto out;
	}
	/* One object is read once, front to back: ask for all of it now. */
	posix_fadvise(fd, (off_t)j->off, (off_t)j->len, POSIX_FADV_SEQUENTIAL);
	posix_fadvise(fd, (off_t)j->off, (off_t)j->len, POSIX_FADV_WILLNEED);
	if (j->off >= (uint64_t)st.st_size)
		want = 0;
	else
		want = (uint64_t)st.st_size - j->off;
	if (j->len && j->len < want)
		want = j->len;
	j->data = malloc(want ? want : 1);
	if (!j->data) {
		fstore_fail(j, ENOMEM, "read");
		goto out;
	}
	while (j->datalen < want) {
		ssize_t n = pread(fd, j->data + j->datalen, want - j->datalen,
				  (off_t)(j->off + j->datalen));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fstore_fail(j, n < 0 ? errno : EIO, "read");
			free(j->data);
			j->data = NULL;
			break;
		}
		j->datalen += (size_t)n;
	}
out:
	close(fd);
}

static void fstore_do_put(struct fstore_job *j)
{
	char tmp[64];
	int fd, dfd;

	if (fstore_mkdirs(j->fs->root_fd, j->key) < 0) {
		fstore_fail(j, errno, "mkdir for");
		return;
	}
	fd = openat(j->fs->root_fd, ".tmp", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
	if (fd < 0) {
		fstore_fail(j, errno, "create temporary for");
		return;
	}
	if (fd_write_all(fd, j->in, j->inlen) < 0 || fsync(fd) < 0) {
		fstore_fail(j, errno, "write");
		close(fd);
		return;
	}
	/* linkat of an O_TMPFILE cannot replace; link to a unique name, then rename. */
	snprintf(tmp, sizeof(tmp), ".tmp/put.%d.%p", (int)getpid(), (void *)j);
	snprintf(j->msg, sizeof(j->msg), "/proc/self/fd/%d", fd);
	if (linkat(AT_FDCWD, j->msg, j->fs->root_fd, tmp, AT_SYMLINK_FOLLOW) < 0) {
		fstore_fail(j, errno, "link");
		close(fd);
		return;
	}
	j->msg[0] = '\0';
	close(fd);
	if (renameat(j->fs->root_fd, tmp, j->fs->root_fd, j->key) < 0) {
		fstore_fail(j, errno, "rename into");
		unlinkat(j->fs->root_fd, tmp, 0);
		return;
	}
	/* The rename is durable only once its directory is. */
	{
		char dir[520];
		char *slash;

		snprintf(dir, sizeof(dir), "%s", j->key);
		slash = strrchr(dir, '/');
		if (slash)
			*slash = '\0';
		else
			snprintf(dir, sizeof(dir), ".");
		dfd = openat(j->fs->root_fd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0 || fsync(dfd) < 0)
			fstore_fail(j, errno, "sync directory of");
		if (dfd >= 0)
			close(dfd);
	}
}

static void fstore_do_head(struct fstore_job *j)
{
	struct stat st;

	if (fstatat(j->fs->root_fd, j->key, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno != ENOENT)
			fstore_fail(j, errno, "stat");
		return;
	}
	j->exists = S_ISREG(st.st_mode);
	j->size = (uint64_t)st.st_size;
}

static void fstore_do_del(struct fstore_job *j)
{
	if (unlinkat(j->fs->root_fd, j->key, 0) < 0)
		fstore_fail(j, errno, "delete");
}

static int fstore_list_add(struct fstore_job *j, const char *key)
{
	if (j->nkeys == j->capkeys) {
		size_t cap = j->capkeys ? j->capkeys * 2 : 64;
		char **k = realloc(j->keys, cap * sizeof(*k));

		if (!k)
			return -1;
		j->keys = k;
		j->capkeys = cap;
	}
	j->keys[j->nkeys] = strdup(key);
	if (!j->keys[j->nkeys])
		return -1;
	j->nkeys++;
	return 0;
}

/* Walks dir (a key prefix ending in '/' or "") and adds every object under it
 * whose key starts with j->key. */
static int fstore_list_dir(struct fstore_job *j, const char *dir)
{
	int dfd = openat(j->fs->root_fd, *dir ? dir : ".",
			 O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	DIR *d;
	struct dirent *e;
	int rc = 0;

	if (dfd < 0)
		return errno == ENOENT ? 0 : -1;
	d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return -1;
	}
	while (rc == 0 && (errno = 0, e = readdir(d))) {
		char key[1100];

		if (e->d_name[0] == '.')
			continue;
		snprintf(key, sizeof(key), "%s%s", dir, e->d_name);
		if (e->d_type == DT_DIR) {
			size_t n = strlen(key);

			if (n + 1 < sizeof(key) && (strncmp(key, j->key, n) == 0 ||
						    strncmp(key, j->key, strlen(j->key)) == 0)) {
				key[n] = '/';
				key[n + 1] = '\0';
				rc = fstore_list_dir(j, key);
			}
		} else if (e->d_type == DT_REG && strncmp(key, j->key, strlen(j->key)) == 0) {
			rc = fstore_list_add(j, key);
		}
	}
	if (rc == 0 && errno)
		rc = -1;
	closedir(d);
	return rc;
}

static void fstore_do_list(struct fstore_job *j)
{
	if (fstore_list_dir(j, "") < 0)
		fstore_fail(j, errno ? errno : ENOMEM, "list");
}

static void fstore_work(void *argp)
{
	struct fstore_job *j = argp;

	switch (j->op) {
	case FS_GET:
		fstore_do_get(j);
		break;
	case FS_PUT:
		fstore_do_put(j);
		break;
	case FS_HEAD:
		fstore_do_head(j);
		break;
	case FS_DEL:
		fstore_do_del(j);
		break;
	case FS_LIST:
		fstore_do_list(j);
		break;
	}
}

static void fstore_done(void *argp)
{
	struct fstore_job *j = argp;
	const char *msg = j->err ? j->msg : NULL;

	j->fs->pending--;
	switch (j->op) {
	case FS_GET:
		((store_get_cb)j->cb)(j->arg, j->err, msg, j->data, j->datalen);
		break;
	case FS_PUT:
	case FS_DEL:
		((store_done_cb)j->cb)(j->arg, j->err, msg);
		break;
	case FS_HEAD:
		((store_head_cb)j->cb)(j->arg, j->err, msg, j->exists, j->size);
		break;
	case FS_LIST:
		if (j->err) {
			for (size_t i = 0; i < j->nkeys; i++)
				free(j->keys[i]);
			free(j->keys);
			j->keys = NULL;
			j->nkeys = 0;
		}
		((store_list_cb)j->cb)(j->arg, j->err, msg, j->keys, j->nkeys);
		break;
	}
	free(j);
}

static void fstore_submit(struct fstore *fs, enum fstore_op op, const char *key, void *cb,
			  void *arg, struct fstore_job **out)
{
	struct fstore_job *j = calloc(1, sizeof(*j));

	if (!j)
		abort();
	j->fs = fs;
	j->op = op;
	snprintf(j->key, sizeof(j->key), "%s", key);
	j->cb = cb;
	j->arg = arg;
	*out = j;
}

static void fstore_go(struct fstore_job *j)
{
	j->fs->pending++;
	pool_submit(j->fs->pool, fstore_work, fstore_done, j);
}

static void fstore_get(void *impl, const char *key, uint64_t off, uint64_t len, store_get_cb cb,
		       void *arg)
{
	struct fstore_job *j;

	fstore_submit(impl, FS_GET, key, (void *)cb, arg, &j);
	j->off = off;
	j->len = len;
	fstore_go(j);
}

static void fstore_put(void *impl, const char *key, const void *data, size_t len, store_done_cb cb,
		       void *arg)
{
	struct fstore_job *j;

	fstore_submit(impl, FS_PUT, key, (void *)cb, arg, &j);
	j->in = data;
	j->inlen = len;
	fstore_go(j);
}

static void fstore_head(void *impl, const char *key, store_head_cb cb, void *arg)
{
	struct fstore_job *j;

	fstore_submit(impl, FS_HEAD, key, (void *)cb, arg, &j);
	fstore_go(j);
}

static void fstore_del(void *impl, const char *key, store_done_cb cb, void *arg)
{
	struct fstore_job *j;

	fstore_submit(impl, FS_DEL, key, (void *)cb, arg, &j);
	fstore_go(j);
}

static void fstore_list(void *impl, const char *prefix, store_list_cb cb, void *arg)
{
	struct fstore_job *j;

	fstore_submit(impl, FS_LIST, prefix, (void *)cb, arg, &j);
	fstore_go(j);
}

static unsigned fstore_pending(const void *impl)
{
	return ((const struct fstore *)impl)->pending;
}

static void *fstore_open(struct ev_loop *loop, struct pool *pool, const struct hsm_store_cfg *cfg,
			 char *err, size_t errlen)
{
	struct fstore *fs;

	(void)loop;
	if (!cfg->file_root || cfg->file_root[0] != '/') {
		snprintf(err, errlen, "file store: root must be an absolute path");
		return NULL;
	}
	/* Create the root (and its parents) so a fresh state directory just works. */
	for (char *c = cfg->file_root + 1;; c++) {
		if (*c == '/' || *c == '\0') {
			char save = *c;

			*c = '\0';
			if (mkdir(cfg->file_root, 0700) < 0 && errno != EEXIST) {
				snprintf(err, errlen, "file store: cannot create %s: %s",
					 cfg->file_root, strerror(errno));
				*c = save;
				return NULL;
			}
			*c = save;
			if (!save)
				break;
		}
	}
	fs = calloc(1, sizeof(*fs));
	if (!fs || !(fs->root = strdup(cfg->file_root))) {
		free(fs);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	fs->pool = pool;
	fs->root_fd = open(fs->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fs->root_fd < 0 || (mkdirat(fs->root_fd, ".tmp", 0700) < 0 && errno != EEXIST)) {
		snprintf(err, errlen, "file store: cannot use %s: %s", fs->root, strerror(errno));
		if (fs->root_fd >= 0)
			close(fs->root_fd);
		free(fs->root);
		free(fs);
		return NULL;
	}
	return fs;
}

static void fstore_close(void *impl)
{
	struct fstore *fs = impl;

	/* Jobs hold no reference the pool cannot finish with: the owner frees the
	 * pool (which runs the remaining callbacks) before closing the store. */
	close(fs->root_fd);
	free(fs->root);
	free(fs);
}

const struct store_backend store_backend_file = {
    .scheme = "file",
    .open = fstore_open,
    .get = fstore_get,
    .put = fstore_put,
    .head = fstore_head,
    .del = fstore_del,
    .list = fstore_list,
    .pending = fstore_pending,
    .close = fstore_close,
};

/* Unit tests of the object store front (recall/store.c) over the file:// backend
 * (recall/store_file.c): round trips from 0 bytes to 5 MiB, ranged gets, head, delete,
 * list by prefix, bad keys (always refused through the callback, never synchronously,
 * never touching the disk), atomic replacement, and callbacks that run exactly once on
 * the loop thread.
 *
 * Callbacks only record what they got; the test asserts after ev_run has returned, so a
 * failure never longjmps out of libev. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/config.h"
#include "lib/pool.h"
#include "recall/store.h"

#define NRES	  128
#define NBUF	  32
#define TIMEOUT_S 30.0
#define MIB	  (1024u * 1024u)

struct fx;

/* What one request's callback saw. */
struct res {
	struct fx *f;
	int calls;
	int off_loop; /* calls made on another thread than the loop's */
	int err;
	char msg[1024];
	int has_msg;
	uint8_t *data;
	size_t len;
	int exists;
	uint64_t size;
	char **keys;
	size_t n;
};

struct fx {
	char root[256];
	char url[300];
	struct hsm_store_cfg cfg;
	struct ev_loop *loop;
	struct pool *pool;
	struct store *store;
	pthread_t loop_thread;
	ev_timer timeout;
	ev_prepare check;
	int timed_out;
	unsigned outstanding; /* requests whose callback has not run yet */
	struct res res[NRES];
	unsigned nres;
	void *bufs[NBUF]; /* put payloads: must outlive their request, even a failed test */
	unsigned nbufs;
};

/* ---- fixture ----------------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct fx *f = w->data;

	(void)revents;
	f->timed_out = 1;
	ev_break(loop, EVBREAK_ALL);
}

static void check_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct fx *f = w->data;

	(void)revents;
	if (f->outstanding == 0)
		ev_break(loop, EVBREAK_ALL);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR");
	char err[512] = "";

	if (!f)
		return -1;
	snprintf(f->root, sizeof(f->root), "%s/test_store_file.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(f->root))
		goto fail;
	snprintf(f->url, sizeof(f->url), "file://%s", f->root);
	f->cfg.kind = HSM_STORE_FILE;
	f->cfg.url = f->url;
	/* The backend edits file_root in place while it creates missing parents. */
	f->cfg.file_root = strdup(f->root);
	if (!f->cfg.file_root)
		goto fail;
	f->loop = ev_loop_new(EVFLAG_AUTO);
	if (!f->loop)
		goto fail;
	f->loop_thread = pthread_self();
	ev_timer_init(&f->timeout, timeout_cb, TIMEOUT_S, 0.);
	f->timeout.data = f;
	ev_prepare_init(&f->check, check_cb);
	f->check.data = f;
	f->pool = pool_new(f->loop, 4);
	if (!f->pool)
		goto fail;
	f->store = store_open(f->loop, f->pool, &f->cfg, err, sizeof(err));
	if (!f->store) {
		fprintf(stderr, "store_open: %s\n", err);
		goto fail;
	}
	*state = f;
	return 0;
fail:
	pool_free(f->pool);
	if (f->loop)
		ev_loop_destroy(f->loop);
	free(f->cfg.file_root);
	if (f->root[0])
		rmdir(f->root);
	free(f);
	return -1;
}

static void res_clear(struct res *r)
{
	free(r->data);
	for (size_t i = 0; i < r->n; i++)
		free(r->keys[i]);
	free(r->keys);
	r->data = NULL;
	r->keys = NULL;
	r->n = 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	int rc;

	/* The pool first: it runs the callbacks of anything a failed test left queued,
	 * while the store and the result slots are still there. */
	pool_free(f->pool);
	store_close(f->store);
	ev_loop_destroy(f->loop);
	for (unsigned i = 0; i < NRES; i++)
		res_clear(&f->res[i]);
	for (unsigned i = 0; i < f->nbufs; i++)
		free(f->bufs[i]);
	rc = nftw(f->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f->cfg.file_root);
	free(f);
	return rc;
}

/* ---- helpers ----------------------------------------------------------------------- */

static struct res *res_new(struct fx *f)
{
	struct res *r;

	assert_true(f->nres < NRES);
	r = &f->res[f->nres++];
	res_clear(r);
	memset(r, 0, sizeof(*r));
	r->f = f;
	f->outstanding++;
	return r;
}

static void *buf_new(struct fx *f, size_t len)
{
	void *b;

	assert_true(f->nbufs < NBUF);
	b = malloc(len ? len : 1);
	assert_non_null(b);
	f->bufs[f->nbufs++] = b;
	return b;
}

/* Bytes that differ at every offset and between seeds, so a misplaced range shows. */
static void fill(uint8_t *p, size_t len, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;

	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)(x >> 7);
	}
}

static void res_called(struct res *r, int err, const char *msg)
{
	struct fx *f = r->f;

	r->calls++;
	if (!pthread_equal(pthread_self(), f->loop_thread))
		r->off_loop++;
	r->err = err;
	r->has_msg = msg != NULL;
	snprintf(r->msg, sizeof(r->msg), "%s", msg ? msg : "");
	f->outstanding--;
}

static void get_cb(void *arg, int err, const char *msg, uint8_t *data, size_t len)
{
	struct res *r = arg;

	res_clear(r);
	res_called(r, err, msg);
	r->data = data;
	r->len = len;
}

static void done_cb(void *arg, int err, const char *msg)
{
	res_called(arg, err, msg);
}

static void head_cb(void *arg, int err, const char *msg, int exists, uint64_t size)
{
	struct res *r = arg;

	res_called(r, err, msg);
	r->exists = exists;
	r->size = size;
}

static void list_cb(void *arg, int err, const char *msg, char **keys, size_t n)
{
	struct res *r = arg;

	res_clear(r);
	res_called(r, err, msg);
	r->keys = keys;
	r->n = n;
}

/* Runs the loop until every request made so far has had its callback. */
static void run(struct fx *f)
{
	f->timed_out = 0;
	ev_now_update(f->loop);
	ev_timer_set(&f->timeout, TIMEOUT_S, 0.);
	ev_timer_start(f->loop, &f->timeout);
	ev_prepare_start(f->loop, &f->check);
	ev_run(f->loop, 0);
	ev_prepare_stop(f->loop, &f->check);
	ev_timer_stop(f->loop, &f->timeout);
	if (f->timed_out)
		fail_msg("timed out after %.0f s with %u callbacks outstanding, store pending %u",
			 TIMEOUT_S, f->outstanding, store_pending(f->store));
	assert_int_equal(store_pending(f->store), 0);
}

/* The callback ran once, on the loop thread, with err. */
static void assert_answered(const struct res *r, int err)
{
	if (r->calls != 1 || r->off_loop || r->err != err)
		fail_msg("callback ran %d times (%d off the loop thread), err %d (%s), "
			 "expected err %d",
			 r->calls, r->off_loop, r->err, r->msg, err);
	if (err) {
		assert_true(r->has_msg);
		assert_true(r->msg[0] != '\0');
	}
}

static struct res *put(struct fx *f, const char *key, const void *data, size_t len)
{
	struct res *r = res_new(f);

	store_put(f->store, key, data, len, done_cb, r);
	assert_int_equal(r->calls, 0);
	return r;
}

static struct res *get(struct fx *f, const char *key, uint64_t off, uint64_t len)
{
	struct res *r = res_new(f);

	store_get(f->store, key, off, len, get_cb, r);
	assert_int_equal(r->calls, 0);
	return r;
}

static struct res *head(struct fx *f, const char *key)
{
	struct res *r = res_new(f);

	store_head(f->store, key, head_cb, r);
	assert_int_equal(r->calls, 0);
	return r;
}

static struct res *del(struct fx *f, const char *key)
{
	struct res *r = res_new(f);

	store_delete(f->store, key, done_cb, r);
	assert_int_equal(r->calls, 0);
	return r;
}

static struct res *list(struct fx *f, const char *prefix)
{
	struct res *r = res_new(f);

	store_list(f->store, prefix, list_cb, r);
	assert_int_equal(r->calls, 0);
	return r;
}

static void put_ok(struct fx *f, const char *key, const void *data, size_t len)
{
	struct res *r = put(f, key, data, len);

	run(f);
	assert_answered(r, 0);
	assert_false(r->has_msg);
}

static void assert_bytes(const struct res *r, const uint8_t *want, size_t len)
{
	assert_answered(r, 0);
	assert_int_equal(r->len, len);
	if (len) {
		assert_non_null(r->data);
		assert_memory_equal(r->data, want, len);
	}
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The listing holds exactly the n keys in want (in any order). */
static void assert_keys(struct res *r, const char *const *want, size_t n)
{
	const char **sorted = calloc(n ? n : 1, sizeof(*sorted));

	assert_non_null(sorted);
	assert_answered(r, 0);
	if (n) {
		memcpy(sorted, want, n * sizeof(*sorted));
		qsort(sorted, n, sizeof(*sorted), cmp_str);
	}
	if (r->n)
		qsort(r->keys, r->n, sizeof(*r->keys), cmp_str);
	for (size_t i = 0; i < r->n || i < n; i++) {
		const char *got = i < r->n ? r->keys[i] : "(none)";
		const char *exp = i < n ? sorted[i] : "(none)";

		if (strcmp(got, exp) != 0) {
			free(sorted);
			fail_msg("listing entry %zu: got '%s', expected '%s' (%zu keys, expected "
				 "%zu)",
				 i, got, exp, r->n, n);
		}
	}
	free(sorted);
}

/* Regular files and directories under dir (recursively), not counting dir itself. */
static void count_tree(int dfd, unsigned *files, unsigned *dirs)
{
	DIR *d = fdopendir(dfd);
	struct dirent *e;

	assert_non_null(d);
	while ((e = readdir(d))) {
		struct stat st;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		assert_int_equal(fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW), 0);
		if (S_ISDIR(st.st_mode)) {
			int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY);

			assert_true(sub >= 0);
			(*dirs)++;
			count_tree(sub, files, dirs);
		} else {
			(*files)++;
		}
	}
	closedir(d);
}

static void assert_tree(struct fx *f, unsigned files, unsigned dirs)
{
	unsigned nf = 0, nd = 0;
	int dfd = open(f->root, O_RDONLY | O_DIRECTORY);

	assert_true(dfd >= 0);
	count_tree(dfd, &nf, &nd);
	assert_int_equal(nf, files);
	assert_int_equal(nd, dirs);
}

/* The temporary directory exists and is empty. */
static void assert_tmp_empty(struct fx *f)
{
	char path[300];
	unsigned nf = 0, nd = 0;
	int dfd;

	snprintf(path, sizeof(path), "%s/.tmp", f->root);
	dfd = open(path, O_RDONLY | O_DIRECTORY);
	assert_true(dfd >= 0);
	count_tree(dfd, &nf, &nd);
	assert_int_equal(nf, 0);
	assert_int_equal(nd, 0);
}

/* ---- tests ------------------------------------------------------------------------- */

static void test_open_and_describe(void **state)
{
	struct fx *f = *state;
	struct hsm_store_cfg bad = {0};
	char rel[] = "relative/dir";
	char err[512] = "";

	assert_string_equal(store_describe(f->store), f->url);
	assert_int_equal(store_pending(f->store), 0);
	/* A fresh store holds just its empty .tmp/ directory. */
	assert_tree(f, 0, 1);

	bad.kind = HSM_STORE_FILE;
	bad.url = "file://relative/dir";
	bad.file_root = rel;
	assert_null(store_open(f->loop, f->pool, &bad, err, sizeof(err)));
	assert_string_equal(err, "file store: root must be an absolute path");

	bad.kind = 99;
	err[0] = '\0';
	assert_null(store_open(f->loop, f->pool, &bad, err, sizeof(err)));
	assert_string_equal(err, "unknown object store kind 99");
}

static void test_roundtrip(void **state)
{
	struct fx *f = *state;
	size_t big = 5 * MIB;
	uint8_t *small = buf_new(f, 100), *large = buf_new(f, big);
	struct res *r[3];
	struct stat st;
	char path[400];

	fill(small, 100, 1);
	fill(large, big, 2);
	r[0] = put(f, "chunks/small", small, 100);
	r[1] = put(f, "empty", small, 0);
	r[2] = put(f, "chunks/deep/er/large", large, big);
	assert_int_equal(store_pending(f->store), 3);
	run(f);
	for (int i = 0; i < 3; i++) {
		assert_answered(r[i], 0);
		assert_false(r[i]->has_msg);
	}

	r[0] = get(f, "chunks/small", 0, 0);
	r[1] = get(f, "empty", 0, 0);
	r[2] = get(f, "chunks/deep/er/large", 0, 0);
	assert_int_equal(store_pending(f->store), 3);
	run(f);
	assert_bytes(r[0], small, 100);
	assert_bytes(r[1], small, 0);
	assert_bytes(r[2], large, big);

	/* One file per key under the root, of exactly the object's size. */
	snprintf(path, sizeof(path), "%s/chunks/deep/er/large", f->root);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, big);
	snprintf(path, sizeof(path), "%s/empty", f->root);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 0);
	assert_tmp_empty(f);
	/* tmp, chunks, chunks/deep, chunks/deep/er; three objects. */
	assert_tree(f, 3, 4);
}

/* The longest key accepted (512 bytes) works end to end; one byte more is refused. */
static void test_longest_key(void **state)
{
	struct fx *f = *state;
	char key[600];
	uint8_t *data = buf_new(f, 10);
	struct res *r;
	size_t n = 0;

	/* Components short enough for any file system (NAME_MAX 255). */
	while (n + 10 <= 510) {
		memcpy(key + n, "component/", 10);
		n += 10;
	}
	memset(key + n, 'z', 512 - n);
	key[512] = '\0';
	assert_int_equal(strlen(key), 512);
	assert_int_equal(store_key_valid(key), 1);
	fill(data, 10, 3);
	put_ok(f, key, data, 10);
	r = get(f, key, 0, 0);
	run(f);
	assert_bytes(r, data, 10);

	key[512] = 'z';
	key[513] = '\0';
	assert_int_equal(store_key_valid(key), 0);
	r = put(f, key, data, 10);
	run(f);
	assert_answered(r, EINVAL);
}

static void test_ranged_get(void **state)
{
	struct fx *f = *state;
	size_t size = MIB + 123;
	uint8_t *data = buf_new(f, size);
	struct res *r[9];

	fill(data, size, 4);
	put_ok(f, "obj", data, size);
	r[0] = get(f, "obj", 100, 1000);	    /* inside */
	r[1] = get(f, "obj", 0, size);		    /* exactly all */
	r[2] = get(f, "obj", 0, size + 5000);	    /* len past the end */
	r[3] = get(f, "obj", size - 10, 100);	    /* starts inside, ends past the end */
	r[4] = get(f, "obj", 12345, 0);		    /* len 0: to the end */
	r[5] = get(f, "obj", size, 10);		    /* at the end */
	r[6] = get(f, "obj", size + 4096, 10);	    /* past the end */
	r[7] = get(f, "obj", size - 1, 1);	    /* the last byte */
	r[8] = get(f, "obj", (uint64_t)1 << 62, 0); /* far past the end, to the end */
	run(f);
	assert_bytes(r[0], data + 100, 1000);
	assert_bytes(r[1], data, size);
	assert_bytes(r[2], data, size);
	assert_bytes(r[3], data + size - 10, 10);
	assert_bytes(r[4], data + 12345, size - 12345);
	assert_bytes(r[5], data, 0);
	assert_bytes(r[6], data, 0);
	assert_bytes(r[7], data + size - 1, 1);
	assert_bytes(r[8], data, 0);
}

static void test_head(void **state)
{
	struct fx *f = *state;
	uint8_t *data = buf_new(f, 4097);
	struct res *r[5];

	fill(data, 4097, 5);
	put_ok(f, "manifests/m1", data, 4097);
	put_ok(f, "manifests/zero", data, 0);
	r[0] = head(f, "manifests/m1");
	r[1] = head(f, "manifests/zero");
	r[2] = head(f, "manifests/missing");
	r[3] = head(f, "nodir/missing");
	/* A directory made for other keys is not an object. */
	r[4] = head(f, "manifests");
	run(f);
	assert_answered(r[0], 0);
	assert_int_equal(r[0]->exists, 1);
	assert_int_equal(r[0]->size, 4097);
	assert_answered(r[1], 0);
	assert_int_equal(r[1]->exists, 1);
	assert_int_equal(r[1]->size, 0);
	for (int i = 2; i < 5; i++) {
		assert_answered(r[i], 0);
		assert_false(r[i]->has_msg);
		assert_int_equal(r[i]->exists, 0);
	}
}

static void test_get_missing(void **state)
{
	struct fx *f = *state;
	struct res *r[3];

	put_ok(f, "chunks/present", "x", 1);
	r[0] = get(f, "chunks/absent-key-1", 0, 0);
	r[1] = get(f, "nodir/absent-key-2", 5, 10);
	/* A directory made for other keys is not an object. */
	r[2] = get(f, "chunks", 0, 0);
	run(f);
	assert_answered(r[0], ENOENT);
	assert_non_null(strstr(r[0]->msg, "chunks/absent-key-1"));
	assert_null(r[0]->data);
	assert_int_equal(r[0]->len, 0);
	assert_answered(r[1], ENOENT);
	assert_non_null(strstr(r[1]->msg, "nodir/absent-key-2"));
	assert_null(r[1]->data);
	assert_int_equal(r[1]->len, 0);
	/* head says no such object (test_head); get must agree. */
	assert_answered(r[2], ENOENT);
	assert_non_null(strstr(r[2]->msg, "'chunks'"));
	assert_null(r[2]->data);
}

static void test_delete(void **state)
{
	struct fx *f = *state;
	struct res *r[3];

	put_ok(f, "chunks/gone", "abc", 3);
	put_ok(f, "chunks/stays", "def", 3);
	r[0] = del(f, "chunks/gone");
	run(f);
	assert_answered(r[0], 0);
	assert_false(r[0]->has_msg);

	r[0] = head(f, "chunks/gone");
	r[1] = get(f, "chunks/gone", 0, 0);
	r[2] = del(f, "chunks/gone");
	run(f);
	assert_answered(r[0], 0);
	assert_int_equal(r[0]->exists, 0);
	assert_answered(r[1], ENOENT);
	assert_non_null(strstr(r[1]->msg, "chunks/gone"));
	assert_answered(r[2], ENOENT);
	assert_non_null(strstr(r[2]->msg, "chunks/gone"));

	r[0] = del(f, "never/was");
	r[1] = get(f, "chunks/stays", 0, 0);
	run(f);
	assert_answered(r[0], ENOENT);
	assert_non_null(strstr(r[0]->msg, "never/was"));
	assert_bytes(r[1], (const uint8_t *)"def", 3);
}

static void test_list(void **state)
{
	struct fx *f = *state;
	static const char *const chunks[] = {"chunks/a1", "chunks/b2", "chunks/sub/c3"};
	static const char *const all[] = {"chunks/a1", "chunks/b2",    "chunks/sub/c3",
					  "chunksX",   "manifests/m1", "top"};
	static const char *const chunks_any[] = {"chunks/a1", "chunks/b2", "chunks/sub/c3",
						 "chunksX"};
	static const char *const a_only[] = {"chunks/a1"};
	struct res *r[7];
	char leftover[2][300];
	int fd;

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		put_ok(f, all[i], all[i], strlen(all[i]));
	/* What a put interrupted by a crash leaves behind is not an object, whatever its
	 * name. */
	snprintf(leftover[0], sizeof(leftover[0]), "%s/.tmp/put.1.0x1", f->root);
	snprintf(leftover[1], sizeof(leftover[1]), "%s/.tmp/partial", f->root);
	for (int i = 0; i < 2; i++) {
		fd = open(leftover[i], O_WRONLY | O_CREAT | O_EXCL, 0644);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, "partial", 7), 7);
		assert_int_equal(close(fd), 0);
	}
	r[0] = list(f, "chunks/");
	r[1] = list(f, "");
	r[2] = list(f, "chunks");
	r[3] = list(f, "chunks/a");
	r[4] = list(f, "nothing/");
	r[5] = list(f, "chunks/sub/");
	r[6] = list(f, "tmp/");
	assert_int_equal(store_pending(f->store), 7);
	run(f);
	assert_keys(r[0], chunks, 3);
	/* The backend's .tmp/ directory never shows. */
	assert_keys(r[1], all, 6);
	/* A prefix is a string prefix, as in S3, not a directory. */
	assert_keys(r[2], chunks_any, 4);
	assert_keys(r[3], a_only, 1);
	assert_keys(r[4], NULL, 0);
	assert_keys(r[5], chunks + 2, 1);
	assert_keys(r[6], NULL, 0);
	assert_int_equal(unlink(leftover[0]), 0);
	assert_int_equal(unlink(leftover[1]), 0);

	/* Deleted keys leave the listing. */
	r[0] = del(f, "chunks/b2");
	run(f);
	assert_answered(r[0], 0);
	r[0] = list(f, "chunks/");
	run(f);
	{
		static const char *const left[] = {"chunks/a1", "chunks/sub/c3"};

		assert_keys(r[0], left, 2);
	}
}

/* Every bad key is refused with EINVAL through its callback, later, on the loop thread,
 * and nothing is written anywhere. */
static void test_bad_keys(void **state)
{
	struct fx *f = *state;
	char long_key[601], escape[300], msg_key[520];
	const char *bad[] = {"",	  "/abs",	 "a/../b",     "a//b",	 "with space",
			     long_key,	  "a/./b",	 "..",	       ".tmp/x", "a/.hidden",
			     ".",	  "a/",		 "../b",       "a/..",	 "./a",
			     "tab\there", "new\nline",	 "semi;colon", "quote'", "back\\slash",
			     "star*",	  "caf\xc3\xa9", escape};
	size_t nbad = sizeof(bad) / sizeof(bad[0]);
	uint8_t *data = buf_new(f, 16);

	memset(long_key, 'a', 600);
	long_key[600] = '\0';
	/* An absolute key naming a file inside the root: it would land there if the
	 * backend were handed it. */
	snprintf(escape, sizeof(escape), "%s/escaped", f->root);
	fill(data, 16, 6);

	for (size_t i = 0; i < nbad; i++) {
		struct res *r[5];

		assert_int_equal(store_key_valid(bad[i]), 0);
		r[0] = put(f, bad[i], data, 16);
		r[1] = get(f, bad[i], 0, 0);
		r[2] = head(f, bad[i]);
		r[3] = del(f, bad[i]);
		r[4] = NULL;
		/* A listing prefix may end in '/' (and "" lists all); others are checked
		 * like keys. */
		if (bad[i][0] && strcmp(bad[i], "a/") != 0)
			r[4] = list(f, bad[i]);
		for (int k = 0; k < 5; k++)
			if (r[k])
				assert_int_equal(r[k]->calls, 0);
		assert_int_equal(store_pending(f->store), r[4] ? 5 : 4);
		run(f);
		snprintf(msg_key, sizeof(msg_key), "'%.512s'", bad[i]);
		for (int k = 0; k < 5; k++) {
			if (!r[k])
				continue;
			assert_answered(r[k], EINVAL);
			if (strlen(bad[i]) <= 512 && !strstr(r[k]->msg, msg_key))
				fail_msg("key %zu: message '%s' does not name the key", i,
					 r[k]->msg);
		}
		assert_null(r[1]->data);
		assert_int_equal(r[1]->len, 0);
		assert_int_equal(r[2]->exists, 0);
		if (r[4])
			assert_int_equal(r[4]->n, 0);
		/* Reset the slots so the test can use many more than NRES requests. */
		for (int k = 0; k < 5; k++)
			if (r[k])
				res_clear(r[k]);
		f->nres -= r[4] ? 5 : 4;
	}
	/* Nothing was written: the root holds only the empty .tmp/ directory. */
	assert_tree(f, 0, 1);
	assert_tmp_empty(f);
}

/* A put over an existing object replaces it whole: readers racing with the replacement
 * see all of the old or all of the new object, never a mix, and no temporary file is
 * left behind. */
static void test_replace_atomic(void **state)
{
	struct fx *f = *state;
	size_t alen = MIB, blen = 2 * MIB + 7;
	uint8_t *a = buf_new(f, alen), *b = buf_new(f, blen);
	struct res *r[17];
	unsigned saw_a = 0, saw_b = 0;

	fill(a, alen, 7);
	fill(b, blen, 8);
	put_ok(f, "x/obj", a, alen);
	/* One put and sixteen gets in flight together on four pool threads. */
	r[0] = get(f, "x/obj", 0, 0);
	r[1] = get(f, "x/obj", 0, 0);
	r[2] = put(f, "x/obj", b, blen);
	for (int i = 3; i < 17; i++)
		r[i] = get(f, "x/obj", 0, 0);
	run(f);
	assert_answered(r[2], 0);
	for (int i = 0; i < 17; i++) {
		if (i == 2)
			continue;
		assert_answered(r[i], 0);
		if (r[i]->len == alen && memcmp(r[i]->data, a, alen) == 0)
			saw_a++;
		else if (r[i]->len == blen && memcmp(r[i]->data, b, blen) == 0)
			saw_b++;
		else
			fail_msg("get %d saw %zu bytes that are neither object", i, r[i]->len);
	}
	assert_int_equal(saw_a + saw_b, 16);

	r[0] = get(f, "x/obj", 0, 0);
	r[1] = head(f, "x/obj");
	run(f);
	assert_bytes(r[0], b, blen);
	assert_int_equal(r[1]->exists, 1);
	assert_int_equal(r[1]->size, blen);

	/* A shorter object replaces a longer one without leftovers at its end. */
	put_ok(f, "x/obj", a, 10);
	r[0] = get(f, "x/obj", 0, 0);
	run(f);
	assert_bytes(r[0], a, 10);

	assert_tmp_empty(f);
	/* tmp and x; one object. */
	assert_tree(f, 1, 2);
}

/* Many requests of every kind in flight at once: each callback runs exactly once, on
 * the loop thread, and store_pending counts them until then. Reads and deletes touch
 * different keys, so every answer is known whatever order the pool runs them in. */
static void test_many_in_flight(void **state)
{
	struct fx *f = *state;
	char keys[40][32];
	uint8_t *data = buf_new(f, 40 * 64);
	struct res *r[100];
	unsigned n = 0;

	fill(data, 40 * 64, 9);
	for (int i = 0; i < 40; i++) {
		snprintf(keys[i], sizeof(keys[i]), "chunks/k%02d", i);
		r[n++] = put(f, keys[i], data + i * 64, 64);
	}
	assert_int_equal(store_pending(f->store), 40);
	run(f);
	for (unsigned i = 0; i < n; i++)
		assert_answered(r[i], 0);
	f->nres = 0;

	n = 0;
	for (int i = 0; i < 20; i++) {
		r[n++] = get(f, keys[i], (uint64_t)i, 10);
		r[n++] = head(f, keys[i]);
		r[n++] = get(f, "chunks/none", 0, 0);
		r[n++] = put(f, "bad//key", data, 1);
		if (i % 2)
			r[n++] = del(f, keys[20 + i]);
		else
			r[n++] = list(f, "chunks/");
	}
	assert_int_equal(store_pending(f->store), 100);
	run(f);
	for (int i = 0; i < 20; i++) {
		struct res **q = &r[i * 5];

		assert_bytes(q[0], data + i * 64 + i, 10);
		assert_answered(q[1], 0);
		assert_int_equal(q[1]->exists, 1);
		assert_int_equal(q[1]->size, 64);
		assert_answered(q[2], ENOENT);
		assert_answered(q[3], EINVAL);
		assert_answered(q[4], 0);
		/* A listing racing with the deletes holds the 30 keys that stay and any
		 * of the 10 being deleted. */
		if (i % 2 == 0 && (q[4]->n < 30 || q[4]->n > 40))
			fail_msg("listing %d has %zu keys", i, q[4]->n);
	}
	assert_int_equal(f->outstanding, 0);
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(r[i]->calls, 1);

	r[0] = list(f, "chunks/");
	run(f);
	assert_answered(r[0], 0);
	assert_int_equal(r[0]->n, 30);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_open_and_describe, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_longest_key, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ranged_get, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_head, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_get_missing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_list, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_keys, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_replace_atomic, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_many_in_flight, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests of the leveldb catalog (hsmd/catalog.c): codecs, the path index, the
 * journal, scans, and damage that must be reported rather than skipped. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <leveldb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hsmd/catalog.h"

#define ERRLEN 512
#define NSCALE 100000

struct fixture {
	char dir[256];
};

/* ---- helpers ----------------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR");

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "%s/test_catalog.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int rc = nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);

	free(f);
	return rc;
}

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* A fid that depends only on n, spread over the key space like a random one. */
static void fid_of(uint64_t n, struct hsm_fid *fid)
{
	uint64_t s = n * 2654435761u + 1, a = splitmix(&s), b = splitmix(&s);

	memcpy(fid->b, &a, 8);
	memcpy(fid->b + 8, &b, 8);
}

static void fid_hex(const struct hsm_fid *fid, char out[33])
{
	for (int i = 0; i < 16; i++)
		sprintf(out + 2 * i, "%02x", fid->b[i]);
}

/* A resident file as the scanner would first record it: a typical 30-byte path. */
static void rec_typical(struct cat_record *r, uint64_t n, char *pathbuf, size_t pathlen)
{
	memset(r, 0, sizeof(*r));
	fid_of(n, &r->fid);
	strcpy(r->volume, "proj");
	snprintf(pathbuf, pathlen, "home/alice/docs/rep_%06llu.pdf", (unsigned long long)n);
	r->path = pathbuf;
	r->state = HSM_STATE_RESIDENT;
	r->size = 1843200;
	r->version = 3;
	r->mtime_sec = 1732230000;
	r->mtime_nsec = 123456789;
	strcpy(r->owner, "ny");
}

/* The same file once archived: a manifest id and the ctime seen after archiving. */
static void rec_archived(struct cat_record *r, uint64_t n, char *pathbuf, size_t pathlen)
{
	uint64_t s = n;

	rec_typical(r, n, pathbuf, pathlen);
	r->state = HSM_STATE_ARCHIVED;
	r->archived_version = 3;
	r->archived_ctime_sec = 1732230100;
	r->archived_ctime_nsec = 987654321;
	for (int i = 0; i < 32; i += 8) {
		uint64_t v = splitmix(&s);

		memcpy(r->manifest_id + i, &v, 8);
	}
}

static void assert_rec_equal(const struct cat_record *a, const struct cat_record *b)
{
	assert_memory_equal(a->fid.b, b->fid.b, 16);
	assert_string_equal(a->volume, b->volume);
	assert_string_equal(a->path, b->path);
	assert_int_equal(a->state, b->state);
	assert_int_equal(a->flags, b->flags);
	assert_true(a->size == b->size);
	assert_true(a->version == b->version);
	assert_true(a->archived_version == b->archived_version);
	assert_true(a->mtime_sec == b->mtime_sec);
	assert_int_equal(a->mtime_nsec, b->mtime_nsec);
	assert_true(a->archived_ctime_sec == b->archived_ctime_sec);
	assert_int_equal(a->archived_ctime_nsec, b->archived_ctime_nsec);
	assert_true(a->ino == b->ino);
	assert_memory_equal(a->manifest_id, b->manifest_id, 32);
	assert_string_equal(a->owner, b->owner);
}

static struct catalog *open_ok(const char *dir)
{
	char err[ERRLEN] = "";
	struct catalog *c = catalog_open(dir, 0, err, sizeof(err));

	if (!c)
		print_error("catalog_open: %s\n", err);
	assert_non_null(c);
	return c;
}

static void put_ok(struct catalog *c, const struct cat_record *r, int op)
{
	char err[ERRLEN] = "";
	int rc = catalog_put(c, r, op, err, sizeof(err));

	if (rc)
		print_error("catalog_put: %s\n", err);
	assert_int_equal(rc, 0);
}

/* Raw leveldb access, to plant what a buggy writer or a bad disk would leave. */
static leveldb_t *raw_open(const char *dir, leveldb_options_t **opts)
{
	char *lerr = NULL;
	leveldb_t *db;

	*opts = leveldb_options_create();
	db = leveldb_open(*opts, dir, &lerr);
	if (lerr)
		print_error("raw open: %s\n", lerr);
	assert_null(lerr);
	return db;
}

static void raw_close(leveldb_t *db, leveldb_options_t *opts)
{
	leveldb_close(db);
	leveldb_options_destroy(opts);
}

static void raw_put(const char *dir, const void *k, size_t klen, const void *v, size_t vlen)
{
	leveldb_options_t *o;
	leveldb_t *db = raw_open(dir, &o);
	leveldb_writeoptions_t *w = leveldb_writeoptions_create();
	char *lerr = NULL;

	leveldb_put(db, w, k, klen, v, vlen, &lerr);
	assert_null(lerr);
	leveldb_writeoptions_destroy(w);
	raw_close(db, o);
}

static void raw_delete(const char *dir, const void *k, size_t klen)
{
	leveldb_options_t *o;
	leveldb_t *db = raw_open(dir, &o);
	leveldb_writeoptions_t *w = leveldb_writeoptions_create();
	char *lerr = NULL;

	leveldb_delete(db, w, k, klen, &lerr);
	assert_null(lerr);
	leveldb_writeoptions_destroy(w);
	raw_close(db, o);
}

/* Returns a malloc'd copy of the value (leveldb's own allocation), NULL if absent. */
static char *raw_get(const char *dir, const void *k, size_t klen, size_t *vlen)
{
	leveldb_options_t *o;
	leveldb_t *db = raw_open(dir, &o);
	leveldb_readoptions_t *r = leveldb_readoptions_create();
	char *lerr = NULL, *v;

	v = leveldb_get(db, r, k, klen, vlen, &lerr);
	assert_null(lerr);
	leveldb_readoptions_destroy(r);
	raw_close(db, o);
	return v;
}

static void raw_compact(const char *dir)
{
	leveldb_options_t *o;
	leveldb_t *db = raw_open(dir, &o);

	leveldb_compact_range(db, NULL, 0, NULL, 0);
	raw_close(db, o);
}

static uint64_t dir_bytes(const char *dir, uint64_t *blocks)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	uint64_t total = 0;

	assert_non_null(d);
	*blocks = 0;
	while ((de = readdir(d))) {
		char p[512];
		struct stat st;

		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
			total += (uint64_t)st.st_size;
			*blocks += (uint64_t)st.st_blocks * 512;
		}
	}
	closedir(d);
	return total;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- record codec ------------------------------------------------------------------ */

static void test_record_roundtrip_all_fields(void **state)
{
	struct cat_record in, out;
	uint8_t *buf;
	size_t len;

	(void)state;
	memset(&in, 0, sizeof(in));
	for (int i = 0; i < 16; i++)
		in.fid.b[i] = (uint8_t)(0xf0 + i);
	strcpy(in.volume, "abcdefghijklmnopqrstuvwxyz012345"); /* 32: the longest */
	in.path = "a/b/c d/\xc3\xa9t\xc3\xa9.txt";
	in.state = HSM_STATE_STUB;
	in.flags = HSM_FLAG_PINNED | HSM_FLAG_NOARCHIVE | HSM_FLAG_ON_ACCESS;
	in.size = UINT64_MAX;
	in.version = UINT64_MAX - 1;
	in.archived_version = 1ull << 63;
	in.mtime_sec = INT64_MIN;
	in.mtime_nsec = 999999999;
	in.archived_ctime_sec = INT64_MAX;
	in.archived_ctime_nsec = 1;
	for (int i = 0; i < 32; i++)
		in.manifest_id[i] = (uint8_t)(i * 7 + 1);
	strcpy(in.owner, "zyxwvutsrqponmlkjihgfedcba543210");
	in.ino = UINT64_MAX; /* the inode that carries the fid: tells copies apart */

	buf = cat_record_encode(&in, &len);
	assert_non_null(buf);
	assert_int_equal(cat_record_decode(buf, len, &out), 0);
	assert_rec_equal(&in, &out);
	cat_record_clear(&out);
	assert_null(out.path);
	free(buf);

	/* negative times other than the extreme, and an empty owner */
	in.mtime_sec = -1;
	in.archived_ctime_sec = -86400;
	in.owner[0] = '\0';
	in.ino = 12;
	buf = cat_record_encode(&in, &len);
	assert_non_null(buf);
	assert_int_equal(cat_record_decode(buf, len, &out), 0);
	assert_rec_equal(&in, &out);
	cat_record_clear(&out);
	free(buf);
}

static void test_record_sizes(void **state)
{
	struct cat_record in, out;
	char path[64];
	uint8_t *buf;
	size_t len_res, len_arc;

	(void)state;
	rec_typical(&in, 42, path, sizeof(path));
	assert_int_equal(strlen(in.path), 30);
	buf = cat_record_encode(&in, &len_res);
	assert_non_null(buf);
	assert_int_equal(cat_record_decode(buf, len_res, &out), 0);
	assert_rec_equal(&in, &out);
	cat_record_clear(&out);
	free(buf);

	rec_archived(&in, 42, path, sizeof(path));
	buf = cat_record_encode(&in, &len_arc);
	assert_non_null(buf);
	assert_int_equal(cat_record_decode(buf, len_arc, &out), 0);
	assert_rec_equal(&in, &out);
	cat_record_clear(&out);
	free(buf);

	/* The sizes docs/catalog.md works out byte by byte: a change of format shows here. */
	printf("# record bytes, 30-byte path: resident %zu, archived %zu\n", len_res, len_arc);
	assert_int_equal(len_res, 73);
	assert_int_equal(len_arc, 115);
}

static void test_record_zero_optionals(void **state)
{
	struct cat_record in, out;
	uint8_t *buf;
	size_t len;

	(void)state;
	memset(&in, 0, sizeof(in));
	strcpy(in.volume, "v");
	in.path = "x";
	in.state = HSM_STATE_RESIDENT;
	buf = cat_record_encode(&in, &len);
	assert_non_null(buf);
	/* header 4, fid 16, five one-byte varints, volume 2, owner 1, path 2 */
	assert_int_equal(len, 30);
	assert_int_equal(cat_record_decode(buf, len, &out), 0);
	assert_rec_equal(&in, &out);
	cat_record_clear(&out);
	free(buf);
}

static void test_record_max_path(void **state)
{
	struct cat_record in, out;
	char *path = malloc(4098);
	uint8_t *buf;
	size_t len;

	(void)state;
	assert_non_null(path);
	memset(path, 'a', 4097);
	for (int i = 100; i < 4096; i += 100)
		path[i] = '/';
	path[4096] = '\0';
	memset(&in, 0, sizeof(in));
	fid_of(1, &in.fid);
	strcpy(in.volume, "vol");
	strcpy(in.owner, "ldn");
	in.path = path;
	in.state = HSM_STATE_ARCHIVED;
	buf = cat_record_encode(&in, &len);
	assert_non_null(buf);
	assert_int_equal(cat_record_decode(buf, len, &out), 0);
	assert_int_equal(strlen(out.path), 4096);
	assert_rec_equal(&in, &out);
	cat_record_clear(&out);
	free(buf);

	path[4096] = 'a';
	path[4097] = '\0';
	errno = 0;
	assert_null(cat_record_encode(&in, &len));
	assert_int_equal(errno, EINVAL);
	free(path);
}

static void test_record_encode_rejects_invalid(void **state)
{
	struct cat_record base, r;
	char path[64];
	size_t len;

	(void)state;
	rec_typical(&base, 7, path, sizeof(path));

	r = base;
	r.volume[0] = '\0';
	assert_null(cat_record_encode(&r, &len));
	r = base;
	memset(r.volume, 'v', sizeof(r.volume)); /* 33 bytes, no terminator */
	assert_null(cat_record_encode(&r, &len));
	r = base;
	memset(r.owner, 'o', sizeof(r.owner));
	assert_null(cat_record_encode(&r, &len));
	r = base;
	r.path = NULL;
	assert_null(cat_record_encode(&r, &len));
	r = base;
	r.path = "";
	assert_null(cat_record_encode(&r, &len));
	r = base;
	r.path = "/etc/passwd";
	assert_null(cat_record_encode(&r, &len));
	r = base;
	r.state = 0;
	assert_null(cat_record_encode(&r, &len));
	r.state = HSM_STATE_STUB + 1;
	assert_null(cat_record_encode(&r, &len));
	r = base;
	r.flags = 0x08;
	assert_null(cat_record_encode(&r, &len));
	r = base;
	r.mtime_nsec = 1000000000;
	assert_null(cat_record_encode(&r, &len));
	r = base;
	r.archived_ctime_nsec = 1000000000;
	assert_null(cat_record_encode(&r, &len));
	assert_null(cat_record_encode(NULL, &len));
}

static void check_truncations(const struct cat_record *in)
{
	struct cat_record out;
	uint8_t *buf, *copy;
	size_t len;

	buf = cat_record_encode(in, &len);
	assert_non_null(buf);
	/* each prefix in its own allocation, so ASan and valgrind see any read past it */
	for (size_t n = 0; n < len; n++) {
		copy = malloc(n ? n : 1);
		assert_non_null(copy);
		memcpy(copy, buf, n);
		memset(&out, 0, sizeof(out));
		assert_int_equal(cat_record_decode(copy, n, &out), -1);
		assert_null(out.path);
		free(copy);
	}
	copy = malloc(len + 1);
	assert_non_null(copy);
	memcpy(copy, buf, len);
	copy[len] = 'x';
	assert_int_equal(cat_record_decode(copy, len + 1, &out), -1);
	copy[0] = 2; /* a format this code does not know */
	assert_int_equal(cat_record_decode(copy, len, &out), -1);
	free(copy);
	free(buf);
}

static void test_record_decode_truncated(void **state)
{
	struct cat_record in;
	char path[64], *big = malloc(4097);

	(void)state;
	rec_typical(&in, 9, path, sizeof(path));
	check_truncations(&in);
	rec_archived(&in, 9, path, sizeof(path));
	check_truncations(&in);

	assert_non_null(big);
	memset(big, 'p', 4096);
	big[4096] = '\0';
	in.path = big;
	check_truncations(&in);
	free(big);
	assert_int_equal(cat_record_decode(NULL, 0, &in), -1);
}

static void put_varint5(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 4; i++, v >>= 7)
		p[i] = (uint8_t)(v | 0x80);
	p[4] = (uint8_t)v;
}

/* Nanoseconds of 1e9 or more are well-formed varints but not times. */
static void test_record_decode_bad_nsec(void **state)
{
	struct cat_record in, out;
	uint8_t *buf;
	size_t len;

	(void)state;
	memset(&in, 0, sizeof(in));
	strcpy(in.volume, "v");
	in.path = "x";
	in.state = HSM_STATE_RESIDENT;
	in.mtime_nsec = 999999999;
	in.archived_ctime_nsec = 999999999;
	buf = cat_record_encode(&in, &len);
	assert_non_null(buf);
	/* size, version, archived_version, mtime_sec: one byte each from offset 20 */
	assert_int_equal(buf[24] & 0x80, 0x80);
	assert_int_equal(cat_record_decode(buf, len, &out), 0);
	cat_record_clear(&out);
	put_varint5(buf + 24, 1000000000);
	assert_int_equal(cat_record_decode(buf, len, &out), -1);
	put_varint5(buf + 24, 999999999);
	put_varint5(buf + 30, 1000000000); /* after archived_ctime_sec at 29 */
	assert_int_equal(cat_record_decode(buf, len, &out), -1);
	put_varint5(buf + 30, 999999999);
	assert_int_equal(cat_record_decode(buf, len, &out), 0);
	cat_record_clear(&out);
	free(buf);
}

/* Any single changed byte either fails to decode or yields a record that encodes back
 * to exactly the bytes given: the decoder accepts one spelling of each record. */
static void test_record_decode_mutations(void **state)
{
	struct cat_record in, out;
	char path[64];
	uint8_t *buf, *m, *re;
	size_t len, relen;
	unsigned accepted = 0, rejected = 0;
	uint64_t s = 12345;

	(void)state;
	rec_archived(&in, 5, path, sizeof(path));
	buf = cat_record_encode(&in, &len);
	assert_non_null(buf);
	m = malloc(len);
	assert_non_null(m);
	for (size_t i = 0; i < len; i++) {
		for (unsigned v = 0; v < 256; v++) {
			memcpy(m, buf, len);
			m[i] = (uint8_t)v;
			if (cat_record_decode(m, len, &out) < 0) {
				rejected++;
				continue;
			}
			accepted++;
			re = cat_record_encode(&out, &relen);
			assert_non_null(re);
			assert_int_equal(relen, len);
			assert_memory_equal(re, m, len);
			free(re);
			cat_record_clear(&out);
		}
	}
	free(m);
	free(buf);
	assert_true(rejected > 0 && accepted > 0);

	/* random garbage of every small length */
	for (int round = 0; round < 20000; round++) {
		size_t n = splitmix(&s) % 160;
		uint8_t *g = malloc(n ? n : 1);

		assert_non_null(g);
		for (size_t i = 0; i < n; i++)
			g[i] = (uint8_t)splitmix(&s);
		if (round % 2 && n)
			g[0] = 1; /* get past the format byte half the time */
		if (cat_record_decode(g, n, &out) == 0)
			cat_record_clear(&out);
		free(g);
	}
}

/* ---- put / get / path index -------------------------------------------------------- */

static void test_put_get_lookup(void **state)
{
	struct fixture *f = *state;
	struct catalog *c = open_ok(f->dir);
	struct cat_record in, out;
	struct hsm_fid fid, other;
	char path[64], err[ERRLEN];

	rec_archived(&in, 1, path, sizeof(path));
	put_ok(c, &in, 0);
	assert_int_equal(catalog_get(c, &in.fid, &out, err, sizeof(err)), 0);
	assert_rec_equal(&in, &out);
	cat_record_clear(&out);
	assert_int_equal(catalog_lookup_path(c, "proj", in.path, &fid, err, sizeof(err)), 0);
	assert_memory_equal(fid.b, in.fid.b, 16);
	assert_int_equal(catalog_journal_head(c), 0);

	/* missing: a fid never stored, a path never stored, the same path in another volume */
	fid_of(999, &other);
	assert_int_equal(catalog_get(c, &other, &out, err, sizeof(err)), 1);
	assert_int_equal(catalog_lookup_path(c, "proj", "nope", &fid, err, sizeof(err)), 1);
	assert_int_equal(catalog_lookup_path(c, "other", in.path, &fid, err, sizeof(err)), 1);

	/* update in place keeps one index entry */
	in.size = 5;
	in.version = 4;
	put_ok(c, &in, 0);
	assert_int_equal(catalog_get(c, &in.fid, &out, err, sizeof(err)), 0);
	assert_true(out.size == 5 && out.version == 4);
	cat_record_clear(&out);
	assert_int_equal(catalog_lookup_path(c, "proj", in.path, &fid, err, sizeof(err)), 0);
	assert_memory_equal(fid.b, in.fid.b, 16);
	catalog_close(c);

	/* it is on disk, not only in memory */
	c = open_ok(f->dir);
	assert_int_equal(catalog_get(c, &in.fid, &out, err, sizeof(err)), 0);
	assert_rec_equal(&in, &out);
	cat_record_clear(&out);
	catalog_close(c);
}

static void test_put_moves_path(void **state)
{
	struct fixture *f = *state;
	struct catalog *c = open_ok(f->dir);
	struct cat_record a, b;
	struct hsm_fid fid;
	char pa[64], pb[64], err[ERRLEN];

	rec_typical(&a, 1, pa, sizeof(pa));
	put_ok(c, &a, CAT_J_CREATE);

	/* rename: old name gone, new one points at the fid */
	a.path = "home/alice/docs/renamed.pdf";
	put_ok(c, &a, CAT_J_RENAME);
	assert_int_equal(catalog_lookup_path(c, "proj", pa, &fid, err, sizeof(err)), 1);
	assert_int_equal(catalog_lookup_path(c, "proj", a.path, &fid, err, sizeof(err)), 0);
	assert_memory_equal(fid.b, a.fid.b, 16);

	/* same path, other volume: the entry moves between volumes */
	strcpy(a.volume, "arch");
	put_ok(c, &a, 0);
	assert_int_equal(catalog_lookup_path(c, "proj", a.path, &fid, err, sizeof(err)), 1);
	assert_int_equal(catalog_lookup_path(c, "arch", a.path, &fid, err, sizeof(err)), 0);
	assert_memory_equal(fid.b, a.fid.b, 16);

	/* a's old name was taken by b before a's move was recorded: b keeps it */
	rec_typical(&b, 2, pb, sizeof(pb));
	strcpy(b.volume, "arch");
	b.path = "home/alice/docs/renamed.pdf";
	put_ok(c, &b, CAT_J_CREATE);
	a.path = "elsewhere.pdf";
	put_ok(c, &a, CAT_J_RENAME);
	assert_int_equal(catalog_lookup_path(c, "arch", b.path, &fid, err, sizeof(err)), 0);
	assert_memory_equal(fid.b, b.fid.b, 16);
	assert_int_equal(catalog_lookup_path(c, "arch", a.path, &fid, err, sizeof(err)), 0);
	assert_memory_equal(fid.b, a.fid.b, 16);
	catalog_close(c);
}

static int collect_count(const struct cat_record *rec, void *arg)
{
	(void)rec;
	(*(int *)arg)++;
	return 0;
}

struct jlist {
	int n;
	struct cat_journal_entry e[16];
	char path[16][64];
	char old[16][64];
};

static int collect_journal(const struct cat_journal_entry *e, void *arg)
{
	struct jlist *l = arg;

	assert_true(l->n < 16);
	l->e[l->n] = *e;
	/* the entry's strings are the scan's: copy what the test looks at */
	snprintf(l->path[l->n], 64, "%s", e->path);
	l->e[l->n].path = l->path[l->n];
	if (e->old_path) {
		snprintf(l->old[l->n], 64, "%s", e->old_path);
		l->e[l->n].old_path = l->old[l->n];
	}
	l->n++;
	return 0;
}

static void test_delete(void **state)
{
	struct fixture *f = *state;
	struct catalog *c = open_ok(f->dir);
	struct cat_record a, b, out;
	struct hsm_fid fid;
	struct jlist jl = { 0 };
	char pa[64], pb[64], err[ERRLEN];
	int n = 0;

	rec_typical(&a, 1, pa, sizeof(pa));
	rec_typical(&b, 2, pb, sizeof(pb));
	put_ok(c, &a, CAT_J_CREATE);
	put_ok(c, &b, CAT_J_CREATE);
	assert_int_equal(catalog_delete(c, &a.fid, err, sizeof(err)), 0);
	assert_int_equal(catalog_get(c, &a.fid, &out, err, sizeof(err)), 1);
	assert_int_equal(catalog_lookup_path(c, "proj", pa, &fid, err, sizeof(err)), 1);
	assert_int_equal(catalog_get(c, &b.fid, &out, err, sizeof(err)), 0);
	cat_record_clear(&out);
	assert_int_equal(catalog_foreach(c, collect_count, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 1);

	/* absent: 1, and nothing journaled */
	assert_int_equal(catalog_delete(c, &a.fid, err, sizeof(err)), 1);
	assert_int_equal(catalog_journal_head(c), 3);
	assert_int_equal(catalog_journal_foreach(c, 2, collect_journal, &jl, err, sizeof(err)), 0);
	assert_int_equal(jl.n, 1);
	assert_int_equal(jl.e[0].seq, 3);
	assert_int_equal(jl.e[0].op, CAT_J_DELETE);
	assert_memory_equal(jl.e[0].fid.b, a.fid.b, 16);
	assert_string_equal(jl.e[0].path, pa);
	assert_string_equal(jl.e[0].volume, "proj");
	assert_true(jl.e[0].version == a.version);
	catalog_close(c);
}

/* A hard link's other name goes away: the index entry only, the record stays. */
static void test_unlink_path(void **state)
{
	struct fixture *f = *state;
	struct catalog *c = open_ok(f->dir);
	struct cat_record a, out;
	struct hsm_fid fid;
	char pa[64], err[ERRLEN];

	rec_typical(&a, 1, pa, sizeof(pa));
	put_ok(c, &a, 0);
	assert_int_equal(catalog_unlink_path(c, "proj", pa, err, sizeof(err)), 0);
	assert_int_equal(catalog_lookup_path(c, "proj", pa, &fid, err, sizeof(err)), 1);
	assert_int_equal(catalog_get(c, &a.fid, &out, err, sizeof(err)), 0);
	cat_record_clear(&out);
	/* unlinking a name that is not there is not an error */
	assert_int_equal(catalog_unlink_path(c, "proj", pa, err, sizeof(err)), 0);
	/* and delete copes with the record's own name being gone already */
	assert_int_equal(catalog_delete(c, &a.fid, err, sizeof(err)), 0);
	assert_int_equal(catalog_get(c, &a.fid, &out, err, sizeof(err)), 1);
	catalog_close(c);
}

struct links {
	int n;
	char path[4][64];
};

static int collect_link(const char *volume, const char *path, void *arg)
{
	struct links *l = arg;

	assert_string_equal(volume, "proj");
	assert_true(l->n < 4);
	snprintf(l->path[l->n++], sizeof(l->path[0]), "%s", path);
	return 0;
}

/* Second names of a file: indexed both ways, never journaled; the record taking one
 * of them (a move) or the file going away drops the reverse keys. */
static void test_link_path(void **state)
{
	struct fixture *f = *state;
	struct catalog *c = open_ok(f->dir);
	struct cat_record a, b, out;
	struct hsm_fid fid;
	struct links l;
	char pa[64], pb[64], err[ERRLEN];
	uint64_t head;

	rec_typical(&a, 1, pa, sizeof(pa));
	rec_typical(&b, 2, pb, sizeof(pb));
	put_ok(c, &a, CAT_J_CREATE);
	put_ok(c, &b, CAT_J_CREATE);
	head = catalog_journal_head(c);
	assert_int_equal(catalog_link_path(c, "proj", "x/second", &a.fid, err, sizeof(err)), 0);
	assert_int_equal(catalog_link_path(c, "proj", "x/third", &a.fid, err, sizeof(err)), 0);
	assert_true(catalog_journal_head(c) == head);
	assert_int_equal(catalog_lookup_path(c, "proj", "x/second", &fid, err, sizeof(err)), 0);
	assert_memory_equal(fid.b, a.fid.b, 16);
	memset(&l, 0, sizeof(l));
	assert_int_equal(catalog_foreach_link(c, &a.fid, collect_link, &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, 2);
	assert_string_equal(l.path[0], "x/second");
	assert_string_equal(l.path[1], "x/third");
	/* another file's links are its own */
	memset(&l, 0, sizeof(l));
	assert_int_equal(catalog_foreach_link(c, &b.fid, collect_link, &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, 0);
	/* a name goes away: both keys */
	assert_int_equal(catalog_unlink_path(c, "proj", "x/third", err, sizeof(err)), 0);
	assert_int_equal(catalog_lookup_path(c, "proj", "x/third", &fid, err, sizeof(err)), 1);
	memset(&l, 0, sizeof(l));
	assert_int_equal(catalog_foreach_link(c, &a.fid, collect_link, &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, 1);
	/* the record moves to its second name: no longer a second name */
	a.path = "x/second";
	put_ok(c, &a, CAT_J_RENAME);
	memset(&l, 0, sizeof(l));
	assert_int_equal(catalog_foreach_link(c, &a.fid, collect_link, &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, 0);
	assert_int_equal(catalog_lookup_path(c, "proj", pa, &fid, err, sizeof(err)), 1);
	assert_int_equal(catalog_get(c, &a.fid, &out, err, sizeof(err)), 0);
	assert_string_equal(out.path, "x/second");
	cat_record_clear(&out);
	/* delete drops every remaining second name's reverse key */
	assert_int_equal(catalog_link_path(c, "proj", "x/fourth", &a.fid, err, sizeof(err)), 0);
	assert_int_equal(catalog_delete(c, &a.fid, err, sizeof(err)), 0);
	memset(&l, 0, sizeof(l));
	assert_int_equal(catalog_foreach_link(c, &a.fid, collect_link, &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, 0);
	catalog_close(c);
}

static void test_bad_input_changes_nothing(void **state)
{
	struct fixture *f = *state;
	struct catalog *c = open_ok(f->dir);
	struct cat_record a, out;
	struct hsm_fid fid;
	char pa[64], err[ERRLEN], hex[33], *long_path;
	int n = 0;

	rec_typical(&a, 1, pa, sizeof(pa));
	fid_hex(&a.fid, hex);
	err[0] = '\0';
	assert_int_equal(catalog_put(c, &a, 99, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "unknown journal op"));
	assert_non_null(strstr(err, hex));
	assert_int_equal(catalog_put(c, &a, -1, err, sizeof(err)), -1);
	a.path = "/abs";
	err[0] = '\0';
	assert_int_equal(catalog_put(c, &a, CAT_J_CREATE, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "invalid record"));
	assert_int_equal(catalog_journal_head(c), 0);
	assert_int_equal(catalog_get(c, &a.fid, &out, err, sizeof(err)), 1);
	assert_int_equal(catalog_foreach(c, collect_count, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 0);

	long_path = malloc(5000);
	assert_non_null(long_path);
	memset(long_path, 'x', 4999);
	long_path[4999] = '\0';
	assert_int_equal(catalog_lookup_path(c, "proj", long_path, &fid, err, sizeof(err)), -1);
	assert_int_equal(catalog_lookup_path(c, "", "a", &fid, err, sizeof(err)), -1);
	assert_int_equal(catalog_lookup_path(c, "proj", NULL, &fid, err, sizeof(err)), -1);
	assert_int_equal(catalog_unlink_path(c, "proj", long_path, err, sizeof(err)), -1);
	assert_int_equal(catalog_unlink_path(c, "proj", "/x", err, sizeof(err)), -1);
	free(long_path);
	/* a NULL or short err buffer is allowed */
	assert_int_equal(catalog_put(c, &a, 0, NULL, 0), -1);
	assert_int_equal(catalog_put(c, &a, 0, err, 1), -1);
	assert_int_equal(err[0], '\0');
	catalog_close(c);
}

/* ---- journal ----------------------------------------------------------------------- */

static void test_journal_order_and_fields(void **state)
{
	struct fixture *f = *state;
	struct catalog *c = open_ok(f->dir);
	struct cat_record a, b;
	struct jlist jl = { 0 };
	char pa[64], pb[64], err[ERRLEN];
	time_t t0 = time(NULL);

	rec_typical(&a, 1, pa, sizeof(pa));
	rec_typical(&b, 2, pb, sizeof(pb));
	put_ok(c, &a, CAT_J_CREATE);        /* 1 */
	put_ok(c, &b, CAT_J_CREATE);        /* 2 */
	put_ok(c, &a, 0);                   /* not journaled */
	a.version = 4;
	put_ok(c, &a, CAT_J_MODIFY);        /* 3 */
	a.path = "moved/a.pdf";
	put_ok(c, &a, CAT_J_RENAME);        /* 4 */
	a.state = HSM_STATE_ARCHIVED;
	put_ok(c, &a, CAT_J_STATE);         /* 5 */
	b.flags = HSM_FLAG_PINNED;
	put_ok(c, &b, CAT_J_ATTRIB);        /* 6 */
	assert_int_equal(catalog_delete(c, &b.fid, err, sizeof(err)), 0); /* 7 */
	assert_int_equal(catalog_journal_head(c), 7);

	assert_int_equal(catalog_journal_foreach(c, 0, collect_journal, &jl, err, sizeof(err)), 0);
	assert_int_equal(jl.n, 7);
	static const int ops[7] = { CAT_J_CREATE, CAT_J_CREATE, CAT_J_MODIFY, CAT_J_RENAME,
				    CAT_J_STATE,  CAT_J_ATTRIB, CAT_J_DELETE };
	for (int i = 0; i < 7; i++) {
		assert_int_equal(jl.e[i].seq, i + 1);
		assert_int_equal(jl.e[i].op, ops[i]);
		assert_string_equal(jl.e[i].volume, "proj");
		assert_true(jl.e[i].time_sec >= t0 && jl.e[i].time_sec <= time(NULL));
		if (i != 3)
			assert_null(jl.e[i].old_path);
	}
	assert_memory_equal(jl.e[0].fid.b, a.fid.b, 16);
	assert_string_equal(jl.e[0].path, pa);
	assert_memory_equal(jl.e[1].fid.b, b.fid.b, 16);
	assert_true(jl.e[2].version == 4);
	assert_string_equal(jl.e[3].path, "moved/a.pdf");
	assert_non_null(jl.e[3].old_path);
	assert_string_equal(jl.e[3].old_path, pa);
	assert_string_equal(jl.e[6].path, pb);

	/* since: strictly after */
	memset(&jl, 0, sizeof(jl));
	assert_int_equal(catalog_journal_foreach(c, 5, collect_journal, &jl, err, sizeof(err)), 0);
	assert_int_equal(jl.n, 2);
	assert_int_equal(jl.e[0].seq, 6);
	memset(&jl, 0, sizeof(jl));
	assert_int_equal(catalog_journal_foreach(c, 7, collect_journal, &jl, err, sizeof(err)), 0);
	assert_int_equal(jl.n, 0);
	assert_int_equal(catalog_journal_foreach(c, UINT64_MAX, collect_journal, &jl, err,
						 sizeof(err)), 0);
	assert_int_equal(jl.n, 0);
	catalog_close(c);
}

static int stop_at_3(const struct cat_journal_entry *e, void *arg)
{
	*(uint64_t *)arg = e->seq;
	return e->seq == 3 ? 42 : 0;
}

static void test_journal_head_survives_reopen(void **state)
{
	struct fixture *f = *state;
	struct catalog *c = open_ok(f->dir);
	struct cat_record a;
	struct jlist jl = { 0 };
	char pa[64], err[ERRLEN], key[9] = { 'j' };
	uint64_t last = 0;

	assert_int_equal(catalog_journal_head(c), 0);
	rec_typical(&a, 1, pa, sizeof(pa));
	for (int i = 0; i < 5; i++)
		put_ok(c, &a, CAT_J_MODIFY);
	assert_int_equal(catalog_journal_head(c), 5);
	assert_int_equal(catalog_journal_foreach(c, 0, stop_at_3, &last, err, sizeof(err)), 42);
	assert_int_equal(last, 3);
	catalog_close(c);

	c = open_ok(f->dir);
	assert_int_equal(catalog_journal_head(c), 5);
	put_ok(c, &a, CAT_J_MODIFY);
	assert_int_equal(catalog_journal_head(c), 6);
	assert_int_equal(catalog_journal_foreach(c, 5, collect_journal, &jl, err, sizeof(err)), 0);
	assert_int_equal(jl.n, 1);
	assert_int_equal(jl.e[0].seq, 6);
	catalog_close(c);

	/* entries trimmed away: the stored head keeps sequence numbers from being reused */
	for (int s = 1; s <= 6; s++) {
		key[8] = (char)s;
		raw_delete(f->dir, key, sizeof(key));
	}
	c = open_ok(f->dir);
	assert_int_equal(catalog_journal_head(c), 6);
	put_ok(c, &a, CAT_J_MODIFY);
	assert_int_equal(catalog_journal_head(c), 7);
	catalog_close(c);

	/* the stored head lost: the last entry still gives it */
	raw_delete(f->dir, "mjournal_head", 13);
	c = open_ok(f->dir);
	assert_int_equal(catalog_journal_head(c), 7);
	catalog_close(c);

	/* a stored head of the wrong size is damage, reported at open */
	raw_put(f->dir, "mjournal_head", 13, "abc", 3);
	err[0] = '\0';
	assert_null(catalog_open(f->dir, 0, err, sizeof(err)));
	assert_non_null(strstr(err, "mjournal_head"));
}

static void test_journal_corrupt_entries(void **state)
{
	struct fixture *f = *state;
	struct catalog *c = open_ok(f->dir);
	struct cat_record a;
	struct jlist jl = { 0 };
	char pa[64], err[ERRLEN], key[9] = { 'j', 0, 0, 0, 0, 0, 0, 0, 1 }, *good;
	size_t glen;

	rec_typical(&a, 1, pa, sizeof(pa));
	put_ok(c, &a, CAT_J_CREATE);
	a.path = "renamed/with/old/path.pdf";
	put_ok(c, &a, CAT_J_RENAME);
	catalog_close(c);

	/* the size docs/catalog.md gives for a create with a 30-byte path */
	key[8] = 1;
	good = raw_get(f->dir, key, sizeof(key), &glen);
	assert_non_null(good);
	printf("# journal entry bytes, create, 30-byte path: %zu\n", glen);
	assert_int_equal(glen, 61);
	leveldb_free(good);

	key[8] = 2; /* the rename: it carries every optional part */
	good = raw_get(f->dir, key, sizeof(key), &glen);
	assert_non_null(good);
	for (size_t n = 0; n < glen; n++) {
		raw_put(f->dir, key, sizeof(key), good, n);
		c = open_ok(f->dir);
		memset(&jl, 0, sizeof(jl));
		err[0] = '\0';
		assert_int_equal(catalog_journal_foreach(c, 0, collect_journal, &jl, err,
							 sizeof(err)), -1);
		assert_non_null(strstr(err, "corrupt entry j0000000000000002"));
		assert_int_equal(jl.n, 1); /* the good entry before it was delivered */
		catalog_close(c);
	}
	/* unknown op, trailing garbage */
	good[1] = 9;
	raw_put(f->dir, key, sizeof(key), good, glen);
	c = open_ok(f->dir);
	assert_int_equal(catalog_journal_foreach(c, 0, collect_journal, &jl, err, sizeof(err)), -1);
	catalog_close(c);
	good[1] = CAT_J_RENAME;
	{
		char *longer = malloc(glen + 1);

		assert_non_null(longer);
		memcpy(longer, good, glen);
		longer[glen] = 0;
		raw_put(f->dir, key, sizeof(key), longer, glen + 1);
		free(longer);
	}
	c = open_ok(f->dir);
	assert_int_equal(catalog_journal_foreach(c, 0, collect_journal, &jl, err, sizeof(err)), -1);
	catalog_close(c);
	/* and the intact value reads again */
	raw_put(f->dir, key, sizeof(key), good, glen);
	c = open_ok(f->dir);
	memset(&jl, 0, sizeof(jl));
	assert_int_equal(catalog_journal_foreach(c, 0, collect_journal, &jl, err, sizeof(err)), 0);
	assert_int_equal(jl.n, 2);
	assert_non_null(jl.e[1].old_path);
	assert_string_equal(jl.e[1].old_path, pa);
	catalog_close(c);
	leveldb_free(good);
}

/* ---- scans ------------------------------------------------------------------------- */

struct scan_state {
	uint64_t n;
	struct hsm_fid prev;
	int bad;
};

static int scan_check(const struct cat_record *rec, void *arg)
{
	struct scan_state *s = arg;
	struct hsm_fid want;
	unsigned long long i;

	if (s->n && memcmp(s->prev.b, rec->fid.b, 16) >= 0)
		s->bad++;
	if (sscanf(rec->path, "home/alice/docs/rep_%llu.pdf", &i) != 1) {
		s->bad++;
	} else {
		fid_of(i, &want);
		if (memcmp(want.b, rec->fid.b, 16) || rec->state != HSM_STATE_ARCHIVED
		    || rec->archived_version != 3)
			s->bad++;
	}
	s->prev = rec->fid;
	s->n++;
	return 0;
}

static void test_foreach_100k(void **state)
{
	struct fixture *f = *state;
	struct catalog *c = open_ok(f->dir);
	struct cat_record r;
	struct scan_state ss = { 0 };
	struct hsm_fid fid;
	char path[64], err[ERRLEN];
	double t0, t_put, t_scan;
	uint64_t bytes, blocks, cbytes, cblocks;

	t0 = now_s();
	for (uint64_t i = 0; i < NSCALE; i++) {
		rec_archived(&r, i, path, sizeof(path));
		put_ok(c, &r, CAT_J_CREATE);
	}
	t_put = now_s() - t0;
	assert_int_equal(catalog_journal_head(c), NSCALE);

	t0 = now_s();
	assert_int_equal(catalog_foreach(c, scan_check, &ss, err, sizeof(err)), 0);
	t_scan = now_s() - t0;
	assert_int_equal(ss.n, NSCALE);
	assert_int_equal(ss.bad, 0);

	rec_archived(&r, 77777, path, sizeof(path));
	assert_int_equal(catalog_lookup_path(c, "proj", path, &fid, err, sizeof(err)), 0);
	assert_memory_equal(fid.b, r.fid.b, 16);
	catalog_close(c);

	bytes = dir_bytes(f->dir, &blocks);
	raw_compact(f->dir);
	cbytes = dir_bytes(f->dir, &cblocks);

	/* the scan must survive the compaction too */
	c = open_ok(f->dir);
	memset(&ss, 0, sizeof(ss));
	t0 = now_s();
	assert_int_equal(catalog_foreach(c, scan_check, &ss, err, sizeof(err)), 0);
	double t_scan2 = now_s() - t0;
	assert_int_equal(ss.n, NSCALE);
	assert_int_equal(ss.bad, 0);
	catalog_close(c);

	printf("# %d archived records (30-byte paths) with path index and journal entry\n",
	       NSCALE);
	printf("# put: %.3f s (%.0f/s); foreach: %.3f s (%.0f records/s); after compaction "
	       "%.3f s (%.0f/s)\n", t_put, NSCALE / t_put, t_scan, NSCALE / t_scan, t_scan2,
	       NSCALE / t_scan2);
	printf("# db size: %llu bytes (%.1f per file) as written, %llu (%.1f per file) after "
	       "compaction; allocated %llu / %llu\n", (unsigned long long)bytes,
	       (double)bytes / NSCALE, (unsigned long long)cbytes, (double)cbytes / NSCALE,
	       (unsigned long long)blocks, (unsigned long long)cblocks);
	/* record 115 + keys 17 + path entry ~36+16 + journal ~60: far more means bloat */
	assert_true(cbytes / NSCALE < 400);
}

static void test_foreach_corrupt_value(void **state)
{
	struct fixture *f = *state;
	struct catalog *c = open_ok(f->dir);
	struct cat_record a, b, out;
	char pa[64], pb[64], err[ERRLEN], key[17] = { 'f' }, hex[33];
	int n = 0;
	uint8_t *val;
	size_t vlen;

	for (int i = 0; i < 10; i++) {
		rec_typical(&a, (uint64_t)i, pa, sizeof(pa));
		put_ok(c, &a, CAT_J_CREATE);
	}
	catalog_close(c);

	rec_typical(&a, 3, pa, sizeof(pa));
	memcpy(key + 1, a.fid.b, 16);
	fid_hex(&a.fid, hex);
	raw_put(f->dir, key, sizeof(key), "\x01garbage", 8);

	c = open_ok(f->dir);
	err[0] = '\0';
	assert_int_equal(catalog_foreach(c, collect_count, &n, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "corrupt record"));
	assert_non_null(strstr(err, hex));
	err[0] = '\0';
	assert_int_equal(catalog_get(c, &a.fid, &out, err, sizeof(err)), -1);
	assert_non_null(strstr(err, hex));
	/* a record we cannot read is not silently overwritten or deleted either */
	assert_int_equal(catalog_put(c, &a, CAT_J_MODIFY, err, sizeof(err)), -1);
	assert_int_equal(catalog_delete(c, &a.fid, err, sizeof(err)), -1);
	assert_int_equal(catalog_journal_head(c), 10);
	catalog_close(c);

	/* a valid record filed under another fid's key */
	rec_typical(&b, 4, pb, sizeof(pb));
	val = cat_record_encode(&b, &vlen);
	assert_non_null(val);
	raw_put(f->dir, key, sizeof(key), val, vlen);
	free(val);
	c = open_ok(f->dir);
	err[0] = '\0';
	assert_int_equal(catalog_foreach(c, collect_count, &n, err, sizeof(err)), -1);
	assert_non_null(strstr(err, hex));
	assert_int_equal(catalog_get(c, &a.fid, &out, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "another fid"));
	catalog_close(c);

	/* an 'f' key of the wrong length */
	raw_delete(f->dir, key, sizeof(key));
	raw_put(f->dir, "fshort", 6, "x", 1);
	c = open_ok(f->dir);
	err[0] = '\0';
	assert_int_equal(catalog_foreach(c, collect_count, &n, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "malformed key"));
	catalog_close(c);

	/* a path index entry that is not a fid */
	raw_delete(f->dir, "fshort", 6);
	rec_typical(&b, 5, pb, sizeof(pb));
	{
		char pkey[64];
		size_t pklen;
		struct hsm_fid fid;

		pkey[0] = 'p';
		strcpy(pkey + 1, "proj");
		strcpy(pkey + 6, pb);
		pklen = 6 + strlen(pb);
		raw_put(f->dir, pkey, pklen, "short", 5);
		c = open_ok(f->dir);
		err[0] = '\0';
		assert_int_equal(catalog_lookup_path(c, "proj", pb, &fid, err, sizeof(err)), -1);
		assert_non_null(strstr(err, pb));
		n = 0;
		assert_int_equal(catalog_foreach(c, collect_count, &n, err, sizeof(err)), 0);
		assert_int_equal(n, 9);
		catalog_close(c);
	}
}

struct damage_scan {
	int n;
	struct hsm_fid last;
};

static int damage_cb(const struct cat_record *rec, void *arg)
{
	struct damage_scan *d = arg;

	d->n++;
	d->last = rec->fid;
	return 0;
}

/* Damage inside a table file: leveldb skips the block and tells only the iterator. */
static void test_foreach_table_damage(void **state)
{
	struct fixture *f = *state;
	struct catalog *c = open_ok(f->dir);
	struct cat_record r;
	char path[64], err[ERRLEN], tpath[512] = "";
	DIR *d;
	struct dirent *de;
	struct stat st;
	struct damage_scan ds = { 0 };
	struct hsm_fid fid;
	int fd, rc, before = 0;

	for (uint64_t i = 0; i < 5000; i++) {
		rec_archived(&r, i, path, sizeof(path));
		put_ok(c, &r, 0);
	}
	catalog_close(c);
	raw_compact(f->dir);

	d = opendir(f->dir);
	assert_non_null(d);
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name);

		if (l > 4 && !strcmp(de->d_name + l - 4, ".ldb")) {
			snprintf(tpath, sizeof(tpath), "%s/%s", f->dir, de->d_name);
			break;
		}
	}
	closedir(d);
	assert_true(tpath[0] != '\0');
	assert_int_equal(stat(tpath, &st), 0);
	fd = open(tpath, O_WRONLY);
	assert_true(fd >= 0);
	/* some bytes a third of the way in: inside a data block, far from the index */
	assert_int_equal(pwrite(fd, "\xde\xad\xbe\xef\xde\xad\xbe\xef", 8, st.st_size / 3), 8);
	close(fd);

	err[0] = '\0';
	c = catalog_open(f->dir, 0, err, sizeof(err));
	assert_non_null(c);
	rc = catalog_foreach(c, damage_cb, &ds, err, sizeof(err));
	printf("# table damage: foreach %d after %d records: %s\n", rc, ds.n, err);
	assert_int_equal(rc, -1);
	assert_true(ds.n > 0 && ds.n < 5000);
	assert_non_null(strstr(err, "orrupt"));
	assert_non_null(strstr(err, "after key f"));
	/* It stops at the damage: the callback saw exactly the records in fid order up to
	 * the damaged block, none from beyond it. */
	for (uint64_t i = 0; i < 5000; i++) {
		fid_of(i, &fid);
		if (memcmp(fid.b, ds.last.b, 16) <= 0)
			before++;
	}
	assert_int_equal(before, ds.n);
	catalog_close(c);
}

static int stop_after_3(const struct cat_record *rec, void *arg)
{
	(void)rec;
	return ++*(int *)arg == 3 ? 7 : 0;
}

static void test_foreach_stop(void **state)
{
	struct fixture *f = *state;
	struct catalog *c = open_ok(f->dir);
	struct cat_record r;
	char path[64], err[ERRLEN];
	int n = 0;

	for (int i = 0; i < 10; i++) {
		rec_typical(&r, (uint64_t)i, path, sizeof(path));
		put_ok(c, &r, 0);
	}
	assert_int_equal(catalog_foreach(c, stop_after_3, &n, err, sizeof(err)), 7);
	assert_int_equal(n, 3);
	catalog_close(c);
}

/* ---- open ------------------------------------------------------------------------- */

static void test_open_locked(void **state)
{
	struct fixture *f = *state;
	struct catalog *c = open_ok(f->dir), *c2;
	char err[ERRLEN] = "";

	c2 = catalog_open(f->dir, 1, err, sizeof(err));
	assert_null(c2);
	assert_non_null(strstr(err, "lock"));
	assert_non_null(strstr(err, f->dir));
	catalog_close(c);
	/* released on close */
	c = catalog_open(f->dir, 1, err, sizeof(err));
	assert_non_null(c);
	catalog_close(c);
}

static void test_open_errors(void **state)
{
	struct fixture *f = *state;
	char path[512], err[ERRLEN] = "";
	int fd;

	snprintf(path, sizeof(path), "%s/plainfile", f->dir);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_null(catalog_open(path, 0, err, sizeof(err)));
	assert_non_null(strstr(err, path));
	err[0] = '\0';
	assert_null(catalog_open("", 0, err, sizeof(err)));
	assert_true(err[0] != '\0');
	assert_null(catalog_open(NULL, 0, NULL, 0));
	catalog_close(NULL);
}

static void test_sync_mode(void **state)
{
	struct fixture *f = *state;
	char err[ERRLEN] = "";
	struct catalog *c = catalog_open(f->dir, 1, err, sizeof(err));
	struct cat_record r, out;
	char path[64];

	assert_non_null(c);
	rec_typical(&r, 1, path, sizeof(path));
	put_ok(c, &r, CAT_J_CREATE);
	assert_int_equal(catalog_delete(c, &r.fid, err, sizeof(err)), 0);
	assert_int_equal(catalog_get(c, &r.fid, &out, err, sizeof(err)), 1);
	assert_int_equal(catalog_journal_head(c), 2);
	catalog_close(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_record_roundtrip_all_fields),
		cmocka_unit_test(test_record_sizes),
		cmocka_unit_test(test_record_zero_optionals),
		cmocka_unit_test(test_record_max_path),
		cmocka_unit_test(test_record_encode_rejects_invalid),
		cmocka_unit_test(test_record_decode_truncated),
		cmocka_unit_test(test_record_decode_bad_nsec),
		cmocka_unit_test(test_record_decode_mutations),
		cmocka_unit_test_setup_teardown(test_put_get_lookup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_moves_path, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unlink_path, setup, teardown),
		cmocka_unit_test_setup_teardown(test_link_path, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_input_changes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_journal_order_and_fields, setup, teardown),
		cmocka_unit_test_setup_teardown(test_journal_head_survives_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_journal_corrupt_entries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_foreach_100k, setup, teardown),
		cmocka_unit_test_setup_teardown(test_foreach_corrupt_value, setup, teardown),
		cmocka_unit_test_setup_teardown(test_foreach_table_damage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_foreach_stop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_locked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sync_mode, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

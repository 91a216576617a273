/* Namespace records: the wire line codec, version vectors and conflict naming. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hsmd/nsrec.h"

static void rec_init(struct ns_rec *r, const char *path)
{
	memset(r, 0, sizeof(*r));
	for (int i = 0; i < 16; i++)
		r->fid.b[i] = (uint8_t)(i + 1);
	r->kind = NS_FILE;
	r->path = strdup(path);
	r->mode = 0644;
	r->uid = 1000;
	r->gid = 100;
	r->size = 12345;
	r->mtime_sec = 1700000000;
	r->mtime_nsec = 123456789;
	snprintf(r->owner, sizeof(r->owner), "a");
	r->version = 3;
	nsrec_vv_set(r, "a", 3);
	nsrec_vv_set(r, "b", 1);
}

static void test_roundtrip(void **state)
{
	struct ns_rec r, back;
	char line[NS_LINE_MAX], err[128];
	int n;

	(void)state;
	rec_init(&r, "dir with space/100%/f\ttab");
	n = nsrec_format(&r, line, sizeof(line));
	assert_true(n > 0);
	assert_null(strchr(line, '\n'));
	assert_int_equal(nsrec_parse(line, (size_t)n, &back, err, sizeof(err)), 0);
	assert_string_equal(back.path, r.path);
	assert_memory_equal(back.fid.b, r.fid.b, 16);
	assert_int_equal(back.mode, 0644);
	assert_int_equal(back.uid, 1000);
	assert_int_equal(back.size, 12345);
	assert_int_equal(back.mtime_nsec, 123456789);
	assert_string_equal(back.owner, "a");
	assert_int_equal(back.version, 3);
	assert_int_equal(nsrec_vv_compare(&r, &back), 0);
	assert_int_equal(back.deleted, 0);
	nsrec_clear(&back);

	/* tombstone and archived copy */
	r.deleted = 1;
	r.archived_version = 3;
	r.archived_size = 12345;
	r.archived_mtime_sec = 1700000000;
	memset(r.manifest_id, 0xab, 32);
	n = nsrec_format(&r, line, sizeof(line));
	assert_true(n > 0);
	assert_int_equal(nsrec_parse(line, (size_t)n, &back, err, sizeof(err)), 0);
	assert_int_equal(back.deleted, 1);
	assert_int_equal(back.archived_version, 3);
	assert_memory_equal(back.manifest_id, r.manifest_id, 32);
	nsrec_clear(&back);
	nsrec_clear(&r);
}

static void test_origin(void **state)
{
	struct ns_rec r, back;
	char line[NS_LINE_MAX], err[128];
	int n;

	(void)state;
	rec_init(&r, "doc.conflict-a-20260101T000000.txt");
	r.has_origin = 1;
	memset(r.origin.b, 0x5a, 16);
	n = nsrec_format(&r, line, sizeof(line));
	assert_true(n > 0);
	assert_int_equal(nsrec_parse(line, (size_t)n, &back, err, sizeof(err)), 0);
	assert_int_equal(back.has_origin, 1);
	assert_int_equal(back.has_conflict, 0);
	assert_memory_equal(back.origin.b, r.origin.b, 16);
	nsrec_clear(&back);
	r.has_conflict = 1;
	memset(r.conflict.b, 0x6b, 16);
	n = nsrec_format(&r, line, sizeof(line));
	assert_true(n > 0);
	assert_int_equal(nsrec_parse(line, (size_t)n, &back, err, sizeof(err)), 0);
	assert_int_equal(back.has_origin, 1);
	assert_int_equal(back.has_conflict, 1);
	assert_memory_equal(back.conflict.b, r.conflict.b, 16);
	nsrec_clear(&back);
	/* an origin that is not a fid */
	line[n - 1] = 'g';
	assert_int_equal(nsrec_parse(line, (size_t)n, &back, err, sizeof(err)), -1);
	nsrec_clear(&r);
}

static void test_symlink(void **state)
{
	struct ns_rec r, back;
	char line[NS_LINE_MAX], err[128];
	int n;

	(void)state;
	rec_init(&r, "link");
	r.kind = NS_LINK;
	r.target = strdup("../some where/target");
	n = nsrec_format(&r, line, sizeof(line));
	assert_true(n > 0);
	assert_int_equal(nsrec_parse(line, (size_t)n, &back, err, sizeof(err)), 0);
	assert_string_equal(back.target, r.target);
	nsrec_clear(&back);
	nsrec_clear(&r);
}

static void test_bad_lines(void **state)
{
	static const char *const bad[] = {
	    "",
	    "zz f 644 0 0 1 1.000000000 a:1 a:1 - x",
	    "0102030405060708090a0b0c0d0e0f10 q 644 0 0 1 1.000000000 a:1 a:1 - x",
	    "0102030405060708090a0b0c0d0e0f10 f 999 0 0 1 1.000000000 a:1 a:1 - x",
	    "0102030405060708090a0b0c0d0e0f10 f 644 0 0 1 1.0 a:1 a:1 - x",
	    "0102030405060708090a0b0c0d0e0f10 f 644 0 0 1 1.000000000 A:1 a:1 - x",
	    "0102030405060708090a0b0c0d0e0f10 f 644 0 0 1 1.000000000 a:1 a:1,a:2 - x",
	    "0102030405060708090a0b0c0d0e0f10 f 644 0 0 1 1.000000000 a:1 a:1 - ../etc/passwd",
	    "0102030405060708090a0b0c0d0e0f10 f 644 0 0 1 1.000000000 a:1 a:1 - /abs",
	    "0102030405060708090a0b0c0d0e0f10 f 644 0 0 1 1.000000000 a:1 a:1 - a/%00b",
	    "0102030405060708090a0b0c0d0e0f10 f 644 0 0 1 1.000000000 a:1 a:1 - a//b",
	    "0102030405060708090a0b0c0d0e0f10 f 644 0 0 1 1.000000000 a:1 a:1 - a/./b",
	    "0102030405060708090a0b0c0d0e0f10 f 644 0 0 1 1.000000000 a:1 a:1 - x extra",
	    "0102030405060708090a0b0c0d0e0f10 f 644 0 0 1 1.000000000 a:1 a:1 1/2/3.000000000/ab x",
	    "0102030405060708090a0b0c0d0e0f10 l 644 0 0 1 1.000000000 a:1 a:1 - x",
	    "00000000000000000000000000000000 f 644 0 0 1 1.000000000 a:1 a:1 - x",
	    "0102030405060708090a0b0c0d0e0f10 f 644 0 0 99999999999999999999 1.000000000 a:1 a:1 - "
	    "x",
	};
	struct ns_rec r;
	char err[128];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		if (nsrec_parse(bad[i], strlen(bad[i]), &r, err, sizeof(err)) == 0) {
			nsrec_clear(&r);
			fail_msg("accepted bad line %zu: %s", i, bad[i]);
		}
		assert_true(err[0] != '\0');
	}
	/* A NUL byte as the kind (the length covers it): found by fuzzing, once accepted. */
	{
		static const char nul[] = "0102030405060708090a0b0c0d0e0f10 \0 644 0 0 1 "
					  "1.000000000 a:1 a:1 - x";

		err[0] = '\0';
		assert_int_equal(nsrec_parse(nul, sizeof(nul) - 1, &r, err, sizeof(err)), -1);
		assert_true(err[0] != '\0');
	}
}

static void test_vv(void **state)
{
	struct ns_rec a, b;

	(void)state;
	rec_init(&a, "x");
	rec_init(&b, "x");
	assert_int_equal(nsrec_vv_compare(&a, &b), 0);
	nsrec_vv_set(&b, "b", 2);
	assert_int_equal(nsrec_vv_compare(&a, &b), -1);
	assert_int_equal(nsrec_vv_compare(&b, &a), 1);
	nsrec_vv_set(&a, "c", 1);
	assert_int_equal(nsrec_vv_compare(&a, &b), 2);
	assert_int_equal(nsrec_vv_merge(&a, &b), 0);
	assert_int_equal(nsrec_vv_get(&a, "b"), 2);
	assert_int_equal(nsrec_vv_get(&a, "c"), 1);
	assert_int_equal(nsrec_vv_compare(&a, &b), 1);
	assert_true(nsrec_knows(&a, "a", 3));
	assert_false(nsrec_knows(&a, "a", 4));
	assert_false(nsrec_knows(&a, "zz", 1));
	nsrec_clear(&a);
	nsrec_clear(&b);
}

static void test_wins_is_total(void **state)
{
	struct ns_rec a, b;

	(void)state;
	rec_init(&a, "x");
	rec_init(&b, "x");
	b.mtime_sec++;
	assert_false(nsrec_wins(&a, &b));
	assert_true(nsrec_wins(&b, &a));
	b.mtime_sec--;
	snprintf(b.owner, sizeof(b.owner), "b");
	/* same mtime: the site name decides, the same way from both sides */
	assert_true(nsrec_wins(&b, &a) != nsrec_wins(&a, &b));
	nsrec_clear(&a);
	nsrec_clear(&b);
}

static void test_conflict_names(void **state)
{
	char *p;

	(void)state;
	p = nsrec_conflict_path("dir/report.docx", "b", 0);
	assert_string_equal(p, "dir/report.conflict-b-19700101T000000.docx");
	free(p);
	/* a conflict copy that loses again is named after the original, never nested */
	p = nsrec_conflict_path("dir/report.conflict-b-19700101T000000.docx", "c-1", 86400);
	assert_string_equal(p, "dir/report.conflict-c-1-19700102T000000.docx");
	free(p);
	p = nsrec_conflict_path("f0.conflict-b-20261204T051220", "a", 0);
	assert_string_equal(p, "f0.conflict-a-19700101T000000");
	free(p);
	/* a name that only looks a bit like one is left alone */
	p = nsrec_conflict_path("x.conflict-notes.txt", "a", 0);
	assert_string_equal(p, "x.conflict-notes.conflict-a-19700101T000000.txt");
	free(p);
	/* cut-off suffixes (found by fuzz_nsrec: read past the end) */
	p = nsrec_conflict_path("x.conflict-", "a", 0);
	assert_string_equal(p, "x.conflict-a-19700101T000000.conflict-");
	free(p);
	p = nsrec_conflict_path("x.conflict-b", "a", 0);
	assert_string_equal(p, "x.conflict-a-19700101T000000.conflict-b");
	free(p);
	p = nsrec_conflict_path("x.conflict-b-2026", "a", 0);
	assert_string_equal(p, "x.conflict-a-19700101T000000.conflict-b-2026");
	free(p);
	p = nsrec_conflict_path("Makefile", "site-2", 1700000000);
	assert_string_equal(p, "Makefile.conflict-site-2-20231114T221320");
	free(p);
	p = nsrec_conflict_path("a.b/.bashrc", "c", 0);
	assert_string_equal(p, "a.b/.bashrc.conflict-c-19700101T000000");
	free(p);
}

/* resolve(a, b) and resolve(b, a) pick the same records: every site merges alike. */
static void check_symmetric(const struct ns_rec *a, const struct ns_rec *b, int outcome,
			    const struct ns_rec *content, const struct ns_rec *meta)
{
	struct ns_resolution x, y;

	nsrec_resolve(a, b, &x);
	nsrec_resolve(b, a, &y);
	assert_int_equal(x.outcome, outcome);
	assert_int_equal(y.outcome, outcome);
	assert_ptr_equal(x.content, content);
	assert_ptr_equal(y.content, content);
	assert_ptr_equal(x.meta, meta);
	assert_ptr_equal(y.meta, meta);
	assert_ptr_equal(x.loser, y.loser);
}

static void test_resolve(void **state)
{
	struct ns_rec a, b;

	(void)state;
	/* both wrote, neither saw the other: the later keeps the name, the other is a copy */
	rec_init(&a, "f");
	rec_init(&b, "f");
	nsrec_vv_set(&a, "a", 4);
	a.version = 4;
	snprintf(b.owner, sizeof(b.owner), "b");
	b.version = 2;
	nsrec_vv_set(&b, "b", 2);
	b.mtime_sec++;
	check_symmetric(&a, &b, NS_CONFLICT, &b, &b);
	{
		struct ns_resolution x;

		nsrec_resolve(&a, &b, &x);
		assert_ptr_equal(x.loser, &a);
	}
	/* a delete against a write: the write survives */
	a.deleted = 1;
	check_symmetric(&a, &b, NS_LIVE_WINS, &b, &b);
	a.deleted = 0;
	/* the same data, b renamed it: b's name, whichever side is local */
	nsrec_vv_set(&b, "a", 4);
	snprintf(b.owner, sizeof(b.owner), "a");
	b.version = 4;
	free(b.path);
	b.path = strdup("renamed");
	nsrec_vv_set(&a, "a", 5);
	check_symmetric(&a, &b, NS_COMBINE, &b, &b);
	/* a wrote again after b's rename (b saw a's version 4, a is at 5): a's data,
	 * b's name */
	a.version = 5;
	check_symmetric(&a, &b, NS_COMBINE, &a, &b);
	/* directories: the later change wins whole */
	a.kind = b.kind = NS_DIR;
	check_symmetric(&a, &b, NS_LATER_WINS, &b, &b);
	/* a directory removed on one side, changed (a name made in it) on the other */
	a.deleted = 1;
	check_symmetric(&a, &b, NS_DIR_GONE, &a, &a);
	a.deleted = 0;
	nsrec_clear(&a);
	nsrec_clear(&b);
}

static void test_derived_fids(void **state)
{
	struct hsm_fid f, c1, c2, c3, d1, d2;

	(void)state;
	memset(&f, 7, sizeof(f));
	nsrec_conflict_fid(&f, "a", 3, &c1);
	nsrec_conflict_fid(&f, "a", 3, &c2);
	nsrec_conflict_fid(&f, "b", 3, &c3);
	assert_memory_equal(c1.b, c2.b, 16);
	assert_memory_not_equal(c1.b, c3.b, 16);
	assert_memory_not_equal(c1.b, f.b, 16);
	nsrec_dir_fid("v", "d:x/y", &d1);
	nsrec_dir_fid("w", "d:x/y", &d2);
	assert_memory_not_equal(d1.b, d2.b, 16);
}

static void test_escape(void **state)
{
	char out[64], back[64];

	(void)state;
	assert_true(ns_escape("a b%c\x01", out, sizeof(out)) > 0);
	assert_string_equal(out, "a%20b%25c%01");
	assert_true(ns_unescape(out, strlen(out), back, sizeof(back)) > 0);
	assert_string_equal(back, "a b%c\x01");
	assert_int_equal(ns_unescape("%0", 2, back, sizeof(back)), -1);
	assert_int_equal(ns_unescape("%zz", 3, back, sizeof(back)), -1);
	assert_int_equal(ns_unescape("%00", 3, back, sizeof(back)), -1);
	assert_int_equal(ns_escape("abcdef", out, 4), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_roundtrip),
	    cmocka_unit_test(test_symlink),
	    cmocka_unit_test(test_origin),
	    cmocka_unit_test(test_bad_lines),
	    cmocka_unit_test(test_vv),
	    cmocka_unit_test(test_wins_is_total),
	    cmocka_unit_test(test_conflict_names),
	    cmocka_unit_test(test_resolve),
	    cmocka_unit_test(test_derived_fids),
	    cmocka_unit_test(test_escape),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

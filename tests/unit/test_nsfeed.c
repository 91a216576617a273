/* The feed's framing: the head line both ways, numbered record lines, and what a peer
 * must not be able to slip through (signs, spaces, overflow, names out of range). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "hsmd/nsfeed.h"

#define FEED "0123456789abcdef0123456789abcdef"

static void test_head_roundtrip(void **state)
{
	struct ns_feed_head h = {FEED, "site-a", "vol_1", UINT64_MAX, 1}, back;
	char buf[256], err[128];
	int n;

	(void)state;
	n = nsfeed_format_head(&h, buf, sizeof(buf));
	assert_true(n > 0);
	assert_string_equal(buf, "hsm-changes 1 " FEED " site-a vol_1 18446744073709551615 1\n");
	assert_int_equal(nsfeed_parse_head(buf, (size_t)n, &back, err, sizeof(err)), n);
	assert_string_equal(back.feed, FEED);
	assert_string_equal(back.site, "site-a");
	assert_string_equal(back.volume, "vol_1");
	assert_true(back.next == UINT64_MAX);
	assert_int_equal(back.more, 1);
	/* too small a buffer, a bad feed id, a bad flag: nothing to send */
	assert_int_equal(nsfeed_format_head(&h, buf, 20), -1);
	h.more = 2;
	assert_int_equal(nsfeed_format_head(&h, buf, sizeof(buf)), -1);
	h.more = 0;
	h.feed[0] = 'X';
	assert_int_equal(nsfeed_format_head(&h, buf, sizeof(buf)), -1);
}

static void test_head_refused(void **state)
{
	static const char *const bad[] = {
	    "",
	    "hsm-changes 1 " FEED " a v 1 0",	 /* no newline */
	    "hsm-changes 2 " FEED " a v 1 0\n",	 /* another format */
	    "hsm-changes 1 " FEED "0 a v 1 0\n", /* 33 digits */
	    "hsm-changes 1 0123456789ABCDEF0123456789abcdef a v 1 0\n",
	    "hsm-changes 1 " FEED " A v 1 0\n",
	    "hsm-changes 1 " FEED " a v -1 0\n",
	    "hsm-changes 1 " FEED " a v +1 0\n",
	    "hsm-changes 1 " FEED " a v 18446744073709551616 0\n",
	    "hsm-changes 1 " FEED " a v 1 2\n",
	    "hsm-changes 1 " FEED " b vol 02 0\n", /* found by fuzz_feed: two spellings */
	    "hsm-changes 1 " FEED " a v 1 0 \n",
	    "hsm-changes 1 " FEED "  a v 1 0\n",
	    "hsm-changes 1 " FEED " a v 1\n",
	    "hsm-changes 1 " FEED " a v 1 0 extra\n",
	    "hsm-changes 1 " FEED " aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa v 1 0\n", /* 33 */
	};
	struct ns_feed_head h;
	char err[128];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(nsfeed_parse_head(bad[i], strlen(bad[i]), &h, err, sizeof(err)),
				 -1);
		assert_true(err[0] != '\0');
	}
	/* a NUL inside the line is not the end of it */
	{
		static const char nul[] = "hsm-changes 1 " FEED " a\0b v 1 0\n";

		assert_int_equal(nsfeed_parse_head(nul, sizeof(nul) - 1, &h, err, sizeof(err)), -1);
	}
}

static void test_records(void **state)
{
	static const char body[] = "7 rec one\n8 rec two\n9 cut";
	const char *rec;
	size_t off = 0, len;
	uint64_t seq;

	(void)state;
	assert_int_equal(nsfeed_next(body, strlen(body), &off, &seq, &rec, &len), 1);
	assert_true(seq == 7);
	assert_int_equal(len, 7);
	assert_memory_equal(rec, "rec one", 7);
	assert_int_equal(nsfeed_next(body, strlen(body), &off, &seq, &rec, &len), 1);
	assert_true(seq == 8);
	/* a last line without its newline was cut short: not a record */
	assert_int_equal(nsfeed_next(body, strlen(body), &off, &seq, &rec, &len), 0);
	assert_int_equal(nsfeed_next(body, strlen(body), &off, &seq, &rec, &len), 0);

	static const char *const bad[] = {
	    "0 r\n", "-1 r\n", " 1 r\n", "x r\n", "1\n", "99999999999999999999 r\n", "01 r\n"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		off = 0;
		assert_int_equal(nsfeed_next(bad[i], strlen(bad[i]), &off, &seq, &rec, &len), -1);
		assert_int_equal(off, 0);
	}
	off = 0;
	assert_int_equal(nsfeed_next("1 \n", 3, &off, &seq, &rec, &len), 1);
	assert_int_equal(len, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_head_roundtrip),
	    cmocka_unit_test(test_head_refused),
	    cmocka_unit_test(test_records),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The HTTP request reader: a request whole, split at every byte, pipelined; each limit
 * refused with its status before the bytes past it are needed; and the data request
 * target parser (hsmd/pdreq.h) on good and bad fields. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "hsmd/pdreq.h"
#include "lib/httpreq.h"

static const struct httpreq_limits lim = {256, 64, 16};

/* Feeds s in pieces of step bytes; returns the result that ended it, the request in
 * *out when DONE, the status when REFUSE. */
static enum httpreq_result feed(struct httpreq_reader *rd, const char *s, size_t len, size_t step,
				size_t *taken, struct httpreq **out, int *status)
{
	size_t off = 0;

	*out = NULL;
	while (off < len) {
		size_t n = len - off < step ? len - off : step, used;
		const char *why = NULL;
		enum httpreq_result r = httpreq_feed(rd, s + off, n, &used, status, &why);

		off += used;
		if (r == HTTPREQ_DONE)
			*out = httpreq_take(rd);
		if (r != HTTPREQ_MORE) {
			if (r == HTTPREQ_REFUSE)
				assert_non_null(why);
			*taken = off;
			return r;
		}
	}
	*taken = off;
	return HTTPREQ_MORE;
}

static void test_whole_and_split(void **state)
{
	static const char req[] = "POST /v1/a%20b?x=1&y=z HTTP/1.1\r\nHost: h\r\n"
				  "X-Pad:  v  \r\nContent-Length: 5\r\n\r\nhelloGET /next";

	(void)state;
	for (size_t step = 1; step <= sizeof(req); step++) {
		struct httpreq_reader rd;
		struct httpreq *q;
		size_t taken;
		int status = 0;

		httpreq_reader_init(&rd, &lim);
		assert_int_equal(feed(&rd, req, sizeof(req) - 1, step, &taken, &q, &status),
				 HTTPREQ_DONE);
		assert_int_equal(taken, strlen(req) - strlen("GET /next"));
		assert_string_equal(q->method, "POST");
		assert_string_equal(q->path, "/v1/a%20b");
		assert_string_equal(q->query, "x=1&y=z");
		assert_int_equal(q->body_len, 5);
		assert_memory_equal(q->body, "hello", 6);
		assert_string_equal(httpreq_header(q, "x-pad"), "v");
		assert_string_equal(httpreq_header(q, "HOST"), "h");
		assert_null(httpreq_header(q, "Expect"));
		assert_true(q->keep_alive);
		httpreq_free(q);
		httpreq_reader_clear(&rd);
	}
}

static void test_refused(void **state)
{
	static const struct {
		const char *req;
		int status;
	} cases[] = {
	    {"DELETE / HTTP/1.1\r\n\r\n", 405},
	    {"GET x HTTP/1.1\r\n\r\n", 400},
	    {"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 414},
	    {"POST / HTTP/1.1\r\nContent-Length: 17\r\n\r\n", 413}, /* before the body */
	    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n11\r\n", 413},
	    {"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct httpreq_reader rd;
		struct httpreq *q;
		size_t taken;
		int status = 0;

		httpreq_reader_init(&rd, &lim);
		assert_int_equal(
		    feed(&rd, cases[i].req, strlen(cases[i].req), 3, &taken, &q, &status),
		    HTTPREQ_REFUSE);
		assert_int_equal(status, cases[i].status);
		httpreq_reader_clear(&rd);
	}
	/* a header that never ends is refused at the limit, not buffered */
	{
		struct httpreq_reader rd;
		char big[400];
		size_t taken;
		struct httpreq *q;
		int status = 0;

		memset(big, 'a', sizeof(big));
		memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
		httpreq_reader_init(&rd, &lim);
		assert_int_equal(feed(&rd, big, sizeof(big), 50, &taken, &q, &status),
				 HTTPREQ_REFUSE);
		assert_int_equal(status, 431);
		httpreq_reader_clear(&rd);
	}
}

static void test_continue_and_head(void **state)
{
	static const char req[] = "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2"
				  "\r\n\r\n";
	struct httpreq_reader rd;
	struct httpreq *q;
	size_t taken;
	int status = 0;

	(void)state;
	httpreq_reader_init(&rd, &lim);
	assert_int_equal(feed(&rd, req, strlen(req), 100, &taken, &q, &status), HTTPREQ_MORE);
	assert_true(rd.continue_due);
	assert_true(rd.in_request);
	assert_int_equal(feed(&rd, "ok", 2, 100, &taken, &q, &status), HTTPREQ_DONE);
	assert_false(rd.in_request);
	httpreq_free(q);
	httpreq_reader_clear(&rd);

	httpreq_reader_init(&rd, &lim);
	assert_int_equal(feed(&rd, "HEAD /h", 7, 100, &taken, &q, &status), HTTPREQ_MORE);
	assert_true(httpreq_reader_head(&rd));
	assert_int_equal(feed(&rd, " HTTP/1.0\r\n\r\n", 13, 100, &taken, &q, &status),
			 HTTPREQ_DONE);
	assert_true(q->head);
	assert_false(q->keep_alive);
	assert_null(q->body);
	httpreq_free(q);
	httpreq_reader_clear(&rd);
}

#define FID "0123456789abcdef0123456789abcdef"
#define SHA "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static void test_data_target(void **state)
{
	static const struct {
		const char *rest, *query;
		int r;
	} cases[] = {
	    {"v/" FID "/manifest", "owner=a&version=3", 0},
	    {"v/" FID "/chunk", "owner=a&version=3&off=0&len=4096&sha=" SHA, 0},
	    {"v/" FID "/other", "owner=a&version=3", 1},
	    {"v/" FID "/manifest/x", "", 1},
	    {"v/" FID, "", 1},
	    {"v/0123/manifest", "owner=a&version=3", -1},
	    {"v/" FID "/manifest", "owner=a&version=0", -1},
	    {"v/" FID "/manifest", "owner=a&version=03", -1},
	    {"v/" FID "/manifest", "owner=A&version=3", -1},
	    {"v/" FID "/manifest", "version=3", -1},
	    {"v/" FID "/chunk", "owner=a&version=3&off=0&len=0&sha=" SHA, -1},
	    {"v/" FID "/chunk", "owner=a&version=3&off=0&len=16777217&sha=" SHA, -1},
	    {"v/" FID "/chunk", "owner=a&version=3&off=9223372036854775807&len=1&sha=" SHA, -1},
	    {"v/" FID "/chunk", "owner=a&version=3&off=0&len=1&sha=abc", -1},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct pd_target t;
		const char *why = NULL;

		assert_int_equal(pdreq_parse(cases[i].rest, cases[i].query, &t, &why), cases[i].r);
		if (cases[i].r < 0) {
			assert_non_null(why);
			assert_string_equal(t.vol, "v"); /* so a 403 can come first */
		}
	}
	{
		struct pd_target t;
		const char *why = NULL;

		assert_int_equal(pdreq_parse("v/" FID "/chunk",
					     "owner=a&version=3&off=8&len=4096&sha=" SHA, &t, &why),
				 0);
		assert_int_equal(t.op, PD_CHUNK);
		assert_true(t.version == 3 && t.off == 8 && t.len == 4096);
		assert_string_equal(t.owner, "a");
		assert_int_equal(t.sha[0], 0xe3);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_whole_and_split),
	    cmocka_unit_test(test_refused),
	    cmocka_unit_test(test_continue_and_head),
	    cmocka_unit_test(test_data_target),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

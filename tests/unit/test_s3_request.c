/* Unit tests of recall/s3_request.c: encoding, canonical queries, URLs, ranges,
 * multipart bodies and the parsing of S3's XML answers, malformed ones included. Every
 * parse gets an exact-size heap copy of its input, so an ASan build catches any read
 * past the buffer. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "recall/s3_request.h"

static char *dup_exact(const char *s, size_t len)
{
	char *b = malloc(len ? len : 1);

	assert_non_null(b);
	memcpy(b, s, len);
	return b;
}

static int parse_error_exact(const char *doc, size_t len, struct s3_error *e)
{
	char *b = dup_exact(doc, len);
	int rc = s3_parse_error(b, len, e);

	free(b);
	return rc;
}

static int parse_upload_exact(const char *doc, size_t len, char **id)
{
	char *b = dup_exact(doc, len);
	int rc = s3_parse_upload_id(b, len, id);

	free(b);
	return rc;
}

static int parse_list_exact(const char *doc, size_t len, struct s3_list_page *p)
{
	char *b = dup_exact(doc, len);
	int rc = s3_parse_list(b, len, p);

	free(b);
	return rc;
}

static void check_encode(const char *in, size_t len, int keep_slash, const char *want)
{
	char *out = s3_uri_encode(in, len, keep_slash);

	assert_non_null(out);
	assert_string_equal(out, want);
	free(out);
}

static void test_uri_encode(void **state)
{
	(void)state;
	check_encode("chunks/abc", 10, 1, "chunks/abc");
	check_encode("chunks/abc", 10, 0, "chunks%2Fabc");
	check_encode("a b", 3, 1, "a%20b");
	check_encode("a+b", 3, 1, "a%2Bb");
	check_encode("~a_b-c.d", 8, 1, "~a_b-c.d");
	check_encode("AZaz09", 6, 0, "AZaz09");
	check_encode("\xc3\xa9t\xc3\xa9", 5, 1, "%C3%A9t%C3%A9");
	check_encode("\xff", 1, 1, "%FF");
	check_encode("100%", 4, 1, "100%25");
	check_encode("=&?#:@", 6, 1, "%3D%26%3F%23%3A%40");
	check_encode("ab\0c", 4, 1, "ab%00c");
	check_encode("", 0, 1, "");
	check_encode("//", 2, 1, "//");
}

static void test_object_name(void **state)
{
	char *s;

	(void)state;
	s = s3_object_name("", "k/x");
	assert_string_equal(s, "k/x");
	free(s);
	s = s3_object_name(NULL, "k");
	assert_string_equal(s, "k");
	free(s);
	s = s3_object_name("hsm/site1", "chunks/ab");
	assert_string_equal(s, "hsm/site1/chunks/ab");
	free(s);
	s = s3_object_name("hsm", "");
	assert_string_equal(s, "hsm/");
	free(s);
}

static void check_query(const struct s3_param *p, size_t n, const char *want)
{
	char *q = s3_query(p, n);

	assert_non_null(q);
	assert_string_equal(q, want);
	free(q);
}

static void test_query(void **state)
{
	(void)state;
	check_query(NULL, 0, "");
	check_query((struct s3_param[]){ { "uploads", NULL } }, 1, "uploads=");
	check_query((struct s3_param[]){ { "uploadId", "Xy+z/=" }, { "partNumber", "3" } }, 2,
		    "partNumber=3&uploadId=Xy%2Bz%2F%3D");
	check_query((struct s3_param[]){ { "prefix", "dir/a b" },
					 { "list-type", "2" },
					 { "continuation-token", "1/2+3=" } },
		    3, "continuation-token=1%2F2%2B3%3D&list-type=2&prefix=dir%2Fa%20b");
	/* Sorted by the encoded names: '%' (0x25) comes before '-' (0x2D). */
	check_query((struct s3_param[]){ { "a-b", "1" }, { "a b", "2" } }, 2, "a%20b=2&a-b=1");
	/* Upper case sorts before lower case (byte order), equal names by value. */
	check_query((struct s3_param[]){ { "b", "2" }, { "B", "1" }, { "b", "1" } }, 3,
		    "B=1&b=1&b=2");
	check_query((struct s3_param[]){ { "max-keys", "" } }, 1, "max-keys=");
}

static void check_url(const char *ep, const char *bucket, const char *obj, const char *query,
		      const char *want)
{
	char *u = s3_url(ep, bucket, obj, query);

	assert_non_null(u);
	assert_string_equal(u, want);
	free(u);
}

static void test_url(void **state)
{
	(void)state;
	check_url("http://127.0.0.1:5000", "bkt", "pfx/a b", NULL,
		  "http://127.0.0.1:5000/bkt/pfx/a%20b");
	check_url("http://127.0.0.1:5000", "bkt", "k", "uploads=",
		  "http://127.0.0.1:5000/bkt/k?uploads=");
	check_url("https://s3.eu-west-1.amazonaws.com", "my.bucket", NULL, "list-type=2",
		  "https://s3.eu-west-1.amazonaws.com/my.bucket?list-type=2");
	check_url("http://h", "b", "x+y~z", "", "http://h/b/x%2By~z");
}

static void test_payload_sha256(void **state)
{
	char hex[S3_SHA256_HEX];

	(void)state;
	s3_payload_sha256("", 0, hex);
	assert_string_equal(hex,
			    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	s3_payload_sha256(NULL, 0, hex);
	assert_string_equal(hex,
			    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	s3_payload_sha256("abc", 3, hex);
	assert_string_equal(hex,
			    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_range(void **state)
{
	char buf[S3_RANGE_MAX];

	(void)state;
	assert_int_equal(s3_range(0, 0, buf), 0);
	assert_int_equal(s3_range(0, 10, buf), 1);
	assert_string_equal(buf, "bytes=0-9");
	assert_int_equal(s3_range(5, 0, buf), 1);
	assert_string_equal(buf, "bytes=5-");
	assert_int_equal(s3_range(4096, 1, buf), 1);
	assert_string_equal(buf, "bytes=4096-4096");
	assert_int_equal(s3_range(UINT64_MAX - 1, 2, buf), 1);
	assert_string_equal(buf, "bytes=18446744073709551614-18446744073709551615");
	assert_int_equal(s3_range(UINT64_MAX, 2, buf), -1);
	assert_int_equal(s3_range(2, UINT64_MAX, buf), -1);
}

static void test_complete_body(void **state)
{
	char *etags[] = { "\"aa\"", "\"b&<\"" };
	size_t len;
	char *body = s3_complete_body(etags, 2, &len);
	const char *want = "<CompleteMultipartUpload "
			   "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
			   "<Part><PartNumber>1</PartNumber><ETag>&quot;aa&quot;</ETag></Part>"
			   "<Part><PartNumber>2</PartNumber><ETag>&quot;b&amp;&lt;&quot;</ETag>"
			   "</Part></CompleteMultipartUpload>";

	(void)state;
	assert_non_null(body);
	assert_int_equal(len, strlen(want));
	assert_string_equal(body, want);
	free(body);
}

static void test_part_size(void **state)
{
	const uint64_t mib = 1 << 20;
	const uint64_t lens[] = { 20 * mib, 50000 * mib, 50000 * mib + 1, 5ULL << 40 };

	(void)state;
	assert_int_equal(s3_part_size(20 * mib, 5 * mib), 5 * mib);
	assert_int_equal(s3_part_size(20 * mib, 1 * mib), 5 * mib);
	assert_int_equal(s3_part_size(20 * mib, 16 * mib), 16 * mib);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		uint64_t ps = s3_part_size(lens[i], 5 * mib);

		assert_true(ps >= 5 * mib);
		assert_true((lens[i] + ps - 1) / ps <= S3_PARTS_MAX);
	}
	assert_int_equal(s3_part_size(50000 * mib + 1, 5 * mib) % mib, 0);
}

static const char err_doc[] =
	"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	"<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message>"
	"<Key>chunks/ab</Key><RequestId>4442587FB7D0A2F9</RequestId></Error>";

static void test_error_good(void **state)
{
	struct s3_error e;
	static const char ent[] = "<Error><Code>SlowDown</Code>"
				  "<Message>a &lt;b&gt; &amp; &quot;c&apos; &#65;&#x42;&#xe9;"
				  "<![CDATA[<raw>]]><!-- note --></Message></Error>";

	(void)state;
	assert_int_equal(parse_error_exact(err_doc, strlen(err_doc), &e), 1);
	assert_string_equal(e.code, "NoSuchKey");
	assert_string_equal(e.message, "The specified key does not exist.");
	assert_int_equal(parse_error_exact(ent, strlen(ent), &e), 1);
	assert_string_equal(e.code, "SlowDown");
	assert_string_equal(e.message, "a <b> & \"c' AB\xc3\xa9<raw>");
}

static void test_error_200(void **state)
{
	/* What CompleteMultipartUpload may send with a 200 status. */
	static const char doc[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\n"
				  "<Error>\n  <Code>InternalError</Code>\n  <Message>We "
				  "encountered an internal error. Please try again.</Message>\n"
				  "  <RequestId>656c76696e6727732072657175657374</RequestId>\n"
				  "</Error>\n";
	static const char ok[] =
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUploadResult "
		"xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Location>http://h/b/k"
		"</Location><Bucket>b</Bucket><Key>k</Key><ETag>\"3858f62230ac3c915f300c664312c11f"
		"-9\"</ETag></CompleteMultipartUploadResult>";
	struct s3_error e;

	(void)state;
	assert_int_equal(parse_error_exact(doc, strlen(doc), &e), 1);
	assert_string_equal(e.code, "InternalError");
	assert_true(s3_retryable(200, e.code));
	assert_int_equal(parse_error_exact(ok, strlen(ok), &e), 0);
	assert_string_equal(e.code, "");
}

static void test_error_truncated(void **state)
{
	struct s3_error e;

	(void)state;
	/* Every proper prefix of a document is incomplete. */
	for (size_t n = 0; n < strlen(err_doc); n++) {
		assert_int_equal(parse_error_exact(err_doc, n, &e), -1);
		assert_string_equal(e.code, "");
	}
}

static void test_error_garbage(void **state)
{
	static const char *const bad[] = {
		"",
		"hello",
		"<Error><Code>x</Code>",
		"<Error><Code>x</Cod></Error>",
		"<Error><Code>x</Code></Error><Error/>",
		"<Error><Code>x</Code></Error>trailing",
		"<Error></Error>",
		"<Error><Code></Code></Error>",
		"<!DOCTYPE Error [<!ENTITY x \"y\">]><Error><Code>&x;</Code></Error>",
		"<Error><Code>&bogus;</Code></Error>",
		"<Error><Code>&#0;</Code></Error>",
		"<Error><Code>&#xD800;</Code></Error>",
		"<Error><Code>&#x110000;</Code></Error>",
		"<Error><Code>&#;</Code></Error>",
		"<Error><Code>&amp</Code></Error>",
		"<Error a=1><Code>x</Code></Error>",
		"<Error a=\"1><Code>x</Code></Error>",
		"<Error><Code>x</Code></Error",
		"<Error><1Code>x</1Code></Error>",
		"< Error><Code>x</Code></Error>",
		"<Error><Code>x<!-- open </Code></Error>",
		"<Error><Code><![CDATA[x</Code></Error>",
		"<?xml version=\"1.0\"",
		"<Error/><Error/>",
		"text<Error><Code>x</Code></Error>",
	};
	struct s3_error e;
	char nul[] = "<Error><Code>a\0b</Code></Error>";
	char deep[16 * 40 + 1] = "";

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		print_message("# garbage %zu: %s\n", i, bad[i]);
		assert_int_equal(parse_error_exact(bad[i], strlen(bad[i]), &e), -1);
	}
	assert_int_equal(parse_error_exact(nul, sizeof(nul) - 1, &e), -1);
	assert_int_equal(s3_parse_error(NULL, 0, &e), -1);
	/* Nesting deeper than the scanner allows is refused, not overflowed. */
	for (int i = 0; i < 40; i++)
		strcat(deep, "<a>");
	assert_int_equal(parse_error_exact(deep, strlen(deep), &e), -1);
	/* Well-formed XML that is not an error document (an HTML proxy page). */
	assert_int_equal(parse_error_exact("<html><body>502</body></html>", 29, &e), 0);
	assert_int_equal(parse_error_exact("<Error/>", 8, &e), -1);
}

static void test_error_long_message(void **state)
{
	char doc[2048];
	char msg[1001];
	struct s3_error e;

	(void)state;
	memset(msg, 'm', 1000);
	msg[1000] = '\0';
	snprintf(doc, sizeof(doc), "<Error><Code>AccessDenied</Code><Message>%s</Message></Error>",
		 msg);
	assert_int_equal(parse_error_exact(doc, strlen(doc), &e), 1);
	assert_int_equal(strlen(e.message), sizeof(e.message) - 1);
	assert_string_equal(e.code, "AccessDenied");
}

static const char upload_doc[] =
	"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	"<InitiateMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
	"<Bucket>bkt</Bucket><Key>big</Key>"
	"<UploadId>VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</UploadId>"
	"</InitiateMultipartUploadResult>";

static void test_upload_id(void **state)
{
	static const char *const bad[] = {
		"<InitiateMultipartUploadResult><Bucket>b</Bucket>"
		"</InitiateMultipartUploadResult>",
		"<InitiateMultipartUploadResult><UploadId></UploadId>"
		"</InitiateMultipartUploadResult>",
		"<InitiateMultipartUploadResult><UploadId>a</UploadId><UploadId>b</UploadId>"
		"</InitiateMultipartUploadResult>",
		"<Other><UploadId>a</UploadId></Other>",
		"<InitiateMultipartUploadResult><UploadId><x/></UploadId>"
		"</InitiateMultipartUploadResult>",
		"<Error><Code>AccessDenied</Code></Error>",
	};
	char *id = (char *)1;

	(void)state;
	assert_int_equal(parse_upload_exact(upload_doc, strlen(upload_doc), &id), 0);
	assert_string_equal(id, "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA");
	free(id);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		id = (char *)1;
		assert_int_equal(parse_upload_exact(bad[i], strlen(bad[i]), &id), -1);
		assert_null(id);
	}
	for (size_t n = 0; n < strlen(upload_doc); n++) {
		assert_int_equal(parse_upload_exact(upload_doc, n, &id), -1);
		assert_null(id);
	}
}

static const char list_doc[] =
	"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	"<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
	"<Name>bkt</Name><Prefix>hsm/</Prefix><KeyCount>3</KeyCount><MaxKeys>3</MaxKeys>"
	"<IsTruncated>true</IsTruncated>"
	"<Contents><Key>hsm/a</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified>"
	"<ETag>&quot;x&quot;</ETag><Size>3</Size><StorageClass>STANDARD</StorageClass>"
	"</Contents>"
	"<Contents><Key>hsm/b&amp;c</Key><Size>0</Size></Contents>"
	"<Contents><Size>1</Size><Key>hsm/dir/d e</Key></Contents>"
	"<CommonPrefixes><Prefix>hsm/x/</Prefix></CommonPrefixes>"
	"<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM="
	"</NextContinuationToken>"
	"</ListBucketResult>";

static void test_list_good(void **state)
{
	struct s3_list_page p;
	static const char last[] = "<ListBucketResult><Name>b</Name>"
				   "<IsTruncated>false</IsTruncated><Contents><Key>k</Key>"
				   "</Contents></ListBucketResult>";
	static const char empty[] = "<ListBucketResult><IsTruncated>false</IsTruncated>"
				    "<KeyCount>0</KeyCount></ListBucketResult>";

	(void)state;
	assert_int_equal(parse_list_exact(list_doc, strlen(list_doc), &p), 0);
	assert_int_equal(p.n, 3);
	assert_string_equal(p.keys[0], "hsm/a");
	assert_string_equal(p.keys[1], "hsm/b&c");
	assert_string_equal(p.keys[2], "hsm/dir/d e");
	assert_true(p.truncated);
	assert_string_equal(p.next_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
	s3_list_page_free(&p);
	assert_null(p.keys);

	assert_int_equal(parse_list_exact(last, strlen(last), &p), 0);
	assert_int_equal(p.n, 1);
	assert_false(p.truncated);
	assert_null(p.next_token);
	s3_list_page_free(&p);

	assert_int_equal(parse_list_exact(empty, strlen(empty), &p), 0);
	assert_int_equal(p.n, 0);
	s3_list_page_free(&p);
}

static void test_list_malformed(void **state)
{
	static const char *const bad[] = {
		/* truncated without a token: it would never end */
		"<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",
		/* no IsTruncated at all */
		"<ListBucketResult><Contents><Key>a</Key></Contents></ListBucketResult>",
		"<ListBucketResult><IsTruncated>maybe</IsTruncated></ListBucketResult>",
		"<ListBucketResult><IsTruncated>false</IsTruncated>"
		"<IsTruncated>true</IsTruncated></ListBucketResult>",
		"<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Size>1</Size>"
		"</Contents></ListBucketResult>",
		"<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a</Key>"
		"<Key>b</Key></Contents></ListBucketResult>",
		"<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key></Key>"
		"</Contents></ListBucketResult>",
		"<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key><i>a</i>"
		"</Key></Contents></ListBucketResult>",
		"<ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken>"
		"</NextContinuationToken></ListBucketResult>",
		"<ListAllMyBucketsResult><IsTruncated>false</IsTruncated>"
		"</ListAllMyBucketsResult>",
		"<Error><Code>AccessDenied</Code><Message>no</Message></Error>",
	};
	struct s3_list_page p;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		print_message("# malformed list %zu\n", i);
		assert_int_equal(parse_list_exact(bad[i], strlen(bad[i]), &p), -1);
		assert_int_equal(p.n, 0);
		assert_null(p.keys);
		assert_null(p.next_token);
	}
	for (size_t n = 0; n < strlen(list_doc); n++) {
		assert_int_equal(parse_list_exact(list_doc, n, &p), -1);
		assert_null(p.keys);
	}
}

static void test_status_mapping(void **state)
{
	(void)state;
	assert_int_equal(s3_status_errno(404, "NoSuchKey"), ENOENT);
	assert_int_equal(s3_status_errno(404, ""), ENOENT);
	assert_int_equal(s3_status_errno(404, NULL), ENOENT);
	assert_int_equal(s3_status_errno(404, "NoSuchBucket"), EIO);
	assert_int_equal(s3_status_errno(404, "NoSuchUpload"), EIO);
	assert_int_equal(s3_status_errno(403, "SignatureDoesNotMatch"), EACCES);
	assert_int_equal(s3_status_errno(403, "InvalidAccessKeyId"), EACCES);
	assert_int_equal(s3_status_errno(403, ""), EACCES);
	assert_int_equal(s3_status_errno(400, "ExpiredToken"), EACCES);
	assert_int_equal(s3_status_errno(400, "InvalidArgument"), EIO);
	assert_int_equal(s3_status_errno(400, "KeyTooLongError"), EINVAL);
	assert_int_equal(s3_status_errno(500, "InternalError"), EIO);
	assert_int_equal(s3_status_errno(200, "InternalError"), EIO);

	assert_true(s3_retryable(500, ""));
	assert_true(s3_retryable(503, "SlowDown"));
	assert_true(s3_retryable(429, ""));
	assert_true(s3_retryable(400, "RequestTimeout"));
	assert_true(s3_retryable(200, "InternalError"));
	assert_false(s3_retryable(501, "NotImplemented"));
	assert_false(s3_retryable(403, "AccessDenied"));
	assert_false(s3_retryable(404, "NoSuchKey"));
	assert_false(s3_retryable(400, "InvalidArgument"));
	assert_false(s3_retryable(416, "InvalidRange"));
	assert_false(s3_retryable(200, "NoSuchUpload"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uri_encode),
		cmocka_unit_test(test_object_name),
		cmocka_unit_test(test_query),
		cmocka_unit_test(test_url),
		cmocka_unit_test(test_payload_sha256),
		cmocka_unit_test(test_range),
		cmocka_unit_test(test_complete_body),
		cmocka_unit_test(test_part_size),
		cmocka_unit_test(test_error_good),
		cmocka_unit_test(test_error_200),
		cmocka_unit_test(test_error_truncated),
		cmocka_unit_test(test_error_garbage),
		cmocka_unit_test(test_error_long_message),
		cmocka_unit_test(test_upload_id),
		cmocka_unit_test(test_list_good),
		cmocka_unit_test(test_list_malformed),
		cmocka_unit_test(test_status_mapping),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

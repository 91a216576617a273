/* Writes valid inputs for the fuzz targets into DIR (tests/fuzz/run): records with a
 * CRC or a hash inside are out of a fuzzer's reach from nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsmd/nsfeed.h"
#include "hsmd/nsrec.h"
#include "lib/hsmxattr.h"
#include "lib/manifest.h"

static void put(const char *dir, const char *name, const void *p, size_t n)
{
	char path[4200];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

static void state_seeds(const char *dir)
{
	uint8_t buf[HSM_XATTR_MAX];
	struct hsm_state st;
	int n;

	for (int i = 0; i < 3; i++) {
		memset(&st, 0, sizeof(st));
		st.state = (uint8_t)(HSM_STATE_RESIDENT + i);
		for (int j = 0; j < 16; j++)
			st.fid.b[j] = (uint8_t)(j + 1 + i);
		st.version = (uint64_t)(i + 1);
		snprintf(st.owner, sizeof(st.owner), "site%d", i);
		st.nvv = (unsigned)i + 1;
		for (int j = 0; j < i + 1; j++) {
			snprintf(st.vv[j].site, sizeof(st.vv[j].site), "s%d", j);
			st.vv[j].counter = (uint64_t)j + 1;
		}
		if (i) {
			st.archived_version = 1;
			st.archived_size = 4096;
			memset(st.manifest_id, 0xab, 32);
		}
		n = hsmx_encode(&st, buf, sizeof(buf));
		if (n < 0)
			exit(1);
		char name[32];
		snprintf(name, sizeof(name), "state-%d", i);
		put(dir, name, buf, (size_t)n);
	}
}

static void manifest_seeds(const char *dir)
{
	static const uint64_t sizes[] = {0, 1, 65536, 65537, 300000};

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct hsm_manifest m;
		char *text, name[32];
		size_t len;

		if (manifest_init(&m, sizes[i], 65536) < 0)
			exit(1);
		for (size_t c = 0; c < m.nchunks; c++)
			memset(m.chunks[c].sha256, (int)(c + 1), 32);
		if (manifest_serialize(&m, &text, &len) < 0)
			exit(1);
		snprintf(name, sizeof(name), "manifest-%zu", i);
		put(dir, name, text, len);
		free(text);
		manifest_free(&m);
	}
}

static void nsrec_seeds(const char *dir)
{
	static const char *const lines[] = {
	    "0102030405060708090a0b0c0d0e0f10 f 644 1000 100 12345 1700000000.123456789 a:3 "
	    "a:3,b:1 - dir%20with%20space/f",
	    "0102030405060708090a0b0c0d0e0f10 F 644 0 0 0 1.000000000 a:1 a:2 - gone",
	    "0102030405060708090a0b0c0d0e0f11 d 755 0 0 0 1700000000.000000000 b:1 b:1 - d/sub",
	    "0102030405060708090a0b0c0d0e0f12 l 777 0 0 0 1700000000.000000000 b:1 b:1 - ln "
	    "../target",
	};
	struct ns_rec r;
	char err[256], name[32], line[NS_LINE_MAX];

	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		snprintf(name, sizeof(name), "nsrec-%zu", i);
		put(dir, name, lines[i], strlen(lines[i]));
		/* and what the formatter makes of it, which is what peers really send */
		if (nsrec_parse(lines[i], strlen(lines[i]), &r, err, sizeof(err)) == 0) {
			int n = nsrec_format(&r, line, sizeof(line));

			snprintf(name, sizeof(name), "nsrec-%zu-formatted", i);
			if (n > 0)
				put(dir, name, line, (size_t)n);
			nsrec_clear(&r);
		}
	}
}

static void feed_seeds(const char *dir)
{
	struct ns_feed_head h = {"0123456789abcdef0123456789abcdef", "b", "vol", 42, 0};
	char body[4096];
	int n = nsfeed_format_head(&h, body, sizeof(body));

	if (n < 0)
		exit(1);
	put(dir, "feed-empty", body, (size_t)n);
	n += snprintf(body + n, sizeof(body) - (size_t)n,
		      "41 0102030405060708090a0b0c0d0e0f10 f 644 1000 100 12345 "
		      "1700000000.123456789 b:3 b:3,c:1 - dir%%20a/f\n"
		      "42 0102030405060708090a0b0c0d0e0f11 D 755 0 0 0 1700000000.000000000 b:1 "
		      "b:2 - old new\n");
	put(dir, "feed-two", body, (size_t)n);
}

/* What S3-compatible endpoints answer, in the shapes AWS documents. */
static void s3xml_seeds(const char *dir)
{
	static const char *const docs[] = {
	    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>"
	    "<Message>The specified key does not exist.</Message><Key>a&amp;b</Key>"
	    "<RequestId>4442587FB7D0A2F9</RequestId></Error>",
	    "<?xml version=\"1.0\"?><InitiateMultipartUploadResult "
	    "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Bucket>b</Bucket><Key>k</Key>"
	    "<UploadId>VXBsb2FkIElE</UploadId></InitiateMultipartUploadResult>",
	    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult "
	    "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>b</Name><Prefix>p/</Prefix>"
	    "<KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>"
	    "<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/"
	    "wm36Hy4vbOwM=</NextContinuationToken><Contents><Key>p/a&#x20;b</Key>"
	    "<LastModified>2009-10-12T17:50:30.000Z</LastModified><ETag>&quot;fba9dede5f27731c"
	    "&quot;</ETag><Size>434234</Size><StorageClass>STANDARD</StorageClass></Contents>"
	    "<Contents><Key><![CDATA[p/c<d]]></Key></Contents></ListBucketResult>",
	    "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>",
	};
	char name[32];

	for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
		snprintf(name, sizeof(name), "s3xml-%zu", i);
		put(dir, name, docs[i], strlen(docs[i]));
	}
}

static void httpreq_seeds(const char *dir)
{
	/* the first byte is how many bytes each feed gets (0: all at once) */
	static const char *const reqs[] = {
	    "\0GET /v1/data/vol/0123456789abcdef0123456789abcdef/manifest?owner=a&version=3 "
	    "HTTP/1.1\r\nHost: b\r\n\r\n",
	    "\7GET /v1/data/vol/0123456789abcdef0123456789abcdef/chunk?owner=a&version=3&off=0&"
	    "len=4096&sha=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 "
	    "HTTP/1.1\r\nHost: b\r\nConnection: keep-alive\r\n\r\n"
	    "HEAD /v1/health HTTP/1.1\r\n\r\n",
	    "\0GET /v1/changes/vol?since=17&wait=30&max=500&feed=0123456789abcdef0123456789ab"
	    "cdef HTTP/1.1\r\nHost: b\r\n\r\n",
	    "\1POST /v1/x%20y+z HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
	    "\r\nhello",
	    "\3POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nX-A:  b  \r\n\r\n"
	    "5\r\nhello\r\n0\r\nTrailer: x\r\n\r\n",
	    "\0GET /a HTTP/1.0\r\n\r\nGET /b?c HTTP/1.1\r\n\r\n",
	};

	for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		char name[32];

		snprintf(name, sizeof(name), "httpreq-%zu", i);
		put(dir, name, reqs[i], strlen(reqs[i] + 1) + 1);
	}
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: seeds TARGET DIR\n");
		return 2;
	}
	if (!strcmp(argv[1], "hsmxattr"))
		state_seeds(argv[2]);
	else if (!strcmp(argv[1], "manifest"))
		manifest_seeds(argv[2]);
	else if (!strcmp(argv[1], "nsrec"))
		nsrec_seeds(argv[2]);
	else if (!strcmp(argv[1], "feed"))
		feed_seeds(argv[2]);
	else if (!strcmp(argv[1], "s3xml"))
		s3xml_seeds(argv[2]);
	else if (!strcmp(argv[1], "httpreq"))
		httpreq_seeds(argv[2]);
	return 0;
}

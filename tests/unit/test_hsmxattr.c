/* The trusted.hsm codec: round trips, the documented byte layout, and every way a
 * record can be malformed. Records with bad fields are built here byte by byte (with
 * a CRC computed bit by bit, independently of the codec's table) so the decoder's
 * checks behind the CRC are reached. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "lib/hsmxattr.h"

/* Bitwise reflected CRC-32, the textbook definition. */
static uint32_t ref_crc32(const uint8_t *p, size_t len)
{
	uint32_t crc = 0xffffffffu;

	for (size_t i = 0; i < len; i++) {
		crc ^= p[i];
		for (int b = 0; b < 8; b++)
			crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1)));
	}
	return ~crc;
}

/* A byte builder for records, following docs/formats.md. */
struct raw {
	uint8_t b[2048];
	size_t n;
};

static void raw_bytes(struct raw *r, const void *p, size_t n)
{
	assert_true(r->n + n <= sizeof(r->b));
	memcpy(r->b + r->n, p, n);
	r->n += n;
}

static void raw_le(struct raw *r, uint64_t v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t c = (uint8_t)(v >> (8 * i));

		raw_bytes(r, &c, 1);
	}
}

static void raw_name(struct raw *r, const char *s, size_t n)
{
	raw_le(r, n, 1);
	raw_bytes(r, s, n);
}

static void raw_crc(struct raw *r)
{
	raw_le(r, ref_crc32(r->b, r->n), 4);
}

/* Fields of a raw record that the malformed cases vary. */
struct rawspec {
	uint8_t format, state, flags;
	int zero_fid;
	const char *owner;
	size_t owner_len;
	uint32_t nsec;
	unsigned nvv;
	const char *vv[20];
};

static void raw_build(struct raw *r, const struct rawspec *s)
{
	uint8_t fid[16] = {0};
	uint8_t mid[32];

	memset(r, 0, sizeof(*r));
	memset(mid, 0xab, sizeof(mid));
	if (!s->zero_fid) {
		fid[0] = 0x11;
		fid[15] = 0x5a;
	}
	raw_le(r, s->format, 1);
	raw_le(r, s->state, 1);
	raw_le(r, s->flags, 1);
	raw_bytes(r, fid, 16);
	raw_le(r, 7, 8);
	raw_name(r, s->owner, s->owner_len);
	raw_le(r, 6, 8);
	raw_le(r, 4096, 8);
	raw_bytes(r, mid, 32);
	raw_le(r, 1700000000, 8);
	raw_le(r, s->nsec, 4);
	raw_le(r, s->nvv, 1);
	for (unsigned i = 0; i < s->nvv; i++) {
		raw_name(r, s->vv[i], strlen(s->vv[i]));
		raw_le(r, i + 1, 8);
	}
	raw_crc(r);
}

static struct rawspec raw_good(void)
{
	struct rawspec s = {
	    .format = 1,
	    .state = 2,
	    .flags = 1,
	    .owner = "ny",
	    .owner_len = 2,
	    .nsec = 5,
	    .nvv = 2,
	    .vv = {"ny", "ldn"},
	};
	return s;
}

static void expect_decode_error(const uint8_t *buf, size_t len, const char *msg)
{
	struct hsm_state st;
	char err[256];

	errno = 0;
	assert_int_equal(hsmx_decode(buf, len, &st, err, sizeof(err)), -1);
	assert_int_equal(errno, EINVAL);
	assert_string_equal(err, msg);
}

static void expect_raw_error(const struct rawspec *s, const char *msg)
{
	struct raw r;

	raw_build(&r, s);
	expect_decode_error(r.b, r.n, msg);
}

static void make_state(struct hsm_state *st)
{
	memset(st, 0, sizeof(*st));
	st->state = HSM_STATE_ARCHIVED;
	st->flags = HSM_FLAG_PINNED;
	for (int i = 0; i < 16; i++)
		st->fid.b[i] = (uint8_t)(0xf0 + i);
	st->version = 0x0102030405060708ull;
	strcpy(st->owner, "ny");
	st->archived_version = 6;
	st->archived_size = 4096;
	memset(st->manifest_id, 0xab, sizeof(st->manifest_id));
	st->archived_mtime_sec = -2;
	st->archived_mtime_nsec = 999999999;
	st->nvv = 2;
	strcpy(st->vv[0].site, "ny");
	st->vv[0].counter = 7;
	strcpy(st->vv[1].site, "ldn");
	st->vv[1].counter = 3;
}

static void assert_state_equal(const struct hsm_state *a, const struct hsm_state *b)
{
	assert_int_equal(a->state, b->state);
	assert_int_equal(a->flags, b->flags);
	assert_memory_equal(a->fid.b, b->fid.b, 16);
	assert_true(a->version == b->version);
	assert_string_equal(a->owner, b->owner);
	assert_true(a->archived_version == b->archived_version);
	assert_true(a->archived_size == b->archived_size);
	assert_memory_equal(a->manifest_id, b->manifest_id, 32);
	assert_true(a->archived_mtime_sec == b->archived_mtime_sec);
	assert_int_equal(a->archived_mtime_nsec, b->archived_mtime_nsec);
	assert_int_equal(a->nvv, b->nvv);
	for (unsigned i = 0; i < a->nvv; i++) {
		assert_string_equal(a->vv[i].site, b->vv[i].site);
		assert_true(a->vv[i].counter == b->vv[i].counter);
	}
}

static void test_crc_reference(void **state)
{
	(void)state;
	/* The standard check value of CRC-32, proving the reference is the usual CRC. */
	assert_int_equal(ref_crc32((const uint8_t *)"123456789", 9), 0xcbf43926u);
}

/* The exact bytes of one record, as docs/formats.md describes them. */
static void test_golden_layout(void **state)
{
	static const uint8_t want[] = {
	    0x01, 0x02, 0x01,				    /* format, state, flags */
	    0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, /* fid */
	    0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff, 0x08, 0x07, 0x06, 0x05,
	    0x04, 0x03, 0x02, 0x01,			    /* version */
	    0x02, 'n',	'y',				    /* owner */
	    0x06, 0,	0,    0,    0,	  0,	0,    0,    /* archived_version */
	    0x00, 0x10, 0,    0,    0,	  0,	0,    0,    /* archived_size */
	    0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, /* manifest_id */
	    0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab,
	    0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab,
	    0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* mtime sec = -2 */
	    0xff, 0xc9, 0x9a, 0x3b,			    /* nsec 999999999 */
	    0x02,					    /* nvv */
	    0x02, 'n',	'y',  0x07, 0,	  0,	0,    0,    0,	  0,	0,    0x03,
	    'l',  'd',	'n',  0x03, 0,	  0,	0,    0,    0,	  0,	0,
	};
	uint8_t buf[HSM_XATTR_MAX];
	struct hsm_state st;
	uint32_t crc;
	int n;

	(void)state;
	make_state(&st);
	n = hsmx_encode(&st, buf, sizeof(buf));
	assert_int_equal(n, sizeof(want) + 4);
	assert_memory_equal(buf, want, sizeof(want));
	crc = ref_crc32(want, sizeof(want));
	/* zlib.crc32 of the same bytes, as docs/formats.md shows them */
	assert_int_equal(crc, 0xd24a6f2du);
	assert_int_equal(buf[sizeof(want)], crc & 0xff);
	assert_int_equal(buf[sizeof(want) + 1], (crc >> 8) & 0xff);
	assert_int_equal(buf[sizeof(want) + 2], (crc >> 16) & 0xff);
	assert_int_equal(buf[sizeof(want) + 3], crc >> 24);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void random_name(char *out, size_t len)
{
	static const char first[] = "abcdefghijklmnopqrstuvwxyz";
	static const char rest[] = "abcdefghijklmnopqrstuvwxyz0123456789_-";

	out[0] = first[rng() % 26];
	for (size_t i = 1; i < len; i++)
		out[i] = rest[rng() % (sizeof(rest) - 1)];
	out[len] = '\0';
}

static void random_state(struct hsm_state *st, int max)
{
	memset(st, 0, sizeof(*st));
	st->state = (uint8_t)(1 + rng() % 3);
	st->flags = (uint8_t)(rng() & HSM_FLAGS_KNOWN);
	for (int i = 0; i < 16; i++)
		st->fid.b[i] = (uint8_t)rng();
	st->fid.b[0] |= 1;
	st->version = rng();
	random_name(st->owner, max ? HSM_SITE_MAX : 1 + rng() % HSM_SITE_MAX);
	st->archived_version = rng();
	st->archived_size = rng();
	for (int i = 0; i < 32; i++)
		st->manifest_id[i] = (uint8_t)rng();
	st->archived_mtime_sec = (int64_t)rng();
	st->archived_mtime_nsec = (uint32_t)(rng() % 1000000000u);
	st->nvv = max ? HSM_VV_MAX : (unsigned)(rng() % (HSM_VV_MAX + 1));
	for (unsigned i = 0; i < st->nvv; i++) {
		/* A distinct last character keeps the sites unique. */
		random_name(st->vv[i].site, max ? HSM_SITE_MAX : 2 + rng() % (HSM_SITE_MAX - 1));
		st->vv[i].site[strlen(st->vv[i].site) - 1] = "abcdefghijklmnop"[i];
		st->vv[i].counter = rng();
	}
}

static void roundtrip(const struct hsm_state *st, size_t want_len)
{
	uint8_t buf[HSM_XATTR_MAX], again[HSM_XATTR_MAX];
	struct hsm_state out;
	char err[256] = "untouched";
	int n, m;

	n = hsmx_encode(st, buf, sizeof(buf));
	assert_true(n > 0);
	if (want_len)
		assert_int_equal(n, want_len);
	assert_int_equal(hsmx_decode(buf, (size_t)n, &out, err, sizeof(err)), 0);
	assert_string_equal(err, "");
	assert_state_equal(st, &out);
	m = hsmx_encode(&out, again, sizeof(again));
	assert_int_equal(m, n);
	assert_memory_equal(buf, again, (size_t)n);
}

static void test_roundtrip_many(void **state)
{
	struct hsm_state st;

	(void)state;
	for (int i = 0; i < 5000; i++) {
		random_state(&st, 0);
		roundtrip(&st, 0);
	}
}

static void test_roundtrip_max(void **state)
{
	struct hsm_state st;

	(void)state;
	random_state(&st, 1);
	/* 89 fixed bytes + 32 owner + 16 entries of 41 + 4 crc: the largest record. */
	roundtrip(&st, 89 + 32 + 16 * 41 + 4);
	assert_int_equal(89 + 32 + 16 * 41 + 4, 781);
}

static void test_roundtrip_extremes(void **state)
{
	struct hsm_state st;

	(void)state;
	make_state(&st);
	st.nvv = 0;
	st.flags = 0;
	st.state = HSM_STATE_STUB;
	strcpy(st.owner, "a");
	st.version = UINT64_MAX;
	st.archived_version = 0;
	st.archived_size = UINT64_MAX;
	st.archived_mtime_sec = INT64_MIN;
	st.archived_mtime_nsec = 0;
	roundtrip(&st, 89 + 1 + 4);
	st.archived_mtime_sec = INT64_MAX;
	st.flags = HSM_FLAGS_KNOWN;
	st.state = HSM_STATE_RESIDENT;
	roundtrip(&st, 94);
}

static void expect_encode_fail(const struct hsm_state *st, int want_errno)
{
	uint8_t buf[HSM_XATTR_MAX];

	errno = 0;
	assert_int_equal(hsmx_encode(st, buf, sizeof(buf)), -1);
	assert_int_equal(errno, want_errno);
}

static void test_encode_rejects(void **state)
{
	struct hsm_state st;

	(void)state;
	make_state(&st);
	st.state = 0;
	expect_encode_fail(&st, EINVAL);
	st.state = 4;
	expect_encode_fail(&st, EINVAL);
	make_state(&st);
	st.flags = 0x08;
	expect_encode_fail(&st, EINVAL);
	make_state(&st);
	st.owner[0] = '\0';
	expect_encode_fail(&st, EINVAL);
	strcpy(st.owner, "Ny");
	expect_encode_fail(&st, EINVAL);
	strcpy(st.owner, "1ny");
	expect_encode_fail(&st, EINVAL);
	memset(st.owner, 'a', sizeof(st.owner)); /* not terminated inside the buffer */
	expect_encode_fail(&st, EINVAL);
	make_state(&st);
	memset(&st.fid, 0, sizeof(st.fid));
	expect_encode_fail(&st, EINVAL);
	make_state(&st);
	st.archived_mtime_nsec = 1000000000;
	expect_encode_fail(&st, EINVAL);
	make_state(&st);
	st.nvv = HSM_VV_MAX + 1;
	expect_encode_fail(&st, EINVAL);
	make_state(&st);
	strcpy(st.vv[1].site, "ny");
	expect_encode_fail(&st, EINVAL);
	strcpy(st.vv[1].site, "l.dn");
	expect_encode_fail(&st, EINVAL);
	expect_encode_fail(NULL, EINVAL);
}

static void test_encode_capacity(void **state)
{
	uint8_t buf[HSM_XATTR_MAX];
	struct hsm_state st;
	int n;

	(void)state;
	make_state(&st);
	n = hsmx_encode(&st, buf, sizeof(buf));
	assert_true(n > 0);
	for (int cap = 0; cap < n; cap++) {
		errno = 0;
		assert_int_equal(hsmx_encode(&st, buf, (size_t)cap), -1);
		assert_int_equal(errno, ENOSPC);
	}
	assert_int_equal(hsmx_encode(&st, buf, (size_t)n), n);
}

static void test_decode_empty_and_long(void **state)
{
	uint8_t big[HSM_XATTR_MAX + 1] = {1};

	(void)state;
	expect_decode_error(big, 0, "empty record");
	expect_decode_error(NULL, 0, "empty record");
	expect_decode_error(big, sizeof(big), "bad record: 1025 bytes, at most 1024 allowed");
}

static void test_decode_truncated_everywhere(void **state)
{
	uint8_t buf[HSM_XATTR_MAX];
	struct hsm_state st;
	char err[256];
	int n;

	(void)state;
	make_state(&st);
	n = hsmx_encode(&st, buf, sizeof(buf));
	for (int len = 1; len < n; len++) {
		assert_int_equal(hsmx_decode(buf, (size_t)len, &st, err, sizeof(err)), -1);
		assert_true(strncmp(err, "truncated record: ", 18) == 0);
	}
	expect_decode_error(buf, 1, "truncated record: state at offset 1 needs 1 byte(s), 0 left");
	expect_decode_error(buf, 10, "truncated record: fid at offset 3 needs 16 byte(s), 7 left");
	expect_decode_error(buf, 28,
			    "truncated record: owner at offset 28 needs 2 byte(s), 0 left");
	expect_decode_error(buf, 90, "truncated record: nvv at offset 90 needs 1 byte(s), 0 left");
	expect_decode_error(buf, 100,
			    "truncated record: vv counter at offset 94 needs 8 byte(s), 6 left");
	expect_decode_error(buf, (size_t)n - 1,
			    "truncated record: crc32 at offset 114 needs 4 byte(s), 3 left");
}

static void test_decode_trailing(void **state)
{
	uint8_t buf[HSM_XATTR_MAX];
	struct hsm_state st;
	int n;

	(void)state;
	make_state(&st);
	n = hsmx_encode(&st, buf, sizeof(buf));
	buf[n] = 0;
	buf[n + 1] = 0;
	expect_decode_error(buf, (size_t)n + 1,
			    "bad record: 1 extra byte(s) at offset 118, after the crc32");
	expect_decode_error(buf, (size_t)n + 2,
			    "bad record: 2 extra byte(s) at offset 118, after the crc32");
}

static void test_decode_format_version(void **state)
{
	struct rawspec s = raw_good();

	(void)state;
	s.format = 2;
	expect_raw_error(&s, "bad record: format version 2, expected 1");
	s.format = 0;
	expect_raw_error(&s, "bad record: format version 0, expected 1");
	/* The format is checked first: a one-byte record of another format says so. */
	expect_decode_error((const uint8_t *)"\x02", 1, "bad record: format version 2, expected 1");
}

static void test_decode_bad_crc(void **state)
{
	struct rawspec s = raw_good();
	char msg[128];
	uint32_t good, bad;
	struct raw r;

	(void)state;
	raw_build(&r, &s);
	good = ref_crc32(r.b, r.n - 4);
	r.b[40] ^= 0x01;
	bad = ref_crc32(r.b, r.n - 4);
	snprintf(msg, sizeof(msg), "bad record: crc32 mismatch (stored %08x, computed %08x)", good,
		 bad);
	expect_decode_error(r.b, r.n, msg);
}

static void test_decode_bad_state(void **state)
{
	struct rawspec s = raw_good();

	(void)state;
	s.state = 0;
	expect_raw_error(&s, "bad record: unknown state 0");
	s.state = 4;
	expect_raw_error(&s, "bad record: unknown state 4");
	s.state = 255;
	expect_raw_error(&s, "bad record: unknown state 255");
}

static void test_decode_bad_flags(void **state)
{
	struct rawspec s = raw_good();

	(void)state;
	s.flags = 0x08;
	expect_raw_error(&s, "bad record: unknown flag bits 0x08");
	s.flags = 0x81;
	expect_raw_error(&s, "bad record: unknown flag bits 0x80");
}

static void test_decode_bad_owner(void **state)
{
	struct rawspec s = raw_good();
	static const char long_name[] = "abcdefghijklmnopqrstuvwxyzabcdefg";

	(void)state;
	s.owner = "";
	s.owner_len = 0;
	expect_raw_error(&s, "bad record: owner length 0 at offset 27, expected 1 to 32");
	s.owner = long_name;
	s.owner_len = 33;
	expect_raw_error(&s, "bad record: owner length 33 at offset 27, expected 1 to 32");
	s.owner = "Ny";
	s.owner_len = 2;
	expect_raw_error(&s, "bad record: invalid owner site name \"Ny\"");
	s.owner = "9ny";
	s.owner_len = 3;
	expect_raw_error(&s, "bad record: invalid owner site name \"9ny\"");
	s.owner = "n y";
	expect_raw_error(&s, "bad record: invalid owner site name \"n y\"");
	s.owner = "n\x01y";
	expect_raw_error(&s, "bad record: invalid owner site name \"n\\x01y\"");
	s.owner = "ny\0x";
	expect_raw_error(&s, "bad record: invalid owner site name \"\"");
}

static void test_decode_bad_fid_and_nsec(void **state)
{
	struct rawspec s = raw_good();

	(void)state;
	s.zero_fid = 1;
	expect_raw_error(&s, "bad record: fid is zero");
	s = raw_good();
	s.nsec = 1000000000;
	expect_raw_error(&s, "bad record: archived_mtime_nsec 1000000000 is over 999999999");
}

static void test_decode_vv_count(void **state)
{
	static const char *sites[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i",
				      "j", "k", "l", "m", "n", "o", "p", "q"};
	struct rawspec s = raw_good();
	struct hsm_state st;
	char err[128];
	struct raw r;

	(void)state;
	for (int i = 0; i < 17; i++)
		s.vv[i] = sites[i];
	s.nvv = 17;
	expect_raw_error(&s, "bad record: nvv 17 at offset 90, at most 16 allowed");
	s.nvv = 16;
	raw_build(&r, &s);
	assert_int_equal(hsmx_decode(r.b, r.n, &st, err, sizeof(err)), 0);
	assert_int_equal(st.nvv, 16);
	assert_string_equal(st.vv[15].site, "p");
	assert_true(st.vv[15].counter == 16);
	s.nvv = 0;
	raw_build(&r, &s);
	assert_int_equal(hsmx_decode(r.b, r.n, &st, err, sizeof(err)), 0);
	assert_int_equal(st.nvv, 0);
}

static void test_decode_vv_names(void **state)
{
	struct rawspec s = raw_good();

	(void)state;
	s.vv[0] = "ny";
	s.vv[1] = "ny";
	expect_raw_error(&s, "bad record: vv entries 0 and 1 have the same site \"ny\"");
	s.nvv = 3;
	s.vv[1] = "ldn";
	s.vv[2] = "ldn";
	expect_raw_error(&s, "bad record: vv entries 1 and 2 have the same site \"ldn\"");
	s.nvv = 2;
	s.vv[1] = "-x";
	expect_raw_error(&s, "bad record: invalid site name \"-x\" in vv entry 1");
	s.vv[1] = "";
	expect_raw_error(&s, "bad record: vv site length 0 at offset 102, expected 1 to 32");
	s.vv[1] = "abcdefghijklmnopqrstuvwxyzabcdefg";
	expect_raw_error(&s, "bad record: vv site length 33 at offset 102, expected 1 to 32");
}

/* CRC-32 catches every error within a 32-bit burst: every single-byte change to a
 * valid record must be refused, whatever the byte held. */
static void test_decode_every_flip(void **state)
{
	uint8_t buf[HSM_XATTR_MAX];
	struct hsm_state st, out;
	char err[256];
	int n;

	(void)state;
	make_state(&st);
	n = hsmx_encode(&st, buf, sizeof(buf));
	for (int i = 0; i < n; i++) {
		uint8_t orig = buf[i];

		for (int bit = 0; bit < 8; bit++) {
			buf[i] = orig ^ (uint8_t)(1u << bit);
			err[0] = '\0';
			assert_int_equal(hsmx_decode(buf, (size_t)n, &out, err, sizeof(err)), -1);
			assert_true(err[0] != '\0');
		}
		buf[i] = orig ^ 0xff;
		assert_int_equal(hsmx_decode(buf, (size_t)n, &out, err, sizeof(err)), -1);
		buf[i] = orig;
	}
	assert_int_equal(hsmx_decode(buf, (size_t)n, &out, err, sizeof(err)), 0);
}

static void test_decode_small_errbuf(void **state)
{
	struct hsm_state st;
	char err[8];

	(void)state;
	assert_int_equal(hsmx_decode((const uint8_t *)"\x07", 1, &st, err, sizeof(err)), -1);
	assert_string_equal(err, "bad rec");
	assert_int_equal(hsmx_decode((const uint8_t *)"\x07", 1, &st, NULL, 0), -1);
}

static void test_site_names(void **state)
{
	(void)state;
	assert_true(hsm_site_name_valid("a"));
	assert_true(hsm_site_name_valid("ny"));
	assert_true(hsm_site_name_valid("site_2-b"));
	assert_true(hsm_site_name_valid("abcdefghijklmnopqrstuvwxyzabcdef"));
	assert_false(hsm_site_name_valid("abcdefghijklmnopqrstuvwxyzabcdefg"));
	assert_false(hsm_site_name_valid(""));
	assert_false(hsm_site_name_valid(NULL));
	assert_false(hsm_site_name_valid("1ny"));
	assert_false(hsm_site_name_valid("_ny"));
	assert_false(hsm_site_name_valid("-ny"));
	assert_false(hsm_site_name_valid("Ny"));
	assert_false(hsm_site_name_valid("nY"));
	assert_false(hsm_site_name_valid("n y"));
	assert_false(hsm_site_name_valid("n.y"));
	assert_false(hsm_site_name_valid("n/y"));
	assert_false(hsm_site_name_valid("ny\n"));
	assert_false(hsm_site_name_valid("n\xc3\xa9"));
}

static void test_state_names(void **state)
{
	(void)state;
	assert_string_equal(hsm_state_name(HSM_STATE_RESIDENT), "resident");
	assert_string_equal(hsm_state_name(HSM_STATE_ARCHIVED), "archived");
	assert_string_equal(hsm_state_name(HSM_STATE_STUB), "stub");
	assert_string_equal(hsm_state_name(0), "?");
	assert_string_equal(hsm_state_name(4), "?");
	assert_string_equal(hsm_state_name(-1), "?");
}

static void test_fid(void **state)
{
	struct hsm_fid a, b, p;
	char hex[33];

	(void)state;
	assert_int_equal(hsm_fid_generate(&a), 0);
	assert_int_equal(hsm_fid_generate(&b), 0);
	assert_false(hsm_fid_is_zero(&a));
	assert_memory_not_equal(a.b, b.b, 16);
	hsm_fid_hex(&a, hex);
	assert_int_equal(strlen(hex), 32);
	assert_int_equal(hsm_fid_parse(hex, &p), 0);
	assert_memory_equal(a.b, p.b, 16);

	for (int i = 0; i < 16; i++)
		a.b[i] = (uint8_t)(i * 17);
	hsm_fid_hex(&a, hex);
	assert_string_equal(hex, "00112233445566778899aabbccddeeff");
	assert_int_equal(hsm_fid_parse("00112233445566778899AABBCCDDEEFF", &p), 0);
	assert_memory_equal(a.b, p.b, 16);

	memset(&p, 0x5a, sizeof(p));
	errno = 0;
	assert_int_equal(hsm_fid_parse("00112233445566778899aabbccddeef", &p), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(hsm_fid_parse("00112233445566778899aabbccddeeff0", &p), -1);
	assert_int_equal(hsm_fid_parse("00112233445566778899aabbccddeefg", &p), -1);
	assert_int_equal(hsm_fid_parse(" 0112233445566778899aabbccddeeff", &p), -1);
	assert_int_equal(hsm_fid_parse("", &p), -1);
	assert_int_equal(hsm_fid_parse(NULL, &p), -1);
	/* A failed parse leaves the output alone. */
	assert_int_equal(p.b[0], 0x5a);

	memset(&a, 0, sizeof(a));
	assert_true(hsm_fid_is_zero(&a));
	a.b[15] = 1;
	assert_false(hsm_fid_is_zero(&a));
}

/* A local change: resident, next version, this site the owner and in the vector. */
static void test_local_write(void **state)
{
	struct hsm_state st;

	(void)state;
	memset(&st, 0, sizeof(st));
	st.state = HSM_STATE_STUB;
	st.version = 4;
	snprintf(st.owner, sizeof(st.owner), "b");
	st.nvv = 1;
	snprintf(st.vv[0].site, sizeof(st.vv[0].site), "b");
	st.vv[0].counter = 4;
	hsm_state_local_write(&st, "a");
	assert_int_equal(st.state, HSM_STATE_RESIDENT);
	assert_int_equal(st.version, 5);
	assert_string_equal(st.owner, "a");
	assert_int_equal(st.nvv, 2);
	assert_string_equal(st.vv[1].site, "a");
	assert_int_equal(st.vv[1].counter, 5);
	assert_int_equal(st.vv[0].counter, 4);
	hsm_state_local_write(&st, "b");
	assert_int_equal(st.nvv, 2);
	assert_int_equal(st.vv[0].counter, 6);
	/* a full vector keeps its entries; the version still moves on */
	st.nvv = HSM_VV_MAX;
	for (unsigned i = 0; i < HSM_VV_MAX; i++)
		snprintf(st.vv[i].site, sizeof(st.vv[i].site), "s%u", i);
	hsm_state_local_write(&st, "zz");
	assert_int_equal(st.nvv, HSM_VV_MAX);
	assert_int_equal(st.version, 7);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_crc_reference),
	    cmocka_unit_test(test_golden_layout),
	    cmocka_unit_test(test_roundtrip_many),
	    cmocka_unit_test(test_roundtrip_max),
	    cmocka_unit_test(test_roundtrip_extremes),
	    cmocka_unit_test(test_encode_rejects),
	    cmocka_unit_test(test_encode_capacity),
	    cmocka_unit_test(test_decode_empty_and_long),
	    cmocka_unit_test(test_decode_truncated_everywhere),
	    cmocka_unit_test(test_decode_trailing),
	    cmocka_unit_test(test_decode_format_version),
	    cmocka_unit_test(test_decode_bad_crc),
	    cmocka_unit_test(test_decode_bad_state),
	    cmocka_unit_test(test_decode_bad_flags),
	    cmocka_unit_test(test_decode_bad_owner),
	    cmocka_unit_test(test_decode_bad_fid_and_nsec),
	    cmocka_unit_test(test_decode_vv_count),
	    cmocka_unit_test(test_decode_vv_names),
	    cmocka_unit_test(test_decode_every_flip),
	    cmocka_unit_test(test_decode_small_errbuf),
	    cmocka_unit_test(test_site_names),
	    cmocka_unit_test(test_state_names),
	    cmocka_unit_test(test_fid),
	    cmocka_unit_test(test_local_write),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

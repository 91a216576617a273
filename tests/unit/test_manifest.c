/* Manifests: init, the exact text, round trips at the chunk boundaries, the id
 * (checked against OpenSSL and against sha256sum of the documented text), and every
 * malformed input with the line it is reported on. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "lib/manifest.h"

#define CS HSM_CHUNK_SIZE_MIN

static const char golden[] =
	"hsm-manifest 1\n"
	"size 65537\n"
	"chunk_size 65536\n"
	"chunks 2\n"
	"0 65536 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"
	"65536 1 ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff\n";

/* sha256sum of golden, computed outside this program. */
static const char golden_id_hex[] =
	"76ab06d44b5bed0ac1bd33eae27225a29222b377ab5ce9e3537a64f861221c2a";

#define HEX_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define HEX_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define HDR3(size, n) "hsm-manifest 1\nsize " size "\nchunk_size 65536\nchunks " n "\n"

static void to_hex(const uint8_t *in, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", in[i]);
}

static void fill_hashes(struct hsm_manifest *m)
{
	for (size_t i = 0; i < m->nchunks; i++)
		for (int j = 0; j < 32; j++)
			m->chunks[i].sha256[j] = (uint8_t)(i * 31 + (size_t)j);
}

static void test_init(void **state)
{
	struct hsm_manifest m;

	(void)state;
	assert_int_equal(manifest_init(&m, 0, CS), 0);
	assert_int_equal(m.nchunks, 0);
	assert_null(m.chunks);
	assert_true(m.size == 0);
	assert_int_equal(m.chunk_size, CS);
	manifest_free(&m);

	assert_int_equal(manifest_init(&m, 3 * (uint64_t)CS + 5, CS), 0);
	assert_int_equal(m.nchunks, 4);
	assert_true(m.chunks[0].offset == 0);
	assert_int_equal(m.chunks[0].length, CS);
	assert_true(m.chunks[3].offset == 3 * (uint64_t)CS);
	assert_int_equal(m.chunks[3].length, 5);
	manifest_free(&m);
	assert_null(m.chunks);
	assert_int_equal(m.nchunks, 0);
	manifest_free(&m);
	manifest_free(NULL);

	errno = 0;
	assert_int_equal(manifest_init(&m, 10, CS - 1), -1);
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_int_equal(manifest_init(&m, 10, HSM_CHUNK_SIZE_MAX + 1), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(manifest_init(&m, 10, HSM_CHUNK_SIZE_MAX), 0);
	assert_int_equal(m.nchunks, 1);
	assert_int_equal(m.chunks[0].length, 10);
	manifest_free(&m);
	assert_int_equal(manifest_init(NULL, 10, CS), -1);
}

static void test_golden_text_and_id(void **state)
{
	struct hsm_manifest m;
	uint8_t id[32], ref[32];
	unsigned reflen = 32;
	char hex[65], *text;
	size_t len;

	(void)state;
	assert_int_equal(manifest_init(&m, 65537, 65536), 0);
	for (int j = 0; j < 32; j++)
		m.chunks[0].sha256[j] = (uint8_t)j;
	memset(m.chunks[1].sha256, 0xff, 32);
	assert_int_equal(manifest_serialize(&m, &text, &len), 0);
	assert_int_equal(len, strlen(golden));
	assert_memory_equal(text, golden, len);

	manifest_id(text, len, id);
	assert_int_equal(EVP_Digest(golden, strlen(golden), ref, &reflen, EVP_sha256(), NULL), 1);
	assert_memory_equal(id, ref, 32);
	to_hex(id, 32, hex);
	assert_string_equal(hex, golden_id_hex);
	free(text);
	manifest_free(&m);
}

static void test_empty_file(void **state)
{
	static const char want[] = "hsm-manifest 1\nsize 0\nchunk_size 4194304\nchunks 0\n";
	struct hsm_manifest m, p;
	char err[128], hex[65], *text;
	uint8_t id[32];
	size_t len;

	(void)state;
	assert_int_equal(manifest_init(&m, 0, HSM_CHUNK_SIZE_DEFAULT), 0);
	assert_int_equal(manifest_serialize(&m, &text, &len), 0);
	assert_int_equal(len, strlen(want));
	assert_memory_equal(text, want, len);
	manifest_id(text, len, id);
	to_hex(id, 32, hex);
	assert_string_equal(hex, "44971c23fefe624890dbbc681ec2e531"
				 "21435425b2290c3e31a6674e6b283a7d");
	assert_int_equal(manifest_parse(text, len, &p, err, sizeof(err)), 0);
	assert_int_equal(p.nchunks, 0);
	assert_null(p.chunks);
	assert_true(p.size == 0);
	free(text);
	manifest_free(&m);
	manifest_free(&p);
}

static void roundtrip(uint64_t size, uint32_t cs, size_t want_chunks)
{
	struct hsm_manifest m, p;
	char err[256] = "untouched", *text, *again;
	size_t len, len2;

	assert_int_equal(manifest_init(&m, size, cs), 0);
	assert_int_equal(m.nchunks, want_chunks);
	fill_hashes(&m);
	assert_int_equal(manifest_serialize(&m, &text, &len), 0);
	assert_int_equal(manifest_parse(text, len, &p, err, sizeof(err)), 0);
	assert_string_equal(err, "");
	assert_true(p.size == size);
	assert_int_equal(p.chunk_size, cs);
	assert_int_equal(p.nchunks, want_chunks);
	if (want_chunks)
		assert_memory_equal(p.chunks, m.chunks, want_chunks * sizeof(struct hsm_chunk));
	assert_int_equal(manifest_serialize(&p, &again, &len2), 0);
	assert_int_equal(len2, len);
	assert_memory_equal(again, text, len);
	free(text);
	free(again);
	manifest_free(&m);
	manifest_free(&p);
}

static void test_roundtrip_sizes(void **state)
{
	(void)state;
	roundtrip(0, CS, 0);
	roundtrip(1, CS, 1);
	roundtrip(CS - 1, CS, 1);
	roundtrip(CS, CS, 1);
	roundtrip(CS + 1, CS, 2);
	roundtrip(1000 * (uint64_t)CS + 7, CS, 1001);
	roundtrip(2000 * (uint64_t)CS, CS, 2000);
	roundtrip(5ull << 30, HSM_CHUNK_SIZE_DEFAULT, 1280);
}

static void test_serialize_rejects_inconsistent(void **state)
{
	struct hsm_manifest m;
	char *text = NULL;
	size_t len = 0;

	(void)state;
	assert_int_equal(manifest_init(&m, 3 * (uint64_t)CS, CS), 0);
	m.chunks[1].offset++;
	errno = 0;
	assert_int_equal(manifest_serialize(&m, &text, &len), -1);
	assert_int_equal(errno, EINVAL);
	assert_null(text);
	m.chunks[1].offset--;
	m.chunks[2].length--;
	assert_int_equal(manifest_serialize(&m, &text, &len), -1);
	m.chunks[2].length++;
	m.nchunks--;
	assert_int_equal(manifest_serialize(&m, &text, &len), -1);
	m.nchunks++;
	m.size++;
	assert_int_equal(manifest_serialize(&m, &text, &len), -1);
	m.size--;
	assert_int_equal(manifest_serialize(&m, &text, &len), 0);
	free(text);
	manifest_free(&m);
}

static void test_keys(void **state)
{
	uint8_t h[32];
	char key[80];

	(void)state;
	for (int i = 0; i < 32; i++)
		h[i] = (uint8_t)(0xa0 + i);
	manifest_chunk_key(h, key);
	assert_string_equal(key, "chunks/a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
				 "b0b1b2b3b4b5b6b7b8b9babbbcbdbebf");
	manifest_object_key(h, key);
	assert_string_equal(key, "manifests/a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
				 "b0b1b2b3b4b5b6b7b8b9babbbcbdbebf");
}

struct bad_case {
	const char *text;
	size_t len; /* 0: strlen(text) */
	const char *err;
};

static const struct bad_case bad_cases[] = {
	{ "", 0, "line 1: expected \"hsm-manifest 1\", found end of data" },
	{ "hsm-manifest 1", 0,
	  "line 1: expected \"hsm-manifest 1\" ending in a newline, found end of data" },
	{ "hsm-manifest 2\n", 0, "line 1: expected \"hsm-manifest 1\", found \"hsm-manifest 2\"" },
	{ "hsm-manifest 1 \n", 0,
	  "line 1: expected \"hsm-manifest 1\", found \"hsm-manifest 1 \"" },
	{ "hsm-manifest 1\r\n", 0,
	  "line 1: expected \"hsm-manifest 1\", found \"hsm-manifest 1\\x0d\"" },
	{ "\nhsm-manifest 1\n", 0, "line 1: expected \"hsm-manifest 1\", found \"\"" },
	{ "hsm-manifest 1\n", 0, "line 2: expected \"size N\", found end of data" },
	{ "hsm-manifest 1\nsize 5", 0,
	  "line 2: expected \"size N\" ending in a newline, found end of data" },
	{ "hsm-manifest 1\nSize 5\n", 0, "line 2: expected \"size N\", found \"Size 5\"" },
	{ "hsm-manifest 1\nsize\n", 0, "line 2: expected \"size N\", found \"size\"" },
	{ "hsm-manifest 1\nsize \n", 0,
	  "line 2: expected \"size N\" with N a decimal number without sign or leading zeros, "
	  "found \"size \"" },
	{ "hsm-manifest 1\nsize -1\n", 0,
	  "line 2: expected \"size N\" with N a decimal number without sign or leading zeros, "
	  "found \"size -1\"" },
	{ "hsm-manifest 1\nsize +1\n", 0,
	  "line 2: expected \"size N\" with N a decimal number without sign or leading zeros, "
	  "found \"size +1\"" },
	{ "hsm-manifest 1\nsize 01\n", 0,
	  "line 2: expected \"size N\" with N a decimal number without sign or leading zeros, "
	  "found \"size 01\"" },
	{ "hsm-manifest 1\nsize 1x\n", 0,
	  "line 2: expected \"size N\" with N a decimal number without sign or leading zeros, "
	  "found \"size 1x\"" },
	{ "hsm-manifest 1\nsize  1\n", 0,
	  "line 2: expected \"size N\" with N a decimal number without sign or leading zeros, "
	  "found \"size  1\"" },
	{ "hsm-manifest 1\nsize 18446744073709551616\n", 0,
	  "line 2: size number out of range in \"size 18446744073709551616\"" },
	{ "hsm-manifest 1\nsize 1\nchunk_size 65535\nchunks 1\n", 0,
	  "line 3: chunk_size 65535 out of range 65536..67108864" },
	{ "hsm-manifest 1\nsize 1\nchunk_size 67108865\nchunks 1\n", 0,
	  "line 3: chunk_size 67108865 out of range 65536..67108864" },
	{ "hsm-manifest 1\nsize 1\nchunk_size 0\n", 0,
	  "line 3: chunk_size 0 out of range 65536..67108864" },
	{ "hsm-manifest 1\nsize 1\nchunks 1\n", 0,
	  "line 3: expected \"chunk_size N\", found \"chunks 1\"" },
	{ HDR3("1", "2"), 0,
	  "line 4: chunks 2 does not match size 1 and chunk_size 65536: expected 1" },
	{ HDR3("0", "1"), 0,
	  "line 4: chunks 1 does not match size 0 and chunk_size 65536: expected 0" },
	{ HDR3("65537", "1"), 0,
	  "line 4: chunks 1 does not match size 65537 and chunk_size 65536: expected 2" },
	{ "hsm-manifest 1\nsize 18446744073709551615\nchunk_size 65536\n"
	  "chunks 281474976710656\n", 0,
	  "line 4: chunks 281474976710656 cannot fit in the 0 bytes that follow" },
	{ HDR3("1", "1"), 0, "line 5: expected \"OFFSET LENGTH SHA256\", found end of data" },
	{ HDR3("65537", "2"), 0, "line 4: chunks 2 cannot fit in the 0 bytes that follow" },
	{ HDR3("1", "1") "0 1 " HEX_A, 0,
	  "line 5: expected \"OFFSET LENGTH SHA256\" ending in a newline, found end of data" },
	{ HDR3("1", "1") "1 1 " HEX_A "\n", 0, "line 5: chunk 0: offset 1, expected 0" },
	{ HDR3("1", "1") "0 2 " HEX_A "\n", 0, "line 5: chunk 0: length 2, expected 1" },
	{ HDR3("1", "1") "0 0 " HEX_A "\n", 0, "line 5: chunk 0: length 0, expected 1" },
	{ HDR3("1", "1") "0 1 " HEX_A "a\n", 0,
	  "line 5: chunk 0: sha256 must be 64 lowercase hex digits" },
	{ HDR3("1", "1") "0 1 a" HEX_A "\n", 0,
	  "line 5: chunk 0: sha256 must be 64 lowercase hex digits" },
	{ HDR3("1", "1") "0 1 " HEX_A " \n", 0,
	  "line 5: chunk 0: sha256 must be 64 lowercase hex digits" },
	{ HDR3("1", "1") "0 1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n",
	  0, "line 5: chunk 0: sha256 must be 64 lowercase hex digits" },
	{ HDR3("1", "1") "0 1 gaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
	  0, "line 5: chunk 0: sha256 must be 64 lowercase hex digits" },
	{ HDR3("1", "1") "0 1\n", 0,
	  "line 5: expected \"OFFSET LENGTH SHA256\" with decimal numbers, found \"0 1\"" },
	{ HDR3("1", "1") "0  1 " HEX_A "\n", 0,
	  "line 5: expected \"OFFSET LENGTH SHA256\" with decimal numbers, found \"0  1 "
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\"" },
	{ HDR3("1", "1") "00 1 " HEX_A "\n", 0,
	  "line 5: expected \"OFFSET LENGTH SHA256\" with decimal numbers, found \"00 1 "
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\"" },
	{ HDR3("1", "1") "0 -1 " HEX_A "\n", 0,
	  "line 5: expected \"OFFSET LENGTH SHA256\" with decimal numbers, found \"0 -1 "
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\"" },
	{ HDR3("1", "1") "0 4294967296 " HEX_A "\n", 0,
	  "line 5: expected \"OFFSET LENGTH SHA256\" with decimal numbers, found \"0 4294967296 "
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaa...\"" },
	{ HDR3("1", "1") "0 1 " HEX_A "\nx\n", 0, "line 6: unexpected data after the last chunk" },
	{ HDR3("1", "1") "0 1 " HEX_A "\n\n", 0, "line 6: unexpected data after the last chunk" },
	{ HDR3("0", "0") "\n", 0, "line 5: unexpected data after the last chunk" },
	{ HDR3("131073", "3") "0 65536 " HEX_A "\n65536 65536 " HEX_B "\n65536 1 " HEX_A "\n",
	  0, "line 7: chunk 2: offset 65536, expected 131072" },
	{ HDR3("131073", "3") "0 65536 " HEX_A "\n65536 65535 " HEX_B "\n131071 2 " HEX_A "\n",
	  0, "line 6: chunk 1: length 65535, expected 65536" },
	{ HDR3("131073", "3") "0 65536 " HEX_A "\n65536 65536 " HEX_B "\n131072 2 " HEX_A "\n",
	  0, "line 7: chunk 2: length 2, expected 1" },
	{ HDR3("131073", "3") "0 65536 " HEX_A "\n65536 65536 " HEX_B "\n", 0,
	  "line 7: expected \"OFFSET LENGTH SHA256\", found end of data" },
	{ HDR3("196608", "3") "0 65536 " HEX_A "\n", 0,
	  "line 4: chunks 3 cannot fit in the 73 bytes that follow" },
	{ "hsm-manifest 1\nsize 1\0\n", 23,
	  "line 2: expected \"size N\" with N a decimal number without sign or leading zeros, "
	  "found \"size 1\\x00\"" },
};

static void test_parse_bad(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *c = &bad_cases[i];
		size_t len = c->len ? c->len : strlen(c->text);
		struct hsm_manifest m;
		char err[256] = "";

		memset(&m, 0x5a, sizeof(m));
		errno = 0;
		if (manifest_parse(c->text, len, &m, err, sizeof(err)) != -1)
			fail_msg("case %zu parsed: %s", i, c->text);
		assert_int_equal(errno, EINVAL);
		if (strcmp(err, c->err) != 0)
			fail_msg("case %zu:\n got  %s\n want %s", i, err, c->err);
		/* Nothing to free after a failure. */
		assert_null(m.chunks);
		assert_int_equal(m.nchunks, 0);
	}
}

/* Every strict prefix of a valid manifest is refused; a longer text too. */
static void test_parse_every_prefix(void **state)
{
	struct hsm_manifest m;
	char err[256];
	size_t len = strlen(golden);

	(void)state;
	for (size_t n = 0; n < len; n++) {
		err[0] = '\0';
		assert_int_equal(manifest_parse(golden, n, &m, err, sizeof(err)), -1);
		assert_true(strncmp(err, "line ", 5) == 0);
	}
	assert_int_equal(manifest_parse(golden, len, &m, err, sizeof(err)), 0);
	assert_int_equal(m.nchunks, 2);
	assert_int_equal(m.chunks[1].length, 1);
	assert_int_equal(m.chunks[0].sha256[31], 0x1f);
	manifest_free(&m);
}

static void test_parse_small_errbuf(void **state)
{
	struct hsm_manifest m;
	char err[6];

	(void)state;
	assert_int_equal(manifest_parse("x\n", 2, &m, err, sizeof(err)), -1);
	assert_string_equal(err, "line ");
	assert_int_equal(manifest_parse("x\n", 2, &m, NULL, 0), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init),
		cmocka_unit_test(test_golden_text_and_id),
		cmocka_unit_test(test_empty_file),
		cmocka_unit_test(test_roundtrip_sizes),
		cmocka_unit_test(test_serialize_rejects_inconsistent),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_parse_bad),
		cmocka_unit_test(test_parse_every_prefix),
		cmocka_unit_test(test_parse_small_errbuf),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

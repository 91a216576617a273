/* Manifests as text (docs/formats.md):
 *
 *   hsm-manifest 1\n
 *   size N\n
 *   chunk_size N\n
 *   chunks N\n
 *   OFFSET LENGTH SHA256HEX\n      one line per chunk
 *
 * The id is the sha256 of these bytes, so there must be exactly one text per manifest:
 * the parser accepts only what manifest_serialize writes (no leading zeros, no extra
 * spaces, lowercase hex), and serialize refuses a manifest that parse would reject. */
#include "lib/manifest.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/hash.h"

#define MANIFEST_MAGIC "hsm-manifest 1"
/* The shortest chunk line: "0 1 " + 64 hex digits + "\n". */
#define MANIFEST_CHUNK_LINE_MIN 69
/* The longest: 20-digit offset, 10-digit length, 2 spaces, 64 digits, newline. */
#define MANIFEST_CHUNK_LINE_MAX 97
#define MANIFEST_HEADER_MAX	128

static uint64_t manifest_count(uint64_t size, uint32_t chunk_size)
{
	return size / chunk_size + (size % chunk_size != 0);
}

static int manifest_chunk_size_ok(uint32_t chunk_size)
{
	return chunk_size >= HSM_CHUNK_SIZE_MIN && chunk_size <= HSM_CHUNK_SIZE_MAX;
}

/* The length chunk i must have: chunk_size, except the last, which gets the rest. */
static uint32_t manifest_expected_length(uint64_t size, uint32_t chunk_size, size_t i)
{
	uint64_t off = (uint64_t)i * chunk_size;

	return size - off < chunk_size ? (uint32_t)(size - off) : chunk_size;
}

int manifest_init(struct hsm_manifest *m, uint64_t size, uint32_t chunk_size)
{
	uint64_t n;

	if (!m || !manifest_chunk_size_ok(chunk_size)) {
		errno = EINVAL;
		return -1;
	}
	memset(m, 0, sizeof(*m));
	n = manifest_count(size, chunk_size);
	if (n > SIZE_MAX / sizeof(struct hsm_chunk)) {
		errno = ENOMEM;
		return -1;
	}
	if (n) {
		m->chunks = calloc((size_t)n, sizeof(struct hsm_chunk));
		if (!m->chunks)
			return -1;
	}
	m->size = size;
	m->chunk_size = chunk_size;
	m->nchunks = (size_t)n;
	for (size_t i = 0; i < m->nchunks; i++) {
		m->chunks[i].offset = (uint64_t)i * chunk_size;
		m->chunks[i].length = manifest_expected_length(size, chunk_size, i);
	}
	return 0;
}

void manifest_free(struct hsm_manifest *m)
{
	if (!m)
		return;
	free(m->chunks);
	memset(m, 0, sizeof(*m));
}

static int manifest_consistent(const struct hsm_manifest *m)
{
	if (!manifest_chunk_size_ok(m->chunk_size))
		return 0;
	if (manifest_count(m->size, m->chunk_size) != m->nchunks)
		return 0;
	if (m->nchunks && !m->chunks)
		return 0;
	for (size_t i = 0; i < m->nchunks; i++) {
		if (m->chunks[i].offset != (uint64_t)i * m->chunk_size ||
		    m->chunks[i].length != manifest_expected_length(m->size, m->chunk_size, i))
			return 0;
	}
	return 1;
}

int manifest_serialize(const struct hsm_manifest *m, char **out, size_t *outlen)
{
	size_t cap, pos;
	char *buf;
	int n;

	if (!m || !out || !outlen || !manifest_consistent(m)) {
		errno = EINVAL;
		return -1;
	}
	if (m->nchunks > (SIZE_MAX - MANIFEST_HEADER_MAX) / MANIFEST_CHUNK_LINE_MAX) {
		errno = ENOMEM;
		return -1;
	}
	cap = MANIFEST_HEADER_MAX + m->nchunks * MANIFEST_CHUNK_LINE_MAX;
	buf = malloc(cap);
	if (!buf)
		return -1;
	n = snprintf(buf, cap,
		     MANIFEST_MAGIC "\nsize %" PRIu64 "\nchunk_size %" PRIu32 "\nchunks %zu\n",
		     m->size, m->chunk_size, m->nchunks);
	pos = (size_t)n;
	for (size_t i = 0; i < m->nchunks; i++) {
		char hex[HSM_SHA256_HEX];

		hex_encode(m->chunks[i].sha256, HSM_SHA256_LEN, hex);
		n = snprintf(buf + pos, cap - pos, "%" PRIu64 " %" PRIu32 " %s\n",
			     m->chunks[i].offset, m->chunks[i].length, hex);
		pos += (size_t)n;
	}
	*out = buf;
	*outlen = pos;
	return 0;
}

void manifest_id(const char *buf, size_t len, uint8_t id[32])
{
	sha256_buf(buf, len, id);
}

void manifest_chunk_key(const uint8_t sha256[32], char out[80])
{
	memcpy(out, "chunks/", 7);
	hex_encode(sha256, HSM_SHA256_LEN, out + 7);
}

void manifest_object_key(const uint8_t id[32], char out[80])
{
	memcpy(out, "manifests/", 10);
	hex_encode(id, HSM_SHA256_LEN, out + 10);
}

/* Parsing */

struct mparse {
	const char *buf;
	size_t len;
	size_t pos;
	unsigned line;	 /* number of the current line, from 1 */
	const char *cur; /* the current line, without its '\n' */
	size_t curlen;
	char *err;
	size_t errlen;
};

static void mparse_fail(struct mparse *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void mparse_fail(struct mparse *p, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!p->err || !p->errlen)
		return;
	n = snprintf(p->err, p->errlen, "line %u: ", p->line);
	if (n < 0 || (size_t)n >= p->errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
	va_end(ap);
}

/* The current line quoted for a message: at most 40 bytes, unprintables as \xNN. */
static const char *mparse_show(const struct mparse *p, char out[4 * 40 + 4])
{
	size_t o = 0, i;

	for (i = 0; i < p->curlen && i < 40; i++) {
		unsigned char c = (unsigned char)p->cur[i];

		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, 5, "\\x%02x", c);
	}
	if (i < p->curlen) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}

/* Moves to the next line. what says what the line should hold, for the message when
 * there is none or it is not terminated. */
static int mparse_next(struct mparse *p, const char *what)
{
	const char *nl;

	p->line++;
	if (p->pos == p->len) {
		mparse_fail(p, "expected %s, found end of data", what);
		return -1;
	}
	p->cur = p->buf + p->pos;
	nl = memchr(p->cur, '\n', p->len - p->pos);
	if (!nl) {
		p->curlen = p->len - p->pos;
		mparse_fail(p, "expected %s ending in a newline, found end of data", what);
		return -1;
	}
	p->curlen = (size_t)(nl - p->cur);
	p->pos += p->curlen + 1;
	return 0;
}

enum { MNUM_OK = 0, MNUM_BAD, MNUM_RANGE };

/* A canonical decimal number: digits only, no sign, no leading zero unless it is 0. */
static int mparse_u64(const char *s, size_t n, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0 || (n > 1 && s[0] == '0'))
		return MNUM_BAD;
	for (size_t i = 0; i < n; i++) {
		unsigned d;

		if (s[i] < '0' || s[i] > '9')
			return MNUM_BAD;
		d = (unsigned)(s[i] - '0');
		if (v > (max - d) / 10)
			return MNUM_RANGE;
		v = v * 10 + d;
	}
	*out = v;
	return MNUM_OK;
}

/* Parses a header line "KEY N" into *out. */
static int mparse_header_num(struct mparse *p, const char *key, uint64_t *out)
{
	size_t klen = strlen(key);
	char shown[4 * 40 + 4], what[32];
	int r;

	snprintf(what, sizeof(what), "\"%s N\"", key);
	if (mparse_next(p, what) < 0)
		return -1;
	if (p->curlen <= klen || memcmp(p->cur, key, klen) != 0 || p->cur[klen] != ' ') {
		mparse_fail(p, "expected \"%s N\", found \"%s\"", key, mparse_show(p, shown));
		return -1;
	}
	r = mparse_u64(p->cur + klen + 1, p->curlen - klen - 1, UINT64_MAX, out);
	if (r == MNUM_RANGE) {
		mparse_fail(p, "%s number out of range in \"%s\"", key, mparse_show(p, shown));
		return -1;
	}
	if (r != MNUM_OK) {
		mparse_fail(p,
			    "expected \"%s N\" with N a decimal number without sign or leading "
			    "zeros, found \"%s\"",
			    key, mparse_show(p, shown));
		return -1;
	}
	return 0;
}

static int mparse_header(struct mparse *p, struct hsm_manifest *m)
{
	char shown[4 * 40 + 4];
	uint64_t size, cs, n, want;

	if (mparse_next(p, "\"" MANIFEST_MAGIC "\"") < 0)
		return -1;
	if (p->curlen != strlen(MANIFEST_MAGIC) || memcmp(p->cur, MANIFEST_MAGIC, p->curlen)) {
		mparse_fail(p, "expected \"" MANIFEST_MAGIC "\", found \"%s\"",
			    mparse_show(p, shown));
		return -1;
	}
	if (mparse_header_num(p, "size", &size) < 0 || mparse_header_num(p, "chunk_size", &cs) < 0)
		return -1;
	if (cs < HSM_CHUNK_SIZE_MIN || cs > HSM_CHUNK_SIZE_MAX) {
		mparse_fail(p, "chunk_size %" PRIu64 " out of range %u..%u", cs, HSM_CHUNK_SIZE_MIN,
			    HSM_CHUNK_SIZE_MAX);
		return -1;
	}
	if (mparse_header_num(p, "chunks", &n) < 0)
		return -1;
	want = manifest_count(size, (uint32_t)cs);
	if (n != want) {
		mparse_fail(p,
			    "chunks %" PRIu64 " does not match size %" PRIu64
			    " and chunk_size %" PRIu64 ": expected %" PRIu64,
			    n, size, cs, want);
		return -1;
	}
	/* Bound the allocation by what the input can hold, so a hostile header cannot
	 * make us allocate for chunks that are not there. One more than fits is let
	 * through, so that a short last line gets its own message. */
	if (n > (p->len - p->pos) / MANIFEST_CHUNK_LINE_MIN + 1) {
		mparse_fail(p, "chunks %" PRIu64 " cannot fit in the %zu bytes that follow", n,
			    p->len - p->pos);
		return -1;
	}
	m->size = size;
	m->chunk_size = (uint32_t)cs;
	m->nchunks = (size_t)n;
	return 0;
}

static int mparse_lower_hex(const char *s, size_t n, uint8_t *out)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return -1;
	return hex_decode(s, out, n / 2);
}

static int mparse_chunk(struct mparse *p, const struct hsm_manifest *m, size_t i)
{
	char shown[4 * 40 + 4];
	struct hsm_chunk *c = &m->chunks[i];
	const char *sp1, *sp2, *end;
	uint64_t off, len;
	uint32_t want;

	if (mparse_next(p, "\"OFFSET LENGTH SHA256\"") < 0)
		return -1;
	end = p->cur + p->curlen;
	sp1 = memchr(p->cur, ' ', p->curlen);
	sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1)) : NULL;
	if (!sp2 || mparse_u64(p->cur, (size_t)(sp1 - p->cur), UINT64_MAX, &off) ||
	    mparse_u64(sp1 + 1, (size_t)(sp2 - sp1 - 1), UINT32_MAX, &len)) {
		mparse_fail(p,
			    "expected \"OFFSET LENGTH SHA256\" with decimal numbers, found "
			    "\"%s\"",
			    mparse_show(p, shown));
		return -1;
	}
	if (end - sp2 - 1 != 2 * HSM_SHA256_LEN ||
	    mparse_lower_hex(sp2 + 1, 2 * HSM_SHA256_LEN, c->sha256)) {
		mparse_fail(p, "chunk %zu: sha256 must be 64 lowercase hex digits", i);
		return -1;
	}
	if (off != (uint64_t)i * m->chunk_size) {
		mparse_fail(p, "chunk %zu: offset %" PRIu64 ", expected %" PRIu64, i, off,
			    (uint64_t)i * m->chunk_size);
		return -1;
	}
	want = manifest_expected_length(m->size, m->chunk_size, i);
	if (len != want) {
		mparse_fail(p, "chunk %zu: length %" PRIu64 ", expected %" PRIu32, i, len, want);
		return -1;
	}
	c->offset = off;
	c->length = (uint32_t)len;
	return 0;
}

int manifest_parse(const char *buf, size_t len, struct hsm_manifest *m, char *err, size_t errlen)
{
	struct mparse p = {.buf = buf, .len = len, .err = err, .errlen = errlen};

	if (err && errlen)
		err[0] = '\0';
	if (!m || (!buf && len)) {
		errno = EINVAL;
		return -1;
	}
	memset(m, 0, sizeof(*m));
	if (mparse_header(&p, m) < 0)
		goto invalid;
	if (m->nchunks) {
		m->chunks = calloc(m->nchunks, sizeof(struct hsm_chunk));
		if (!m->chunks) {
			if (err && errlen)
				snprintf(err, errlen, "out of memory for %zu chunks", m->nchunks);
			memset(m, 0, sizeof(*m));
			errno = ENOMEM;
			return -1;
		}
	}
	for (size_t i = 0; i < m->nchunks; i++)
		if (mparse_chunk(&p, m, i) < 0)
			goto invalid;
	if (p.pos != p.len) {
		p.line++;
		mparse_fail(&p, "unexpected data after the last chunk");
		goto invalid;
	}
	return 0;
invalid:
	manifest_free(m);
	errno = EINVAL;
	return -1;
}

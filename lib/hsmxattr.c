/* The trusted.hsm record codec. Layout (all integers little-endian), as in
 * docs/formats.md:
 *
 *   format u8 | state u8 | flags u8 | fid 16 | version u64 | owner_len u8 | owner
 *   | archived_version u64 | archived_size u64 | manifest_id 32
 *   | archived_mtime_sec i64 | archived_mtime_nsec u32
 *   | nvv u8 | nvv x (site_len u8 | site | counter u64) | crc32 u32
 *
 * Decoding goes in three passes so that each failure gets the most useful message:
 * the format byte first (another format may have another layout), then the structure
 * (truncation names the field being read), then the CRC, and only then the meaning of
 * the fields (a bad state under a good CRC means a buggy or newer writer, not rot). */
#include "lib/hsmxattr.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "lib/hex.h"

#define HSMX_NSEC_MAX 999999999u

/* Reflected CRC-32 (polynomial 0xEDB88320, as zlib and Ethernet) one nibble at a
 * time: a 16-entry table is plenty for records of at most HSM_XATTR_MAX bytes. */
static const uint32_t hsmx_crc_table[16] = {
    0x00000000, 0x1db71064, 0x3b6e20c8, 0x26d930ac, 0x76dc4190, 0x6b6b51f4, 0x4db26158, 0x5005713c,
    0xedb88320, 0xf00f9344, 0xd6d6a3e8, 0xcb61b38c, 0x9b64c2b0, 0x86d3d2d4, 0xa00ae278, 0xbdbdf21c,
};

static uint32_t hsmx_crc32(const uint8_t *p, size_t len)
{
	uint32_t crc = 0xffffffffu;

	for (size_t i = 0; i < len; i++) {
		crc ^= p[i];
		crc = (crc >> 4) ^ hsmx_crc_table[crc & 15];
		crc = (crc >> 4) ^ hsmx_crc_table[crc & 15];
	}
	return ~crc;
}

int hsm_site_name_valid(const char *s)
{
	size_t n;

	if (!s || !(s[0] >= 'a' && s[0] <= 'z'))
		return 0;
	for (n = 0; s[n]; n++) {
		char c = s[n];

		if (n >= HSM_SITE_MAX)
			return 0;
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

const char *hsm_state_name(int state)
{
	switch (state) {
	case HSM_STATE_RESIDENT:
		return "resident";
	case HSM_STATE_ARCHIVED:
		return "archived";
	case HSM_STATE_STUB:
		return "stub";
	default:
		return "?";
	}
}

int hsm_fid_is_zero(const struct hsm_fid *fid)
{
	for (size_t i = 0; i < sizeof(fid->b); i++)
		if (fid->b[i])
			return 0;
	return 1;
}

int hsm_fid_generate(struct hsm_fid *fid)
{
	/* The all-zero fid means "none"; redraw in the 2^-128 case it comes up. */
	do {
		size_t got = 0;

		while (got < sizeof(fid->b)) {
			ssize_t n = getrandom(fid->b + got, sizeof(fid->b) - got, 0);

			if (n < 0) {
				if (errno == EINTR)
					continue;
				return -1;
			}
			got += (size_t)n;
		}
	} while (hsm_fid_is_zero(fid));
	return 0;
}

void hsm_fid_hex(const struct hsm_fid *fid, char out[33])
{
	hex_encode(fid->b, sizeof(fid->b), out);
}

int hsm_fid_parse(const char *hex, struct hsm_fid *fid)
{
	struct hsm_fid tmp;

	if (!hex || strlen(hex) != 2 * sizeof(tmp.b) || hex_decode(hex, tmp.b, sizeof(tmp.b))) {
		errno = EINVAL;
		return -1;
	}
	*fid = tmp;
	return 0;
}

/* Encoding */

struct hsmx_writer {
	uint8_t *buf;
	size_t cap;
	size_t pos;
	int overflow;
};

static void hsmx_put(struct hsmx_writer *w, const void *p, size_t n)
{
	if (w->overflow || w->cap - w->pos < n) {
		w->overflow = 1;
		return;
	}
	memcpy(w->buf + w->pos, p, n);
	w->pos += n;
}

static void hsmx_put_u8(struct hsmx_writer *w, uint8_t v)
{
	hsmx_put(w, &v, 1);
}

static void hsmx_put_le(struct hsmx_writer *w, uint64_t v, size_t n)
{
	uint8_t b[8];

	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	hsmx_put(w, b, n);
}

static void hsmx_put_name(struct hsmx_writer *w, const char *s)
{
	size_t n = strlen(s);

	hsmx_put_u8(w, (uint8_t)n);
	hsmx_put(w, s, n);
}

/* A name in a fixed buffer that is not NUL-terminated within it is invalid, and must
 * be caught before strlen runs off its end. */
static int hsmx_name_ok(const char name[HSM_SITE_MAX + 1])
{
	return memchr(name, '\0', HSM_SITE_MAX + 1) && hsm_site_name_valid(name);
}

static int hsmx_state_valid(const struct hsm_state *st)
{
	if (st->state < HSM_STATE_RESIDENT || st->state > HSM_STATE_STUB)
		return 0;
	if (st->flags & ~HSM_FLAGS_KNOWN)
		return 0;
	if (hsm_fid_is_zero(&st->fid) || !hsmx_name_ok(st->owner))
		return 0;
	if (st->archived_mtime_nsec > HSMX_NSEC_MAX || st->nvv > HSM_VV_MAX)
		return 0;
	for (unsigned i = 0; i < st->nvv; i++) {
		if (!hsmx_name_ok(st->vv[i].site))
			return 0;
		for (unsigned j = 0; j < i; j++)
			if (strcmp(st->vv[i].site, st->vv[j].site) == 0)
				return 0;
	}
	return 1;
}

int hsmx_encode(const struct hsm_state *st, uint8_t *buf, size_t cap)
{
	struct hsmx_writer w = {.buf = buf, .cap = cap};

	if (!st || !buf || !hsmx_state_valid(st)) {
		errno = EINVAL;
		return -1;
	}
	hsmx_put_u8(&w, HSM_XATTR_FORMAT);
	hsmx_put_u8(&w, st->state);
	hsmx_put_u8(&w, st->flags);
	hsmx_put(&w, st->fid.b, sizeof(st->fid.b));
	hsmx_put_le(&w, st->version, 8);
	hsmx_put_name(&w, st->owner);
	hsmx_put_le(&w, st->archived_version, 8);
	hsmx_put_le(&w, st->archived_size, 8);
	hsmx_put(&w, st->manifest_id, sizeof(st->manifest_id));
	hsmx_put_le(&w, (uint64_t)st->archived_mtime_sec, 8);
	hsmx_put_le(&w, st->archived_mtime_nsec, 4);
	hsmx_put_u8(&w, (uint8_t)st->nvv);
	for (unsigned i = 0; i < st->nvv; i++) {
		hsmx_put_name(&w, st->vv[i].site);
		hsmx_put_le(&w, st->vv[i].counter, 8);
	}
	if (!w.overflow)
		hsmx_put_le(&w, hsmx_crc32(buf, w.pos), 4);
	if (w.overflow) {
		errno = ENOSPC;
		return -1;
	}
	return (int)w.pos;
}

/* Decoding */

struct hsmx_reader {
	const uint8_t *buf;
	size_t len;
	size_t pos;
	char *err;
	size_t errlen;
	int failed;
};

static void hsmx_fail(struct hsmx_reader *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void hsmx_fail(struct hsmx_reader *r, const char *fmt, ...)
{
	va_list ap;

	if (r->failed)
		return;
	r->failed = 1;
	if (r->err && r->errlen) {
		va_start(ap, fmt);
		vsnprintf(r->err, r->errlen, fmt, ap);
		va_end(ap);
	}
}

static const uint8_t *hsmx_take(struct hsmx_reader *r, size_t n, const char *what)
{
	const uint8_t *p;

	if (r->failed)
		return NULL;
	if (r->len - r->pos < n) {
		hsmx_fail(r, "truncated record: %s at offset %zu needs %zu byte(s), %zu left", what,
			  r->pos, n, r->len - r->pos);
		return NULL;
	}
	p = r->buf + r->pos;
	r->pos += n;
	return p;
}

static uint64_t hsmx_get_le(struct hsmx_reader *r, size_t n, const char *what)
{
	const uint8_t *p = hsmx_take(r, n, what);
	uint64_t v = 0;

	if (!p)
		return 0;
	for (size_t i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void hsmx_get_bytes(struct hsmx_reader *r, void *out, size_t n, const char *what)
{
	const uint8_t *p = hsmx_take(r, n, what);

	if (p)
		memcpy(out, p, n);
}

/* Reads a length-prefixed name into out (NUL-terminated); checks only the length
 * here, the characters are checked once the CRC has vouched for the bytes. */
static void hsmx_get_name(struct hsmx_reader *r, char out[HSM_SITE_MAX + 1], const char *what)
{
	size_t at = r->pos;
	size_t n = (size_t)hsmx_get_le(r, 1, what);
	const uint8_t *p;

	if (r->failed)
		return;
	if (n == 0 || n > HSM_SITE_MAX) {
		hsmx_fail(r, "bad record: %s length %zu at offset %zu, expected 1 to %d", what, n,
			  at, HSM_SITE_MAX);
		return;
	}
	p = hsmx_take(r, n, what);
	if (!p)
		return;
	memcpy(out, p, n);
	out[n] = '\0';
	/* An embedded NUL would hide the rest of the name from the character check. */
	if (strlen(out) != n)
		out[0] = '\0';
}

static void hsmx_read_fields(struct hsmx_reader *r, struct hsm_state *st)
{
	size_t at;

	st->state = (uint8_t)hsmx_get_le(r, 1, "state");
	st->flags = (uint8_t)hsmx_get_le(r, 1, "flags");
	hsmx_get_bytes(r, st->fid.b, sizeof(st->fid.b), "fid");
	st->version = hsmx_get_le(r, 8, "version");
	hsmx_get_name(r, st->owner, "owner");
	st->archived_version = hsmx_get_le(r, 8, "archived_version");
	st->archived_size = hsmx_get_le(r, 8, "archived_size");
	hsmx_get_bytes(r, st->manifest_id, sizeof(st->manifest_id), "manifest_id");
	st->archived_mtime_sec = (int64_t)hsmx_get_le(r, 8, "archived_mtime_sec");
	st->archived_mtime_nsec = (uint32_t)hsmx_get_le(r, 4, "archived_mtime_nsec");
	at = r->pos;
	st->nvv = (unsigned)hsmx_get_le(r, 1, "nvv");
	if (!r->failed && st->nvv > HSM_VV_MAX) {
		hsmx_fail(r, "bad record: nvv %u at offset %zu, at most %d allowed", st->nvv, at,
			  HSM_VV_MAX);
		return;
	}
	for (unsigned i = 0; i < st->nvv && !r->failed; i++) {
		hsmx_get_name(r, st->vv[i].site, "vv site");
		st->vv[i].counter = hsmx_get_le(r, 8, "vv counter");
	}
}

static void hsmx_check_crc(struct hsmx_reader *r)
{
	size_t body = r->pos;
	uint32_t want = (uint32_t)hsmx_get_le(r, 4, "crc32");
	uint32_t got;

	if (r->failed)
		return;
	if (r->pos != r->len) {
		hsmx_fail(r, "bad record: %zu extra byte(s) at offset %zu, after the crc32",
			  r->len - r->pos, r->pos);
		return;
	}
	got = hsmx_crc32(r->buf, body);
	if (got != want)
		hsmx_fail(r, "bad record: crc32 mismatch (stored %08x, computed %08x)", want, got);
}

/* Site names in messages: bytes outside [a-z0-9_-] could be anything, show them as \xNN. */
static const char *hsmx_show(const char *name, char out[4 * HSM_SITE_MAX + 1])
{
	size_t o = 0;

	for (size_t i = 0; name[i] && i < HSM_SITE_MAX; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, 5, "\\x%02x", c);
	}
	out[o] = '\0';
	return out;
}

static int hsmx_check_vv(struct hsmx_reader *r, const struct hsm_state *st)
{
	char shown[4 * HSM_SITE_MAX + 1];

	for (unsigned i = 0; i < st->nvv; i++) {
		if (!hsm_site_name_valid(st->vv[i].site)) {
			hsmx_fail(r, "bad record: invalid site name \"%s\" in vv entry %u",
				  hsmx_show(st->vv[i].site, shown), i);
			return -1;
		}
		for (unsigned j = 0; j < i; j++) {
			if (strcmp(st->vv[i].site, st->vv[j].site) == 0) {
				hsmx_fail(r,
					  "bad record: vv entries %u and %u have the same "
					  "site \"%s\"",
					  j, i, st->vv[i].site);
				return -1;
			}
		}
	}
	return 0;
}

static void hsmx_check_meaning(struct hsmx_reader *r, const struct hsm_state *st)
{
	char shown[4 * HSM_SITE_MAX + 1];

	if (st->state < HSM_STATE_RESIDENT || st->state > HSM_STATE_STUB)
		hsmx_fail(r, "bad record: unknown state %u", st->state);
	else if (st->flags & ~HSM_FLAGS_KNOWN)
		hsmx_fail(r, "bad record: unknown flag bits 0x%02x", st->flags & ~HSM_FLAGS_KNOWN);
	else if (hsm_fid_is_zero(&st->fid))
		hsmx_fail(r, "bad record: fid is zero");
	else if (!hsm_site_name_valid(st->owner))
		hsmx_fail(r, "bad record: invalid owner site name \"%s\"",
			  hsmx_show(st->owner, shown));
	else if (st->archived_mtime_nsec > HSMX_NSEC_MAX)
		hsmx_fail(r, "bad record: archived_mtime_nsec %u is over 999999999",
			  st->archived_mtime_nsec);
	else
		hsmx_check_vv(r, st);
}

int hsmx_decode(const uint8_t *buf, size_t len, struct hsm_state *st, char *err, size_t errlen)
{
	struct hsmx_reader r = {.buf = buf, .len = len, .err = err, .errlen = errlen};

	if (err && errlen)
		err[0] = '\0';
	if (!st || (!buf && len)) {
		hsmx_fail(&r, "bad arguments");
		errno = EINVAL;
		return -1;
	}
	memset(st, 0, sizeof(*st));
	if (len == 0)
		hsmx_fail(&r, "empty record");
	else if (len > HSM_XATTR_MAX)
		hsmx_fail(&r, "bad record: %zu bytes, at most %d allowed", len, HSM_XATTR_MAX);
	else if (buf[0] != HSM_XATTR_FORMAT)
		hsmx_fail(&r, "bad record: format version %u, expected %d", buf[0],
			  HSM_XATTR_FORMAT);
	r.pos = 1;
	if (!r.failed)
		hsmx_read_fields(&r, st);
	if (!r.failed)
		hsmx_check_crc(&r);
	if (!r.failed)
		hsmx_check_meaning(&r, st);
	if (r.failed) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

void hsm_state_local_write(struct hsm_state *st, const char *site)
{
	st->state = HSM_STATE_RESIDENT;
	st->version++;
	snprintf(st->owner, sizeof(st->owner), "%s", site);
	for (unsigned i = 0; i <= st->nvv; i++) {
		if (i == st->nvv) {
			/* A full vector keeps its entries; the version still moves on. */
			if (st->nvv == HSM_VV_MAX)
				break;
			snprintf(st->vv[i].site, sizeof(st->vv[i].site), "%s", site);
			st->vv[i].counter = 0;
			st->nvv++;
		}
		if (!strcmp(st->vv[i].site, site)) {
			st->vv[i].counter = st->version;
			break;
		}
	}
}

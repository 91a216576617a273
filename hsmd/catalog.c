/* The site catalog on leveldb. Byte layouts of keys and values: docs/catalog.md.
 *
 * The catalog is an index that hsmd rebuilds from the xattrs, so damage is
 * reported, never papered over: a value that does not decode, a key of the wrong
 * shape, or an error leveldb only shows through an iterator all fail the call with
 * the key in the message. */
#include "hsmd/catalog.h"

#include <errno.h>
#include <leveldb/c.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CAT_REC_FORMAT	   1
#define CAT_JOURNAL_FORMAT 1
#define CAT_PATH_MAX	   4096 /* bytes, without the terminating NUL */

/* Presence bits of a record: fields that are mostly zero cost nothing when absent. */
#define CAT_REC_HAS_MANIFEST 0x01u
#define CAT_REC_HAS_ACTIME   0x02u
#define CAT_REC_HAS_INO	     0x04u
#define CAT_REC_HAS_KNOWN    0x07u

/* Presence bits of a journal entry. */
#define CAT_J_HAS_OLD_PATH 0x01u
#define CAT_J_HAS_KNOWN	   0x01u

#define CAT_KEY_FILE	    'f'
#define CAT_KEY_PATH	    'p'
#define CAT_KEY_JOURNAL	    'j'
#define CAT_KEY_LINK	    'l'
#define CAT_FILE_KEY_LEN    17
#define CAT_JOURNAL_KEY_LEN 9
#define CAT_HEAD_KEY	    "mjournal_head"

#define CAT_WRITE_BUFFER (8u << 20)
#define CAT_BLOOM_BITS	 10

struct catalog {
	leveldb_t *db;
	leveldb_options_t *opts;
	leveldb_filterpolicy_t *filter;
	leveldb_readoptions_t *ropts;
	leveldb_readoptions_t *scan_ropts; /* full scans: do not evict the hot blocks */
	leveldb_writeoptions_t *wopts;
	uint64_t head;
	char *dir;
};

static void cat_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void cat_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static void cat_fid_hex(const struct hsm_fid *fid, char out[33])
{
	static const char digits[] = "0123456789abcdef";

	for (int i = 0; i < 16; i++) {
		out[2 * i] = digits[fid->b[i] >> 4];
		out[2 * i + 1] = digits[fid->b[i] & 0xf];
	}
	out[32] = '\0';
}

/* ---- encoding primitives ---------------------------------------------------------- */

struct cat_wbuf {
	uint8_t *p;
	size_t len;
};

static void cat_put_u8(struct cat_wbuf *w, uint8_t v)
{
	w->p[w->len++] = v;
}

static void cat_put_bytes(struct cat_wbuf *w, const void *src, size_t n)
{
	memcpy(w->p + w->len, src, n);
	w->len += n;
}

static void cat_put_varint(struct cat_wbuf *w, uint64_t v)
{
	while (v >= 0x80) {
		w->p[w->len++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	w->p[w->len++] = (uint8_t)v;
}

/* Zigzag keeps small negative times (before 1970) as short as small positive ones. */
static uint64_t cat_zigzag(int64_t v)
{
	return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static int64_t cat_unzigzag(uint64_t v)
{
	return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

struct cat_rbuf {
	const uint8_t *p;
	size_t len;
	size_t off;
};

static int cat_get_u8(struct cat_rbuf *r, uint8_t *v)
{
	if (r->off >= r->len)
		return -1;
	*v = r->p[r->off++];
	return 0;
}

static int cat_get_bytes(struct cat_rbuf *r, void *dst, size_t n)
{
	if (r->len - r->off < n)
		return -1;
	memcpy(dst, r->p + r->off, n);
	r->off += n;
	return 0;
}

/* Only the shortest form is accepted, so every accepted value re-encodes to the same
 * bytes: a decoder that accepted several spellings could hide damage. */
static int cat_get_varint(struct cat_rbuf *r, uint64_t *v)
{
	uint64_t x = 0;

	for (unsigned shift = 0; shift < 64; shift += 7) {
		uint8_t b;

		if (cat_get_u8(r, &b) < 0)
			return -1;
		if (shift == 63 && b > 1)
			return -1;
		if (shift && b == 0)
			return -1;
		x |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*v = x;
			return 0;
		}
	}
	return -1;
}

/* A string of min..max bytes with no NUL inside (it becomes a C string); copied to dst
 * when given (room for max + 1 bytes), else *out gets a malloc'd copy. */
static int cat_get_str(struct cat_rbuf *r, uint64_t n, size_t min, size_t max, char *dst,
		       char **out)
{
	const uint8_t *s;

	if (n < min || n > max || r->len - r->off < n)
		return -1;
	s = r->p + r->off;
	if (memchr(s, '\0', n))
		return -1;
	if (dst) {
		memcpy(dst, s, n);
		dst[n] = '\0';
	} else {
		*out = malloc(n + 1);
		if (!*out)
			return -1;
		memcpy(*out, s, n);
		(*out)[n] = '\0';
	}
	r->off += n;
	return 0;
}

static int cat_all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

static int cat_volume_valid(const char *v)
{
	size_t n = strnlen(v, HSM_SITE_MAX + 1);

	return n >= 1 && n <= HSM_SITE_MAX;
}

static int cat_path_valid(const char *p)
{
	size_t n;

	if (!p)
		return 0;
	n = strnlen(p, CAT_PATH_MAX + 1);
	return n >= 1 && n <= CAT_PATH_MAX && p[0] != '/';
}

/* ---- record codec ------------------------------------------------------------------ */

static int cat_record_valid(const struct cat_record *rec)
{
	return cat_volume_valid(rec->volume) &&
	       strnlen(rec->owner, HSM_SITE_MAX + 1) <= HSM_SITE_MAX && cat_path_valid(rec->path) &&
	       rec->state >= HSM_STATE_RESIDENT && rec->state <= HSM_STATE_STUB &&
	       !(rec->flags & ~HSM_FLAGS_KNOWN) && rec->mtime_nsec < 1000000000u &&
	       rec->archived_ctime_nsec < 1000000000u;
}

uint8_t *cat_record_encode(const struct cat_record *rec, size_t *len)
{
	size_t vlen, olen, plen, cap;
	uint8_t has = 0;
	struct cat_wbuf w;

	if (!rec || !cat_record_valid(rec)) {
		errno = EINVAL;
		return NULL;
	}
	vlen = strlen(rec->volume);
	olen = strlen(rec->owner);
	plen = strlen(rec->path);
	if (!cat_all_zero(rec->manifest_id, sizeof(rec->manifest_id)))
		has |= CAT_REC_HAS_MANIFEST;
	if (rec->archived_ctime_sec || rec->archived_ctime_nsec)
		has |= CAT_REC_HAS_ACTIME;
	if (rec->ino)
		has |= CAT_REC_HAS_INO;

	/* Worst case of every field: cheaper than a second sizing pass. */
	cap = 4 + 16 + 6 * 10 + 2 * 5 + 32 + 1 + vlen + 1 + olen + 10 + plen;
	w.p = malloc(cap);
	if (!w.p)
		return NULL;
	w.len = 0;
	cat_put_u8(&w, CAT_REC_FORMAT);
	cat_put_u8(&w, rec->state);
	cat_put_u8(&w, rec->flags);
	cat_put_u8(&w, has);
	cat_put_bytes(&w, rec->fid.b, 16);
	cat_put_varint(&w, rec->size);
	cat_put_varint(&w, rec->version);
	cat_put_varint(&w, rec->archived_version);
	cat_put_varint(&w, cat_zigzag(rec->mtime_sec));
	cat_put_varint(&w, rec->mtime_nsec);
	if (has & CAT_REC_HAS_ACTIME) {
		cat_put_varint(&w, cat_zigzag(rec->archived_ctime_sec));
		cat_put_varint(&w, rec->archived_ctime_nsec);
	}
	if (has & CAT_REC_HAS_INO)
		cat_put_varint(&w, rec->ino);
	if (has & CAT_REC_HAS_MANIFEST)
		cat_put_bytes(&w, rec->manifest_id, 32);
	cat_put_u8(&w, (uint8_t)vlen);
	cat_put_bytes(&w, rec->volume, vlen);
	cat_put_u8(&w, (uint8_t)olen);
	cat_put_bytes(&w, rec->owner, olen);
	cat_put_varint(&w, plen);
	cat_put_bytes(&w, rec->path, plen);
	*len = w.len;
	return w.p;
}

int cat_record_decode(const uint8_t *buf, size_t len, struct cat_record *out)
{
	struct cat_rbuf r = {buf, len, 0};
	struct cat_record rec;
	uint8_t fmt, has, n8;
	uint64_t v;

	memset(&rec, 0, sizeof(rec));
	if (!buf || !out)
		return -1;
	if (cat_get_u8(&r, &fmt) < 0 || fmt != CAT_REC_FORMAT)
		return -1;
	if (cat_get_u8(&r, &rec.state) < 0 || rec.state < HSM_STATE_RESIDENT ||
	    rec.state > HSM_STATE_STUB)
		return -1;
	if (cat_get_u8(&r, &rec.flags) < 0 || (rec.flags & ~HSM_FLAGS_KNOWN))
		return -1;
	if (cat_get_u8(&r, &has) < 0 || (has & ~CAT_REC_HAS_KNOWN))
		return -1;
	if (cat_get_bytes(&r, rec.fid.b, 16) < 0)
		return -1;
	if (cat_get_varint(&r, &rec.size) < 0 || cat_get_varint(&r, &rec.version) < 0 ||
	    cat_get_varint(&r, &rec.archived_version) < 0)
		return -1;
	if (cat_get_varint(&r, &v) < 0)
		return -1;
	rec.mtime_sec = cat_unzigzag(v);
	if (cat_get_varint(&r, &v) < 0 || v >= 1000000000u)
		return -1;
	rec.mtime_nsec = (uint32_t)v;
	if (has & CAT_REC_HAS_ACTIME) {
		if (cat_get_varint(&r, &v) < 0)
			return -1;
		rec.archived_ctime_sec = cat_unzigzag(v);
		if (cat_get_varint(&r, &v) < 0 || v >= 1000000000u)
			return -1;
		rec.archived_ctime_nsec = (uint32_t)v;
		/* the encoder omits 0/0: present-but-zero is not a record it wrote */
		if (!rec.archived_ctime_sec && !rec.archived_ctime_nsec)
			return -1;
	}
	if ((has & CAT_REC_HAS_INO) && (cat_get_varint(&r, &rec.ino) < 0 || !rec.ino))
		return -1;
	if (has & CAT_REC_HAS_MANIFEST) {
		if (cat_get_bytes(&r, rec.manifest_id, 32) < 0 || cat_all_zero(rec.manifest_id, 32))
			return -1;
	}
	if (cat_get_u8(&r, &n8) < 0 || cat_get_str(&r, n8, 1, HSM_SITE_MAX, rec.volume, NULL) < 0)
		return -1;
	if (cat_get_u8(&r, &n8) < 0 || cat_get_str(&r, n8, 0, HSM_SITE_MAX, rec.owner, NULL) < 0)
		return -1;
	if (cat_get_varint(&r, &v) < 0)
		return -1;
	if (v < 1 || v > CAT_PATH_MAX || r.len - r.off != v || r.p[r.off] == '/')
		return -1;
	if (cat_get_str(&r, v, 1, CAT_PATH_MAX, NULL, &rec.path) < 0)
		return -1;
	*out = rec;
	return 0;
}

void cat_record_clear(struct cat_record *rec)
{
	if (!rec)
		return;
	free(rec->path);
	memset(rec, 0, sizeof(*rec));
}

/* ---- journal codec ----------------------------------------------------------------- */

static uint8_t *cat_journal_encode(const struct cat_journal_entry *e, size_t *len)
{
	size_t vlen = strlen(e->volume), plen = strlen(e->path);
	size_t olen = e->old_path ? strlen(e->old_path) : 0;
	struct cat_wbuf w;

	w.p = malloc(4 + 16 + 10 + 10 + 1 + vlen + 10 + plen + 10 + olen);
	if (!w.p)
		return NULL;
	w.len = 0;
	cat_put_u8(&w, CAT_JOURNAL_FORMAT);
	cat_put_u8(&w, (uint8_t)e->op);
	cat_put_u8(&w, e->old_path ? CAT_J_HAS_OLD_PATH : 0);
	cat_put_bytes(&w, e->fid.b, 16);
	cat_put_varint(&w, e->version);
	cat_put_varint(&w, cat_zigzag(e->time_sec));
	cat_put_u8(&w, (uint8_t)vlen);
	cat_put_bytes(&w, e->volume, vlen);
	cat_put_varint(&w, plen);
	cat_put_bytes(&w, e->path, plen);
	if (e->old_path) {
		cat_put_varint(&w, olen);
		cat_put_bytes(&w, e->old_path, olen);
	}
	*len = w.len;
	return w.p;
}

static void cat_journal_clear(struct cat_journal_entry *e)
{
	free(e->path);
	free(e->old_path);
	memset(e, 0, sizeof(*e));
}

static int cat_journal_decode(const uint8_t *buf, size_t len, uint64_t seq,
			      struct cat_journal_entry *out)
{
	struct cat_rbuf r = {buf, len, 0};
	struct cat_journal_entry e;
	uint8_t fmt, op, has, n8;
	uint64_t v;

	memset(&e, 0, sizeof(e));
	e.seq = seq;
	if (cat_get_u8(&r, &fmt) < 0 || fmt != CAT_JOURNAL_FORMAT)
		return -1;
	if (cat_get_u8(&r, &op) < 0 || op < CAT_J_CREATE || op > CAT_J_STATE)
		return -1;
	e.op = op;
	if (cat_get_u8(&r, &has) < 0 || (has & ~CAT_J_HAS_KNOWN))
		return -1;
	if (cat_get_bytes(&r, e.fid.b, 16) < 0 || cat_get_varint(&r, &e.version) < 0)
		return -1;
	if (cat_get_varint(&r, &v) < 0)
		return -1;
	e.time_sec = cat_unzigzag(v);
	if (cat_get_u8(&r, &n8) < 0 || cat_get_str(&r, n8, 1, HSM_SITE_MAX, e.volume, NULL) < 0)
		return -1;
	if (cat_get_varint(&r, &v) < 0 || cat_get_str(&r, v, 1, CAT_PATH_MAX, NULL, &e.path) < 0)
		goto bad;
	if (has & CAT_J_HAS_OLD_PATH) {
		if (cat_get_varint(&r, &v) < 0 ||
		    cat_get_str(&r, v, 1, CAT_PATH_MAX, NULL, &e.old_path) < 0)
			goto bad;
	}
	if (r.off != r.len)
		goto bad;
	*out = e;
	return 0;
bad:
	cat_journal_clear(&e);
	return -1;
}

/* ---- keys -------------------------------------------------------------------------- */

static void cat_file_key(const struct hsm_fid *fid, char key[CAT_FILE_KEY_LEN])
{
	key[0] = CAT_KEY_FILE;
	memcpy(key + 1, fid->b, 16);
}

static void cat_u64_be(uint64_t v, uint8_t out[8])
{
	for (int i = 7; i >= 0; i--) {
		out[i] = (uint8_t)v;
		v >>= 8;
	}
}

static uint64_t cat_be_u64(const uint8_t in[8])
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | in[i];
	return v;
}

static void cat_journal_key(uint64_t seq, char key[CAT_JOURNAL_KEY_LEN])
{
	key[0] = CAT_KEY_JOURNAL;
	cat_u64_be(seq, (uint8_t *)key + 1);
}

/* 'p' volume NUL path: volume names hold no NUL, so the split is unambiguous. The
 * caller has validated both; returns a malloc'd key or NULL. */
static char *cat_path_key(const char *volume, const char *path, size_t *klen)
{
	size_t vlen = strlen(volume), plen = strlen(path);
	char *k = malloc(1 + vlen + 1 + plen);

	if (!k)
		return NULL;
	k[0] = CAT_KEY_PATH;
	memcpy(k + 1, volume, vlen);
	k[1 + vlen] = '\0';
	memcpy(k + 2 + vlen, path, plen);
	*klen = 2 + vlen + plen;
	return k;
}

/* l fid volume \0 path: a second name (hard link) of fid's inode, the reverse of its p
 * key, so that the record can move to a surviving name when its own is deleted. */
static char *cat_link_key(const struct hsm_fid *fid, const char *volume, const char *path,
			  size_t *klen)
{
	size_t vlen = strlen(volume), plen = strlen(path);
	char *k = malloc(1 + 16 + vlen + 1 + plen);

	if (!k)
		return NULL;
	k[0] = CAT_KEY_LINK;
	memcpy(k + 1, fid->b, 16);
	memcpy(k + 17, volume, vlen);
	k[17 + vlen] = '\0';
	memcpy(k + 18 + vlen, path, plen);
	*klen = 18 + vlen + plen;
	return k;
}

/* ---- open / close ------------------------------------------------------------------ */

/* The head is the larger of the stored head and the last journal key: the stored value
 * survives the trimming of old entries, the last key a stored head that was lost. Both
 * are written in one batch, so they normally agree. */
static int cat_load_head(struct catalog *c, char *err, size_t errlen)
{
	leveldb_iterator_t *it;
	char *lerr = NULL, *val;
	size_t vlen;
	uint64_t head = 0;
	const char next = CAT_KEY_JOURNAL + 1;

	val = leveldb_get(c->db, c->ropts, CAT_HEAD_KEY, strlen(CAT_HEAD_KEY), &vlen, &lerr);
	if (lerr) {
		cat_err(err, errlen, "catalog %s: read %s: %s", c->dir, CAT_HEAD_KEY, lerr);
		leveldb_free(lerr);
		return -1;
	}
	if (val) {
		if (vlen != 8) {
			cat_err(err, errlen, "catalog %s: %s is %zu bytes, not 8", c->dir,
				CAT_HEAD_KEY, vlen);
			leveldb_free(val);
			return -1;
		}
		head = cat_be_u64((const uint8_t *)val);
		leveldb_free(val);
	}

	it = leveldb_create_iterator(c->db, c->ropts);
	leveldb_iter_seek(it, &next, 1);
	if (leveldb_iter_valid(it))
		leveldb_iter_prev(it);
	else
		leveldb_iter_seek_to_last(it);
	if (leveldb_iter_valid(it)) {
		size_t klen;
		const char *k = leveldb_iter_key(it, &klen);

		if (klen >= 1 && k[0] == CAT_KEY_JOURNAL) {
			uint64_t last;

			if (klen != CAT_JOURNAL_KEY_LEN) {
				cat_err(err, errlen, "catalog %s: journal key of %zu bytes", c->dir,
					klen);
				leveldb_iter_destroy(it);
				return -1;
			}
			last = cat_be_u64((const uint8_t *)k + 1);
			if (last > head)
				head = last;
		}
	}
	leveldb_iter_get_error(it, &lerr);
	leveldb_iter_destroy(it);
	if (lerr) {
		cat_err(err, errlen, "catalog %s: find journal head: %s", c->dir, lerr);
		leveldb_free(lerr);
		return -1;
	}
	c->head = head;
	return 0;
}

struct catalog *catalog_open(const char *dir, int sync, char *err, size_t errlen)
{
	struct catalog *c;
	char *lerr = NULL;

	if (!dir || !*dir) {
		cat_err(err, errlen, "catalog: no directory given");
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c || !(c->dir = strdup(dir))) {
		cat_err(err, errlen, "catalog %s: out of memory", dir);
		free(c);
		return NULL;
	}
	c->opts = leveldb_options_create();
	c->filter = leveldb_filterpolicy_create_bloom(CAT_BLOOM_BITS);
	c->ropts = leveldb_readoptions_create();
	c->scan_ropts = leveldb_readoptions_create();
	c->wopts = leveldb_writeoptions_create();
	leveldb_options_set_create_if_missing(c->opts, 1);
	/* Damage found at open (a broken log or manifest) fails the open instead of being
	 * dropped: the caller then rebuilds from the xattrs rather than run on a catalog
	 * that silently lost changes. */
	leveldb_options_set_paranoid_checks(c->opts, 1);
	leveldb_options_set_write_buffer_size(c->opts, CAT_WRITE_BUFFER);
	leveldb_options_set_filter_policy(c->opts, c->filter);
	leveldb_options_set_compression(c->opts, leveldb_snappy_compression);
	leveldb_readoptions_set_verify_checksums(c->ropts, 1);
	leveldb_readoptions_set_verify_checksums(c->scan_ropts, 1);
	leveldb_readoptions_set_fill_cache(c->scan_ropts, 0);
	leveldb_writeoptions_set_sync(c->wopts, sync ? 1 : 0);

	c->db = leveldb_open(c->opts, dir, &lerr);
	if (lerr) {
		cat_err(err, errlen, "catalog %s: open: %s", dir, lerr);
		leveldb_free(lerr);
		catalog_close(c);
		return NULL;
	}
	if (cat_load_head(c, err, errlen) < 0) {
		catalog_close(c);
		return NULL;
	}
	return c;
}

void catalog_close(struct catalog *c)
{
	if (!c)
		return;
	if (c->db)
		leveldb_close(c->db);
	/* the options hold a pointer to the filter: it goes after them */
	leveldb_options_destroy(c->opts);
	leveldb_filterpolicy_destroy(c->filter);
	leveldb_readoptions_destroy(c->ropts);
	leveldb_readoptions_destroy(c->scan_ropts);
	leveldb_writeoptions_destroy(c->wopts);
	free(c->dir);
	free(c);
}

/* ---- point operations -------------------------------------------------------------- */

/* 0 found (*out filled), 1 absent, -1 error (read error or a record that does not
 * decode or belongs to another fid). */
static int cat_read_record(struct catalog *c, const struct hsm_fid *fid, struct cat_record *out,
			   const char *what, char *err, size_t errlen)
{
	char key[CAT_FILE_KEY_LEN], hex[33], *val, *lerr = NULL;
	size_t vlen;
	int rc;

	cat_file_key(fid, key);
	val = leveldb_get(c->db, c->ropts, key, sizeof(key), &vlen, &lerr);
	if (lerr) {
		cat_fid_hex(fid, hex);
		cat_err(err, errlen, "catalog: %s f%s: %s", what, hex, lerr);
		leveldb_free(lerr);
		return -1;
	}
	if (!val)
		return 1;
	rc = cat_record_decode((const uint8_t *)val, vlen, out);
	leveldb_free(val);
	if (rc < 0) {
		cat_fid_hex(fid, hex);
		cat_err(err, errlen,
			"catalog: %s f%s: corrupt record (%zu bytes); the catalog is damaged "
			"(docs/admin.md, The catalog)",
			what, hex, vlen);
		return -1;
	}
	if (memcmp(out->fid.b, fid->b, 16)) {
		cat_fid_hex(fid, hex);
		cat_err(err, errlen,
			"catalog: %s f%s: record holds another fid; the catalog is damaged "
			"(docs/admin.md, The catalog)",
			what, hex);
		cat_record_clear(out);
		return -1;
	}
	return 0;
}

int catalog_get(struct catalog *c, const struct hsm_fid *fid, struct cat_record *out, char *err,
		size_t errlen)
{
	if (!c || !fid || !out) {
		cat_err(err, errlen, "catalog: get: invalid argument");
		return -1;
	}
	return cat_read_record(c, fid, out, "get", err, errlen);
}

/* 0 and *out set, 1 absent, -1 error. */
static int cat_read_path(struct catalog *c, const char *key, size_t klen, struct hsm_fid *out,
			 const char *volume, const char *path, char *err, size_t errlen)
{
	char *val, *lerr = NULL;
	size_t vlen;

	val = leveldb_get(c->db, c->ropts, key, klen, &vlen, &lerr);
	if (lerr) {
		cat_err(err, errlen, "catalog: read path %s:%s: %s", volume, path, lerr);
		leveldb_free(lerr);
		return -1;
	}
	if (!val)
		return 1;
	if (vlen != 16) {
		cat_err(err, errlen,
			"catalog: path %s:%s: index entry of %zu bytes, not 16; "
			"the catalog is damaged (docs/admin.md, The catalog)",
			volume, path, vlen);
		leveldb_free(val);
		return -1;
	}
	memcpy(out->b, val, 16);
	leveldb_free(val);
	return 0;
}

static int cat_write(struct catalog *c, leveldb_writebatch_t *b, const char *what,
		     const struct hsm_fid *fid, char *err, size_t errlen)
{
	char *lerr = NULL, hex[33];

	leveldb_write(c->db, c->wopts, b, &lerr);
	if (lerr) {
		cat_fid_hex(fid, hex);
		cat_err(err, errlen, "catalog: %s f%s: write: %s", what, hex, lerr);
		leveldb_free(lerr);
		return -1;
	}
	return 0;
}

/* Adds journal entry e with seq = head + 1 and the new head to the batch. c->head moves
 * only once the batch is written: a failed write must not leave a gap. */
static int cat_batch_journal(struct catalog *c, leveldb_writebatch_t *b,
			     struct cat_journal_entry *e, char *err, size_t errlen)
{
	char key[CAT_JOURNAL_KEY_LEN], hex[33];
	uint8_t headval[8];
	uint8_t *val;
	size_t vlen;
	struct timespec ts;

	if (c->head == UINT64_MAX) {
		cat_err(err, errlen, "catalog: journal sequence exhausted");
		return -1;
	}
	e->seq = c->head + 1;
	if (clock_gettime(CLOCK_REALTIME, &ts) < 0) {
		cat_err(err, errlen, "catalog: clock_gettime: %s", strerror(errno));
		return -1;
	}
	e->time_sec = ts.tv_sec;
	val = cat_journal_encode(e, &vlen);
	if (!val) {
		cat_fid_hex(&e->fid, hex);
		cat_err(err, errlen, "catalog: journal f%s: out of memory", hex);
		return -1;
	}
	cat_journal_key(e->seq, key);
	leveldb_writebatch_put(b, key, sizeof(key), (const char *)val, vlen);
	free(val);
	cat_u64_be(e->seq, headval);
	leveldb_writebatch_put(b, CAT_HEAD_KEY, strlen(CAT_HEAD_KEY), (const char *)headval, 8);
	return 0;
}

int catalog_put(struct catalog *c, const struct cat_record *rec, int op, char *err, size_t errlen)
{
	struct cat_record old;
	struct cat_journal_entry e;
	struct hsm_fid cur;
	leveldb_writebatch_t *b = NULL;
	char fkey[CAT_FILE_KEY_LEN], hex[33], *pkey = NULL, *okey = NULL, *lkey = NULL;
	uint8_t *val = NULL;
	size_t vlen, pklen, oklen, lklen;
	int r, have_old = 0, rc = -1;

	if (!c || !rec) {
		cat_err(err, errlen, "catalog: put: invalid argument");
		return -1;
	}
	cat_fid_hex(&rec->fid, hex);
	if (op < 0 || op > CAT_J_STATE) {
		cat_err(err, errlen, "catalog: put f%s: unknown journal op %d", hex, op);
		return -1;
	}
	val = cat_record_encode(rec, &vlen);
	if (!val) {
		if (errno == EINVAL)
			cat_err(err, errlen,
				"catalog: put f%s: invalid record (volume 1..%d bytes,"
				" path 1..%d bytes not starting with '/', known state and flags,"
				" nsec < 1e9)",
				hex, HSM_SITE_MAX, CAT_PATH_MAX);
		else
			cat_err(err, errlen, "catalog: put f%s: out of memory", hex);
		return -1;
	}
	pkey = cat_path_key(rec->volume, rec->path, &pklen);
	if (!pkey) {
		cat_err(err, errlen, "catalog: put f%s: out of memory", hex);
		goto out;
	}
	r = cat_read_record(c, &rec->fid, &old, "put", err, errlen);
	if (r < 0)
		goto out;
	have_old = r == 0;

	b = leveldb_writebatch_create();
	if (have_old && (strcmp(old.volume, rec->volume) || strcmp(old.path, rec->path))) {
		okey = cat_path_key(old.volume, old.path, &oklen);
		if (!okey) {
			cat_err(err, errlen, "catalog: put f%s: out of memory", hex);
			goto out;
		}
		/* The old name may since have been given to another file (a rename over it
		 * reported before ours): only our own index entry is ours to remove. */
		r = cat_read_path(c, okey, oklen, &cur, old.volume, old.path, err, errlen);
		if (r < 0)
			goto out;
		if (r == 0 && !memcmp(cur.b, rec->fid.b, 16))
			leveldb_writebatch_delete(b, okey, oklen);
	}
	cat_file_key(&rec->fid, fkey);
	leveldb_writebatch_put(b, fkey, sizeof(fkey), (const char *)val, vlen);
	leveldb_writebatch_put(b, pkey, pklen, (const char *)rec->fid.b, 16);
	/* The record's own name is not a second name of it (any more). */
	lkey = cat_link_key(&rec->fid, rec->volume, rec->path, &lklen);
	if (!lkey) {
		cat_err(err, errlen, "catalog: put f%s: out of memory", hex);
		goto out;
	}
	leveldb_writebatch_delete(b, lkey, lklen);
	if (op) {
		memset(&e, 0, sizeof(e));
		e.op = op;
		e.fid = rec->fid;
		memcpy(e.volume, rec->volume, sizeof(e.volume));
		e.path = rec->path;
		if (op == CAT_J_RENAME && have_old && strcmp(old.path, rec->path))
			e.old_path = old.path;
		e.version = rec->version;
		if (cat_batch_journal(c, b, &e, err, errlen) < 0)
			goto out;
	}
	if (cat_write(c, b, "put", &rec->fid, err, errlen) < 0)
		goto out;
	if (op)
		c->head = e.seq;
	rc = 0;
out:
	if (b)
		leveldb_writebatch_destroy(b);
	if (have_old)
		cat_record_clear(&old);
	free(okey);
	free(pkey);
	free(lkey);
	free(val);
	return rc;
}

static int cat_drop_link_cb(const char *k, size_t klen, const char *v, size_t vlen, void *arg)
{
	(void)v;
	(void)vlen;
	leveldb_writebatch_delete(arg, k, klen);
	return 0;
}

/* Adds the deletion of every l key of fid to the batch. */
static int cat_batch_drop_links(struct catalog *c, leveldb_writebatch_t *b,
				const struct hsm_fid *fid, char *err, size_t errlen)
{
	char prefix[17];

	prefix[0] = CAT_KEY_LINK;
	memcpy(prefix + 1, fid->b, 16);
	return catalog_kv_scan(c, prefix, sizeof(prefix), NULL, 0, cat_drop_link_cb, b, err,
			       errlen) < 0
		   ? -1
		   : 0;
}

int catalog_delete(struct catalog *c, const struct hsm_fid *fid, char *err, size_t errlen)
{
	struct cat_record old;
	struct cat_journal_entry e;
	struct hsm_fid cur;
	leveldb_writebatch_t *b = NULL;
	char fkey[CAT_FILE_KEY_LEN], *okey = NULL;
	size_t oklen;
	int r, rc = -1;

	if (!c || !fid) {
		cat_err(err, errlen, "catalog: delete: invalid argument");
		return -1;
	}
	r = cat_read_record(c, fid, &old, "delete", err, errlen);
	if (r != 0)
		return r;
	okey = cat_path_key(old.volume, old.path, &oklen);
	if (!okey) {
		cat_err(err, errlen, "catalog: delete: out of memory");
		goto out;
	}
	r = cat_read_path(c, okey, oklen, &cur, old.volume, old.path, err, errlen);
	if (r < 0)
		goto out;
	b = leveldb_writebatch_create();
	cat_file_key(fid, fkey);
	leveldb_writebatch_delete(b, fkey, sizeof(fkey));
	if (r == 0 && !memcmp(cur.b, fid->b, 16))
		leveldb_writebatch_delete(b, okey, oklen);
	if (cat_batch_drop_links(c, b, fid, err, errlen) < 0)
		goto out;
	memset(&e, 0, sizeof(e));
	e.op = CAT_J_DELETE;
	e.fid = *fid;
	memcpy(e.volume, old.volume, sizeof(e.volume));
	e.path = old.path;
	e.version = old.version;
	if (cat_batch_journal(c, b, &e, err, errlen) < 0)
		goto out;
	if (cat_write(c, b, "delete", fid, err, errlen) < 0)
		goto out;
	c->head = e.seq;
	rc = 0;
out:
	if (b)
		leveldb_writebatch_destroy(b);
	cat_record_clear(&old);
	free(okey);
	return rc;
}

static int cat_check_name(const char *what, const char *volume, const char *path, char *err,
			  size_t errlen)
{
	if (!volume || !cat_volume_valid(volume)) {
		cat_err(err, errlen, "catalog: %s: volume name must be 1..%d bytes", what,
			HSM_SITE_MAX);
		return -1;
	}
	if (!cat_path_valid(path)) {
		cat_err(err, errlen, "catalog: %s %s: path must be 1..%d bytes, relative", what,
			volume, CAT_PATH_MAX);
		return -1;
	}
	return 0;
}

int catalog_lookup_path(struct catalog *c, const char *volume, const char *path,
			struct hsm_fid *out, char *err, size_t errlen)
{
	char *key;
	size_t klen;
	int rc;

	if (!c || !out) {
		cat_err(err, errlen, "catalog: lookup: invalid argument");
		return -1;
	}
	if (cat_check_name("lookup", volume, path, err, errlen) < 0)
		return -1;
	key = cat_path_key(volume, path, &klen);
	if (!key) {
		cat_err(err, errlen, "catalog: lookup %s:%s: out of memory", volume, path);
		return -1;
	}
	rc = cat_read_path(c, key, klen, out, volume, path, err, errlen);
	free(key);
	return rc;
}

int catalog_unlink_path(struct catalog *c, const char *volume, const char *path, char *err,
			size_t errlen)
{
	leveldb_writebatch_t *b;
	struct hsm_fid fid;
	char *key, *lkey = NULL, *lerr = NULL;
	size_t klen, lklen;
	int r;

	if (!c) {
		cat_err(err, errlen, "catalog: unlink: invalid argument");
		return -1;
	}
	if (cat_check_name("unlink", volume, path, err, errlen) < 0)
		return -1;
	key = cat_path_key(volume, path, &klen);
	if (!key) {
		cat_err(err, errlen, "catalog: unlink %s:%s: out of memory", volume, path);
		return -1;
	}
	r = cat_read_path(c, key, klen, &fid, volume, path, err, errlen);
	if (r != 0) {
		free(key);
		return r < 0 ? -1 : 0;
	}
	lkey = cat_link_key(&fid, volume, path, &lklen);
	if (!lkey) {
		free(key);
		cat_err(err, errlen, "catalog: unlink %s:%s: out of memory", volume, path);
		return -1;
	}
	b = leveldb_writebatch_create();
	leveldb_writebatch_delete(b, key, klen);
	leveldb_writebatch_delete(b, lkey, lklen);
	leveldb_write(c->db, c->wopts, b, &lerr);
	leveldb_writebatch_destroy(b);
	free(key);
	free(lkey);
	if (lerr) {
		cat_err(err, errlen, "catalog: unlink %s:%s: %s", volume, path, lerr);
		leveldb_free(lerr);
		return -1;
	}
	return 0;
}

int catalog_link_path(struct catalog *c, const char *volume, const char *path,
		      const struct hsm_fid *fid, char *err, size_t errlen)
{
	leveldb_writebatch_t *b;
	char *key, *lkey, *lerr = NULL;
	size_t klen, lklen;

	if (!c || !fid) {
		cat_err(err, errlen, "catalog: link: invalid argument");
		return -1;
	}
	if (cat_check_name("link", volume, path, err, errlen) < 0)
		return -1;
	key = cat_path_key(volume, path, &klen);
	lkey = cat_link_key(fid, volume, path, &lklen);
	if (!key || !lkey) {
		free(key);
		free(lkey);
		cat_err(err, errlen, "catalog: link %s:%s: out of memory", volume, path);
		return -1;
	}
	b = leveldb_writebatch_create();
	leveldb_writebatch_put(b, key, klen, (const char *)fid->b, 16);
	leveldb_writebatch_put(b, lkey, lklen, "", 0);
	leveldb_write(c->db, c->wopts, b, &lerr);
	leveldb_writebatch_destroy(b);
	free(key);
	free(lkey);
	if (lerr) {
		cat_err(err, errlen, "catalog: link %s:%s: %s", volume, path, lerr);
		leveldb_free(lerr);
		return -1;
	}
	return 0;
}

struct cat_links {
	int (*fn)(const char *volume, const char *path, void *arg);
	void *arg;
};

static int cat_link_cb(const char *k, size_t klen, const char *v, size_t vlen, void *arg)
{
	struct cat_links *l = arg;
	const char *vol = k + 17, *nul = memchr(vol, '\0', klen - 17);
	char volume[HSM_SITE_MAX + 1], path[CAT_PATH_MAX + 1];

	(void)v;
	(void)vlen;
	if (!nul || (size_t)(nul - vol) > HSM_SITE_MAX ||
	    klen - (size_t)(nul + 1 - k) > CAT_PATH_MAX)
		return 0; /* not a key we write: skip it */
	memcpy(volume, vol, (size_t)(nul - vol));
	volume[nul - vol] = '\0';
	memcpy(path, nul + 1, klen - (size_t)(nul + 1 - k));
	path[klen - (size_t)(nul + 1 - k)] = '\0';
	return l->fn(volume, path, l->arg);
}

int catalog_foreach_link(struct catalog *c, const struct hsm_fid *fid,
			 int (*fn)(const char *volume, const char *path, void *arg), void *arg,
			 char *err, size_t errlen)
{
	struct cat_links l = {fn, arg};
	char prefix[17];

	prefix[0] = CAT_KEY_LINK;
	memcpy(prefix + 1, fid->b, 16);
	return catalog_kv_scan(c, prefix, sizeof(prefix), NULL, 0, cat_link_cb, &l, err, errlen);
}

/* ---- scans ------------------------------------------------------------------------- */

#define CAT_KEYHEX_BYTES 32
#define CAT_KEYHEX_MAX	 (1 + 2 * CAT_KEYHEX_BYTES + 3 + 1)

/* The key class letter stays readable, the binary rest is hex; long keys are cut. */
static void cat_key_hex(const char *k, size_t klen, char out[CAT_KEYHEX_MAX])
{
	static const char digits[] = "0123456789abcdef";
	size_t i, o = 0;

	if (klen)
		out[o++] = k[0];
	for (i = 1; i < klen && i <= CAT_KEYHEX_BYTES; i++) {
		out[o++] = digits[(uint8_t)k[i] >> 4];
		out[o++] = digits[(uint8_t)k[i] & 0xf];
	}
	if (i < klen) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
}

/* leveldb skips a damaged block and says so only through the iterator's status. It is
 * checked before every entry, so no callback runs once damage has been seen; last is
 * the last good key of the scan (klen 0: none yet), to say where the damage lies. */
static int cat_iter_failed(leveldb_iterator_t *it, const char *what, const char *last,
			   size_t lastlen, char *err, size_t errlen)
{
	char *lerr = NULL, khex[CAT_KEYHEX_MAX];

	leveldb_iter_get_error(it, &lerr);
	if (!lerr)
		return 0;
	if (lastlen) {
		cat_key_hex(last, lastlen, khex);
		cat_err(err, errlen,
			"catalog: %s: %s (after key %s); the catalog is damaged (docs/admin.md, "
			"The catalog)",
			what, lerr, khex);
	} else {
		cat_err(err, errlen,
			"catalog: %s: %s; the catalog is damaged (docs/admin.md, The catalog)",
			what, lerr);
	}
	leveldb_free(lerr);
	return 1;
}

int catalog_foreach(struct catalog *c, int (*fn)(const struct cat_record *rec, void *arg),
		    void *arg, char *err, size_t errlen)
{
	leveldb_iterator_t *it;
	const char prefix = CAT_KEY_FILE;
	char khex[CAT_KEYHEX_MAX], last[CAT_FILE_KEY_LEN];
	size_t lastlen = 0;
	int rc = 0;

	if (!c || !fn) {
		cat_err(err, errlen, "catalog: foreach: invalid argument");
		return -1;
	}
	it = leveldb_create_iterator(c->db, c->scan_ropts);
	for (leveldb_iter_seek(it, &prefix, 1); leveldb_iter_valid(it); leveldb_iter_next(it)) {
		struct cat_record rec;
		size_t klen, vlen;
		const char *k, *v;

		if (cat_iter_failed(it, "foreach", last, lastlen, err, errlen)) {
			rc = -1;
			break;
		}
		k = leveldb_iter_key(it, &klen);
		if (klen < 1 || k[0] != CAT_KEY_FILE)
			break;
		if (klen != CAT_FILE_KEY_LEN) {
			cat_key_hex(k, klen, khex);
			cat_err(err, errlen,
				"catalog: foreach: malformed key %s (%zu bytes); "
				"the catalog is damaged (docs/admin.md, The catalog)",
				khex, klen);
			rc = -1;
			break;
		}
		v = leveldb_iter_value(it, &vlen);
		memset(&rec, 0, sizeof(rec));
		if (cat_record_decode((const uint8_t *)v, vlen, &rec) < 0 ||
		    memcmp(rec.fid.b, k + 1, 16)) {
			cat_record_clear(&rec);
			cat_key_hex(k, klen, khex);
			cat_err(err, errlen,
				"catalog: foreach: corrupt record %s (%zu bytes); "
				"the catalog is damaged (docs/admin.md, The catalog)",
				khex, vlen);
			rc = -1;
			break;
		}
		memcpy(last, k, CAT_FILE_KEY_LEN);
		lastlen = CAT_FILE_KEY_LEN;
		rc = fn(&rec, arg);
		cat_record_clear(&rec);
		if (rc)
			break;
	}
	if (!rc && cat_iter_failed(it, "foreach", last, lastlen, err, errlen))
		rc = -1;
	leveldb_iter_destroy(it);
	return rc;
}

uint64_t catalog_journal_head(struct catalog *c)
{
	return c ? c->head : 0;
}

int catalog_journal_foreach(struct catalog *c, uint64_t since,
			    int (*fn)(const struct cat_journal_entry *e, void *arg), void *arg,
			    char *err, size_t errlen)
{
	leveldb_iterator_t *it;
	char key[CAT_JOURNAL_KEY_LEN], khex[CAT_KEYHEX_MAX], last[CAT_JOURNAL_KEY_LEN];
	size_t lastlen = 0;
	int rc = 0;

	if (!c || !fn) {
		cat_err(err, errlen, "catalog: journal: invalid argument");
		return -1;
	}
	if (since >= c->head)
		return 0;
	cat_journal_key(since + 1, key);
	it = leveldb_create_iterator(c->db, c->scan_ropts);
	for (leveldb_iter_seek(it, key, sizeof(key)); leveldb_iter_valid(it);
	     leveldb_iter_next(it)) {
		struct cat_journal_entry e;
		size_t klen, vlen;
		const char *k, *v;

		if (cat_iter_failed(it, "journal", last, lastlen, err, errlen)) {
			rc = -1;
			break;
		}
		k = leveldb_iter_key(it, &klen);
		if (klen < 1 || k[0] != CAT_KEY_JOURNAL)
			break;
		if (klen != CAT_JOURNAL_KEY_LEN) {
			cat_key_hex(k, klen, khex);
			cat_err(err, errlen, "catalog: journal: malformed key %s (%zu bytes)", khex,
				klen);
			rc = -1;
			break;
		}
		v = leveldb_iter_value(it, &vlen);
		if (cat_journal_decode((const uint8_t *)v, vlen, cat_be_u64((const uint8_t *)k + 1),
				       &e) < 0) {
			cat_key_hex(k, klen, khex);
			cat_err(err, errlen, "catalog: journal: corrupt entry %s (%zu bytes)", khex,
				vlen);
			rc = -1;
			break;
		}
		memcpy(last, k, CAT_JOURNAL_KEY_LEN);
		lastlen = CAT_JOURNAL_KEY_LEN;
		rc = fn(&e, arg);
		cat_journal_clear(&e);
		if (rc)
			break;
	}
	if (!rc && cat_iter_failed(it, "journal", last, lastlen, err, errlen))
		rc = -1;
	leveldb_iter_destroy(it);
	return rc;
}

/* ---- raw keyspaces ----------------------------------------------------------------- */

int catalog_kv_get(struct catalog *c, const void *key, size_t klen, char **val, size_t *vlen,
		   char *err, size_t errlen)
{
	char *lerr = NULL, khex[CAT_KEYHEX_MAX];
	char *v;

	v = leveldb_get(c->db, c->ropts, key, klen, vlen, &lerr);
	if (lerr) {
		cat_key_hex(key, klen, khex);
		cat_err(err, errlen, "catalog: read %s: %s", khex, lerr);
		leveldb_free(lerr);
		return -1;
	}
	if (!v)
		return 1;
	/* leveldb's buffer is not NUL-terminated; ours is, for text values. */
	*val = malloc(*vlen + 1);
	if (!*val) {
		leveldb_free(v);
		cat_err(err, errlen, "catalog: out of memory");
		return -1;
	}
	memcpy(*val, v, *vlen);
	(*val)[*vlen] = '\0';
	leveldb_free(v);
	return 0;
}

int catalog_kv_write(struct catalog *c, const struct cat_kv_op *ops, size_t n, char *err,
		     size_t errlen)
{
	leveldb_writebatch_t *b = leveldb_writebatch_create();
	char *lerr = NULL;

	for (size_t i = 0; i < n; i++) {
		if (ops[i].val)
			leveldb_writebatch_put(b, ops[i].key, ops[i].klen, ops[i].val, ops[i].vlen);
		else
			leveldb_writebatch_delete(b, ops[i].key, ops[i].klen);
	}
	leveldb_write(c->db, c->wopts, b, &lerr);
	leveldb_writebatch_destroy(b);
	if (lerr) {
		cat_err(err, errlen, "catalog: write: %s", lerr);
		leveldb_free(lerr);
		return -1;
	}
	return 0;
}

int catalog_kv_scan(struct catalog *c, const void *prefix, size_t plen, const void *start,
		    size_t slen,
		    int (*fn)(const char *k, size_t klen, const char *v, size_t vlen, void *arg),
		    void *arg, char *err, size_t errlen)
{
	leveldb_iterator_t *it = leveldb_create_iterator(c->db, c->scan_ropts);
	char *lerr = NULL;
	int rc = 0;

	if (start && slen)
		leveldb_iter_seek(it, start, slen);
	else
		leveldb_iter_seek(it, prefix, plen);
	for (; leveldb_iter_valid(it); leveldb_iter_next(it)) {
		size_t klen, vlen;
		const char *k = leveldb_iter_key(it, &klen), *v;

		if (klen < plen || memcmp(k, prefix, plen) != 0)
			break;
		v = leveldb_iter_value(it, &vlen);
		rc = fn(k, klen, v, vlen, arg);
		if (rc)
			break;
	}
	leveldb_iter_get_error(it, &lerr);
	if (lerr) {
		cat_err(err, errlen, "catalog: scan: %s", lerr);
		leveldb_free(lerr);
		rc = -1;
	}
	leveldb_iter_destroy(it);
	return rc;
}

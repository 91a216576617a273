#include "hsmd/nsrec.h"

#include "lib/hex.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/hash.h"
#include "lib/pathsafe.h"

static int ns_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int ns_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

int ns_escape(const char *in, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
		if (*p <= ' ' || *p == '%' || *p == 0x7f) {
			if (o + 3 >= cap)
				return -1;
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		} else {
			if (o + 1 >= cap)
				return -1;
			out[o++] = (char)*p;
		}
	}
	if (o >= cap)
		return -1;
	out[o] = '\0';
	return (int)o;
}

int ns_unescape(const char *in, size_t len, char *out, size_t cap)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		char c = in[i];

		if (c == '%') {
			int hi, lo;

			if (i + 2 >= len)
				return -1;
			hi = hex_digit(in[i + 1]);
			lo = hex_digit(in[i + 2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				return -1;
			c = (char)(hi << 4 | lo);
			i += 2;
		} else if ((unsigned char)c <= ' ' || c == 0x7f) {
			return -1;
		}
		if (o + 1 >= cap)
			return -1;
		out[o++] = c;
	}
	out[o] = '\0';
	return (int)o;
}

static int ns_fmt_vv(const struct ns_rec *r, char *out, size_t cap)
{
	size_t o = 0;

	if (r->nvv == 0)
		return snprintf(out, cap, "-") < (int)cap ? 1 : -1;
	for (unsigned i = 0; i < r->nvv; i++) {
		int n = snprintf(out + o, cap - o, "%s%s:%" PRIu64, i ? "," : "", r->vv[i].site,
				 r->vv[i].counter);

		if (n < 0 || (size_t)n >= cap - o)
			return -1;
		o += (size_t)n;
	}
	return (int)o;
}

static int ns_all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

int nsrec_format(const struct ns_rec *r, char *out, size_t cap)
{
	char fid[33], vv[HSM_VV_MAX * (HSM_SITE_MAX + 24)], arch[200], mid[65];
	char *path, *target = NULL;
	size_t plen;
	int n;

	if (!r->path || (r->kind != NS_FILE && r->kind != NS_DIR && r->kind != NS_LINK) ||
	    !hsm_site_name_valid(r->owner) || ns_fmt_vv(r, vv, sizeof(vv)) < 0)
		return -1;
	plen = strlen(r->path) * 3 + 1;
	path = malloc(plen);
	if (!path || ns_escape(r->path, path, plen) < 0 || !*path) {
		free(path);
		return -1;
	}
	if (r->kind == NS_FILE && (r->has_origin || r->has_conflict)) {
		char o[33], c[33];

		target = malloc(2 * 36);
		if (!target) {
			free(path);
			return -1;
		}
		hsm_fid_hex(&r->origin, o);
		hsm_fid_hex(&r->conflict, c);
		snprintf(target, 2 * 36, "%s%s%s%s%s", r->has_origin ? "o:" : "",
			 r->has_origin ? o : "", r->has_origin && r->has_conflict ? " " : "",
			 r->has_conflict ? "c:" : "", r->has_conflict ? c : "");
	} else if ((r->kind == NS_LINK || (r->kind == NS_DIR && r->deleted)) && r->target) {
		size_t tlen = strlen(r->target) * 3 + 1;

		target = malloc(tlen);
		if (!target || ns_escape(r->target, target, tlen) < 0 || !*target) {
			free(path);
			free(target);
			return -1;
		}
	}
	hsm_fid_hex(&r->fid, fid);
	if (r->archived_version && !ns_all_zero(r->manifest_id, 32)) {
		hex_encode(r->manifest_id, 32, mid);
		snprintf(arch, sizeof(arch), "%" PRIu64 "/%" PRIu64 "/%" PRId64 ".%09u/%s",
			 r->archived_version, r->archived_size, r->archived_mtime_sec,
			 r->archived_mtime_nsec, mid);
	} else {
		snprintf(arch, sizeof(arch), "-");
	}
	n = snprintf(out, cap,
		     "%s %c %o %" PRIu32 " %" PRIu32 " %" PRIu64 " %" PRId64 ".%09u %s:%" PRIu64
		     " %s %s %s%s%s",
		     fid, r->deleted ? r->kind - 'a' + 'A' : r->kind, r->mode & 07777, r->uid,
		     r->gid, r->size, r->mtime_sec, r->mtime_nsec, r->owner, r->version, vv, arch,
		     path, target ? " " : "", target ? target : "");
	free(path);
	free(target);
	if (n < 0 || (size_t)n >= cap)
		return -1;
	return n;
}

/* Splits the next space-separated field off *p (end at e). */
static int ns_field(const char **p, const char *e, const char **f, size_t *flen)
{
	const char *s = *p, *sp;

	if (s >= e)
		return -1;
	sp = memchr(s, ' ', (size_t)(e - s));
	*f = s;
	*flen = sp ? (size_t)(sp - s) : (size_t)(e - s);
	if (*flen == 0)
		return -1;
	*p = sp ? sp + 1 : e;
	return 0;
}

static int ns_u64(const char *f, size_t n, int base, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0 || n > 20)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int d = base == 8 ? (f[i] >= '0' && f[i] <= '7' ? f[i] - '0' : -1)
				  : (f[i] >= '0' && f[i] <= '9' ? f[i] - '0' : -1);

		if (d < 0 || v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base)
			return -1;
		v = v * (uint64_t)base + (uint64_t)d;
	}
	if (v > max)
		return -1;
	*out = v;
	return 0;
}

/* "SEC.NNNNNNNNN", SEC possibly negative. */
static int ns_time(const char *f, size_t n, int64_t *sec, uint32_t *nsec)
{
	const char *dot = memchr(f, '.', n);
	int neg = n && f[0] == '-';
	uint64_t s, ns;

	if (!dot || (size_t)(f + n - dot - 1) != 9)
		return -1;
	if (ns_u64(f + neg, (size_t)(dot - f) - (size_t)neg, 10, INT64_MAX, &s) < 0 ||
	    ns_u64(dot + 1, 9, 10, 999999999, &ns) < 0)
		return -1;
	*sec = neg ? -(int64_t)s : (int64_t)s;
	*nsec = (uint32_t)ns;
	return 0;
}

static int ns_site(const char *f, size_t n, char out[HSM_SITE_MAX + 1])
{
	if (n == 0 || n > HSM_SITE_MAX)
		return -1;
	memcpy(out, f, n);
	out[n] = '\0';
	return hsm_site_name_valid(out) ? 0 : -1;
}

/* "site:counter" */
static int ns_dot(const char *f, size_t n, char site[HSM_SITE_MAX + 1], uint64_t *counter)
{
	const char *c = memchr(f, ':', n);

	if (!c || ns_site(f, (size_t)(c - f), site) < 0)
		return -1;
	return ns_u64(c + 1, (size_t)(f + n - c - 1), 10, UINT64_MAX, counter);
}

static int ns_parse_vv(const char *f, size_t n, struct ns_rec *r)
{
	const char *e = f + n;

	r->nvv = 0;
	if (n == 1 && f[0] == '-')
		return 0;
	while (f < e) {
		const char *comma = memchr(f, ',', (size_t)(e - f));
		size_t len = comma ? (size_t)(comma - f) : (size_t)(e - f);

		if (r->nvv == HSM_VV_MAX ||
		    ns_dot(f, len, r->vv[r->nvv].site, &r->vv[r->nvv].counter) < 0)
			return -1;
		for (unsigned i = 0; i < r->nvv; i++)
			if (!strcmp(r->vv[i].site, r->vv[r->nvv].site))
				return -1;
		r->nvv++;
		f += len + (comma ? 1 : 0);
		if (comma && f == e)
			return -1;
	}
	return 0;
}

static int ns_parse_arch(const char *f, size_t n, struct ns_rec *r)
{
	const char *e = f + n, *s[4];
	size_t l[4];

	if (n == 1 && f[0] == '-')
		return 0;
	for (int i = 0; i < 4; i++) {
		const char *sl = i < 3 ? memchr(f, '/', (size_t)(e - f)) : NULL;

		if (i < 3 && !sl)
			return -1;
		s[i] = f;
		l[i] = i < 3 ? (size_t)(sl - f) : (size_t)(e - f);
		f += l[i] + 1;
	}
	if (ns_u64(s[0], l[0], 10, UINT64_MAX, &r->archived_version) < 0 ||
	    r->archived_version == 0 || ns_u64(s[1], l[1], 10, UINT64_MAX, &r->archived_size) < 0 ||
	    ns_time(s[2], l[2], &r->archived_mtime_sec, &r->archived_mtime_nsec) < 0 || l[3] != 64)
		return -1;
	for (int i = 0; i < 32; i++) {
		int hi = hex_digit(s[3][2 * i]), lo = hex_digit(s[3][2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		r->manifest_id[i] = (uint8_t)(hi << 4 | lo);
	}
	return ns_all_zero(r->manifest_id, 32) ? -1 : 0;
}

static char *ns_path_field(const char *f, size_t n)
{
	char *out = malloc(n + 1);
	char err[128];

	if (!out)
		return NULL;
	if (ns_unescape(f, n, out, n + 1) <= 0 || n > 3 * HSM_PATH_MAX ||
	    strlen(out) > HSM_PATH_MAX || path_check_relative(out, err, sizeof(err)) < 0) {
		free(out);
		return NULL;
	}
	return out;
}

int nsrec_parse(const char *line, size_t len, struct ns_rec *r, char *err, size_t errlen)
{
	const char *p = line, *e = line + len, *f;
	size_t n;
	uint64_t v;
	char fid[33];

	memset(r, 0, sizeof(*r));
	if (len > NS_LINE_MAX)
		return ns_fail(err, errlen, "record longer than %d bytes", NS_LINE_MAX);
	if (ns_field(&p, e, &f, &n) < 0 || n != 32)
		return ns_fail(err, errlen, "bad fid");
	memcpy(fid, f, 32);
	fid[32] = '\0';
	if (hsm_fid_parse(fid, &r->fid) < 0 || hsm_fid_is_zero(&r->fid))
		return ns_fail(err, errlen, "bad fid");
	/* f[0] may be a NUL inside the line, which strchr would find too */
	if (ns_field(&p, e, &f, &n) < 0 || n != 1 || !f[0] || !strchr("fdlFDL", f[0]))
		return ns_fail(err, errlen, "bad kind: expected one of f d l F D L");
	r->deleted = f[0] >= 'A' && f[0] <= 'Z';
	r->kind = r->deleted ? (char)(f[0] - 'A' + 'a') : f[0];
	if (ns_field(&p, e, &f, &n) < 0 || ns_u64(f, n, 8, 07777, &v) < 0)
		return ns_fail(err, errlen, "bad mode");
	r->mode = (uint32_t)v;
	if (ns_field(&p, e, &f, &n) < 0 || ns_u64(f, n, 10, UINT32_MAX - 1, &v) < 0)
		return ns_fail(err, errlen, "bad uid");
	r->uid = (uint32_t)v;
	if (ns_field(&p, e, &f, &n) < 0 || ns_u64(f, n, 10, UINT32_MAX - 1, &v) < 0)
		return ns_fail(err, errlen, "bad gid");
	r->gid = (uint32_t)v;
	if (ns_field(&p, e, &f, &n) < 0 || ns_u64(f, n, 10, INT64_MAX, &r->size) < 0)
		return ns_fail(err, errlen, "bad size");
	if (ns_field(&p, e, &f, &n) < 0 || ns_time(f, n, &r->mtime_sec, &r->mtime_nsec) < 0)
		return ns_fail(err, errlen, "bad mtime: expected SECONDS.NANOSECONDS");
	if (ns_field(&p, e, &f, &n) < 0 || ns_dot(f, n, r->owner, &r->version) < 0)
		return ns_fail(err, errlen, "bad content version: expected SITE:COUNTER");
	if (ns_field(&p, e, &f, &n) < 0 || ns_parse_vv(f, n, r) < 0)
		return ns_fail(err, errlen, "bad version vector");
	if (ns_field(&p, e, &f, &n) < 0 || ns_parse_arch(f, n, r) < 0)
		return ns_fail(err, errlen, "bad archived copy");
	if (ns_field(&p, e, &f, &n) < 0 || !(r->path = ns_path_field(f, n)))
		return ns_fail(err, errlen, "bad path");
	while (p < e && r->kind == NS_FILE) {
		struct hsm_fid *which;
		int *has;

		if (ns_field(&p, e, &f, &n) < 0 || n != 34 || f[1] != ':' ||
		    (f[0] != 'o' && f[0] != 'c')) {
			nsrec_clear(r);
			return ns_fail(err, errlen,
				       "unexpected text after the path: expected o:FID or c:FID");
		}
		which = f[0] == 'o' ? &r->origin : &r->conflict;
		has = f[0] == 'o' ? &r->has_origin : &r->has_conflict;
		memcpy(fid, f + 2, 32);
		if (*has || hsm_fid_parse(fid, which) < 0 || hsm_fid_is_zero(which)) {
			nsrec_clear(r);
			return ns_fail(err, errlen, "bad %s fid",
				       f[0] == 'o' ? "origin" : "conflict");
		}
		*has = 1;
	}
	if (p < e) {
		/* a symlink's target; a directory renamed away names where it went */
		int moved = r->kind == NS_DIR && r->deleted;
		char perr[128];

		if ((r->kind != NS_LINK && !moved) || ns_field(&p, e, &f, &n) < 0 || p < e) {
			nsrec_clear(r);
			return ns_fail(err, errlen, "unexpected text after the path");
		}
		r->target = malloc(n + 1);
		if (!r->target || ns_unescape(f, n, r->target, n + 1) <= 0 ||
		    (moved && path_check_relative(r->target, perr, sizeof(perr)) < 0)) {
			nsrec_clear(r);
			return ns_fail(err, errlen,
				       moved ? "bad new path of a moved directory"
					     : "bad symlink target");
		}
	}
	if (r->kind == NS_LINK && !r->target && !r->deleted) {
		nsrec_clear(r);
		return ns_fail(err, errlen, "symlink without a target");
	}
	return 0;
}

void nsrec_clear(struct ns_rec *r)
{
	if (!r)
		return;
	free(r->path);
	free(r->target);
	memset(r, 0, sizeof(*r));
}

int nsrec_copy(struct ns_rec *dst, const struct ns_rec *src)
{
	*dst = *src;
	dst->path = src->path ? strdup(src->path) : NULL;
	dst->target = src->target ? strdup(src->target) : NULL;
	if ((src->path && !dst->path) || (src->target && !dst->target)) {
		nsrec_clear(dst);
		return -1;
	}
	return 0;
}

uint64_t nsrec_vv_get(const struct ns_rec *r, const char *site)
{
	for (unsigned i = 0; i < r->nvv; i++)
		if (!strcmp(r->vv[i].site, site))
			return r->vv[i].counter;
	return 0;
}

int nsrec_vv_set(struct ns_rec *r, const char *site, uint64_t counter)
{
	for (unsigned i = 0; i < r->nvv; i++) {
		if (!strcmp(r->vv[i].site, site)) {
			r->vv[i].counter = counter;
			return 0;
		}
	}
	if (r->nvv == HSM_VV_MAX)
		return -1;
	snprintf(r->vv[r->nvv].site, sizeof(r->vv[r->nvv].site), "%s", site);
	r->vv[r->nvv].counter = counter;
	r->nvv++;
	return 0;
}

int nsrec_vv_compare(const struct ns_rec *a, const struct ns_rec *b)
{
	int a_more = 0, b_more = 0;

	for (unsigned i = 0; i < a->nvv; i++) {
		uint64_t bv = nsrec_vv_get(b, a->vv[i].site);

		if (a->vv[i].counter > bv)
			a_more = 1;
		else if (a->vv[i].counter < bv)
			b_more = 1;
	}
	for (unsigned i = 0; i < b->nvv; i++)
		if (b->vv[i].counter > nsrec_vv_get(a, b->vv[i].site))
			b_more = 1;
	if (a_more && b_more)
		return 2;
	return a_more ? 1 : b_more ? -1 : 0;
}

int nsrec_vv_merge(struct ns_rec *a, const struct ns_rec *b)
{
	for (unsigned i = 0; i < b->nvv; i++)
		if (b->vv[i].counter > nsrec_vv_get(a, b->vv[i].site) &&
		    nsrec_vv_set(a, b->vv[i].site, b->vv[i].counter) < 0)
			return -1;
	return 0;
}

int nsrec_knows(const struct ns_rec *r, const char *owner, uint64_t version)
{
	return nsrec_vv_get(r, owner) >= version;
}

int nsrec_same_content(const struct ns_rec *a, const struct ns_rec *b)
{
	return a->version == b->version && !strcmp(a->owner, b->owner);
}

int nsrec_wins(const struct ns_rec *a, const struct ns_rec *b)
{
	int c;

	if (a->mtime_sec != b->mtime_sec)
		return a->mtime_sec > b->mtime_sec;
	if (a->mtime_nsec != b->mtime_nsec)
		return a->mtime_nsec > b->mtime_nsec;
	c = strcmp(a->owner, b->owner);
	if (c)
		return c > 0;
	return a->version >= b->version;
}

void nsrec_resolve(const struct ns_rec *a, const struct ns_rec *b, struct ns_resolution *out)
{
	memset(out, 0, sizeof(*out));
	if (a->kind == NS_DIR && (a->deleted || b->deleted)) {
		/* A directory holds no data of its own, and what was made in it has records of
		 * its own (which follow a rename): its removal wins over a name made in it. */
		out->outcome = NS_DIR_GONE;
		if (a->deleted && b->deleted)
			out->content = (a->target != NULL) != (b->target != NULL)
					   ? (a->target ? a : b)
				       : nsrec_wins(a, b) ? a
							  : b;
		else
			out->content = a->deleted ? a : b;
	} else if (a->deleted || b->deleted) {
		out->outcome = NS_LIVE_WINS;
		out->content = a->deleted && !b->deleted ? b : a;
	} else if (a->kind != NS_FILE) {
		out->outcome = NS_LATER_WINS;
		out->content = nsrec_wins(a, b) ? a : b;
	} else if (!nsrec_same_content(a, b) && !nsrec_knows(a, b->owner, b->version) &&
		   !nsrec_knows(b, a->owner, a->version)) {
		out->outcome = NS_CONFLICT;
		out->content = nsrec_wins(a, b) ? a : b;
		out->loser = out->content == a ? b : a;
	} else {
		out->outcome = NS_COMBINE;
		if (nsrec_same_content(a, b)) {
			/* the same data: the record that knows of its archive, then the greater
			 * name, whichever side is local */
			int c = strcmp(a->path, b->path);

			out->meta = c >= 0 ? a : b;
			if (a->archived_version != b->archived_version)
				out->content = a->archived_version > b->archived_version ? a : b;
			else
				out->content = out->meta;
			return;
		}
		out->content = nsrec_knows(b, a->owner, a->version) ? b : a;
		out->meta = out->content == a ? b : a;
		return;
	}
	out->meta = out->content;
}

/* Where in base a ".conflict-OWNER-YYYYmmddTHHMMSS" suffix (this file's own naming)
 * starts and ends, if it has one: a conflict copy that loses again is named after the
 * file it came from, not nested. 1 and [*from, *to), or 0. */
static int ns_conflict_suffix(const char *base, const char **from, const char **to)
{
	for (const char *p = strstr(base, ".conflict-"); p; p = strstr(p + 1, ".conflict-")) {
		/* The owner is at least one character: ".conflict-" at the very end has none. */
		if (!p[10])
			break;
		for (const char *r = p + 11; *r; r++) {
			int stamp = r[0] == '-';

			for (int i = 1; stamp && i <= 15; i++)
				stamp = i == 9 ? r[i] == 'T' : (r[i] >= '0' && r[i] <= '9');
			if (stamp && (r[16] == '\0' || r[16] == '.')) {
				*from = p;
				*to = r + 16;
				return 1;
			}
		}
	}
	return 0;
}

char *nsrec_conflict_path(const char *path, const char *owner, int64_t mtime_sec)
{
	const char *base = strrchr(path, '/'), *ext, *cf, *ct;
	char *plain = NULL, *out;
	char stamp[32];
	time_t t = (time_t)mtime_sec;
	struct tm tm;
	size_t stem, n;

	base = base ? base + 1 : path;
	if (ns_conflict_suffix(base, &cf, &ct)) {
		size_t head = (size_t)(cf - path), tail = strlen(ct);

		plain = malloc(head + tail + 1);
		if (!plain)
			return NULL;
		memcpy(plain, path, head);
		memcpy(plain + head, ct, tail + 1);
		path = plain;
		base = strrchr(path, '/');
		base = base ? base + 1 : path;
	}
	ext = strrchr(base, '.');
	/* ".bashrc" has no extension; "a." keeps its dot in the stem. */
	if (!ext || ext == base || !ext[1])
		ext = base + strlen(base);
	if (!gmtime_r(&t, &tm) || !strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%S", &tm))
		snprintf(stamp, sizeof(stamp), "%lld", (long long)mtime_sec);
	stem = (size_t)(ext - path);
	n = stem + strlen(".conflict-") + strlen(owner) + 1 + strlen(stamp) + strlen(ext) + 1;
	out = malloc(n);
	if (out)
		snprintf(out, n, "%.*s.conflict-%s-%s%s", (int)stem, path, owner, stamp, ext);
	free(plain);
	return out;
}

void nsrec_conflict_fid(const struct hsm_fid *fid, const char *owner, uint64_t version,
			struct hsm_fid *out)
{
	char buf[16 + HSM_SITE_MAX + 32];
	uint8_t sha[32];
	size_t n = 0;

	memcpy(buf, "conflict", 8);
	n = 8;
	memcpy(buf + n, fid->b, 16);
	n += 16;
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s:%" PRIu64, owner, version);
	sha256_buf(buf, n < sizeof(buf) ? n : sizeof(buf), sha);
	memcpy(out->b, sha, 16);
}

void nsrec_dir_fid(const char *volume, const char *path, struct hsm_fid *out)
{
	size_t vl = strlen(volume), pl = strlen(path);
	char *buf = malloc(4 + vl + 1 + pl);
	uint8_t sha[32];

	if (!buf) {
		memset(out, 0xff, sizeof(*out));
		return;
	}
	memcpy(buf, "dir:", 4);
	memcpy(buf + 4, volume, vl);
	buf[4 + vl] = '\0';
	memcpy(buf + 5 + vl, path, pl);
	sha256_buf(buf, 5 + vl + pl, sha);
	free(buf);
	memcpy(out->b, sha, 16);
}

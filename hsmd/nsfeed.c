#include "hsmd/nsfeed.h"

#include <stdio.h>
#include <string.h>

static const char nsfeed_magic[] = "hsm-changes 1 ";

static int nsfeed_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

/* Site and volume names: 1..HSM_SITE_MAX of [a-z0-9_-] (config.c checks the rest). */
static int nsfeed_name(const char *s, size_t n)
{
	if (n < 1 || n > HSM_SITE_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
		      s[i] == '-'))
			return 0;
	return 1;
}

/* A decimal number of digits only (no sign, space, "0x" or leading zero: one number has
 * one spelling), that fits 64 bits. */
static int nsfeed_u64(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;

	if (n < 1 || n > 20 || (n > 1 && s[0] == '0'))
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned d = (unsigned)(s[i] - '0');

		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return 0;
		v = v * 10 + d;
	}
	*out = v;
	return 1;
}

int nsfeed_format_head(const struct ns_feed_head *h, char *buf, size_t len)
{
	int n;

	if (strlen(h->feed) != NS_FEED_ID_LEN || !nsfeed_hex(h->feed, NS_FEED_ID_LEN) ||
	    !nsfeed_name(h->site, strlen(h->site)) || !nsfeed_name(h->volume, strlen(h->volume)) ||
	    (h->more != 0 && h->more != 1))
		return -1;
	n = snprintf(buf, len, "%s%s %s %s %llu %d\n", nsfeed_magic, h->feed, h->site, h->volume,
		     (unsigned long long)h->next, h->more);
	return n < 0 || (size_t)n >= len ? -1 : n;
}

/* The next space-separated field of line[*pos..end); the last one ends at end. */
static int nsfeed_field(const char *line, size_t end, size_t *pos, const char **f, size_t *n,
			int last)
{
	const char *sp;

	if (*pos >= end)
		return 0;
	*f = line + *pos;
	sp = memchr(*f, ' ', end - *pos);
	if (last ? sp != NULL : sp == NULL)
		return 0;
	*n = last ? end - *pos : (size_t)(sp - *f);
	*pos += *n + 1;
	return *n > 0;
}

int nsfeed_parse_head(const char *body, size_t len, struct ns_feed_head *h, char *err,
		      size_t errlen)
{
	const char *nl = memchr(body, '\n', len), *f;
	size_t end, pos = sizeof(nsfeed_magic) - 1, n;

	memset(h, 0, sizeof(*h));
	if (!nl) {
		snprintf(err, errlen, "no head line");
		return -1;
	}
	end = (size_t)(nl - body);
	if (end > 4096 || end < pos || memcmp(body, nsfeed_magic, pos)) {
		snprintf(err, errlen, "not an hsm-changes 1 answer");
		return -1;
	}
	if (!nsfeed_field(body, end, &pos, &f, &n, 0) || n != NS_FEED_ID_LEN || !nsfeed_hex(f, n)) {
		snprintf(err, errlen, "bad feed id");
		return -1;
	}
	memcpy(h->feed, f, n);
	if (!nsfeed_field(body, end, &pos, &f, &n, 0) || !nsfeed_name(f, n)) {
		snprintf(err, errlen, "bad site name");
		return -1;
	}
	memcpy(h->site, f, n);
	if (!nsfeed_field(body, end, &pos, &f, &n, 0) || !nsfeed_name(f, n)) {
		snprintf(err, errlen, "bad volume name");
		return -1;
	}
	memcpy(h->volume, f, n);
	if (!nsfeed_field(body, end, &pos, &f, &n, 0) || !nsfeed_u64(f, n, &h->next)) {
		snprintf(err, errlen, "bad next sequence");
		return -1;
	}
	if (!nsfeed_field(body, end, &pos, &f, &n, 1) || n != 1 || (f[0] != '0' && f[0] != '1')) {
		snprintf(err, errlen, "bad 'more' flag");
		return -1;
	}
	h->more = f[0] == '1';
	return (int)(end + 1);
}

int nsfeed_next(const char *body, size_t len, size_t *off, uint64_t *seq, const char **rec,
		size_t *rec_len)
{
	const char *line, *nl, *sp;

	if (*off >= len)
		return 0;
	line = body + *off;
	nl = memchr(line, '\n', len - *off);
	if (!nl)
		return 0;
	sp = memchr(line, ' ', (size_t)(nl - line));
	if (!sp || !nsfeed_u64(line, (size_t)(sp - line), seq) || *seq == 0)
		return -1;
	*rec = sp + 1;
	*rec_len = (size_t)(nl - sp - 1);
	*off = (size_t)(nl - body) + 1;
	return 1;
}

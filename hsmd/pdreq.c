#include "hsmd/pdreq.h"

#include <string.h>

#include "lib/hex.h"
#include "lib/httpreq.h"
#include "recall/peer_client.h"

/* "123" within [lo, hi], digits only, no leading zeros. 0 or -1. */
static int pd_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	uint64_t v = 0;

	if (!s[0] || (s[0] == '0' && s[1]))
		return -1;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9' || v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

static int pd_query_u64(const char *query, const char *key, uint64_t lo, uint64_t hi, uint64_t *out)
{
	char buf[32];

	if (https_query_get(query, key, buf, sizeof(buf)) != 0)
		return -1;
	return pd_u64(buf, lo, hi, out);
}

static int pd_is_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
		      (s[i] >= 'A' && s[i] <= 'F')))
			return 0;
	return s[n] == '\0';
}

/* Splits "VOL/FID/OP" into its three parts. 0 when the shape fits, -1 otherwise. */
static int pd_split(const char *rest, char *vol, size_t vlen, char *fid, size_t flen, char *op,
		    size_t olen)
{
	const char *a = strchr(rest, '/'), *b;

	if (!a || !(b = strchr(a + 1, '/')) || strchr(b + 1, '/'))
		return -1;
	if ((size_t)(a - rest) >= vlen || (size_t)(b - a - 1) >= flen || strlen(b + 1) >= olen)
		return -1;
	memcpy(vol, rest, (size_t)(a - rest));
	vol[a - rest] = '\0';
	memcpy(fid, a + 1, (size_t)(b - a - 1));
	fid[b - a - 1] = '\0';
	strcpy(op, b + 1);
	return 0;
}

static int pd_chunk_fields(const char *query, struct pd_target *t, const char **why)
{
	char sha[80];
	uint64_t n;

	if (pd_query_u64(query, "off", 0, INT64_MAX, &t->off) < 0 ||
	    pd_query_u64(query, "len", 1, PEER_CHUNK_MAX, &n) < 0 ||
	    t->off > (uint64_t)INT64_MAX - n) {
		*why = "bad or missing off or len (len at most 16 MiB)\n";
		return -1;
	}
	t->len = (uint32_t)n;
	if (https_query_get(query, "sha", sha, sizeof(sha)) != 0 || strlen(sha) != 64 ||
	    !pd_is_hex(sha, 64) || hex_decode(sha, t->sha, 32) < 0) {
		*why = "bad or missing sha\n";
		return -1;
	}
	return 0;
}

int pdreq_parse(const char *rest, const char *query, struct pd_target *t, const char **why)
{
	char fidhex[40], op[16];

	memset(t, 0, sizeof(*t));
	if (pd_split(rest, t->vol, sizeof(t->vol), fidhex, sizeof(fidhex), op, sizeof(op)) < 0 ||
	    (strcmp(op, "manifest") && strcmp(op, "chunk"))) {
		memset(t, 0, sizeof(*t));
		return 1;
	}
	t->op = strcmp(op, "chunk") ? PD_MANIFEST : PD_CHUNK;
	if (strlen(fidhex) != 32 || !pd_is_hex(fidhex, 32) || hsm_fid_parse(fidhex, &t->fid) < 0) {
		*why = "bad fid\n";
		return -1;
	}
	if (https_query_get(query, "owner", t->owner, sizeof(t->owner)) != 0 ||
	    !hsm_site_name_valid(t->owner)) {
		*why = "bad or missing owner\n";
		return -1;
	}
	if (pd_query_u64(query, "version", 1, UINT64_MAX, &t->version) < 0) {
		*why = "bad or missing version\n";
		return -1;
	}
	if (t->op == PD_CHUNK)
		return pd_chunk_fields(query, t, why);
	return 0;
}

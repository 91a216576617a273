/* Globs: the common shapes (`*.tmp`, `~*`, `Thumbs.db`, `proj/` + `**`) become a literal
 * compare; the rest a small automaton run over a bit set of states, so a glob costs
 * O(len(s) * len(glob) / 64) whatever its stars, never a backtracking blow-up. */
#include <string.h>

#include "policy/policy_int.h"

enum pol_gop_type {
	GO_LIT,
	GO_ANY,	   /* ? : one byte but '/' */
	GO_SET,	   /* [..] : never '/' */
	GO_STAR,   /* * : bytes but '/' */
	GO_DSTAR,  /* ** : any bytes */
	GO_DSLASH, /* `**` + `/`: zero or more whole directories; GO_DSIN follows */
	GO_DSIN,
};

#define NWORDS ((POL_GLOB_MAXOPS + 1 + 63) / 64)

/* Parses one [...] at src[*i] (just past the '['); fills set. */
static int glob_set(const char *src, size_t *i, uint8_t set[32])
{
	size_t k = *i;
	int neg = 0, first = 1;

	memset(set, 0, 32);
	if (src[k] == '!') {
		neg = 1;
		k++;
	}
	while (src[k] != '\0' && (src[k] != ']' || first)) {
		unsigned char lo = (unsigned char)src[k], hi;

		first = 0;
		if (lo == '\\') {
			if (src[k + 1] == '\0')
				return -1;
			lo = (unsigned char)src[++k];
		}
		k++;
		hi = lo;
		if (src[k] == '-' && src[k + 1] != ']' && src[k + 1] != '\0') {
			k++;
			hi = (unsigned char)src[k];
			if (hi == '\\') {
				if (src[k + 1] == '\0')
					return -1;
				hi = (unsigned char)src[++k];
			}
			k++;
		}
		for (unsigned c = lo; c <= hi; c++)
			set[c >> 3] |= (uint8_t)(1u << (c & 7));
	}
	if (src[k] != ']')
		return -1;
	if (neg)
		for (int j = 0; j < 32; j++)
			set[j] = (uint8_t)~set[j];
	set['/' >> 3] &= (uint8_t) ~(1u << ('/' & 7));
	*i = k + 1;
	return 0;
}

/* The literal fast paths: src is a literal with at most one leading `*` or one trailing
 * `*` / `**`, no escapes. */
static int glob_fast(struct pol_arena *a, const char *src, struct pol_glob *g)
{
	size_t n = strlen(src), b = 0, e = n;

	if (strpbrk(src, "?[\\") != NULL)
		return 0;
	if (strcmp(src, "**") == 0 || strcmp(src, "**/**") == 0) {
		g->kind = G_ANY;
		return 1;
	}
	/* a directory name anywhere: at the start ("x/") or inside ("/x/") */
	if (n > 6 && strncmp(src, "**/", 3) == 0 && strcmp(src + n - 3, "/**") == 0 &&
	    memchr(src + 3, '*', n - 6) == NULL) {
		char *lit = pa_alloc(a, n - 6 + 3);

		if (lit == NULL)
			return 0;
		lit[0] = '/';
		memcpy(lit + 1, src + 3, n - 6);
		lit[n - 5] = '/';
		g->kind = G_CONTAINS;
		g->lit = lit;
		g->litn = n - 4;
		return 1;
	}
	if (n >= 2 && src[n - 1] == '*' && src[n - 2] == '*') {
		g->kind = G_PREFIX_ANY;
		e = n - 2;
	} else if (n >= 1 && src[n - 1] == '*') {
		g->kind = G_PREFIX;
		e = n - 1;
	} else if (n >= 1 && src[0] == '*' && (n < 2 || src[1] != '*')) {
		g->kind = G_SUFFIX;
		b = 1;
	} else {
		g->kind = G_EXACT;
	}
	if (memchr(src + b, '*', e - b) != NULL)
		return 0;
	g->lit = pa_strndup(a, src + b, e - b);
	g->litn = e - b;
	return g->lit != NULL;
}

/* The literal ends of an automaton glob, so most non-matches cost one compare. */
static void glob_literals(struct pol_arena *a, const char *src, const struct pol_gop *ops,
			  size_t nops, struct pol_glob *g)
{
	char buf[POL_GLOB_MAXOPS + 1];
	size_t p = 0, q = 0;

	(void)src;
	while (p < nops && ops[p].type == GO_LIT)
		buf[p] = (char)ops[p].c, p++;
	if (p > 0 && (g->pre = pa_strndup(a, buf, p)) != NULL)
		g->pren = p;
	while (q < nops - p && ops[nops - 1 - q].type == GO_LIT)
		q++;
	for (size_t i = 0; i < q; i++)
		buf[i] = (char)ops[nops - q + i].c;
	if (q > 0 && (g->suf = pa_strndup(a, buf, q)) != NULL)
		g->sufn = q;
}

int pol_glob_compile(struct pol_arena *a, const char *src, struct pol_glob *g, size_t *errpos,
		     const char **err)
{
	struct pol_gop ops[POL_GLOB_MAXOPS];
	uint8_t sets[64][32];
	size_t nops = 0, nsets = 0, i = 0;

	memset(g, 0, sizeof(*g));
	g->src = src;
	/* the fast shapes have no [ or \, so nothing in them can be malformed */
	if (glob_fast(a, src, g))
		return 0;
	if (a->failed) {
		*errpos = 0;
		*err = "out of memory";
		return -1;
	}
	while (src[i] != '\0') {
		struct pol_gop op = {.type = GO_LIT, .c = (uint8_t)src[i]};
		size_t at = i;

		if (nops + 2 > POL_GLOB_MAXOPS) {
			*errpos = i;
			*err = "glob too long";
			return -1;
		}
		if (src[i] == '\\') {
			if (src[i + 1] == '\0') {
				*errpos = i;
				*err = "glob ends with an escape '\\'";
				return -1;
			}
			op.c = (uint8_t)src[i + 1];
			i += 2;
		} else if (src[i] == '?') {
			op.type = GO_ANY;
			i++;
		} else if (src[i] == '[') {
			i++;
			if (nsets == 64) {
				*errpos = at;
				*err = "too many [ ] sets in glob";
				return -1;
			}
			if (glob_set(src, &i, sets[nsets]) < 0) {
				*errpos = at;
				*err = "unclosed '[' in glob";
				return -1;
			}
			op.type = GO_SET;
			op.set = (uint16_t)nsets++;
		} else if (src[i] == '*' && src[i + 1] == '*' && src[i + 2] == '/') {
			op.type = GO_DSLASH;
			ops[nops++] = op;
			op.type = GO_DSIN;
			i += 3;
		} else if (src[i] == '*' && src[i + 1] == '*') {
			op.type = GO_DSTAR;
			while (src[i] == '*')
				i++;
		} else if (src[i] == '*') {
			op.type = GO_STAR;
			i++;
		} else {
			i++;
		}
		ops[nops++] = op;
	}
	/* `**` `/` REST with no '/' in REST: REST against the last component alone */
	if (strncmp(src, "**/", 3) == 0 && strchr(src + 3, '/') == NULL &&
	    strstr(src + 3, "**") == NULL) {
		struct pol_glob *sub = pa_alloc(a, sizeof(*sub));

		if (sub == NULL || pol_glob_compile(a, src + 3, sub, errpos, err) < 0) {
			*errpos = 0;
			*err = "out of memory";
			return -1;
		}
		g->kind = G_LAST;
		g->sub = sub;
		return 0;
	}
	g->kind = G_NFA;
	glob_literals(a, src, ops, nops, g);
	struct pol_gop *o = pa_alloc(a, (nops ? nops : 1) * sizeof(*o));
	uint8_t(*st)[32] = pa_alloc(a, (nsets ? nsets : 1) * 32);

	if (o == NULL || st == NULL) {
		*errpos = 0;
		*err = "out of memory";
		return -1;
	}
	memcpy(o, ops, nops * sizeof(*o));
	memcpy(st, sets, nsets * 32);
	g->ops = o;
	g->nops = nops;
	g->sets = (const uint8_t(*)[32])st;
	return 0;
}

/* Follows the epsilon moves: they only go forward, so one ascending pass suffices. */
static void glob_close(const struct pol_glob *g, uint64_t *st)
{
	for (size_t i = 0; i < g->nops; i++) {
		if (!(st[i >> 6] & (1ull << (i & 63))))
			continue;
		int t = g->ops[i].type;

		if (t == GO_STAR || t == GO_DSTAR) {
			st[(i + 1) >> 6] |= 1ull << ((i + 1) & 63);
		} else if (t == GO_DSLASH) {
			st[(i + 1) >> 6] |= 1ull << ((i + 1) & 63);
			st[(i + 2) >> 6] |= 1ull << ((i + 2) & 63);
		}
	}
}

static int glob_nfa(const struct pol_glob *g, const char *s)
{
	uint64_t cur[NWORDS] = {0}, nxt[NWORDS];
	size_t nw = (g->nops + 1 + 63) / 64;

	cur[0] = 1;
	glob_close(g, cur);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		int any = 0;

		memset(nxt, 0, nw * sizeof(nxt[0]));
		for (size_t w = 0; w < nw; w++) {
			uint64_t bits = cur[w];

			while (bits) {
				size_t i = w * 64 + (size_t)__builtin_ctzll(bits);
				const struct pol_gop *op = &g->ops[i];
				size_t to = i + 1;
				int ok = 0;

				bits &= bits - 1;
				if (i >= g->nops)
					continue;
				switch (op->type) {
				case GO_LIT:
					ok = c == op->c;
					break;
				case GO_ANY:
					ok = c != '/';
					break;
				case GO_SET:
					ok = (g->sets[op->set][c >> 3] >> (c & 7)) & 1;
					break;
				case GO_STAR:
					ok = c != '/';
					to = i;
					break;
				case GO_DSTAR:
					ok = 1;
					to = i;
					break;
				case GO_DSIN:
					ok = 1;
					to = i;
					if (c == '/')
						nxt[(i + 1) >> 6] |= 1ull << ((i + 1) & 63);
					break;
				default:
					break;
				}
				if (ok) {
					nxt[to >> 6] |= 1ull << (to & 63);
					any = 1;
				}
			}
		}
		if (!any)
			return 0;
		glob_close(g, nxt);
		memcpy(cur, nxt, nw * sizeof(cur[0]));
	}
	return (cur[g->nops >> 6] >> (g->nops & 63)) & 1;
}

int pol_glob_match(const struct pol_glob *g, const char *s)
{
	size_t n;

	switch (g->kind) {
	case G_EXACT:
		return strcmp(s, g->lit) == 0;
	case G_ANY:
		return 1;
	case G_SUFFIX:
		n = strlen(s);
		return n >= g->litn && memcmp(s + n - g->litn, g->lit, g->litn) == 0 &&
		       memchr(s, '/', n - g->litn) == NULL;
	case G_PREFIX:
		return strncmp(s, g->lit, g->litn) == 0 && strchr(s + g->litn, '/') == NULL;
	case G_PREFIX_ANY:
		return strncmp(s, g->lit, g->litn) == 0;
	case G_CONTAINS:
		return strncmp(s, g->lit + 1, g->litn - 1) == 0 || strstr(s, g->lit) != NULL;
	case G_LAST: {
		const char *slash = strrchr(s, '/');

		return pol_glob_match(g->sub, slash ? slash + 1 : s);
	}
	default:
		if (g->pren && strncmp(s, g->pre, g->pren) != 0)
			return 0;
		if (g->sufn) {
			n = strlen(s);
			if (n < g->sufn || memcmp(s + n - g->sufn, g->suf, g->sufn) != 0)
				return 0;
		}
		return glob_nfa(g, s);
	}
}

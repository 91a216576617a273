/* libFuzzer target for the policy language (policy/policy.h): compiles the input,
 * formats every diagnostic and, when it compiled, exercises every read-only entry
 * point against a few fixed files. Built and run by tests/fuzz/run. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"

static const char *const sites[] = {"london", "paris"};

static int resolve(void *arg, int kind, const char *name, uint32_t *id)
{
	(void)arg;
	if (kind == POLICY_USER && strcmp(name, "root") == 0) {
		*id = 0;
		return 0;
	}
	if (kind == POLICY_GROUP && strcmp(name, "staff") == 0) {
		*id = 50;
		return 0;
	}
	return -1;
}

/* arg: "name=value\0name=value\0\0" */
static long xattr(void *arg, const char *name, char *buf, size_t cap)
{
	const char *p = arg;
	size_t nl = strlen(name);
	while (*p) {
		size_t l = strlen(p);
		if (strncmp(p, name, nl) == 0 && p[nl] == '=') {
			size_t vl = l - nl - 1;
			memcpy(buf, p + nl + 1, vl < cap ? vl : cap);
			return (long)vl;
		}
		p += l + 1;
	}
	return -1;
}

static char xattrs_a[] = "user.project=apollo\0user.class=hot\0";
/* user.project is empty and user.big is 700 bytes: longer than the 511 the library
 * matches, so the cut-off path is exercised. Built by xattrs_init. */
static char xattrs_b[sizeof("user.project=\0user.big=") + 700 + 1];

static void xattrs_init(void)
{
	static const char head[] = "user.project=\0user.big=";

	memcpy(xattrs_b, head, sizeof(head) - 1);
	memset(xattrs_b + sizeof(head) - 1, 'x', 700);
	/* the rest stays zero: the value's end and the list's */
}

#define NOW ((int64_t)1780000000) /* 2026-05-28 */
#define DAY ((int64_t)86400)

static const struct policy_file files[] = {
    {"office", "reports/2025/q1.xlsx", 2u << 20, NOW - 40 * DAY, NOW - 45 * DAY, NOW - 45 * DAY,
     1000, 100, POLICY_RESIDENT, 0, "london", xattr, xattrs_a},
    {"office", "~$q1.xlsx", 162, NOW, NOW, NOW, 1000, 100, POLICY_RESIDENT, POLICY_F_DIRTY, "paris",
     NULL, NULL},
    {"eng", "london/build/out.tmp", 5ull << 30, NOW - 400 * DAY, NOW - 400 * DAY, NOW - 400 * DAY,
     0, 50, POLICY_ARCHIVED, POLICY_F_PINNED, "london", xattr, xattrs_b},
    {"eng", "shared/tools/bin/gcc", 0, NOW + 1000, NOW + 1000, NOW + 1000, 0, 0, POLICY_STUB,
     POLICY_F_NOARCHIVE | POLICY_F_PINNED, "paris", xattr, xattrs_b},
    {"", "a", UINT64_MAX, INT64_MIN, INT64_MAX, 0, UINT32_MAX, UINT32_MAX, POLICY_STUB, ~0u, "",
     xattr, xattrs_a},
    {"office", "dir/.~lock.file.odt#", 1, 0, 0, 0, 1, 1, POLICY_RESIDENT, 0, "nowhere", NULL, NULL},
};
#define NFILES (sizeof files / sizeof files[0])

static FILE *devnull;
static size_t sink;

static void line_cb(void *arg, const char *text)
{
	(void)arg;
	sink += strlen(text);
}

static void rule_accessors(const struct policy *p, const struct policy_rule *r)
{
	if (!r)
		return;
	unsigned hi = 0, lo = 0;
	int keys[3] = {0, 0, 0};
	sink += (size_t)policy_rule_line(r);
	sink += (size_t)policy_rule_action(r);
	const char *t = policy_rule_text(r);
	if (t)
		sink += strlen(t);
	const char *s = policy_rule_site(r);
	if (s)
		sink += strlen(s);
	sink += policy_rule_copies(r);
	policy_rule_watermarks(r, &hi, &lo);
	size_t n = policy_rule_order(r, keys);
	if (n > 3)
		abort();
	sink += hi + lo + n + (size_t)keys[0];
	if (policy_rule_action(r) == POLICY_RELEASE) {
		for (size_t i = 0; i < NFILES; i++)
			for (size_t j = 0; j < NFILES; j++) {
				int c = policy_order_cmp(r, &files[i], &files[j]);
				if (i == j && c != 0)
					abort(); /* a file does not go before itself */
			}
	}
	(void)p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct policy_env envs[] = {
	    {sites, 2, resolve, NULL},
	    {NULL, 0, NULL, NULL},
	};
	struct policy_diags d;
	char buf[1024];

	if (!devnull) {
		devnull = fopen("/dev/null", "w");
		xattrs_init();
	}

	for (size_t e = 0; e < sizeof envs / sizeof envs[0]; e++) {
		memset(&d, 0, sizeof d);
		struct policy *p = policy_compile("fuzz", (const char *)data, size, &envs[e], &d);
		for (size_t i = 0; i < d.n; i++) {
			policy_diag_format(p, "fuzz", &d.v[i], buf, sizeof buf);
			sink += strlen(buf);
			policy_diag_format(p, "fuzz", &d.v[i], buf, 8); /* truncation */
			sink += strlen(buf);
		}
		if ((p != NULL) == (d.errors != 0))
			abort(); /* NULL exactly when there was an error */
		if (!p) {
			policy_diags_free(&d);
			continue;
		}
		if (devnull)
			policy_dump(p, devnull);
		/* every rule, in file order, through the accessors */
		for (size_t i = 0;; i++) {
			const struct policy_rule *r = policy_rule_at(p, i);
			if (!r)
				break;
			rule_accessors(p, r);
		}
		sink += policy_needs(p);
		sink += policy_scan_interval(p);
		static const char *const here[] = {"london", "paris", "nowhere"};
		for (size_t s = 0; s < 3; s++)
			for (size_t i = 0; i < NFILES; i++) {
				struct policy_decision dec;
				const struct policy_rule *xr = NULL;
				policy_eval(p, here[s], &files[i], NOW, &dec);
				int ex = policy_excluded(p, &files[i], NOW, &xr);
				if ((ex != 0) != (dec.exclude != NULL) || (ex && xr != dec.exclude))
					abort(); /* eval and excluded disagree */
				rule_accessors(p, dec.exclude);
				for (int a = 0; a < POLICY_NACTIONS; a++) {
					if (dec.exclude && dec.rule[a])
						abort(); /* excluded files match no rule */
					rule_accessors(p, dec.rule[a]);
					rule_accessors(p, dec.no[a]);
				}
				if (s < 2 && i < 4)
					policy_explain(p, here[s], &files[i], NOW, line_cb, NULL);
			}
		static const char *const dests[] = {"store", "london", "paris", "nowhere"};
		static const int minutes[] = {0, 479, 480, 1079, 1080, 1439};
		for (size_t k = 0; k < 4; k++)
			for (int wd = 0; wd < 7; wd += 3)
				for (size_t m = 0; m < 6; m++)
					sink += (size_t)policy_rate(p, dests[k], wd, minutes[m]);
		policy_free(p);
		policy_diags_free(&d);
	}
	return 0;
}

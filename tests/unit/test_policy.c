/* The policy language: the fixture corpus (bad files with their expected errors, good
 * files with their expected warnings), then evaluation of every condition kind at its
 * boundaries, first-match semantics, schedules, explain and dump. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>

#include <cmocka.h>

#include "tests/unit/slurp.h"

#include "policy/policy.h"

#define DAY 86400
#define NOW 2000000000

static int resolve(void *arg, int kind, const char *name, uint32_t *id)
{
	(void)arg;
	if (kind == POLICY_USER && strcmp(name, "alice") == 0) {
		*id = 1000;
		return 0;
	}
	if (kind == POLICY_GROUP && strcmp(name, "staff") == 0) {
		*id = 50;
		return 0;
	}
	return -1;
}

static const char *const sites[] = {"paris", "lyon", "tokyo"};
static const struct policy_env env = {sites, 3, resolve, NULL};

static void print_diags(const char *file, const struct policy_diags *d)
{
	char out[600];

	for (size_t i = 0; i < d->n; i++)
		fprintf(stderr, "%s\n", policy_diag_format(NULL, file, &d->v[i], out, sizeof(out)));
}

/* Compiles text that must compile without errors (and, if strict, without warnings). */
static struct policy *compile_w(const char *text, int strict)
{
	struct policy_diags d;
	struct policy *p = policy_compile("t.pol", text, strlen(text), &env, &d);

	if (p == NULL || (strict && d.n != 0))
		print_diags("t.pol", &d);
	assert_non_null(p);
	if (strict)
		assert_int_equal(d.n, 0);
	policy_diags_free(&d);
	return p;
}

static struct policy *compile(const char *text)
{
	return compile_w(text, 1);
}

/* The first error's message (or "" if it compiled), into a static buffer. */
static const char *first_error(const char *text, const struct policy_env *e)
{
	static char msg[600];
	struct policy_diags d;
	struct policy *p = policy_compile("t.pol", text, strlen(text), e, &d);

	msg[0] = '\0';
	for (size_t i = 0; i < d.n; i++)
		if (d.v[i].severity == POLICY_ERROR) {
			policy_diag_format(NULL, "t.pol", &d.v[i], msg, sizeof(msg));
			break;
		}
	if (msg[0])
		assert_null(p);
	policy_free(p);
	policy_diags_free(&d);
	return msg;
}

static struct policy_file file(const char *path)
{
	struct policy_file f = {
	    .volume = "home",
	    .path = path,
	    .size = 100,
	    .atime = NOW - DAY,
	    .mtime = NOW - DAY,
	    .ctime = NOW - DAY,
	    .uid = 1000,
	    .gid = 50,
	    .state = POLICY_RESIDENT,
	    .owner = "paris",
	};

	return f;
}

/* Does "archive where COND" decide archive for f? */
static int holds(const char *cond, const struct policy_file *f)
{
	char text[1024];
	struct policy_decision d;

	snprintf(text, sizeof(text), "archive where %s\n", cond);
	struct policy *p = compile_w(text, 0); /* some are constant on purpose */

	policy_eval(p, "paris", f, NOW, &d);
	policy_free(p);
	return d.rule[POLICY_ARCHIVE] != NULL;
}

static int holds_path(const char *cond, const char *path)
{
	struct policy_file f = file(path);

	return holds(cond, &f);
}

/* ---- fixtures ---- */

static const char *fixtures(char *out, size_t cap, const char *sub)
{
	const char *top = getenv("top_srcdir");

	snprintf(out, cap, "%s/tests/fixtures/policy/%s", top && *top ? top : ".", sub);
	return out;
}

/* Every "# TAG: LINE:COL: ...SUBSTRING" line of the file must match one diag of sev, and
 * there are exactly as many such diags as lines. Returns how many. */
static size_t check_expects(const char *path, const char *text, const char *tag, int sev,
			    const struct policy_diags *d)
{
	size_t want = 0, have = 0, taglen = strlen(tag);
	const char *s = text;

	for (size_t i = 0; i < d->n; i++)
		have += d->v[i].severity == sev;
	while ((s = strstr(s, tag)) != NULL) {
		int line, col, off = 0;
		char sub[400];

		s += taglen;
		if (sscanf(s, " %d:%d:%n", &line, &col, &off) < 2 || off == 0) {
			fprintf(stderr, "%s: malformed %s line\n", path, tag);
			fail();
		}
		const char *m = s + off, *e = strchr(m, '\n');
		size_t n = e ? (size_t)(e - m) : strlen(m);

		while (n && *m == ' ')
			m++, n--;
		snprintf(sub, sizeof(sub), "%.*s", (int)n, m);
		/* "error: X" / bare X: the severity word is part of the formatted line only */
		const char *needle = strncmp(sub, "error: ", 7) == 0 ? sub + 7 : sub;
		int found = 0;

		for (size_t i = 0; i < d->n && !found; i++)
			found = d->v[i].severity == sev && d->v[i].line == line &&
				d->v[i].col == col && strstr(d->v[i].msg, needle) != NULL;
		if (!found) {
			fprintf(stderr, "%s: missing %d:%d: %s\n", path, line, col, needle);
			print_diags(path, d);
			fail();
		}
		want++;
	}
	if (want != have) {
		fprintf(stderr, "%s: %zu expected, %zu reported\n", path, want, have);
		print_diags(path, d);
		fail();
	}
	return want;
}

typedef void (*fixture_fn)(const char *path, const char *text, size_t len);

static size_t each_fixture(const char *sub, fixture_fn fn)
{
	char dir[4096], path[8192];
	DIR *dp = opendir(fixtures(dir, sizeof(dir), sub));
	struct dirent *de;
	size_t n = 0;

	assert_non_null(dp);
	while ((de = readdir(dp)) != NULL) {
		size_t l = strlen(de->d_name), len;

		if (l < 5 || strcmp(de->d_name + l - 4, ".pol") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		char *text = slurp(path, &len);

		fn(path, text, len);
		free(text);
		n++;
	}
	closedir(dp);
	return n;
}

static void one_bad(const char *path, const char *text, size_t len)
{
	struct policy_diags d;
	struct policy *p = policy_compile(path, text, len, &env, &d);

	assert_null(p);
	assert_true(check_expects(path, text, "# expect:", POLICY_ERROR, &d) >= 1);
	policy_diags_free(&d);
}

static void test_bad_fixtures(void **state)
{
	(void)state;
	assert_true(each_fixture("bad", one_bad) >= 30);
}

static void one_good(const char *path, const char *text, size_t len)
{
	struct policy_diags d;
	struct policy *p = policy_compile(path, text, len, &env, &d);

	if (p == NULL)
		print_diags(path, &d);
	assert_non_null(p);
	assert_int_equal(d.errors, 0);
	check_expects(path, text, "# expect-warning:", POLICY_WARNING, &d);
	policy_free(p);
	policy_diags_free(&d);
}

static void test_good_fixtures(void **state)
{
	(void)state;
	assert_true(each_fixture("good", one_good) >= 3);
}

/* ---- dump ---- */

static char *dump(const struct policy *p)
{
	char *buf = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&buf, &n);

	assert_non_null(f);
	policy_dump(p, f);
	fclose(f);
	return buf;
}

static void test_dump(void **state)
{
	char path[4096], *text, *out;
	size_t len;
	struct policy_diags d;

	(void)state;
	text = slurp(fixtures(path, sizeof(path), "good/full.pol"), &len);
	struct policy *p = policy_compile(path, text, len, &env, &d);

	assert_non_null(p);
	out = dump(p);
	assert_non_null(strstr(out, "line 2: exclude where (name ~ { \"~*\", \"*.tmp\", \"*.bak\", "
				    "\"Thumbs.db\" })\n"));
	assert_non_null(strstr(out, "line 3: exclude where (path ~ \"build/**\")\n"));
	assert_non_null(strstr(out, "line 6: class big where (size >= 1073741824)\n"));
	assert_non_null(strstr(out, "line 7: class cold where ((mtime > 7776000s) and (atime > "
				    "2592000s))\n"));
	assert_non_null(strstr(out, "line 12: archive at paris where ((path ~ \"proj/**\") and "
				    "not (dirty))\n"));
	assert_non_null(strstr(out, "line 13: no archive where (noarchive)\n"));
	assert_non_null(strstr(out, "line 16: release watermark 90% 70% order atime, size where "
				    "((class cold) and (state = archived))\n"));
	assert_non_null(strstr(out, "line 23: place at paris where (path ~ \"paris/**\")\n"));
	assert_non_null(strstr(out, "line 25: copies 2 where (class big)\n"));
	assert_non_null(
	    strstr(out, "line 28: limit store 10000000B/s during mon-fri 08:00-18:00\n"));
	assert_non_null(strstr(out, "line 30: limit peer lyon 10000000B/s during daily "
				    "22:00-06:00\n"));
	assert_non_null(strstr(out, "line 34: scan every 900s\n"));
	free(out);
	policy_free(p);
	policy_diags_free(&d);
	free(text);

	p = compile("release watermark 90% 70% order atime, size where mtime > 30d\n");
	out = dump(p);
	assert_string_equal(out,
			    "line 1: release watermark 90% 70% order atime, size where (mtime > "
			    "2592000s)\n");
	free(out);
	policy_free(p);
}

/* ---- conditions ---- */

static void test_size_boundaries(void **state)
{
	static const struct {
		const char *op;
		int below, at, above;
	} c[] = {{"<", 1, 0, 0},  {"<=", 1, 1, 0}, {">", 0, 0, 1},
		 {">=", 0, 1, 1}, {"=", 0, 1, 0},  {"!=", 1, 0, 1}};
	struct policy_file f = file("a");
	char cond[64];

	(void)state;
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		snprintf(cond, sizeof(cond), "size %s 1M", c[i].op);
		f.size = 1048575;
		assert_int_equal(holds(cond, &f), c[i].below);
		f.size = 1048576;
		assert_int_equal(holds(cond, &f), c[i].at);
		f.size = 1048577;
		assert_int_equal(holds(cond, &f), c[i].above);
	}
}

static void test_size_units(void **state)
{
	static const struct {
		const char *v;
		uint64_t bytes;
	} u[] = {{"10", 10},
		 {"10B", 10},
		 {"1K", 1024},
		 {"1KiB", 1024},
		 {"1KB", 1000},
		 {"1.5K", 1536},
		 {"2M", 2ull << 20},
		 {"2MiB", 2ull << 20},
		 {"2MB", 2000000},
		 {"3G", 3ull << 30},
		 {"3GB", 3000000000ull},
		 {"1T", 1ull << 40},
		 {"1TiB", 1ull << 40},
		 {"1TB", 1000000000000ull}};
	struct policy_file f = file("a");
	char cond[64];

	(void)state;
	for (size_t i = 0; i < sizeof(u) / sizeof(u[0]); i++) {
		snprintf(cond, sizeof(cond), "size = %s", u[i].v);
		f.size = u[i].bytes;
		assert_true(holds(cond, &f));
		f.size = u[i].bytes + 1;
		assert_false(holds(cond, &f));
	}
	assert_non_null(
	    strstr(first_error("archive where size > 99999999999999999999T\n", &env), "too large"));
}

static void test_age_boundaries(void **state)
{
	struct policy_file f = file("a");

	(void)state;
	f.mtime = NOW - 30 * DAY;
	assert_false(holds("mtime > 30d", &f));
	assert_true(holds("mtime >= 30d", &f));
	assert_true(holds("mtime = 30d", &f));
	f.mtime = NOW - 30 * DAY - 1;
	assert_true(holds("mtime > 30d", &f));
	f.mtime = NOW - 30 * DAY + 1;
	assert_false(holds("mtime > 30d", &f));
	assert_true(holds("mtime < 30d", &f));
	/* a time in the future is age 0 */
	f.mtime = NOW + 1000;
	assert_true(holds("mtime = 0s", &f));
	assert_true(holds("mtime < 1s", &f));
	assert_false(holds("mtime > 0s", &f));
	/* each field is its own */
	f = file("a");
	f.atime = NOW - 2 * 3600;
	f.ctime = NOW - 90;
	assert_true(holds("atime = 2h", &f));
	assert_true(holds("atime = 120min", &f));
	assert_true(holds("ctime = 90s", &f));
	assert_true(holds("ctime > 1min and ctime < 2min", &f));
	f.mtime = NOW - 14 * DAY;
	assert_true(holds("mtime = 2w", &f));
	f.mtime = NOW - 365 * DAY;
	assert_true(holds("mtime = 1y", &f));
	assert_non_null(strstr(first_error("archive where mtime > 30\n", &env),
			       "1:23: error: expected a unit"));
}

static void test_globs(void **state)
{
	(void)state;
	/* ** at the start, as a whole directory run */
	assert_true(holds_path("path ~ \"**/*.c\"", "a.c"));
	assert_true(holds_path("path ~ \"**/*.c\"", "x/y/a.c"));
	assert_false(holds_path("path ~ \"**/*.c\"", "x/y/a.h"));
	assert_true(holds_path("path ~ \"**/*.c\"", "x/y.c/a.c"));
	assert_false(holds_path("path ~ \"**/*.c\"", "x/y.c/a"));
	assert_true(holds_path("path ~ \"**/[ab].c\"", "x/b.c"));
	/* a directory anywhere */
	assert_true(holds_path("path ~ \"**/build/**\"", "build/a"));
	assert_true(holds_path("path ~ \"**/build/**\"", "x/y/build/a/b"));
	assert_false(holds_path("path ~ \"**/build/**\"", "x/rebuild/a"));
	assert_false(holds_path("path ~ \"**/build/**\"", "x/build"));
	assert_true(holds_path("path ~ \"**/a/b/**\"", "x/a/b/c"));
	/* literal ends before the automaton */
	assert_true(holds_path("path ~ \"projects/*/shared/**\"", "projects/p/shared/x/y"));
	assert_false(holds_path("path ~ \"projects/*/shared/**\"", "projects/p/q/shared/x"));
	assert_false(holds_path("path ~ \"projects/*/shared/**\"", "other/p/shared/x"));
	assert_true(holds_path("path ~ \"a*?b\"", "axb"));
	assert_false(holds_path("path ~ \"a*?b\"", "ab"));
	assert_true(holds_path("path ~ \"ab*ab\"", "abab"));
	assert_false(holds_path("path ~ \"ab*ab\"", "aba"));
	/* in the middle */
	assert_true(holds_path("path ~ \"a/**/b\"", "a/b"));
	assert_true(holds_path("path ~ \"a/**/b\"", "a/x/y/b"));
	assert_false(holds_path("path ~ \"a/**/b\"", "a/xb"));
	assert_false(holds_path("path ~ \"a/**/b\"", "ab"));
	/* at the end */
	assert_true(holds_path("path ~ \"proj/**\"", "proj/a"));
	assert_true(holds_path("path ~ \"proj/**\"", "proj/a/b/c"));
	assert_false(holds_path("path ~ \"proj/**\"", "proj"));
	assert_false(holds_path("path ~ \"proj/**\"", "xproj/a"));
	assert_true(holds_path("path ~ \"**\"", "any/thing"));
	assert_true(holds_path("path ~ \"**.c\"", "x/y.c"));
	/* * and ? do not cross '/' */
	assert_false(holds_path("path ~ \"*.c\"", "x/a.c"));
	assert_true(holds_path("path ~ \"*.c\"", "a.c"));
	assert_true(holds_path("path ~ \"x/*.c\"", "x/a.c"));
	assert_false(holds_path("path ~ \"x/*\"", "x/a/b"));
	assert_false(holds_path("path ~ \"a?b\"", "a/b"));
	assert_true(holds_path("path ~ \"a?b\"", "axb"));
	assert_true(holds_path("path ~ \"a*b*c\"", "aXXbYYc"));
	assert_false(holds_path("path ~ \"a*b*c\"", "aXX/bYYc"));
	assert_true(holds_path("path ~ \"*/b\"", "a/b"));
	assert_false(holds_path("path ~ \"*/b\"", "a/c/b"));
	/* name is the last component */
	assert_true(holds_path("name ~ \"*.c\"", "x/y/a.c"));
	assert_true(holds_path("name = \"a.c\"", "x/y/a.c"));
	assert_false(holds_path("path = \"a.c\"", "x/y/a.c"));
	assert_true(holds_path("path = \"x/y/a.c\"", "x/y/a.c"));
	assert_true(holds_path("name != \"b.c\"", "x/y/a.c"));
	assert_true(holds_path("name !~ \"*.h\"", "x/y/a.c"));
	/* sets */
	assert_true(holds_path("name ~ \"[abc].txt\"", "b.txt"));
	assert_false(holds_path("name ~ \"[abc].txt\"", "d.txt"));
	assert_true(holds_path("name ~ \"[a-z]1\"", "q1"));
	assert_false(holds_path("name ~ \"[a-z]1\"", "Q1"));
	assert_true(holds_path("name ~ \"[!a]x\"", "bx"));
	assert_false(holds_path("name ~ \"[!a]x\"", "ax"));
	assert_false(holds_path("path ~ \"a[!x]b\"", "a/b"));
	/* escapes: \\* in the string is \* in the glob, a literal star */
	assert_true(holds_path("name ~ \"a\\\\*\"", "a*"));
	assert_false(holds_path("name ~ \"a\\\\*\"", "ab"));
	assert_true(holds_path("name ~ \"\\\\?\"", "?"));
	assert_false(holds_path("name ~ \"\\\\?\"", "x"));
	/* literal fast paths */
	assert_true(holds_path("name ~ \"~*\"", "~lock"));
	assert_false(holds_path("name ~ \"~*\"", "a~"));
	assert_true(holds_path("name ~ \"Thumbs.db\"", "p/Thumbs.db"));
	assert_false(holds_path("name ~ \"*.tmp\"", "tmp"));
	/* lists: any */
	assert_true(holds_path("name ~ { \"*.a\", \"*.b\" }", "x.b"));
	assert_false(holds_path("name ~ { \"*.a\" \"*.b\" }", "x.c"));
	assert_non_null(
	    strstr(first_error("pin where name ~ \"ab[cd\"\n", &env), "1:21: error: unclosed"));
}

static int xcalls;

static long xattr_cb(void *arg, const char *name, char *buf, size_t cap)
{
	const char *v;

	(void)arg;
	xcalls++;
	if (strcmp(name, "user.tier") == 0)
		v = "gold";
	else if (strcmp(name, "user.empty") == 0)
		v = "";
	else
		return -1;
	snprintf(buf, cap, "%s", v);
	return (long)strlen(v);
}

static void test_xattr(void **state)
{
	struct policy_file f = file("a");
	struct policy_decision d;

	(void)state;
	f.xattr = xattr_cb;
	assert_true(holds("xattr \"user.tier\" exists", &f));
	assert_true(holds("xattr \"user.empty\" exists", &f));
	assert_false(holds("xattr \"user.none\" exists", &f));
	assert_true(holds("xattr \"user.tier\" = \"gold\"", &f));
	assert_false(holds("xattr \"user.tier\" = \"gol\"", &f));
	assert_true(holds("xattr \"user.tier\" != \"silver\"", &f));
	assert_true(holds("xattr \"user.tier\" ~ \"g*\"", &f));
	assert_false(holds("xattr \"user.none\" ~ \"*\"", &f));
	assert_false(holds("xattr \"user.none\" = \"\"", &f));
	f.xattr = NULL;
	assert_false(holds("xattr \"user.tier\" exists", &f));

	/* read lazily: at most once per name per evaluation, never when not reached */
	struct policy *p = compile("class gold where xattr \"user.tier\" = \"gold\"\n"
				   "archive where size > 1G and xattr \"user.tier\" exists\n"
				   "pin where class gold\n"
				   "prefetch where class gold or xattr \"user.tier\" ~ \"s*\"\n"
				   "release where xattr \"user.tier\" != \"x\"\n");

	f.xattr = xattr_cb;
	xcalls = 0;
	policy_eval(p, "paris", &f, NOW, &d);
	assert_int_equal(xcalls, 1);
	assert_null(d.rule[POLICY_ARCHIVE]);
	assert_non_null(d.rule[POLICY_PIN]);
	assert_non_null(d.rule[POLICY_PREFETCH]);
	assert_non_null(d.rule[POLICY_RELEASE]);
	assert_true(policy_needs(p) & POLICY_NEEDS_XATTR);
	policy_free(p);

	p = compile("archive where size > 1G and xattr \"user.tier\" exists\n");
	xcalls = 0;
	policy_eval(p, "paris", &f, NOW, &d);
	assert_int_equal(xcalls, 0);
	policy_free(p);
}

static void test_owner_group(void **state)
{
	struct policy_file f = file("a");

	(void)state;
	assert_true(holds("owner = alice", &f));
	assert_true(holds("owner = 1000", &f));
	assert_false(holds("owner != alice", &f));
	assert_true(holds("owner != 0", &f));
	assert_true(holds("group = staff", &f));
	assert_true(holds("group = \"staff\"", &f));
	assert_false(holds("group != 50", &f));
	f.uid = 0;
	assert_false(holds("owner = alice", &f));

	struct policy_env none = {0};

	assert_non_null(strstr(first_error("archive where owner = alice\n", &none),
			       "1:23: error: cannot resolve user name \"alice\": no resolver"));
	assert_non_null(strstr(first_error("archive where group = staff\n", &none), "numeric gid"));
	assert_string_equal(first_error("archive where owner = 1000\n", &none), "");
	assert_non_null(
	    strstr(first_error("archive where owner = bob\n", &env), "unknown user \"bob\""));
	assert_non_null(
	    strstr(first_error("archive where owner = 4294967296\n", &env), "invalid user id"));
	/* without a site list any site name is taken as written */
	assert_string_equal(first_error("archive at rome where site = rome\n", &none), "");
	assert_non_null(strstr(first_error("archive at rome\n", &env), "unknown site \"rome\""));
}

static void test_state_flags_site_volume(void **state)
{
	struct policy_file f = file("a");

	(void)state;
	assert_true(holds("state = resident", &f));
	assert_false(holds("state = stub", &f));
	assert_true(holds("state != archived", &f));
	f.state = POLICY_STUB;
	assert_true(holds("state = stub", &f));
	f.state = POLICY_ARCHIVED;
	assert_true(holds("state = archived", &f));
	assert_false(holds("pinned", &f));
	assert_false(holds("dirty or noarchive", &f));
	f.flags = POLICY_F_PINNED;
	assert_true(holds("pinned", &f));
	assert_true(holds("pinned and not dirty", &f));
	f.flags = POLICY_F_DIRTY | POLICY_F_NOARCHIVE;
	assert_true(holds("dirty and noarchive and not pinned", &f));
	assert_true(holds("site = paris", &f));
	assert_false(holds("site = lyon", &f));
	assert_true(holds("site != lyon", &f));
	f.owner = NULL;
	assert_false(holds("site = paris", &f));
	assert_true(holds("volume = \"home\"", &f));
	assert_true(holds("volume = home", &f));
	assert_false(holds("volume != \"home\"", &f));
	assert_true(holds("volume != \"work\"", &f));
	assert_true(holds("true", &f));
	assert_true(holds("not false", &f));
	/* precedence: not > and > or */
	assert_true(holds("true or false and false", &f));
	assert_false(holds("(true or false) and false", &f));
	assert_true(holds("not false and true", &f));
}

/* ---- semantics ---- */

static void test_first_match(void **state)
{
	struct policy *p = compile("class big where size > 1M\n"
				   "no archive at lyon where class big\n"
				   "archive at paris, tokyo where class big\n"
				   "archive where size > 10\n"
				   "pin at lyon\n"
				   "no prefetch where name ~ \"*.iso\"\n"
				   "prefetch where class big\n"
				   "place at tokyo where path ~ \"t/**\"\n"
				   "copies 3 where class big\n"
				   "copies 2\n");
	struct policy_file f = file("x/a.iso");
	struct policy_decision d;

	(void)state;
	f.size = 2 << 20;
	policy_eval(p, "paris", &f, NOW, &d);
	assert_null(d.exclude);
	assert_int_equal(policy_rule_line(d.rule[POLICY_ARCHIVE]), 3);
	assert_int_equal(policy_rule_action(d.rule[POLICY_ARCHIVE]), POLICY_ARCHIVE);
	assert_null(d.rule[POLICY_PIN]);
	assert_null(d.rule[POLICY_PREFETCH]);
	assert_int_equal(policy_rule_line(d.no[POLICY_PREFETCH]), 6);
	assert_null(d.rule[POLICY_PLACE]);
	assert_int_equal(policy_rule_copies(d.rule[POLICY_COPIES]), 3);
	/* at lyon the no rule comes first */
	policy_eval(p, "lyon", &f, NOW, &d);
	assert_null(d.rule[POLICY_ARCHIVE]);
	assert_int_equal(policy_rule_line(d.no[POLICY_ARCHIVE]), 2);
	assert_int_equal(policy_rule_line(d.rule[POLICY_PIN]), 5);
	/* elsewhere the unconditional-site rule */
	f.size = 100;
	f.path = "t/b";
	policy_eval(p, "tokyo", &f, NOW, &d);
	assert_int_equal(policy_rule_line(d.rule[POLICY_ARCHIVE]), 4);
	assert_int_equal(policy_rule_line(d.rule[POLICY_PREFETCH]), 0);
	assert_string_equal(policy_rule_site(d.rule[POLICY_PLACE]), "tokyo");
	assert_int_equal(policy_rule_copies(d.rule[POLICY_COPIES]), 2);
	assert_null(policy_rule_site(d.rule[POLICY_COPIES]));
	assert_int_equal(policy_rule_copies(d.rule[POLICY_PLACE]), 0);
	/* a place rule reads the same at every site: its at names the owner */
	policy_eval(p, "paris", &f, NOW, &d);
	assert_non_null(d.rule[POLICY_PLACE]);
	assert_string_equal(policy_rule_site(d.rule[POLICY_PLACE]), "tokyo");
	policy_eval(p, NULL, &f, NOW, &d);
	assert_string_equal(policy_rule_site(d.rule[POLICY_PLACE]), "tokyo");
	/* no site: only rules without an at list (and place rules) */
	policy_eval(p, NULL, &f, NOW, &d);
	assert_int_equal(policy_rule_line(d.rule[POLICY_ARCHIVE]), 4);
	assert_null(d.rule[POLICY_PIN]);
	assert_string_equal(policy_rule_text(d.rule[POLICY_ARCHIVE]), "archive where (size > 10)");
	/* every rule in file order, classes not included */
	assert_ptr_equal(policy_rule_at(p, 2), d.rule[POLICY_ARCHIVE]);
	assert_int_equal(policy_rule_line(policy_rule_at(p, 0)), 2);
	assert_int_equal(policy_rule_line(policy_rule_at(p, 8)), 10);
	assert_null(policy_rule_at(p, 9));
	policy_free(p);
}

static void test_exclude(void **state)
{
	struct policy *p = compile("exclude \"~*\", \"*.tmp\", \"cache/**\"\n"
				   "exclude where size > 1T\n"
				   "archive\n"
				   "pin\n");
	struct policy_file f = file("dir/~lock");
	struct policy_decision d;
	const struct policy_rule *r;

	(void)state;
	policy_eval(p, "paris", &f, NOW, &d);
	assert_int_equal(policy_rule_line(d.exclude), 1);
	assert_int_equal(policy_rule_action(d.exclude), -1);
	for (int a = 0; a < POLICY_NACTIONS; a++) {
		assert_null(d.rule[a]);
		assert_null(d.no[a]);
	}
	assert_true(policy_excluded(p, &f, NOW, &r));
	assert_int_equal(policy_rule_line(r), 1);
	f.path = "cache/x/y";
	assert_true(policy_excluded(p, &f, NOW, NULL));
	f.path = "x/cache/y"; /* the path glob is anchored at the root */
	assert_false(policy_excluded(p, &f, NOW, &r));
	assert_null(r);
	f.size = (1ull << 40) + 1;
	assert_true(policy_excluded(p, &f, NOW, &r));
	assert_int_equal(policy_rule_line(r), 2);
	f.size = 1;
	policy_eval(p, "paris", &f, NOW, &d);
	assert_null(d.exclude);
	assert_non_null(d.rule[POLICY_ARCHIVE]);
	assert_non_null(d.rule[POLICY_PIN]);
	policy_free(p);
}

static void test_needs(void **state)
{
	struct policy *p;

	(void)state;
	p = compile("archive where mtime > 1d and size > 1\n");
	assert_int_equal(policy_needs(p), 0);
	policy_free(p);
	p = compile("archive where atime > 1d\npin where ctime > 1d\n");
	assert_int_equal(policy_needs(p), POLICY_NEEDS_ATIME | POLICY_NEEDS_CTIME);
	policy_free(p);
	p = compile("archive where owner = 1 or xattr \"a\" exists\n");
	assert_int_equal(policy_needs(p), POLICY_NEEDS_OWNER | POLICY_NEEDS_XATTR);
	policy_free(p);
	p = compile("release order size\n");
	assert_true(policy_needs(p) & POLICY_NEEDS_ATIME); /* conservative: release orders */
	policy_free(p);
}

static void test_release_order(void **state)
{
	struct policy *p = compile("release at lyon watermark 90% 70% order mtime, size\n"
				   "release at paris where size > 1\n"
				   "archive\n");
	struct policy_file a = file("a"), b = file("b");
	struct policy_decision d;
	unsigned hi, lo;
	int keys[3];

	(void)state;
	policy_eval(p, "lyon", &a, NOW, &d);
	const struct policy_rule *r = d.rule[POLICY_RELEASE];

	policy_rule_watermarks(r, &hi, &lo);
	assert_int_equal(hi, 90);
	assert_int_equal(lo, 70);
	assert_int_equal(policy_rule_order(r, keys), 2);
	assert_int_equal(keys[0], POLICY_ORDER_MTIME);
	assert_int_equal(keys[1], POLICY_ORDER_SIZE);
	a.mtime = 10;
	b.mtime = 20;
	assert_true(policy_order_cmp(r, &a, &b) < 0);
	assert_true(policy_order_cmp(r, &b, &a) > 0);
	b.mtime = 10; /* tie: largest first */
	a.size = 5;
	b.size = 50;
	assert_true(policy_order_cmp(r, &b, &a) < 0);
	b.size = 5;
	assert_int_equal(policy_order_cmp(r, &a, &b), 0);
	a.atime = 1; /* atime is not a key of this rule */
	assert_int_equal(policy_order_cmp(r, &a, &b), 0);

	/* the default: oldest atime first, no watermarks */
	policy_eval(p, "paris", &a, NOW, &d);
	r = d.rule[POLICY_RELEASE];
	policy_rule_watermarks(r, &hi, &lo);
	assert_int_equal(hi, 0);
	assert_int_equal(lo, 0);
	assert_int_equal(policy_rule_order(r, keys), 1);
	assert_int_equal(keys[0], POLICY_ORDER_ATIME);
	a.atime = 100;
	b.atime = 50;
	assert_true(policy_order_cmp(r, &b, &a) < 0);
	policy_free(p);
	assert_non_null(
	    strstr(first_error("release watermark 70% 70%\n", &env), "must be below high"));
}

/* ---- schedules ---- */

static void test_schedule(void **state)
{
	struct policy *p = compile("limit store 10MB/s during mon-fri 09:00-17:00\n"
				   "limit store 1KiB/s during sat 00:15-01:00\n"
				   "limit store 8Mbit/s\n"
				   "window peer lyon fri 22:00-02:00\n"
				   "window peer tokyo sun 23:00-01:00\n"
				   "window peers weekends\n"
				   "limit peers 2MiB/s during wed,thu\n"
				   "limit peer paris none during mon\n");

	(void)state;
	/* 15-minute edges */
	assert_int_equal(policy_rate(p, "store", 0, 8 * 60 + 59), 1000000);
	assert_int_equal(policy_rate(p, "store", 0, 9 * 60), 10000000);
	assert_int_equal(policy_rate(p, "store", 4, 16 * 60 + 59), 10000000);
	assert_int_equal(policy_rate(p, "store", 4, 17 * 60), 1000000);
	assert_int_equal(policy_rate(p, "store", 5, 14), 1000000);
	assert_int_equal(policy_rate(p, "store", 5, 15), 1024);
	assert_int_equal(policy_rate(p, "store", 5, 59), 1024);
	assert_int_equal(policy_rate(p, "store", 5, 60), 1000000);
	assert_int_equal(policy_rate(p, "store", 6, 10 * 60), 1000000);
	/* a window past midnight, into the next day */
	assert_int_equal(policy_rate(p, "lyon", 4, 21 * 60 + 59), 0);
	assert_int_equal(policy_rate(p, "lyon", 4, 22 * 60), POLICY_RATE_UNLIMITED);
	assert_int_equal(policy_rate(p, "lyon", 5, 60 + 59), POLICY_RATE_UNLIMITED);
	assert_int_equal(policy_rate(p, "lyon", 5, 12 * 60), POLICY_RATE_UNLIMITED); /* peers */
	assert_int_equal(policy_rate(p, "lyon", 3, 2 * 60), 0);
	/* Sunday into Monday */
	assert_int_equal(policy_rate(p, "tokyo", 6, 22 * 60 + 59), POLICY_RATE_UNLIMITED);
	assert_int_equal(policy_rate(p, "tokyo", 6, 23 * 60 + 30), POLICY_RATE_UNLIMITED);
	assert_int_equal(policy_rate(p, "tokyo", 0, 30), POLICY_RATE_UNLIMITED);
	assert_int_equal(policy_rate(p, "tokyo", 0, 60), 0);
	assert_int_equal(policy_rate(p, "tokyo", 2, 60), 0);
	/* `window peers` applies to every peer; the limit needs the window open too */
	assert_int_equal(policy_rate(p, "paris", 2, 600), 0);
	assert_int_equal(policy_rate(p, "paris", 5, 600), POLICY_RATE_UNLIMITED);
	/* limits without windows: the first whose schedule covers the block */
	policy_free(p);
	p = compile("limit peers 2MiB/s during wed,thu\n"
		    "limit peer paris none during mon\n"
		    "limit peer paris 1Gbit/s\n"
		    "limit peer paris 5GB/s\n"
		    "limit store unlimited during daily 00:00-06:00\n"
		    "limit store 0\n"
		    "window store daily 20:00-24:00\n"
		    "window store daily 00:00-08:00\n");
	assert_int_equal(policy_rate(p, "paris", 2, 0), 2 << 20);
	assert_int_equal(policy_rate(p, "lyon", 3, 1439), 2 << 20);
	assert_int_equal(policy_rate(p, "lyon", 4, 0), POLICY_RATE_UNLIMITED);
	assert_int_equal(policy_rate(p, "paris", 0, 700), 0);
	assert_int_equal(policy_rate(p, "paris", 1, 700), 125000000);
	assert_int_equal(policy_rate(p, "store", 1, 12 * 60), 0);		     /* shut */
	assert_int_equal(policy_rate(p, "store", 1, 21 * 60), 0);		     /* limit 0 */
	assert_int_equal(policy_rate(p, "store", 1, 3 * 60), POLICY_RATE_UNLIMITED); /* both */
	assert_int_equal(policy_rate(p, "store", 1, 23 * 60 + 59), 0);
	assert_int_equal(policy_scan_interval(p), 600);
	policy_free(p);

	p = compile("scan every 5min\n");
	assert_int_equal(policy_scan_interval(p), 300);
	assert_int_equal(policy_rate(p, "store", 0, 0), POLICY_RATE_UNLIMITED);
	policy_free(p);
	assert_non_null(strstr(first_error("window store mon 09:00-09:14\n", &env),
			       "1:24: error: time 09:14 is not on a 15-minute boundary"));
}

/* ---- explain ---- */

struct lines {
	char buf[8192];
	size_t len;
};

static void collect(void *arg, const char *text)
{
	struct lines *l = arg;

	l->len += (size_t)snprintf(l->buf + l->len, sizeof(l->buf) - l->len, "%s\n", text);
	assert_true(l->len < sizeof(l->buf));
}

static void test_explain(void **state)
{
	struct policy *p = compile("exclude \"*.tmp\"\n"
				   "class big where size > 1G\n"
				   "archive where mtime > 30d and size >= 1M\n"
				   "archive where class big\n"
				   "no pin where name ~ \"*.dat\"\n"
				   "pin at lyon\n");
	struct policy_file f = file("d/x.dat");
	struct lines l = {.len = 0};

	(void)state;
	f.mtime = NOW - 45 * DAY;
	f.size = 10 << 20;
	policy_explain(p, "paris", &f, NOW, collect, &l);
	assert_non_null(strstr(l.buf, "rule 1 (line 1): exclude where (name ~ \"*.tmp\")\n"
				      "  name \"x.dat\" vs name ~ \"*.tmp\": false\n"
				      "  -> no match\n"));
	assert_non_null(strstr(l.buf, "rule 2 (line 3): archive where ((mtime > 2592000s) and "
				      "(size >= 1048576))\n"));
	assert_non_null(strstr(l.buf, "  mtime age 3888000s (45d) > 2592000s (30d): true\n"));
	assert_non_null(strstr(l.buf, "  size 10485760 (10.0 MiB) >= 1048576 (1.0 MiB): true\n"
				      "  -> decides archive\n"));
	assert_non_null(
	    strstr(l.buf, "  size 10485760 (10.0 MiB) > 1073741824 (1.0 GiB): false\n"));
	assert_non_null(strstr(l.buf, "  -> decides no pin\n"));
	assert_null(strstr(l.buf, "pin at lyon")); /* not at this site */
	assert_non_null(strstr(l.buf, "exclude: none\narchive: rule at line 3\nrelease: none\n"
				      "pin: no (rule at line 5)\nprefetch: none\n"));
	l.len = 0;
	f.path = "a.tmp";
	policy_explain(p, "paris", &f, NOW, collect, &l);
	assert_non_null(strstr(l.buf, "  -> excludes the file\n"));
	assert_non_null(strstr(l.buf, "  -> matches, but the file is excluded (line 1)\n"));
	assert_non_null(strstr(l.buf, "exclude: line 1\narchive: none\n"));
	policy_free(p);
}

/* ---- robustness ---- */

static void test_robust(void **state)
{
	char path[4096], *text;
	size_t len;
	struct policy_diags d;
	struct policy *p;

	(void)state;
	/* every prefix of a good file: errors or a policy, never a crash or a leak */
	text = slurp(fixtures(path, sizeof(path), "good/full.pol"), &len);
	for (size_t n = 0; n <= len; n++) {
		p = policy_compile("cut", text, n, &env, &d);
		assert_true((p == NULL) == (d.errors > 0));
		policy_free(p);
		policy_diags_free(&d);
	}
	/* byte flips */
	srand(7);
	for (int i = 0; i < 2000; i++) {
		char *m = malloc(len);

		memcpy(m, text, len);
		for (int k = 0; k < 4; k++)
			m[rand() % (int)len] = (char)(rand() % 256);
		p = policy_compile("flip", m, len, &env, &d);
		policy_free(p);
		policy_diags_free(&d);
		free(m);
	}
	free(text);

	/* empty and NULL text: an empty policy */
	p = policy_compile("e", NULL, 0, NULL, &d);
	assert_non_null(p);
	assert_int_equal(d.n, 0);
	policy_diags_free(&d);
	policy_free(p);

	/* the diags are capped */
	size_t cap = 300 * 10 + 1;
	char *many = malloc(cap);

	many[0] = '\0';
	for (int i = 0; i < 300; i++)
		strcat(many, "bogus :(\n");
	p = policy_compile("many", many, strlen(many), &env, &d);
	assert_null(p);
	assert_int_equal(d.n, 100);
	policy_diags_free(&d);
	free(many);

	/* nesting and length are bounded, so recursion is */
	size_t deep = 100000;
	char *nest = malloc(3 * deep + 64);

	strcpy(nest, "archive where ");
	memset(nest + 14, '(', deep);
	strcpy(nest + 14 + deep, "true\n");
	assert_non_null(strstr(first_error(nest, &env), "nested too deeply"));
	strcpy(nest, "archive where ");
	for (size_t i = 0; i < deep / 8; i++)
		memcpy(nest + 14 + i * 4, "not ", 4);
	strcpy(nest + 14 + deep / 2, "true\n");
	assert_non_null(
	    strstr(first_error(nest, &env), "1:271: error: condition nested too deeply"));
	strcpy(nest, "archive where true");
	for (size_t i = 0, o = strlen(nest); i < 2000; i++, o += 9)
		memcpy(nest + o, " and true", 10);
	assert_non_null(strstr(first_error(nest, &env), "condition too long"));
	free(nest);
	assert_null(policy_compile("nodiags", "bogus\n", 6, &env, NULL));

	/* a very long line */
	size_t big = 1 << 20;
	char *lng = malloc(big + 64);

	strcpy(lng, "archive where name ~ \"");
	memset(lng + strlen(lng), 'a', big);
	strcpy(lng + 22 + big, "*\"\n");
	p = policy_compile("long", lng, strlen(lng), &env, &d);
	assert_non_null(p);
	policy_diags_free(&d);
	policy_free(p);
	free(lng);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bad_fixtures), cmocka_unit_test(test_good_fixtures),
	    cmocka_unit_test(test_dump),	 cmocka_unit_test(test_size_boundaries),
	    cmocka_unit_test(test_size_units),	 cmocka_unit_test(test_age_boundaries),
	    cmocka_unit_test(test_globs),	 cmocka_unit_test(test_xattr),
	    cmocka_unit_test(test_owner_group),	 cmocka_unit_test(test_state_flags_site_volume),
	    cmocka_unit_test(test_first_match),	 cmocka_unit_test(test_exclude),
	    cmocka_unit_test(test_needs),	 cmocka_unit_test(test_release_order),
	    cmocka_unit_test(test_schedule),	 cmocka_unit_test(test_explain),
	    cmocka_unit_test(test_robust),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

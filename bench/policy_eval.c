/* bench/policy_eval: policy evaluation rate on one core over synthetic catalog
 * records (issue "Policy engine": target >= 1,000,000 records/s per core), against a
 * baseline measured in the same run: the same policy's globs and comparisons written
 * by hand with libc fnmatch(3), the way a script or a naive engine would test them.
 *
 *   bench/policy_eval [-n RECORDS] [-r RUNS] [POLICY-FILE]
 *
 * Without POLICY-FILE it uses the built-in policy below (DFS-R-like excludes, classes,
 * archive, release, pin, prefetch, copies rules; 20 statements). Prints a table; the
 * figure is the median of RUNS runs. */
#include <fnmatch.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "policy/policy.h"

static const char builtin[] =
    "exclude \"~*\", \"*.tmp\", \"*.bak\", \"Thumbs.db\", \"desktop.ini\", \"*.swp\"\n"
    "class media where name ~ {\"*.mp4\", \"*.mov\", \"*.mkv\", \"*.iso\"}\n"
    "class docs where name ~ {\"*.doc\", \"*.docx\", \"*.pdf\", \"*.xlsx\"}\n"
    "class build where path ~ \"**/build/**\" or path ~ \"**/obj/**\"\n"
    "no archive where class build\n"
    "pin at london where path ~ \"tools/**\"\n"
    "prefetch at paris where path ~ \"projects/*/shared/**\" and size < 100M\n"
    "place at paris where path ~ \"paris/**\"\n"
    "copies 2 where class docs and mtime < 365d\n"
    "archive where class media and mtime > 1d\n"
    "archive where class docs and mtime > 7d and size >= 4K\n"
    "archive where mtime > 30d and size > 0\n"
    "release watermark 90% 75% order atime, size where class media and atime > 7d\n"
    "release watermark 85% 70% order atime where atime > 30d and not pinned\n"
    "release where atime > 365d and state = archived\n"
    "limit store 20MB/s during weekdays 08:00-18:00\n"
    "limit store unlimited\n"
    "window peers daily\n"
    "scan every 10min\n";

static const char *const exts[] = {".doc", ".pdf", ".c",   ".h",   ".mp4", ".xlsx", ".txt",
				   ".tmp", ".iso", ".png", ".bak", ".o",   ".log",  ".docx"};
static const char *const tops[] = {"projects", "home", "tools", "paris", "shared", "archive"};

struct rec {
	char path[160];
	struct policy_file f;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The baseline: the built-in policy's tests by hand with fnmatch (first match). */
static int naive(const struct policy_file *f, int64_t now)
{
	static const char *const ex[] = {"~*",	      "*.tmp",	     "*.bak",
					 "Thumbs.db", "desktop.ini", "*.swp"};
	static const char *const media[] = {"*.mp4", "*.mov", "*.mkv", "*.iso"};
	static const char *const docs[] = {"*.doc", "*.docx", "*.pdf", "*.xlsx"};
	const char *name = strrchr(f->path, '/');
	int64_t age_m = now - f->mtime, age_a = now - f->atime;
	int is_media = 0, is_docs = 0, is_build, r = 0;

	name = name ? name + 1 : f->path;
	for (size_t i = 0; i < 6; i++)
		if (!fnmatch(ex[i], name, 0))
			return -1;
	for (size_t i = 0; i < 4; i++) {
		is_media |= !fnmatch(media[i], name, 0);
		is_docs |= !fnmatch(docs[i], name, 0);
	}
	is_build = !fnmatch("*/build/*", f->path, 0) || !fnmatch("*/obj/*", f->path, 0);
	r += !fnmatch("tools/*", f->path, 0);
	r += !fnmatch("projects/*/shared/*", f->path, 0) && f->size < 100u << 20;
	r += !fnmatch("paris/*", f->path, 0);
	r += is_docs && age_m < 365 * 86400;
	if (!is_build)
		r += (is_media && age_m > 86400) ||
		     (is_docs && age_m > 7 * 86400 && f->size >= 4096) ||
		     (age_m > 30 * 86400 && f->size > 0);
	r += (is_media && age_a > 7 * 86400) || (age_a > 30 * 86400 && !(f->flags & 1)) ||
	     (age_a > 365 * 86400 && f->state == POLICY_ARCHIVED);
	return r;
}

int main(int argc, char **argv)
{
	size_t n = 1000000;
	int runs = 5, opt;
	const char *file = NULL;
	char *text = NULL;
	size_t len;
	struct policy_diags d = {0};
	struct policy *p;
	struct rec *recs;
	int64_t now = 1796000000;
	double t_pol[16], t_naive[16];
	unsigned long long acc = 0;

	while ((opt = getopt(argc, argv, "n:r:")) != -1) {
		if (opt == 'n')
			n = strtoul(optarg, NULL, 10);
		else if (opt == 'r')
			runs = atoi(optarg);
		else
			return 2;
	}
	if (runs < 1 || runs > 16 || n == 0) {
		fprintf(stderr, "policy_eval: -r 1..16, -n > 0\n");
		return 2;
	}
	if (optind < argc) {
		FILE *f = fopen(argv[optind], "rb");

		file = argv[optind];
		text = malloc(1 << 22);
		if (!f || !text) {
			perror(file);
			return 1;
		}
		len = fread(text, 1, 1 << 22, f);
		fclose(f);
	} else {
		file = "builtin";
		text = strdup(builtin);
		len = strlen(builtin);
	}
	p = policy_compile(file, text, len, NULL, &d);
	for (size_t i = 0; i < d.n; i++) {
		char line[600];

		fprintf(stderr, "%s\n", policy_diag_format(p, file, &d.v[i], line, sizeof(line)));
	}
	policy_diags_free(&d);
	free(text);
	if (!p)
		return 1;
	recs = calloc(n, sizeof(*recs));
	if (!recs) {
		perror("calloc");
		return 1;
	}
	srand(42);
	for (size_t i = 0; i < n; i++) {
		struct rec *r = &recs[i];
		int depth = 1 + rand() % 4, o;

		o = snprintf(r->path, sizeof(r->path), "%s", tops[rand() % 6]);
		for (int k = 0; k < depth; k++)
			o += snprintf(r->path + o, sizeof(r->path) - (size_t)o, "/%s%d",
				      k == 1 && rand() % 8 == 0 ? "build" : "dir", rand() % 100);
		snprintf(r->path + o, sizeof(r->path) - (size_t)o, "/%sfile%zu%s",
			 rand() % 50 == 0 ? "~" : "", i, exts[rand() % 14]);
		r->f.volume = "v";
		r->f.path = r->path;
		r->f.size = (uint64_t)rand() * (uint64_t)(rand() % 64);
		r->f.atime = now - (int64_t)(rand() % (400 * 86400));
		r->f.mtime = r->f.atime - (int64_t)(rand() % (30 * 86400));
		r->f.ctime = r->f.mtime;
		r->f.uid = 1000 + (uint32_t)(rand() % 20);
		r->f.gid = 100;
		r->f.state = 1 + rand() % 3;
		r->f.flags = rand() % 20 == 0 ? POLICY_F_PINNED : 0;
		r->f.owner = rand() % 2 ? "london" : "paris";
	}
	for (int k = 0; k < runs; k++) {
		struct policy_decision dec;
		double t0 = now_s();

		for (size_t i = 0; i < n; i++) {
			policy_eval(p, "london", &recs[i].f, now, &dec);
			acc += dec.exclude != NULL || dec.rule[POLICY_ARCHIVE] != NULL;
		}
		t_pol[k] = now_s() - t0;
		t0 = now_s();
		for (size_t i = 0; i < n; i++)
			acc += (unsigned)naive(&recs[i].f, now);
		t_naive[k] = now_s() - t0;
	}
	qsort(t_pol, (size_t)runs, sizeof(double), cmp_d);
	qsort(t_naive, (size_t)runs, sizeof(double), cmp_d);
	{
		double rp = (double)n / t_pol[runs / 2], rn = (double)n / t_naive[runs / 2];

		printf("what                                   | hsmd policy_eval | baseline "
		       "(fnmatch by hand) | ratio | target\n");
		printf("---------------------------------------|------------------|----------------"
		       "------------|-------|---------------------------\n");
		printf("eval rate, 1 core, %8zu records     | %10.0f rec/s | %14.0f rec/s       | "
		       "%5.2f | >= 1,000,000 rec/s %s\n",
		       n, rp, rn, rp / rn, rp >= 1e6 ? "met" : "MISSED");
		printf("\npolicy %s; median of %d runs (%.3f s per pass of hsmd, %.3f s baseline); "
		       "checksum %llu\n",
		       file, runs, t_pol[runs / 2], t_naive[runs / 2], acc);
	}
	free(recs);
	policy_free(p);
	return 0;
}

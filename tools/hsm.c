/* hsm: the admin and batch command. It turns its arguments into requests of the
 * control socket protocol (docs/control.md) and prints the replies; the command
 * itself is documented in docs/hsm.md. */
#include "config.h"

#include <errno.h>
#include <fts.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tools/hsm_ca.h"
#include "tools/hsm_client.h"
#include "tools/hsm_policy.h"
#include "tools/hsm_print.h"

#define EXIT_OK	   0
#define EXIT_FAIL  1
#define EXIT_USAGE 2

/* One request carries at most this many paths, and (escaped as JSON) about this
 * many bytes, well under the protocol's 16 MiB line limit. */
#define BATCH_PATHS 1000
#define BATCH_BYTES (8u * 1024 * 1024)
#define JOBS_MAX    64

enum {
	VF_PATHS = 1 << 0, /* takes PATH..., -r and --from-file */
	VF_JOBS = 1 << 1,  /* takes -j N */
	VF_BAR = 1 << 2,   /* progress bar and a summary line */
	VF_NODIR = 1 << 3, /* a directory is an error unless -r walks it */
	VF_ONE = 1 << 4,   /* exactly one PATH, sent with the request */
};

struct ctx;

struct verb {
	const char *name;
	unsigned flags;
	const char *bytes_key; /* item field summed into the byte count, or NULL */
	const char *synopsis;
	const char *what;
	const char *help;
	int (*run)(struct ctx *x);
};

struct pathlist {
	char **v;
	size_t n;
	size_t cap;
};

struct ctx {
	const struct verb *verb;
	const char *socket;
	int json;
	int recursive;
	int jobs; /* 0: hsmd's default */
	const char **from_files;
	size_t nfrom;
	char **args;
	int nargs;

	struct pathlist paths;
	struct hsm_progress bar;
	struct timespec start;
	uint64_t total;	   /* every path asked for, including those that failed here */
	uint64_t answered; /* items hsmd has answered */
	uint64_t done;
	uint64_t failed;
	uint64_t bytes;
	uint64_t chunks;
	uint64_t uploaded;
	int header_done;
	char error[1200]; /* why the run stopped early, "" if it did not */
};

static int run_info(struct ctx *x);
static int run_paths(struct ctx *x);

static const struct verb verbs[] = {
    {"status", 0, NULL, "status [--json]", "site, store, volumes, queues and recall counters",
     "Shows the site name, hsmd version, object store, uptime, recall counters,\n"
     "queue lengths and, per volume, the files and bytes in each state.\n",
     run_info},
    {"state", VF_PATHS, NULL, "state [--json] [-r] [-f FILE] PATH...",
     "per-file state, size, allocation, fid, versions and flags",
     "Prints one line per file: state, size, allocated bytes, fid, version,\n"
     "archived version, flags and path. A file hsmd has not seen is \"unmanaged\".\n",
     run_paths},
    {"archive", VF_PATHS | VF_JOBS | VF_BAR | VF_NODIR, "bytes",
     "archive [-j N] [-r] [-f FILE] PATH...", "copy files to the object store",
     "Copies each file's current version to the object store; files stay resident.\n", run_paths},
    {"release", VF_PATHS | VF_BAR | VF_NODIR, "freed", "release [-r] [-f FILE] PATH...",
     "turn archived files into stubs, freeing their blocks",
     "Turns archived files whose content matches the archived version into stubs.\n", run_paths},
    {"recall", VF_PATHS | VF_JOBS | VF_BAR | VF_NODIR, "bytes",
     "recall [-j N] [-r] [-f FILE] PATH...", "fetch the data of stubs",
     "Fetches, verifies and writes back the data of stubs; resident files are\n"
     "left alone.\n",
     run_paths},
    {"pin", VF_PATHS | VF_BAR | VF_NODIR, NULL, "pin [-r] [-f FILE] PATH...",
     "keep files resident at this site",
     "Sets the pinned flag: the files are never released (a stub stays a stub until read).\n",
     run_paths},
    {"unpin", VF_PATHS | VF_BAR | VF_NODIR, NULL, "unpin [-r] [-f FILE] PATH...",
     "clear the pinned flag", "Clears the pinned flag; the files can be released again.\n",
     run_paths},
    {"metrics", 0, NULL, "metrics [--json]", "Prometheus metrics of hsmd",
     "Prints hsmd's metrics in the Prometheus text format.\n", run_info},
    {"sites", VF_ONE, NULL, "sites [--json] PATH", "where a recall of PATH would fetch from",
     "Prints the sources a recall of PATH would try, in order (owner site, other\n"
     "sites by cost, the object store, with priority overrides), and each one's\n"
     "health; a source that would be skipped says why.\n",
     run_info},
    {"conflicts", 0, NULL, "conflicts [--json]", "conflict copies in the namespace",
     "Lists the files kept as NAME.conflict-SITE-TIME because two sites wrote them\n"
     "at the same time: volume, path, the site whose version it is, its mtime.\n",
     run_info},
    {"peers", 0, NULL, "peers [--json]", "namespace sync with each peer",
     "Per peer and volume: reachable or not, how far its changes are applied,\n"
     "the last error.\n",
     run_info},
};

#define NVERBS (sizeof(verbs) / sizeof(verbs[0]))

static void oom(void)
{
	fprintf(stderr, "hsm: out of memory\n");
	exit(EXIT_FAIL);
}

static json_object *jcheck(json_object *o)
{
	if (!o)
		oom();
	return o;
}

static void jadd(json_object *obj, const char *key, json_object *val)
{
	if (json_object_object_add(obj, key, jcheck(val)) < 0)
		oom();
}

static void jput_line(json_object *o)
{
	fputs(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
						    JSON_C_TO_STRING_NOSLASHESCAPE),
	      stdout);
	fputc('\n', stdout);
}

static void usage_all(FILE *f)
{
	size_t i;

	fprintf(f, "Usage: hsm [-s SOCKET] [--json] VERB [OPTIONS] [PATH...]\n\n"
		   "Verbs:\n");
	for (i = 0; i < NVERBS; i++)
		fprintf(f, "  %-9s %s\n", verbs[i].name, verbs[i].what);
	fprintf(f, "  %-9s %s\n", "policy",
		"check, explain, run, reload the policy (hsm policy -h)");
	fprintf(f, "  %-9s %s\n", "ca", "deployment CA and site certificates (hsm ca -h)");
	fprintf(f, "  %-9s %s\n\n", "help", "this text, or a verb's with hsm help VERB");
	fprintf(f,
		"Options:\n"
		"  -s, --socket PATH    control socket (default: $HSM_SOCKET, else %s)\n"
		"      --json           JSON lines on stdout instead of text\n"
		"  -h, --help           show help and exit\n"
		"  -V, --version        show the version and exit\n\n"
		"Path verbs (state, archive, release, recall, pin, unpin):\n"
		"  -r, --recursive      walk directories and take their regular files\n"
		"  -f, --from-file F    read paths from F, one per line ('-' = stdin)\n"
		"  -j, --jobs N         parallel transfers in hsmd, 1..%d (archive, recall)\n\n"
		"Exit status: 0 all done, 1 something failed, 2 usage error.\n"
		"See docs/hsm.md for the full reference.\n",
		HSM_SOCKET_DEFAULT, JOBS_MAX);
}

static void usage_verb(FILE *f, const struct verb *v)
{
	fprintf(f, "Usage: hsm [-s SOCKET] %s\n\n%s", v->synopsis, v->help);
	if (v->flags & VF_PATHS) {
		fprintf(f,
			"\nOptions:\n"
			"  -r, --recursive      walk directories (lstat only: symlinks are not\n"
			"                       followed, other filesystems are not entered)\n"
			"  -f, --from-file F    read paths from F, one per line ('-' = stdin)\n");
		if (v->flags & VF_JOBS)
			fprintf(f, "  -j, --jobs N         parallel transfers in hsmd, 1..%d\n",
				JOBS_MAX);
	} else {
		fprintf(f, "\nOptions:\n");
	}
	fprintf(f, "      --json           JSON on stdout instead of text\n"
		   "  -s, --socket PATH    control socket\n"
		   "  -h, --help           show this help\n");
}

static int usage_error(const char *verb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int usage_error(const char *verb, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "hsm: ");
	if (verb)
		fprintf(stderr, "%s: ", verb);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'hsm %s%s--help'.\n", verb ? verb : "", verb ? " " : "");
	return EXIT_USAGE;
}

static const struct verb *verb_find(const char *name)
{
	size_t i;

	for (i = 0; i < NVERBS; i++)
		if (strcmp(verbs[i].name, name) == 0)
			return &verbs[i];
	return NULL;
}

static double ctx_seconds(struct ctx *x)
{
	return hsm_elapsed(&x->start);
}

static void ctx_clock_start(struct ctx *x)
{
	if (clock_gettime(CLOCK_MONOTONIC, &x->start) < 0)
		memset(&x->start, 0, sizeof(x->start));
}

/* Reports one path that failed, here or in hsmd, as a line of its own. */
static void ctx_print_failure(struct ctx *x, const char *path, size_t plen, const char *err,
			      size_t elen)
{
	hsm_progress_clear(&x->bar);
	fprintf(stderr, "hsm: %s: ", x->verb->name);
	if (plen == 0)
		fputs("''", stderr);
	hsm_put_escaped(stderr, path, plen);
	fputs(": ", stderr);
	hsm_put_escaped(stderr, err, elen);
	fputc('\n', stderr);
}

/* A path that fails before hsmd sees it is still an item of the run. */
static void ctx_fail_local(struct ctx *x, const char *path, const char *err)
{
	x->total++;
	x->failed++;
	if (x->json) {
		json_object *o = jcheck(json_object_new_object());

		jadd(o, "type", json_object_new_string("item"));
		jadd(o, "path", json_object_new_string(path));
		jadd(o, "ok", json_object_new_boolean(0));
		jadd(o, "error", json_object_new_string(err));
		jput_line(o);
		json_object_put(o);
		return;
	}
	ctx_print_failure(x, path, strlen(path), err, strlen(err));
}

static void paths_add(struct ctx *x, const char *path)
{
	struct pathlist *l = &x->paths;

	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 256;
		char **nv = realloc(l->v, ncap * sizeof(*nv));

		if (!nv)
			oom();
		l->v = nv;
		l->cap = ncap;
	}
	l->v[l->n] = strdup(path);
	if (!l->v[l->n])
		oom();
	l->n++;
	x->total++;
	hsm_progress_scan(&x->bar, l->n);
}

static void paths_free(struct pathlist *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

/* The absolute form of arg: realpath of its parent directory plus its last name,
 * so that a path which is itself a symlink names the link, not its target (the
 * protocol wants the path as the user sees it). Returns a malloc'd path, or NULL
 * with the reason in err. */
static char *path_absolute(const char *arg, char *err, size_t errlen)
{
	size_t len = strlen(arg);
	char *copy, *slash, *base, *rp = NULL, *abs = NULL;
	const char *parent;

	if (len == 0) {
		snprintf(err, errlen, "empty path");
		return NULL;
	}
	copy = strdup(arg);
	if (!copy)
		oom();
	while (len > 1 && copy[len - 1] == '/')
		copy[--len] = '\0';
	slash = strrchr(copy, '/');
	if (!slash) {
		parent = ".";
		base = copy;
	} else if (slash == copy) {
		parent = "/";
		base = copy + 1;
	} else {
		*slash = '\0';
		parent = copy;
		base = slash + 1;
	}
	if (strcmp(base, "..") == 0) {
		snprintf(err, errlen,
			 "a last component of '..' is not accepted; "
			 "name the directory instead");
		goto out;
	}
	rp = realpath(parent, NULL);
	if (!rp) {
		snprintf(err, errlen, "%s", strerror(errno));
		goto out;
	}
	if (base[0] == '\0' || strcmp(base, ".") == 0) {
		abs = rp; /* "/" or "DIR/.": the directory itself, never a symlink */
		rp = NULL;
	} else if (asprintf(&abs, "%s/%s", strcmp(rp, "/") == 0 ? "" : rp, base) < 0) {
		oom();
	}
	if (strlen(abs) >= PATH_MAX) {
		snprintf(err, errlen, "%s", strerror(ENAMETOOLONG));
		free(abs);
		abs = NULL;
	}
out:
	free(rp);
	free(copy);
	return abs;
}

static int path_walk_cmp(const FTSENT **a, const FTSENT **b)
{
	return strcmp((*a)->fts_name, (*b)->fts_name);
}

/* Collects the regular files under dir. fts with FTS_PHYSICAL only lstat()s and
 * reads directories: opening a file would recall a stub, which -r must not do. */
static void path_walk(struct ctx *x, char *dir)
{
	char *argv[] = {dir, NULL};
	FTSENT *e;
	FTS *fts;

	fts = fts_open(argv, FTS_PHYSICAL | FTS_NOCHDIR | FTS_XDEV, path_walk_cmp);
	if (!fts) {
		ctx_fail_local(x, dir, strerror(errno));
		return;
	}
	for (;;) {
		errno = 0;
		e = fts_read(fts);
		if (!e)
			break;
		switch (e->fts_info) {
		case FTS_F:
			paths_add(x, e->fts_path);
			break;
		case FTS_DNR:
		case FTS_ERR:
		case FTS_NS:
			ctx_fail_local(x, e->fts_path, strerror(e->fts_errno));
			break;
		default:
			/* directories, symlinks, devices, fifos, sockets: nothing to send */
			break;
		}
	}
	if (errno != 0)
		ctx_fail_local(x, dir, strerror(errno));
	if (fts_close(fts) < 0)
		ctx_fail_local(x, dir, strerror(errno));
}

/* Turns one argument (or --from-file line) into paths to send. */
static void path_take(struct ctx *x, const char *arg)
{
	char err[512];
	struct stat st;
	char *abs;

	abs = path_absolute(arg, err, sizeof(err));
	if (!abs) {
		ctx_fail_local(x, arg, err);
		return;
	}
	if (lstat(abs, &st) < 0) {
		ctx_fail_local(x, arg, strerror(errno));
	} else if (S_ISDIR(st.st_mode) && x->recursive) {
		path_walk(x, abs);
	} else if (S_ISDIR(st.st_mode) && (x->verb->flags & VF_NODIR)) {
		ctx_fail_local(x, arg, "is a directory (use -r to take the files under it)");
	} else {
		paths_add(x, abs);
	}
	free(abs);
}

static int line_is_blank(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
			return 0;
	return 1;
}

/* Takes every path listed in name ("-" = stdin). Returns -1 when the list cannot
 * be read: then nothing is sent, as a half-read list would do half a job. */
static int paths_from_file(struct ctx *x, const char *name)
{
	int is_stdin = strcmp(name, "-") == 0;
	FILE *f = is_stdin ? stdin : fopen(name, "re");
	const char *shown = is_stdin ? "standard input" : name;
	char *line = NULL, where[64];
	size_t cap = 0, lineno = 0;
	ssize_t n;
	int rc = 0;

	if (!f) {
		fprintf(stderr, "hsm: %s: cannot open %s: %s\n", x->verb->name, name,
			strerror(errno));
		return -1;
	}
	errno = 0;
	while ((n = getline(&line, &cap, f)) >= 0) {
		lineno++;
		if (n > 0 && line[n - 1] == '\n')
			line[--n] = '\0';
		if (line_is_blank(line, (size_t)n))
			continue;
		if (strlen(line) != (size_t)n) {
			snprintf(where, sizeof(where), "line %zu", lineno);
			fprintf(stderr, "hsm: %s: %s: %s: contains a NUL byte\n", x->verb->name,
				shown, where);
			rc = -1;
			break;
		}
		path_take(x, line);
		errno = 0;
	}
	if (rc == 0 && ferror(f)) {
		fprintf(stderr, "hsm: %s: cannot read %s: %s\n", x->verb->name, shown,
			strerror(errno ? errno : EIO));
		rc = -1;
	}
	free(line);
	if (!is_stdin && fclose(f) != 0 && rc == 0) {
		fprintf(stderr, "hsm: %s: cannot read %s: %s\n", x->verb->name, shown,
			strerror(errno));
		rc = -1;
	}
	return rc;
}

static json_object *request_new(const char *verb)
{
	json_object *req = jcheck(json_object_new_object());

	jadd(req, "v", json_object_new_int(1));
	jadd(req, "verb", json_object_new_string(verb));
	return req;
}

/* The bytes s takes as a JSON string: control bytes become \u00XX, quotes and
 * backslashes get a backslash. */
static size_t json_string_size(const char *s)
{
	size_t n = 3; /* the quotes and a comma */

	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		n += ch < 0x20 ? 6 : ch == '"' || ch == '\\' ? 2 : 1;
	}
	return n;
}

/* Paths [from, result) make the next request: up to BATCH_PATHS of them and at
 * most BATCH_BYTES of JSON. */
static size_t batch_end(struct ctx *x, size_t from)
{
	size_t i, bytes = 0;

	for (i = from; i < x->paths.n && i - from < BATCH_PATHS; i++) {
		bytes += json_string_size(x->paths.v[i]);
		if (bytes > BATCH_BYTES && i > from)
			break;
	}
	return i;
}

static int batch_send(struct ctx *x, struct hsm_client *c, size_t from, size_t to)
{
	json_object *req = request_new(x->verb->name);
	json_object *arr = jcheck(json_object_new_array_ext((int)(to - from)));
	size_t i;
	int rc;

	jadd(req, "paths", arr);
	for (i = from; i < to; i++)
		if (json_object_array_add(arr, jcheck(json_object_new_string(x->paths.v[i]))) < 0)
			oom();
	if (x->jobs > 0) {
		json_object *opts = jcheck(json_object_new_object());

		jadd(req, "opts", opts);
		jadd(opts, "jobs", json_object_new_int(x->jobs));
	}
	rc = hsm_client_send(c, req);
	json_object_put(req);
	return rc;
}

static void item_handle(struct ctx *x, json_object *item)
{
	int ok = hsm_jbool(item, "ok");
	json_object *path = NULL, *err = NULL, *no_path, *no_reason;

	x->answered++;
	if (ok) {
		x->done++;
		if (x->verb->bytes_key)
			x->bytes += hsm_ju64(item, x->verb->bytes_key);
		x->chunks += hsm_ju64(item, "chunks");
		x->uploaded += hsm_ju64(item, "uploaded");
	} else {
		x->failed++;
	}
	if (x->json) {
		jput_line(item);
	} else if (!ok) {
		json_object_object_get_ex(item, "path", &path);
		json_object_object_get_ex(item, "error", &err);
		if (!path || !json_object_is_type(path, json_type_string))
			path = NULL;
		if (!err || !json_object_is_type(err, json_type_string))
			err = NULL;
		no_path = jcheck(json_object_new_string("(no path)"));
		no_reason = jcheck(json_object_new_string("failed (hsmd gave no reason)"));
		if (!path)
			path = no_path;
		if (!err)
			err = no_reason;
		ctx_print_failure(
		    x, json_object_get_string(path), (size_t)json_object_get_string_len(path),
		    json_object_get_string(err), (size_t)json_object_get_string_len(err));
		json_object_put(no_path);
		json_object_put(no_reason);
	} else if (!(x->verb->flags & VF_BAR)) {
		if (!x->header_done)
			hsm_print_state_header(stdout);
		x->header_done = 1;
		hsm_print_state_row(stdout, item);
	}
	hsm_progress_update(&x->bar, x->answered, x->bytes);
}

/* Sets x->error from the reason in an "end" line that failed as a whole. */
static void end_error(struct ctx *x, json_object *end)
{
	const char *e = hsm_jstr(end, "error");

	snprintf(x->error, sizeof(x->error), "hsmd: %s", e ? e : "request failed, no reason given");
}

/* Reads the replies to one request of n paths. Returns -1 when the run must stop. */
static int batch_read(struct ctx *x, struct hsm_client *c, size_t n)
{
	uint64_t before = x->answered, got;
	json_object *msg, *end = NULL;
	const char *type;

	while (!end) {
		if (hsm_client_read(c, &msg) < 0) {
			snprintf(x->error, sizeof(x->error), "%s", hsm_client_error(c));
			return -1;
		}
		type = hsm_jstr(msg, "type");
		if (strcmp(type, "end") == 0) {
			end = msg;
			break;
		}
		/* Other types are ignored: a newer hsmd may add some. */
		if (strcmp(type, "item") == 0)
			item_handle(x, msg);
		json_object_put(msg);
	}
	got = x->answered - before;
	if (got == 0 && !hsm_jbool(end, "ok")) {
		end_error(x, end);
		json_object_put(end);
		return -1;
	}
	json_object_put(end);
	if (got < n) {
		/* Counted as failed: hsmd has not said what became of them. */
		hsm_progress_clear(&x->bar);
		fprintf(stderr, "hsm: %s: hsmd answered %" PRIu64 " of %zu paths\n", x->verb->name,
			got, n);
		x->failed += n - got;
		x->answered += n - got;
	}
	return 0;
}

static void summary_json(struct ctx *x, uint64_t not_done, double secs)
{
	json_object *o = jcheck(json_object_new_object());
	const char *bk = x->verb->bytes_key;
	char s[32];

	snprintf(s, sizeof(s), "%.3f", secs);
	jadd(o, "type", json_object_new_string("summary"));
	jadd(o, "verb", json_object_new_string(x->verb->name));
	jadd(o, "ok", json_object_new_boolean(x->failed == 0 && not_done == 0 && !x->error[0]));
	jadd(o, "total", json_object_new_uint64(x->total));
	jadd(o, "done", json_object_new_uint64(x->done));
	jadd(o, "failed", json_object_new_uint64(x->failed));
	jadd(o, "not_done", json_object_new_uint64(not_done));
	if (bk)
		jadd(o, bk, json_object_new_uint64(x->bytes));
	if (strcmp(x->verb->name, "archive") == 0) {
		jadd(o, "chunks", json_object_new_uint64(x->chunks));
		jadd(o, "uploaded", json_object_new_uint64(x->uploaded));
	}
	jadd(o, "seconds", json_object_new_double_s(secs, s));
	if (x->error[0])
		jadd(o, "error", json_object_new_string(x->error));
	jput_line(o);
	json_object_put(o);
}

static void summary_text(struct ctx *x, uint64_t not_done, double secs)
{
	char size[HSM_FMT_LEN], dur[HSM_FMT_LEN], rate[HSM_FMT_LEN];
	const char *bk = x->verb->bytes_key;

	hsm_fmt_size(x->bytes, size);
	hsm_fmt_duration(secs, dur);
	hsm_fmt_rate(x->bytes, secs, rate);
	printf("%s: %" PRIu64 " done, %" PRIu64 " failed", x->verb->name, x->done, x->failed);
	if (not_done)
		printf(", %" PRIu64 " not done", not_done);
	if (bk && strcmp(bk, "freed") == 0)
		printf(", %s freed in %s", size, dur);
	else if (bk)
		printf(", %s in %s (%s)", size, dur, rate);
	else
		printf(" in %s", dur);
	if (strcmp(x->verb->name, "archive") == 0)
		printf(", %" PRIu64 " of %" PRIu64 " chunks uploaded", x->uploaded, x->chunks);
	putchar('\n');
}

/* x->error may quote hsmd, so it is escaped like any string from there. */
static void ctx_print_error(struct ctx *x)
{
	fprintf(stderr, "hsm: %s: ", x->verb->name);
	hsm_put_escaped(stderr, x->error, strlen(x->error));
	fputc('\n', stderr);
}

static int run_finish(struct ctx *x, int sent)
{
	uint64_t accounted = x->done + x->failed;
	uint64_t not_done = x->total > accounted ? x->total - accounted : 0;
	double secs = ctx_seconds(x);

	hsm_progress_clear(&x->bar);
	if (x->error[0])
		ctx_print_error(x);
	if (x->json)
		summary_json(x, not_done, secs);
	else if ((x->verb->flags & VF_BAR) && sent)
		summary_text(x, not_done, secs);
	return x->failed == 0 && not_done == 0 && !x->error[0] ? EXIT_OK : EXIT_FAIL;
}

static int run_paths(struct ctx *x)
{
	struct hsm_client *c;
	size_t i, from, to;
	int rc;

	hsm_progress_init(&x->bar, x->verb->name,
			  (x->verb->flags & VF_BAR) && !x->json && isatty(STDERR_FILENO),
			  STDERR_FILENO);
	for (i = 0; i < (size_t)x->nargs; i++)
		path_take(x, x->args[i]);
	for (i = 0; i < x->nfrom; i++) {
		if (paths_from_file(x, x->from_files[i]) < 0) {
			hsm_progress_clear(&x->bar);
			return EXIT_FAIL;
		}
	}
	hsm_progress_clear(&x->bar);
	/* The clock starts after the walk, so that rates measure hsmd's work. */
	ctx_clock_start(x);
	if (x->paths.n == 0)
		return run_finish(x, 1);
	c = hsm_client_connect(x->socket, x->error, sizeof(x->error));
	if (!c)
		return run_finish(x, 0);
	hsm_progress_start(&x->bar, x->paths.n);
	rc = 0;
	for (from = 0; from < x->paths.n && rc == 0; from = to) {
		to = batch_end(x, from);
		rc = batch_send(x, c, from, to);
		if (rc < 0)
			snprintf(x->error, sizeof(x->error), "%s", hsm_client_error(c));
		else
			rc = batch_read(x, c, to - from);
	}
	hsm_client_close(c);
	return run_finish(x, 1);
}

/* The absolute path of p without following its last component and without opening
 * it (a stub must not be recalled by asking where it comes from). malloc'd or NULL. */
static char *realpath_parent(const char *p)
{
	char *copy = strdup(p), *slash, *dir, *out = NULL;
	const char *base;

	if (!copy)
		return NULL;
	slash = strrchr(copy, '/');
	while (slash && slash != copy && !slash[1]) {
		*slash = '\0';
		slash = strrchr(copy, '/');
	}
	if (slash) {
		*slash = '\0';
		base = slash + 1;
		dir = realpath(slash == copy ? "/" : copy, NULL);
	} else {
		base = copy;
		dir = realpath(".", NULL);
	}
	if (dir && (!strcmp(base, ".") || !strcmp(base, ".."))) {
		out = realpath(p, NULL);
	} else if (dir && asprintf(&out, "%s%s%s", dir, strcmp(dir, "/") ? "/" : "", base) < 0) {
		out = NULL;
	}
	free(dir);
	free(copy);
	return out;
}

/* status and metrics: one request without paths, the answer in end.result. */
static int run_info(struct ctx *x)
{
	json_object *req, *msg = NULL, *result;
	struct hsm_client *c;
	const char *text;
	int rc = EXIT_FAIL;

	c = hsm_client_connect(x->socket, x->error, sizeof(x->error));
	if (!c) {
		ctx_print_error(x);
		return EXIT_FAIL;
	}
	req = request_new(x->verb->name);
	if (x->verb->flags & VF_ONE) {
		char *abs = realpath_parent(x->args[0]);

		if (!abs) {
			fprintf(stderr, "hsm: %s: %s: %s\n", x->verb->name, x->args[0],
				strerror(errno));
			goto out;
		}
		jadd(req, "paths", jcheck(json_object_new_array()));
		json_object_array_add(json_object_object_get(req, "paths"),
				      jcheck(json_object_new_string(abs)));
		free(abs);
	}
	if (hsm_client_send(c, req) < 0)
		goto client_error;
	do {
		json_object_put(msg);
		if (hsm_client_read(c, &msg) < 0)
			goto client_error;
	} while (strcmp(hsm_jstr(msg, "type"), "end") != 0);
	if (!hsm_jbool(msg, "ok")) {
		if (x->json)
			jput_line(msg);
		end_error(x, msg);
		ctx_print_error(x);
		goto out;
	}
	if (!json_object_object_get_ex(msg, "result", &result) ||
	    !json_object_is_type(result, json_type_object)) {
		fprintf(stderr, "hsm: %s: hsmd sent a malformed reply: no result\n", x->verb->name);
		goto out;
	}
	text = hsm_jstr(result, "text");
	if (x->json) {
		jput_line(result);
	} else if (strcmp(x->verb->name, "status") == 0) {
		hsm_print_status(stdout, result);
	} else if (strcmp(x->verb->name, "sites") == 0) {
		hsm_print_sites(stdout, result);
	} else if (strcmp(x->verb->name, "conflicts") == 0) {
		hsm_print_conflicts(stdout, result);
	} else if (strcmp(x->verb->name, "peers") == 0) {
		hsm_print_peers(stdout, result);
	} else if (!text) {
		fprintf(stderr, "hsm: %s: hsmd sent a malformed reply: no text\n", x->verb->name);
		goto out;
	} else {
		/* Prometheus text is printed exactly as hsmd made it. */
		fwrite(text, 1, strlen(text), stdout);
	}
	rc = EXIT_OK;
	goto out;
client_error:
	snprintf(x->error, sizeof(x->error), "%s", hsm_client_error(c));
	ctx_print_error(x);
out:
	json_object_put(msg);
	json_object_put(req);
	hsm_client_close(c);
	return rc;
}

static int parse_jobs(struct ctx *x, const char *s)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 1 || v > JOBS_MAX) {
		fprintf(stderr, "hsm: %s: -j wants a number from 1 to %d, not '", x->verb->name,
			JOBS_MAX);
		hsm_put_escaped(stderr, s, strlen(s));
		fprintf(stderr, "'\nTry 'hsm %s --help'.\n", x->verb->name);
		return -1;
	}
	x->jobs = (int)v;
	return 0;
}

enum { OPT_JSON = 256 };

/* Option letters a verb accepts; any other is a usage error. */
static void verb_optstring(const struct verb *v, char *buf, struct option *lo)
{
	size_t n = 0;

	strcpy(buf, ":s:h");
	lo[n++] = (struct option){"socket", required_argument, NULL, 's'};
	lo[n++] = (struct option){"json", no_argument, NULL, OPT_JSON};
	lo[n++] = (struct option){"help", no_argument, NULL, 'h'};
	if (v->flags & VF_PATHS) {
		strcat(buf, "rf:");
		lo[n++] = (struct option){"recursive", no_argument, NULL, 'r'};
		lo[n++] = (struct option){"from-file", required_argument, NULL, 'f'};
	}
	if (v->flags & VF_JOBS) {
		strcat(buf, "j:");
		lo[n++] = (struct option){"jobs", required_argument, NULL, 'j'};
	}
	lo[n] = (struct option){0};
}

/* A getopt error in the options of verb (NULL: the global ones). A long option is
 * named by the word it came in, a short one by its letter. */
static int bad_option(const char *verb, int ch, int argc, char **argv)
{
	char shortopt[3] = {'-', (char)optopt, '\0'};
	const char *word = shortopt;

	if (optind >= 1 && optind - 1 < argc && strncmp(argv[optind - 1], "--", 2) == 0 &&
	    (optopt == 0 || ch == ':'))
		word = argv[optind - 1];
	if (ch == ':')
		return usage_error(verb, "option '%s' needs an argument", word);
	return usage_error(verb, "unknown option '%s'", word);
}

/* Parses the verb's own options; argv[0] is the verb. Returns -1 to exit with
 * *rc, else 0. */
static int verb_parse(struct ctx *x, int argc, char **argv, int *rc)
{
	struct option lo[8];
	char optstring[16];
	int ch;

	verb_optstring(x->verb, optstring, lo);
	optind = 0; /* glibc: start over, argv is a new vector */
	opterr = 0;
	while ((ch = getopt_long(argc, argv, optstring, lo, NULL)) != -1) {
		switch (ch) {
		case 's':
			x->socket = optarg;
			break;
		case OPT_JSON:
			x->json = 1;
			break;
		case 'h':
			usage_verb(stdout, x->verb);
			*rc = EXIT_OK;
			return -1;
		case 'r':
			x->recursive = 1;
			break;
		case 'f':
			x->from_files =
			    realloc(x->from_files, (x->nfrom + 1) * sizeof(*x->from_files));
			if (!x->from_files)
				oom();
			x->from_files[x->nfrom++] = optarg;
			break;
		case 'j':
			if (parse_jobs(x, optarg) < 0) {
				*rc = EXIT_USAGE;
				return -1;
			}
			break;
		default:
			*rc = bad_option(x->verb->name, ch, argc, argv);
			return -1;
		}
	}
	x->args = argv + optind;
	x->nargs = argc - optind;
	if ((x->verb->flags & VF_PATHS) && x->nargs == 0 && x->nfrom == 0) {
		*rc = usage_error(x->verb->name, "%s", "no paths given");
		return -1;
	}
	if ((x->verb->flags & VF_ONE) && x->nargs != 1) {
		*rc = usage_error(x->verb->name, "%s", "takes exactly one PATH");
		return -1;
	}
	if (!(x->verb->flags & (VF_PATHS | VF_ONE)) && x->nargs > 0) {
		*rc = usage_error(x->verb->name, "takes no arguments, got '%s'", x->args[0]);
		return -1;
	}
	return 0;
}

static int run_help(int argc, char **argv)
{
	const struct verb *v;

	if (argc < 2) {
		usage_all(stdout);
		return EXIT_OK;
	}
	v = verb_find(argv[1]);
	if (!v)
		return usage_error(NULL, "no verb '%s'", argv[1]);
	usage_verb(stdout, v);
	return EXIT_OK;
}

/* Wipes the progress bar before dying of the signal, so the shell prompt does not
 * land in the middle of it. */
static void on_fatal_signal(int sig)
{
	hsm_progress_signal_clear();
	raise(sig); /* SA_RESETHAND restored the default action */
}

static int signals_setup(void)
{
	struct sigaction sa = {.sa_handler = on_fatal_signal, .sa_flags = SA_RESETHAND};

	/* A dead hsmd or a closed stdout pipe must be an error message, not a kill. */
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		return -1;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0 ||
	    sigaction(SIGHUP, &sa, NULL) < 0)
		return -1;
	return 0;
}

static int flush_stdout(int rc)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		if (errno != EPIPE)
			fprintf(stderr, "hsm: write error on standard output: %s\n",
				strerror(errno));
		return EXIT_FAIL;
	}
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"socket", required_argument, NULL, 's'},
	    {"json", no_argument, NULL, OPT_JSON},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {0},
	};
	struct ctx x = {0};
	const char *env = getenv("HSM_SOCKET");
	int ch, rc;

	if (signals_setup() < 0) {
		fprintf(stderr, "hsm: cannot set up signal handling: %s\n", strerror(errno));
		return EXIT_FAIL;
	}
	x.socket = env && env[0] ? env : HSM_SOCKET_DEFAULT;
	opterr = 0;
	/* '+': stop at the verb; its options are parsed with the verb's own list. */
	while ((ch = getopt_long(argc, argv, "+:s:hV", lo, NULL)) != -1) {
		switch (ch) {
		case 's':
			x.socket = optarg;
			break;
		case OPT_JSON:
			x.json = 1;
			break;
		case 'h':
			usage_all(stdout);
			return flush_stdout(EXIT_OK);
		case 'V':
			printf("hsm (%s) %s\n", PACKAGE_NAME, PACKAGE_VERSION);
			return flush_stdout(EXIT_OK);
		default:
			return bad_option(NULL, ch, argc, argv);
		}
	}
	if (optind >= argc) {
		usage_all(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[optind], "help") == 0)
		return flush_stdout(run_help(argc - optind, argv + optind));
	/* the CA works on files, not through hsmd */
	if (strcmp(argv[optind], "ca") == 0)
		return flush_stdout(hsm_ca_main(argc - optind, argv + optind));
	if (strcmp(argv[optind], "policy") == 0)
		return flush_stdout(
		    hsm_policy_main(argc - optind, argv + optind, x.socket, x.json));
	x.verb = verb_find(argv[optind]);
	if (!x.verb)
		return usage_error(NULL, "no verb '%s'", argv[optind]);
	if (verb_parse(&x, argc - optind, argv + optind, &rc) == 0)
		rc = x.verb->run(&x);
	paths_free(&x.paths);
	free(x.from_files);
	return flush_stdout(rc);
}

/* The policy language (docs/policy.md): compiling an admin's policy file, checking it,
 * and evaluating it against one file's attributes. Pure code: libc only, no I/O of its
 * own (user and group names are resolved through a callback the caller passes, xattr
 * values are read through a callback in the file's attributes) except the helpers of
 * policy/load.c, which callers use around it. A compiled policy is
 * immutable, so several threads may evaluate the same one at once.
 *
 * Semantics in one paragraph (the first of docs/policy.md): rules are read top to
 * bottom; for each action (archive, release, pin, prefetch, place, copies) the FIRST
 * rule of that action whose `at` list includes this site (or has none) and whose
 * condition matches decides, and a `no ACTION` rule that matches first means "not
 * this action". `exclude` rules are checked before everything: an excluded file
 * matches no rule at all (never synced, never archived). */
#ifndef HSM_POLICY_H
#define HSM_POLICY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct policy;
struct policy_rule;

/* ---- compiling and checking ---- */

enum policy_severity { POLICY_ERROR = 1, POLICY_WARNING = 2 };

struct policy_diag {
	int severity; /* enum policy_severity */
	int line;     /* 1-based */
	int col;      /* 1-based, in bytes */
	char msg[400];
};

/* Every error and warning of one compile, in file order. Owned by the caller: free
 * with policy_diags_free. */
struct policy_diags {
	size_t n;
	struct policy_diag *v;
	size_t errors, warnings;
};

enum policy_id_kind { POLICY_USER = 1, POLICY_GROUP = 2 };

/* What a policy may name, for checking. Every member may be NULL/0 (then that check
 * is not made: any site name / user name is accepted as written, numeric ids only). */
struct policy_env {
	const char *const *sites; /* every site of the deployment, this one included */
	size_t nsites;
	/* Resolves a user or group name to its id: 0, or -1 if there is no such name. */
	int (*resolve)(void *arg, int kind, const char *name, uint32_t *id);
	void *resolve_arg;
};

/* Compiles text (len bytes; need not be NUL-terminated; may contain NULs, which are
 * errors). file names the source in messages. Returns the policy, or NULL when there
 * was at least one error; diags (always filled, also on success: warnings) must be
 * freed by the caller. Never aborts on bad input; NULL with a diag on out of memory. */
struct policy *policy_compile(const char *file, const char *text, size_t len,
			      const struct policy_env *env, struct policy_diags *diags);
void policy_free(struct policy *p);

/* policy/load.c, the two pieces of I/O every caller needs. policy_read_file returns
 * the bytes of a regular file of at most POLICY_FILE_MAX bytes (malloc'd, NUL added,
 * the caller frees), or NULL with "policy PATH: why" in err. policy_resolve_system is
 * a policy_env.resolve that looks names up in the system's user and group database. */
#define POLICY_FILE_MAX (4u << 20)
char *policy_read_file(const char *path, size_t *len, char *err, size_t errlen);
int policy_resolve_system(void *arg, int kind, const char *name, uint32_t *id);
void policy_diags_free(struct policy_diags *d);
/* "FILE:LINE:COL: error: MSG" (or "warning:") into out; returns out. */
const char *policy_diag_format(const struct policy *p_or_null, const char *file,
			       const struct policy_diag *d, char *out, size_t cap);
/* Prints every statement as it was understood (units resolved, globs, sites), one
 * per line with its source line number, as `pfctl -nv` does. */
void policy_dump(const struct policy *p, FILE *out);

/* ---- the attributes of one file ---- */

enum policy_state { POLICY_RESIDENT = 1, POLICY_ARCHIVED = 2, POLICY_STUB = 3 };

enum policy_file_flags {
	POLICY_F_PINNED = 0x01,	   /* pinned by `hsm pin` (the xattr flag) */
	POLICY_F_NOARCHIVE = 0x02, /* never archived (the xattr flag) */
	POLICY_F_DIRTY = 0x04,	   /* resident and modified since an archived version */
};

struct policy_file {
	const char *volume; /* the volume's name */
	const char *path;   /* relative to the volume root, no leading '/', NUL-terminated */
	uint64_t size;
	int64_t atime, mtime, ctime; /* seconds since the epoch */
	uint32_t uid, gid;
	int state;	   /* enum policy_state */
	unsigned flags;	   /* enum policy_file_flags */
	const char *owner; /* site that holds the current version's data */
	/* Reads xattr name into buf (at most cap bytes). Returns the value's length, -1 if
	 * the file has no such xattr. NULL = the file has no xattrs. Called only by rules
	 * that test xattrs, at most once per xattr name per evaluation. */
	long (*xattr)(void *arg, const char *name, char *buf, size_t cap);
	void *xattr_arg;
};

/* ---- evaluating ---- */

enum policy_action {
	POLICY_ARCHIVE = 0,
	POLICY_RELEASE = 1,
	POLICY_PIN = 2,
	POLICY_PREFETCH = 3,
	POLICY_PLACE = 4,
	POLICY_COPIES = 5,
	POLICY_NACTIONS = 6,
};

/* What the policy says of one file at one site. */
struct policy_decision {
	const struct policy_rule *exclude; /* the exclude rule that matched, or NULL */
	/* Per action: the first matching rule that applies at this site; NULL when none
	 * matched or when a `no ACTION` rule matched first (see rule_no below). When
	 * exclude is set every entry is NULL. */
	const struct policy_rule *rule[POLICY_NACTIONS];
	/* The `no ACTION` rule that matched first, if any (for explain). */
	const struct policy_rule *no[POLICY_NACTIONS];
};

/* Evaluates every action for f at site (this site's name) at time now (seconds since
 * the epoch; ages are now - atime etc., a time in the future is age 0). */
void policy_eval(const struct policy *p, const char *site, const struct policy_file *f, int64_t now,
		 struct policy_decision *out);
/* Only the exclude rules: 1 (and *rule, if rule != NULL) if f is excluded. For the
 * namespace feed, which must not publish excluded files. */
int policy_excluded(const struct policy *p, const struct policy_file *f, int64_t now,
		    const struct policy_rule **rule);
/* 1 if any rule's condition reads that attribute (so the caller can skip a stat or
 * xattr read the policy never looks at). */
enum policy_needs {
	POLICY_NEEDS_ATIME = 0x01,
	POLICY_NEEDS_CTIME = 0x02,
	POLICY_NEEDS_OWNER = 0x04, /* uid or gid */
	POLICY_NEEDS_XATTR = 0x08,
};
unsigned policy_needs(const struct policy *p);

/* Explains the evaluation: calls line() once per output line (no newline), for every
 * rule in file order that could apply at site: its source line, the statement as
 * understood, each comparison with the file's actual value and its result
 * (e.g. "  size 2147483648 (2.0 GiB) > 1073741824 (1 GiB): true"), and whether it
 * decided its action; then one summary line per action. */
void policy_explain(const struct policy *p, const char *site, const struct policy_file *f,
		    int64_t now, void (*line)(void *arg, const char *text), void *arg);

/* ---- rule details ---- */

int policy_rule_line(const struct policy_rule *r);
/* The i-th rule (exclude and action rules, `no` rules included) in file order; NULL
 * past the end. For callers that look at every rule (the engine's watermark check). */
const struct policy_rule *policy_rule_at(const struct policy *p, size_t i);
int policy_rule_action(const struct policy_rule *r); /* enum policy_action; -1 = exclude */
/* The statement as understood, one line (as policy_dump prints it). */
const char *policy_rule_text(const struct policy_rule *r);
/* place: the site that owns matching new files. Others: NULL. */
const char *policy_rule_site(const struct policy_rule *r);
/* copies: the minimum number of full copies. Others: 0. */
unsigned policy_rule_copies(const struct policy_rule *r);

/* release: watermarks in percent of the volume's size (used space), 0/0 = none (the
 * rule releases every match); high > low. */
void policy_rule_watermarks(const struct policy_rule *r, unsigned *high, unsigned *low);

enum policy_order_key {
	POLICY_ORDER_ATIME = 1, /* oldest atime first */
	POLICY_ORDER_MTIME = 2, /* oldest mtime first */
	POLICY_ORDER_SIZE = 3,	/* largest first */
};
/* release: the order keys, most significant first; returns how many (0..3), filling
 * keys[0..n). Default when the rule names none: atime. */
size_t policy_rule_order(const struct policy_rule *r, int keys[3]);
/* Compares two candidates of release rule r by its order: < 0 if a goes first. */
int policy_order_cmp(const struct policy_rule *r, const struct policy_file *a,
		     const struct policy_file *b);

/* ---- global settings ---- */

/* `scan every DURATION`: seconds between full passes; default 600. */
unsigned policy_scan_interval(const struct policy *p);

#define POLICY_RATE_UNLIMITED UINT64_MAX
/* Transfer rate allowed now for a destination: dest is "store" (archive uploads) or a
 * peer site's name (prefetch traffic from it). wday 0 = Monday .. 6 = Sunday, minute
 * 0..1439 of the local day. Returns bytes per second, 0 when the destination is
 * outside its transfer window (wait), POLICY_RATE_UNLIMITED when nothing limits it. */
uint64_t policy_rate(const struct policy *p, const char *dest, int wday, int minute);

#endif

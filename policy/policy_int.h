/* What the policy files share: tokens, the compiled tree, the arena that owns it. A
 * compiled policy is one arena: every node, string and array of it is freed at once by
 * policy_free, so no piece has an owner of its own. */
#ifndef HSM_POLICY_INT_H
#define HSM_POLICY_INT_H

#include <stdarg.h>
#include <stdint.h>

#include "policy/policy.h"

#define POL_MAX_DIAGS	 100
#define POL_GLOB_MAXOPS	 500 /* states of the glob automaton: one 512-bit set */
#define POL_XSLOTS	 8   /* xattr values cached per evaluation */
#define POL_XBUF	 512 /* bytes of each cached xattr value */
#define POL_MEMO_CLASSES 128
#define POL_BLOCKS	 (7 * 96) /* 15-minute blocks of a week */

/* ---- memory ---- */

struct pol_chunk;
struct pol_arena {
	struct pol_chunk *head;
	int failed; /* an allocation failed: the policy is unusable */
};
void *pa_alloc(struct pol_arena *a, size_t n);
char *pa_strndup(struct pol_arena *a, const char *s, size_t n);
void pa_free(struct pol_arena *a);

/* A growable string (malloc'd); on out of memory it stops growing and sets failed. */
struct pol_buf {
	char *s;
	size_t len, cap;
	int failed;
};
void pb_add(struct pol_buf *b, const char *s, size_t n);
void pb_puts(struct pol_buf *b, const char *s);
void pb_printf(struct pol_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pb_free(struct pol_buf *b);

void pol_diag(struct policy_diags *d, int sev, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void pol_diag_oom(struct policy_diags *d);
void pol_vdiag(struct policy_diags *d, int sev, int line, int col, const char *fmt, va_list ap);

/* ---- tokens ---- */

enum pol_tok {
	T_EOF,
	T_NL,
	T_ERR, /* the lexer already reported it: the parser skips the statement silently */
	T_WORD,
	T_NUM, /* digits, optional fraction and a unit glued to it: "30d", "10MB/s", "90%" */
	T_STR,
	T_LP,
	T_RP,
	T_LB,
	T_RB,
	T_COMMA,
	T_MATCH,
	T_NMATCH,
	T_EQ,
	T_NE,
	T_LT,
	T_LE,
	T_GT,
	T_GE,
	T_DASH,
	T_COLON,
};

struct pol_token {
	int type;
	int line, col;
	const char *s; /* the text; for T_STR the unescaped value (in the lexer's buffer) */
	size_t n;
	const char *raw; /* T_STR: the source from the opening quote, to map columns */
};

/* Tokenizes text into *toks (malloc'd, ends with T_EOF) and the unescaped strings into
 * *strs (malloc'd); both owned by the caller. Lexical errors go to d. -1 on out of
 * memory. */
int pol_lex(const char *text, size_t len, struct policy_diags *d, struct pol_token **toks,
	    size_t *ntoks, char **strs);
/* The column of byte k of a string token's unescaped value. */
int pol_str_col(const struct pol_token *t, size_t k);

/* ---- globs ---- */

enum pol_glob_kind {
	G_EXACT,
	G_SUFFIX,
	G_PREFIX,
	G_PREFIX_ANY,
	G_ANY,
	G_CONTAINS, /* `**` `/LIT/` `**`: lit is "/LIT/" */
	G_LAST,	    /* `**` `/` then a glob without '/': sub against the last component */
	G_NFA,
};

struct pol_gop {
	uint8_t type; /* enum pol_gop_type in glob.c */
	uint8_t c;
	uint16_t set; /* index into sets */
};

struct pol_glob {
	const char *src; /* the glob as written (unescaped string) */
	int kind;
	const char *lit; /* G_EXACT/SUFFIX/PREFIX*: the literal part */
	size_t litn;
	const struct pol_gop *ops;
	size_t nops;
	const uint8_t (*sets)[32];
	/* G_NFA: the literal head and tail every match must have, tested first */
	const char *pre, *suf;
	size_t pren, sufn;
	const struct pol_glob *sub; /* G_LAST */
};

/* Compiles src into g (arena-owned). On a malformed glob returns -1 with *errpos the
 * byte of src at fault and *err the reason. */
int pol_glob_compile(struct pol_arena *a, const char *src, struct pol_glob *g, size_t *errpos,
		     const char **err);
int pol_glob_match(const struct pol_glob *g, const char *s);

/* ---- schedules ---- */

struct pol_sched {
	uint64_t bits[(POL_BLOCKS + 63) / 64];
};
void pol_sched_set(struct pol_sched *s, int block);
int pol_sched_has(const struct pol_sched *s, int block);

/* ---- the compiled policy ---- */

enum pol_node_kind {
	N_TRUE,
	N_FALSE,
	N_NOT,
	N_AND,
	N_OR,
	N_CLASS,
	N_PATH_GLOB,
	N_NAME_GLOB,
	N_PATH_EQ,
	N_NAME_EQ,
	N_VOLUME,
	N_SIZE,
	N_AGE, /* slot: 0 atime, 1 mtime, 2 ctime */
	N_UID,
	N_GID,
	N_STATE,
	N_FLAG,
	N_SITE,
	N_XATTR_EXISTS,
	N_XATTR_EQ,
	N_XATTR_GLOB,
};

enum pol_cmp { C_LT, C_LE, C_GT, C_GE, C_EQ, C_NE };

struct pol_class;

struct pol_node {
	int kind;
	int line, col;
	int cmp; /* enum pol_cmp; for = / != / ~ / !~ leaves: C_EQ or C_NE */
	struct pol_node *a, *b;
	uint64_t u;	 /* size, age in seconds, uid/gid, state, flag mask */
	const char *str; /* string operand, site, xattr name */
	const char *val; /* xattr value */
	struct pol_glob *globs;
	size_t nglobs;
	int slot; /* xattr cache slot, class index, time field */
	const struct pol_class *cls;
};

struct pol_class {
	const char *name;
	int line, col;
	int index;
	int used;
	struct pol_node *cond;
};

struct policy_rule {
	int line, col;
	int num;    /* 1-based, in file order among rules (excludes included) */
	int action; /* enum policy_action, -1 = exclude */
	int no;
	const char **sites;
	size_t nsites;
	struct pol_node *cond; /* never NULL: N_TRUE when the rule has no where */
	unsigned high, low;
	int keys[3];
	size_t nkeys;
	unsigned copies;
	const char *text;
};

enum pol_dest { D_STORE, D_PEER, D_PEERS };

struct pol_limit {
	int line;
	int dest;
	const char *peer;
	uint64_t rate;
	int always; /* no `during` */
	struct pol_sched sched;
};

struct pol_stmt {
	int line;
	const char *text;
};

struct policy {
	struct pol_arena arena;
	struct policy_rule **rules; /* file order */
	size_t nrules;
	struct policy_rule **excl;
	size_t nexcl;
	struct policy_rule **act[POLICY_NACTIONS];
	size_t nact[POLICY_NACTIONS];
	struct pol_limit *limits;
	size_t nlimits;
	struct pol_limit *windows; /* rate unused */
	size_t nwindows;
	struct pol_stmt *stmts; /* every statement, for dump */
	size_t nstmts;
	struct pol_class **classes;
	size_t nclasses;
	const char **xnames; /* xattr cache slots */
	size_t nxnames;
	unsigned scan;
	unsigned needs;
};

extern const char *const pol_action_names[POLICY_NACTIONS];

/* ---- evaluation ---- */

struct pol_xslot {
	long len; /* -2 not read yet, -1 absent */
	char buf[POL_XBUF];
};

struct pol_ctx {
	const struct policy *p;
	const struct policy_file *f;
	const char *name;
	int64_t now;
	uint64_t cknown[POL_MEMO_CLASSES / 64], cval[POL_MEMO_CLASSES / 64];
	struct pol_xslot x[POL_XSLOTS + 1]; /* the last: names past the cache, read each time */
};

void pol_ctx_init(struct pol_ctx *c, const struct policy *p, const struct policy_file *f,
		  int64_t now);
int pol_eval_node(struct pol_ctx *c, const struct pol_node *n);
int pol_eval_leaf(struct pol_ctx *c, const struct pol_node *n);
int pol_rule_applies(const struct policy_rule *r, const char *site);
/* The xattr value for node n's name (cached): length, -1 absent; *val set. */
long pol_xattr(struct pol_ctx *c, const struct pol_node *n, const char **val);
int64_t pol_age(const struct pol_ctx *c, int which);
int pol_cmp_u64(int cmp, uint64_t a, uint64_t b);

/* ---- text ---- */

void pol_print_node(struct pol_buf *b, const struct pol_node *n);
void pol_print_leaf(struct pol_buf *b, const struct pol_node *n);
void pol_print_string(struct pol_buf *b, const char *s);
extern const char *const pol_cmp_names[6];
extern const char *const pol_time_names[3];
void pol_human_size(char *out, size_t cap, uint64_t v);
void pol_human_age(char *out, size_t cap, int64_t v);

/* ---- the parser (parse.c; schedule.c parses limits and windows with it) ---- */

struct pol_vec {
	void **v;
	size_t n, cap;
	int failed;
};
void pv_push(struct pol_vec *v, void *x);

struct pol_parser {
	const char *file;
	const struct pol_token *t;
	size_t nt, i;
	int depth; /* inside ( ) or { }: newlines are blanks */
	struct policy_diags *d;
	const struct policy_env *env;
	struct policy *p;
	struct pol_vec rules, limits, windows, stmts, classes, xnames;
	int scan_line;
	int nest, nbin; /* of the current condition: bounded, so recursion is */
};

const struct pol_token *pp_peek(struct pol_parser *pp);
const struct pol_token *pp_next(struct pol_parser *pp);
int pp_is(const struct pol_token *t, const char *word);
/* "found X, expected WHAT" at t; returns -1 (nothing if t is T_ERR: already said). */
int pp_expected(struct pol_parser *pp, const struct pol_token *t, const char *what);
int pp_error(struct pol_parser *pp, const struct pol_token *t, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Splits a T_NUM into its value scaled by mult/div and its unit; -1 on overflow. */
int pp_number(const struct pol_token *t, uint64_t mult, uint64_t div, uint64_t *out,
	      const char **unit, size_t *unitn);
int pp_duration(struct pol_parser *pp, uint64_t *secs);
int pp_site(struct pol_parser *pp, const char **site);

int pp_unit_is(const char *u, size_t n, const char *s);
const char *pp_strdup(struct pol_parser *pp, const struct pol_token *t);
int pp_size(struct pol_parser *pp, uint64_t *bytes);

/* cond.c: a condition (`or` is the loosest), a node, one glob of a string token. */
struct pol_node *pol_cond(struct pol_parser *pp);
struct pol_node *pol_node_new(struct pol_parser *pp, int kind, const struct pol_token *at);
int pol_glob_one(struct pol_parser *pp, const struct pol_token *t, struct pol_glob *g);

int pol_parse_limit(struct pol_parser *pp, struct pol_buf *text);
int pol_parse_window(struct pol_parser *pp, struct pol_buf *text);

/* ---- checks ---- */

void pol_check(const struct policy *p, struct policy_diags *d);
int pol_node_same(const struct pol_node *a, const struct pol_node *b);

#endif

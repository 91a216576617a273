/* Conditions: `not` > `and` > `or` over leaves that each test one attribute, resolved
 * at compile time (units to bytes and seconds, names to ids, globs compiled). */
#include <stdio.h>
#include <string.h>

#include "policy/policy_int.h"

int pp_size(struct pol_parser *pp, uint64_t *out)
{
	static const struct {
		const char *u;
		uint64_t m;
	} units[] = {
	    {"", 1},
	    {"B", 1},
	    {"K", 1ull << 10},
	    {"M", 1ull << 20},
	    {"G", 1ull << 30},
	    {"T", 1ull << 40},
	    {"KiB", 1ull << 10},
	    {"MiB", 1ull << 20},
	    {"GiB", 1ull << 30},
	    {"TiB", 1ull << 40},
	    {"KB", 1000ull},
	    {"MB", 1000000ull},
	    {"GB", 1000000000ull},
	    {"TB", 1000000000000ull},
	};
	const struct pol_token *t = pp_peek(pp);
	const char *u;
	size_t un;
	uint64_t v;

	if (t->type != T_NUM)
		return pp_expected(pp, t, "a size (like 10M)");
	pp_next(pp);
	if (pp_number(t, 1, 1, &v, &u, &un) < 0)
		return pp_error(pp, t, "size too large");
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (pp_unit_is(u, un, units[i].u)) {
			if (pp_number(t, units[i].m, 1, out, &u, &un) < 0)
				return pp_error(pp, t, "size too large");
			return 0;
		}
	return pp_error(pp, t,
			"unknown size unit \"%.*s\" (B, K, M, G, T, KiB, MiB, GiB, TiB, KB, MB, "
			"GB, TB)",
			(int)un, u);
}

/* ---- conditions ---- */

struct pol_node *pol_node_new(struct pol_parser *pp, int kind, const struct pol_token *at)
{
	struct pol_node *n = pa_alloc(&pp->p->arena, sizeof(*n));

	if (n != NULL) {
		n->kind = kind;
		n->line = at->line;
		n->col = at->col;
		n->slot = -1;
	}
	return n;
}

static int cmp_op(const struct pol_token *t)
{
	switch (t->type) {
	case T_LT:
		return C_LT;
	case T_LE:
		return C_LE;
	case T_GT:
		return C_GT;
	case T_GE:
		return C_GE;
	case T_EQ:
		return C_EQ;
	case T_NE:
		return C_NE;
	default:
		return -1;
	}
}

/* `=` or `!=`: C_EQ / C_NE, or -1 after an error. */
static int eq_op(struct pol_parser *pp, const char *what)
{
	const struct pol_token *t = pp_peek(pp);
	char buf[64];

	if (t->type == T_EQ || t->type == T_NE) {
		pp_next(pp);
		return t->type == T_EQ ? C_EQ : C_NE;
	}
	snprintf(buf, sizeof(buf), "\"=\" or \"!=\" after %s", what);
	return pp_expected(pp, t, buf);
}

int pol_glob_one(struct pol_parser *pp, const struct pol_token *t, struct pol_glob *g)
{
	size_t pos;
	const char *err;
	const char *src = pp_strdup(pp, t);

	if (src == NULL)
		return -1;
	if (pol_glob_compile(&pp->p->arena, src, g, &pos, &err) < 0) {
		pol_diag(pp->d, POLICY_ERROR, t->line, pol_str_col(t, pos), "%s", err);
		return -1;
	}
	return 0;
}

/* A glob or a { list } of them after ~ / !~. */
static int glob_list(struct pol_parser *pp, struct pol_node *n)
{
	const struct pol_token *t = pp_peek(pp);
	struct pol_glob gl[64];
	size_t k = 0;

	if (t->type == T_STR) {
		pp_next(pp);
		n->globs = pa_alloc(&pp->p->arena, sizeof(*n->globs));
		n->nglobs = 1;
		return n->globs == NULL ? -1 : pol_glob_one(pp, t, n->globs);
	}
	if (t->type != T_LB)
		return pp_expected(pp, t, "a glob string or { list }");
	pp_next(pp);
	pp->depth++;
	for (;;) {
		t = pp_peek(pp);
		if (t->type == T_RB && k > 0)
			break;
		if (t->type != T_STR)
			return pp_expected(pp, t,
					   k ? "a glob string, \",\" or \"}\"" : "a glob string");
		pp_next(pp);
		if (k == sizeof(gl) / sizeof(gl[0]))
			return pp_error(pp, t, "too many globs in one list (at most 64)");
		if (pol_glob_one(pp, t, &gl[k++]) < 0)
			return -1;
		if (pp_peek(pp)->type == T_COMMA)
			pp_next(pp);
	}
	pp_next(pp);
	pp->depth--;
	n->globs = pa_alloc(&pp->p->arena, k * sizeof(*n->globs));
	if (n->globs == NULL)
		return -1;
	memcpy(n->globs, gl, k * sizeof(*gl));
	n->nglobs = k;
	return 0;
}

static struct pol_node *leaf_pathname(struct pol_parser *pp, const struct pol_token *kw)
{
	int path = pp_is(kw, "path");
	struct pol_node *n = pol_node_new(pp, path ? N_PATH_GLOB : N_NAME_GLOB, kw);
	const struct pol_token *t = pp_next(pp);

	if (n == NULL)
		return NULL;
	if (t->type == T_MATCH || t->type == T_NMATCH) {
		n->cmp = t->type == T_MATCH ? C_EQ : C_NE;
		return glob_list(pp, n) < 0 ? NULL : n;
	}
	if (t->type == T_EQ || t->type == T_NE) {
		n->kind = path ? N_PATH_EQ : N_NAME_EQ;
		n->cmp = t->type == T_EQ ? C_EQ : C_NE;
		t = pp_next(pp);
		if (t->type != T_STR) {
			pp_expected(pp, t, "a string");
			return NULL;
		}
		n->str = pp_strdup(pp, t);
		return n->str ? n : NULL;
	}
	pp_expected(pp, t, "\"~\", \"!~\", \"=\" or \"!=\"");
	return NULL;
}

static struct pol_node *leaf_cmp(struct pol_parser *pp, const struct pol_token *kw, int kind)
{
	struct pol_node *n = pol_node_new(pp, kind, kw);
	const struct pol_token *t = pp_peek(pp);

	if (n == NULL)
		return NULL;
	n->cmp = cmp_op(t);
	if (n->cmp < 0) {
		pp_expected(pp, t, "a comparison (<, <=, >, >=, =, !=)");
		return NULL;
	}
	pp_next(pp);
	if (kind == N_SIZE) {
		if (pp_size(pp, &n->u) < 0)
			return NULL;
		return n;
	}
	n->slot = pp_is(kw, "atime") ? 0 : pp_is(kw, "mtime") ? 1 : 2;
	pp->p->needs |= n->slot == 0 ? POLICY_NEEDS_ATIME : n->slot == 2 ? POLICY_NEEDS_CTIME : 0;
	return pp_duration(pp, &n->u) < 0 ? NULL : n;
}

static struct pol_node *leaf_id(struct pol_parser *pp, const struct pol_token *kw)
{
	int user = pp_is(kw, "owner");
	struct pol_node *n = pol_node_new(pp, user ? N_UID : N_GID, kw);
	const struct pol_token *t;
	const char *u;
	size_t un;

	if (n == NULL || (n->cmp = eq_op(pp, user ? "owner" : "group")) < 0)
		return NULL;
	pp->p->needs |= POLICY_NEEDS_OWNER;
	t = pp_next(pp);
	if (t->type == T_NUM) {
		if (pp_number(t, 1, 1, &n->u, &u, &un) < 0 || un != 0 || n->u > UINT32_MAX ||
		    memchr(t->s, '.', t->n) != NULL) {
			pp_error(pp, t, "invalid %s id \"%.*s\"", user ? "user" : "group",
				 (int)t->n, t->s);
			return NULL;
		}
		return n;
	}
	if (t->type != T_WORD && t->type != T_STR) {
		pp_expected(pp, t, user ? "a user name or uid" : "a group name or gid");
		return NULL;
	}
	const struct policy_env *env = pp->env;
	char name[256];
	uint32_t id;

	if (env == NULL || env->resolve == NULL) {
		pp_error(pp, t, "cannot resolve %s name \"%.*s\": no resolver, use a numeric %s",
			 user ? "user" : "group", (int)t->n, t->s, user ? "uid" : "gid");
		return NULL;
	}
	snprintf(name, sizeof(name), "%.*s", (int)t->n, t->s);
	if (t->n >= sizeof(name) || memchr(t->s, '\0', t->n) != NULL ||
	    env->resolve(env->resolve_arg, user ? POLICY_USER : POLICY_GROUP, name, &id) != 0) {
		pp_error(pp, t, "unknown %s \"%.*s\"", user ? "user" : "group",
			 t->n > 60 ? 60 : (int)t->n, t->s);
		return NULL;
	}
	n->u = id;
	return n;
}

static struct pol_node *leaf_state(struct pol_parser *pp, const struct pol_token *kw)
{
	struct pol_node *n = pol_node_new(pp, N_STATE, kw);
	const struct pol_token *t;

	if (n == NULL || (n->cmp = eq_op(pp, "state")) < 0)
		return NULL;
	t = pp_next(pp);
	if (pp_is(t, "resident"))
		n->u = POLICY_RESIDENT;
	else if (pp_is(t, "archived"))
		n->u = POLICY_ARCHIVED;
	else if (pp_is(t, "stub"))
		n->u = POLICY_STUB;
	else {
		pp_expected(pp, t, "resident, archived or stub");
		return NULL;
	}
	return n;
}

static int xattr_slot(struct pol_parser *pp, const char *name)
{
	for (size_t i = 0; i < pp->xnames.n; i++)
		if (strcmp(pp->xnames.v[i], name) == 0)
			return (int)i;
	if (pp->xnames.n >= POL_XSLOTS)
		return -1;
	pv_push(&pp->xnames, (void *)name);
	return (int)pp->xnames.n - 1;
}

static struct pol_node *leaf_xattr(struct pol_parser *pp, const struct pol_token *kw)
{
	struct pol_node *n = pol_node_new(pp, N_XATTR_EXISTS, kw);
	const struct pol_token *t = pp_next(pp);

	if (n == NULL)
		return NULL;
	if (t->type != T_STR) {
		pp_expected(pp, t, "an xattr name string");
		return NULL;
	}
	pp->p->needs |= POLICY_NEEDS_XATTR;
	if ((n->str = pp_strdup(pp, t)) == NULL)
		return NULL;
	n->slot = xattr_slot(pp, n->str);
	t = pp_next(pp);
	if (pp_is(t, "exists"))
		return n;
	if (t->type == T_EQ || t->type == T_NE) {
		n->kind = N_XATTR_EQ;
		n->cmp = t->type == T_EQ ? C_EQ : C_NE;
		t = pp_next(pp);
		if (t->type != T_STR) {
			pp_expected(pp, t, "a value string");
			return NULL;
		}
		n->val = pp_strdup(pp, t);
		return n->val ? n : NULL;
	}
	if (t->type == T_MATCH || t->type == T_NMATCH) {
		n->kind = N_XATTR_GLOB;
		n->cmp = t->type == T_MATCH ? C_EQ : C_NE;
		return glob_list(pp, n) < 0 ? NULL : n;
	}
	pp_expected(pp, t, "exists, \"=\", \"!=\", \"~\" or \"!~\"");
	return NULL;
}

static struct pol_node *leaf_str(struct pol_parser *pp, const struct pol_token *kw, int kind)
{
	struct pol_node *n = pol_node_new(pp, kind, kw);
	const struct pol_token *t;

	if (n == NULL || (n->cmp = eq_op(pp, kind == N_SITE ? "site" : "volume")) < 0)
		return NULL;
	if (kind == N_SITE)
		return pp_site(pp, &n->str) < 0 ? NULL : n;
	t = pp_next(pp);
	if (t->type != T_STR && t->type != T_WORD) {
		pp_expected(pp, t, "a volume name");
		return NULL;
	}
	n->str = pp_strdup(pp, t);
	return n->str ? n : NULL;
}

static struct pol_node *cond_class(struct pol_parser *pp, const struct pol_token *kw)
{
	const struct pol_token *t = pp_next(pp);
	struct pol_node *n;

	if (t->type != T_WORD) {
		pp_expected(pp, t, "a class name");
		return NULL;
	}
	for (size_t i = 0; i < pp->classes.n; i++) {
		struct pol_class *c = pp->classes.v[i];

		if (strlen(c->name) == t->n && memcmp(c->name, t->s, t->n) == 0) {
			if ((n = pol_node_new(pp, N_CLASS, kw)) == NULL)
				return NULL;
			c->used = 1;
			n->cls = c;
			n->slot = c->index;
			return n;
		}
	}
	pp_error(pp, t, "unknown class \"%.*s\" (a class must be defined before it is used)",
		 (int)t->n, t->s);
	return NULL;
}

/* Nesting is bounded so that parsing, checking and evaluating recurse a bounded depth. */
static int nest_enter(struct pol_parser *pp, const struct pol_token *t)
{
	if (pp->nest >= 64)
		return pp_error(pp, t, "condition nested too deeply (at most 64 levels)");
	pp->nest++;
	return 0;
}

static struct pol_node *cond_primary(struct pol_parser *pp)
{
	const struct pol_token *t = pp_next(pp);
	static const struct {
		const char *w;
		unsigned flag;
	} flags[] = {{"pinned", POLICY_F_PINNED},
		     {"dirty", POLICY_F_DIRTY},
		     {"noarchive", POLICY_F_NOARCHIVE}};

	if (t->type == T_LP) {
		pp->depth++;
		if (nest_enter(pp, t) < 0)
			return NULL;
		struct pol_node *n = pol_cond(pp);

		pp->nest--;

		if (n == NULL)
			return NULL;
		t = pp_peek(pp);
		if (t->type != T_RP) {
			pp_expected(pp, t, "\")\", \"and\" or \"or\"");
			return NULL;
		}
		pp_next(pp);
		pp->depth--;
		return n;
	}
	if (pp_is(t, "true") || pp_is(t, "false"))
		return pol_node_new(pp, pp_is(t, "true") ? N_TRUE : N_FALSE, t);
	if (pp_is(t, "class"))
		return cond_class(pp, t);
	if (pp_is(t, "path") || pp_is(t, "name"))
		return leaf_pathname(pp, t);
	if (pp_is(t, "size"))
		return leaf_cmp(pp, t, N_SIZE);
	if (pp_is(t, "atime") || pp_is(t, "mtime") || pp_is(t, "ctime"))
		return leaf_cmp(pp, t, N_AGE);
	if (pp_is(t, "owner") || pp_is(t, "group"))
		return leaf_id(pp, t);
	if (pp_is(t, "state"))
		return leaf_state(pp, t);
	if (pp_is(t, "site"))
		return leaf_str(pp, t, N_SITE);
	if (pp_is(t, "volume"))
		return leaf_str(pp, t, N_VOLUME);
	if (pp_is(t, "xattr"))
		return leaf_xattr(pp, t);
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
		if (pp_is(t, flags[i].w)) {
			struct pol_node *n = pol_node_new(pp, N_FLAG, t);

			if (n != NULL)
				n->u = flags[i].flag;
			return n;
		}
	pp_expected(pp, t, "a condition");
	return NULL;
}

static struct pol_node *cond_not(struct pol_parser *pp)
{
	const struct pol_token *t = pp_peek(pp);

	if (pp_is(t, "not")) {
		pp_next(pp);
		if (nest_enter(pp, t) < 0)
			return NULL;
		struct pol_node *a = cond_not(pp), *n;

		pp->nest--;
		if (a == NULL || (n = pol_node_new(pp, N_NOT, t)) == NULL)
			return NULL;
		n->a = a;
		return n;
	}
	return cond_primary(pp);
}

static struct pol_node *cond_bin(struct pol_parser *pp, const char *op, int kind,
				 struct pol_node *(*sub)(struct pol_parser *))
{
	struct pol_node *l = sub(pp);

	while (l != NULL && pp_is(pp_peek(pp), op)) {
		const struct pol_token *t = pp_next(pp);

		if (++pp->nbin > 1000) {
			pp_error(pp, t, "condition too long (at most 1000 \"and\" and \"or\")");
			return NULL;
		}
		struct pol_node *r = sub(pp), *n;

		if (r == NULL || (n = pol_node_new(pp, kind, t)) == NULL)
			return NULL;
		n->line = l->line;
		n->col = l->col;
		n->a = l;
		n->b = r;
		l = n;
	}
	return l;
}

static struct pol_node *cond_and(struct pol_parser *pp)
{
	return cond_bin(pp, "and", N_AND, cond_not);
}

struct pol_node *pol_cond(struct pol_parser *pp)
{
	return cond_bin(pp, "or", N_OR, cond_and);
}

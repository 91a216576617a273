/* The policy parser: one statement per line, recovering at the end of the statement
 * after an error so one run reports every error of the file (as pf's parse.y does);
 * the statements here, their conditions in cond.c, schedules in schedule.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy_int.h"

const char *const pol_action_names[POLICY_NACTIONS] = {"archive",  "release", "pin",
						       "prefetch", "place",   "copies"};

/* ---- tokens ---- */

const struct pol_token *pp_peek(struct pol_parser *pp)
{
	while (pp->depth > 0 && pp->t[pp->i].type == T_NL)
		pp->i++;
	return &pp->t[pp->i];
}

const struct pol_token *pp_next(struct pol_parser *pp)
{
	const struct pol_token *t = pp_peek(pp);

	/* the end of a statement is never consumed, so recovery always finds it */
	if (t->type != T_EOF && t->type != T_NL)
		pp->i++;
	return t;
}

int pp_is(const struct pol_token *t, const char *word)
{
	return t->type == T_WORD && strlen(word) == t->n && memcmp(t->s, word, t->n) == 0;
}

int pp_error(struct pol_parser *pp, const struct pol_token *t, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	pol_vdiag(pp->d, POLICY_ERROR, t->line, t->col, fmt, ap);
	va_end(ap);
	return -1;
}

int pp_expected(struct pol_parser *pp, const struct pol_token *t, const char *what)
{
	if (t->type == T_ERR)
		return -1;
	if (t->type == T_NL)
		return pp_error(pp, t, "found end of line, expected %s", what);
	if (t->type == T_EOF)
		return pp_error(pp, t, "found end of file, expected %s", what);
	if (t->type == T_STR)
		return pp_error(pp, t, "found string \"%.*s\", expected %s",
				t->n > 60 ? 60 : (int)t->n, t->s, what);
	return pp_error(pp, t, "found \"%.*s\", expected %s", t->n > 60 ? 60 : (int)t->n, t->s,
			what);
}

static uint64_t pow10u(int n)
{
	uint64_t r = 1;

	while (n-- > 0)
		r *= 10;
	return r;
}

int pp_number(const struct pol_token *t, uint64_t mult, uint64_t div, uint64_t *out,
	      const char **unit, size_t *unitn)
{
	unsigned __int128 m = 0;
	size_t i = 0;
	int frac = -1;

	for (; i < t->n && ((t->s[i] >= '0' && t->s[i] <= '9') || t->s[i] == '.'); i++) {
		if (t->s[i] == '.') {
			frac = 0;
			continue;
		}
		if (frac >= 0 && frac >= 18)
			continue; /* beyond any precision that matters */
		m = m * 10 + (unsigned)(t->s[i] - '0');
		if (frac >= 0)
			frac++;
		if (m > (unsigned __int128)UINT64_MAX * 1000000000000000000ull)
			return -1;
	}
	*unit = t->s + i;
	*unitn = t->n - i;
	if (m > ~(unsigned __int128)0 / mult)
		return -1;
	m *= mult;
	m /= (unsigned __int128)div * pow10u(frac < 0 ? 0 : frac);
	if (m > UINT64_MAX)
		return -1;
	*out = (uint64_t)m;
	return 0;
}

int pp_unit_is(const char *u, size_t n, const char *s)
{
	return strlen(s) == n && memcmp(u, s, n) == 0;
}

int pp_duration(struct pol_parser *pp, uint64_t *secs)
{
	static const struct {
		const char *u;
		uint64_t s;
	} units[] = {{"s", 1},	   {"min", 60},	     {"h", 3600},
		     {"d", 86400}, {"w", 7 * 86400}, {"y", 365 * 86400}};
	const struct pol_token *t = pp_peek(pp);
	const char *u;
	size_t un;
	uint64_t v;

	if (t->type != T_NUM)
		return pp_expected(pp, t, "a duration (like 30d)");
	pp_next(pp);
	if (pp_number(t, 1, 1, &v, &u, &un) < 0)
		return pp_error(pp, t, "number too large");
	if (un == 0)
		return pp_error(pp, t, "expected a unit after %.*s (s, min, h, d, w, y)", (int)t->n,
				t->s);
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (pp_unit_is(u, un, units[i].u)) {
			if (pp_number(t, units[i].s, 1, secs, &u, &un) < 0 ||
			    *secs > (uint64_t)INT64_MAX)
				return pp_error(pp, t, "duration too large");
			return 0;
		}
	return pp_error(pp, t, "unknown duration unit \"%.*s\" (s, min, h, d, w, y)", (int)un, u);
}

const char *pp_strdup(struct pol_parser *pp, const struct pol_token *t)
{
	return pa_strndup(&pp->p->arena, t->s, t->n);
}

int pp_site(struct pol_parser *pp, const char **site)
{
	const struct pol_token *t = pp_peek(pp);

	if (t->type != T_WORD && t->type != T_STR)
		return pp_expected(pp, t, "a site name");
	pp_next(pp);
	if (pp->env != NULL && pp->env->sites != NULL) {
		size_t i;

		for (i = 0; i < pp->env->nsites; i++)
			if (strlen(pp->env->sites[i]) == t->n &&
			    memcmp(pp->env->sites[i], t->s, t->n) == 0)
				break;
		if (i == pp->env->nsites)
			return pp_error(pp, t, "unknown site \"%.*s\"", (int)t->n, t->s);
	}
	*site = pp_strdup(pp, t);
	return 0;
}

/* ---- statements ---- */

static int stmt_add(struct pol_parser *pp, int line, struct pol_buf *text)
{
	struct pol_stmt *s = pa_alloc(&pp->p->arena, sizeof(*s));

	if (text->failed)
		pp->p->arena.failed = 1;
	if (s == NULL || text->failed)
		return -1;
	s->line = line;
	s->text = pa_strndup(&pp->p->arena, text->s ? text->s : "", text->len);
	pv_push(&pp->stmts, s);
	return s->text ? 0 : -1;
}

static int st_class(struct pol_parser *pp, const struct pol_token *kw, struct pol_buf *text)
{
	const struct pol_token *t = pp_next(pp);
	struct pol_class *c;

	if (t->type != T_WORD)
		return pp_expected(pp, t, "a class name");
	if (!pp_is(pp_peek(pp), "where"))
		return pp_expected(pp, pp_peek(pp), "\"where\"");
	pp_next(pp);
	struct pol_node *cond = pol_cond(pp);

	if (cond == NULL)
		return -1;
	for (size_t i = 0; i < pp->classes.n; i++) {
		c = pp->classes.v[i];
		if (strlen(c->name) == t->n && memcmp(c->name, t->s, t->n) == 0)
			return pp_error(pp, t, "duplicate class \"%s\" (first defined at line %d)",
					c->name, c->line);
	}
	if ((c = pa_alloc(&pp->p->arena, sizeof(*c))) == NULL)
		return -1;
	c->name = pp_strdup(pp, t);
	c->line = kw->line;
	c->col = t->col;
	c->index = (int)pp->classes.n;
	c->cond = cond;
	pv_push(&pp->classes, c);
	pb_printf(text, "class %s where ", c->name ? c->name : "");
	pol_print_node(text, cond);
	return stmt_add(pp, kw->line, text);
}

static struct policy_rule *rule_new(struct pol_parser *pp, const struct pol_token *kw, int action)
{
	struct policy_rule *r = pa_alloc(&pp->p->arena, sizeof(*r));

	if (r != NULL) {
		r->line = kw->line;
		r->col = kw->col;
		r->action = action;
	}
	return r;
}

/* Every rule ends in the rule list, text and all, so explain and dump see it. */
static int rule_add(struct pol_parser *pp, struct policy_rule *r, struct pol_buf *text)
{
	if (r->cond == NULL) {
		/* line 0 marks "no where": dump prints nothing for it */
		if ((r->cond = pol_node_new(pp, N_TRUE, &pp->t[pp->i])) == NULL)
			return -1;
		r->cond->line = 0;
		r->cond->col = 0;
	}
	if (r->action < 0) {
		pb_puts(text, "exclude where ");
		pol_print_node(text, r->cond);
	} else {
		pb_printf(text, "%s%s", r->no ? "no " : "", pol_action_names[r->action]);
		if (r->action == POLICY_COPIES && !r->no)
			pb_printf(text, " %u", r->copies);
		for (size_t i = 0; i < r->nsites; i++)
			pb_printf(text, "%s%s", i ? ", " : " at ", r->sites[i]);
		if (r->high)
			pb_printf(text, " watermark %u%% %u%%", r->high, r->low);
		for (size_t i = 0; i < r->nkeys; i++)
			pb_printf(text, "%s%s", i ? ", " : " order ",
				  r->keys[i] == POLICY_ORDER_ATIME   ? "atime"
				  : r->keys[i] == POLICY_ORDER_MTIME ? "mtime"
								     : "size");
		if (r->cond->kind != N_TRUE || r->cond->line != 0) {
			pb_puts(text, " where ");
			pol_print_node(text, r->cond);
		}
	}
	if (text->failed)
		pp->p->arena.failed = 1;
	if (text->failed || (r->text = pa_strndup(&pp->p->arena, text->s, text->len)) == NULL)
		return -1;
	r->num = (int)pp->rules.n + 1;
	pv_push(&pp->rules, r);
	return stmt_add(pp, r->line, text);
}

static int st_exclude(struct pol_parser *pp, const struct pol_token *kw, struct pol_buf *text)
{
	struct policy_rule *r = rule_new(pp, kw, -1);
	const struct pol_token *t = pp_peek(pp);

	if (r == NULL)
		return -1;
	if (pp_is(t, "where")) {
		pp_next(pp);
		if ((r->cond = pol_cond(pp)) == NULL)
			return -1;
		return rule_add(pp, r, text);
	}
	if (t->type != T_STR)
		return pp_expected(pp, t, "\"where\" or a glob string");
	/* the shorthand: name ~ glob without '/', path ~ glob with one */
	struct pol_glob g[2][64];
	size_t k[2] = {0, 0};

	for (;;) {
		t = pp_next(pp);
		if (t->type != T_STR)
			return pp_expected(pp, t, "a glob string");
		int path = memchr(t->s, '/', t->n) != NULL;

		if (k[path] == 64)
			return pp_error(pp, t,
					"too many globs in one exclude (at most 64 of a kind)");
		if (pol_glob_one(pp, t, &g[path][k[path]++]) < 0)
			return -1;
		if (pp_peek(pp)->type != T_COMMA)
			break;
		pp_next(pp);
	}
	for (int path = 0; path < 2; path++) {
		if (k[path] == 0)
			continue;
		struct pol_node *n = pol_node_new(pp, path ? N_PATH_GLOB : N_NAME_GLOB, kw);

		if (n == NULL ||
		    (n->globs = pa_alloc(&pp->p->arena, k[path] * sizeof(g[0][0]))) == NULL)
			return -1;
		n->line = kw->line;
		n->col = kw->col + 8;
		n->cmp = C_EQ;
		memcpy(n->globs, g[path], k[path] * sizeof(g[0][0]));
		n->nglobs = k[path];
		if (r->cond == NULL) {
			r->cond = n;
		} else {
			struct pol_node *o = pol_node_new(pp, N_OR, kw);

			if (o == NULL)
				return -1;
			o->a = r->cond;
			o->b = n;
			r->cond = o;
		}
	}
	return rule_add(pp, r, text);
}

static int opt_at(struct pol_parser *pp, struct policy_rule *r)
{
	const char *s[64];
	size_t n = 0;

	do {
		if (n == 64)
			return pp_error(pp, pp_peek(pp), "too many sites (at most 64)");
		if (pp_site(pp, &s[n++]) < 0)
			return -1;
	} while (pp_peek(pp)->type == T_COMMA && pp_next(pp));
	if ((r->sites = pa_alloc(&pp->p->arena, n * sizeof(*s))) == NULL)
		return -1;
	memcpy(r->sites, s, n * sizeof(*s));
	r->nsites = n;
	return 0;
}

static int percent(struct pol_parser *pp, unsigned *v)
{
	const struct pol_token *t = pp_peek(pp);
	uint64_t x;
	const char *u;
	size_t un;

	if (t->type != T_NUM)
		return pp_expected(pp, t, "a percentage (like 90%)");
	pp_next(pp);
	if (pp_number(t, 1, 1, &x, &u, &un) < 0 || !pp_unit_is(u, un, "%") ||
	    memchr(t->s, '.', t->n) != NULL)
		return pp_error(pp, t, "expected a whole percentage like 90%%, found \"%.*s\"",
				(int)t->n, t->s);
	if (x > 100)
		return pp_error(pp, t, "watermark %.*s is above 100%%", (int)t->n, t->s);
	*v = (unsigned)x;
	return 0;
}

static int opt_watermark(struct pol_parser *pp, struct policy_rule *r)
{
	const struct pol_token *t = pp_peek(pp);
	unsigned hi, lo;

	if (percent(pp, &hi) < 0 || percent(pp, &lo) < 0)
		return -1;
	if (lo == 0)
		return pp_error(pp, t, "watermark low must be above 0%%");
	if (lo >= hi)
		return pp_error(pp, t, "watermark low (%u%%) must be below high (%u%%)", lo, hi);
	r->high = hi;
	r->low = lo;
	return 0;
}

static int opt_order(struct pol_parser *pp, struct policy_rule *r)
{
	do {
		const struct pol_token *t = pp_next(pp);
		int k = pp_is(t, "atime")   ? POLICY_ORDER_ATIME
			: pp_is(t, "mtime") ? POLICY_ORDER_MTIME
			: pp_is(t, "size")  ? POLICY_ORDER_SIZE
					    : 0;

		if (k == 0)
			return pp_expected(pp, t, "atime, mtime or size");
		for (size_t i = 0; i < r->nkeys; i++)
			if (r->keys[i] == k)
				return pp_error(pp, t, "order key \"%.*s\" given twice", (int)t->n,
						t->s);
		r->keys[r->nkeys++] = k;
	} while (pp_peek(pp)->type == T_COMMA && pp_next(pp));
	return 0;
}

static int action_of(const struct pol_token *t)
{
	for (int a = 0; a < POLICY_NACTIONS; a++)
		if (pp_is(t, pol_action_names[a]))
			return a;
	return -1;
}

static int st_action(struct pol_parser *pp, const struct pol_token *kw, int no,
		     struct pol_buf *text)
{
	const struct pol_token *akw = no ? pp_next(pp) : kw, *t;
	int a = action_of(akw);

	if (a < 0)
		return pp_expected(pp, akw,
				   "an action (archive, release, pin, prefetch, place, "
				   "copies)");
	struct policy_rule *r = rule_new(pp, kw, a);
	int at = 0, wm = 0, ord = 0;

	if (r == NULL)
		return -1;
	r->no = no;
	if (a == POLICY_COPIES && !no) {
		t = pp_next(pp);
		uint64_t v;
		const char *u;
		size_t un;

		if (t->type != T_NUM)
			return pp_expected(pp, t, "a number of copies");
		if (pp_number(t, 1, 1, &v, &u, &un) < 0 || un != 0 || v < 1 || v > 16 ||
		    memchr(t->s, '.', t->n) != NULL)
			return pp_error(pp, t,
					"copies must be a number from 1 to 16, found \"%.*s\"",
					(int)t->n, t->s);
		r->copies = (unsigned)v;
	}
	for (;;) {
		t = pp_peek(pp);
		if (pp_is(t, "at") && !at) {
			pp_next(pp);
			at = 1;
			if (opt_at(pp, r) < 0)
				return -1;
		} else if (pp_is(t, "watermark") && a == POLICY_RELEASE && !no && !wm) {
			pp_next(pp);
			wm = 1;
			if (opt_watermark(pp, r) < 0)
				return -1;
		} else if (pp_is(t, "order") && a == POLICY_RELEASE && !no && !ord) {
			pp_next(pp);
			ord = 1;
			if (opt_order(pp, r) < 0)
				return -1;
		} else if (pp_is(t, "where")) {
			pp_next(pp);
			if ((r->cond = pol_cond(pp)) == NULL)
				return -1;
			break;
		} else if (t->type == T_NL || t->type == T_EOF) {
			break;
		} else {
			return pp_expected(
			    pp, t,
			    a == POLICY_RELEASE && !no
				? "\"at\", \"watermark\", \"order\", \"where\" or end "
				  "of line"
				: "\"at\", \"where\" or end of line");
		}
	}
	if (a == POLICY_PLACE && !no && r->nsites != 1)
		return pp_error(pp, kw, "place needs exactly one site: place at SITE");
	if (a == POLICY_RELEASE && !no) {
		pp->p->needs |= POLICY_NEEDS_ATIME; /* the default order, or named */
		if (r->nkeys == 0) {
			r->keys[0] = POLICY_ORDER_ATIME;
			r->nkeys = 1;
		}
	}
	return rule_add(pp, r, text);
}

static int st_scan(struct pol_parser *pp, const struct pol_token *kw, struct pol_buf *text)
{
	const struct pol_token *t = pp_next(pp);
	uint64_t s;

	if (!pp_is(t, "every"))
		return pp_expected(pp, t, "\"every\"");
	t = pp_peek(pp);
	if (pp_duration(pp, &s) < 0)
		return -1;
	if (s == 0 || s > UINT32_MAX)
		return pp_error(pp, t, "scan interval must be from 1s to %us", UINT32_MAX);
	if (pp->scan_line)
		return pp_error(pp, kw, "scan interval given twice (first at line %d)",
				pp->scan_line);
	pp->scan_line = kw->line;
	pp->p->scan = (unsigned)s;
	pb_printf(text, "scan every %us", (unsigned)s);
	return stmt_add(pp, kw->line, text);
}

static int statement(struct pol_parser *pp)
{
	const struct pol_token *kw = pp_next(pp);
	struct pol_buf text = {0};
	int r;

	pp->nest = 0;
	pp->nbin = 0;

	if (pp_is(kw, "class"))
		r = st_class(pp, kw, &text);
	else if (pp_is(kw, "exclude"))
		r = st_exclude(pp, kw, &text);
	else if (pp_is(kw, "no"))
		r = st_action(pp, kw, 1, &text);
	else if (action_of(kw) >= 0)
		r = st_action(pp, kw, 0, &text);
	else if (pp_is(kw, "limit"))
		r = pol_parse_limit(pp, &text);
	else if (pp_is(kw, "window"))
		r = pol_parse_window(pp, &text);
	else if (pp_is(kw, "scan"))
		r = st_scan(pp, kw, &text);
	else
		r = pp_expected(pp, kw,
				"a statement (class, exclude, archive, release, pin, prefetch, "
				"place, copies, no, limit, window, scan)");
	pb_free(&text);
	if (r == 0) {
		const struct pol_token *t = pp_peek(pp);

		if (t->type != T_NL && t->type != T_EOF)
			r = pp_expected(pp, t, "end of line");
	}
	return r;
}

static void *vec_array(struct pol_parser *pp, struct pol_vec *v)
{
	void **a = pa_alloc(&pp->p->arena, (v->n ? v->n : 1) * sizeof(*a));

	if (a != NULL && v->n)
		memcpy(a, v->v, v->n * sizeof(*a));
	return a;
}

/* Copies the parser's lists into the policy's arrays, split per action for eval. */
static int finish(struct pol_parser *pp)
{
	struct policy *p = pp->p;

	if (pp->rules.failed || pp->limits.failed || pp->windows.failed || pp->stmts.failed ||
	    pp->classes.failed || pp->xnames.failed)
		return -1;
	p->rules = vec_array(pp, &pp->rules);
	p->nrules = pp->rules.n;
	p->classes = vec_array(pp, &pp->classes);
	p->nclasses = pp->classes.n;
	p->xnames = vec_array(pp, &pp->xnames);
	p->nxnames = pp->xnames.n;
	p->excl = pa_alloc(&p->arena, (p->nrules + 1) * sizeof(*p->excl));
	p->stmts = pa_alloc(&p->arena, (pp->stmts.n + 1) * sizeof(*p->stmts));
	p->limits = pa_alloc(&p->arena, (pp->limits.n + 1) * sizeof(*p->limits));
	p->windows = pa_alloc(&p->arena, (pp->windows.n + 1) * sizeof(*p->windows));
	for (int a = 0; a < POLICY_NACTIONS; a++)
		p->act[a] = pa_alloc(&p->arena, (p->nrules + 1) * sizeof(*p->act[a]));
	if (p->arena.failed)
		return -1;
	for (size_t i = 0; i < p->nrules; i++) {
		struct policy_rule *r = p->rules[i];

		if (r->action < 0)
			p->excl[p->nexcl++] = r;
		else
			p->act[r->action][p->nact[r->action]++] = r;
	}
	for (size_t i = 0; i < pp->stmts.n; i++)
		p->stmts[i] = *(struct pol_stmt *)pp->stmts.v[i];
	p->nstmts = pp->stmts.n;
	for (size_t i = 0; i < pp->limits.n; i++)
		p->limits[i] = *(struct pol_limit *)pp->limits.v[i];
	p->nlimits = pp->limits.n;
	for (size_t i = 0; i < pp->windows.n; i++)
		p->windows[i] = *(struct pol_limit *)pp->windows.v[i];
	p->nwindows = pp->windows.n;
	return 0;
}

/* Warnings come from a second pass: put every diag back in file order. */
static void diags_sort(struct policy_diags *d)
{
	for (size_t i = 1; i < d->n; i++) {
		struct policy_diag x = d->v[i];
		size_t j = i;

		while (j > 0 && (d->v[j - 1].line > x.line ||
				 (d->v[j - 1].line == x.line && d->v[j - 1].col > x.col))) {
			d->v[j] = d->v[j - 1];
			j--;
		}
		d->v[j] = x;
	}
}

static void diags_truncate(struct policy_diags *d, size_t n)
{
	while (d->n > n) {
		d->n--;
		if (d->v[d->n].severity == POLICY_ERROR)
			d->errors--;
		else
			d->warnings--;
	}
}

static void parser_free(struct pol_parser *pp)
{
	free(pp->rules.v);
	free(pp->limits.v);
	free(pp->windows.v);
	free(pp->stmts.v);
	free(pp->classes.v);
	free(pp->xnames.v);
}

static struct policy *compile(const char *file, const char *text, size_t len,
			      const struct policy_env *env, struct policy_diags *diags)
{
	struct pol_parser pp = {.file = file, .d = diags, .env = env};
	struct pol_token *toks = NULL;
	char *strs = NULL;
	int oom = 0;

	memset(diags, 0, sizeof(*diags));
	diags->v = calloc(POL_MAX_DIAGS + 1, sizeof(*diags->v));
	if (diags->v == NULL)
		return NULL;
	pp.p = calloc(1, sizeof(*pp.p));
	if (pp.p == NULL ||
	    pol_lex(text ? text : "", text ? len : 0, diags, &toks, &pp.nt, &strs) < 0) {
		free(pp.p);
		pol_diag_oom(diags);
		return NULL;
	}
	pp.t = toks;
	pp.p->scan = 600;
	for (;;) {
		const struct pol_token *t = pp_peek(&pp);

		if (t->type == T_EOF)
			break;
		if (t->type == T_NL) {
			pp.i++;
			continue;
		}
		size_t before = diags->n;

		if (statement(&pp) < 0) {
			pp.depth = 0;
			while (pp.t[pp.i].type != T_NL && pp.t[pp.i].type != T_EOF)
				pp.i++;
		}
		if (pp.p->arena.failed || pp.rules.failed || pp.limits.failed ||
		    pp.windows.failed || pp.stmts.failed || pp.classes.failed || pp.xnames.failed) {
			/* what this statement said may come from the failure itself */
			diags_truncate(diags, before);
			oom = 1;
			break;
		}
	}
	if (!oom && diags->errors == 0 && finish(&pp) < 0)
		oom = 1;
	free(toks);
	free(strs);
	parser_free(&pp);
	if (oom)
		pol_diag_oom(diags);
	if (oom || diags->errors > 0) {
		policy_free(pp.p);
		diags_sort(diags);
		return NULL;
	}
	pol_check(pp.p, diags);
	diags_sort(diags);
	return pp.p;
}

struct policy *policy_compile(const char *file, const char *text, size_t len,
			      const struct policy_env *env, struct policy_diags *diags)
{
	struct policy_diags spare;
	struct policy *p;

	if (diags != NULL)
		return compile(file, text, len, env, diags);
	/* the caller does not want them, but errors must still be counted */
	p = compile(file, text, len, env, &spare);
	policy_diags_free(&spare);
	return p;
}

void policy_free(struct policy *p)
{
	if (p == NULL)
		return;
	pa_free(&p->arena);
	free(p);
}

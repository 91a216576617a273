/* Warnings about a policy that compiles but does not say what its author meant: rules
 * that can never match, rules an earlier rule or an exclude always wins over, classes
 * nobody uses. Best effort: only what constant folding and structural identity prove. */
#include <string.h>

#include "policy/policy_int.h"

#define NEVER  (-1)
#define ALWAYS 1

static int str_same(const char *a, const char *b)
{
	return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

int pol_node_same(const struct pol_node *a, const struct pol_node *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	if (a->kind != b->kind || a->cmp != b->cmp || a->u != b->u || a->slot != b->slot ||
	    a->cls != b->cls || !str_same(a->str, b->str) || !str_same(a->val, b->val) ||
	    a->nglobs != b->nglobs)
		return 0;
	for (size_t i = 0; i < a->nglobs; i++)
		if (strcmp(a->globs[i].src, b->globs[i].src) != 0)
			return 0;
	return pol_node_same(a->a, b->a) && pol_node_same(a->b, b->b);
}

struct range {
	uint64_t lo, hi;
};

/* The values a comparison admits, as one interval (!= admits nearly all: the whole). */
static int range_of(const struct pol_node *n, uint64_t max, struct range *r)
{
	uint64_t v = n->u;

	r->lo = 0;
	r->hi = max;
	switch (n->cmp) {
	case C_LT:
		if (v == 0)
			return NEVER;
		r->hi = v - 1 < max ? v - 1 : max;
		break;
	case C_LE:
		r->hi = v < max ? v : max;
		break;
	case C_GT:
		if (v >= max)
			return NEVER;
		r->lo = v + 1;
		break;
	case C_GE:
		if (v > max)
			return NEVER;
		r->lo = v;
		break;
	case C_EQ:
		if (v > max)
			return NEVER;
		r->lo = r->hi = v;
		break;
	default:
		break;
	}
	return r->lo == 0 && r->hi == max ? ALWAYS : 0;
}

static int fold(const struct pol_node *n);

static size_t conjuncts(const struct pol_node *n, const struct pol_node **v, size_t k, size_t cap)
{
	if (n->kind == N_AND) {
		k = conjuncts(n->a, v, k, cap);
		return conjuncts(n->b, v, k, cap);
	}
	if (k < cap)
		v[k++] = n;
	return k;
}

/* A conjunction is empty when its size or age ranges do not meet or when it holds both
 * x and not x. */
static int fold_and(const struct pol_node *n)
{
	const struct pol_node *v[64];
	size_t k = conjuncts(n, v, 0, 64);
	struct range size = {0, UINT64_MAX}, age[3];
	int all = ALWAYS;

	for (int i = 0; i < 3; i++)
		age[i] = (struct range){0, INT64_MAX};
	for (size_t i = 0; i < k; i++) {
		int f = fold(v[i]);
		struct range r, *into = NULL;

		if (f == NEVER)
			return NEVER;
		if (f != ALWAYS)
			all = 0;
		if (v[i]->kind == N_SIZE)
			into = &size;
		else if (v[i]->kind == N_AGE)
			into = &age[v[i]->slot];
		if (into != NULL &&
		    range_of(v[i], into == &size ? UINT64_MAX : INT64_MAX, &r) == 0) {
			into->lo = r.lo > into->lo ? r.lo : into->lo;
			into->hi = r.hi < into->hi ? r.hi : into->hi;
			if (into->lo > into->hi)
				return NEVER;
		}
		if (v[i]->kind == N_NOT)
			for (size_t j = 0; j < k; j++)
				if (pol_node_same(v[i]->a, v[j]))
					return NEVER;
	}
	return all;
}

static int fold(const struct pol_node *n)
{
	struct range r;
	int a, b;

	switch (n->kind) {
	case N_TRUE:
		return ALWAYS;
	case N_FALSE:
		return NEVER;
	case N_NOT:
		return -fold(n->a);
	case N_AND:
		return fold_and(n);
	case N_OR:
		a = fold(n->a);
		b = fold(n->b);
		if (a == ALWAYS || b == ALWAYS)
			return ALWAYS;
		return a == NEVER && b == NEVER ? NEVER : 0;
	case N_SIZE:
		return range_of(n, UINT64_MAX, &r);
	case N_AGE:
		return range_of(n, INT64_MAX, &r);
	default:
		return 0;
	}
}

static void warn(struct policy_diags *d, int line, int col, const char *fmt, const char *a, int b)
{
	pol_diag(d, POLICY_WARNING, line, col, fmt, a, b);
}

static int sites_cover(const struct policy_rule *e, const struct policy_rule *r)
{
	if (e->nsites == 0 || (e->action == POLICY_PLACE && !e->no))
		return 1;
	if (r->nsites == 0)
		return 0;
	for (size_t i = 0; i < r->nsites; i++) {
		size_t j;

		for (j = 0; j < e->nsites && strcmp(e->sites[j], r->sites[i]) != 0; j++)
			;
		if (j == e->nsites)
			return 0;
	}
	return 1;
}

static void check_rule(const struct policy *p, size_t idx, struct policy_diags *d)
{
	const struct policy_rule *r = p->rules[idx];

	if (fold(r->cond) == NEVER) {
		warn(d, r->cond->line, r->cond->col, "%s condition can never match", "this", 0);
		return;
	}
	if (r->action < 0)
		return;
	for (size_t i = 0; i < p->nexcl; i++) {
		const struct policy_rule *x = p->excl[i];

		if (fold(x->cond) == ALWAYS || pol_node_same(x->cond, r->cond)) {
			warn(d, r->line, r->col,
			     "%s rule never applies: the exclude at line %d excludes every file it "
			     "matches",
			     pol_action_names[r->action], x->line);
			return;
		}
	}
	for (size_t i = 0; i < idx; i++) {
		const struct policy_rule *e = p->rules[i];

		if (e->action != r->action || !sites_cover(e, r))
			continue;
		if (fold(e->cond) == ALWAYS || pol_node_same(e->cond, r->cond)) {
			warn(d, r->line, r->col,
			     "%s rule is shadowed by the rule at line %d, which always decides "
			     "first",
			     pol_action_names[r->action], e->line);
			return;
		}
	}
}

void pol_check(const struct policy *p, struct policy_diags *d)
{
	for (size_t i = 0; i < p->nclasses; i++) {
		const struct pol_class *c = p->classes[i];

		if (!c->used)
			warn(d, c->line, c->col, "class \"%s\" is defined but never used", c->name,
			     0);
		if (fold(c->cond) == NEVER)
			warn(d, c->cond->line, c->cond->col, "class \"%s\" can never match",
			     c->name, 0);
	}
	for (size_t i = 0; i < p->nrules; i++)
		check_rule(p, i, d);
}

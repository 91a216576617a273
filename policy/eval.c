/* Evaluation: no allocation, no locks; everything one evaluation learns (the name, class
 * results, xattr values) lives in a context on the caller's stack. */
#include <string.h>

#include "policy/policy_int.h"

void pol_ctx_init(struct pol_ctx *c, const struct policy *p, const struct policy_file *f,
		  int64_t now)
{
	const char *slash = f->path ? strrchr(f->path, '/') : NULL;

	c->p = p;
	c->f = f;
	c->now = now;
	c->name = slash ? slash + 1 : f->path ? f->path : "";
	memset(c->cknown, 0, sizeof(c->cknown));
	for (size_t i = 0; i < p->nxnames && i < POL_XSLOTS; i++)
		c->x[i].len = -2;
}

int pol_cmp_u64(int cmp, uint64_t a, uint64_t b)
{
	switch (cmp) {
	case C_LT:
		return a < b;
	case C_LE:
		return a <= b;
	case C_GT:
		return a > b;
	case C_GE:
		return a >= b;
	case C_EQ:
		return a == b;
	default:
		return a != b;
	}
}

int64_t pol_age(const struct pol_ctx *c, int which)
{
	int64_t t = which == 0 ? c->f->atime : which == 1 ? c->f->mtime : c->f->ctime;

	/* a time in the future is age 0; the subtraction is done so it cannot overflow */
	if (t >= c->now)
		return 0;
	if (t < 0 && c->now > INT64_MAX + t)
		return INT64_MAX;
	return c->now - t;
}

long pol_xattr(struct pol_ctx *c, const struct pol_node *n, const char **val)
{
	const struct policy_file *f = c->f;
	struct pol_xslot *x, *spare = &c->x[POL_XSLOTS];

	*val = "";
	if (f->xattr == NULL)
		return -1;
	/* past the cache's slots a value is read again each time it is tested */
	x = n->slot >= 0 && n->slot < POL_XSLOTS ? &c->x[n->slot] : spare;
	if (x == spare || x->len == -2) {
		long len = f->xattr(f->xattr_arg, n->str, x->buf, sizeof(x->buf) - 1);

		if (len < 0)
			len = -1;
		x->len = len;
		x->buf[len < 0			      ? 0
		       : (size_t)len < sizeof(x->buf) ? (size_t)len
						      : sizeof(x->buf) - 1] = '\0';
	}
	*val = x->buf;
	return x->len;
}

static int globs_match(const struct pol_node *n, const char *s)
{
	for (size_t i = 0; i < n->nglobs; i++)
		if (pol_glob_match(&n->globs[i], s))
			return 1;
	return 0;
}

int pol_eval_leaf(struct pol_ctx *c, const struct pol_node *n)
{
	const struct policy_file *f = c->f;
	const char *v;
	long len;
	int r;

	switch (n->kind) {
	case N_TRUE:
		return 1;
	case N_FALSE:
		return 0;
	case N_PATH_GLOB:
		r = globs_match(n, f->path ? f->path : "");
		break;
	case N_NAME_GLOB:
		r = globs_match(n, c->name);
		break;
	case N_PATH_EQ:
		r = strcmp(f->path ? f->path : "", n->str) == 0;
		break;
	case N_NAME_EQ:
		r = strcmp(c->name, n->str) == 0;
		break;
	case N_VOLUME:
		r = f->volume != NULL && strcmp(f->volume, n->str) == 0;
		break;
	case N_SIZE:
		return pol_cmp_u64(n->cmp, f->size, n->u);
	case N_AGE:
		return pol_cmp_u64(n->cmp, (uint64_t)pol_age(c, n->slot), n->u);
	case N_UID:
		r = f->uid == n->u;
		break;
	case N_GID:
		r = f->gid == n->u;
		break;
	case N_STATE:
		r = (uint64_t)f->state == n->u;
		break;
	case N_FLAG:
		return (f->flags & n->u) != 0;
	case N_SITE:
		r = f->owner != NULL && strcmp(f->owner, n->str) == 0;
		break;
	case N_XATTR_EXISTS:
		return pol_xattr(c, n, &v) >= 0;
	case N_XATTR_EQ:
		len = pol_xattr(c, n, &v);
		/* values may hold NULs: compare the bytes the callback gave */
		r = len >= 0 && (size_t)len == strlen(n->val) && (size_t)len < POL_XBUF &&
		    memcmp(v, n->val, (size_t)len) == 0;
		break;
	case N_XATTR_GLOB:
		len = pol_xattr(c, n, &v);
		if (len < 0)
			return 0; /* no xattr: neither ~ nor !~ holds */
		r = globs_match(n, v);
		break;
	default:
		return 0;
	}
	return n->cmp == C_NE ? !r : r;
}

int pol_eval_node(struct pol_ctx *c, const struct pol_node *n)
{
	for (;;) {
		switch (n->kind) {
		case N_NOT:
			return !pol_eval_node(c, n->a);
		case N_AND:
			if (!pol_eval_node(c, n->a))
				return 0;
			n = n->b;
			continue;
		case N_OR:
			if (pol_eval_node(c, n->a))
				return 1;
			n = n->b;
			continue;
		case N_CLASS: {
			int i = n->slot;

			/* a class several rules name is evaluated once per file */
			if (i >= POL_MEMO_CLASSES)
				return pol_eval_node(c, n->cls->cond);
			if (c->cknown[i >> 6] & (1ull << (i & 63)))
				return (c->cval[i >> 6] >> (i & 63)) & 1;
			int r = pol_eval_node(c, n->cls->cond);

			c->cknown[i >> 6] |= 1ull << (i & 63);
			if (r)
				c->cval[i >> 6] |= 1ull << (i & 63);
			else
				c->cval[i >> 6] &= ~(1ull << (i & 63));
			return r;
		}
		default:
			return pol_eval_leaf(c, n);
		}
	}
}

int pol_rule_applies(const struct policy_rule *r, const char *site)
{
	/* A place rule's `at` names the owner, not where it applies: every site reads it
	 * alike, or two sites could each claim the same files back and forth. */
	if (r->nsites == 0 || (r->action == POLICY_PLACE && !r->no))
		return 1;
	if (site == NULL)
		return 0;
	for (size_t i = 0; i < r->nsites; i++)
		if (strcmp(r->sites[i], site) == 0)
			return 1;
	return 0;
}

static const struct policy_rule *excluded(struct pol_ctx *c)
{
	for (size_t i = 0; i < c->p->nexcl; i++)
		if (pol_eval_node(c, c->p->excl[i]->cond))
			return c->p->excl[i];
	return NULL;
}

void policy_eval(const struct policy *p, const char *site, const struct policy_file *f, int64_t now,
		 struct policy_decision *out)
{
	struct pol_ctx c;

	memset(out, 0, sizeof(*out));
	if (p == NULL || f == NULL)
		return;
	pol_ctx_init(&c, p, f, now);
	if ((out->exclude = excluded(&c)) != NULL)
		return;
	for (int a = 0; a < POLICY_NACTIONS; a++)
		for (size_t i = 0; i < p->nact[a]; i++) {
			const struct policy_rule *r = p->act[a][i];

			if (!pol_rule_applies(r, site) || !pol_eval_node(&c, r->cond))
				continue;
			if (r->no)
				out->no[a] = r;
			else
				out->rule[a] = r;
			break;
		}
}

int policy_excluded(const struct policy *p, const struct policy_file *f, int64_t now,
		    const struct policy_rule **rule)
{
	struct pol_ctx c;
	const struct policy_rule *r;

	if (p == NULL || f == NULL)
		return 0;
	pol_ctx_init(&c, p, f, now);
	r = excluded(&c);
	if (rule != NULL)
		*rule = r;
	return r != NULL;
}

unsigned policy_needs(const struct policy *p)
{
	return p ? p->needs : 0;
}

int policy_rule_line(const struct policy_rule *r)
{
	return r ? r->line : 0;
}

const struct policy_rule *policy_rule_at(const struct policy *p, size_t i)
{
	return p != NULL && i < p->nrules ? p->rules[i] : NULL;
}

int policy_rule_action(const struct policy_rule *r)
{
	return r ? r->action : -1;
}

const char *policy_rule_text(const struct policy_rule *r)
{
	return r ? r->text : "";
}

const char *policy_rule_site(const struct policy_rule *r)
{
	return r && r->action == POLICY_PLACE && r->nsites == 1 ? r->sites[0] : NULL;
}

unsigned policy_rule_copies(const struct policy_rule *r)
{
	return r && r->action == POLICY_COPIES ? r->copies : 0;
}

void policy_rule_watermarks(const struct policy_rule *r, unsigned *high, unsigned *low)
{
	*high = r ? r->high : 0;
	*low = r ? r->low : 0;
}

size_t policy_rule_order(const struct policy_rule *r, int keys[3])
{
	if (r == NULL || r->action != POLICY_RELEASE)
		return 0;
	for (size_t i = 0; i < r->nkeys; i++)
		keys[i] = r->keys[i];
	return r->nkeys;
}

static int cmp_i64(int64_t a, int64_t b)
{
	return a < b ? -1 : a > b;
}

int policy_order_cmp(const struct policy_rule *r, const struct policy_file *a,
		     const struct policy_file *b)
{
	static const int def[1] = {POLICY_ORDER_ATIME};
	const int *k = r && r->nkeys ? r->keys : def;
	size_t n = r && r->nkeys ? r->nkeys : 1;

	for (size_t i = 0; i < n; i++) {
		int c = k[i] == POLICY_ORDER_ATIME   ? cmp_i64(a->atime, b->atime)
			: k[i] == POLICY_ORDER_MTIME ? cmp_i64(a->mtime, b->mtime)
			: a->size > b->size	     ? -1
						     : a->size < b->size;

		if (c != 0)
			return c;
	}
	return 0;
}

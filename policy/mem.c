/* The memory a compiled policy lives in (one arena, freed at once) and the list of
 * diagnostics a compile fills. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy_int.h"

/* ---- the arena ---- */

struct pol_chunk {
	struct pol_chunk *next;
	size_t used, cap;
	max_align_t data[];
};

void *pa_alloc(struct pol_arena *a, size_t n)
{
	struct pol_chunk *c = a->head;

	n = (n + 15) & ~(size_t)15;
	if (a->failed)
		return NULL;
	if (c == NULL || c->cap - c->used < n) {
		size_t cap = n > 16384 ? n : 16384;

		c = malloc(sizeof(*c) + cap);
		if (c == NULL) {
			a->failed = 1;
			return NULL;
		}
		c->cap = cap;
		c->used = 0;
		c->next = a->head;
		a->head = c;
	}
	void *r = (char *)c->data + c->used;

	c->used += n;
	memset(r, 0, n);
	return r;
}

char *pa_strndup(struct pol_arena *a, const char *s, size_t n)
{
	char *r = pa_alloc(a, n + 1);

	if (r != NULL) {
		memcpy(r, s, n);
		r[n] = '\0';
	}
	return r;
}

void pa_free(struct pol_arena *a)
{
	while (a->head != NULL) {
		struct pol_chunk *c = a->head;

		a->head = c->next;
		free(c);
	}
}

void pv_push(struct pol_vec *v, void *x)
{
	if (v->failed || x == NULL) {
		v->failed = 1;
		return;
	}
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 16;
		void **n = realloc(v->v, cap * sizeof(*n));

		if (n == NULL) {
			v->failed = 1;
			return;
		}
		v->v = n;
		v->cap = cap;
	}
	v->v[v->n++] = x;
}

/* ---- diagnostics ---- */

void pol_vdiag(struct policy_diags *d, int sev, int line, int col, const char *fmt, va_list ap)
{
	/* the array is allocated once with room for the cap and one out-of-memory note */
	if (d->v == NULL || d->n >= POL_MAX_DIAGS)
		return;
	struct policy_diag *g = &d->v[d->n++];

	g->severity = sev;
	g->line = line;
	g->col = col;
	vsnprintf(g->msg, sizeof(g->msg), fmt, ap);
	if (sev == POLICY_ERROR)
		d->errors++;
	else
		d->warnings++;
}

void pol_diag(struct policy_diags *d, int sev, int line, int col, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	pol_vdiag(d, sev, line, col, fmt, ap);
	va_end(ap);
}

void pol_diag_oom(struct policy_diags *d)
{
	if (d->v == NULL)
		return;
	struct policy_diag *g = &d->v[d->n < POL_MAX_DIAGS ? d->n : POL_MAX_DIAGS];

	g->severity = POLICY_ERROR;
	g->line = 0;
	g->col = 0;
	snprintf(g->msg, sizeof(g->msg), "out of memory");
	d->n = (size_t)(g - d->v) + 1;
	d->errors++;
}

void policy_diags_free(struct policy_diags *d)
{
	if (d == NULL)
		return;
	free(d->v);
	memset(d, 0, sizeof(*d));
}

const char *policy_diag_format(const struct policy *p_or_null, const char *file,
			       const struct policy_diag *d, char *out, size_t cap)
{
	(void)p_or_null;
	if (cap == 0)
		return out;
	snprintf(out, cap, "%s:%d:%d: %s: %s", file ? file : "policy", d->line, d->col,
		 d->severity == POLICY_ERROR ? "error" : "warning", d->msg);
	return out;
}

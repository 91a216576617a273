/* The policy as understood: units resolved to bytes and seconds, every condition fully
 * parenthesized, one statement per line with its source line (as `pfctl -nv`). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy_int.h"

const char *const pol_cmp_names[6] = {"<", "<=", ">", ">=", "=", "!="};
const char *const pol_time_names[3] = {"atime", "mtime", "ctime"};

void pb_add(struct pol_buf *b, const char *s, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 128;

		while (cap < b->len + n + 1)
			cap *= 2;
		char *t = realloc(b->s, cap);

		if (t == NULL) {
			b->failed = 1;
			return;
		}
		b->s = t;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

void pb_puts(struct pol_buf *b, const char *s)
{
	pb_add(b, s, strlen(s));
}

void pb_printf(struct pol_buf *b, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(tmp)) {
		pb_add(b, tmp, (size_t)n);
		return;
	}
	char *big = malloc((size_t)n + 1);

	if (big == NULL) {
		b->failed = 1;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	pb_add(b, big, (size_t)n);
	free(big);
}

void pb_free(struct pol_buf *b)
{
	free(b->s);
	memset(b, 0, sizeof(*b));
}

void pol_print_string(struct pol_buf *b, const char *s)
{
	pb_puts(b, "\"");
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			pb_puts(b, "\\");
		pb_add(b, s, 1);
	}
	pb_puts(b, "\"");
}

static void print_globs(struct pol_buf *b, const struct pol_node *n)
{
	if (n->nglobs == 1) {
		pol_print_string(b, n->globs[0].src);
		return;
	}
	pb_puts(b, "{ ");
	for (size_t i = 0; i < n->nglobs; i++) {
		if (i)
			pb_puts(b, ", ");
		pol_print_string(b, n->globs[i].src);
	}
	pb_puts(b, " }");
}

static const char *eq_name(const struct pol_node *n)
{
	return n->cmp == C_NE ? "!=" : "=";
}

void pol_print_leaf(struct pol_buf *b, const struct pol_node *n)
{
	static const char *const states[] = {"?", "resident", "archived", "stub"};

	switch (n->kind) {
	case N_TRUE:
		pb_puts(b, "true");
		break;
	case N_FALSE:
		pb_puts(b, "false");
		break;
	case N_CLASS:
		pb_printf(b, "class %s", n->cls->name);
		break;
	case N_PATH_GLOB:
	case N_NAME_GLOB:
		pb_printf(b, "%s %s ", n->kind == N_PATH_GLOB ? "path" : "name",
			  n->cmp == C_NE ? "!~" : "~");
		print_globs(b, n);
		break;
	case N_PATH_EQ:
	case N_NAME_EQ:
		pb_printf(b, "%s %s ", n->kind == N_PATH_EQ ? "path" : "name", eq_name(n));
		pol_print_string(b, n->str);
		break;
	case N_VOLUME:
		pb_printf(b, "volume %s ", eq_name(n));
		pol_print_string(b, n->str);
		break;
	case N_SIZE:
		pb_printf(b, "size %s %llu", pol_cmp_names[n->cmp], (unsigned long long)n->u);
		break;
	case N_AGE:
		pb_printf(b, "%s %s %llus", pol_time_names[n->slot], pol_cmp_names[n->cmp],
			  (unsigned long long)n->u);
		break;
	case N_UID:
	case N_GID:
		pb_printf(b, "%s %s %llu", n->kind == N_UID ? "owner" : "group", eq_name(n),
			  (unsigned long long)n->u);
		break;
	case N_STATE:
		pb_printf(b, "state %s %s", eq_name(n), states[n->u < 4 ? n->u : 0]);
		break;
	case N_FLAG:
		pb_puts(b, n->u == POLICY_F_PINNED  ? "pinned"
			   : n->u == POLICY_F_DIRTY ? "dirty"
						    : "noarchive");
		break;
	case N_SITE:
		pb_printf(b, "site %s %s", eq_name(n), n->str);
		break;
	case N_XATTR_EXISTS:
	case N_XATTR_EQ:
	case N_XATTR_GLOB:
		pb_puts(b, "xattr ");
		pol_print_string(b, n->str);
		if (n->kind == N_XATTR_EXISTS) {
			pb_puts(b, " exists");
		} else if (n->kind == N_XATTR_EQ) {
			pb_printf(b, " %s ", eq_name(n));
			pol_print_string(b, n->val);
		} else {
			pb_puts(b, n->cmp == C_NE ? " !~ " : " ~ ");
			print_globs(b, n);
		}
		break;
	default:
		break;
	}
}

void pol_print_node(struct pol_buf *b, const struct pol_node *n)
{
	switch (n->kind) {
	case N_NOT:
		pb_puts(b, "not ");
		pol_print_node(b, n->a);
		break;
	case N_AND:
	case N_OR:
		pb_puts(b, "(");
		pol_print_node(b, n->a);
		pb_puts(b, n->kind == N_AND ? " and " : " or ");
		pol_print_node(b, n->b);
		pb_puts(b, ")");
		break;
	default:
		pb_puts(b, "(");
		pol_print_leaf(b, n);
		pb_puts(b, ")");
		break;
	}
}

static void human(char *out, size_t cap, double v, const char *const *units, const double *div,
		  int nunits)
{
	int i = nunits - 1;

	while (i > 0 && v < div[i])
		i--;
	double x = v / div[i];

	if (x == (double)(uint64_t)x)
		snprintf(out, cap, "%llu%s", (unsigned long long)x, units[i]);
	else
		snprintf(out, cap, "%.1f%s", x, units[i]);
}

void pol_human_size(char *out, size_t cap, uint64_t v)
{
	static const char *const u[] = {" B", " KiB", " MiB", " GiB", " TiB", " PiB"};
	static const double d[] = {1.0,		 1024.0,	  1048576.0,
				   1073741824.0, 1099511627776.0, 1125899906842624.0};
	int i = 5;

	while (i > 0 && (double)v < d[i])
		i--;
	if (i == 0)
		snprintf(out, cap, "%llu B", (unsigned long long)v);
	else
		snprintf(out, cap, "%.1f%s", (double)v / d[i], u[i]);
}

void pol_human_age(char *out, size_t cap, int64_t v)
{
	static const char *const u[] = {"s", "min", "h", "d", "y"};
	static const double d[] = {1, 60, 3600, 86400, 365.0 * 86400};

	human(out, cap, (double)v, u, d, 5);
}

void policy_dump(const struct policy *p, FILE *out)
{
	if (p == NULL || out == NULL)
		return;
	for (size_t i = 0; i < p->nstmts; i++)
		fprintf(out, "line %d: %s\n", p->stmts[i].line, p->stmts[i].text);
}

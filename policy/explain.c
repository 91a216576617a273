/* `hsm policy explain`: the same evaluation as policy_eval, but every comparison of every
 * rule that could apply is shown with the file's actual value, so an admin sees why. */
#include <stdio.h>
#include <string.h>

#include "policy/policy_int.h"

struct explain {
	struct pol_ctx c;
	void (*line)(void *arg, const char *text);
	void *arg;
	int indent;
};

static void say(struct explain *e, struct pol_buf *b)
{
	if (!b->failed && b->s != NULL)
		e->line(e->arg, b->s);
	pb_free(b);
}

/* The file's side of a leaf, for the reader to compare with the rule's side. */
static void actual(struct explain *e, struct pol_buf *b, const struct pol_node *n)
{
	const struct policy_file *f = e->c.f;
	char h1[64], h2[64];
	const char *v;
	long len;

	switch (n->kind) {
	case N_SIZE:
		pol_human_size(h1, sizeof(h1), f->size);
		pol_human_size(h2, sizeof(h2), n->u);
		pb_printf(b, "size %llu (%s) %s %llu (%s)", (unsigned long long)f->size, h1,
			  pol_cmp_names[n->cmp], (unsigned long long)n->u, h2);
		return;
	case N_AGE: {
		int64_t age = pol_age(&e->c, n->slot);

		pol_human_age(h1, sizeof(h1), age);
		pol_human_age(h2, sizeof(h2), (int64_t)n->u);
		pb_printf(b, "%s age %llds (%s) %s %llus (%s)", pol_time_names[n->slot],
			  (long long)age, h1, pol_cmp_names[n->cmp], (unsigned long long)n->u, h2);
		return;
	}
	case N_PATH_GLOB:
	case N_PATH_EQ:
		pb_puts(b, "path ");
		pol_print_string(b, f->path ? f->path : "");
		break;
	case N_NAME_GLOB:
	case N_NAME_EQ:
		pb_puts(b, "name ");
		pol_print_string(b, e->c.name);
		break;
	case N_VOLUME:
		pb_puts(b, "volume ");
		pol_print_string(b, f->volume ? f->volume : "");
		break;
	case N_UID:
		pb_printf(b, "owner %u", (unsigned)f->uid);
		break;
	case N_GID:
		pb_printf(b, "group %u", (unsigned)f->gid);
		break;
	case N_STATE:
		pb_printf(b, "state %s",
			  f->state == POLICY_RESIDENT	? "resident"
			  : f->state == POLICY_ARCHIVED ? "archived"
			  : f->state == POLICY_STUB	? "stub"
							: "unknown");
		break;
	case N_FLAG:
		pb_printf(b, "flags 0x%x", f->flags);
		break;
	case N_SITE:
		pb_printf(b, "owner site %s", f->owner ? f->owner : "(none)");
		break;
	case N_XATTR_EXISTS:
	case N_XATTR_EQ:
	case N_XATTR_GLOB:
		len = pol_xattr(&e->c, n, &v);
		pb_puts(b, "xattr ");
		pol_print_string(b, n->str);
		if (len < 0) {
			pb_puts(b, " absent");
		} else {
			pb_puts(b, " ");
			pol_print_string(b, v);
		}
		break;
	default:
		pol_print_leaf(b, n);
		return;
	}
	pb_puts(b, " vs ");
	pol_print_leaf(b, n);
}

/* Shows every leaf (no short cut, so the admin sees all of them) and returns the
 * condition's value. */
static int explain_node(struct explain *e, const struct pol_node *n)
{
	struct pol_buf b = {0};
	int r, x;

	switch (n->kind) {
	case N_NOT:
		return !explain_node(e, n->a);
	case N_AND:
		x = explain_node(e, n->a);
		return explain_node(e, n->b) && x;
	case N_OR:
		x = explain_node(e, n->a);
		return explain_node(e, n->b) || x;
	case N_CLASS:
		pb_printf(&b, "%*sclass %s:", e->indent, "", n->cls->name);
		say(e, &b);
		e->indent += 2;
		r = explain_node(e, n->cls->cond);
		e->indent -= 2;
		pb_printf(&b, "%*sclass %s: %s", e->indent, "", n->cls->name, r ? "true" : "false");
		say(e, &b);
		return r;
	case N_TRUE:
		return 1;
	default:
		r = pol_eval_leaf(&e->c, n);
		pb_printf(&b, "%*s", e->indent, "");
		actual(e, &b, n);
		pb_printf(&b, ": %s", r ? "true" : "false");
		say(e, &b);
		return r;
	}
}

static void summary(struct explain *e, const char *what, const struct policy_rule *r,
		    const struct policy_rule *no)
{
	struct pol_buf b = {0};

	if (r != NULL)
		pb_printf(&b, "%s: rule at line %d", what, r->line);
	else if (no != NULL)
		pb_printf(&b, "%s: no (rule at line %d)", what, no->line);
	else
		pb_printf(&b, "%s: none", what);
	say(e, &b);
}

void policy_explain(const struct policy *p, const char *site, const struct policy_file *f,
		    int64_t now, void (*line)(void *arg, const char *text), void *arg)
{
	struct explain e = {.line = line, .arg = arg, .indent = 2};
	struct policy_decision d;
	const struct policy_rule *decided[POLICY_NACTIONS] = {0};

	if (p == NULL || f == NULL || line == NULL)
		return;
	policy_eval(p, site, f, now, &d);
	pol_ctx_init(&e.c, p, f, now);
	for (size_t i = 0; i < p->nrules; i++) {
		const struct policy_rule *r = p->rules[i];
		struct pol_buf b = {0};

		if (r->action >= 0 && !pol_rule_applies(r, site))
			continue;
		pb_printf(&b, "rule %d (line %d): %s", r->num, r->line, r->text);
		say(&e, &b);
		int m = explain_node(&e, r->cond);

		if (!m)
			pb_puts(&b, "  -> no match");
		else if (r->action < 0)
			pb_puts(&b, d.exclude == r
					? "  -> excludes the file"
					: "  -> matches, but an earlier exclude decided");
		else if (d.exclude != NULL)
			pb_printf(&b, "  -> matches, but the file is excluded (line %d)",
				  d.exclude->line);
		else if (decided[r->action] != NULL)
			pb_printf(&b, "  -> matches, but %s was decided at line %d",
				  pol_action_names[r->action], decided[r->action]->line);
		else
			pb_printf(&b, "  -> decides %s%s", r->no ? "no " : "",
				  pol_action_names[r->action]);
		if (m && r->action >= 0 && decided[r->action] == NULL && d.exclude == NULL)
			decided[r->action] = r;
		say(&e, &b);
	}
	struct pol_buf b = {0};

	if (d.exclude != NULL)
		pb_printf(&b, "exclude: line %d", d.exclude->line);
	else
		pb_puts(&b, "exclude: none");
	say(&e, &b);
	for (int a = 0; a < POLICY_NACTIONS; a++)
		summary(&e, pol_action_names[a], d.rule[a], d.no[a]);
}

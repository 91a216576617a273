/* Transfer windows and bandwidth limits: a week of 15-minute blocks per statement, as
 * DFS-R's replication schedule, so a lookup is one bit test. */
#include <string.h>

#include "policy/policy_int.h"

static const char *const days[7] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};

void pol_sched_set(struct pol_sched *s, int block)
{
	s->bits[block >> 6] |= 1ull << (block & 63);
}

int pol_sched_has(const struct pol_sched *s, int block)
{
	return (s->bits[block >> 6] >> (block & 63)) & 1;
}

static int day_of(const char *s, size_t n)
{
	for (int d = 0; d < 7; d++)
		if (n == 3 && memcmp(s, days[d], 3) == 0)
			return d;
	return -1;
}

/* One day spec (daily, weekdays, weekends, mon, mon-fri) as a 7-bit mask; a range may
 * be one word ("mon-fri", site names may hold '-') or three tokens. */
static int day_spec(struct pol_parser *pp, unsigned *mask, struct pol_buf *text)
{
	const struct pol_token *t = pp_next(pp);
	const char *dash;
	int a, b;

	if (pp_is(t, "daily") || pp_is(t, "weekdays") || pp_is(t, "weekends")) {
		*mask |= pp_is(t, "daily") ? 0x7f : pp_is(t, "weekdays") ? 0x1f : 0x60;
		pb_add(text, t->s, t->n);
		return 0;
	}
	if (t->type != T_WORD)
		return pp_expected(pp, t, "days (daily, weekdays, weekends, mon..sun, mon-fri)");
	dash = memchr(t->s, '-', t->n);
	a = day_of(t->s, dash ? (size_t)(dash - t->s) : t->n);
	if (a < 0)
		return pp_expected(pp, t, "days (daily, weekdays, weekends, mon..sun, mon-fri)");
	if (dash != NULL) {
		b = day_of(dash + 1, t->n - (size_t)(dash + 1 - t->s));
		if (b < 0)
			return pp_error(pp, t, "invalid day range \"%.*s\"", (int)t->n, t->s);
	} else if (pp_peek(pp)->type == T_DASH) {
		pp_next(pp);
		const struct pol_token *e = pp_next(pp);

		b = e->type == T_WORD ? day_of(e->s, e->n) : -1;
		if (b < 0)
			return pp_expected(pp, e, "a day (mon..sun)");
	} else {
		b = a;
	}
	/* mon-sun is the week, fri-mon wraps over the weekend */
	for (int d = a;; d = (d + 1) % 7) {
		*mask |= 1u << d;
		if (d == b)
			break;
	}
	pb_puts(text, days[a]);
	if (b != a)
		pb_printf(text, "-%s", days[b]);
	return 0;
}

/* HH:MM as a block number 0..96; 24:00 only when end is set. */
static int hhmm(struct pol_parser *pp, int end, int *block, struct pol_buf *text)
{
	const struct pol_token *h = pp_next(pp), *c, *m;
	uint64_t hh, mm;
	const char *u;
	size_t un;

	if (h->type != T_NUM || pp_number(h, 1, 1, &hh, &u, &un) < 0 || un != 0)
		return pp_expected(pp, h, "a time (HH:MM)");
	c = pp_next(pp);
	if (c->type != T_COLON)
		return pp_expected(pp, c, "\":\" in a time (HH:MM)");
	m = pp_next(pp);
	if (m->type != T_NUM || pp_number(m, 1, 1, &mm, &u, &un) < 0 || un != 0 || m->n != 2)
		return pp_expected(pp, m, "two digits of minutes (HH:MM)");
	if (hh == 24 && mm == 0 && !end)
		return pp_error(pp, h, "24:00 is only allowed as the end of a time range");
	if (hh > 24 || mm > 59 || (hh == 24 && mm != 0))
		return pp_error(pp, h, "invalid time %.*s:%.*s", (int)h->n, h->s, (int)m->n, m->s);
	if (mm % 15 != 0)
		return pp_error(pp, h, "time %.*s:%.*s is not on a 15-minute boundary", (int)h->n,
				h->s, (int)m->n, m->s);
	*block = (int)(hh * 4 + mm / 15);
	pb_printf(text, "%02u:%02u", (unsigned)hh, (unsigned)mm);
	return 0;
}

static int schedule(struct pol_parser *pp, struct pol_sched *s, struct pol_buf *text)
{
	unsigned mask = 0;
	int from = 0, to = 96;

	do {
		if (mask)
			pb_puts(text, ",");
		if (day_spec(pp, &mask, text) < 0)
			return -1;
	} while (pp_peek(pp)->type == T_COMMA && pp_next(pp));
	if (pp_peek(pp)->type == T_NUM) {
		const struct pol_token *t = pp_peek(pp);

		pb_puts(text, " ");
		if (hhmm(pp, 0, &from, text) < 0)
			return -1;
		if (pp_peek(pp)->type != T_DASH)
			return pp_expected(pp, pp_peek(pp), "\"-\" between two times");
		pp_next(pp);
		pb_puts(text, "-");
		if (hhmm(pp, 1, &to, text) < 0)
			return -1;
		if (from == to)
			return pp_error(pp, t, "empty time range");
	}
	memset(s, 0, sizeof(*s));
	for (int d = 0; d < 7; d++) {
		if (!(mask & (1u << d)))
			continue;
		if (from < to) {
			for (int b = from; b < to; b++)
				pol_sched_set(s, d * 96 + b);
			continue;
		}
		/* past midnight: the rest of the range is the next day's (Sunday's is Monday's) */
		for (int b = from; b < 96; b++)
			pol_sched_set(s, d * 96 + b);
		for (int b = 0; b < to; b++)
			pol_sched_set(s, ((d + 1) % 7) * 96 + b);
	}
	return 0;
}

static int dest(struct pol_parser *pp, struct pol_limit *l, struct pol_buf *text)
{
	const struct pol_token *t = pp_next(pp);

	if (pp_is(t, "store")) {
		l->dest = D_STORE;
		pb_puts(text, " store");
	} else if (pp_is(t, "peers")) {
		l->dest = D_PEERS;
		pb_puts(text, " peers");
	} else if (pp_is(t, "peer")) {
		l->dest = D_PEER;
		if (pp_site(pp, &l->peer) < 0)
			return -1;
		pb_printf(text, " peer %s", l->peer);
	} else {
		return pp_expected(pp, t, "store, peer SITE or peers");
	}
	return 0;
}

static int rate(struct pol_parser *pp, struct pol_limit *l, struct pol_buf *text)
{
	static const struct {
		const char *u;
		uint64_t mult, div;
	} units[] = {
	    {"B/s", 1, 1},
	    {"KB/s", 1000, 1},
	    {"MB/s", 1000000, 1},
	    {"GB/s", 1000000000, 1},
	    {"KiB/s", 1ull << 10, 1},
	    {"MiB/s", 1ull << 20, 1},
	    {"GiB/s", 1ull << 30, 1},
	    {"Kbit/s", 1000, 8},
	    {"Mbit/s", 1000000, 8},
	    {"Gbit/s", 1000000000, 8},
	};
	const struct pol_token *t = pp_next(pp);
	const char *u;
	size_t un;
	uint64_t v;

	if (pp_is(t, "unlimited")) {
		l->rate = POLICY_RATE_UNLIMITED;
		pb_puts(text, " unlimited");
		return 0;
	}
	if (pp_is(t, "none")) {
		l->rate = 0;
		pb_puts(text, " none");
		return 0;
	}
	if (t->type != T_NUM)
		return pp_expected(pp, t, "a rate (like 10MB/s), unlimited or none");
	if (pp_number(t, 1, 1, &v, &u, &un) < 0)
		return pp_error(pp, t, "rate too large");
	if (un == 0 && v == 0) {
		l->rate = 0;
		pb_puts(text, " none");
		return 0;
	}
	if (un == 0)
		return pp_error(pp, t,
				"expected a unit after %.*s (B/s, KB/s, MB/s, GB/s, KiB/s, MiB/s, "
				"GiB/s, Kbit/s, Mbit/s, Gbit/s)",
				(int)t->n, t->s);
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (un == strlen(units[i].u) && memcmp(u, units[i].u, un) == 0) {
			if (pp_number(t, units[i].mult, units[i].div, &l->rate, &u, &un) < 0 ||
			    l->rate == POLICY_RATE_UNLIMITED)
				return pp_error(pp, t, "rate too large");
			if (l->rate == 0)
				pb_puts(text, " none");
			else
				pb_printf(text, " %lluB/s", (unsigned long long)l->rate);
			return 0;
		}
	return pp_error(pp, t,
			"unknown rate unit \"%.*s\" (B/s, KB/s, MB/s, GB/s, KiB/s, MiB/s, GiB/s, "
			"Kbit/s, Mbit/s, Gbit/s)",
			(int)un, u);
}

static int push(struct pol_parser *pp, struct pol_vec *v, const struct pol_limit *l,
		struct pol_buf *text)
{
	struct pol_limit *c = pa_alloc(&pp->p->arena, sizeof(*c));
	struct pol_stmt *s = pa_alloc(&pp->p->arena, sizeof(*s));

	if (text->failed)
		pp->p->arena.failed = 1;
	if (c == NULL || s == NULL || text->failed)
		return -1;
	*c = *l;
	s->line = l->line;
	s->text = pa_strndup(&pp->p->arena, text->s, text->len);
	pv_push(v, c);
	pv_push(&pp->stmts, s);
	return s->text ? 0 : -1;
}

int pol_parse_limit(struct pol_parser *pp, struct pol_buf *text)
{
	const struct pol_token *kw = &pp->t[pp->i - 1];
	struct pol_limit l = {.line = kw->line, .always = 1};

	pb_puts(text, "limit");
	if (dest(pp, &l, text) < 0 || rate(pp, &l, text) < 0)
		return -1;
	if (pp_is(pp_peek(pp), "during")) {
		pp_next(pp);
		pb_puts(text, " during ");
		l.always = 0;
		if (schedule(pp, &l.sched, text) < 0)
			return -1;
	}
	return push(pp, &pp->limits, &l, text);
}

int pol_parse_window(struct pol_parser *pp, struct pol_buf *text)
{
	const struct pol_token *kw = &pp->t[pp->i - 1];
	struct pol_limit l = {.line = kw->line};

	pb_puts(text, "window");
	if (dest(pp, &l, text) < 0)
		return -1;
	pb_puts(text, " ");
	if (schedule(pp, &l.sched, text) < 0)
		return -1;
	return push(pp, &pp->windows, &l, text);
}

static int dest_matches(const struct pol_limit *l, const char *dest)
{
	if (strcmp(dest, "store") == 0)
		return l->dest == D_STORE;
	return l->dest == D_PEERS || (l->dest == D_PEER && strcmp(l->peer, dest) == 0);
}

uint64_t policy_rate(const struct policy *p, const char *dest, int wday, int minute)
{
	int windowed = 0, open = 0, block;

	if (p == NULL || dest == NULL)
		return POLICY_RATE_UNLIMITED;
	wday = ((wday % 7) + 7) % 7;
	minute = minute < 0 ? 0 : minute > 1439 ? 1439 : minute;
	block = wday * 96 + minute / 15;
	for (size_t i = 0; i < p->nwindows; i++)
		if (dest_matches(&p->windows[i], dest)) {
			windowed = 1;
			open |= pol_sched_has(&p->windows[i].sched, block);
		}
	if (windowed && !open)
		return 0;
	for (size_t i = 0; i < p->nlimits; i++) {
		const struct pol_limit *l = &p->limits[i];

		if (dest_matches(l, dest) && (l->always || pol_sched_has(&l->sched, block)))
			return l->rate;
	}
	return POLICY_RATE_UNLIMITED;
}

unsigned policy_scan_interval(const struct policy *p)
{
	return p ? p->scan : 600;
}

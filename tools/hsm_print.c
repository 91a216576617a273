#include "config.h"

#include "tools/hsm_print.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define PROGRESS_INTERVAL  0.1 /* seconds between redraws */
#define PROGRESS_DELAY	   0.3 /* seconds before the first draw */
#define PROGRESS_WIDTH_MAX 160
#define CLEAR_LINE	   "\r\033[K"

/* Only what a signal handler may look at: whether, and where, a bar is drawn. */
static volatile sig_atomic_t progress_on_screen;
static volatile sig_atomic_t progress_fd = -1;

void hsm_fmt_size(uint64_t bytes, char buf[HSM_FMT_LEN])
{
	static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	double v = (double)bytes;
	int u = 0;

	if (bytes < 1024) {
		snprintf(buf, HSM_FMT_LEN, "%" PRIu64 " B", bytes);
		return;
	}
	while (v >= 1024 && u < 6) {
		v /= 1024;
		u++;
	}
	/* 1023.96 KiB would print as "1024.0 KiB"; say "1.0 MiB" instead. */
	if (v >= 1023.95 && u < 6) {
		v /= 1024;
		u++;
	}
	snprintf(buf, HSM_FMT_LEN, "%.1f %s", v, units[u]);
}

void hsm_fmt_rate(uint64_t bytes, double seconds, char buf[HSM_FMT_LEN])
{
	double r;
	size_t n;

	if (!(seconds >= 0.001)) {
		snprintf(buf, HSM_FMT_LEN, "-");
		return;
	}
	r = (double)bytes / seconds;
	hsm_fmt_size(r >= 1.8e19 ? UINT64_MAX : (uint64_t)r, buf);
	n = strlen(buf);
	snprintf(buf + n, HSM_FMT_LEN - n, "/s");
}

void hsm_fmt_duration(double seconds, char buf[HSM_FMT_LEN])
{
	uint64_t s;

	if (!(seconds >= 0) || seconds > 1e15)
		seconds = 0;
	if (seconds < 59.95) {
		snprintf(buf, HSM_FMT_LEN, "%.1f s", seconds);
		return;
	}
	s = (uint64_t)(seconds + 0.5);
	if (s < 3600)
		snprintf(buf, HSM_FMT_LEN, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, HSM_FMT_LEN, "%" PRIu64 "h%02" PRIu64 "m", s / 3600, s % 3600 / 60);
	else
		snprintf(buf, HSM_FMT_LEN, "%" PRIu64 "d%02" PRIu64 "h", s / 86400,
			 s % 86400 / 3600);
}

/* "3d 4h 12m", "4h 12m", "12m 5s", "5s": how long a daemon has been up. */
static void print_fmt_uptime(uint64_t s, char buf[HSM_FMT_LEN])
{
	if (s >= 86400)
		snprintf(buf, HSM_FMT_LEN, "%" PRIu64 "d %" PRIu64 "h %" PRIu64 "m", s / 86400,
			 s % 86400 / 3600, s % 3600 / 60);
	else if (s >= 3600)
		snprintf(buf, HSM_FMT_LEN, "%" PRIu64 "h %" PRIu64 "m", s / 3600, s % 3600 / 60);
	else if (s >= 60)
		snprintf(buf, HSM_FMT_LEN, "%" PRIu64 "m %" PRIu64 "s", s / 60, s % 60);
	else
		snprintf(buf, HSM_FMT_LEN, "%" PRIu64 "s", s);
}

/* ETA as m:ss or h:mm:ss, the way progress bars usually show it. */
static void print_fmt_eta(double seconds, char buf[HSM_FMT_LEN])
{
	uint64_t s;

	if (!(seconds >= 0) || seconds > 360000 * 99.0) {
		snprintf(buf, HSM_FMT_LEN, "--:--");
		return;
	}
	s = (uint64_t)(seconds + 0.5);
	if (s >= 3600)
		snprintf(buf, HSM_FMT_LEN, "%" PRIu64 ":%02" PRIu64 ":%02" PRIu64, s / 3600,
			 s % 3600 / 60, s % 60);
	else
		snprintf(buf, HSM_FMT_LEN, "%" PRIu64 ":%02" PRIu64, s / 60, s % 60);
}

static int print_is_control(unsigned char ch)
{
	return ch < 0x20 || ch == 0x7f;
}

void hsm_put_escaped(FILE *f, const char *s, size_t len)
{
	size_t i, start = 0;

	for (i = 0; i < len; i++) {
		if (!print_is_control((unsigned char)s[i]))
			continue;
		fwrite(s + start, 1, i - start, f);
		fprintf(f, "\\x%02x", (unsigned char)s[i]);
		start = i + 1;
	}
	fwrite(s + start, 1, len - start, f);
}

/* A NUL-terminated, escaped copy for column layout; never NULL. */
static char *print_esc_dup(const char *s, size_t len)
{
	char *out = NULL;
	size_t outlen = 0;
	FILE *f = open_memstream(&out, &outlen);

	if (!f)
		goto oom;
	hsm_put_escaped(f, s, len);
	if (fclose(f) != 0)
		goto oom;
	return out;
oom:
	free(out);
	fprintf(stderr, "hsm: out of memory\n");
	exit(1);
}

static char *print_jesc_dup(json_object *v)
{
	if (!v || !json_object_is_type(v, json_type_string))
		return print_esc_dup("-", 1);
	return print_esc_dup(json_object_get_string(v), (size_t)json_object_get_string_len(v));
}

void hsm_put_jstr(FILE *f, json_object *v)
{
	if (!v || !json_object_is_type(v, json_type_string)) {
		fputs("-", f);
		return;
	}
	hsm_put_escaped(f, json_object_get_string(v), (size_t)json_object_get_string_len(v));
}

static json_object *print_jget(json_object *obj, const char *key)
{
	json_object *v;

	if (!obj || !json_object_is_type(obj, json_type_object) ||
	    !json_object_object_get_ex(obj, key, &v))
		return NULL;
	return v;
}

const char *hsm_jstr(json_object *obj, const char *key)
{
	json_object *v = print_jget(obj, key);

	return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

static uint64_t print_ju64_value(json_object *v)
{
	double d;

	if (!v)
		return 0;
	if (json_object_is_type(v, json_type_int)) {
		int64_t i = json_object_get_int64(v);

		/* json-c keeps integers above INT64_MAX as unsigned. */
		return i < 0 ? 0 : (uint64_t)json_object_get_uint64(v);
	}
	if (json_object_is_type(v, json_type_double)) {
		d = json_object_get_double(v);
		if (!(d >= 0))
			return 0;
		return d >= 1.8e19 ? UINT64_MAX : (uint64_t)d;
	}
	return 0;
}

uint64_t hsm_ju64(json_object *obj, const char *key)
{
	return print_ju64_value(print_jget(obj, key));
}

int hsm_jbool(json_object *obj, const char *key)
{
	json_object *v = print_jget(obj, key);

	return v && json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v);
}

void hsm_jbrief(json_object *v, char *buf, size_t len)
{
	json_object *site = NULL, *ctr = NULL;

	if (len == 0)
		return;
	if (!v || json_object_is_type(v, json_type_null)) {
		snprintf(buf, len, "-");
		return;
	}
	if (json_object_is_type(v, json_type_string)) {
		snprintf(buf, len, "%s", json_object_get_string(v));
		return;
	}
	if (json_object_is_type(v, json_type_object)) {
		site = print_jget(v, "site");
		ctr = print_jget(v, "counter");
	} else if (json_object_is_type(v, json_type_array) && json_object_array_length(v) == 2) {
		site = json_object_array_get_idx(v, 0);
		ctr = json_object_array_get_idx(v, 1);
	}
	if (site && ctr && json_object_is_type(site, json_type_string) &&
	    json_object_is_type(ctr, json_type_int)) {
		snprintf(buf, len, "%s:%" PRIu64, json_object_get_string(site),
			 print_ju64_value(ctr));
		return;
	}
	snprintf(buf, len, "%s",
		 json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN |
						       JSON_C_TO_STRING_NOSLASHESCAPE));
}

/* hsm_jbrief, escaped, as a new string. */
static char *print_jbrief_dup(json_object *v)
{
	char buf[256];

	hsm_jbrief(v, buf, sizeof(buf));
	return print_esc_dup(buf, strlen(buf));
}

/* A small table of strings, padded to the widest cell of each column. */
struct print_table {
	size_t ncol;
	size_t nrow;
	char **cells; /* nrow * ncol, owned */
};

static void print_table_add(struct print_table *t, char **row)
{
	char **n = realloc(t->cells, (t->nrow + 1) * t->ncol * sizeof(*n));

	if (!n) {
		fprintf(stderr, "hsm: out of memory\n");
		exit(1);
	}
	memcpy(n + t->nrow * t->ncol, row, t->ncol * sizeof(*n));
	t->cells = n;
	t->nrow++;
}

static void print_table_flush(FILE *f, struct print_table *t)
{
	size_t w[16] = {0}, r, c;

	for (r = 0; r < t->nrow; r++)
		for (c = 0; c < t->ncol && c < 16; c++) {
			size_t l = strlen(t->cells[r * t->ncol + c]);

			if (l > w[c])
				w[c] = l;
		}
	for (r = 0; r < t->nrow; r++) {
		for (c = 0; c < t->ncol; c++) {
			const char *s = t->cells[r * t->ncol + c];

			if (c + 1 < t->ncol)
				fprintf(f, "%-*s  ", (int)w[c < 16 ? c : 15], s);
			else
				fprintf(f, "%s\n", s);
		}
	}
	for (r = 0; r < t->nrow * t->ncol; r++)
		free(t->cells[r]);
	free(t->cells);
	t->cells = NULL;
	t->nrow = 0;
}

static char *print_strdup(const char *s)
{
	return print_esc_dup(s, strlen(s));
}

/* "120 (1.5 GiB)" for one state of a volume. */
static char *print_count_cell(json_object *vol, const char *state)
{
	char size[HSM_FMT_LEN], buf[64];

	hsm_fmt_size(hsm_ju64(print_jget(vol, "bytes"), state), size);
	snprintf(buf, sizeof(buf), "%" PRIu64 " (%s)", hsm_ju64(print_jget(vol, "files"), state),
		 size);
	return print_strdup(buf);
}

static void print_status_queues(FILE *f, json_object *queues)
{
	int first = 1;

	fputs("queues:    ", f);
	if (!queues || !json_object_is_type(queues, json_type_object)) {
		fputs("-\n", f);
		return;
	}
	json_object_object_foreach(queues, key, val)
	{
		char *v = print_jbrief_dup(val);

		fputs(first ? "" : ", ", f);
		hsm_put_escaped(f, key, strlen(key));
		fprintf(f, " %s", v);
		free(v);
		first = 0;
	}
	fputs(first ? "-\n" : "\n", f);
}

static void print_status_volumes(FILE *f, json_object *vols)
{
	struct print_table t = {.ncol = 5};
	char *hdr[5];
	size_t i, n;

	if (!vols || !json_object_is_type(vols, json_type_array) ||
	    json_object_array_length(vols) == 0) {
		fputs("\nno volumes\n", f);
		return;
	}
	hdr[0] = print_strdup("VOLUME");
	hdr[1] = print_strdup("PATH");
	hdr[2] = print_strdup("RESIDENT");
	hdr[3] = print_strdup("ARCHIVED");
	hdr[4] = print_strdup("STUB");
	print_table_add(&t, hdr);
	n = json_object_array_length(vols);
	for (i = 0; i < n; i++) {
		json_object *vol = json_object_array_get_idx(vols, i);
		char *row[5];

		row[0] = print_jesc_dup(print_jget(vol, "name"));
		row[1] = print_jesc_dup(print_jget(vol, "path"));
		row[2] = print_count_cell(vol, "resident");
		row[3] = print_count_cell(vol, "archived");
		row[4] = print_count_cell(vol, "stub");
		print_table_add(&t, row);
	}
	fputc('\n', f);
	print_table_flush(f, &t);
}

void hsm_print_status(FILE *f, json_object *result)
{
	char up[HSM_FMT_LEN];

	fputs("site:      ", f);
	hsm_put_jstr(f, print_jget(result, "site"));
	fputs("\nversion:   ", f);
	hsm_put_jstr(f, print_jget(result, "version"));
	fputs("\nstore:     ", f);
	hsm_put_jstr(f, print_jget(result, "store"));
	print_fmt_uptime(hsm_ju64(result, "uptime"), up);
	fprintf(f, "\nuptime:    %s\n", print_jget(result, "uptime") ? up : "-");
	if (print_jget(result, "guard_pid")) {
		uint64_t g = hsm_ju64(result, "guard_pid");

		if (g)
			fprintf(f, "guard:     hsmd-guard pid %" PRIu64 "\n", g);
		else
			fputs("guard:     NONE (stubs fail open if hsmd stops now)\n", f);
	}
	fprintf(f, "recalls:   %" PRIu64 " done, %" PRIu64 " failed\n",
		hsm_ju64(result, "recalls_done"), hsm_ju64(result, "recalls_failed"));
	print_status_queues(f, print_jget(result, "queues"));
	print_status_volumes(f, print_jget(result, "volumes"));
}

#define STATE_FMT "%-9s %10s %10s %-32s %-12s %-12s %-16s "

void hsm_print_state_header(FILE *f)
{
	fprintf(f, STATE_FMT "PATH\n", "STATE", "SIZE", "ALLOC", "FID", "VERSION", "ARCHIVED",
		"FLAGS");
}

/* Flags joined with commas, "-" when there are none. */
static char *print_flags_dup(json_object *flags)
{
	char *out = NULL;
	size_t outlen = 0, i, n;
	FILE *f;

	if (!flags || !json_object_is_type(flags, json_type_array) ||
	    json_object_array_length(flags) == 0)
		return print_strdup("-");
	f = open_memstream(&out, &outlen);
	if (!f) {
		fprintf(stderr, "hsm: out of memory\n");
		exit(1);
	}
	n = json_object_array_length(flags);
	for (i = 0; i < n; i++) {
		if (i)
			fputc(',', f);
		hsm_put_jstr(f, json_object_array_get_idx(flags, i));
	}
	if (fclose(f) != 0) {
		free(out);
		fprintf(stderr, "hsm: out of memory\n");
		exit(1);
	}
	return out;
}

void hsm_print_state_row(FILE *f, json_object *item)
{
	char size[HSM_FMT_LEN], alloc[HSM_FMT_LEN];
	uint64_t blocks = hsm_ju64(item, "blocks");
	char *state, *fid, *ver, *aver, *flags;

	state = print_jesc_dup(print_jget(item, "state"));
	fid = print_jesc_dup(print_jget(item, "fid"));
	ver = print_jbrief_dup(print_jget(item, "version"));
	aver = print_jbrief_dup(print_jget(item, "archived_version"));
	flags = print_flags_dup(print_jget(item, "flags"));
	if (print_jget(item, "size"))
		hsm_fmt_size(hsm_ju64(item, "size"), size);
	else
		snprintf(size, sizeof(size), "-");
	if (print_jget(item, "blocks"))
		hsm_fmt_size(blocks > UINT64_MAX / 512 ? UINT64_MAX : blocks * 512, alloc);
	else
		snprintf(alloc, sizeof(alloc), "-");
	fprintf(f, STATE_FMT, state, size, alloc, fid, ver, aver, flags);
	hsm_put_jstr(f, print_jget(item, "path"));
	fputc('\n', f);
	free(state);
	free(fid);
	free(ver);
	free(aver);
	free(flags);
}

double hsm_elapsed(const struct timespec *ts)
{
	struct timespec now;

	if (clock_gettime(CLOCK_MONOTONIC, &now) < 0)
		return 0;
	return (double)(now.tv_sec - ts->tv_sec) + (double)(now.tv_nsec - ts->tv_nsec) / 1e9;
}

static void progress_now(struct timespec *ts)
{
	if (clock_gettime(CLOCK_MONOTONIC, ts) < 0)
		memset(ts, 0, sizeof(*ts));
}

void hsm_progress_init(struct hsm_progress *p, const char *verb, int enabled, int fd)
{
	memset(p, 0, sizeof(*p));
	p->enabled = enabled;
	p->fd = fd;
	p->verb = verb;
	progress_now(&p->start);
}

static int progress_width(int fd)
{
	struct winsize ws;

	if (ioctl(fd, TIOCGWINSZ, &ws) < 0 || ws.ws_col < 20)
		return 80;
	return ws.ws_col > PROGRESS_WIDTH_MAX ? PROGRESS_WIDTH_MAX : ws.ws_col;
}

/* Writes the whole line at once so that the bar does not flicker. */
static void progress_write(struct hsm_progress *p, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = write(p->fd, s, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			/* A terminal that cannot be written to needs no bar. */
			p->enabled = 0;
			progress_on_screen = 0;
			return;
		}
		s += w;
		n -= (size_t)w;
	}
}

/* True when a redraw is due, and records it as done. */
static int progress_due(struct hsm_progress *p, int force)
{
	struct timespec now;
	double since;

	progress_now(&now);
	/* Quick runs get no bar at all rather than a flash of one. */
	if (!progress_on_screen && hsm_elapsed(&p->start) < PROGRESS_DELAY)
		return 0;
	since = (double)(now.tv_sec - p->last_draw.tv_sec) +
		(double)(now.tv_nsec - p->last_draw.tv_nsec) / 1e9;
	if (!force && progress_on_screen && since < PROGRESS_INTERVAL)
		return 0;
	p->last_draw = now;
	return 1;
}

void hsm_progress_scan(struct hsm_progress *p, uint64_t found)
{
	char line[128];
	int n;

	if (!p->enabled || !progress_due(p, 0))
		return;
	n = snprintf(line, sizeof(line), CLEAR_LINE "%s: scanning, %" PRIu64 " paths", p->verb,
		     found);
	progress_fd = p->fd;
	progress_on_screen = 1;
	progress_write(p, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

void hsm_progress_start(struct hsm_progress *p, uint64_t total)
{
	p->total = total;
	p->done = 0;
	p->bytes = 0;
	progress_now(&p->start);
	hsm_progress_update(p, 0, 0);
}

static void progress_draw(struct hsm_progress *p)
{
	char line[PROGRESS_WIDTH_MAX * 4], right[128], size[HSM_FMT_LEN], rate[HSM_FMT_LEN];
	char eta[HSM_FMT_LEN] = "--:--";
	double el = hsm_elapsed(&p->start);
	int width = progress_width(p->fd), barw, fill, n, i;

	hsm_fmt_size(p->bytes, size);
	if (el >= 0.2)
		hsm_fmt_rate(p->bytes, el, rate);
	else
		snprintf(rate, sizeof(rate), "-");
	if (p->done > 0 && p->done < p->total)
		print_fmt_eta(el * (double)(p->total - p->done) / (double)p->done, eta);
	else if (p->done >= p->total)
		print_fmt_eta(0, eta);
	snprintf(right, sizeof(right), " %" PRIu64 "/%" PRIu64 " files  %s  %s  ETA %s", p->done,
		 p->total, size, rate, eta);
	/* Stay one column short of the edge: writing the last column wraps on some
	 * terminals, and then "\r" no longer returns to the bar's line. */
	barw = width - 1 - (int)strlen(p->verb) - (int)strlen(right) - 3;
	n = snprintf(line, sizeof(line), CLEAR_LINE "%s", p->verb);
	if (barw >= 10) {
		fill = p->total ? (int)((double)barw * (double)p->done / (double)p->total) : barw;
		if (fill > barw)
			fill = barw;
		line[n++] = ' ';
		line[n++] = '[';
		for (i = 0; i < barw; i++)
			line[n++] = i < fill ? '#' : '.';
		line[n++] = ']';
	}
	i = (int)sizeof(CLEAR_LINE) - 1 + width - 1; /* the longest visible line */
	n += snprintf(line + n, sizeof(line) - (size_t)n, "%s", right);
	if (n > i)
		n = i;
	progress_fd = p->fd;
	progress_on_screen = 1;
	progress_write(p, line, (size_t)n);
}

void hsm_progress_update(struct hsm_progress *p, uint64_t done, uint64_t bytes)
{
	if (!p->enabled)
		return;
	p->done = done;
	p->bytes = bytes;
	if (progress_due(p, done >= p->total))
		progress_draw(p);
}

void hsm_progress_clear(struct hsm_progress *p)
{
	if (!p->enabled || !progress_on_screen)
		return;
	progress_write(p, CLEAR_LINE, sizeof(CLEAR_LINE) - 1);
	progress_on_screen = 0;
}

void hsm_progress_signal_clear(void)
{
	ssize_t w;

	if (!progress_on_screen || progress_fd < 0)
		return;
	w = write(progress_fd, CLEAR_LINE, sizeof(CLEAR_LINE) - 1);
	(void)w; /* the process is about to die of the signal; nothing to do on failure */
	progress_on_screen = 0;
}

static json_object *print_array(json_object *result, const char *key)
{
	json_object *a = NULL;

	if (!json_object_object_get_ex(result, key, &a) || !json_object_is_type(a, json_type_array))
		return NULL;
	return a;
}

void hsm_print_sites(FILE *f, json_object *result)
{
	json_object *a = print_array(result, "sources");
	size_t n = a ? json_object_array_length(a) : 0;

	hsm_put_jstr(f, json_object_object_get(result, "path"));
	fputs(": ", f);
	hsm_put_jstr(f, json_object_object_get(result, "state"));
	fputs(", version ", f);
	hsm_put_jstr(f, json_object_object_get(result, "owner"));
	fprintf(f, ":%llu\n", (unsigned long long)hsm_ju64(result, "version"));
	if (!n)
		fputs("  no source: nothing could recall it\n", f);
	for (size_t i = 0; i < n; i++) {
		json_object *s = json_object_array_get_idx(a, i);
		const char *skip = hsm_jstr(s, "reason_skipped"), *err = hsm_jstr(s, "last_error");

		fprintf(f, "  %zu. %-6s ", i + 1, hsm_jstr(s, "kind") ? hsm_jstr(s, "kind") : "-");
		hsm_put_jstr(f, json_object_object_get(s, "source"));
		fprintf(f, "  cost %llu", (unsigned long long)hsm_ju64(s, "cost"));
		if (hsm_jstr(s, "priority") && strcmp(hsm_jstr(s, "priority"), "normal"))
			fprintf(f, "  priority %s", hsm_jstr(s, "priority"));
		fputs("  health ", f);
		hsm_put_jstr(f, json_object_object_get(s, "health"));
		if (skip && *skip) {
			fputs("  skipped: ", f);
			hsm_put_escaped(f, skip, strlen(skip));
		}
		if (err && *err) {
			fputs("  last error: ", f);
			hsm_put_escaped(f, err, strlen(err));
		}
		fputc('\n', f);
	}
}

void hsm_print_conflicts(FILE *f, json_object *result)
{
	json_object *a = print_array(result, "conflicts");
	size_t n = a ? json_object_array_length(a) : 0;

	for (size_t i = 0; i < n; i++) {
		json_object *c = json_object_array_get_idx(a, i);
		char size[HSM_FMT_LEN], when[32];
		time_t t = (time_t)hsm_ju64(c, "mtime");
		struct tm tm;

		hsm_fmt_size(hsm_ju64(c, "size"), size);
		if (!gmtime_r(&t, &tm) || !strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%SZ", &tm))
			snprintf(when, sizeof(when), "-");
		hsm_put_jstr(f, json_object_object_get(c, "volume"));
		fputc(' ', f);
		hsm_put_jstr(f, json_object_object_get(c, "path"));
		fputs("  (version of ", f);
		hsm_put_jstr(f, json_object_object_get(c, "site"));
		fprintf(f, ", %s, %s)\n", when, size);
	}
	fprintf(f, "%zu conflict cop%s\n", n, n == 1 ? "y" : "ies");
}

void hsm_print_peers(FILE *f, json_object *result)
{
	json_object *a = print_array(result, "peers");
	size_t n = a ? json_object_array_length(a) : 0;

	if (!n)
		fputs("no peers share a volume with this site\n", f);
	for (size_t i = 0; i < n; i++) {
		json_object *p = json_object_array_get_idx(a, i);
		const char *err = hsm_jstr(p, "last_error");

		hsm_put_jstr(f, json_object_object_get(p, "peer"));
		fputs(" volume ", f);
		hsm_put_jstr(f, json_object_object_get(p, "volume"));
		fprintf(f, ": %s, %llu changes applied, cursor %llu",
			hsm_jbool(p, "up") ? "up" : "down",
			(unsigned long long)hsm_ju64(p, "applied"),
			(unsigned long long)hsm_ju64(p, "cursor"));
		if (err && *err) {
			fputs(", last error: ", f);
			hsm_put_escaped(f, err, strlen(err));
		}
		fputc('\n', f);
	}
}

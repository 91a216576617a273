/* Human output of the hsm command: sizes, durations, tables, the state line of a
 * file, the status report and the progress bar. Strings that come from hsmd or from
 * file names are printed with control characters escaped, never as formats. */
#ifndef HSM_PRINT_H
#define HSM_PRINT_H

#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <json-c/json.h>

/* Big enough for any size, rate or duration this file formats. */
#define HSM_FMT_LEN 32

/* 0 B, 512 B, 1.5 KiB ... 3.2 EiB (binary units, one decimal from KiB up). */
void hsm_fmt_size(uint64_t bytes, char buf[HSM_FMT_LEN]);
/* "1.8 GiB/s"; "-" when the time is too short to say. */
void hsm_fmt_rate(uint64_t bytes, double seconds, char buf[HSM_FMT_LEN]);
/* "0.4 s", "12.3 s", "3m07s", "2h05m", "3d04h" */
void hsm_fmt_duration(double seconds, char buf[HSM_FMT_LEN]);

/* Writes s (len bytes, may hold NULs) with control bytes, DEL and backslash
 * written as \xNN / \\ so that no name can move the cursor or fake a line. */
void hsm_put_escaped(FILE *f, const char *s, size_t len);
/* The same for a JSON string value; "-" when v is NULL or not a string. */
void hsm_put_jstr(FILE *f, json_object *v);

/* JSON accessors that never fail: a missing key or a wrong type gives the default. */
const char *hsm_jstr(json_object *obj, const char *key); /* NULL */
uint64_t hsm_ju64(json_object *obj, const char *key);	 /* 0; negatives 0 */
int hsm_jbool(json_object *obj, const char *key);	 /* 0 */
/* A short text for a scalar or small value: a string as is, a number, site:counter
 * for {"site","counter"} or [site, counter], else compact JSON; "-" for null. */
void hsm_jbrief(json_object *v, char *buf, size_t len);

/* The results of the sites, conflicts and peers verbs. */
void hsm_print_sites(FILE *f, json_object *result);
void hsm_print_conflicts(FILE *f, json_object *result);
void hsm_print_peers(FILE *f, json_object *result);
/* Prints the result object of the status verb. */
void hsm_print_status(FILE *f, json_object *result);

/* One line per file for the state verb; the header once before the first row. */
void hsm_print_state_header(FILE *f);
void hsm_print_state_row(FILE *f, json_object *item);

/* A progress bar on a terminal's stderr; every function is a no-op when the bar
 * was not enabled, so callers need no checks of their own. */
struct hsm_progress {
	int enabled;
	int fd;
	const char *verb;
	uint64_t total;
	uint64_t done;
	uint64_t bytes;
	struct timespec start;
	struct timespec last_draw;
};

void hsm_progress_init(struct hsm_progress *p, const char *verb, int enabled, int fd);
/* "scanning: N paths" while paths are being collected. */
void hsm_progress_scan(struct hsm_progress *p, uint64_t found);
void hsm_progress_start(struct hsm_progress *p, uint64_t total);
/* Redraws at most ten times a second, and always for the last item. */
void hsm_progress_update(struct hsm_progress *p, uint64_t done, uint64_t bytes);
/* Wipes the bar so a message can be printed; the next update redraws it. */
void hsm_progress_clear(struct hsm_progress *p);
/* Async-signal-safe: wipes the bar if one is on screen (for SIGINT/SIGTERM). */
void hsm_progress_signal_clear(void);

/* Seconds since ts (CLOCK_MONOTONIC). */
double hsm_elapsed(const struct timespec *ts);

#endif

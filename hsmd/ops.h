/* The verbs of the control protocol (docs/control.md). */
#ifndef HSMD_OPS_H
#define HSMD_OPS_H

struct hsmd;
struct ctl_conn;
struct json_object;

/* Answers req on c (item lines, then exactly one end line, now or later). req is
 * borrowed. */
void ops_dispatch(struct hsmd *h, struct ctl_conn *c, struct json_object *req);

/* Runs one file verb ("archive", "release", "recall", "pin", ...) on the user-visible
 * absolute path, exactly as `hsm VERB PATH` would, outside any control connection:
 * cb(arg, ok, error) runs exactly once on the loop, possibly before ops_run_file
 * returns; error is "" when ok. -1 (and no callback) for an unknown verb or no
 * memory. */
/* The one path of a request that takes exactly one (what names it in messages),
 * opened read-only beneath its volume's admin mount. Returns the descriptor (the
 * caller closes it) with *v, *path (the request's string) and *rel (into it); or -1
 * after answering c with the reason. */
struct hsmd_vol;
int ops_open_one(struct hsmd *h, struct ctl_conn *c, struct json_object *req, const char *what,
		 struct hsmd_vol **v, const char **path, const char **rel);

typedef void (*ops_done_cb)(void *arg, int ok, const char *error);
int ops_run_file(struct hsmd *h, const char *verb, const char *path, ops_done_cb cb, void *arg);

#endif

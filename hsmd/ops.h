/* The verbs of the control protocol (docs/control.md). */
#ifndef HSMD_OPS_H
#define HSMD_OPS_H

struct hsmd;
struct ctl_conn;
struct json_object;

/* Answers req on c (item lines, then exactly one end line, now or later). req is
 * borrowed. */
void ops_dispatch(struct hsmd *h, struct ctl_conn *c, struct json_object *req);

#endif

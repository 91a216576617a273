/* The control socket server (docs/control.md): JSON lines over a unix socket, one
 * request at a time per connection, answered by ops. */
#ifndef HSMD_CONTROL_H
#define HSMD_CONTROL_H

struct hsmd;
struct control;
struct ctl_conn;
struct json_object;

#define CTL_LINE_MAX (16u << 20)

struct control *control_start(struct hsmd *h, int listen_fd);
void control_stop(struct control *ctl);

/* Sends one response line; takes ownership of obj. A closed connection drops it. */
void ctl_send(struct ctl_conn *c, struct json_object *obj);
/* Sends the "end" line and lets the connection read its next request. result is
 * owned (may be NULL); error may be NULL. */
void ctl_end(struct ctl_conn *c, int ok, unsigned done, unsigned failed, const char *error,
	     struct json_object *result);

#endif

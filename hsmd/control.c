#include "hsmd/control.h"

#include <errno.h>
#include <grp.h>
#include <json-c/json.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hsmd/ops.h"
#include "hsmd/worker.h"
#include "lib/config.h"
#include "lib/log.h"

struct control {
	struct hsmd *h;
	ev_io accept_w;
	struct ctl_conn *conns;
};

struct ctl_conn {
	struct control *ctl;
	struct ctl_conn *next;
	int fd; /* owned; -1 once closed */
	ev_io rw, ww;
	char *in; /* bytes read, not yet a whole line */
	size_t inlen, incap;
	char *out; /* bytes to write */
	size_t outlen, outcap, outoff;
	int busy;	 /* a request is being answered */
	int in_dispatch; /* inside ctl_process's call to ops: it frees, not ctl_end */
	int dead;	 /* closed while in dispatch: ctl_process frees it */
	int closing;	 /* close once the output is written */
	int detached;	 /* the server stopped while a request ran: not on its list */
	pid_t pid;
	uid_t uid;
};

static void ctl_close(struct ctl_conn *c);
static void ctl_process(struct ctl_conn *c);

static void ctl_free(struct ctl_conn *c)
{
	struct ctl_conn **pp;

	for (pp = c->detached ? NULL : &c->ctl->conns; pp && *pp && *pp != c;)
		pp = &(*pp)->next;
	if (pp && *pp)
		*pp = c->next;
	free(c->in);
	free(c->out);
	free(c);
}

/* The fd goes now; the struct stays while a request still holds it. */
static void ctl_close(struct ctl_conn *c)
{
	struct ev_loop *loop = c->ctl->h->loop;

	if (c->fd >= 0) {
		ev_io_stop(loop, &c->rw);
		ev_io_stop(loop, &c->ww);
		close(c->fd);
		c->fd = -1;
	}
	if (!c->busy)
		ctl_free(c);
}

static void ctl_flush(struct ctl_conn *c)
{
	struct ev_loop *loop = c->ctl->h->loop;

	while (c->fd >= 0 && c->outoff < c->outlen) {
		ssize_t n = write(c->fd, c->out + c->outoff, c->outlen - c->outoff);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			ev_io_start(loop, &c->ww);
			return;
		}
		if (n <= 0) {
			ctl_close(c);
			return;
		}
		c->outoff += (size_t)n;
	}
	if (c->fd < 0)
		return;
	ev_io_stop(loop, &c->ww);
	c->outlen = c->outoff = 0;
	if (c->closing && !c->busy)
		ctl_close(c);
}

static void ctl_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	ctl_flush(w->data);
}

static void ctl_append(struct ctl_conn *c, const char *s, size_t n)
{
	if (c->fd < 0)
		return;
	if (c->outoff && c->outoff == c->outlen)
		c->outlen = c->outoff = 0;
	if (c->outlen + n + 1 > c->outcap) {
		size_t cap = c->outcap ? c->outcap : 4096;
		char *p;

		while (cap < c->outlen + n + 1)
			cap *= 2;
		p = realloc(c->out, cap);
		if (!p) {
			log_warnx("control: out of memory; dropping client %d", (int)c->pid);
			ctl_close(c);
			return;
		}
		c->out = p;
		c->outcap = cap;
	}
	memcpy(c->out + c->outlen, s, n);
	c->outlen += n;
	c->out[c->outlen++] = '\n';
}

void ctl_send(struct ctl_conn *c, struct json_object *obj)
{
	size_t n;
	const char *s = json_object_to_json_string_length(obj, JSON_C_TO_STRING_PLAIN, &n);

	ctl_append(c, s, n);
	json_object_put(obj);
	if (c->fd >= 0)
		ctl_flush(c);
}

void ctl_end(struct ctl_conn *c, int ok, unsigned done, unsigned failed, const char *error,
	     struct json_object *result)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "type", json_object_new_string("end"));
	json_object_object_add(o, "ok", json_object_new_boolean(ok));
	json_object_object_add(o, "done", json_object_new_int64(done));
	json_object_object_add(o, "failed", json_object_new_int64(failed));
	if (error)
		json_object_object_add(o, "error", json_object_new_string(error));
	if (result)
		json_object_object_add(o, "result", result);
	ctl_send(c, o); /* still busy: nothing here frees c */
	c->busy = 0;
	if (c->in_dispatch) {
		if (c->fd < 0)
			c->dead = 1;
		return;
	}
	if (c->fd < 0) {
		ctl_free(c);
		return;
	}
	if (c->closing) {
		if (c->outoff >= c->outlen)
			ctl_close(c);
		return;
	}
	/* Pipelined requests wait in the input buffer. */
	ctl_process(c);
}

/* Answers a request that never reached ops; may free c (not in dispatch). */
static void ctl_reject(struct ctl_conn *c, const char *error)
{
	c->busy = 1;
	ctl_end(c, 0, 0, 0, error, NULL);
}

static void ctl_request(struct ctl_conn *c, const char *line, size_t len)
{
	struct json_tokener *tok = json_tokener_new_ex(64);
	struct json_object *req;

	if (!tok) {
		ctl_reject(c, "out of memory");
		return;
	}
	req = json_tokener_parse_ex(tok, line, (int)len);
	if (!req || json_tokener_get_error(tok) != json_tokener_success ||
	    tok->char_offset != (int)len) {
		json_object_put(req);
		json_tokener_free(tok);
		ctl_reject(c, "malformed request: not one JSON object");
		return;
	}
	json_tokener_free(tok);
	if (!json_object_is_type(req, json_type_object)) {
		json_object_put(req);
		ctl_reject(c, "malformed request: not a JSON object");
		return;
	}
	c->busy = 1;
	ops_dispatch(c->ctl->h, c, req);
	json_object_put(req);
}

/* Answers whole request lines, one at a time; may free c. */
static void ctl_process(struct ctl_conn *c)
{
	while (!c->busy && c->fd >= 0) {
		char *nl = memchr(c->in, '\n', c->inlen);
		size_t linelen;
		char *line;

		if (!nl)
			return;
		linelen = (size_t)(nl - c->in);
		line = malloc(linelen + 1);
		if (!line) {
			ctl_close(c);
			return;
		}
		memcpy(line, c->in, linelen);
		line[linelen] = '\0';
		memmove(c->in, nl + 1, c->inlen - linelen - 1);
		c->inlen -= linelen + 1;
		c->in_dispatch = 1;
		ctl_request(c, line, linelen);
		c->in_dispatch = 0;
		free(line);
		if (c->dead) {
			ctl_free(c);
			return;
		}
		if (!c->busy && c->closing) {
			if (c->outoff >= c->outlen)
				ctl_close(c);
			return;
		}
	}
}

static void ctl_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct ctl_conn *c = w->data;

	(void)loop;
	(void)revents;
	for (;;) {
		ssize_t n;

		if (c->incap - c->inlen < 65536) {
			size_t cap = c->incap ? c->incap * 2 : 65536;
			char *p;

			if (cap > CTL_LINE_MAX + 65536) {
				ev_io_stop(c->ctl->h->loop, &c->rw);
				if (!c->busy) {
					c->closing = 1;
					ctl_reject(c, "request line longer than 16 MiB");
				}
				return;
			}
			p = realloc(c->in, cap);
			if (!p) {
				ctl_close(c);
				return;
			}
			c->in = p;
			c->incap = cap;
		}
		n = read(c->fd, c->in + c->inlen, c->incap - c->inlen);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0) {
			ctl_close(c);
			return;
		}
		c->inlen += (size_t)n;
		if (c->inlen > CTL_LINE_MAX && !memchr(c->in, '\n', c->inlen)) {
			ev_io_stop(c->ctl->h->loop, &c->rw);
			if (!c->busy) {
				c->closing = 1;
				ctl_reject(c, "request line longer than 16 MiB");
			}
			return;
		}
	}
	ctl_process(c);
}

/* Root, or a member of the socket's group. */
static int ctl_allowed(struct control *ctl, const struct ucred *cr)
{
	const char *gname = ctl->h->cfg->socket_group;
	struct group *g;
	struct passwd *pw;

	if (cr->uid == 0)
		return 1;
	g = gname ? getgrnam(gname) : NULL;
	if (!g)
		return 0;
	if (cr->gid == g->gr_gid)
		return 1;
	pw = getpwuid(cr->uid);
	if (!pw)
		return 0;
	for (char **m = g->gr_mem; m && *m; m++)
		if (strcmp(*m, pw->pw_name) == 0)
			return 1;
	return 0;
}

static void ctl_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct control *ctl = w->data;

	(void)revents;
	for (;;) {
		struct ucred cr;
		socklen_t crlen = sizeof(cr);
		struct ctl_conn *c;
		int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				log_warn("control: accept");
			return;
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->ctl = ctl;
		c->fd = fd;
		c->next = ctl->conns;
		ctl->conns = c;
		ev_io_init(&c->rw, ctl_read_cb, fd, EV_READ);
		ev_io_init(&c->ww, ctl_write_cb, fd, EV_WRITE);
		c->rw.data = c->ww.data = c;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) < 0 ||
		    !ctl_allowed(ctl, &cr)) {
			log_warnx("control: refused a client (uid %d): not root nor in group %s",
				  crlen == sizeof(cr) ? (int)cr.uid : -1,
				  ctl->h->cfg->socket_group);
			c->closing = 1;
			ctl_reject(c, "permission denied: root or the hsm group only (EACCES)");
			continue;
		}
		c->pid = cr.pid;
		c->uid = cr.uid;
		ev_io_start(loop, &c->rw);
	}
}

struct control *control_start(struct hsmd *h, int listen_fd)
{
	struct control *ctl = calloc(1, sizeof(*ctl));

	if (!ctl)
		return NULL;
	ctl->h = h;
	ev_io_init(&ctl->accept_w, ctl_accept_cb, listen_fd, EV_READ);
	ctl->accept_w.data = ctl;
	ev_io_start(h->loop, &ctl->accept_w);
	return ctl;
}

void control_stop(struct control *ctl)
{
	if (!ctl)
		return;
	ev_io_stop(ctl->h->loop, &ctl->accept_w);
	while (ctl->conns) {
		struct ctl_conn *c = ctl->conns;

		/* Requests still running keep their struct until they end. */
		if (c->busy) {
			ctl->conns = c->next;
			c->detached = 1;
			if (c->fd >= 0) {
				ev_io_stop(ctl->h->loop, &c->rw);
				ev_io_stop(ctl->h->loop, &c->ww);
				close(c->fd);
				c->fd = -1;
			}
			continue;
		}
		ctl_close(c);
	}
	free(ctl);
}

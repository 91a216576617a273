#include "hsmd/guard_link.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "hsmd/fan.h"
#include "hsmd/guard_io.h"
#include "hsmd/intercept.h"
#include "hsmd/worker.h"
#include "lib/config.h"
#include "lib/log.h"

/* How often a worker whose guard died tries the guard's socket again. */
#define GUARD_RETRY 0.25

struct guard_link {
	struct hsmd *h;
	int sock; /* -1 while the guard is away */
	int guard_pid;
	unsigned epoch; /* one per attach: events from an earlier guard are answered directly */
	ev_io io;
	ev_timer retry;
	int warned; /* said once that the guard is away */
};

/* Our event fds must stay below the band the guard keeps free (guard_proto.h): no fd of
 * ours may ever be numbered >= band. */
static int guard_link_cap_fds(int band, char *err, size_t errlen)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
		snprintf(err, errlen, "getrlimit: %s", strerror(errno));
		return -1;
	}
	if (rl.rlim_cur > (rlim_t)band) {
		rl.rlim_cur = (rlim_t)band;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
			snprintf(err, errlen, "cannot lower the open file limit to %d: %s", band,
				 strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* Connects and attaches; blocks for at most 2 s (the guard answers at once). On success
 * gl->sock is set and h->perm_fd is the group. */
static int guard_link_attach(struct guard_link *gl, char *err, size_t errlen)
{
	struct hsmd *h = gl->h;
	struct guard_msg m = {.version = GUARD_PROTO_VERSION,
			      .type = GUARD_MSG_ATTACH,
			      .pid = (int32_t)getpid(),
			      .flag = h->perm_fd >= 0};
	int sock = guard_connect(h->cfg->guard_socket), group = -1;

	if (sock < 0) {
		snprintf(err, errlen, "no hsmd-guard answers on %s: %s", h->cfg->guard_socket,
			 strerror(errno));
		return -1;
	}
	if (guard_send(sock, &m, h->perm_fd) < 0 || guard_recv(sock, &m, &group, 2000) <= 0 ||
	    m.type != GUARD_MSG_HELLO) {
		snprintf(err, errlen, "hsmd-guard on %s did not greet us: %s", h->cfg->guard_socket,
			 strerror(errno));
		goto fail;
	}
	if (h->perm_fd < 0 && group < 0) {
		snprintf(err, errlen, "hsmd-guard on %s sent no fanotify group",
			 h->cfg->guard_socket);
		goto fail;
	}
	if (guard_link_cap_fds((int)m.arg, err, errlen) < 0)
		goto fail;
	if (group >= 0) {
		if (h->perm_fd >= 0)
			close(group); /* we keep ours: the guard adopted it */
		else
			h->perm_fd = group;
	}
	gl->sock = sock;
	gl->guard_pid = (int)m.id;
	gl->epoch++;
	gl->warned = 0;
	return 0;
fail:
	if (group >= 0)
		close(group);
	close(sock);
	return -1;
}

static void guard_link_msg_cb(struct ev_loop *loop, ev_io *w, int revents);

static void guard_link_start_io(struct guard_link *gl)
{
	ev_io_init(&gl->io, guard_link_msg_cb, gl->sock, EV_READ);
	gl->io.data = gl;
	ev_io_start(gl->h->loop, &gl->io);
}

static void guard_link_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct guard_link *gl = w->data;
	char err[512];

	(void)loop;
	(void)revents;
	if (guard_link_attach(gl, err, sizeof(err)) < 0) {
		if (!gl->warned)
			log_warnx("%s; the volumes fail open if hsmd stops now (retrying)", err);
		gl->warned = 1;
		return;
	}
	ev_timer_stop(gl->h->loop, &gl->retry);
	guard_link_start_io(gl);
	log_info("attached to hsmd-guard (pid %d) again; it adopted our group", gl->guard_pid);
}

static void guard_link_lost(struct guard_link *gl)
{
	log_warnx("hsmd-guard (pid %d) went away; keeping the group until one is back",
		  gl->guard_pid);
	ev_io_stop(gl->h->loop, &gl->io);
	close(gl->sock);
	gl->sock = -1;
	gl->guard_pid = 0;
	ev_timer_again(gl->h->loop, &gl->retry);
}

static void guard_link_msg_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct guard_link *gl = w->data;

	(void)loop;
	(void)revents;
	for (int i = 0; i < 64; i++) {
		struct guard_msg m;
		int fd, r = guard_recv(gl->sock, &m, &fd, 0);

		if (r < 0 && errno == EAGAIN)
			return;
		if (r <= 0) {
			if (r < 0)
				log_warn("reading from hsmd-guard");
			guard_link_lost(gl);
			return;
		}
		if (m.type != GUARD_MSG_EVENT || fd < 0) {
			if (fd >= 0)
				close(fd);
			continue;
		}
		intercept_forwarded(gl->h, fd, m.mask, m.pid,
				    &(struct guard_ref){gl->epoch, m.id, (int)m.arg});
	}
}

struct guard_link *guard_link_open(struct hsmd *h, char *err, size_t errlen)
{
	struct guard_link *gl = calloc(1, sizeof(*gl));

	if (!gl) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	gl->h = h;
	gl->sock = -1;
	if (guard_link_attach(gl, err, errlen) < 0) {
		free(gl);
		return NULL;
	}
	ev_timer_init(&gl->retry, guard_link_retry_cb, GUARD_RETRY, GUARD_RETRY);
	gl->retry.data = gl;
	guard_link_start_io(gl);
	return gl;
}

void guard_link_answer(struct guard_link *gl, const struct guard_ref *ref, int err)
{
	struct guard_msg m = {.version = GUARD_PROTO_VERSION,
			      .type = GUARD_MSG_ANSWER,
			      .id = ref->id,
			      .flag = (uint32_t)err};

	if (gl->sock >= 0 && ref->epoch == gl->epoch && guard_send(gl->sock, &m, -1) == 0)
		return;
	/* The guard that read it is gone; its event is still pending in the group under
	 * the guard's number, which no event of ours can have (it is above the band). */
	if (fan_respond(gl->h->perm_fd, ref->fdnum, err) < 0)
		log_warn("cannot answer an event the previous hsmd-guard held");
}

int guard_link_attached(const struct guard_link *gl)
{
	return gl && gl->sock >= 0;
}

int guard_link_pid(const struct guard_link *gl)
{
	return gl ? gl->guard_pid : 0;
}

void guard_link_free(struct guard_link *gl)
{
	if (!gl)
		return;
	ev_io_stop(gl->h->loop, &gl->io);
	ev_timer_stop(gl->h->loop, &gl->retry);
	if (gl->sock >= 0)
		close(gl->sock);
	free(gl);
}

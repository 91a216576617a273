/* hsmd-guard: keeps the volumes failing closed while hsmd is not running.
 *
 * If the process holding a fanotify pre-content group dies, the group goes away and
 * every stub reads as zeros. The guard is the one process that never does anything
 * risky: it creates the group and its filesystem marks before the volumes are
 * exported, hands a copy of the group to hsmd, and otherwise only watches. While no
 * hsmd is attached it answers the events itself: an access to a stub is held for
 * guard_hold seconds (then denied with EIO) and handed to hsmd when it attaches;
 * anything else is allowed. Only the death of both the guard and hsmd fails open.
 *
 * libc only, one poll loop, no threads. The wire protocol and the fd-number band that
 * keeps the guard's event fds apart from hsmd's are in guard_proto.h. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "hsmd/fan.h"
#include "hsmd/guard_io.h"
#include "hsmd/guard_proto.h"
#include "lib/config.h"
#include "lib/hsmxattr.h"
#include "lib/log.h"

/* The most fd numbers reserved for hsmd's events; less when the hard limit is low. */
#define GUARD_BAND_MAX 65536

/* An event read by the guard and not answered yet. Owns fd (the event's file). */
struct held {
	int fd;
	uint64_t mask;
	int pid;
	uint64_t id;
	double deadline;
	int forwarded; /* handed to the attached hsmd, which answers it */
	struct held *next;
};

struct guard {
	struct hsm_config *cfg;
	int perm_fd; /* the group: created here, or adopted from hsmd */
	int listen_fd;
	int client_fd; /* the attached hsmd's connection, -1 when none */
	int sig_fd;
	int devnull_fd;
	int band;
	struct held *held;
	uint64_t next_id;
	unsigned long allowed, denied, held_total;
};

static double guard_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Answers one of the guard's own events. The file is swapped for /dev/null under the
 * same number first: an exec waiting on this event would fail with ETXTBSY while our
 * writable descriptor of it is open. */
static void guard_answer(struct guard *g, int fd, int err)
{
	if (dup2(g->devnull_fd, fd) < 0)
		log_warn("cannot close an event file early");
	if (fan_respond(g->perm_fd, fd, err) < 0)
		log_warn("cannot answer a fanotify event");
	close(fd);
	if (err)
		g->denied++;
	else
		g->allowed++;
}

/* Any number may be an event that a dead hsmd (below the band) or a dead guard
 * before us (above it, handed to hsmd) read and never answered: deny them all but our
 * own held ones before this process reads anything, or our answers could match theirs
 * (a response for a number with no pending event is refused harmlessly). */
static void guard_deny_stale(struct guard *g)
{
	struct rlimit rl;
	unsigned char *ours;
	int answered = 0, upto;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		rl.rlim_cur = (rlim_t)g->band * 2;
	upto = rl.rlim_cur > (1u << 20) ? 1 << 20 : (int)rl.rlim_cur;
	ours = calloc((size_t)upto, 1);
	if (!ours) {
		log_warnx("out of memory; denying only the numbers below the band");
		upto = g->band;
	} else {
		for (struct held *e = g->held; e; e = e->next)
			if (e->fd < upto)
				ours[e->fd] = 1;
	}
	for (int fd = 0; fd < upto; fd++)
		if ((!ours || !ours[fd]) && fan_respond(g->perm_fd, fd, EIO) == 0)
			answered++;
	free(ours);
	if (answered)
		log_warnx("answered %d event(s) left pending by hsmd with EIO", answered);
}

/* Fills every free number below the band, so that fds the guard gets later (events
 * above all) are >= band. */
static int guard_reserve_band(struct guard *g)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -1;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		log_warn("cannot raise the open file limit");
	/* Half of what we may open is hsmd's, half ours for readers we hold. */
	g->band = rl.rlim_cur / 2 > GUARD_BAND_MAX ? GUARD_BAND_MAX : (int)(rl.rlim_cur / 2);
	if (g->band < 1024) {
		log_warnx("open file limit %llu is too low (at least 2048 needed)",
			  (unsigned long long)rl.rlim_cur);
		return -1;
	}
	for (int fd = 3; fd < g->band; fd++)
		if (fcntl(fd, F_GETFD) < 0 && dup2(g->devnull_fd, fd) < 0) {
			log_warn("cannot reserve fd %d", fd);
			return -1;
		}
	return 0;
}

/* What to do with an event while no hsmd is attached: 0 allow, 1 hold, or an errno. */
static int guard_judge(int fd, uint64_t mask, int *add_ignore)
{
	uint8_t rec[HSM_XATTR_MAX];
	struct hsm_state st;
	char err[200];
	ssize_t n = fgetxattr(fd, HSM_XATTR_NAME, rec, sizeof(rec));

	*add_ignore = 0;
	if (n < 0) {
		if (errno == ENODATA || errno == ENOTSUP) {
			*add_ignore = 1; /* not managed: its data is what is on disk */
			return 0;
		}
		log_warn("cannot read the state of a file; denying");
		return EIO;
	}
	if (hsmx_decode(rec, (size_t)n, &st, err, sizeof(err)) < 0) {
		log_warnx("corrupt state record (%s); denying", err);
		return EIO;
	}
	if (st.state != HSM_STATE_STUB) {
		*add_ignore = 1;
		return 0;
	}
	/* A recall-on-access stub may be opened; its first read, write or exec waits. */
	if ((st.flags & HSM_FLAG_ON_ACCESS) && !(mask & (FAN_PRE_ACCESS | FAN_OPEN_EXEC_PERM)))
		return 0;
	return 1;
}

static void guard_forward(struct guard *g, struct held *e)
{
	struct guard_msg m = {.version = GUARD_PROTO_VERSION,
			      .type = GUARD_MSG_EVENT,
			      .id = e->id,
			      .mask = e->mask,
			      .arg = e->fd,
			      .pid = e->pid};

	if (guard_send(g->client_fd, &m, e->fd) < 0) {
		log_warn("cannot hand an event to hsmd");
		return; /* the reader stays held; EOF or the deadline settles it */
	}
	e->forwarded = 1;
}

static void guard_hold_event(struct guard *g, int fd, uint64_t mask, int pid)
{
	struct held *e = calloc(1, sizeof(*e));

	if (!e) {
		guard_answer(g, fd, EIO);
		return;
	}
	e->fd = fd;
	e->mask = mask;
	e->pid = pid;
	e->id = ++g->next_id;
	e->deadline = guard_now() + g->cfg->guard_hold;
	e->next = g->held;
	g->held = e;
	g->held_total++;
	log_info("holding pid %d's access to a stub until hsmd is back (at most %g s)", pid,
		 g->cfg->guard_hold);
}

static void guard_read_events(struct guard *g)
{
	static uint64_t buf[4096]; /* aligned for the metadata structs */
	ssize_t len = read(g->perm_fd, buf, sizeof(buf));
	struct fanotify_event_metadata *md = (void *)buf;

	if (len < 0) {
		if (errno != EAGAIN && errno != EINTR)
			log_warn("reading fanotify events");
		return;
	}
	for (; FAN_EVENT_OK(md, len); md = FAN_EVENT_NEXT(md, len)) {
		int add_ignore, verdict;

		if (md->fd < 0)
			continue;
		if (md->vers != FANOTIFY_METADATA_VERSION) {
			guard_answer(g, md->fd, EIO);
			continue;
		}
		verdict = guard_judge(md->fd, md->mask, &add_ignore);
		if (verdict == 1) {
			guard_hold_event(g, md->fd, md->mask, md->pid);
			continue;
		}
		if (verdict == 0 && add_ignore)
			fan_ignore_inode(g->perm_fd, md->fd); /* a speed-up only */
		guard_answer(g, md->fd, verdict);
	}
}

/* Denies held readers whose time is up. Returns the poll timeout until the next. */
static int guard_expire(struct guard *g)
{
	double now = guard_now(), next = -1;
	struct held **pp = &g->held;

	while (*pp) {
		struct held *e = *pp;

		if (!e->forwarded && e->deadline <= now) {
			log_warnx("hsmd did not come back within %g s: pid %d gets EIO",
				  g->cfg->guard_hold, e->pid);
			*pp = e->next;
			guard_answer(g, e->fd, EIO);
			free(e);
			continue;
		}
		if (!e->forwarded && (next < 0 || e->deadline < next))
			next = e->deadline;
		pp = &e->next;
	}
	return next < 0 ? -1 : (int)((next - now) * 1000) + 1;
}

static void guard_detach(struct guard *g)
{
	log_warnx("hsmd went away; the guard answers the volumes' events until it is back");
	close(g->client_fd);
	g->client_fd = -1;
	for (struct held *e = g->held; e; e = e->next)
		if (e->forwarded) {
			e->forwarded = 0;
			e->deadline = guard_now() + g->cfg->guard_hold;
		}
	guard_deny_stale(g);
}

/* hsmd brings the group it kept while the guard was away. Readers held in ours are
 * gated by that group as well (every group must allow an access), so letting ours go
 * is safe; closing it lets through whatever it still had queued, for the same reason. */
static void guard_adopt(struct guard *g, int fd)
{
	while (g->held) {
		struct held *e = g->held;

		g->held = e->next;
		guard_answer(g, e->fd, 0);
		free(e);
	}
	close(g->perm_fd);
	g->perm_fd = fd;
	log_info("adopted the fanotify group hsmd kept");
}

static void guard_attach(struct guard *g, int fd)
{
	struct guard_msg m, hello = {.version = GUARD_PROTO_VERSION,
				     .type = GUARD_MSG_HELLO,
				     .id = (uint64_t)getpid(),
				     .arg = g->band,
				     .flag = (uint32_t)(g->cfg->guard_hold * 1000)};
	int their_group = -1;

	if (guard_recv(fd, &m, &their_group, 5000) < 0 || m.type != GUARD_MSG_ATTACH) {
		log_warnx("a client did not attach properly; dropped");
		if (their_group >= 0)
			close(their_group);
		close(fd);
		return;
	}
	if (m.flag && their_group < 0) {
		log_warnx("hsmd said it brings a group but sent none; dropped");
		close(fd);
		return;
	}
	if (guard_send(fd, &hello, their_group >= 0 ? -1 : g->perm_fd) < 0) {
		log_warn("cannot greet hsmd");
		if (their_group >= 0)
			close(their_group);
		close(fd);
		return;
	}
	if (their_group >= 0)
		guard_adopt(g, their_group);
	g->client_fd = fd;
	log_info("hsmd attached (pid %d)", m.pid);
	for (struct held *e = g->held; e; e = e->next)
		guard_forward(g, e);
}

static void guard_accept(struct guard *g)
{
	int fd = accept4(g->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	struct ucred cr;
	socklen_t crlen = sizeof(cr);

	if (fd < 0)
		return;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) < 0 || cr.uid != 0) {
		log_warnx("refusing a guard client that is not root");
		close(fd);
		return;
	}
	if (g->client_fd >= 0) {
		log_warnx("refusing a second hsmd (pid %d): pid attached already", (int)cr.pid);
		close(fd);
		return;
	}
	guard_attach(g, fd);
}

static void guard_client_msg(struct guard *g)
{
	struct guard_msg m;
	int fd = -1;
	int r = guard_recv(g->client_fd, &m, &fd, 0);

	if (fd >= 0)
		close(fd); /* hsmd sends none after ATTACH */
	if (r <= 0) {
		if (r < 0 && errno == EAGAIN)
			return;
		if (r < 0)
			log_warn("reading from hsmd");
		guard_detach(g);
		return;
	}
	log_debug("hsmd answers event %llu: %d", (unsigned long long)m.id, (int)m.flag);
	if (m.type != GUARD_MSG_ANSWER)
		return;
	for (struct held **pp = &g->held; *pp; pp = &(*pp)->next) {
		struct held *e = *pp;

		if (e->id != m.id || !e->forwarded)
			continue;
		*pp = e->next;
		guard_answer(g, e->fd, (int)m.flag);
		free(e);
		return;
	}
}

static int guard_setup(struct guard *g)
{
	sigset_t mask;

	g->devnull_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (g->devnull_fd < 0) {
		log_warn("open /dev/null");
		return -1;
	}
	if (guard_reserve_band(g) < 0)
		return -1;
	g->perm_fd = fan_perm_init();
	if (g->perm_fd < 0) {
		log_warn("fanotify_init (pre-content; Linux >= 6.14 is needed)");
		return -1;
	}
	for (size_t i = 0; i < g->cfg->nvolumes; i++) {
		const struct hsm_volume_cfg *v = &g->cfg->volumes[i];

		if (fan_mark_filesystem(g->perm_fd, HSM_FAN_PERM_MASK, v->path) < 0) {
			log_warn("volume %s: cannot watch %s", v->name, v->path);
			return -1;
		}
	}
	g->listen_fd = guard_listen(g->cfg->guard_socket);
	if (g->listen_fd < 0)
		return -1;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	g->sig_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (g->sig_fd < 0) {
		log_warn("signalfd");
		return -1;
	}
	return 0;
}

/* The guard's own end: with hsmd attached the group lives on in hsmd; without, the
 * readers it holds get EIO, and from here on nothing protects the volumes. */
static void guard_shutdown(struct guard *g)
{
	if (g->client_fd >= 0) {
		log_info("stopping; hsmd keeps the volumes' group");
		return;
	}
	while (g->held) {
		struct held *e = g->held;

		g->held = e->next;
		guard_answer(g, e->fd, EIO);
		free(e);
	}
	log_warnx("stopping with no hsmd attached: stubs are unprotected until one of them "
		  "runs again");
}

/* SIGHUP (hsmd's reload passes it on): the hold time, the log level and the marks of
 * volumes added since. The socket and the lock are what hsmd finds us by: they stay. */
static void guard_reload(struct guard *g)
{
	struct hsm_config *n;
	char err[1024];

	if (config_load(g->cfg->file, &n, err, sizeof(err)) < 0 ||
	    config_check_volumes(n, err, sizeof(err)) < 0) {
		log_warnx("reload: %s; keeping the configuration loaded before", err);
		config_free(n);
		return;
	}
	for (size_t i = 0; i < n->nvolumes; i++)
		if (!config_volume(g->cfg, n->volumes[i].name) &&
		    fan_mark_filesystem(g->perm_fd, HSM_FAN_PERM_MASK, n->volumes[i].path) < 0) {
			log_warn("reload: volume %s: cannot watch %s", n->volumes[i].name,
				 n->volumes[i].path);
			config_free(n);
			return;
		}
	if (strcmp(n->guard_socket, g->cfg->guard_socket))
		log_warnx("reload: guard_socket changed: hsmd-guard keeps %s until it is restarted",
			  g->cfg->guard_socket);
	free(n->guard_socket);
	n->guard_socket = g->cfg->guard_socket;
	g->cfg->guard_socket = NULL;
	config_free(g->cfg);
	g->cfg = n;
	log_set_level(n->log_level);
	log_info("reload: guarding %zu volume(s) (hold %g s)", n->nvolumes, n->guard_hold);
}

static int guard_loop(struct guard *g)
{
	for (;;) {
		struct pollfd p[3] = {
		    {.fd = g->sig_fd, .events = POLLIN},
		    {.fd = g->listen_fd, .events = POLLIN},
		    {.fd = g->client_fd >= 0 ? g->client_fd : g->perm_fd, .events = POLLIN}};
		int timeout = guard_expire(g);

		if (poll(p, 3, timeout) < 0) {
			if (errno == EINTR)
				continue;
			log_warn("poll");
			return 1;
		}
		if (p[0].revents) {
			struct signalfd_siginfo si;

			if (read(g->sig_fd, &si, sizeof(si)) == sizeof(si)) {
				if (si.ssi_signo == SIGHUP) {
					guard_reload(g);
				} else {
					guard_shutdown(g);
					return 0;
				}
			}
		}
		/* A client's EOF before any accept: its band is cleared before a new hsmd
		 * can read events with the same numbers. */
		if (p[2].revents && g->client_fd >= 0)
			guard_client_msg(g);
		else if (p[2].revents)
			guard_read_events(g);
		if (p[1].revents)
			guard_accept(g);
	}
}

static void usage(FILE *out)
{
	fprintf(out, "usage: hsmd-guard [-c FILE] [-f]\n"
		     "  -c FILE  hsmd's configuration file (volumes, guard_socket, guard_hold)\n"
		     "  -f       stay in the foreground and log to stderr\n");
}

int main(int argc, char **argv)
{
	char path[4096], err[1024];
	const char *conf = NULL;
	struct guard g = {.client_fd = -1, .perm_fd = -1, .listen_fd = -1};
	int foreground = 0, c, ready_fd = -1, lock_fd, rc;

	while ((c = getopt(argc, argv, "c:fh")) != -1) {
		if (c == 'c') {
			conf = optarg;
		} else if (c == 'f') {
			foreground = 1;
		} else {
			usage(c == 'h' ? stdout : stderr);
			return c == 'h' ? 0 : 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (!conf) {
		snprintf(path, sizeof(path), "%s/hsm/hsmd.conf", SYSCONFDIR);
		conf = path;
	}
	if (config_load(conf, &g.cfg, err, sizeof(err)) < 0 ||
	    config_check_volumes(g.cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "hsmd-guard: %s\n", err);
		return 1;
	}
	{
		struct stat sb;
		/* Started by hsmd (guard = auto) or by systemd, stderr is hsmd's log or the
		 * journal: log there too, not only to syslog. */
		int to_stderr =
		    foreground ||
		    (fstat(2, &sb) == 0 &&
		     (S_ISREG(sb.st_mode) || S_ISFIFO(sb.st_mode) || S_ISSOCK(sb.st_mode)));

		log_init("hsmd-guard", g.cfg->log_level, to_stderr);
	}
	lock_fd = guard_lock(g.cfg->guard_socket);
	if (lock_fd < 0)
		return 1;
	if (!foreground && guard_daemonize(&ready_fd) < 0)
		return 1;
	if (guard_setup(&g) < 0)
		return 1;
	guard_write_pid(lock_fd);
	guard_ready(ready_fd);
	/* The pipe's number lies in hsmd's band: keep it filled. */
	if (ready_fd >= 0 && dup2(g.devnull_fd, ready_fd) < 0)
		log_warn("cannot reserve fd %d", ready_fd);
	log_info("guarding %zu volume(s) on %s (hold %g s)", g.cfg->nvolumes, g.cfg->guard_socket,
		 g.cfg->guard_hold);
	rc = guard_loop(&g);
	unlink(g.cfg->guard_socket);
	config_free(g.cfg);
	return rc;
}

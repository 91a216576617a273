#include "hsmd/supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hsmd/confdiff.h"
#include "hsmd/fan.h"
#include "hsmd/guard_io.h"
#include "hsmd/reload.h"
#include "hsmd/worker.h"
#include "lib/config.h"
#include "lib/log.h"

static int sup_mkdir(const char *path, mode_t mode)
{
	if (mkdir(path, mode) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

static int sup_mkdirs(const char *path, mode_t mode)
{
	char buf[4096];

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *c = buf + 1; *c; c++) {
		if (*c == '/') {
			*c = '\0';
			if (sup_mkdir(buf, 0755) < 0)
				return -1;
			*c = '/';
		}
	}
	return sup_mkdir(buf, mode);
}

static void sup_raise_nofile(void)
{
	struct rlimit rl;

	/* Every waiting reader holds an event fd: never run out of them. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			log_warn("cannot raise the open file limit");
	}
}

/* hsmd's own view of each volume: a bind mount in a private mount namespace that no
 * other process can see, ignored by both fanotify groups, so hsmd never waits on its
 * own events. */
static int sup_namespace(const struct hsm_config *cfg)
{
	char dir[4200];

	if (unshare(CLONE_NEWNS) < 0) {
		log_warn("cannot make a private mount namespace");
		return -1;
	}
	/* A slave, not private: the host's unmounts still reach this copy, so hsmd does
	 * not keep every filesystem mounted at its start alive (fsck, disk swaps); our
	 * own bind mounts do not leak back to the host. */
	if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0) {
		log_warn("cannot make the mount namespace a slave of the host's");
		return -1;
	}
	snprintf(dir, sizeof(dir), "%.4000s/admin", cfg->state_dir);
	if (sup_mkdirs(dir, 0700) < 0) {
		log_warn("cannot create %s", dir);
		return -1;
	}
	return 0;
}

/* Binds volume v's backing on admin (STATE_DIR/admin/NAME). */
static int sup_admin_mount(const struct hsm_config *cfg, const struct hsm_volume_cfg *v,
			   char admin[4200])
{
	struct stat sb;

	if (stat(v->path, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
		log_warnx("volume %s: path %s is not a directory", v->name, v->path);
		return -1;
	}
	if (snprintf(admin, 4200, "%.4000s/admin/%.64s", cfg->state_dir, v->name) >= 4200) {
		log_warnx("volume %s: state directory path too long", v->name);
		return -1;
	}
	if (sup_mkdir(admin, 0700) < 0) {
		log_warn("volume %s: cannot create %s", v->name, admin);
		return -1;
	}
	if (mount(v->backing, admin, NULL, MS_BIND, NULL) < 0) {
		log_warn("volume %s: cannot bind %s on %s", v->name, v->backing, admin);
		return -1;
	}
	/* hsmd only looks: its reads (scan, archive, readlink of symlinks for the
	 * other sites) must not change atimes. A bind mount takes per-mount flags only
	 * on a remount. */
	if (mount(NULL, admin, NULL, MS_REMOUNT | MS_BIND | MS_NOATIME, NULL) < 0) {
		log_warn("volume %s: cannot make %s noatime", v->name, admin);
		return -1;
	}
	return 0;
}

static int sup_mark(const struct hsm_volume_cfg *v, int notify_fd)
{
	if (fan_mark_filesystem(notify_fd, HSM_FAN_NOTIFY_MASK, v->path) < 0) {
		log_warn("volume %s: cannot watch %s for changes", v->name, v->path);
		return -1;
	}
	return 0;
}

/* guard = auto: hsmd starts hsmd-guard (the one beside our own binary) when none holds
 * the guard lock. It daemonizes once its marks are in place, so when this returns 0
 * the volumes are guarded. */
static int sup_ensure_guard(struct hsm_config *cfg)
{
	char self[4096], prog[4200];
	int pid, status;
	ssize_t n;
	pid_t child;

	if (cfg->guard_mode != HSM_GUARD_AUTO || guard_running(cfg->guard_socket, &pid) != 0)
		return 0;
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n < 0) {
		log_warn("cannot find our own binary to start hsmd-guard beside it");
		return -1;
	}
	self[n] = '\0';
	{
		char *slash = strrchr(self, '/');

		if (slash)
			*slash = '\0';
	}
	snprintf(prog, sizeof(prog), "%s/hsmd-guard", self);
	child = fork();
	if (child < 0) {
		log_warn("cannot start %s", prog);
		return -1;
	}
	if (child == 0) {
		sigset_t none;

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execl(prog, "hsmd-guard", "-c", cfg->file, (char *)NULL);
		fprintf(stderr, "hsmd: cannot run %s: %s\n", prog, strerror(errno));
		_exit(127);
	}
	while (waitpid(child, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		log_warnx("%s did not start (status %d); see its log", prog, status);
		return -1;
	}
	guard_running(cfg->guard_socket, &pid);
	log_info("started hsmd-guard (pid %d)", pid);
	return 0;
}

static int sup_socket(struct hsm_config *cfg)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char dir[4096];
	char *slash;
	int fd;

	if (strlen(cfg->socket_path) >= sizeof(sa.sun_path)) {
		log_warnx("socket path %s is too long", cfg->socket_path);
		return -1;
	}
	snprintf(dir, sizeof(dir), "%s", cfg->socket_path);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		if (sup_mkdirs(dir, 0755) < 0) {
			log_warn("cannot create %s", dir);
			return -1;
		}
	}
	strcpy(sa.sun_path, cfg->socket_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		log_warn("socket");
		return -1;
	}
	/* A socket file left by a dead hsmd is stale; one that answers is not ours. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		log_warnx("another hsmd answers on %s", cfg->socket_path);
		close(fd);
		return -1;
	}
	unlink(cfg->socket_path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0) {
		log_warn("cannot listen on %s", cfg->socket_path);
		close(fd);
		return -1;
	}
	{
		struct group *g = getgrnam(cfg->socket_group);

		if (chmod(cfg->socket_path, g ? 0660 : 0600) < 0 ||
		    (g && chown(cfg->socket_path, 0, g->gr_gid) < 0))
			log_warn("cannot set the permissions of %s", cfg->socket_path);
	}
	return fd;
}

static pid_t sup_spawn(struct worker_args *wa, const sigset_t *oldmask)
{
	pid_t parent = getpid();
	pid_t pid = fork();

	if (pid < 0) {
		log_warn("cannot start a worker");
		return -1;
	}
	if (pid == 0) {
		sigprocmask(SIG_SETMASK, oldmask, NULL);
		/* A worker outliving its supervisor would hold the volumes' files and the peer
		 * port with nobody to restart or stop it. */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
			_exit(1);
		_exit(worker_main(wa));
	}
	log_info("worker %d started", (int)pid);
	return pid;
}

static double sup_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int sup_wait_worker(pid_t worker)
{
	struct timespec delay = {0, 100 * 1000 * 1000};

	for (int i = 0; i < 100; i++) {
		int status;
		pid_t r = waitpid(worker, &status, WNOHANG);

		if (r == worker || (r < 0 && errno == ECHILD))
			return 0;
		nanosleep(&delay, NULL);
	}
	log_warnx("worker %d did not stop in 10 s; killing it", (int)worker);
	kill(worker, SIGKILL);
	waitpid(worker, NULL, 0);
	return 0;
}

/* What the supervisor runs with; the configuration and the admin paths are replaced as
 * a whole by a reload that restarts the worker. */
struct sup {
	struct hsm_config *cfg; /* owned */
	char (*admin)[4200];	/* owned: admin mount of each of cfg's volumes */
	int debug;		/* -d: debug logging whatever the file says */
	int notify_fd, ctl_fd;
	pid_t worker;
	double started;
	sigset_t oldmask;
};

/* The admin paths of n's volumes: those of volumes already mounted are reused, new
 * volumes are bound and marked. NULL (logged) if one cannot be. */
static char (*sup_admin_for(struct sup *s, const struct hsm_config *n))[4200]
{
	char(*admin)[4200] = calloc(n->nvolumes, 4200);

	if (!admin)
		fatalx("out of memory");
	for (size_t i = 0; i < n->nvolumes; i++) {
		const struct hsm_volume_cfg *v = &n->volumes[i];
		const struct hsm_volume_cfg *old = s->cfg ? config_volume(s->cfg, v->name) : NULL;

		if (old) {
			memcpy(admin[i], s->admin[old - s->cfg->volumes], 4200);
			continue;
		}
		if (sup_admin_mount(n, v, admin[i]) < 0 || sup_mark(v, s->notify_fd) < 0) {
			free(admin);
			return NULL;
		}
		if (s->cfg)
			log_info("volume %s (%s) added", v->name, v->path);
	}
	return admin;
}

static void sup_signal_guard(const struct hsm_config *cfg, int sig)
{
	int pid;

	if (guard_running(cfg->guard_socket, &pid) == 1 && pid > 0 && kill(pid, sig) < 0)
		log_warn("cannot signal hsmd-guard (pid %d)", pid);
}

static void sup_stop_worker(struct sup *s)
{
	if (s->worker <= 0)
		return;
	kill(s->worker, SIGTERM);
	sup_wait_worker(s->worker);
	s->worker = -1;
}

/* SIGHUP: all of the file or none of it. A change only a restart can apply keeps the
 * whole file out, so that hsmd never runs half of one file and half of another. */
static void sup_reload(struct sup *s)
{
	struct hsm_config *n;
	struct confdiff d;
	char err[4096];

	if (reload_load(s->cfg->file, &n, err, sizeof(err)) < 0) {
		log_warnx("reload: %s; still running the configuration loaded before", err);
		return;
	}
	if (s->debug)
		n->log_level = LOG_LVL_DEBUG;
	confdiff(s->cfg, n, &d);
	for (size_t i = 0; i < d.n; i++)
		if (d.worst < CONFDIFF_RESTART || d.item[i].cls == CONFDIFF_RESTART)
			log_info("reload: %s: %s", d.item[i].key,
				 confdiff_class_says(d.item[i].cls));
	if (d.worst == CONFDIFF_RESTART) {
		log_warnx("reload: nothing of %s is applied until hsmd is restarted", n->file);
		config_free(n);
		return;
	}
	if (d.worst == CONFDIFF_WORKER) {
		char(*admin)[4200] = sup_admin_for(s, n);

		if (!admin) {
			log_warnx("reload: still running the configuration loaded before");
			config_free(n);
			return;
		}
		/* The guard holds the readers that come while no worker runs. */
		sup_stop_worker(s);
		free(s->admin);
		s->admin = admin;
	}
	config_free(s->cfg);
	s->cfg = n;
	log_set_level(n->log_level);
	reload_snapshot_write(n);
	if (s->worker > 0)
		kill(s->worker, SIGHUP);
	sup_signal_guard(n, SIGHUP);
	log_info("reload: %s applied%s", n->file,
		 d.worst == CONFDIFF_WORKER ? "; a new worker starts" : "");
}

static void sup_reap(struct sup *s)
{
	static double backoff = 0.1;

	for (;;) {
		int status;
		pid_t r = waitpid(-1, &status, WNOHANG);

		if (r <= 0)
			break;
		if (r != s->worker)
			continue;
		if (WIFSIGNALED(status))
			log_warnx("worker %d killed by signal %d; restarting", (int)r,
				  WTERMSIG(status));
		else
			log_warnx("worker %d exited with status %d; restarting", (int)r,
				  WEXITSTATUS(status));
		s->worker = -1;
		/* A worker that dies at once would spin: back off, up to 5 s. */
		if (sup_now() - s->started < 2) {
			struct timespec d = {(time_t)backoff,
					     (long)((backoff - (long)backoff) * 1e9)};

			nanosleep(&d, NULL);
			backoff = backoff * 2 > 5 ? 5 : backoff * 2;
		} else {
			backoff = 0.1;
		}
	}
}

static int sup_loop(struct sup *s)
{
	sigset_t mask;

	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, &s->oldmask);
	for (;;) {
		struct worker_args wa = {.cfg = s->cfg,
					 .notify_fd = s->notify_fd,
					 .ctl_fd = s->ctl_fd,
					 .admin = s->admin,
					 .debug = s->debug};
		siginfo_t si;
		struct timespec ts = {1, 0};
		int sig;

		/* A guard that died while we run is started again before the worker could
		 * die too: only both gone at once fails open. */
		sup_ensure_guard(s->cfg);
		if (s->worker < 0) {
			s->worker = sup_spawn(&wa, &s->oldmask);
			s->started = sup_now();
		}
		sig = sigtimedwait(&mask, &si, &ts);
		if (sig < 0)
			continue;
		if (sig == SIGTERM || sig == SIGINT) {
			log_info("stopping on signal %d", sig);
			sup_stop_worker(s);
			return 0;
		}
		if (sig == SIGHUP)
			sup_reload(s);
		else
			sup_reap(s);
	}
}

int supervisor_run(struct hsm_config *cfg, int debug)
{
	struct sup s = {.cfg = cfg, .debug = debug, .notify_fd = -1, .ctl_fd = -1, .worker = -1};
	char snap[4200];
	int rc = 1;

	sup_raise_nofile();
	if (sup_mkdirs(cfg->state_dir, 0700) < 0) {
		log_warn("cannot create the state directory %s", cfg->state_dir);
		goto out;
	}
	if (sup_ensure_guard(cfg) < 0)
		goto out;
	s.notify_fd = fan_notify_init();
	if (s.notify_fd < 0) {
		log_warn("fanotify_init (notification)");
		goto out;
	}
	if (sup_namespace(cfg) < 0)
		goto out;
	s.cfg = NULL; /* nothing mounted yet: every volume is new */
	s.admin = sup_admin_for(&s, cfg);
	s.cfg = cfg;
	if (!s.admin)
		goto out;
	s.ctl_fd = sup_socket(cfg);
	if (s.ctl_fd < 0)
		goto out;
	reload_snapshot_write(cfg);
	log_info("site %s: watching %zu volume(s), store %s, control socket %s", cfg->site,
		 cfg->nvolumes, cfg->store.url, cfg->socket_path);
	rc = sup_loop(&s);
	unlink(s.cfg->socket_path);
	reload_snapshot_path(s.cfg, snap, sizeof(snap));
	unlink(snap);
out:
	free(s.admin);
	config_free(s.cfg);
	return rc;
}

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
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hsmd/fan.h"
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
static int sup_admin_mounts(struct hsm_config *cfg, char admin[][4200])
{
	char dir[4200];

	if (unshare(CLONE_NEWNS) < 0) {
		log_warn("cannot make a private mount namespace");
		return -1;
	}
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		log_warn("cannot make mounts private");
		return -1;
	}
	snprintf(dir, sizeof(dir), "%.4000s/admin", cfg->state_dir);
	if (sup_mkdirs(dir, 0700) < 0) {
		log_warn("cannot create %s", dir);
		return -1;
	}
	for (size_t i = 0; i < cfg->nvolumes; i++) {
		const struct hsm_volume_cfg *v = &cfg->volumes[i];
		struct stat sb;

		if (stat(v->path, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
			log_warnx("volume %s: path %s is not a directory", v->name, v->path);
			return -1;
		}
		if (snprintf(admin[i], 4200, "%.4000s/%.64s", dir, v->name) >= 4200) {
			log_warnx("volume %s: state directory path too long", v->name);
			return -1;
		}
		if (sup_mkdir(admin[i], 0700) < 0) {
			log_warn("volume %s: cannot create %s", v->name, admin[i]);
			return -1;
		}
		if (mount(v->backing, admin[i], NULL, MS_BIND, NULL) < 0) {
			log_warn("volume %s: cannot bind %s on %s", v->name, v->backing, admin[i]);
			return -1;
		}
	}
	return 0;
}

static int sup_marks(struct hsm_config *cfg, char admin[][4200], int perm_fd, int notify_fd)
{
	for (size_t i = 0; i < cfg->nvolumes; i++) {
		const struct hsm_volume_cfg *v = &cfg->volumes[i];

		if (fan_mark_filesystem(perm_fd, HSM_FAN_PERM_MASK, v->path) < 0) {
			if (errno == EINVAL || errno == EOPNOTSUPP || errno == ENODEV)
				log_warnx("volume %s: %s does not support fanotify pre-content "
					  "events (use ext4, xfs or btrfs): %s",
					  v->name, v->path, strerror(errno));
			else
				log_warn("volume %s: cannot watch %s", v->name, v->path);
			return -1;
		}
		if (fan_ignore_mount(perm_fd, admin[i]) < 0) {
			log_warn("volume %s: cannot exempt the admin mount %s", v->name, admin[i]);
			return -1;
		}
		if (fan_mark_filesystem(notify_fd, HSM_FAN_NOTIFY_MASK, v->path) < 0) {
			log_warn("volume %s: cannot watch %s for changes", v->name, v->path);
			return -1;
		}
	}
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
	wa->shared->generation++;
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

/* On the way out: the kernel lets every still-pending permission event through when
 * the group closes, which for a stub means zeros. Deny them instead: the ones a worker
 * read and left (matched by fd number) and the ones still queued. */
static void sup_deny_pending(struct worker_args *wa)
{
	static uint64_t buf[4096];
	int upto = wa->shared->max_event_fd + 4096;
	ssize_t len;

	for (int fd = 0; fd <= upto; fd++)
		fan_respond(wa->perm_fd, fd, EIO);
	while ((len = read(wa->perm_fd, buf, sizeof(buf))) > 0) {
		struct fanotify_event_metadata *md = (void *)buf;

		for (; FAN_EVENT_OK(md, len); md = FAN_EVENT_NEXT(md, len)) {
			if (md->fd < 0)
				continue;
			fan_respond(wa->perm_fd, md->fd, EIO);
			close(md->fd);
		}
	}
}

int supervisor_run(struct hsm_config *cfg)
{
	char(*admin)[4200] = calloc(cfg->nvolumes, 4200);
	struct worker_args wa = {.cfg = cfg};
	sigset_t mask, oldmask;
	double started = 0, backoff = 0.1;
	pid_t worker = -1;
	int rc = 1;

	if (!admin)
		fatalx("out of memory");
	wa.admin = admin;
	sup_raise_nofile();
	if (sup_mkdirs(cfg->state_dir, 0700) < 0) {
		log_warn("cannot create the state directory %s", cfg->state_dir);
		goto out;
	}
	wa.perm_fd = fan_perm_init();
	if (wa.perm_fd < 0) {
		if (errno == EINVAL)
			log_warnx("this kernel has no fanotify pre-content events "
				  "(Linux >= 6.14 is needed)");
		else
			log_warn("fanotify_init (pre-content)");
		goto out;
	}
	wa.notify_fd = fan_notify_init();
	if (wa.notify_fd < 0) {
		log_warn("fanotify_init (notification)");
		goto out;
	}
	if (sup_admin_mounts(cfg, admin) < 0 || sup_marks(cfg, admin, wa.perm_fd, wa.notify_fd) < 0)
		goto out;
	wa.ctl_fd = sup_socket(cfg);
	if (wa.ctl_fd < 0)
		goto out;
	wa.shared = mmap(NULL, sizeof(*wa.shared), PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (wa.shared == MAP_FAILED) {
		log_warn("mmap");
		goto out;
	}
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, &oldmask);
	log_info("site %s: watching %zu volume(s), store %s, control socket %s", cfg->site,
		 cfg->nvolumes, cfg->store.url, cfg->socket_path);

	for (;;) {
		siginfo_t si;
		struct timespec ts;
		int sig;

		if (worker < 0) {
			worker = sup_spawn(&wa, &oldmask);
			started = sup_now();
		}
		ts.tv_sec = worker < 0 ? 1 : 3600;
		ts.tv_nsec = 0;
		sig = sigtimedwait(&mask, &si, &ts);
		if (sig < 0)
			continue;
		if (sig == SIGTERM || sig == SIGINT) {
			log_info("stopping on signal %d", sig);
			if (worker > 0) {
				kill(worker, SIGTERM);
				sup_wait_worker(worker);
			}
			sup_deny_pending(&wa);
			rc = 0;
			break;
		}
		if (sig == SIGHUP) {
			if (worker > 0)
				kill(worker, SIGHUP);
			continue;
		}
		for (;;) {
			int status;
			pid_t r = waitpid(-1, &status, WNOHANG);

			if (r <= 0)
				break;
			if (r != worker)
				continue;
			if (WIFSIGNALED(status))
				log_warnx("worker %d killed by signal %d; restarting", (int)r,
					  WTERMSIG(status));
			else
				log_warnx("worker %d exited with status %d; restarting", (int)r,
					  WEXITSTATUS(status));
			worker = -1;
			/* A worker that dies at once would spin: back off, up to 5 s. */
			if (sup_now() - started < 2) {
				struct timespec d = {(time_t)backoff,
						     (long)((backoff - (long)backoff) * 1e9)};

				nanosleep(&d, NULL);
				backoff = backoff * 2 > 5 ? 5 : backoff * 2;
			} else {
				backoff = 0.1;
			}
		}
	}
	unlink(cfg->socket_path);
out:
	free(admin);
	return rc;
}

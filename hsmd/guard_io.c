#include "hsmd/guard_io.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/log.h"

int guard_send(int sock, const struct guard_msg *m, int fd)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov = {.iov_base = (void *)m, .iov_len = sizeof(*m)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	ssize_t n;

	if (fd >= 0) {
		struct cmsghdr *c;

		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = sizeof(ctl.buf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	do
		n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -1;
	if (n != (ssize_t)sizeof(*m)) {
		errno = EMSGSIZE;
		return -1;
	}
	return 0;
}

int guard_recv(int sock, struct guard_msg *m, int *fd, int timeout_ms)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * 4)];
	} ctl;
	struct iovec iov = {.iov_base = m, .iov_len = sizeof(*m)};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = ctl.buf,
			    .msg_controllen = sizeof(ctl.buf)};
	ssize_t n;

	*fd = -1;
	if (timeout_ms > 0) {
		struct pollfd p = {.fd = sock, .events = POLLIN};
		int r;

		do
			r = poll(&p, 1, timeout_ms);
		while (r < 0 && errno == EINTR);
		if (r < 0)
			return -1;
		if (r == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
	}
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		/* Keep the first fd; close any more a confused peer sent. */
		for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
			int got;

			memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (*fd < 0)
				*fd = got;
			else
				close(got);
		}
	}
	if (n == 0)
		return 0;
	if (n != (ssize_t)sizeof(*m) || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
	    m->version != GUARD_PROTO_VERSION) {
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		errno = EPROTO;
		return -1;
	}
	return 1;
}

static int guard_sockaddr(const char *path, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(sa->sun_path, path);
	return 0;
}

int guard_connect(const char *path)
{
	struct sockaddr_un sa;
	int fd;

	if (guard_sockaddr(path, &sa) < 0)
		return -1;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static int guard_mkparent(const char *path)
{
	char dir[4200];
	char *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	for (char *c = dir + 1; *c; c++) {
		if (*c != '/')
			continue;
		*c = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			return -1;
		*c = '/';
	}
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

int guard_listen(const char *path)
{
	struct sockaddr_un sa;
	int fd;

	if (guard_sockaddr(path, &sa) < 0) {
		log_warnx("guard socket path %s is too long", path);
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		log_warn("socket");
		return -1;
	}
	/* The lock says no other guard runs: a socket file left here is stale. */
	if (unlink(path) < 0 && errno != ENOENT)
		log_warn("cannot remove the stale socket %s", path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0600) < 0 ||
	    listen(fd, 8) < 0) {
		log_warn("cannot listen on %s", path);
		close(fd);
		return -1;
	}
	return fd;
}

static void guard_lock_path(const char *sock_path, char *out, size_t len)
{
	snprintf(out, len, "%s.lock", sock_path);
}

int guard_lock(const char *sock_path)
{
	char lock[4200];
	int fd, pid = 0;

	guard_lock_path(sock_path, lock, sizeof(lock));
	if (guard_mkparent(lock) < 0) {
		log_warn("cannot create the directory of %s", lock);
		return -1;
	}
	fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		log_warn("cannot open %s", lock);
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		char buf[32] = "";

		if (errno == EWOULDBLOCK && pread(fd, buf, sizeof(buf) - 1, 0) > 0)
			pid = atoi(buf);
		if (errno == EWOULDBLOCK || pid)
			log_warnx("another hsmd-guard (pid %d) guards %s", pid, sock_path);
		else
			log_warn("cannot lock %s", lock);
		close(fd);
		return -1;
	}
	return fd;
}

int guard_running(const char *sock_path, int *pid)
{
	char lock[4200], buf[32] = "";
	int fd, r;

	*pid = 0;
	guard_lock_path(sock_path, lock, sizeof(lock));
	fd = open(lock, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
		r = 0;
	} else if (errno == EWOULDBLOCK) {
		if (pread(fd, buf, sizeof(buf) - 1, 0) > 0)
			*pid = atoi(buf);
		r = 1;
	} else {
		r = -1;
	}
	close(fd);
	return r;
}

void guard_write_pid(int lock_fd)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());

	if (ftruncate(lock_fd, 0) < 0 || pwrite(lock_fd, buf, (size_t)n, 0) != n)
		log_warn("cannot record the guard's pid");
}

int guard_daemonize(int *ready_fd)
{
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0) {
		log_warn("pipe");
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		log_warn("fork");
		return -1;
	}
	if (pid > 0) {
		char c;
		ssize_t n;

		close(p[1]);
		do
			n = read(p[0], &c, 1);
		while (n < 0 && errno == EINTR);
		_exit(n == 1 ? 0 : 1);
	}
	close(p[0]);
	if (setsid() < 0)
		log_warn("setsid");
	if (chdir("/") < 0)
		log_warn("chdir /");
	{
		int nul = open("/dev/null", O_RDWR | O_CLOEXEC);

		if (nul >= 0) {
			dup2(nul, 0);
			dup2(nul, 1);
			close(nul);
		}
	}
	*ready_fd = p[1];
	return 0;
}

void guard_ready(int ready_fd)
{
	const char *ns = getenv("NOTIFY_SOCKET");

	if (ready_fd >= 0) {
		if (write(ready_fd, "1", 1) != 1)
			log_warn("cannot tell the parent we are ready");
	}
	/* systemd's Type=notify, without libsystemd: one datagram. */
	if (ns && (ns[0] == '/' || ns[0] == '@')) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		socklen_t len;
		int fd;

		if (strlen(ns) >= sizeof(sa.sun_path))
			return;
		strcpy(sa.sun_path, ns);
		if (sa.sun_path[0] == '@')
			sa.sun_path[0] = '\0';
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(ns));
		fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return;
		if (sendto(fd, "READY=1", 7, MSG_NOSIGNAL, (struct sockaddr *)&sa, len) < 0)
			log_warn("cannot notify systemd");
		close(fd);
	}
}

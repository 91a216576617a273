#include "lib/pathsafe.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int path_check_components(const char *p, char *err, size_t errlen)
{
	const char *c = p;

	while (*c) {
		const char *end = strchr(c, '/');
		size_t n = end ? (size_t)(end - c) : strlen(c);

		if (n == 0) {
			snprintf(err, errlen, "empty path component");
			return -1;
		}
		if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.')) {
			snprintf(err, errlen, "'%.*s' component not allowed", (int)n, c);
			return -1;
		}
		if (n > 255) {
			snprintf(err, errlen, "path component longer than 255 bytes");
			return -1;
		}
		if (!end)
			break;
		c = end + 1;
		if (!*c) {
			snprintf(err, errlen, "trailing '/'");
			return -1;
		}
	}
	return 0;
}

int path_check_absolute(const char *p, size_t len, char *err, size_t errlen)
{
	if (strlen(p) != len) {
		snprintf(err, errlen, "path contains a NUL byte");
		return -1;
	}
	if (len > HSM_PATH_MAX) {
		snprintf(err, errlen, "path longer than %d bytes", HSM_PATH_MAX);
		return -1;
	}
	if (p[0] != '/') {
		snprintf(err, errlen, "path is not absolute");
		return -1;
	}
	if (len == 1)
		return 0;
	return path_check_components(p + 1, err, errlen);
}

int path_check_relative(const char *p, char *err, size_t errlen)
{
	if (strlen(p) > HSM_PATH_MAX) {
		snprintf(err, errlen, "path longer than %d bytes", HSM_PATH_MAX);
		return -1;
	}
	if (p[0] == '/') {
		snprintf(err, errlen, "path is absolute");
		return -1;
	}
	return path_check_components(p, err, errlen);
}

int path_open_beneath(int root_fd, const char *rel, int flags, unsigned mode)
{
	struct open_how how = {
	    .flags = (unsigned)(flags | O_NOFOLLOW | O_CLOEXEC),
	    .mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
	    .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
	};

	int fd;

	/* hsmd reads files and directories it does not own the times of: an archive or a
	 * peer's fetch must not show up as an access. Only the owner or CAP_FOWNER may
	 * ask for that (EPERM otherwise): then open as asked. openat2 refuses any flag
	 * beside O_PATH (EINVAL), and an O_PATH open reads nothing anyway. */
	if (!(flags & O_PATH))
		how.flags |= O_NOATIME;
	fd = (int)syscall(SYS_openat2, root_fd, *rel ? rel : ".", &how, sizeof(how));
	if (fd >= 0 || errno != EPERM)
		return fd;
	how.flags = (unsigned)(flags | O_NOFOLLOW | O_CLOEXEC);
	return (int)syscall(SYS_openat2, root_fd, *rel ? rel : ".", &how, sizeof(how));
}

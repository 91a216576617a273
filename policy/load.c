/* What every caller of policy_compile needs around it (policy.h): the file's bytes,
 * and names resolved through the system's user database. Kept apart from the pure
 * language code, which does no I/O. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "policy/policy.h"

char *policy_read_file(const char *path, size_t *len, char *err, size_t errlen)
{
	struct stat sb;
	size_t off = 0;
	char *text;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		snprintf(err, errlen, "policy %s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size > POLICY_FILE_MAX) {
		snprintf(err, errlen, "policy %s: not a regular file of at most %u bytes", path,
			 POLICY_FILE_MAX);
		close(fd);
		return NULL;
	}
	text = malloc((size_t)sb.st_size + 1);
	if (!text) {
		snprintf(err, errlen, "policy %s: out of memory", path);
		close(fd);
		return NULL;
	}
	while (off < (size_t)sb.st_size) {
		ssize_t n = read(fd, text + off, (size_t)sb.st_size - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(err, errlen, "policy %s: read: %s", path,
				 n < 0 ? strerror(errno) : "the file shrank while it was read");
			free(text);
			close(fd);
			return NULL;
		}
		off += (size_t)n;
	}
	close(fd);
	text[off] = '\0';
	*len = off;
	return text;
}

int policy_resolve_system(void *arg, int kind, const char *name, uint32_t *id)
{
	char buf[16384];

	(void)arg;
	if (kind == POLICY_USER) {
		struct passwd pw, *r = NULL;

		if (getpwnam_r(name, &pw, buf, sizeof(buf), &r) != 0 || !r)
			return -1;
		*id = r->pw_uid;
	} else {
		struct group gr, *r = NULL;

		if (getgrnam_r(name, &gr, buf, sizeof(buf), &r) != 0 || !r)
			return -1;
		*id = r->gr_gid;
	}
	return 0;
}

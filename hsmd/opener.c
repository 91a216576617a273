#include "hsmd/opener.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

/* "NR ARG1 ... ARG6 SP PC" while in a call. 0 and the number and first four arguments,
 * or -1 (not in a call, or not readable). */
static int opener_call(pid_t tid, long *nr, uint64_t arg[4])
{
	char path[64], buf[512];
	ssize_t n;
	char *p, *end;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/syscall", (int)tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	*nr = strtol(buf, &end, 10);
	if (end == buf || *nr < 0)
		return -1;
	p = end;
	for (int i = 0; i < 4; i++) {
		arg[i] = strtoull(p, &end, 16);
		if (end == p)
			return -1;
		p = end;
	}
	return 0;
}

static int opener_flags_truncate(uint64_t flags)
{
	return (flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY;
}

int opener_truncates(pid_t tid)
{
	uint64_t arg[4];
	long nr;

	if (tid <= 0 || opener_call(tid, &nr, arg) < 0)
		return 0;
#ifdef SYS_open
	if (nr == SYS_open)
		return opener_flags_truncate(arg[1]);
#endif
#ifdef SYS_creat
	if (nr == SYS_creat)
		return 1;
#endif
	if (nr == SYS_openat)
		return opener_flags_truncate(arg[2]);
#ifdef SYS_openat2
	if (nr == SYS_openat2 && arg[3] >= sizeof(uint64_t)) {
		/* the flags are the first field of its struct open_how */
		uint64_t flags;
		struct iovec local = {&flags, sizeof(flags)};
		struct iovec remote = {(void *)(uintptr_t)arg[2], sizeof(flags)};

		if (process_vm_readv(tid, &local, 1, &remote, 1, 0) != (ssize_t)sizeof(flags))
			return 0;
		return opener_flags_truncate(flags);
	}
#endif
	return 0;
}

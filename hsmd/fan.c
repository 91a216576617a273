#include "hsmd/fan.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

int fan_perm_init(void)
{
	return fanotify_init(FAN_CLASS_PRE_CONTENT | FAN_CLOEXEC | FAN_UNLIMITED_QUEUE |
				 FAN_UNLIMITED_MARKS | FAN_REPORT_TID | FAN_NONBLOCK,
			     O_RDWR | O_LARGEFILE | O_CLOEXEC);
}

int fan_notify_init(void)
{
	return fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_UNLIMITED_QUEUE |
				 FAN_UNLIMITED_MARKS | FAN_NONBLOCK | FAN_REPORT_DFID_NAME_TARGET,
			     O_RDONLY | O_LARGEFILE | O_CLOEXEC);
}

int fan_mark_filesystem(int fan_fd, uint64_t mask, const char *path)
{
	return fanotify_mark(fan_fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, mask, AT_FDCWD, path);
}

int fan_ignore_mount(int fan_fd, const char *path)
{
	/* Every bit either group asks for: the admin mount is hsmd's own. */
	return fanotify_mark(fan_fd, FAN_MARK_ADD | FAN_MARK_MOUNT | FAN_MARK_IGNORE_SURV,
			     HSM_FAN_PERM_MASK, AT_FDCWD, path);
}

int fan_ignore_inode(int fan_fd, int fd)
{
	return fanotify_mark(fan_fd, FAN_MARK_ADD | FAN_MARK_IGNORE_SURV | FAN_MARK_EVICTABLE,
			     HSM_FAN_PERM_MASK, fd, NULL);
}

int fan_unignore_inode(int fan_fd, int fd)
{
	int r =
	    fanotify_mark(fan_fd, FAN_MARK_REMOVE | FAN_MARK_IGNORE, HSM_FAN_PERM_MASK, fd, NULL);

	/* No mark to remove is the state we wanted. */
	if (r < 0 && errno == ENOENT)
		return 0;
	return r;
}

int fan_respond(int fan_fd, int event_fd, int err)
{
	struct fanotify_response resp = {
	    .fd = event_fd,
	    .response = err ? FAN_DENY_ERRNO(err) : FAN_ALLOW,
	};
	ssize_t n;

	do
		n = write(fan_fd, &resp, sizeof(resp));
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)sizeof(resp) ? 0 : -1;
}

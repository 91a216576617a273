/* fanotify on Linux >= 6.14 with pre-content events (DESIGN §4). Debian 12's headers
 * predate them, so the constants live here, and only here. */
#ifndef HSMD_FAN_H
#define HSMD_FAN_H

#include <stdint.h>
#include <sys/fanotify.h>

#ifndef FAN_CLASS_PRE_CONTENT
#define FAN_CLASS_PRE_CONTENT 0x00000008
#endif
#ifndef FAN_PRE_ACCESS
#define FAN_PRE_ACCESS 0x00100000
#endif
#ifndef FAN_EVENT_INFO_TYPE_RANGE
#define FAN_EVENT_INFO_TYPE_RANGE 6
#endif
#ifndef FAN_DENY_ERRNO
#define FAN_DENY_ERRNO(err) (FAN_DENY | ((uint32_t)(err) << 24))
#endif
#ifndef FAN_MARK_IGNORE
#define FAN_MARK_IGNORE 0x00000400
#endif
#ifndef FAN_MARK_IGNORE_SURV
#define FAN_MARK_IGNORE_SURV (FAN_MARK_IGNORE | FAN_MARK_IGNORED_SURV_MODIFY)
#endif
#ifndef FAN_MARK_EVICTABLE
#define FAN_MARK_EVICTABLE 0x00000200
#endif

/* The events that hold a reader until the file's data is here. */
#define HSM_FAN_PERM_MASK (FAN_OPEN_PERM | FAN_OPEN_EXEC_PERM | FAN_PRE_ACCESS)
/* What the notification group reports for the catalog. */
#define HSM_FAN_NOTIFY_MASK                                                                       \
	(FAN_CREATE | FAN_DELETE | FAN_MOVED_FROM | FAN_MOVED_TO | FAN_CLOSE_WRITE | FAN_MODIFY | \
	 FAN_ATTRIB | FAN_DELETE_SELF | FAN_RENAME | FAN_ONDIR)

struct fan_range_info {
	struct fanotify_event_info_header hdr;
	uint32_t pad;
	uint64_t offset;
	uint64_t count;
};

/* The pre-content group (permission events). -1 with errno on failure. */
int fan_perm_init(void);
/* The notification group (directory fid + name + target fid). -1 with errno. */
int fan_notify_init(void);
/* Marks the whole filesystem holding path. 0 or -1 with errno. */
int fan_mark_filesystem(int fan_fd, uint64_t mask, const char *path);
/* Ignores every event from the mount at path (hsmd's admin mount). */
int fan_ignore_mount(int fan_fd, const char *path);
/* Adds / removes the evictable ignore mark on the inode of fd. */
int fan_ignore_inode(int fan_fd, int fd);
int fan_unignore_inode(int fan_fd, int fd);
/* Answers a permission event: allow (err 0) or deny with err (EIO, EPERM, ...). */
int fan_respond(int fan_fd, int event_fd, int err);

#endif

/* Paths that arrive from outside (control socket, config, later the wire) are checked
 * here, and volume files are opened only beneath hsmd's admin mount so that no path,
 * symlink or ".." can lead hsmd out of a volume or through a watched mount. */
#ifndef HSM_PATHSAFE_H
#define HSM_PATHSAFE_H

#include <stddef.h>

#define HSM_PATH_MAX 4096

/* An absolute user path: starts with '/', at most HSM_PATH_MAX bytes, no NUL inside
 * (len is the length the sender claimed), no "." or ".." component. 0, or -1 with a
 * message in err. */
int path_check_absolute(const char *p, size_t len, char *err, size_t errlen);
/* A path relative to a volume root: not absolute, no empty, "." or ".." component,
 * bounded length. "" (the root itself) is valid. 0 or -1 with err. */
int path_check_relative(const char *p, char *err, size_t errlen);
/* openat2 beneath root_fd: no "..", no absolute symlinks, no magic links, no mount
 * crossing; the final component is never followed when it is a symlink (O_NOFOLLOW).
 * rel "" opens the root itself. O_NOATIME is added where the caller may have it.
 * Returns an fd or -1 with errno. */
int path_open_beneath(int root_fd, const char *rel, int flags, unsigned mode);

#endif

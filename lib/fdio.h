/* Descriptor helpers every writer of whole buffers needs. */
#ifndef HSM_FDIO_H
#define HSM_FDIO_H

#include <stddef.h>

/* Writes all len bytes of p to fd, retrying short writes and EINTR. 0, or -1 with
 * errno (a write that wrote nothing without an error counts as EIO). */
int fd_write_all(int fd, const void *p, size_t len);

#endif

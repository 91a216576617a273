/* Release: turn an archived file back into a stub (DESIGN §4). Only when nobody has it
 * open or mapped (a write lease proves it), it is not pinned, its archived manifest is
 * in the store, and its content is exactly the archived version (the ctime recorded at
 * archive matches, or every chunk re-hashes to the manifest). */
#ifndef HSM_RELEASE_H
#define HSM_RELEASE_H

#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "lib/hsmxattr.h"
#include "recall/recall.h"

struct release_result {
	struct hsm_state st; /* the xattr record as written */
	uint64_t freed;	     /* bytes of blocks freed */
	int rehashed;	     /* 1: the content was verified by re-hashing */
	/* The file once released (st_ino 0: unknown), so callers need no descriptor of
	 * their own: any second open of the file, even read-only, makes the kernel refuse
	 * the write lease. */
	struct stat sb;
};

typedef void (*release_done_cb)(void *arg, int err, const char *msg,
				const struct release_result *res);

/* fd: O_RDWR through the admin mount; ownership passes to the release. The stub gets
 * st->flags' HSM_FLAG_ON_ACCESS bit (recall at first read instead of at open).
 * archived_ctime: from the catalog, or {0,0} when unknown (forces a re-hash). */
void release_file(struct mover *mv, int fd, const struct hsm_state *st,
		  struct timespec archived_ctime, release_done_cb cb, void *arg);
/* If a release of inode dev/ino is in flight, adds cb/arg to those it answers, copies
 * its state record (as the release was asked with) to *st and returns 1; else 0.
 * Ask before opening the file: an open of a file whose lease is held fails with
 * EAGAIN (O_NONBLOCK) and would break the lease of the release in flight. */
int release_join(struct mover *mv, dev_t dev, ino_t ino, release_done_cb cb, void *arg,
		 struct hsm_state *st);

#endif

/* Archive: copy a file version to the object store as content-addressed chunks and a
 * manifest, then record it in the file's xattr (state archived). The file stays
 * resident. Refused for stubs and noarchive files; fails, changing nothing, if the file
 * is written while it is being read. */
#ifndef HSM_ARCHIVE_H
#define HSM_ARCHIVE_H

#include <stdint.h>
#include <time.h>

#include "lib/hsmxattr.h"
#include "recall/recall.h"

struct archive_result {
	struct hsm_state st;   /* the xattr record as written */
	uint64_t bytes;	       /* file size */
	unsigned chunks;       /* chunks in the manifest */
	unsigned uploaded;     /* chunks sent (the rest were in the store already) */
	struct timespec ctime; /* the file's ctime right after the xattr was written */
	int already;	       /* 1: this version was archived before; nothing sent */
};

typedef void (*archive_done_cb)(void *arg, int err, const char *msg,
				const struct archive_result *res);

/* fd: O_RDONLY through the admin mount; ownership passes to the archive. st: its
 * current xattr (with a fid). */
void archive_file(struct mover *mv, int fd, const struct hsm_state *st, archive_done_cb cb,
		  void *arg);

#endif

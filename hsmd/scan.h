/* Bringing files into hsmd's care: adoption (a first state record for a file hsmd has
 * not seen), catalog notes, and the start-up scan that finds files written while hsmd
 * was down. */
#ifndef HSMD_SCAN_H
#define HSMD_SCAN_H

#include <sys/stat.h>
#include <time.h>

#include "lib/hsmxattr.h"

struct hsmd;
struct hsmd_vol;

/* Reads fd's state record; a file without one gets a new fid, state resident, version
 * 1, owner this site (written with XATTR_CREATE, so a racing adopter's record wins and
 * is read back). Safe on any thread. Returns 0, 1 if it adopted the file, or -1 with
 * a message in err (corrupt record, I/O error). */
int scan_adopt(int fd, const char *site, struct hsm_state *st, char *err, size_t errlen);
/* Records fd's current state in the catalog (loop thread). archived_ctime NULL keeps
 * what the catalog had. op: a cat_journal_op or 0. Logs failures. */
void scan_note(struct hsmd *h, struct hsmd_vol *v, const char *rel, const struct stat *sb,
	       const struct hsm_state *st, const struct timespec *archived_ctime, int op);
/* A stub was recalled by a reader (no path at hand): st is the state record the recall
 * wrote. Its catalog record takes st's state (archived or resident: whatever the
 * recall proved, never assumed) and, when archived, the ctime a later release can
 * trust (NULL: unknown). */
void scan_note_recalled(struct hsmd *h, const struct hsm_state *st, const struct timespec *ctime);
/* Walks every volume on the pool, adopting and cataloguing what it finds. */
void scan_start(struct hsmd *h);

#endif

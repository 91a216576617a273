/* Namespace sync (DESIGN §7, docs/protocol.md): every local change of a volume's
 * namespace is published as a state record in this site's feed; peers pull the feed
 * with long-polls and apply what they get as stubs, renames, deletes and attribute
 * changes, resolving concurrent changes with version vectors.
 *
 * Catalog keyspaces (docs/catalog.md):
 *   s<fid 16>                -> "SEQ VOLUME RECORD-LINE"  last published state of fid
 *   q<volume>\0<seq 8 BE>    -> fid 16                    the feed, one entry per fid
 *   c<peer>\0<volume>        -> "FEEDID SEQ"              how far we applied a peer's feed
 *   mnsync_seq, mnsync_feed                                 feed head and identity
 * Everything runs on the worker's loop thread. */
#ifndef HSMD_NSYNC_H
#define HSMD_NSYNC_H

#include <stdint.h>
#include <sys/stat.h>

#include "lib/hsmxattr.h"

struct hsmd;
struct hsmd_vol;
struct https_req;
struct json_object;
struct nsync;

/* NULL with a message in err. Pullers start with nsync_start. */
struct nsync *nsync_new(struct hsmd *h, char *err, size_t errlen);
/* Starts pulling every peer's feed for every shared volume. */
void nsync_start(struct nsync *ns);
/* Stops pulls and answers parked long-polls; frees ns. */
void nsync_free(struct nsync *ns);

/* A local file's current state (called for every catalog note). Publishes a new
 * record when the namespace entry changed; a content change gets a new content version
 * (written into the file's state record through the admin mount, and into *st). */
void nsync_note(struct hsmd *h, struct hsmd_vol *v, const char *rel, const struct stat *sb,
		struct hsm_state *st);
/* Placement (policy `place at`): makes this site the owner of the resident file at
 * rel, publishing the same content under a version of this site. 0, or -1 with a
 * message in err (a stub, or the file changed since it was recalled). */
int nsync_claim(struct hsmd *h, struct hsmd_vol *v, const char *rel, char *err, size_t errlen);
/* A write to fid's data was seen (a modify event before its close): the close is a
 * new content version. take_write returns 1 (and forgets it) if one was seen. */
void nsync_note_write(struct hsmd *h, const struct hsm_fid *fid);
int nsync_take_write(struct hsmd *h, const struct hsm_fid *fid);
/* The last name of fid went away. */
void nsync_note_gone(struct hsmd *h, struct hsmd_vol *v, const struct hsm_fid *fid);
/* A directory or symlink was created or changed (sb) or removed (sb NULL) at rel. */
void nsync_note_dir(struct hsmd *h, struct hsmd_vol *v, const char *rel, const struct stat *sb);
/* The directory at rel was removed or renamed away (to: its new name, NULL if not
 * known): it and every directory and symlink published under it are gone under those
 * names (files follow by their fid). A site applying a record under rel later (made
 * at a site that did not know of the rename yet) puts it under to instead. */
void nsync_note_dir_gone(struct hsmd *h, struct hsmd_vol *v, const char *rel, const char *to);
void nsync_note_link(struct hsmd *h, struct hsmd_vol *v, const char *rel, const struct stat *sb,
		     const char *target);

/* GET /v1/changes/VOL?since=N&wait=S&max=M from peer (already authenticated). */
void nsync_serve_changes(struct nsync *ns, struct https_req *req, const char *peer,
			 const char *volume);

/* Conflict copies in the namespace: [{volume, path, owner, mtime, size}]. */
struct json_object *nsync_conflicts(struct nsync *ns);
/* Records from peers applied since start, all peers. */
uint64_t nsync_applied(const struct nsync *ns);
/* Long-polls of peers on this site's feed answered at once because a change came (not
 * when their wait ran out): how a test sees a change pushed rather than picked up late. */
uint64_t nsync_feed_wakeups(const struct nsync *ns);
/* Per peer and volume: cursor, state, last error. */
struct json_object *nsync_status(struct nsync *ns);

#endif

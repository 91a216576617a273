/* Namespace records: the state of one file, directory or symlink as sites exchange it
 * (DESIGN §7, docs/protocol.md), and the version-vector rules that merge them.
 *
 * A record is state, not an operation: applying the same record twice, or records in
 * another order, ends in the same namespace. Each record carries
 *   - a version vector (vv): per site, how many changes of this entry that site made;
 *   - the content dot (owner, version): the site and vv counter of the last write of
 *     the data, which is also how a peer asks for that data.
 * Pure code: no I/O. */
#ifndef HSMD_NSREC_H
#define HSMD_NSREC_H

#include <stddef.h>
#include <stdint.h>

#include "lib/hsmxattr.h"

#define NS_LINE_MAX (2 * 4096 * 3 + 1024) /* escaped path + target, and the fields */

enum ns_kind { NS_FILE = 'f', NS_DIR = 'd', NS_LINK = 'l' };

struct ns_rec {
	struct hsm_fid fid;
	char kind; /* enum ns_kind */
	int deleted;
	char *path;    /* relative to the volume root; malloc'd, owned */
	char *target;  /* symlink target, or where a deleted directory was renamed to
			* (when it was); malloc'd or NULL */
	uint32_t mode; /* permission bits (07777) */
	uint32_t uid, gid;
	uint64_t size;
	int64_t mtime_sec;
	uint32_t mtime_nsec;
	char owner[HSM_SITE_MAX + 1]; /* content dot: site ... */
	uint64_t version;	      /* ... and its counter */
	unsigned nvv;
	struct hsm_vv_entry vv[HSM_VV_MAX];
	/* The object store copy, when there is one: of which content version. */
	uint64_t archived_version;
	uint64_t archived_size;
	int64_t archived_mtime_sec;
	uint32_t archived_mtime_nsec;
	uint8_t manifest_id[32];
	/* A conflict copy names the file it was split from: the site whose data it holds
	 * makes it from that file instead of a stub nobody could fill. */
	int has_origin;
	struct hsm_fid origin;
	/* The winner of a conflict names the copy its loser became: a site holding the
	 * loser's data turns it into that copy before it takes the winner, whichever of
	 * the two records reaches it first. */
	int has_conflict;
	struct hsm_fid conflict;
};

/* One line (no newline): "FID KIND MODE UID GID SIZE MTIME OWNER:VERSION VV ARCHIVED PATH
 * [TARGET]" for symlinks, "... PATH [o:FID] [c:FID]" for files (origin of a conflict
 * copy, conflict copy of a winner). Returns the length written (< cap), or -1 if it does not fit or
 * rec is invalid. */
int nsrec_format(const struct ns_rec *rec, char *out, size_t cap);
/* Parses one line (len bytes, no newline). Every field is validated: the path must be a
 * clean relative path (no "..", ".", empty components, NUL). 0, or -1 with a message. */
int nsrec_parse(const char *line, size_t len, struct ns_rec *rec, char *err, size_t errlen);
void nsrec_clear(struct ns_rec *rec);
/* Deep copy; 0 or -1 (out of memory). */
int nsrec_copy(struct ns_rec *dst, const struct ns_rec *src);

/* vv counter of site in rec (0 if absent). */
uint64_t nsrec_vv_get(const struct ns_rec *rec, const char *site);
/* Sets site's counter (adding the entry); -1 if the vector is full. */
int nsrec_vv_set(struct ns_rec *rec, const char *site, uint64_t counter);
/* -1 a < b (b knows everything a knows and more), 0 equal, 1 a > b, 2 concurrent. */
int nsrec_vv_compare(const struct ns_rec *a, const struct ns_rec *b);
/* a.vv = the entry-wise maximum of a and b. -1 if it does not fit. */
int nsrec_vv_merge(struct ns_rec *a, const struct ns_rec *b);
/* 1 if rec's vector has seen the content dot (owner, version). */
int nsrec_knows(const struct ns_rec *rec, const char *owner, uint64_t version);
/* 1 if a and b name the same content (same dot). */
int nsrec_same_content(const struct ns_rec *a, const struct ns_rec *b);
/* Which of two concurrent versions keeps the name: the later (mtime, owner).
 * Returns 1 if a wins, 0 if b wins; total and the same at every site. */
int nsrec_wins(const struct ns_rec *a, const struct ns_rec *b);
/* The rules two concurrent records of one fid (neither vector knows the other's last
 * change) are merged by, the same at every site whichever is local:
 *   NS_DIR_GONE    a directory removed or renamed away on one side: gone (what was
 *                  made in it meanwhile follows the rename, or keeps it where it is);
 *   NS_LIVE_WINS   one is a delete: the live one (a write, a rename) survives it;
 *   NS_LATER_WINS  a directory or symlink: the later change (nsrec_wins) wins whole;
 *   NS_CONFLICT    a file whose data both sides changed: the later keeps the name, the
 *                  other becomes a conflict copy (nsrec_conflict_path, _fid);
 *   NS_COMBINE     a file whose data one side changed: that data, with the name, mode
 *                  and owner of the other side (it renamed or chmodded meanwhile); the
 *                  same data on both sides: the greater name.
 * The result's vector is the merge of both. */
enum ns_outcome { NS_LIVE_WINS = 1, NS_LATER_WINS, NS_CONFLICT, NS_COMBINE, NS_DIR_GONE };
struct ns_resolution {
	int outcome; /* enum ns_outcome */
	const struct ns_rec
	    *content;		   /* whose data the result has (and which record it starts from) */
	const struct ns_rec *meta; /* whose name, mode and owner it has */
	const struct ns_rec *loser; /* NS_CONFLICT: the version kept as the conflict copy */
};
void nsrec_resolve(const struct ns_rec *a, const struct ns_rec *b, struct ns_resolution *out);

/* The name the losing version gets: NAME.conflict-OWNER-YYYYmmddTHHMMSS[.ext] in the
 * same directory, from the loser's owner and mtime (UTC). malloc'd or NULL. */
char *nsrec_conflict_path(const char *path, const char *owner, int64_t mtime_sec);
/* The fid of the conflict copy made of (fid, owner, version): the same at every site. */
void nsrec_conflict_fid(const struct hsm_fid *fid, const char *owner, uint64_t version,
			struct hsm_fid *out);
/* The fid of a directory: derived from the volume and path (directories have no
 * state record of their own). */
void nsrec_dir_fid(const char *volume, const char *path, struct hsm_fid *out);

/* Path escaping for the wire: bytes <= ' ', '%' and 0x7f become %XX. */
int ns_escape(const char *in, char *out, size_t cap);
/* The reverse, rejecting %00 and malformed escapes; -1 on error. */
int ns_unescape(const char *in, size_t len, char *out, size_t cap);

#endif

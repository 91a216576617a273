/* Namespace sync, inside: the state shared by its three files.
 *   nsync_feed.c   what this site publishes: local changes, its feed, long-polls
 *   nsync_apply.c  what peers publish, applied here: merges, stubs, renames, conflicts
 *   nsync.c        the pullers, start and stop, reports
 * Everything runs on the worker's loop thread. */
#ifndef HSMD_NSYNC_INT_H
#define HSMD_NSYNC_INT_H

#include <ev.h>
#include <stdint.h>
#include <time.h>

#include "hsmd/nsrec.h"
#include "hsmd/nsync.h"
#include "lib/config.h"

struct hsmd_vol;

struct http_client;
struct http_request;

#define NS_WAIT_MAX	 60   /* seconds a long-poll may be held */
#define NS_PULL_WAIT	 10   /* what our pullers ask for: also how long a dead link can hide */
#define NS_BATCH_DEFAULT 1000 /* records per answer */
#define NS_BATCH_MAX	 10000
#define NS_BODY_MAX	 (32u << 20) /* answers we accept */
#define NS_SEQ_KEY	 "mnsync_seq"
#define NS_FEED_KEY	 "mnsync_feed"
#define NS_RMDIR_MAX	 1024
#define NS_WRITES_MAX	 4096 /* files written and not yet closed that we remember */

struct ns_waiter {
	struct nsync *ns;
	struct https_req *req;
	char volume[HSM_SITE_MAX + 1];
	uint64_t since;
	unsigned max;
	ev_timer timer;
	struct ns_waiter *next;
};

struct ns_puller {
	struct nsync *ns;
	const struct hsm_peer_cfg *peer;
	struct hsmd_vol *v;
	char feed[33];	 /* the peer's feed identity the cursor belongs to */
	uint64_t cursor; /* last of its records applied */
	struct http_request *req;
	ev_timer timer;
	double backoff;
	int up;
	uint64_t applied, polls;
	time_t last_ok;
	char last_error[256];
	struct ns_puller *next;
};

struct nsync {
	struct hsmd *h;
	uint64_t head;
	char feed[33];
	struct http_client *hc;
	struct ns_puller *pullers;
	struct ns_waiter *waiters;
	uint64_t wakeups;	    /* waiters answered by a change, see nsync_feed_wakeups */
	char *rmdirs[NS_RMDIR_MAX]; /* "VOLUME\0PATH" of directories to remove once empty */
	struct hsm_fid writes[NS_WRITES_MAX]; /* see nsync_note_write */
	size_t nwrites;
	int writes_lost; /* the list overflowed: every close counts as a write */
	size_t nrmdirs;
	int stopping;
};

/* The published record of fid: 0 found, 1 none, -1 error. vol may be NULL. */
int ns_load(struct nsync *ns, const struct hsm_fid *fid, struct ns_rec *rec, uint64_t *seq,
	    char vol[HSM_SITE_MAX + 1]);
/* Makes rec the published state of its fid in volume, at the head of the feed. */
int ns_publish(struct nsync *ns, const char *volume, const struct ns_rec *rec);
/* The trusted.hsm record of fd: 0 or -1 with errno. */
int ns_read_state(int fd, struct hsm_state *st);
int ns_write_state(int fd, const struct hsm_state *st, int flags);
/* Applies one remote record: 0 applied or nothing to do, 1 busy (retry later), -1 failed. */
int ns_apply(struct nsync *ns, struct hsmd_vol *v, struct ns_rec *r);
/* The by-name index of published directories and symlinks (nsync_names.c): its key
 * for (volume, path) into key (0 if it does not fit); built once from the published
 * records; and the retirement of every name under dir (a directory renamed away). */
size_t ns_nkey(const char *volume, const char *path, char *key, size_t cap);
int ns_names_build(struct nsync *ns, char *err, size_t errlen);
void ns_names_retire_under(struct nsync *ns, struct hsmd_vol *v, const char *dir);
/* Entries made under a directory renamed since (nsync_moves.c). ns_follow_moves: *path
 * under the directory's new name, 1 if it was replaced. ns_follow_other: a directory or
 * symlink so moved becomes the entry of its new name (fid from the path), with *gone
 * the removal of the old one to apply and clear; 0, or -1 out of memory. */
int ns_follow_moves(struct nsync *ns, struct hsmd_vol *v, char **path);
int ns_follow_other(struct nsync *ns, struct hsmd_vol *v, struct ns_rec *m, const char *old_path,
		    struct ns_rec *gone);
/* Retries removing directories that were not empty when their removal came. */
void ns_rmdir_retry(struct nsync *ns);

#endif

/* Recall: fetch a stub's data from its sources (peer sites, the object store), verify
 * every chunk's sha256, write it in place, make it durable, and only then mark the file
 * resident. One recall per fid however many callers ask; later callers join it.
 * A source that fails before the commit hands the recall to the next one, which
 * starts over (chunks already written are overwritten); only when every source has
 * failed is the file put back as it was and the error, naming each source and why,
 * reported. All calls and callbacks on the loop thread. */
#ifndef HSM_RECALL_H
#define HSM_RECALL_H

#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "lib/hsmxattr.h"

struct ev_loop;
struct pool;
struct store;
struct recall_job;
struct archive_job;
struct release_job;
struct peer_client;

enum recall_source_kind {
	RECALL_SRC_STORE = 1, /* manifest by manifest_id, chunks by chunks/<sha256> */
	RECALL_SRC_PEER = 2,  /* manifest and chunks from a peer site (recall/peer_client) */
};

#define RECALL_SOURCES_MAX 40 /* more than HSM_PEERS_MAX + the store + an unknown owner */

/* Where a recall may get the data from. Both kinds are verified the same way: every
 * chunk against the manifest's sha256. A store manifest is also checked against the
 * stub's manifest_id; a peer's cannot be, but must describe exactly the stub's size. */
struct recall_source {
	int kind;		       /* enum recall_source_kind */
	char name[HSM_SITE_MAX + 8];   /* "store" or "site NAME", for messages and logs */
	struct peer_client *peer;      /* RECALL_SRC_PEER: not owned */
	char volume[HSM_SITE_MAX + 1]; /* RECALL_SRC_PEER: the volume's name */
	char skip[200];		       /* not "": not tried, and why (down, not archived, ...); such
					* entries only appear in the final error */
};

/* The sources to try for a stub, best first: fills out[0..max) and returns the
 * count. dev is the st_dev of the file (hsmd finds the volume by it). */
typedef size_t (*recall_sources_fn)(void *ctx, const struct hsm_state *st, dev_t dev,
				    struct recall_source *out, size_t max);

/* The first error of a job that runs in steps: later ones are its consequences. */
struct mover_error {
	int err;	/* positive errno; 0 = none yet */
	char msg[1024]; /* a recall names every source it tried */
};

void mover_fail(struct mover_error *e, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Shared by recall, archive and release: who does the work, and counters. */
struct mover {
	struct ev_loop *loop;
	struct pool *pool;
	struct store *store; /* not owned */
	uint32_t chunk_size;
	unsigned window;	    /* chunks in flight per file */
	struct recall_job *recalls; /* in flight, a list keyed by fid */
	/* In flight, keyed by inode: hard links are one file, so an archive or release
	 * asked through a second name joins the one running (two would race: the xattr
	 * one writes makes the other see a change; each one's descriptor makes the other's
	 * write lease fail). */
	struct archive_job *archives;
	struct release_job *releases;
	/* sha256 of a chunk of zero_len zero bytes: such chunks are never fetched, their
	 * range is left a hole (recall keeps sparse files sparse). */
	uint8_t zero_sha[32];
	uint32_t zero_len;
	/* Release calls this (on a pool thread) once it holds the lease and before the
	 * data goes, so the file is watched again: hsmd removes its fanotify ignore mark
	 * here. 0 or -1 with errno. NULL: nothing to do. */
	int (*unwatch)(void *ctx, int fd);
	/* Recall calls this (on a pool thread) once the file is resident and durable,
	 * before anyone is let in: hsmd adds its ignore mark here. */
	int (*settle)(void *ctx, int fd);
	void *unwatch_ctx;
	/* The source order of each recall. NULL: the object store only, for stubs with an
	 * archived version (a single site). */
	recall_sources_fn sources;
	void *sources_ctx;
	uint64_t recalls_done, recalls_failed, bytes_recalled;
	uint64_t recalls_from_store, recalls_from_peers; /* by the source that completed */
	uint64_t bytes_from_store, bytes_from_peers;	 /* data fetched (zero chunks not) */
	uint64_t source_failures; /* a source failed and the next one was tried */
	uint64_t archives_done, archives_failed, bytes_archived, chunks_uploaded;
	uint64_t releases_done, releases_failed, bytes_released;
};

/* err 0 = the file's data is here and verified; else a positive errno and msg. bytes
 * is what this recall wrote (the whole file). st is the state record as the recall
 * wrote it, NULL on error: its state is archived only when the content is a version
 * the store holds verified, else resident (a peer's copy of a never-archived
 * version), so callers record st->state and never assume one. ctime is the file's
 * ctime once its state was written (a release that finds it unchanged need not
 * re-hash), NULL on error. */
typedef void (*recall_done_cb)(void *arg, int err, const char *msg, uint64_t bytes,
			       const struct hsm_state *st, const struct timespec *ctime);

/* Recalls the stub described by st (its xattr, read by the caller) into data_fd, an
 * O_RDWR descriptor of the file that is never watched (a fanotify event fd or one
 * opened through the admin mount). data_fd's ownership passes to the recall; it is
 * closed when the recall ends (at once when this call joins one in flight). A recall
 * in flight is joined only for the same inode: copies that kept the xattr share the
 * fid but not the data. */
void recall_file(struct mover *mv, int data_fd, const struct hsm_state *st, recall_done_cb cb,
		 void *arg);
/* Recalls in flight. */
unsigned recall_active(const struct mover *mv);
/* 1 if a recall of fid is in flight. */
int recall_in_flight(const struct mover *mv, const struct hsm_fid *fid);

#endif

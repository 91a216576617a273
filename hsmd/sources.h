/* The recall source order (DESIGN §7): where the data of a stub is fetched from, best
 * first. For a stub of volume V owned by site O at version N:
 *
 *   1. peers with priority "first" (the owner before the others, then by cost);
 *   2. the owner O, when it is a peer sharing V;
 *   3. the other peers sharing V, by cost, ties by name;
 *   4. the object store, when it holds version N (archived_version == version and a
 *      manifest id);
 *   5. peers with priority "last" (owner first, then by cost);
 *   peers with priority "never" are never tried.
 *
 * Peers marked down (recall/peer_client health) keep their place in the list but are
 * skipped, as are the never peers and a store without this version: the order lists
 * them with the reason, so `hsm sites PATH` and a failed recall's error can say why.
 * The ordering itself is the pure function sources_order; the rest binds it to hsmd. */
#ifndef HSMD_SOURCES_H
#define HSMD_SOURCES_H

#include <stddef.h>
#include <sys/types.h>

#include "lib/hsmxattr.h"
#include "recall/recall.h"

struct hsmd;
struct json_object;

/* A peer sharing the volume, as the ordering sees it. */
struct src_peer {
	const char *name;
	int cost;
	int priority; /* enum hsm_peer_priority */
	int up;	      /* health: 0 = down */
};

struct src_entry {
	int kind;	  /* RECALL_SRC_PEER or RECALL_SRC_STORE */
	int peer;	  /* index into the peers given; -1 for the store or an unknown owner */
	const char *name; /* the peer's name (or st->owner), or "store"; not owned */
	const char *skip; /* NULL: a source to try; else why not (a static string) */
};

#define SRC_SKIP_DOWN	     "down"
#define SRC_SKIP_NEVER	     "priority never"
#define SRC_SKIP_NOT_ARCH    "not archived"
#define SRC_SKIP_OLD_ARCH    "holds an older version"
#define SRC_SKIP_UNKNOWN_OWN "owner is not a peer sharing this volume"

/* Orders the sources of st for a site named self whose volume is shared with peers[]
 * (npeers of them, each named once). Fills out (up to max entries: all of them fit in
 * npeers + 2) and returns the count. Pure: no I/O, no globals. */
size_t sources_order(const char *self, const struct hsm_state *st, const struct src_peer *peers,
		     size_t npeers, struct src_entry *out, size_t max);

/* struct mover's sources callback (ctx = struct hsmd *): the volume is found by dev;
 * unknown devices get the store alone. */
size_t sources_for(void *ctx, const struct hsm_state *st, dev_t dev, struct recall_source *out,
		   size_t max);

/* The order for st in the named volume, as a json-c array of {source, kind
 * ("peer"|"store"), cost (null for the store), priority, health ("up"|"down"|"n/a"),
 * last_error (null when none), reason_skipped (null when tried)}, in the order tried.
 * The caller owns the array. */
struct json_object *sources_describe(struct hsmd *h, const char *volume,
				     const struct hsm_state *st);

#endif

/* Interception: answers the pre-content group's permission events (DESIGN §4). A
 * resident file is allowed and gets an ignore mark; a stub is recalled first and its
 * readers wait; nobody is ever allowed onto a stub whose data is not verified. */
#ifndef HSMD_INTERCEPT_H
#define HSMD_INTERCEPT_H

#include <stdint.h>

#include "lib/hsmxattr.h"

struct hsmd;
struct guard_ref;

/* Starts reading the group. Events a dead worker left unanswered were answered by the
 * guard before we attached (guard_proto.h). */
void intercept_start(struct hsmd *h);
/* An event hsmd-guard held while no hsmd ran; fd (owned from here on) is a copy of the
 * event's file, answered through the guard. */
void intercept_forwarded(struct hsmd *h, int fd, uint64_t mask, int pid,
			 const struct guard_ref *ref);
void intercept_stop(struct hsmd *h);
/* While a fid is being released its events are held, and re-examined when it ends:
 * otherwise an open that slips in before the stub state is written would be allowed
 * with an ignore mark and then read the punched hole. */
void intercept_hold(struct hsmd *h, const struct hsm_fid *fid);
void intercept_release_held(struct hsmd *h, const struct hsm_fid *fid);
/* For pool threads: removes the ignore mark of fd's inode (struct mover's unwatch). */
int intercept_unwatch(void *hsmd, int fd);
/* For pool threads: adds the ignore mark once a recall made fd resident. */
int intercept_settle(void *hsmd, int fd);

#endif

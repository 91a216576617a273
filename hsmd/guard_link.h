/* hsmd's end of the guard protocol: the worker attaches to hsmd-guard at start and gets
 * the pre-content group from it (or, when the guard it had died, hands the group it kept
 * to the new one), takes the events the guard held while no hsmd ran, and answers them
 * through the guard. Owned by the worker's loop. */
#ifndef HSMD_GUARD_LINK_H
#define HSMD_GUARD_LINK_H

#include <stddef.h>
#include <stdint.h>

struct hsmd;
struct guard_link;

/* An event the guard handed over, as the guard knows it. */
struct guard_ref {
	unsigned epoch; /* which attach it came through */
	uint64_t id;
	int fdnum; /* its fd number in the guard */
};

/* Attaches to the guard of h->cfg. On success h->perm_fd is the group (received, or kept
 * when it was already >= 0) and the link starts taking events. NULL with err set. */
struct guard_link *guard_link_open(struct hsmd *h, char *err, size_t errlen);
/* Answers an event the guard handed over: 0 allows, an errno denies. */
void guard_link_answer(struct guard_link *gl, const struct guard_ref *ref, int err);
/* 1 while attached to a guard. */
int guard_link_attached(const struct guard_link *gl);
/* The guard's pid (0 when not attached). */
int guard_link_pid(const struct guard_link *gl);
void guard_link_free(struct guard_link *gl);

#endif

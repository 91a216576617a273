/* The unix-socket protocol between hsmd-guard and hsmd's worker (docs/admin.md, "The
 * guard"). SOCK_SEQPACKET: one struct per message, file descriptors ride along with
 * SCM_RIGHTS.
 *
 * A pending permission event is answered by writing its fd *number* to the group, and
 * the kernel matches that number against every pending event of the group, whoever
 * read it. Two processes reading one group must therefore never hold the same event
 * fd number at once. The guard keeps the numbers below `band` to itself unused (it
 * fills them with /dev/null) and hsmd keeps every fd it has below `band` (it lowers
 * its RLIMIT_NOFILE to it): hsmd's events are < band, the guard's are >= band. */
#ifndef HSMD_GUARD_PROTO_H
#define HSMD_GUARD_PROTO_H

#include <stdint.h>

#define GUARD_PROTO_VERSION 1

enum guard_msg_type {
	/* hsmd -> guard, first message. flag = 1: hsmd already holds a group (the guard
	 * it had died) and passes it along to be adopted; 0: hsmd wants the guard's. */
	GUARD_MSG_ATTACH = 1,
	/* guard -> hsmd, the reply to ATTACH. id = the guard's pid, arg = band, flag =
	 * guard_hold in ms. Carries the group fd when hsmd asked for it. */
	GUARD_MSG_HELLO = 2,
	/* guard -> hsmd: an event the guard read while no hsmd was attached, held for
	 * hsmd. Carries a dup of the event's fd; mask and pid as in the event; arg = the
	 * event's fd number in the guard, by which hsmd answers the group directly should
	 * this guard die before hsmd has answered it. */
	GUARD_MSG_EVENT = 3,
	/* hsmd -> guard: answer EVENT id with flag = 0 (allow) or an errno (deny). */
	GUARD_MSG_ANSWER = 4,
};

struct guard_msg {
	uint32_t version; /* GUARD_PROTO_VERSION */
	uint32_t type;	  /* enum guard_msg_type */
	uint64_t id;
	uint64_t mask;
	int64_t arg;
	int32_t pid;
	uint32_t flag;
};

#endif

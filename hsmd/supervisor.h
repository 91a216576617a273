/* The supervisor: the small process that owns the fanotify groups, the admin mounts and
 * the control socket, and keeps one worker running. Readers of stubs block while no
 * worker runs instead of reading zeros, because the groups outlive every worker. */
#ifndef HSMD_SUPERVISOR_H
#define HSMD_SUPERVISOR_H

struct hsm_config;

/* Shared with the worker through an anonymous shared mapping made before fork. */
struct sup_shared {
	/* Highest fanotify event fd number a worker has been handed; the next worker
	 * answers everything up to it (plus a margin) with EIO. */
	volatile int max_event_fd;
	volatile unsigned generation;
};

/* Runs until SIGTERM/SIGINT; returns the process exit status. */
int supervisor_run(struct hsm_config *cfg);

#endif

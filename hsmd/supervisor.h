/* The supervisor: the small process that owns the admin mounts, the notification group
 * and the control socket, keeps one worker running and, with guard = auto, an
 * hsmd-guard. The pre-content group is the guard's (it outlives every hsmd process);
 * the split into supervisor and worker buys a restart of a crashed worker within
 * 0.1 s without a service manager, with the control socket and the admin mounts kept. */
#ifndef HSMD_SUPERVISOR_H
#define HSMD_SUPERVISOR_H

struct hsm_config;

/* Runs until SIGTERM/SIGINT and returns the process exit status; SIGHUP reloads the
 * configuration file (hsmd/reload.h). Takes cfg over (freed when it returns). debug:
 * log debug messages whatever the file says (hsmd -d). */
int supervisor_run(struct hsm_config *cfg, int debug);

#endif

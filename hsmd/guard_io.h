/* The plumbing hsmd-guard and hsmd share: guard protocol messages with an optional fd
 * over SOCK_SEQPACKET, and the guard's socket, lock and readiness. libc only. */
#ifndef HSMD_GUARD_IO_H
#define HSMD_GUARD_IO_H

#include "hsmd/guard_proto.h"

/* Sends m with fd attached (SCM_RIGHTS) unless fd < 0. 0, or -1 with errno. */
int guard_send(int sock, const struct guard_msg *m, int fd);
/* Receives one message into m and an attached fd into *fd (else -1; the caller owns
 * it). timeout_ms > 0 waits at most that long (ETIMEDOUT), 0 does not wait (EAGAIN).
 * 1 on a message, 0 on EOF, -1 with errno (EPROTO for a message not of this protocol). */
int guard_recv(int sock, struct guard_msg *m, int *fd, int timeout_ms);
/* Connects to the guard's socket. The fd, or -1 with errno. */
int guard_connect(const char *path);

/* The guard's listening socket at path (root only). -1 after logging why. */
int guard_listen(const char *path);
/* Takes the lock that makes the guard of path unique: path + ".lock", which also holds
 * the guard's pid. The locked fd, or -1 after logging why (another guard runs). */
int guard_lock(const char *sock_path);
/* 1 if a guard holds the lock of sock_path now, 0 if none, -1 when it cannot tell. */
int guard_running(const char *sock_path, int *pid);
void guard_write_pid(int lock_fd);
/* Forks to the background; the parent exits once guard_ready runs (0) or the child
 * dies first (1). *ready_fd gets the child's end. 0 in the child, -1 on failure. */
int guard_daemonize(int *ready_fd);
/* Tells whoever waits (the daemonizing parent through ready_fd, which stays open for
 * the caller to close or reuse; systemd's NOTIFY_SOCKET) that we are ready. */
void guard_ready(int ready_fd);

#endif

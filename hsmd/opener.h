/* What an opener held in a pre-content event asked for: the event says which file and
 * which thread, not the open's flags. The thread is blocked inside its open call, so
 * /proc/TID/syscall still shows the call and its arguments. */
#ifndef HSMD_OPENER_H
#define HSMD_OPENER_H

#include <sys/types.h>

/* 1 if thread tid is blocked in open, openat, openat2 or creat asking to write and to
 * truncate (O_TRUNC): the file's old content does not matter to it. 0 if not, or if it
 * cannot be told (another call, io_uring, a thread gone): then treat it as any open. */
int opener_truncates(pid_t tid);

#endif

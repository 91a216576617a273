/* A fixed pool of threads for blocking disk I/O and hashing. The loop thread hands a
 * job over with pool_submit; work() runs on a pool thread and must not touch loop-owned
 * state; done() then runs on the loop thread. The job's arg is owned by the submitter
 * throughout; the pool never frees it. */
#ifndef HSM_POOL_H
#define HSM_POOL_H

struct ev_loop;
struct pool;

typedef void (*pool_work_fn)(void *arg);
typedef void (*pool_done_fn)(void *arg);

/* nthreads 0 = number of online CPUs. Returns NULL with errno set on failure. */
struct pool *pool_new(struct ev_loop *loop, unsigned nthreads);
/* Queues a job; work or done may be NULL (a NULL work just defers done to a later
 * loop iteration). Never fails (the queue is unbounded). */
void pool_submit(struct pool *p, pool_work_fn work, pool_done_fn done, void *arg);
unsigned pool_pending(const struct pool *p);
/* Waits for queued jobs to finish, runs their done callbacks, joins the threads. */
void pool_free(struct pool *p);

#endif

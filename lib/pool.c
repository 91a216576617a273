#include "lib/pool.h"

#include <errno.h>
#include <ev.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "lib/log.h"

/* A job moves: submitted (loop) -> queued (threads) -> done (loop).
 * The two queues are the only state shared with the threads; both are guarded by
 * the one mutex. */
struct pool_job {
	pool_work_fn work;
	pool_done_fn done;
	void *arg;
	struct pool_job *next;
};

struct pool_queue {
	struct pool_job *head, *tail;
};

struct pool {
	struct ev_loop *loop;
	ev_async wake; /* threads -> loop: done jobs are waiting */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct pool_queue queued, done;
	unsigned pending; /* submitted and not yet through done(); loop thread only */
	int stopping;
	unsigned nthreads;
	pthread_t *threads;
};

static void pool_queue_push(struct pool_queue *q, struct pool_job *j)
{
	j->next = NULL;
	if (q->tail)
		q->tail->next = j;
	else
		q->head = j;
	q->tail = j;
}

static struct pool_job *pool_queue_take_all(struct pool_queue *q)
{
	struct pool_job *all = q->head;

	q->head = q->tail = NULL;
	return all;
}

static void *pool_thread(void *argp)
{
	struct pool *p = argp;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		struct pool_job *j;

		while (!p->queued.head && !p->stopping)
			pthread_cond_wait(&p->cv, &p->mu);
		if (!p->queued.head)
			break;
		j = p->queued.head;
		p->queued.head = j->next;
		if (!p->queued.head)
			p->queued.tail = NULL;
		pthread_mutex_unlock(&p->mu);

		if (j->work)
			j->work(j->arg);

		pthread_mutex_lock(&p->mu);
		pool_queue_push(&p->done, j);
		ev_async_send(p->loop, &p->wake);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static void pool_run_done(struct pool *p)
{
	struct pool_job *j, *next;

	pthread_mutex_lock(&p->mu);
	j = pool_queue_take_all(&p->done);
	pthread_mutex_unlock(&p->mu);
	for (; j; j = next) {
		next = j->next;
		p->pending--;
		if (j->done)
			j->done(j->arg);
		free(j);
	}
}

static void pool_wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	(void)loop;
	(void)revents;
	pool_run_done(w->data);
}

struct pool *pool_new(struct ev_loop *loop, unsigned nthreads)
{
	struct pool *p;
	int err;

	if (nthreads == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		nthreads = n > 0 ? (unsigned)n : 2;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->threads = calloc(nthreads, sizeof(*p->threads));
	if (!p->threads) {
		free(p);
		return NULL;
	}
	p->loop = loop;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	ev_async_init(&p->wake, pool_wake_cb);
	p->wake.data = p;
	ev_async_start(loop, &p->wake);
	/* The async watcher must not keep the loop alive by itself. */
	ev_unref(loop);
	for (; p->nthreads < nthreads; p->nthreads++) {
		err = pthread_create(&p->threads[p->nthreads], NULL, pool_thread, p);
		if (err) {
			pool_free(p);
			errno = err;
			return NULL;
		}
	}
	return p;
}

void pool_submit(struct pool *p, pool_work_fn work, pool_done_fn done, void *arg)
{
	struct pool_job *j = malloc(sizeof(*j));

	if (!j)
		fatal("pool: cannot queue a job");
	j->work = work;
	j->done = done;
	j->arg = arg;
	p->pending++;
	pthread_mutex_lock(&p->mu);
	pool_queue_push(&p->queued, j);
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

unsigned pool_pending(const struct pool *p)
{
	return p->pending;
}

void pool_free(struct pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stopping = 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (unsigned i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	/* Threads finish the whole work queue before they exit, so every job is
	 * now in done: run the callbacks so owners can free their args. */
	pool_run_done(p);
	ev_ref(p->loop);
	ev_async_stop(p->loop, &p->wake);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p->threads);
	free(p);
}

/* Unit tests of the worker pool (lib/pool.c): work runs on a pool thread and done on the
 * loop thread, each exactly once; pool_pending counts jobs until their done has run;
 * NULL work and NULL done; pool_free with jobs still queued or running; done callbacks
 * that submit more jobs; the pool's own watcher never keeps the loop alive.
 *
 * Assertions are made only on the test (loop) thread: work functions and callbacks
 * record what they saw and the test checks it after ev_run returns, so a failure never
 * longjmps out of a pool thread or out of libev. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/pool.h"

#define NTHREADS 4
#define NMANY	 10000
/* Long enough for 10,000 jobs under valgrind; only a hung pool gets near it. */
#define TIMEOUT_S 30.0

/* A latch the pool threads wait on, opened by the test (or its teardown, so a failed
 * test never leaves threads blocked in pool_free). */
struct gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int open;
};

struct fx {
	struct ev_loop *loop;
	struct pool *pool;
	pthread_t loop_thread;
	ev_timer timeout, tick;
	ev_prepare check;
	int timed_out;
	int (*finished)(struct fx *f);
	unsigned target;
	unsigned done_count; /* done callbacks run, all jobs of the test */
	atomic_uint started; /* work functions entered */
	atomic_uint worked;  /* work functions finished */
	atomic_uint held;    /* work functions waiting at (or past) the gate */
	struct gate gate;
};

struct job {
	struct fx *f;
	unsigned idx;
	uint64_t in, out;
	int gated;
	int work_runs;
	int work_on_loop;
	int done_runs;
	int done_on_loop;
	int work_runs_at_done; /* work must have finished before done runs */
	unsigned chain;	       /* for chained jobs: how many more to submit from done */
};

/* ---- helpers ----------------------------------------------------------------------- */

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	return x ^ (x >> 33);
}

static void gate_open(struct gate *g)
{
	pthread_mutex_lock(&g->mu);
	g->open = 1;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
}

static void gate_wait(struct gate *g)
{
	pthread_mutex_lock(&g->mu);
	while (!g->open)
		pthread_cond_wait(&g->cv, &g->mu);
	pthread_mutex_unlock(&g->mu);
}

static void timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct fx *f = w->data;

	(void)revents;
	f->timed_out = 1;
	ev_break(loop, EVBREAK_ALL);
}

/* Wakes the loop now and then so conditions that change on pool threads without a
 * done callback (work started, pending reached 0) are looked at again. */
static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
}

/* Runs before the loop blocks: stop once the test's condition holds. */
static void check_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct fx *f = w->data;

	(void)revents;
	if (f->finished(f))
		ev_break(loop, EVBREAK_ALL);
}

/* Drives the loop until finished(f) is true; fails the test after TIMEOUT_S. */
static void run_until(struct fx *f, int (*finished)(struct fx *f))
{
	f->finished = finished;
	f->timed_out = 0;
	ev_now_update(f->loop);
	ev_timer_set(&f->timeout, TIMEOUT_S, 0.);
	ev_timer_start(f->loop, &f->timeout);
	ev_timer_set(&f->tick, 0.001, 0.001);
	ev_timer_start(f->loop, &f->tick);
	ev_prepare_start(f->loop, &f->check);
	ev_run(f->loop, 0);
	ev_prepare_stop(f->loop, &f->check);
	ev_timer_stop(f->loop, &f->tick);
	ev_timer_stop(f->loop, &f->timeout);
	if (f->timed_out)
		fail_msg("timed out after %.0f s: %u of %u done callbacks ran, %u pending",
			 TIMEOUT_S, f->done_count, f->target, pool_pending(f->pool));
}

/* Runs the loop for about secs, whatever happens meanwhile. */
static void run_for(struct fx *f, double secs)
{
	ev_now_update(f->loop);
	ev_timer_set(&f->timeout, secs, 0.);
	ev_timer_start(f->loop, &f->timeout);
	ev_run(f->loop, 0);
	ev_timer_stop(f->loop, &f->timeout);
	f->timed_out = 0;
}

static int all_done(struct fx *f)
{
	return f->done_count >= f->target;
}

static int none_pending(struct fx *f)
{
	return pool_pending(f->pool) == 0;
}

static int one_held(struct fx *f)
{
	return atomic_load(&f->held) >= 1;
}

static int two_held(struct fx *f)
{
	return atomic_load(&f->held) >= 2;
}

static int on_loop(const struct fx *f)
{
	return pthread_equal(pthread_self(), f->loop_thread) != 0;
}

static void job_work(void *arg)
{
	struct job *j = arg;

	atomic_fetch_add(&j->f->started, 1);
	j->work_runs++;
	j->work_on_loop = on_loop(j->f);
	if (j->gated) {
		atomic_fetch_add(&j->f->held, 1);
		gate_wait(&j->f->gate);
	}
	j->out = mix(j->in);
	atomic_fetch_add(&j->f->worked, 1);
}

/* A work function that does nothing at all (and submits nothing). */
static void empty_work(void *arg)
{
	(void)arg;
}

static void job_done(void *arg)
{
	struct job *j = arg;

	j->done_runs++;
	j->done_on_loop = on_loop(j->f);
	j->work_runs_at_done = j->work_runs;
	j->f->done_count++;
}

static void job_init(struct fx *f, struct job *j, unsigned idx)
{
	memset(j, 0, sizeof(*j));
	j->f = f;
	j->idx = idx;
	j->in = mix(idx + 1);
}

/* A job that went through the pool normally: one work off the loop, then one done on it. */
static void assert_job_ran(const struct job *j)
{
	if (j->work_runs != 1 || j->work_on_loop || j->done_runs != 1 || !j->done_on_loop ||
	    j->work_runs_at_done != 1 || j->out != mix(j->in))
		fail_msg("job %u: work ran %d times (on loop thread: %d), done ran %d times "
			 "(on loop thread: %d), work runs seen by done %d, result %s",
			 j->idx, j->work_runs, j->work_on_loop, j->done_runs, j->done_on_loop,
			 j->work_runs_at_done, j->out == mix(j->in) ? "right" : "wrong");
}

static struct pool *new_pool(struct fx *f, unsigned nthreads)
{
	struct pool *p = pool_new(f->loop, nthreads);

	assert_non_null(p);
	assert_int_equal(pool_pending(p), 0);
	return p;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->loop = ev_loop_new(EVFLAG_AUTO);
	if (!f->loop) {
		free(f);
		return -1;
	}
	f->loop_thread = pthread_self();
	pthread_mutex_init(&f->gate.mu, NULL);
	pthread_cond_init(&f->gate.cv, NULL);
	ev_timer_init(&f->timeout, timeout_cb, TIMEOUT_S, 0.);
	f->timeout.data = f;
	ev_timer_init(&f->tick, tick_cb, 0.001, 0.001);
	ev_prepare_init(&f->check, check_cb);
	f->check.data = f;
	f->pool = pool_new(f->loop, NTHREADS);
	if (!f->pool) {
		ev_loop_destroy(f->loop);
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	/* A failed test may have left threads waiting at the gate. */
	gate_open(&f->gate);
	pool_free(f->pool);
	ev_loop_destroy(f->loop);
	pthread_cond_destroy(&f->gate.cv);
	pthread_mutex_destroy(&f->gate.mu);
	free(f);
	return 0;
}

/* ---- tests ------------------------------------------------------------------------- */

static void test_one_job(void **state)
{
	struct fx *f = *state;
	struct job j;

	job_init(f, &j, 7);
	pool_submit(f->pool, job_work, job_done, &j);
	assert_int_equal(pool_pending(f->pool), 1);
	/* done runs from the loop, never from inside pool_submit. */
	assert_int_equal(j.done_runs, 0);
	f->target = 1;
	run_until(f, all_done);
	assert_job_ran(&j);
	assert_int_equal(pool_pending(f->pool), 0);
	assert_int_equal(f->done_count, 1);
	assert_int_equal(atomic_load(&f->worked), 1);
}

static void test_many_jobs(void **state)
{
	struct fx *f = *state;
	struct job *jobs = calloc(NMANY, sizeof(*jobs));

	assert_non_null(jobs);
	for (unsigned i = 0; i < NMANY; i++) {
		job_init(f, &jobs[i], i);
		pool_submit(f->pool, job_work, job_done, &jobs[i]);
	}
	assert_int_equal(pool_pending(f->pool), NMANY);
	assert_int_equal(f->done_count, 0);
	f->target = NMANY;
	run_until(f, all_done);
	assert_int_equal(f->done_count, NMANY);
	assert_int_equal(pool_pending(f->pool), 0);
	assert_int_equal(atomic_load(&f->worked), NMANY);
	/* Completion order is not assumed: each job is checked on its own. */
	for (unsigned i = 0; i < NMANY; i++)
		assert_job_ran(&jobs[i]);
	/* Nothing runs twice later on. */
	run_for(f, 0.02);
	assert_int_equal(f->done_count, NMANY);
	for (unsigned i = 0; i < NMANY; i++)
		assert_int_equal(jobs[i].done_runs, 1);
	free(jobs);
}

static void test_null_work(void **state)
{
	struct fx *f = *state;
	struct job jobs[50];

	/* Jobs without work interleaved with jobs with work. */
	for (unsigned i = 0; i < 50; i++) {
		job_init(f, &jobs[i], i);
		pool_submit(f->pool, i % 2 ? job_work : NULL, job_done, &jobs[i]);
	}
	assert_int_equal(pool_pending(f->pool), 50);
	for (unsigned i = 0; i < 50; i++)
		assert_int_equal(jobs[i].done_runs, 0);
	f->target = 50;
	run_until(f, all_done);
	assert_int_equal(pool_pending(f->pool), 0);
	for (unsigned i = 0; i < 50; i++) {
		if (i % 2) {
			assert_job_ran(&jobs[i]);
			continue;
		}
		assert_int_equal(jobs[i].work_runs, 0);
		assert_int_equal(jobs[i].done_runs, 1);
		assert_true(jobs[i].done_on_loop);
		assert_int_equal(jobs[i].out, 0);
	}
	assert_int_equal(atomic_load(&f->worked), 25);
}

static void test_null_done(void **state)
{
	struct fx *f = *state;
	struct job jobs[200];

	for (unsigned i = 0; i < 200; i++) {
		job_init(f, &jobs[i], i);
		pool_submit(f->pool, job_work, NULL, &jobs[i]);
	}
	/* Neither work nor done: a no-op that still counts until it has gone through. */
	pool_submit(f->pool, NULL, NULL, NULL);
	assert_int_equal(pool_pending(f->pool), 201);
	run_until(f, none_pending);
	assert_int_equal(pool_pending(f->pool), 0);
	assert_int_equal(f->done_count, 0);
	assert_int_equal(atomic_load(&f->worked), 200);
	for (unsigned i = 0; i < 200; i++) {
		assert_int_equal(jobs[i].work_runs, 1);
		assert_false(jobs[i].work_on_loop);
		assert_int_equal(jobs[i].done_runs, 0);
		assert_true(jobs[i].out == mix(jobs[i].in));
	}
}

static void test_empty_work(void **state)
{
	struct fx *f = *state;
	struct job jobs[100];

	for (unsigned i = 0; i < 100; i++) {
		job_init(f, &jobs[i], i);
		pool_submit(f->pool, empty_work, job_done, &jobs[i]);
	}
	f->target = 100;
	run_until(f, all_done);
	assert_int_equal(pool_pending(f->pool), 0);
	for (unsigned i = 0; i < 100; i++) {
		assert_int_equal(jobs[i].done_runs, 1);
		assert_true(jobs[i].done_on_loop);
		assert_int_equal(jobs[i].work_runs, 0);
	}
}

/* Two jobs hold two of three threads at the gate; a third finishes on the free thread.
 * pending must then count exactly the two held jobs, whatever order threads take jobs. */
static void test_pending_counts(void **state)
{
	struct fx *f = *state;
	struct job held[2], quick;

	pool_free(f->pool);
	f->pool = new_pool(f, 3);
	for (unsigned i = 0; i < 2; i++) {
		job_init(f, &held[i], i);
		held[i].gated = 1;
		pool_submit(f->pool, job_work, job_done, &held[i]);
		assert_int_equal(pool_pending(f->pool), i + 1);
	}
	job_init(f, &quick, 2);
	pool_submit(f->pool, job_work, job_done, &quick);
	assert_int_equal(pool_pending(f->pool), 3);

	f->target = 1;
	run_until(f, all_done);
	assert_job_ran(&quick);
	run_until(f, two_held);
	run_for(f, 0.02);
	assert_int_equal(pool_pending(f->pool), 2);
	assert_int_equal(f->done_count, 1);
	/* The held jobs' fields belong to their threads until done: count through atomics. */
	assert_int_equal(atomic_load(&f->held), 2);
	assert_int_equal(atomic_load(&f->started), 3);
	assert_int_equal(atomic_load(&f->worked), 1);

	gate_open(&f->gate);
	f->target = 3;
	run_until(f, all_done);
	assert_int_equal(pool_pending(f->pool), 0);
	for (unsigned i = 0; i < 2; i++)
		assert_job_ran(&held[i]);
	assert_job_ran(&quick);
}

static void *open_gate_later(void *arg)
{
	struct fx *f = arg;
	struct timespec ts = {0, 50 * 1000 * 1000};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
	gate_open(&f->gate);
	return NULL;
}

/* pool_free with one job running (held at the gate) on a single thread and many jobs
 * queued behind it, the loop never run for them: every queued job must still do its
 * work and have its done called, on the thread that calls pool_free. The others are
 * submitted only once the one thread is held, so they are queued whatever order the
 * pool takes jobs in. */
static void test_free_runs_queued(void **state)
{
	struct fx *f = *state;
	struct job held, jobs[300];
	pthread_t opener;

	pool_free(f->pool);
	f->pool = new_pool(f, 1);
	job_init(f, &held, 1000);
	held.gated = 1;
	pool_submit(f->pool, job_work, job_done, &held);
	run_until(f, one_held);
	for (unsigned i = 0; i < 300; i++) {
		job_init(f, &jobs[i], i);
		if (i % 3 == 0)
			pool_submit(f->pool, NULL, job_done, &jobs[i]);
		else if (i % 3 == 1)
			pool_submit(f->pool, job_work, NULL, &jobs[i]);
		else
			pool_submit(f->pool, job_work, job_done, &jobs[i]);
	}
	assert_int_equal(pool_pending(f->pool), 301);
	assert_int_equal(f->done_count, 0);
	assert_int_equal(atomic_load(&f->started), 1);

	assert_int_equal(pthread_create(&opener, NULL, open_gate_later, f), 0);
	pool_free(f->pool);
	f->pool = NULL;
	assert_int_equal(pthread_join(opener, NULL), 0);

	assert_job_ran(&held);
	assert_int_equal(f->done_count, 201);
	assert_int_equal(atomic_load(&f->worked), 201);
	for (unsigned i = 0; i < 300; i++) {
		if (i % 3 == 0) {
			assert_int_equal(jobs[i].work_runs, 0);
			assert_int_equal(jobs[i].done_runs, 1);
			assert_true(jobs[i].done_on_loop);
		} else if (i % 3 == 1) {
			assert_int_equal(jobs[i].work_runs, 1);
			assert_false(jobs[i].work_on_loop);
			assert_int_equal(jobs[i].done_runs, 0);
			assert_true(jobs[i].out == mix(jobs[i].in));
		} else {
			assert_job_ran(&jobs[i]);
		}
	}
	/* Teardown frees whatever pool the fixture holds. */
	f->pool = new_pool(f, 1);
}

static void test_free_idle(void **state)
{
	struct fx *f = *state;

	/* A pool that never had a job, with the default thread count. */
	pool_free(f->pool);
	f->pool = pool_new(f->loop, 0);
	assert_non_null(f->pool);
	assert_int_equal(pool_pending(f->pool), 0);
	pool_free(f->pool);
	f->pool = NULL;
	pool_free(NULL);
	f->pool = new_pool(f, 2);
}

/* Done callbacks may submit more jobs (they run on the loop thread); the work itself
 * submits nothing. 20 chains of 50 jobs each. */
static void chain_done(void *arg)
{
	struct job *j = arg;

	job_done(arg);
	if (j->chain) {
		struct job *next = j + 1;

		job_init(j->f, next, j->idx + 1);
		next->chain = j->chain - 1;
		pool_submit(j->f->pool, job_work, chain_done, next);
	}
}

static void test_done_submits(void **state)
{
	struct fx *f = *state;
	enum { NCHAIN = 20, LEN = 50 };
	struct job *jobs = calloc(NCHAIN * LEN, sizeof(*jobs));

	assert_non_null(jobs);
	for (unsigned c = 0; c < NCHAIN; c++) {
		struct job *first = &jobs[c * LEN];

		job_init(f, first, c * LEN);
		first->chain = LEN - 1;
		pool_submit(f->pool, job_work, chain_done, first);
	}
	assert_int_equal(pool_pending(f->pool), NCHAIN);
	f->target = NCHAIN * LEN;
	run_until(f, all_done);
	assert_int_equal(f->done_count, NCHAIN * LEN);
	assert_int_equal(pool_pending(f->pool), 0);
	for (unsigned i = 0; i < NCHAIN * LEN; i++) {
		assert_int_equal(jobs[i].idx, i);
		assert_job_ran(&jobs[i]);
	}
	free(jobs);
}

static void flag_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	*(int *)w->data = 1;
}

/* Returns 1 if ev_run(loop, 0) came back by itself once a 10 ms timer fired, 0 if
 * something else kept it running (caught by an unreferenced 500 ms guard). */
static int loop_returns(struct fx *f)
{
	ev_timer t, guard;
	int fired = 0, stuck = 0;

	ev_timer_init(&t, flag_cb, 0.01, 0.);
	t.data = &fired;
	ev_timer_init(&guard, timeout_cb, 0.5, 0.);
	guard.data = f;
	f->timed_out = 0;
	ev_now_update(f->loop);
	ev_timer_start(f->loop, &t);
	ev_timer_start(f->loop, &guard);
	ev_unref(f->loop);
	ev_run(f->loop, 0);
	stuck = f->timed_out;
	f->timed_out = 0;
	ev_ref(f->loop);
	ev_timer_stop(f->loop, &guard);
	ev_timer_stop(f->loop, &t);
	return fired && !stuck;
}

/* The pool's watcher must not keep the loop alive, before or after pool_free (an
 * unbalanced ev_unref/ev_ref would make ev_run return at once or never). */
static void test_loop_not_held(void **state)
{
	struct fx *f = *state;
	struct job j;

	assert_true(loop_returns(f));
	job_init(f, &j, 1);
	pool_submit(f->pool, job_work, job_done, &j);
	f->target = 1;
	run_until(f, all_done);
	assert_job_ran(&j);
	assert_true(loop_returns(f));
	pool_free(f->pool);
	f->pool = NULL;
	assert_true(loop_returns(f));
	f->pool = new_pool(f, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_one_job, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_many_jobs, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_null_work, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_null_done, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_empty_work, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pending_counts, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_free_runs_queued, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_free_idle, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_done_submits, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_loop_not_held, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * event_tpool_test.c - unit tests for src/event/tpool.c.
 *
 * Every job's work runs exactly once; done runs exactly once, on the origin
 * loop's thread or, without an origin, on the worker that ran the work; one
 * worker runs jobs in submission order; tpool_pending drops to zero;
 * tpool_stop drains the queue, including jobs submitted by jobs; bad sizes
 * are refused.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "event/loop.h"
#include "event/tpool.h"
#include "test.h"

#define JOBS_MAX 10000

struct job {
	int idx;                        /* position in submission order */
	atomic_int work_runs;           /* times work ran */
	atomic_int done_runs;           /* times done ran */
	pthread_t worker;               /* thread that ran work */
};

static void job_work(void *arg);
static void job_done(void *arg);
static void probe_thread(void *arg);
static void test_jobs_run_once(void);
static void slow_work(void *arg);
static void nested_work(void *arg);
static void test_stop_drains(void);
static void test_start_errors(void);
static void main_done(void *arg);
static void test_done_on_main_loop(void);

static struct job jobs[JOBS_MAX];
static atomic_int order_next;           /* next slot in order[] */
static int order[JOBS_MAX];             /* job indexes in the order work started */
static struct loop *origin;             /* loop the done callbacks must run on */
static pthread_t origin_thread;         /* its thread */
static atomic_int done_wrong_thread;    /* done callbacks on a wrong thread */

static void
job_work(void *arg)
{
	struct job *j = arg;

	order[atomic_fetch_add(&order_next, 1)] = j->idx;
	j->worker = pthread_self();
	atomic_fetch_add(&j->work_runs, 1);
}

static void
job_done(void *arg)
{
	struct job *j = arg;

	if (origin != NULL) {
		if (loop_current() != origin || !pthread_equal(pthread_self(), origin_thread))
			atomic_fetch_add(&done_wrong_thread, 1);
	} else if (loop_current() != NULL || !pthread_equal(pthread_self(), j->worker))
		atomic_fetch_add(&done_wrong_thread, 1);
	atomic_fetch_add(&j->done_runs, 1);
}

static void
probe_thread(void *arg)
{
	origin_thread = pthread_self();
}

static void
test_jobs_run_once(void)
{
	static const struct {
		const char *name;
		int nthreads;
		int njobs;
		int with_origin;        /* done on a loop, else on the worker */
	} cases[] = {
		{ "one-worker-fifo", 1, 2000, 0 },
		{ "one-worker-origin", 1, 2000, 1 },
		{ "four-workers", 4, JOBS_MAX, 0 },
		{ "eight-workers-origin", 8, JOBS_MAX, 1 },
	};
	char err[256], ctx[128];
	size_t c;
	int i;

	for (c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct loop_group *g = NULL;
		struct tpool *p;
		int bad_work = 0, bad_done = 0, out_of_order = 0, waited_ms = 0;

		origin = NULL;
		if (cases[c].with_origin) {
			g = loop_group_start(2, err, sizeof(err));
			CHECK(g != NULL, "%s: loop_group_start: %s", cases[c].name, err);
			if (g == NULL)
				continue;
			origin = loop_group_get(g, 1);
			loop_post(origin, probe_thread, NULL);
		}
		p = tpool_start(cases[c].nthreads, err, sizeof(err));
		CHECK(p != NULL, "%s: tpool_start: %s", cases[c].name, err);
		if (p == NULL) {
			loop_group_stop(g);
			continue;
		}
		atomic_store(&order_next, 0);
		atomic_store(&done_wrong_thread, 0);
		for (i = 0; i < cases[c].njobs; i++) {
			jobs[i].idx = i;
			atomic_store(&jobs[i].work_runs, 0);
			atomic_store(&jobs[i].done_runs, 0);
		}
		for (i = 0; i < cases[c].njobs; i++)
			tpool_submit(p, job_work, job_done, &jobs[i], origin);
		while (tpool_pending(p) > 0 && waited_ms < 20000) {
			usleep(1000);
			waited_ms++;
		}
		snprintf(ctx, sizeof(ctx), "%s: tpool_pending after the work", cases[c].name);
		CHECK_INT(tpool_pending(p), 0, ctx);
		tpool_stop(p);
		/* The done calls were posted before the loops stop: their own
		 * threads run them while draining. */
		loop_group_stop(g);

		for (i = 0; i < cases[c].njobs; i++) {
			if (atomic_load(&jobs[i].work_runs) != 1 && bad_work++ == 0)
				CHECK(0, "%s: job %d: work ran %d times, want 1", cases[c].name, i,
				    atomic_load(&jobs[i].work_runs));
			if (atomic_load(&jobs[i].done_runs) != 1 && bad_done++ == 0)
				CHECK(0, "%s: job %d: done ran %d times, want 1", cases[c].name, i,
				    atomic_load(&jobs[i].done_runs));
		}
		snprintf(ctx, sizeof(ctx), "%s: jobs whose work did not run once", cases[c].name);
		CHECK_INT(bad_work, 0, ctx);
		snprintf(ctx, sizeof(ctx), "%s: jobs whose done did not run once", cases[c].name);
		CHECK_INT(bad_done, 0, ctx);
		snprintf(ctx, sizeof(ctx), "%s: done callbacks on the wrong thread", cases[c].name);
		CHECK_INT(atomic_load(&done_wrong_thread), 0, ctx);
		if (cases[c].nthreads == 1) {
			for (i = 0; i < cases[c].njobs; i++)
				if (order[i] != i && out_of_order++ == 0)
					CHECK(0, "%s: start #%d: got job %d, want job %d",
					    cases[c].name, i, order[i], i);
			snprintf(ctx, sizeof(ctx), "%s: jobs started out of order", cases[c].name);
			CHECK_INT(out_of_order, 0, ctx);
		}
	}
	origin = NULL;
}

/* tpool_stop with a full queue: slow jobs, and jobs that submit jobs. */
#define SLOW_JOBS    300
#define NESTED_ROOTS 100
#define NESTED_DEPTH 3          /* each root spawns a chain of this many more */

static struct tpool *nested_pool;
static atomic_int slow_runs;
static atomic_int nested_runs;

static void
slow_work(void *arg)
{
	usleep(200);
	atomic_fetch_add(&slow_runs, 1);
}

static void
nested_work(void *arg)
{
	intptr_t depth = (intptr_t)arg;

	atomic_fetch_add(&nested_runs, 1);
	if (depth < NESTED_DEPTH)
		tpool_submit(nested_pool, nested_work, NULL, (void *)(depth + 1), NULL);
}

static void
test_stop_drains(void)
{
	char err[256];
	size_t pending;
	int i;

	nested_pool = tpool_start(2, err, sizeof(err));
	CHECK(nested_pool != NULL, "tpool_start: %s", err);
	if (nested_pool == NULL)
		return;
	atomic_store(&slow_runs, 0);
	atomic_store(&nested_runs, 0);
	for (i = 0; i < SLOW_JOBS; i++)
		tpool_submit(nested_pool, slow_work, NULL, NULL, NULL);
	for (i = 0; i < NESTED_ROOTS; i++)
		tpool_submit(nested_pool, nested_work, NULL, (void *)(intptr_t)0, NULL);
	pending = tpool_pending(nested_pool);
	CHECK(pending > 0 && pending <= SLOW_JOBS + NESTED_ROOTS * (NESTED_DEPTH + 1),
	    "tpool_pending right after submitting: got %zu, want 1..%d", pending,
	    SLOW_JOBS + NESTED_ROOTS * (NESTED_DEPTH + 1));
	tpool_stop(nested_pool);
	nested_pool = NULL;
	CHECK_INT(atomic_load(&slow_runs), SLOW_JOBS, "slow jobs run by tpool_stop");
	CHECK_INT(atomic_load(&nested_runs), NESTED_ROOTS * (NESTED_DEPTH + 1),
	    "jobs and the jobs they submitted, run by tpool_stop");
}

static void
test_start_errors(void)
{
	static const int sizes[] = { 0, -1, 100000 };
	size_t c;

	for (c = 0; c < sizeof(sizes) / sizeof(sizes[0]); c++) {
		char err[256] = "";
		struct tpool *p = tpool_start(sizes[c], err, sizeof(err));

		CHECK(p == NULL, "n=%d: got a pool, want NULL", sizes[c]);
		CHECK(err[0] != '\0', "n=%d: got an empty error, want a reason", sizes[c]);
		tpool_stop(p);
	}
}

/* Done callbacks aimed at the daemon's main loop. */
#define MAIN_JOBS 1000

static struct loop *main_loop;
static int main_dones;
static int main_wrong_thread;
static pthread_t main_thread;

static void
main_done(void *arg)
{
	if (loop_current() != main_loop || !pthread_equal(pthread_self(), main_thread))
		main_wrong_thread++;
	if (++main_dones == MAIN_JOBS)
		loop_main_break(main_loop);
}

static void
test_done_on_main_loop(void)
{
	struct tpool *p;
	char err[256];
	int i;

	main_loop = loop_main_new();
	CHECK(main_loop != NULL, "loop_main_new: got NULL");
	if (main_loop == NULL)
		return;
	main_thread = pthread_self();
	p = tpool_start(4, err, sizeof(err));
	CHECK(p != NULL, "tpool_start: %s", err);
	if (p == NULL) {
		loop_main_free(main_loop);
		return;
	}
	main_dones = main_wrong_thread = 0;
	for (i = 0; i < MAIN_JOBS; i++)
		tpool_submit(p, slow_work, main_done, NULL, main_loop);
	CHECK_INT(loop_main_run(main_loop), 0, "loop_main_run");
	CHECK_INT(main_dones, MAIN_JOBS, "done callbacks run on the main loop");
	CHECK_INT(main_wrong_thread, 0, "done callbacks off the main thread");
	tpool_stop(p);
	loop_main_free(main_loop);
	main_loop = NULL;
}

TEST_MAIN("event_tpool",
    TEST(test_start_errors),
    TEST(test_jobs_run_once),
    TEST(test_stop_drains),
    TEST(test_done_on_main_loop))

/*
 * event_loop_test.c - unit tests for src/event/loop.c.
 *
 * loop_post delivery (exactly once, FIFO per poster, on the target thread),
 * group accessors and loop_group_pick stability, loop_group_stop running
 * every pending call (also calls posted between loops while they stop), and
 * the main loop: run / break / free, posts from loop threads.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "event/loop.h"
#include "test.h"

#define POST_MAX_POSTERS  8
#define POST_MAX_PER      5000
#define GATE_WAIT_S       20    /* longest wait for a gate before failing */

/* A one-shot gate: opened once by some thread, waited on by the test. */
struct gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int open;
};

static void gate_init(struct gate *g);
static void gate_open(void *arg);
static int gate_wait(struct gate *g);
static void gate_destroy(struct gate *g);

struct post_rec {
	int poster;     /* poster thread number */
	int seq;        /* position in that poster's sequence */
};

struct poster {
	pthread_t tid;
	struct loop *target;
	int id;
	int n;          /* calls to post */
};

static void post_probe(void *arg);
static void post_record(void *arg);
static void *poster_main(void *arg);
static void test_post_fifo(void);
static void test_post_self_is_deferred(void);
static void self_outer(void *arg);
static void self_inner(void *arg);
static void test_group_accessors(void);
static void test_group_start_errors(void);
static void test_pick_stable(void);
static void stall(void *arg);
static void stop_forward(void *arg);
static void stop_count(void *arg);
static void test_stop_runs_pending(void);
static void main_flood(void *arg);
static void main_count(void *arg);
static void main_break_later(void *arg);
static void test_main_loop(void);

/* State of the post tests: touched only by the target loop's thread until
 * the final gate opens. */
static struct post_rec post_recs[POST_MAX_POSTERS][POST_MAX_PER];
static int post_seen[POST_MAX_POSTERS][POST_MAX_PER];
static int post_next[POST_MAX_POSTERS];
static int post_order_errors;
static int post_thread_errors;
static struct loop *post_target;
static pthread_t post_target_thread;

static void
gate_init(struct gate *g)
{
	pthread_mutex_init(&g->mu, NULL);
	pthread_cond_init(&g->cv, NULL);
	g->open = 0;
}

static void
gate_open(void *arg)
{
	struct gate *g = arg;

	pthread_mutex_lock(&g->mu);
	g->open = 1;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
}

/* gate_wait: 1 once the gate is open, 0 after GATE_WAIT_S seconds. */
static int
gate_wait(struct gate *g)
{
	struct timespec until;
	int rc = 0;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += GATE_WAIT_S;
	pthread_mutex_lock(&g->mu);
	while (!g->open && rc == 0)
		rc = pthread_cond_timedwait(&g->cv, &g->mu, &until);
	rc = g->open;
	pthread_mutex_unlock(&g->mu);
	return rc;
}

static void
gate_destroy(struct gate *g)
{
	pthread_cond_destroy(&g->cv);
	pthread_mutex_destroy(&g->mu);
}

static void
post_probe(void *arg)
{
	post_target_thread = pthread_self();
	gate_open(arg);
}

static void
post_record(void *arg)
{
	struct post_rec *r = arg;

	if (loop_current() != post_target ||
	    !pthread_equal(pthread_self(), post_target_thread))
		post_thread_errors++;
	if (r->seq != post_next[r->poster])
		post_order_errors++;
	post_next[r->poster] = r->seq + 1;
	post_seen[r->poster][r->seq]++;
}

static void *
poster_main(void *arg)
{
	struct poster *p = arg;
	int i;

	for (i = 0; i < p->n; i++) {
		post_recs[p->id][i].poster = p->id;
		post_recs[p->id][i].seq = i;
		loop_post(p->target, post_record, &post_recs[p->id][i]);
	}
	return NULL;
}

static void
test_post_fifo(void)
{
	static const struct {
		const char *name;
		int nloops;
		int nposters;
		int nper;
	} cases[] = {
		{ "one-loop-one-poster", 1, 1, 1000 },
		{ "two-loops-four-posters", 2, 4, POST_MAX_PER },
		{ "four-loops-eight-posters", 4, POST_MAX_POSTERS, 2000 },
	};
	struct poster posters[POST_MAX_POSTERS];
	char err[256], ctx[128];
	size_t c;
	int i, k, bad;

	for (c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct loop_group *g;
		struct gate probe, done;

		g = loop_group_start(cases[c].nloops, err, sizeof(err));
		CHECK(g != NULL, "%s: loop_group_start: %s", cases[c].name, err);
		if (g == NULL)
			continue;
		memset(post_seen, 0, sizeof(post_seen));
		memset(post_next, 0, sizeof(post_next));
		post_order_errors = post_thread_errors = 0;
		post_target = loop_group_get(g, cases[c].nloops - 1);

		gate_init(&probe);
		loop_post(post_target, post_probe, &probe);
		CHECK(gate_wait(&probe), "%s: probe call never ran", cases[c].name);
		CHECK(!pthread_equal(post_target_thread, pthread_self()),
		    "%s: got the test thread as loop thread, want a loop thread", cases[c].name);

		for (i = 0; i < cases[c].nposters; i++) {
			posters[i].target = post_target;
			posters[i].id = i;
			posters[i].n = cases[c].nper;
			pthread_create(&posters[i].tid, NULL, poster_main, &posters[i]);
		}
		for (i = 0; i < cases[c].nposters; i++)
			pthread_join(posters[i].tid, NULL);
		/* Posted after every poster finished: runs after all of them. */
		gate_init(&done);
		loop_post(post_target, gate_open, &done);
		CHECK(gate_wait(&done), "%s: final call never ran", cases[c].name);

		snprintf(ctx, sizeof(ctx), "%s: calls out of order", cases[c].name);
		CHECK_INT(post_order_errors, 0, ctx);
		snprintf(ctx, sizeof(ctx), "%s: calls on the wrong thread", cases[c].name);
		CHECK_INT(post_thread_errors, 0, ctx);
		bad = 0;
		for (i = 0; i < cases[c].nposters; i++)
			for (k = 0; k < cases[c].nper; k++)
				if (post_seen[i][k] != 1 && bad++ == 0)
					CHECK(0, "%s: poster %d call %d ran %d times, want 1",
					    cases[c].name, i, k, post_seen[i][k]);
		snprintf(ctx, sizeof(ctx), "%s: calls not run exactly once", cases[c].name);
		CHECK_INT(bad, 0, ctx);
		loop_group_stop(g);
		gate_destroy(&probe);
		gate_destroy(&done);
	}
}

/* A call posted by a loop to itself must run later, not inside loop_post. */
static int self_inner_ran;
static int self_inner_ran_inline;

static void
self_inner(void *arg)
{
	self_inner_ran++;
	gate_open(arg);
}

static void
self_outer(void *arg)
{
	loop_post(loop_current(), self_inner, arg);
	self_inner_ran_inline = self_inner_ran;
}

static void
test_post_self_is_deferred(void)
{
	struct loop_group *g;
	struct gate done;
	char err[256];

	g = loop_group_start(1, err, sizeof(err));
	CHECK(g != NULL, "loop_group_start: %s", err);
	if (g == NULL)
		return;
	self_inner_ran = self_inner_ran_inline = 0;
	gate_init(&done);
	loop_post(loop_group_get(g, 0), self_outer, &done);
	CHECK(gate_wait(&done), "inner call never ran");
	CHECK_INT(self_inner_ran_inline, 0, "inner call run inside loop_post");
	CHECK_INT(self_inner_ran, 1, "inner call runs");
	loop_group_stop(g);
	gate_destroy(&done);
}

static void
test_group_accessors(void)
{
	static const int sizes[] = { 1, 2, 5 };
	char err[256], ctx[128];
	size_t c;
	int i, k;

	CHECK(loop_current() == NULL, "loop_current on the test thread: got %p, want NULL",
	    (void *)loop_current());
	for (c = 0; c < sizeof(sizes) / sizeof(sizes[0]); c++) {
		struct loop_group *g = loop_group_start(sizes[c], err, sizeof(err));

		CHECK(g != NULL, "n=%d: loop_group_start: %s", sizes[c], err);
		if (g == NULL)
			continue;
		snprintf(ctx, sizeof(ctx), "n=%d: loop_group_count", sizes[c]);
		CHECK_INT(loop_group_count(g), sizes[c], ctx);
		for (i = 0; i < sizes[c]; i++) {
			snprintf(ctx, sizeof(ctx), "n=%d: loop_index(loop_group_get(%d))", sizes[c], i);
			CHECK_INT(loop_index(loop_group_get(g, i)), i, ctx);
			CHECK(loop_base(loop_group_get(g, i)) != NULL, "n=%d: loop %d has no base",
			    sizes[c], i);
			for (k = 0; k < i; k++)
				CHECK(loop_base(loop_group_get(g, i)) != loop_base(loop_group_get(g, k)),
				    "n=%d: loops %d and %d share a base", sizes[c], k, i);
		}
		loop_group_stop(g);
	}
}

static void
test_group_start_errors(void)
{
	struct loop_group *g;
	char err[256];
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	err[0] = '\0';
	g = loop_group_start(100000, err, sizeof(err));
	CHECK(g == NULL, "n=100000: got a group, want NULL");
	CHECK(err[0] != '\0', "n=100000: got an empty error, want a reason");
	if (g != NULL)
		loop_group_stop(g);

	g = loop_group_start(0, err, sizeof(err));
	CHECK(g != NULL, "n=0: loop_group_start: %s", err);
	if (g != NULL) {
		CHECK_INT(loop_group_count(g), ncpu < 1 ? 1 : ncpu, "n=0: one loop per CPU");
		loop_group_stop(g);
	}
}

static void
test_pick_stable(void)
{
	static const int sizes[] = { 1, 3, 4, 7 };
	static const uint64_t keys[] = {
		0, 1, 2, 3, 6, 7, 1000003, 0xdeadbeefULL, UINT64_MAX, UINT64_MAX - 1,
	};
	char err[256], ctx[128];
	size_t c, k;

	for (c = 0; c < sizeof(sizes) / sizeof(sizes[0]); c++) {
		int n = sizes[c], counts[8] = { 0 };
		struct loop_group *g = loop_group_start(n, err, sizeof(err));
		uint64_t key;
		int i;

		CHECK(g != NULL, "n=%d: loop_group_start: %s", n, err);
		if (g == NULL)
			continue;
		for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
			struct loop *first = loop_group_pick(g, keys[k]);

			snprintf(ctx, sizeof(ctx), "n=%d key=%llu: picked index", n,
			    (unsigned long long)keys[k]);
			CHECK_INT(loop_index(first), (long long)(keys[k] % (uint64_t)n), ctx);
			CHECK(loop_group_pick(g, keys[k]) == first,
			    "n=%d key=%llu: second pick differs from the first", n,
			    (unsigned long long)keys[k]);
		}
		for (key = 0; key < (uint64_t)n * 50; key++)
			counts[loop_index(loop_group_pick(g, key))]++;
		for (i = 0; i < n; i++) {
			snprintf(ctx, sizeof(ctx), "n=%d: keys 0..%d on loop %d", n, n * 50 - 1, i);
			CHECK_INT(counts[i], 50, ctx);
		}
		loop_group_stop(g);
	}
}

/* Stop: loop 0 is stalled while calls pile up behind it; each of them posts
 * a follow-up to loop 1, which has usually closed by then. */
#define STOP_CALLS 2000

static struct loop *stop_loops[2];
static int stop_counts[2];              /* calls run per loop */
static int stop_wrong_loop;             /* calls that saw another loop_current() */
static int stop_on_stopper;             /* follow-ups run on the stopping thread */
static pthread_t stop_thread;           /* the thread calling loop_group_stop */

static void
stall(void *arg)
{
	usleep(50 * 1000);
}

static void
stop_count(void *arg)
{
	if (loop_current() != stop_loops[1])
		stop_wrong_loop++;
	if (pthread_equal(pthread_self(), stop_thread))
		stop_on_stopper++;
	stop_counts[1]++;
}

static void
stop_forward(void *arg)
{
	if (loop_current() != stop_loops[0])
		stop_wrong_loop++;
	stop_counts[0]++;
	loop_post(stop_loops[1], stop_count, NULL);
}

static void
test_stop_runs_pending(void)
{
	struct loop_group *g;
	char err[256];
	int i;

	g = loop_group_start(2, err, sizeof(err));
	CHECK(g != NULL, "loop_group_start: %s", err);
	if (g == NULL)
		return;
	stop_loops[0] = loop_group_get(g, 0);
	stop_loops[1] = loop_group_get(g, 1);
	stop_counts[0] = stop_counts[1] = stop_wrong_loop = stop_on_stopper = 0;
	stop_thread = pthread_self();
	loop_post(stop_loops[0], stall, NULL);
	for (i = 0; i < STOP_CALLS; i++)
		loop_post(stop_loops[0], stop_forward, NULL);
	loop_group_stop(g);
	CHECK_INT(stop_counts[0], STOP_CALLS, "calls queued at stop that ran");
	CHECK_INT(stop_counts[1], STOP_CALLS, "follow-ups posted during stop that ran");
	CHECK_INT(stop_wrong_loop, 0, "calls that saw the wrong loop_current()");
	printf("     (%d of %d follow-ups ran on the stopping thread)\n", stop_on_stopper,
	    STOP_CALLS);
}

/* Main loop: three loop threads flood it with calls; the last one breaks. */
#define MAIN_PER_LOOP 1000

static struct loop *main_loop;
static pthread_t main_thread;
static int main_calls;
static int main_want;
static int main_wrong_thread;

static void
main_count(void *arg)
{
	if (loop_current() != main_loop || !pthread_equal(pthread_self(), main_thread))
		main_wrong_thread++;
	if (++main_calls == main_want)
		loop_main_break(main_loop);
}

static void
main_flood(void *arg)
{
	int i;

	for (i = 0; i < MAIN_PER_LOOP; i++)
		loop_post(main_loop, main_count, NULL);
}

static void
main_break_later(void *arg)
{
	usleep(20 * 1000);
	loop_main_break(main_loop);
}

static void
test_main_loop(void)
{
	struct loop_group *g;
	char err[256];
	uint64_t t0;
	int i;

	main_loop = loop_main_new();
	CHECK(main_loop != NULL, "loop_main_new: got NULL");
	if (main_loop == NULL)
		return;
	main_thread = pthread_self();
	CHECK(loop_current() == main_loop, "loop_current after loop_main_new: got %p, want %p",
	    (void *)loop_current(), (void *)main_loop);
	CHECK_INT(loop_index(main_loop), -1, "loop_index of the main loop");

	/* Posts from three loop threads, break from inside the last call. */
	g = loop_group_start(3, err, sizeof(err));
	CHECK(g != NULL, "loop_group_start: %s", err);
	if (g == NULL)
		return;
	main_calls = main_wrong_thread = 0;
	main_want = 3 * MAIN_PER_LOOP;
	for (i = 0; i < 3; i++)
		loop_post(loop_group_get(g, i), main_flood, NULL);
	CHECK_INT(loop_main_run(main_loop), 0, "loop_main_run after a break");
	CHECK_INT(main_calls, main_want, "calls run on the main loop");
	CHECK_INT(main_wrong_thread, 0, "main-loop calls on another thread");

	/* Break from another thread while the main loop sleeps. */
	t0 = loop_now_ms(main_loop);
	loop_post(loop_group_get(g, 0), main_break_later, NULL);
	CHECK_INT(loop_main_run(main_loop), 0, "loop_main_run after a cross-thread break");
	CHECK(loop_now_ms(main_loop) - t0 < 5000, "cross-thread break took %llu ms",
	    (unsigned long long)(loop_now_ms(main_loop) - t0));
	loop_group_stop(g);

	/* A break requested before the run makes the run return at once. */
	loop_main_break(main_loop);
	t0 = loop_now_ms(main_loop);
	CHECK_INT(loop_main_run(main_loop), 0, "loop_main_run after an early break");
	CHECK(loop_now_ms(main_loop) - t0 < 1000, "early break: run took %llu ms, want ~0",
	    (unsigned long long)(loop_now_ms(main_loop) - t0));

	/* Calls still queued when the main loop is freed are run by the free. */
	main_calls = 0;
	main_want = -1;
	for (i = 0; i < 10; i++)
		loop_post(main_loop, main_count, NULL);
	loop_main_free(main_loop);
	CHECK_INT(main_calls, 10, "calls run by loop_main_free");
	CHECK(loop_current() == NULL, "loop_current after loop_main_free: got %p, want NULL",
	    (void *)loop_current());
	main_loop = NULL;
}

TEST_MAIN("event_loop",
    TEST(test_group_accessors),
    TEST(test_group_start_errors),
    TEST(test_pick_stable),
    TEST(test_post_fifo),
    TEST(test_post_self_is_deferred),
    TEST(test_stop_runs_pending),
    TEST(test_main_loop))

/*
 * event_timer_test.c - unit tests for src/event/timer.c and loop_now_ms.
 *
 * Timers fire in deadline order, re-arming replaces the deadline, stop
 * cancels, repeating timers repeat, a timer may re-arm or free itself from
 * its own callback, and timers on a loop thread fire on that thread. Most
 * cases run on a main loop driven by the test thread, with a watchdog timer
 * so that a lost timer fails the test instead of hanging it.
 */
#include <pthread.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "event/loop.h"
#include "event/timer.h"
#include "test.h"

#define WATCHDOG_MS 10000       /* longest a single case may run */
#define ORDER_MAX   5
#define MANY_TIMERS 2000

struct order_slot {
	int idx;                /* timer number in the case table */
	uint64_t delay_ms;      /* its delay */
	uint64_t fired_ms;      /* loop_now_ms when it fired */
	struct timer *t;
};

static int run_main(struct loop *m);
static void watchdog_cb(struct timer *t, void *arg);
static void break_cb(struct timer *t, void *arg);
static void order_cb(struct timer *t, void *arg);
static void order_start(void *arg);
static void test_fire_order(void);
static void many_cb(struct timer *t, void *arg);
static void many_start(void *arg);
static void test_many_in_order(void);
static void count_cb(struct timer *t, void *arg);
static void test_rearm_replaces(void);
static void test_stop_cancels(void);
static void repeat_cb(struct timer *t, void *arg);
static void test_repeating(void);
static void self_free_cb(struct timer *t, void *arg);
static void test_free_in_callback(void);
static void restart_cb(struct timer *t, void *arg);
static void to_once_cb(struct timer *t, void *arg);
static void test_rearm_in_callback(void);
static void loop_timer_cb(struct timer *t, void *arg);
static void loop_timer_start(void *arg);
static void test_timer_on_loop_thread(void);
static void test_now_ms(void);

static int watchdog_fired;

static void
watchdog_cb(struct timer *t, void *arg)
{
	watchdog_fired = 1;
	loop_main_break(arg);
}

static void
break_cb(struct timer *t, void *arg)
{
	loop_main_break(arg);
}

/* run_main: run m until a break; 1 if that came before the watchdog. */
static int
run_main(struct loop *m)
{
	struct timer *w = timer_new(m, watchdog_cb, m);
	int rc;

	watchdog_fired = 0;
	timer_start_ms(w, WATCHDOG_MS);
	rc = loop_main_run(m);
	timer_free(w);
	CHECK(!watchdog_fired, "watchdog: the case did not finish in %d ms", WATCHDOG_MS);
	return rc == 0 && !watchdog_fired;
}

/* Fire order: timers started together fire by deadline. */
static struct order_slot order_slots[ORDER_MAX];
static int order_n;                     /* timers in the case */
static int order_fired;                 /* callbacks so far */
static int order_seen[ORDER_MAX];       /* timer numbers in firing order */
static uint64_t order_t0;               /* loop_now_ms when started */

static void
order_cb(struct timer *t, void *arg)
{
	struct order_slot *s = arg;

	s->fired_ms = loop_now_ms(loop_current());
	order_seen[order_fired++] = s->idx;
	if (order_fired == order_n)
		loop_main_break(loop_current());
}

static void
order_start(void *arg)
{
	int i;

	order_t0 = loop_now_ms(loop_current());
	for (i = 0; i < order_n; i++)
		timer_start_ms(order_slots[i].t, order_slots[i].delay_ms);
}

static void
test_fire_order(void)
{
	static const struct {
		const char *name;
		int n;
		uint64_t delays[ORDER_MAX];     /* ms, all different */
		int want[ORDER_MAX];            /* timer numbers in firing order */
	} cases[] = {
		{ "spread", 5, { 50, 10, 40, 20, 30 }, { 1, 3, 4, 2, 0 } },
		{ "reverse", 5, { 50, 40, 30, 20, 10 }, { 4, 3, 2, 1, 0 } },
		{ "with-zero", 5, { 30, 0, 15, 45, 5 }, { 1, 4, 2, 0, 3 } },
		{ "single", 1, { 5 }, { 0 } },
	};
	struct loop *m = loop_main_new();
	char ctx[128];
	size_t c;
	int i;

	for (c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		order_n = cases[c].n;
		order_fired = 0;
		for (i = 0; i < order_n; i++) {
			order_slots[i].idx = i;
			order_slots[i].delay_ms = cases[c].delays[i];
			order_slots[i].t = timer_new(m, order_cb, &order_slots[i]);
		}
		/* Started from inside the running loop: one cached "now". */
		loop_post(m, order_start, NULL);
		if (run_main(m)) {
			for (i = 0; i < order_n; i++) {
				snprintf(ctx, sizeof(ctx), "%s: timer firing #%d", cases[c].name, i);
				CHECK_INT(order_seen[i], cases[c].want[i], ctx);
			}
			for (i = 0; i < order_n; i++) {
				uint64_t took = order_slots[i].fired_ms - order_t0;

				/* 5 ms slack: libevent measures from its cached
				 * loop time, a little before order_t0. */
				CHECK(took + 5 >= order_slots[i].delay_ms,
				    "%s: timer %d: fired after %llu ms, want >= %llu ms",
				    cases[c].name, i, (unsigned long long)took,
				    (unsigned long long)order_slots[i].delay_ms);
			}
		}
		for (i = 0; i < order_n; i++)
			timer_free(order_slots[i].t);
	}
	loop_main_free(m);
}

/* Many timers with clashing deadlines: never a later deadline first. */
static struct timer *many_timers[MANY_TIMERS];
static uint64_t many_delay[MANY_TIMERS];
static int many_fired[MANY_TIMERS];
static int many_count;
static int many_out_of_order;
static uint64_t many_last_delay;

static void
many_cb(struct timer *t, void *arg)
{
	int i = (int)(intptr_t)arg;

	if (many_delay[i] < many_last_delay)
		many_out_of_order++;
	many_last_delay = many_delay[i];
	many_fired[i]++;
	if (++many_count == MANY_TIMERS)
		loop_main_break(loop_current());
}

static void
many_start(void *arg)
{
	int i;

	for (i = 0; i < MANY_TIMERS; i++)
		timer_start_ms(many_timers[i], many_delay[i]);
}

static void
test_many_in_order(void)
{
	struct loop *m = loop_main_new();
	int i, bad = 0;

	many_count = many_out_of_order = 0;
	many_last_delay = 0;
	for (i = 0; i < MANY_TIMERS; i++) {
		many_delay[i] = (uint64_t)((i * 7919) % 100);
		many_fired[i] = 0;
		many_timers[i] = timer_new(m, many_cb, (void *)(intptr_t)i);
	}
	loop_post(m, many_start, NULL);
	run_main(m);
	CHECK_INT(many_count, MANY_TIMERS, "timers fired");
	CHECK_INT(many_out_of_order, 0, "timers fired before an earlier deadline");
	for (i = 0; i < MANY_TIMERS; i++)
		if (many_fired[i] != 1 && bad++ == 0)
			CHECK(0, "timer %d fired %d times, want 1", i, many_fired[i]);
	for (i = 0; i < MANY_TIMERS; i++)
		timer_free(many_timers[i]);
	loop_main_free(m);
}

/* A counting callback; arg points at an int. */
static uint64_t count_last_ms;

static void
count_cb(struct timer *t, void *arg)
{
	(*(int *)arg)++;
	count_last_ms = loop_now_ms(loop_current());
}

static void
test_rearm_replaces(void)
{
	static const struct {
		const char *name;
		uint64_t first_ms;      /* first start */
		uint64_t second_ms;     /* immediate re-arm */
		uint64_t min_ms;        /* earliest acceptable firing */
		uint64_t max_ms;        /* latest acceptable firing */
	} cases[] = {
		{ "shorter-replaces-longer", 2000, 20, 15, 1000 },
		{ "longer-replaces-shorter", 20, 80, 75, 2000 },
		{ "same-again", 30, 30, 25, 2000 },
	};
	struct loop *m = loop_main_new();
	char ctx[128];
	size_t c;

	for (c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		int fired = 0;
		struct timer *t = timer_new(m, count_cb, &fired);
		struct timer *guard = timer_new(m, break_cb, m);
		uint64_t t0 = loop_now_ms(m), took;

		timer_start_ms(t, cases[c].first_ms);
		timer_start_ms(t, cases[c].second_ms);
		timer_start_ms(guard, cases[c].second_ms + 150);
		if (run_main(m)) {
			snprintf(ctx, sizeof(ctx), "%s: callbacks", cases[c].name);
			CHECK_INT(fired, 1, ctx);
			took = count_last_ms - t0;
			CHECK(fired != 1 || (took >= cases[c].min_ms && took <= cases[c].max_ms),
			    "%s: fired after %llu ms, want %llu..%llu", cases[c].name,
			    (unsigned long long)took, (unsigned long long)cases[c].min_ms,
			    (unsigned long long)cases[c].max_ms);
			snprintf(ctx, sizeof(ctx), "%s: pending after firing", cases[c].name);
			CHECK_INT(timer_pending(t), 0, ctx);
		}
		timer_free(t);
		timer_free(guard);
	}
	loop_main_free(m);
}

static void
test_stop_cancels(void)
{
	struct loop *m = loop_main_new();
	int fired = 0, never_fired = 0;
	struct timer *t = timer_new(m, count_cb, &fired);
	struct timer *never = timer_new(m, count_cb, &never_fired);
	struct timer *guard = timer_new(m, break_cb, m);

	CHECK_INT(timer_pending(t), 0, "pending before start");
	timer_start_ms(t, 20);
	CHECK_INT(timer_pending(t), 1, "pending after start");
	timer_stop(t);
	CHECK_INT(timer_pending(t), 0, "pending after stop");
	timer_stop(t);                  /* twice: no effect */
	timer_stop(never);              /* never started: no effect */
	timer_start_ms(guard, 80);
	run_main(m);
	CHECK_INT(fired, 0, "callbacks of a stopped timer");
	CHECK_INT(never_fired, 0, "callbacks of a never-started timer");
	timer_free(t);
	timer_free(never);
	timer_free(guard);
	timer_free(NULL);
	loop_main_free(m);
}

/* Repeating: 5 callbacks 10 ms apart, then stop from inside the callback. */
static int repeat_count;
static int repeat_not_pending;          /* callbacks that found it not pending */
static struct timer *repeat_guard;

static void
repeat_cb(struct timer *t, void *arg)
{
	if (!timer_pending(t))
		repeat_not_pending++;
	if (++repeat_count == 5) {
		timer_stop(t);
		timer_start_ms(repeat_guard, 60);
	}
}

static void
test_repeating(void)
{
	struct loop *m = loop_main_new();
	struct timer *t = timer_new(m, repeat_cb, NULL);
	uint64_t t0, took;

	repeat_count = repeat_not_pending = 0;
	repeat_guard = timer_new(m, break_cb, m);
	t0 = loop_now_ms(m);
	timer_start_every_ms(t, 10);
	if (run_main(m)) {
		took = loop_now_ms(m) - t0;
		CHECK_INT(repeat_count, 5, "callbacks of a timer stopped after 5");
		CHECK_INT(repeat_not_pending, 0, "callbacks where the repeating timer was not pending");
		CHECK(took >= 100, "5 x 10 ms + 60 ms guard took %llu ms, want >= 100",
		    (unsigned long long)took);
		CHECK_INT(timer_pending(t), 0, "pending after stop");
	}
	timer_free(t);
	timer_free(repeat_guard);
	loop_main_free(m);
}

/* timer_free from inside the timer's own callback. */
struct self_free {
	int free_on;            /* callback number that frees the timer */
	int count;              /* callbacks so far */
	int pending_in_cb;      /* timer_pending seen in the first callback */
};

static void
self_free_cb(struct timer *t, void *arg)
{
	struct self_free *s = arg;

	if (s->count == 0)
		s->pending_in_cb = timer_pending(t);
	if (++s->count == s->free_on)
		timer_free(t);
}

static void
test_free_in_callback(void)
{
	static const struct {
		const char *name;
		int repeat;             /* timer_start_every_ms, else timer_start_ms */
		int free_on;
		int want_pending;       /* timer_pending inside the first callback */
	} cases[] = {
		{ "one-shot", 0, 1, 0 },
		{ "repeating-first", 1, 1, 1 },
		{ "repeating-third", 1, 3, 1 },
	};
	struct loop *m = loop_main_new();
	char ctx[128];
	size_t c;

	for (c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct self_free s = { cases[c].free_on, 0, -1 };
		struct timer *t = timer_new(m, self_free_cb, &s);
		struct timer *guard = timer_new(m, break_cb, m);

		if (cases[c].repeat)
			timer_start_every_ms(t, 5);
		else
			timer_start_ms(t, 5);
		timer_start_ms(guard, 100);
		if (run_main(m)) {
			snprintf(ctx, sizeof(ctx), "%s: callbacks", cases[c].name);
			CHECK_INT(s.count, cases[c].free_on, ctx);
			snprintf(ctx, sizeof(ctx), "%s: pending inside the callback", cases[c].name);
			CHECK_INT(s.pending_in_cb, cases[c].want_pending, ctx);
		}
		timer_free(guard);
	}
	loop_main_free(m);
}

/* Re-arming from inside the callback: restart a one-shot timer, and turn a
 * repeating timer into a one-shot one. */
static int restart_count;
static int to_once_count;

static void
restart_cb(struct timer *t, void *arg)
{
	if (++restart_count < 3)
		timer_start_ms(t, 5);
}

static void
to_once_cb(struct timer *t, void *arg)
{
	if (++to_once_count == 2)
		timer_start_ms(t, 10);
}

static void
test_rearm_in_callback(void)
{
	struct loop *m = loop_main_new();
	struct timer *restart = timer_new(m, restart_cb, NULL);
	struct timer *to_once = timer_new(m, to_once_cb, NULL);
	struct timer *guard = timer_new(m, break_cb, m);

	restart_count = to_once_count = 0;
	timer_start_ms(restart, 5);
	timer_start_every_ms(to_once, 10);
	timer_start_ms(guard, 200);
	if (run_main(m)) {
		CHECK_INT(restart_count, 3, "one-shot restarted twice from its callback");
		CHECK_INT(to_once_count, 3, "repeating switched to one-shot on callback 2");
		CHECK_INT(timer_pending(restart), 0, "restarted timer pending at the end");
		CHECK_INT(timer_pending(to_once), 0, "switched timer pending at the end");
	}
	timer_free(restart);
	timer_free(to_once);
	timer_free(guard);
	loop_main_free(m);
}

/* A timer on a loop thread fires on that thread. */
static struct loop *lt_loop;
static pthread_t lt_test_thread;
static int lt_fired;
static int lt_wrong;
static pthread_mutex_t lt_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t lt_cv = PTHREAD_COND_INITIALIZER;

static void
loop_timer_cb(struct timer *t, void *arg)
{
	int wrong = loop_current() != lt_loop || pthread_equal(pthread_self(), lt_test_thread);

	timer_free(t);
	pthread_mutex_lock(&lt_mu);
	lt_wrong = wrong;
	lt_fired++;
	pthread_cond_signal(&lt_cv);
	pthread_mutex_unlock(&lt_mu);
}

static void
loop_timer_start(void *arg)
{
	struct timer *t = timer_new(loop_current(), loop_timer_cb, NULL);

	timer_start_ms(t, 10);
}

static void
test_timer_on_loop_thread(void)
{
	struct loop_group *g;
	struct timespec until;
	char err[256];
	int fired;

	g = loop_group_start(2, err, sizeof(err));
	CHECK(g != NULL, "loop_group_start: %s", err);
	if (g == NULL)
		return;
	lt_loop = loop_group_get(g, 1);
	lt_test_thread = pthread_self();
	lt_fired = lt_wrong = 0;
	loop_post(lt_loop, loop_timer_start, NULL);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += WATCHDOG_MS / 1000;
	pthread_mutex_lock(&lt_mu);
	while (lt_fired == 0 && pthread_cond_timedwait(&lt_cv, &lt_mu, &until) == 0)
		;
	fired = lt_fired;
	pthread_mutex_unlock(&lt_mu);
	CHECK_INT(fired, 1, "timers fired on the loop thread");
	CHECK_INT(lt_wrong, 0, "timer callbacks off their loop's thread");
	loop_group_stop(g);
}

static void
test_now_ms(void)
{
	struct loop *m = loop_main_new();
	uint64_t a, b, prev;
	int i, backwards = 0;

	prev = loop_now_ms(m);
	for (i = 0; i < 100000; i++) {
		b = loop_now_ms(m);
		if (b < prev)
			backwards++;
		prev = b;
	}
	CHECK_INT(backwards, 0, "loop_now_ms going backwards");
	a = loop_now_ms(m);
	usleep(30 * 1000);
	b = loop_now_ms(m);
	CHECK(b - a >= 30 && b - a < 5000, "30 ms sleep: got %llu ms, want 30..5000",
	    (unsigned long long)(b - a));
	loop_main_free(m);
}

TEST_MAIN("event_timer",
    TEST(test_now_ms),
    TEST(test_fire_order),
    TEST(test_many_in_order),
    TEST(test_rearm_replaces),
    TEST(test_stop_cancels),
    TEST(test_repeating),
    TEST(test_free_in_callback),
    TEST(test_rearm_in_callback),
    TEST(test_timer_on_loop_thread))

/*
 * loop.c - event loop threads: one libevent event_base per thread.
 *
 * Public functions:
 *   loop_group_start   start n loop threads
 *   loop_group_count   number of loops in a group
 *   loop_group_get     loop i of a group
 *   loop_group_pick    the loop for a key (key % count)
 *   loop_group_stop    run pending posts, join the threads, free the group
 *   loop_base          a loop's event_base
 *   loop_index         a loop's position in its group
 *   loop_current       the loop of the calling thread
 *   loop_post          run a call on a loop's thread (thread-safe)
 *   loop_now_ms        monotonic milliseconds
 *   loop_main_new / loop_main_run / loop_main_break / loop_main_free
 *                      the loop run by the daemon's main thread
 *   loop_thread_spawn  start a thread with the daemon's signals blocked
 *
 * Cross-thread calls: each loop has a mutex-protected array of posted calls
 * and one libevent event ("wake") that is never added, only made active.
 * loop_post appends under the mutex and activates wake only when it is not
 * already pending, so a burst of posts costs one activation (one eventfd
 * write by libevent when the loop sleeps). The wake callback swaps the
 * posted array for an empty one under the mutex and runs the whole batch
 * outside it; calls posted meanwhile wait for the next turn of the loop, so
 * a loop that keeps posting to itself cannot starve its I/O. The two arrays
 * are reused, so steady-state posting allocates nothing.
 * evthread_use_pthreads() is called once (pthread_once) before the first
 * base is created: event_active from another thread needs libevent's locks.
 *
 * Ownership: a group owns its loops; a loop owns its base, its wake event and
 * its queues. Errors: loop_group_start fills err; allocation failures abort;
 * a backend failure (epoll_wait error) on a loop thread is fatal.
 */
#include "event/loop.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "lib/diag.h"
#include "lib/xalloc.h"

#define LOOP_MAX          1024  /* loops in one group */
#define LOOP_CALLS_MIN    64    /* first allocation of a call array, entries */
#define LOOP_CALLS_KEEP   4096  /* larger arrays are freed after a batch, entries */

struct loop_call {
	loop_call_fn fn;        /* runs on the loop's thread */
	void *arg;              /* fn's argument, owned by fn */
};

struct loop_calls {
	struct loop_call *v;    /* calls in posting order */
	size_t len;             /* entries used */
	size_t cap;             /* entries allocated */
};

struct loop {
	struct event_base *base;        /* owned; dispatched by thread only */
	struct event *wake;             /* runs the posted calls; activated, never added */
	struct loop_group *group;       /* owning group, NULL for the main loop */
	int index;                      /* position in group, -1 for the main loop */
	pthread_t thread;               /* the thread that dispatches base */
	pthread_mutex_t lock;           /* guards posted, wake_pending, break_req, closed */
	struct loop_calls posted;       /* calls waiting for the next batch */
	int wake_pending;               /* wake is active: no need to activate again */
	int break_req;                  /* leave the dispatch after the next batch */
	int closed;                     /* no thread dispatches base any more */
	struct loop_calls running;      /* the batch being run; the loop's thread only */
};

struct loop_group {
	int nloops;                     /* loops in loops[] */
	struct loop **loops;            /* owned */
};

static void loop_once_init(void);
static struct loop *loop_new(struct loop_group *g, int index, char *err, size_t errlen);
static void loop_free(struct loop *l);
static void loop_wake_locked(struct loop *l);
static size_t loop_run_batch(struct loop *l, int close_if_empty, int *brk);
static void loop_wake_cb(evutil_socket_t fd, short what, void *arg);
static void *loop_thread_main(void *arg);
static void loop_group_halt(struct loop_group *g, int nthreads);

static pthread_once_t loop_once = PTHREAD_ONCE_INIT;
static int loop_threads_ok;                     /* evthread_use_pthreads() succeeded */
static _Thread_local struct loop *loop_tls;     /* loop run by this thread */

/* The asynchronous signals the daemon handles on its main loop. */
static const int loop_blocked_signals[] = {
	SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGCHLD, SIGALRM,
};

static void
loop_once_init(void)
{
	loop_threads_ok = evthread_use_pthreads() == 0;
}

static struct loop *
loop_new(struct loop_group *g, int index, char *err, size_t errlen)
{
	struct loop *l;

	pthread_once(&loop_once, loop_once_init);
	if (!loop_threads_ok) {
		snprintf(err, errlen, "libevent thread support could not be enabled");
		return NULL;
	}
	l = xcalloc(1, sizeof(*l));
	l->group = g;
	l->index = index;
	l->base = event_base_new();
	if (l->base == NULL) {
		snprintf(err, errlen, "cannot create an event base (out of memory or descriptors)");
		free(l);
		return NULL;
	}
	l->wake = event_new(l->base, -1, 0, loop_wake_cb, l);
	if (l->wake == NULL) {
		snprintf(err, errlen, "cannot create the wake event");
		event_base_free(l->base);
		free(l);
		return NULL;
	}
	pthread_mutex_init(&l->lock, NULL);
	return l;
}

static void
loop_free(struct loop *l)
{
	event_free(l->wake);
	event_base_free(l->base);
	pthread_mutex_destroy(&l->lock);
	free(l->posted.v);
	free(l->running.v);
	free(l);
}

/*
 * loop_wake_locked: make sure a batch will run. Called with l->lock held:
 * event_active happens under the lock so that a closing loop (which takes
 * the lock before it frees the base) never races with an activation.
 * Lock order: l->lock, then libevent's base lock (which libevent never holds
 * while it runs our callbacks).
 */
static void
loop_wake_locked(struct loop *l)
{
	if (l->wake_pending || l->closed)
		return;
	l->wake_pending = 1;
	event_active(l->wake, EV_READ, 0);
}

/*
 * loop_run_batch: take every posted call and run them in order on the
 * calling thread. With close_if_empty, an empty queue marks l closed in the
 * same critical section. *brk (if not NULL) receives a pending break request,
 * taken with the batch so that the calls posted before the break are in it.
 * Returns the number of calls run.
 */
static size_t
loop_run_batch(struct loop *l, int close_if_empty, int *brk)
{
	struct loop_calls batch;
	size_t i, n;

	pthread_mutex_lock(&l->lock);
	batch = l->posted;
	l->posted = l->running;
	memset(&l->running, 0, sizeof(l->running));
	l->wake_pending = 0;
	if (brk != NULL) {
		*brk = l->break_req;
		l->break_req = 0;
	}
	if (batch.len == 0 && close_if_empty)
		l->closed = 1;
	pthread_mutex_unlock(&l->lock);

	n = batch.len;
	for (i = 0; i < n; i++)
		batch.v[i].fn(batch.v[i].arg);

	batch.len = 0;
	if (batch.cap > LOOP_CALLS_KEEP) {
		free(batch.v);
		batch.v = NULL;
		batch.cap = 0;
	}
	l->running = batch;
	return n;
}

static void
loop_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct loop *l = arg;
	int brk;

	loop_run_batch(l, 0, &brk);
	if (brk)
		event_base_loopbreak(l->base);
}

static void *
loop_thread_main(void *arg)
{
	struct loop *l = arg;

	loop_tls = l;
	if (event_base_loop(l->base, EVLOOP_NO_EXIT_ON_EMPTY) < 0)
		diag_fatal("event loop %d: the event backend failed: %s", l->index,
		    strerror(errno));
	/* Stop requested: run what is queued, including calls those calls
	 * post, until the queue is found empty; then the loop is closed and
	 * loop_group_stop runs whatever arrives later. */
	while (loop_run_batch(l, 1, NULL) > 0)
		;
	loop_tls = NULL;
	return NULL;
}

/*
 * loop_group_halt: stop and join the first nthreads loops of g (the ones
 * whose thread was started), then run the calls that arrived after each
 * thread closed its queue, on this thread, until every queue is empty.
 */
static void
loop_group_halt(struct loop_group *g, int nthreads)
{
	struct loop *saved = loop_tls;
	size_t ran;
	int i;

	for (i = 0; i < nthreads; i++) {
		struct loop *l = g->loops[i];

		pthread_mutex_lock(&l->lock);
		l->break_req = 1;
		loop_wake_locked(l);
		pthread_mutex_unlock(&l->lock);
	}
	for (i = 0; i < nthreads; i++)
		pthread_join(g->loops[i]->thread, NULL);

	/* Every thread of g is gone: each loop's state now belongs to us. */
	do {
		ran = 0;
		for (i = 0; i < g->nloops; i++) {
			loop_tls = g->loops[i];
			ran += loop_run_batch(g->loops[i], 1, NULL);
		}
	} while (ran > 0);
	loop_tls = saved;
}

struct loop_group *
loop_group_start(int n, char *err, size_t errlen)
{
	struct loop_group *g;
	char name[32];           /* thread name; loop_thread_spawn cuts it to 15 bytes */
	int i, rc;

	if (n <= 0) {
		long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

		n = ncpu < 1 ? 1 : ncpu > LOOP_MAX ? LOOP_MAX : (int)ncpu;
	}
	if (n > LOOP_MAX) {
		snprintf(err, errlen, "%d loop threads requested, at most %d", n, LOOP_MAX);
		return NULL;
	}
	g = xcalloc(1, sizeof(*g));
	g->loops = xcalloc((size_t)n, sizeof(*g->loops));
	for (i = 0; i < n; i++) {
		g->loops[i] = loop_new(g, i, err, errlen);
		if (g->loops[i] == NULL)
			goto fail;
		g->nloops = i + 1;
	}
	for (i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "imp-loop-%d", i);
		rc = loop_thread_spawn(&g->loops[i]->thread, loop_thread_main, g->loops[i], name);
		if (rc != 0) {
			snprintf(err, errlen, "cannot start loop thread %d: %s", i, strerror(rc));
			loop_group_halt(g, i);
			goto fail;
		}
	}
	return g;

fail:
	for (i = 0; i < g->nloops; i++)
		loop_free(g->loops[i]);
	free(g->loops);
	free(g);
	return NULL;
}

int
loop_group_count(const struct loop_group *g)
{
	return g->nloops;
}

struct loop *
loop_group_get(struct loop_group *g, int i)
{
	IMP_ASSERT(i >= 0 && i < g->nloops);
	return g->loops[i];
}

struct loop *
loop_group_pick(struct loop_group *g, uint64_t key)
{
	return g->loops[key % (uint64_t)g->nloops];
}

void
loop_group_stop(struct loop_group *g)
{
	int i;

	if (g == NULL)
		return;
	/* A loop of g cannot join itself. */
	IMP_ASSERT(loop_tls == NULL || loop_tls->group != g);
	loop_group_halt(g, g->nloops);
	for (i = 0; i < g->nloops; i++)
		loop_free(g->loops[i]);
	free(g->loops);
	free(g);
}

struct event_base *
loop_base(struct loop *l)
{
	return l->base;
}

int
loop_index(const struct loop *l)
{
	return l->index;
}

struct loop *
loop_current(void)
{
	return loop_tls;
}

void
loop_post(struct loop *l, loop_call_fn fn, void *arg)
{
	struct loop_calls *q = &l->posted;

	IMP_ASSERT(fn != NULL);
	pthread_mutex_lock(&l->lock);
	if (q->len == q->cap) {
		q->cap = q->cap ? q->cap * 2 : LOOP_CALLS_MIN;
		q->v = xreallocarray(q->v, q->cap, sizeof(*q->v));
	}
	q->v[q->len].fn = fn;
	q->v[q->len].arg = arg;
	q->len++;
	loop_wake_locked(l);
	pthread_mutex_unlock(&l->lock);
}

uint64_t
loop_now_ms(struct loop *l)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct loop *
loop_main_new(void)
{
	struct loop *l;
	char err[128];

	IMP_ASSERT(loop_tls == NULL);
	l = loop_new(NULL, -1, err, sizeof(err));
	if (l == NULL)
		return NULL;
	l->thread = pthread_self();
	loop_tls = l;
	return l;
}

int
loop_main_run(struct loop *l)
{
	IMP_ASSERT(loop_tls == l && l->group == NULL);
	return event_base_loop(l->base, EVLOOP_NO_EXIT_ON_EMPTY) < 0 ? -1 : 0;
}

void
loop_main_break(struct loop *l)
{
	pthread_mutex_lock(&l->lock);
	l->break_req = 1;
	loop_wake_locked(l);
	pthread_mutex_unlock(&l->lock);
}

void
loop_main_free(struct loop *l)
{
	if (l == NULL)
		return;
	IMP_ASSERT(loop_tls == l && l->group == NULL);
	while (loop_run_batch(l, 1, NULL) > 0)
		;
	loop_tls = NULL;
	loop_free(l);
}

int
loop_thread_spawn(pthread_t *tid, void *(*start)(void *), void *arg, const char *name)
{
	sigset_t block, old;
	char comm[16];
	size_t i, len;
	int rc;

	sigemptyset(&block);
	for (i = 0; i < sizeof(loop_blocked_signals) / sizeof(loop_blocked_signals[0]); i++)
		sigaddset(&block, loop_blocked_signals[i]);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	rc = pthread_create(tid, NULL, start, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc == 0 && name != NULL) {
		len = strnlen(name, sizeof(comm) - 1);
		memcpy(comm, name, len);
		comm[len] = '\0';
		pthread_setname_np(*tid, comm);
	}
	return rc;
}

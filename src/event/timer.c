/*
 * timer.c - one-shot and repeating timers on a loop.
 *
 * Public functions:
 *   timer_new             a stopped timer on a loop
 *   timer_start_ms        fire once after a delay (re-arm replaces)
 *   timer_start_every_ms  fire periodically
 *   timer_stop            cancel
 *   timer_pending         is a deadline set
 *   timer_free            stop and free, also from inside the callback
 *
 * Each timer wraps one libevent event with no descriptor: flags 0 for a
 * one-shot timer, EV_PERSIST for a repeating one (libevent then re-adds it
 * relative to its previous deadline before running the callback). Switching
 * modes re-assigns the event while it is not pending.
 *
 * Freeing inside the callback: libevent runs a timeout callback after it has
 * removed the event from its heap (one-shot) or re-added it (persistent) and
 * released the base lock; after the callback returns it only clears
 * base->current_event and never touches the event again, so event_free from
 * inside the callback on the loop's own thread is safe (event_del does not
 * wait for a running callback on its own thread). timer_fire calls the user
 * callback last and does not touch the timer after it.
 *
 * Ownership: the timer owns its event. Errors: libevent allocation failures
 * are fatal, like xalloc's.
 */
#include "event/timer.h"

#include <stdlib.h>
#include <sys/time.h>

#include <event2/event.h>

#include "event/loop.h"
#include "lib/diag.h"
#include "lib/xalloc.h"

#define TIMER_MAX_MS  ((uint64_t)INT32_MAX * 1000)  /* longest delay, ms */

struct timer {
	struct loop *loop;      /* owning loop; every call happens on its thread */
	struct event *ev;       /* the libevent timeout event, owned */
	timer_fn cb;            /* called when the timer fires */
	void *arg;              /* cb's argument, not owned */
	int repeat;             /* ev is EV_PERSIST (repeating) */
};

static void timer_fire(evutil_socket_t fd, short what, void *arg);
static void timer_arm(struct timer *t, uint64_t ms, int repeat);

static void
timer_fire(evutil_socket_t fd, short what, void *arg)
{
	struct timer *t = arg;

	/* Last statement: cb may free t. */
	t->cb(t, t->arg);
}

static void
timer_arm(struct timer *t, uint64_t ms, int repeat)
{
	struct timeval tv;

	IMP_ASSERT(loop_current() == t->loop);
	if (repeat != t->repeat) {
		event_del(t->ev);
		event_assign(t->ev, loop_base(t->loop), -1, repeat ? EV_PERSIST : 0,
		    timer_fire, t);
		t->repeat = repeat;
	}
	if (ms > TIMER_MAX_MS)
		ms = TIMER_MAX_MS;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	/* event_add on a pending event replaces its deadline; for a timer it
	 * fails only when the timeout heap cannot grow. */
	if (event_add(t->ev, &tv) != 0)
		diag_fatal("timer: cannot add a timeout (out of memory)");
}

struct timer *
timer_new(struct loop *l, timer_fn cb, void *arg)
{
	struct timer *t;

	IMP_ASSERT(cb != NULL);
	IMP_ASSERT(loop_current() == l);
	t = xcalloc(1, sizeof(*t));
	t->loop = l;
	t->cb = cb;
	t->arg = arg;
	t->ev = event_new(loop_base(l), -1, 0, timer_fire, t);
	if (t->ev == NULL)
		diag_fatal_oom(event_get_struct_event_size());
	return t;
}

void
timer_start_ms(struct timer *t, uint64_t ms)
{
	timer_arm(t, ms, 0);
}

void
timer_start_every_ms(struct timer *t, uint64_t ms)
{
	IMP_ASSERT(ms > 0);
	timer_arm(t, ms, 1);
}

void
timer_stop(struct timer *t)
{
	IMP_ASSERT(loop_current() == t->loop);
	event_del(t->ev);
}

int
timer_pending(const struct timer *t)
{
	IMP_ASSERT(loop_current() == t->loop);
	return event_pending(t->ev, EV_TIMEOUT, NULL) != 0;
}

void
timer_free(struct timer *t)
{
	if (t == NULL)
		return;
	IMP_ASSERT(loop_current() == t->loop);
	event_free(t->ev);
	free(t);
}

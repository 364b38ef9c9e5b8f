/*
 * timer.h - one-shot and repeating timers on a loop.
 *
 * A timer is a libevent timeout event on its loop's event_base. libevent
 * keeps pending timeouts in a binary min-heap ordered by deadline: start,
 * re-arm and stop cost O(log n), finding the next deadline O(1), so tens of
 * thousands of session timers are cheap. Deadlines use the monotonic clock
 * (libevent 2.1's default), so a step of the system clock neither fires nor
 * delays them. Timers due in the same turn of the loop fire in deadline
 * order.
 *
 * Threads: every function is for the owning loop's thread only (asserted):
 * timers are never shared between loops. To act on another loop's timer,
 * loop_post a call to that loop.
 *
 * Ownership: the creator owns the timer and frees it with timer_free, which
 * is allowed inside the timer's own callback (the callback must then not
 * touch the timer again). Errors: none; allocation failure aborts.
 */
#ifndef IMPETUS_EVENT_TIMER_H
#define IMPETUS_EVENT_TIMER_H

#include <stdint.h>

struct loop;
struct timer;

/* timer_fn: called on the timer's loop when it fires. */
typedef void (*timer_fn)(struct timer *t, void *arg);

/* timer_new: a stopped timer on l (the calling thread's loop) calling cb(t, arg). */
struct timer *timer_new(struct loop *l, timer_fn cb, void *arg);
/*
 * timer_start_ms: fire once, ms milliseconds from now (0: in the next turn
 * of the loop). Re-arming a pending timer replaces its deadline and mode.
 * Inside a callback "now" is libevent's cached time for the current turn of
 * the loop (taken when the poll returned), so every timer armed in one turn
 * shares one base time. Delays beyond 2^31 seconds are cut to that.
 */
void timer_start_ms(struct timer *t, uint64_t ms);
/*
 * timer_start_every_ms: fire every ms milliseconds (ms > 0) until stopped.
 * Deadlines follow the schedule (start + k * ms), not the callback times,
 * so a late callback does not push the next one back; after a long stall
 * the schedule restarts from the current time.
 */
void timer_start_every_ms(struct timer *t, uint64_t ms);
/* timer_stop: cancel; nothing happens if the timer is not pending. */
void timer_stop(struct timer *t);
/*
 * timer_pending: 1 while a deadline is set, else 0. A one-shot timer is no
 * longer pending inside its callback; a repeating one still is.
 */
int timer_pending(const struct timer *t);
/* timer_free: stop and free t (NULL is allowed); safe inside t's own callback. */
void timer_free(struct timer *t);

#endif

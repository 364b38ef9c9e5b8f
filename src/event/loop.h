/*
 * loop.h - event loop threads: one libevent event_base per thread.
 *
 * A loop group is a fixed set of loop threads, each running its own
 * event_base. Work that belongs to one domain (or one connection) is pinned
 * to one loop with loop_group_pick, so its state is only ever touched by that
 * loop's thread and needs no lock. Other threads hand work to a loop with
 * loop_post: the call is queued and runs on the loop's thread.
 *
 * The main loop (loop_main_new) is the same object run by the daemon's main
 * thread instead of a thread of its own; it receives signals, runs control
 * work, and accepts loop_post like any other loop.
 *
 * Threads: loop_post and loop_main_break may be called from any thread.
 * Everything else that takes a struct loop is for the loop's own thread,
 * except loop_base / loop_index, which only read fields fixed at creation.
 * loop_group_start / loop_group_stop are for one controlling thread that is
 * not a loop of that group.
 *
 * Errors: loop_group_start returns NULL and fills err; loop_main_new returns
 * NULL when libevent cannot create a base (no memory or descriptors).
 * Allocation failures abort (xalloc).
 */
#ifndef IMPETUS_EVENT_LOOP_H
#define IMPETUS_EVENT_LOOP_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct loop;
struct loop_group;

/* loop_call_fn: a call handed to a loop by loop_post. */
typedef void (*loop_call_fn)(void *arg);

/*
 * loop_group_start: start n loop threads (n <= 0: one per online CPU).
 * Returns the group, or NULL with a reason in err (n too large, libevent
 * could not create a base, a thread could not be started).
 */
struct loop_group *loop_group_start(int n, char *err, size_t errlen);
/* loop_group_count: the number of loops in g. */
int loop_group_count(const struct loop_group *g);
/* loop_group_get: loop i of g, 0 <= i < loop_group_count(g). */
struct loop *loop_group_get(struct loop_group *g, int i);
/* loop_group_pick: the loop for key: key % count, stable for the group's life. */
struct loop *loop_group_pick(struct loop_group *g, uint64_t key);
/*
 * loop_group_stop: stop every loop of g, join the threads, free g.
 * Every call posted to a loop of g before loop_group_stop returns is run
 * exactly once: on the loop's thread while it is still draining, or, when it
 * arrived after that thread had finished, on the calling thread after every
 * thread of g has been joined (loop_current() then returns that loop, and
 * no other thread of g is running). Calls run at stop time may post again;
 * stop returns when all queues of g are empty. Posting to a loop of g after
 * loop_group_stop returned is a use after free: stop the posters first
 * (listeners, then the tpool, then the loop group).
 * Events still registered on a base are not called; their owners free them
 * (usually from a call posted before stop).
 */
void loop_group_stop(struct loop_group *g);

/* loop_base: the event_base of l, for creating events on l. */
struct event_base *loop_base(struct loop *l);
/* loop_index: l's position in its group, -1 for the main loop. */
int loop_index(const struct loop *l);
/* loop_current: the loop the calling thread runs, NULL off any loop. */
struct loop *loop_current(void);
/*
 * loop_post: run fn(arg) on l's thread, after the calls posted before it
 * (FIFO per posting thread; calls from different threads interleave in the
 * order they took the queue lock). Thread-safe; never blocks on l's work.
 * A call posted from l's own thread runs in a later turn of the loop, never
 * inside the caller. Ownership of arg passes to fn.
 */
void loop_post(struct loop *l, loop_call_fn fn, void *arg);
/*
 * loop_now_ms: monotonic time in milliseconds (CLOCK_MONOTONIC, the clock
 * libevent uses for its timeouts; read through the vDSO, no system call).
 * Only differences are meaningful. Callable from any thread.
 */
uint64_t loop_now_ms(struct loop *l);

/*
 * loop_main_new: a loop run by the calling thread itself, not a new thread.
 * The calling thread owns it: loop_current() returns it on that thread from
 * now until loop_main_free. A thread owns at most one main loop and must not
 * be a loop thread. Returns NULL when libevent cannot create a base.
 */
struct loop *loop_main_new(void);
/*
 * loop_main_run: dispatch events on the calling (owning) thread until
 * loop_main_break. Returns 0 after a break, -1 when the backend failed.
 * May be called again after it returned.
 */
int loop_main_run(struct loop *l);
/*
 * loop_main_break: make loop_main_run return after the calls posted before
 * the break have run. Thread-safe; a break requested while the loop is not
 * running makes the next loop_main_run return at once.
 */
void loop_main_break(struct loop *l);
/*
 * loop_main_free: run any calls still queued (on the owning thread), then
 * free l and its base. Events of other owners still on the base must have
 * been freed; posting to l after this is a use after free.
 */
void loop_main_free(struct loop *l);

/*
 * loop_thread_spawn: start a thread the way every event-core thread starts:
 * with the daemon's asynchronous signals (HUP, INT, TERM, CHLD, USR1...)
 * blocked, so they reach the main loop, and named for ps/top (name is cut
 * to 15 bytes). Returns 0, or an errno value.
 */
int loop_thread_spawn(pthread_t *tid, void *(*start)(void *), void *arg, const char *name);

#endif

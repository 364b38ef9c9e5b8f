/*
 * tpool.h - a fixed pool of worker threads for blocking work.
 *
 * Loop threads must never block, so fsync, unlink, rename and file reads
 * are handed to the pool: work(arg) runs on a worker thread, then done(arg)
 * runs back on the loop that submitted the job, where the result can be
 * used without locks. Jobs start in submission order (FIFO); with more than
 * one worker they may finish in any order.
 *
 * Threads: tpool_submit and tpool_pending may be called from any thread;
 * tpool_start / tpool_stop from one controlling thread that is not a worker.
 *
 * Ownership: the pool owns its threads and job nodes; arg belongs to the
 * caller and is handed to work, then to done (done usually frees it).
 *
 * Errors: tpool_start returns NULL and fills err. Submission never fails
 * and never blocks (the queue is unbounded); allocation failure aborts.
 */
#ifndef IMPETUS_EVENT_TPOOL_H
#define IMPETUS_EVENT_TPOOL_H

#include <stddef.h>

struct loop;
struct tpool;

/* tpool_fn: a job's work or done function. */
typedef void (*tpool_fn)(void *arg);

/*
 * tpool_start: start nthreads workers (1 .. 1024). Returns the pool, or NULL
 * with a reason in err.
 */
struct tpool *tpool_start(int nthreads, char *err, size_t errlen);
/*
 * tpool_submit: queue a job. work(arg) runs on a worker; then done(arg), if
 * done is not NULL, runs on origin's thread via loop_post, or on the worker
 * right after work when origin is NULL. origin must still be running when
 * the work finishes: stop the pool before the loops it reports to.
 * Submitting to a pool whose tpool_stop has returned is a bug; jobs may
 * submit further jobs while tpool_stop is draining.
 */
void tpool_submit(struct tpool *p, tpool_fn work, tpool_fn done, void *arg,
    struct loop *origin);
/*
 * tpool_pending: jobs queued or whose work is running (a snapshot). A done
 * callback posted to its origin loop is no longer counted.
 */
size_t tpool_pending(struct tpool *p);
/*
 * tpool_stop: run every queued job (and the jobs they submit), join the
 * workers and free the pool. Done callbacks for an origin loop have been
 * posted when it returns, not necessarily run.
 */
void tpool_stop(struct tpool *p);

#endif

/*
 * tpool.c - a fixed pool of worker threads for blocking work.
 *
 * Public functions:
 *   tpool_start    start the workers
 *   tpool_submit   queue a job: work on a worker, done on the origin loop
 *   tpool_pending  jobs queued or running
 *   tpool_stop     drain the queue, join the workers, free the pool
 *
 * One mutex guards a singly linked FIFO of job nodes and a freelist of
 * spent nodes, so the hot path allocates nothing once the pool has warmed
 * up: a worker gives its finished node back in the same critical section
 * in which it takes the next job. Idle workers wait on one condition
 * variable; tpool_submit signals it only when a worker is idle. Done
 * callbacks travel to their loop with loop_post, which batches wakeups.
 *
 * Ownership: the pool owns its threads and job nodes, never the job args.
 * Errors: tpool_start fills err; allocation failures abort (xalloc);
 * submitting to a stopped pool is an assertion failure.
 */
#include "event/tpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event/loop.h"
#include "lib/diag.h"
#include "lib/xalloc.h"

#define TPOOL_MAX         1024  /* workers in one pool */
#define TPOOL_SPARE_MAX   1024  /* spent job nodes kept for reuse */

struct tpool_job {
	tpool_fn work;                  /* runs on a worker */
	tpool_fn done;                  /* runs on origin (or the worker), may be NULL */
	void *arg;                      /* passed to work and done, owned by the caller */
	struct loop *origin;            /* where done runs, NULL: on the worker */
	struct tpool_job *next;         /* queue or freelist link */
};

struct tpool {
	pthread_mutex_t lock;           /* guards every field up to nlive */
	pthread_cond_t cond;            /* a job was queued, or stop was requested */
	struct tpool_job *head;         /* next job to start */
	struct tpool_job *tail;         /* last job queued */
	struct tpool_job *spare;        /* spent nodes for reuse */
	size_t nspare;                  /* nodes on spare */
	int nidle;                      /* workers waiting on cond */
	int stopping;                   /* tpool_stop called: exit once the queue is empty */
	int nlive;                      /* workers that have not exited */
	atomic_size_t pending;          /* jobs queued or whose work is running */
	int nthreads;                   /* workers started, entries in threads[] */
	pthread_t *threads;             /* owned */
};

static void *tpool_worker(void *arg);
static void tpool_halt(struct tpool *p);
static void tpool_free(struct tpool *p);

static _Thread_local struct tpool *tpool_tls;  /* pool of this worker thread */

static void *
tpool_worker(void *arg)
{
	struct tpool *p = arg;
	struct tpool_job *job, *spent = NULL, *discard;

	tpool_tls = p;
	for (;;) {
		discard = NULL;
		pthread_mutex_lock(&p->lock);
		if (spent != NULL) {
			if (p->nspare < TPOOL_SPARE_MAX) {
				spent->next = p->spare;
				p->spare = spent;
				p->nspare++;
			} else
				discard = spent;
			spent = NULL;
		}
		while (p->head == NULL && !p->stopping) {
			p->nidle++;
			pthread_cond_wait(&p->cond, &p->lock);
			p->nidle--;
		}
		job = p->head;
		if (job == NULL) {
			/* Stopping and nothing left: a job queued after this
			 * point would never run, tpool_submit asserts on it. */
			p->nlive--;
			pthread_mutex_unlock(&p->lock);
			free(discard);
			break;
		}
		p->head = job->next;
		if (p->head == NULL)
			p->tail = NULL;
		pthread_mutex_unlock(&p->lock);
		free(discard);

		job->work(job->arg);
		if (job->done != NULL) {
			if (job->origin != NULL)
				loop_post(job->origin, job->done, job->arg);
			else
				job->done(job->arg);
		}
		atomic_fetch_sub(&p->pending, 1);
		spent = job;
	}
	tpool_tls = NULL;
	return NULL;
}

/* tpool_halt: ask the workers to exit once the queue is empty; join them. */
static void
tpool_halt(struct tpool *p)
{
	int i;

	pthread_mutex_lock(&p->lock);
	p->stopping = 1;
	pthread_mutex_unlock(&p->lock);
	pthread_cond_broadcast(&p->cond);
	for (i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
}

static void
tpool_free(struct tpool *p)
{
	struct tpool_job *job;

	IMP_ASSERT(p->head == NULL);
	while ((job = p->spare) != NULL) {
		p->spare = job->next;
		free(job);
	}
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p->threads);
	free(p);
}

struct tpool *
tpool_start(int nthreads, char *err, size_t errlen)
{
	struct tpool *p;
	char name[32];           /* thread name; loop_thread_spawn cuts it to 15 bytes */
	int i, rc;

	if (nthreads < 1 || nthreads > TPOOL_MAX) {
		snprintf(err, errlen, "thread pool size %d out of range 1..%d", nthreads, TPOOL_MAX);
		return NULL;
	}
	p = xcalloc(1, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	atomic_init(&p->pending, 0);
	p->threads = xcalloc((size_t)nthreads, sizeof(*p->threads));
	for (i = 0; i < nthreads; i++) {
		pthread_mutex_lock(&p->lock);
		p->nlive++;
		pthread_mutex_unlock(&p->lock);
		snprintf(name, sizeof(name), "imp-pool-%d", i);
		rc = loop_thread_spawn(&p->threads[i], tpool_worker, p, name);
		if (rc != 0) {
			pthread_mutex_lock(&p->lock);
			p->nlive--;
			pthread_mutex_unlock(&p->lock);
			snprintf(err, errlen, "cannot start pool thread %d: %s", i, strerror(rc));
			tpool_halt(p);
			tpool_free(p);
			return NULL;
		}
		p->nthreads = i + 1;
	}
	return p;
}

void
tpool_submit(struct tpool *p, tpool_fn work, tpool_fn done, void *arg, struct loop *origin)
{
	struct tpool_job *job;
	int wake;

	IMP_ASSERT(work != NULL);
	atomic_fetch_add(&p->pending, 1);
	pthread_mutex_lock(&p->lock);
	/* No worker left to run it: submitted after tpool_stop. */
	IMP_ASSERT(p->nlive > 0);
	job = p->spare;
	if (job != NULL) {
		p->spare = job->next;
		p->nspare--;
	} else
		job = xmalloc(sizeof(*job));
	job->work = work;
	job->done = done;
	job->arg = arg;
	job->origin = origin;
	job->next = NULL;
	if (p->tail != NULL)
		p->tail->next = job;
	else
		p->head = job;
	p->tail = job;
	wake = p->nidle > 0;
	pthread_mutex_unlock(&p->lock);
	if (wake)
		pthread_cond_signal(&p->cond);
}

size_t
tpool_pending(struct tpool *p)
{
	return atomic_load(&p->pending);
}

void
tpool_stop(struct tpool *p)
{
	if (p == NULL)
		return;
	/* A worker cannot join itself. */
	IMP_ASSERT(tpool_tls != p);
	tpool_halt(p);
	tpool_free(p);
}

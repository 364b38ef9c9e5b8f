/*
 * queue_internal.h - functions shared by the files of src/queue only.
 */
#ifndef IMPETUS_QUEUE_QUEUE_INTERNAL_H
#define IMPETUS_QUEUE_QUEUE_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>

#include "queue/domain.h"
#include "queue/queue.h"

struct queue_counters {                 /* see struct queue_stats */
	atomic_uint_fast64_t received, restored, delivered, transient, failed, bounces;
	atomic_uint_fast64_t active, delayed, domains, conns, conn_attempts, conn_failures;
	atomic_uint_fast64_t dns_queries, dns_failures;
	atomic_uint_fast64_t conn_failures_by_cause[QUEUE_CONN_CAUSES]; /* by CONN_ERROR bit */
};
struct queue_counters *queue_counters(void);
#define QC_ADD(f, n) atomic_fetch_add_explicit(&queue_counters()->f, (uint64_t)(n), memory_order_relaxed)
#define QC_SUB(f, n) atomic_fetch_sub_explicit(&queue_counters()->f, (uint64_t)(n), memory_order_relaxed)

/* queue.c */
struct qloop *queue_loop_of(const char *domain);
struct qloop *queue_loop_current(void);
int queue_loop_count(void);             /* 0 before queue_start / after queue_free */
struct qloop *queue_loop_at(int i);
void qmsg_free(struct qmsg *m);

/* domain.c */
/* domain_get: the record of name on ql, created on demand. */
struct domain *domain_get(struct qloop *ql, const char *name);
/* domain_enqueue: a routed qmsg (QM_NONE) into d: active when due, else delayed. */
void domain_enqueue(struct domain *d, struct qmsg *m);
/* domain_delay: m (QM_NONE) into the delayed heap. */
void domain_delay(struct domain *d, struct qmsg *m);
void domain_shutdown(struct domain *d);
void domain_free(struct domain *d);
void domain_rebind(struct domain *d, int from, int to);
/* domain_unlink: take m out of whatever queue holds it (it becomes QM_NONE). */
void domain_unlink(struct domain *d, struct qmsg *m);

#endif

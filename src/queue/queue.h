/*
 * queue.h - the scheduler: domain records, binding queues, the maintainer.
 *
 * Reception hands every committed batch to queue_submit; the start-up scan
 * hands every batch read back to queue_restore. Each recipient-message
 * goes to its routing domain's record, which lives on one event loop
 * (chosen by a hash of the domain) and holds a delayed queue ordered by next
 * attempt and one active queue per binding slot. A maintainer per domain
 * moves due mail to the active queues and asks the delivery layer
 * (delivery/outbound.h) for connections under the configured limits.
 *
 *   queue_start / queue_stop / queue_free   lifecycle (main thread)
 *   queue_assign_binding                    the binding of one recipient (any loop thread)
 *   queue_submit                            a freshly committed batch (its loop thread)
 *   queue_restore                           a batch read back from the spool
 *   queue_rebind                            move queued mail to another binding
 *   queue_stats                             counters for logs and the console
 *
 * Threads: queue_start/stop/free on the main thread with the loops
 * running (stop) or stopped (free); the rest on any event-loop thread.
 * Ownership: queue_submit takes the batch; queue_restore copies the info.
 */
#ifndef IMPETUS_QUEUE_QUEUE_H
#define IMPETUS_QUEUE_QUEUE_H

#include <stddef.h>
#include <stdint.h>

struct conf;
struct loop;
struct loop_group;
struct spool;
struct spool_batch;
struct spool_batch_info;
struct tpool;
struct dns_config;

/* queue_start: per-loop schedulers on every loop of g (each with its own
 * resolver from dcfg). Returns 0, or -1 with a reason. */
int queue_start(struct loop_group *g, struct spool *sp, struct tpool *io,
                const struct dns_config *dcfg, char *err, size_t errlen);
/* queue_stop: close every outbound session and timer (mail stays in the
 * spool); waits until every loop has done so. */
void queue_stop(void);
/* queue_free: free what is left; the loops and the pool have stopped. */
void queue_free(void);

/* queue_reload: a new configuration generation is installed: every domain's
 * maintainer runs again soon (limits, suspensions, Gateway and Routes). */
void queue_reload(void);

/* Binding assignment (queue_binding.c). */
enum queue_default_binding {
	QUEUE_DEFAULT_NORMAL = 0,
	QUEUE_DEFAULT_SUSPENDED = 1,
	QUEUE_DEFAULT_NONE = 2,
};
struct queue_binding_request {
	const char *mailfrom;               /* reverse path */
	const char *rcpt;                   /* recipient */
	const char *msg_id;                 /* the recipient-message id */
	const char *batch_id;               /* its batch */
	const char *header_binding;         /* X-Binding value (trusted peer), or NULL */
	const char *header_group;           /* X-Binding-Group value (trusted peer), or NULL */
};
/*
 * queue_assign_binding: the binding slot for one recipient: the
 * binding_group_choose_binding hook, else the X-Binding header, else a
 * member of the X-Binding-Group group, else "default". Returns the slot, or
 * -1 when the message would be bound to "default" and Default_Binding is
 * none (the injector gets a 451). *is_default says the default was used.
 */
int queue_assign_binding(const struct conf *c, const struct queue_binding_request *rq,
                         int *is_default);

/* queue_submit: route every recipient of the committed batch b and queue
 * it; takes b (and its in-memory body). On a loop thread. */
void queue_submit(struct spool_batch *b);
/* queue_restore: queue the recipients of a batch read back from the spool
 * (with their retry state); the body stays on disk until an attempt. */
void queue_restore(const struct spool_batch_info *info);

/*
 * queue_rebind: move the queued mail of binding `from` (NULL = every
 * binding) for `domain` (NULL = every domain) to binding `to`. The change is
 * written to the spool. Returns 0, or -1 when a name is unknown.
 */
int queue_rebind(const char *from, const char *domain, const char *to, char *err, size_t errlen);

/* Counters since start (all loops; approximate while loops run). */
#define QUEUE_CONN_CAUSES 16                /* CONN_ERROR_* bits 0..15 */
struct queue_stats {
	uint64_t received;                  /* recipient-messages queued by reception */
	uint64_t restored;                  /* recipient-messages read back at start */
	uint64_t delivered;
	uint64_t transient;                 /* transient failures */
	uint64_t failed;                    /* permanent failures */
	uint64_t bounces;                   /* bounce messages generated */
	uint64_t active;                    /* in active queues or in flight now */
	uint64_t delayed;                   /* in delayed queues now */
	uint64_t domains;                   /* domain records */
	uint64_t conns;                     /* outbound sessions open */
	uint64_t conn_attempts;
	uint64_t conn_failures;
	uint64_t dns_queries;
	uint64_t dns_failures;
	uint64_t conn_failures_by_cause[QUEUE_CONN_CAUSES]; /* [i]: CONN_ERROR bit 1 << i */
};
void queue_stats(struct queue_stats *out);

/* For tests: the resolver each loop gets (NULL = c-ares from the
 * dns_config), and the clocks (monotonic ms, wall µs; NULL = the real
 * ones). Set before queue_start / while no loop runs. */
struct event_base;
struct dns_resolver;
typedef struct dns_resolver *(*queue_resolver_fn)(struct event_base *base, void *arg);
void queue_set_resolver_factory(queue_resolver_fn fn, void *arg);
void queue_set_clock(int64_t (*now_ms)(void), int64_t (*wall_us)(void));

#endif

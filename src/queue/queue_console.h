/*
 * queue_console.h - what the console and the metrics see of the queues.
 *
 *   queue_collect   a snapshot of every (domain, binding) row, gathered on
 *                   each loop and handed to fn on the origin loop
 *   queue_op        a console action on the queues (flush, delay, fail,
 *                   message lookup / retry / fail, DNS refresh, details of
 *                   one domain), run on every loop, answered on origin
 *
 * Threads: call from any loop thread (normally the main loop); fn runs on
 * origin once every loop has answered. Rows and their strings are valid
 * during fn only. Domains are only ever touched on their own loop.
 */
#ifndef IMPETUS_QUEUE_QUEUE_CONSOLE_H
#define IMPETUS_QUEUE_QUEUE_CONSOLE_H

#include <stddef.h>
#include <stdint.h>

struct loop;

struct queue_row {
	const char *domain;                 /* routing domain */
	int slot;                           /* binding slot; -1: the domain's delayed queue and totals */
	const char *binding;                /* binding name ("" for slot -1) */
	size_t active;                      /* in the active queue (slot >= 0) */
	size_t inflight;                    /* taken by sessions (slot >= 0) */
	size_t delayed;                     /* slot -1: the delayed queue */
	unsigned conns;                     /* sessions open or opening (slot >= 0) */
	uint64_t delivered, transient, failed; /* slot -1: the domain's counters since start */
	const char *dns;                    /* slot -1: "none", "pending", "ready", "failed" */
	unsigned nhosts;                    /* slot -1: MX hosts known */
	size_t delayed_slot;                /* slot >= 0: its part of the domain's delayed queue */
};

typedef void (*queue_collect_fn)(const struct queue_row *rows, size_t n, void *arg);
void queue_collect(struct loop *origin, queue_collect_fn fn, void *arg);

enum queue_op_kind {
	QUEUE_OP_FLUSH,                     /* delayed mail of (domain, slot) due now; address
	                                     * failure memory of the domain forgotten */
	QUEUE_OP_DELAY,                     /* active mail of (domain, slot) delayed by secs */
	QUEUE_OP_FAIL,                      /* every queued message of domain fails with note */
	QUEUE_OP_MESSAGE_DETAILS,           /* the message whose id is id, described */
	QUEUE_OP_MESSAGE_RETRY,             /* that message due now */
	QUEUE_OP_MESSAGE_FAIL,              /* that message fails with note */
	QUEUE_OP_REFRESH,                   /* domain's DNS answer forgotten, looked up again */
	QUEUE_OP_DETAILS,                   /* domain described: DNS, hosts, queues, sessions */
};

struct queue_op_request {
	enum queue_op_kind kind;
	const char *domain;                 /* routing domain; NULL = every domain (DELAY, FLUSH) */
	int slot;                           /* binding slot; -1 = every binding */
	int64_t secs;                       /* DELAY: seconds until the next attempt */
	int quiet;                          /* FAIL, MESSAGE_FAIL: no bounce */
	const char *note;                   /* FAIL, MESSAGE_FAIL: the reply logged and bounced */
	const char *id;                     /* MESSAGE_*: the recipient-message id */
};

struct queue_op_result {
	uint64_t count;                     /* messages moved, failed or found */
	unsigned domains;                   /* domain records that matched */
	const char *text;                   /* DETAILS / MESSAGE_DETAILS / refusals: lines */
};

typedef void (*queue_op_fn)(const struct queue_op_result *r, void *arg);
/* queue_op: run rq (copied) on every loop; fn(result, arg) on origin. */
void queue_op(struct loop *origin, const struct queue_op_request *rq, queue_op_fn fn, void *arg);

#endif

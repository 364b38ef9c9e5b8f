/*
 * queue_console.h - what the console and the metrics see of the queues.
 *
 *   queue_collect   a snapshot of every (domain, binding) row, gathered on
 *                   each loop and handed to fn on the origin loop
 *
 * Threads: call from any loop thread (normally the main loop); fn runs on
 * origin once every loop has answered. Rows and their strings are valid
 * during fn only.
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
};

typedef void (*queue_collect_fn)(const struct queue_row *rows, size_t n, void *arg);
void queue_collect(struct loop *origin, queue_collect_fn fn, void *arg);

#endif

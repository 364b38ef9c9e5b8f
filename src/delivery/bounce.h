/*
 * bounce.h - RFC 3464 reports for mail that failed, sent through the queues.
 *
 *   bounce_send   build a report for some recipients of one body, store it
 *                 in the spool as a new message from <> to the original
 *                 sender, queue it, then call done(arg) on origin
 *
 * The report is built on the I/O pool (the original is read from the spool
 * when it is not in memory); done runs whether or not the report could be
 * stored (a failure is a paniclog line), so the originals can be finished.
 */
#ifndef IMPETUS_DELIVERY_BOUNCE_H
#define IMPETUS_DELIVERY_BOUNCE_H

#include <sys/socket.h>

struct loop;
struct qbody;

struct bounce_rcpt {
	const char *rcpt;                   /* the recipient that failed */
	const char *orcpt;                  /* its DSN ORCPT, or NULL */
	const char *reply;                  /* the reply or internal reason */
};

/* bounce_send: rcpts and their strings are copied; body is referenced. */
void bounce_send(struct qbody *body, const struct bounce_rcpt *rcpts, size_t n,
                 const struct sockaddr *remote, struct loop *origin,
                 void (*done)(void *arg), void *arg);

#endif

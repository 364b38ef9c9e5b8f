/*
 * outbound.h - outbound sessions for the scheduler.
 *
 *   outbound_open      start one session for (domain, binding), or say why not
 *   outbound_feed      give idle sessions of (domain, binding) work
 *   outbound_shutdown  close every session of a domain (mail stays queued)
 *
 * Each session belongs to its domain's loop and to one (domain, binding)
 * pair; it takes messages from that pair's active queue until the queue is
 * empty for Idle_Timeout, Max_Deliveries_Per_Connection is reached, or the
 * session fails. Every attempt ends in log_client_connection_failure (with
 * exactly one CONN_ERROR_* cause and the CONN_ACTION_* taken) or
 * log_client_connection_success.
 */
#ifndef IMPETUS_DELIVERY_OUTBOUND_H
#define IMPETUS_DELIVERY_OUTBOUND_H

#include <stdint.h>

struct conf;
struct domain;

/*
 * outbound_open: 0 when a connection is under way (its outcome comes
 * later); else the CONN_ERROR_* | CONN_ACTION_* mask already reported and
 * acted on. *wake_ms is set (monotonic ms) when the caller should try again
 * then (a throttle), else left alone.
 */
int outbound_open(struct domain *d, int slot, const struct conf *c, int64_t *wake_ms);
void outbound_feed(struct domain *d, int slot, const struct conf *c);
void outbound_shutdown(struct domain *d);
/* outbound_describe: one line per session of (d, slot): peer, state, transactions. */
struct strbuf;
void outbound_describe(struct domain *d, int slot, struct strbuf *out);
/* outbound_move_conns: move the session list of from into the empty to. */
struct dbind;
void outbound_move_conns(struct dbind *to, struct dbind *from);

/* outbound_pick: the address the next session of (d, slot) would use at
 * now_ms (monotonic), without side effects other than the round-robin
 * counter; NULL when none is usable, with the reasons counted. */
struct dhost;
struct daddr;
struct outbound_pick {
	struct dhost *host;                 /* the chosen host, or NULL */
	struct daddr *addr;                 /* the chosen address, or NULL */
	unsigned prohibited;                /* addresses in Prohibited_Hosts */
	unsigned skipped;                   /* addresses in Skip_Hosts */
	unsigned failed;                    /* inside Host_Failure_Retry */
	unsigned at_max;                    /* hosts at their limit or vetoed */
	unsigned total;                     /* addresses looked at */
};
void outbound_pick(struct domain *d, int slot, const struct conf *c, int64_t now_ms,
                   struct outbound_pick *p);

#endif

/*
 * domain.h - the scheduler's records, shared with the delivery layer.
 *
 * qbody    one spool batch: the envelope shared by its recipients and the
 *          body while some recipient is active (refcounted, any thread)
 * qmsg     one recipient-message in a queue (owned by its domain's loop)
 * domain   a routing domain: DNS state, hosts, the delayed heap, an active
 *          queue per binding slot, the maintainer timer (one loop)
 * qloop    the per-loop scheduler: its domains, resolver, clock
 *
 * Only the files of src/queue and delivery/outbound.c include this file: it is the
 * interface between the scheduler and the connections it asks for.
 */
#ifndef IMPETUS_QUEUE_DOMAIN_H
#define IMPETUS_QUEUE_DOMAIN_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <impetus/types.h>

#include "spool/spool.h"

struct conf;
struct dns_mx_result;
struct dns_query;
struct dns_resolver;
struct loop;
struct oconn;
struct qmsg;
struct timer;
struct tpool;

/* ------------------------------------------------------------ bodies */

struct qbody {
	atomic_int refs;                    /* qmsgs and jobs holding it */
	atomic_uint pending;                /* recipients queued and not yet done */
	char batch_id[SPOOL_ID_LEN];        /* the spool file */
	char *mail_from;                    /* reverse path, "" = null */
	char *envid;                        /* DSN ENVID or NULL */
	uint8_t ret;                        /* enum spool_ret */
	uint8_t flags;                      /* SPOOL_F_* */
	uint64_t conn_id;                   /* inbound connection, 0 = local */
	struct timeval received;            /* reception time */
	uint64_t size;                      /* body bytes */
	const char *protocol;               /* static: "esmtp", "local", "internal" */
	struct sockaddr_storage peer;       /* injecting peer, family 0 = local */
	/* Guarded by a lock of qbody_lock(): */
	char *data;                         /* the body while resident, else NULL */
	unsigned data_users;                /* qmsgs holding data */
	struct qload *loading;              /* a load in flight, or NULL */
};

/* qmsg_spool_done: record in the spool that m is finished (the last
 * recipient of its batch removes the file without reading it). */
void qmsg_spool_done(struct qmsg *m, struct loop *origin);
/* qbody_unref: drop a reference; the last frees it. */
void qbody_unref(struct qbody *b);
struct qbody *qbody_ref(struct qbody *b);

enum qmsg_where {
	QM_NONE = 0,                        /* being routed, or finished */
	QM_DELAYED,                         /* in dom->delayed */
	QM_ACTIVE,                          /* in an active queue */
	QM_INFLIGHT,                        /* taken by a connection */
};

struct qmsg {
	struct qbody *body;                 /* envelope and body, a reference held */
	struct domain *dom;                 /* its routing domain */
	char id[SPOOL_ID_LEN];              /* recipient-message id */
	uint32_t index;                     /* position in the batch */
	int16_t slot;                       /* binding slot */
	uint8_t notify;                     /* SPOOL_NOTIFY_* */
	uint8_t where;                      /* enum qmsg_where */
	uint8_t holds_data;                 /* counted in body->data_users */
	uint16_t retries;                   /* transient failures so far */
	int64_t next_us;                    /* next attempt, wall clock, µs */
	char *rcpt;                         /* owned */
	char *orcpt;                        /* owned, NULL when not given */
	union {
		size_t heap_index;              /* QM_DELAYED: position in the heap */
		TAILQ_ENTRY(qmsg) link;         /* QM_ACTIVE: active queue */
	} u;
};
TAILQ_HEAD(qmsg_list, qmsg);

/* ---------------------------------------------------------- domains */

struct daddr {
	struct sockaddr_storage sa;         /* with the port set */
	int64_t failed_until_ms;            /* not tried before this (monotonic ms) */
	unsigned conns;                     /* sessions open to it */
	unsigned failures;                  /* consecutive failures */
	uint32_t connect_ms;                /* the latest successful connect, ms */
	uint32_t delivery_ms;               /* the latest transaction, first command to final reply, ms */
	int64_t last_failure_s;             /* wall clock of the latest failure, 0 = none */
	char last_failure[96];              /* what it was */
};

struct dhost {
	char *name;                         /* MX name or IP text */
	unsigned pref;                      /* lower first */
	struct daddr *addrs;
	size_t naddrs;
	unsigned conns;                     /* sessions open to any of its addresses */
};

struct dbind {                          /* one binding slot of a domain */
	struct qmsg_list active;            /* due mail, in order */
	size_t nactive;
	size_t ninflight;                   /* taken by sessions, outcome pending */
	unsigned nconns;                    /* sessions open or opening */
	LIST_HEAD(, oconn) conns;           /* those sessions */
	int64_t throttle_wake_ms;           /* a throttle said wait until then, 0 = none */
};

enum domain_dns {
	DD_NONE = 0,                        /* never looked up */
	DD_PENDING,                         /* first lookup in flight */
	DD_READY,                           /* hosts usable (maybe refreshing) */
	DD_FAILED,                          /* the last lookup failed (see dns_status) */
};

struct domain {
	domain_record pub;                  /* .domain: must stay first */
	struct qloop *ql;                   /* the owning loop */
	struct domain *hnext;               /* hash chain */
	char *lookup;                       /* the name resolved (the domain or its Gateway) */
	int static_routes;                  /* hosts come from Routes / an IP Gateway */
	int port;                           /* Remote_SMTP_Port or the Gateway's port */
	uint64_t conf_gen;                  /* the configuration generation routes came from */
	/* DNS */
	uint8_t dns;                        /* enum domain_dns */
	int dns_status;                     /* enum dns_status of the last answer */
	char dns_reason[128];               /* its text */
	struct dns_query *query;            /* in flight, or NULL */
	int64_t dns_expires_ms;             /* monotonic: refresh after */
	unsigned dns_failures;              /* consecutive transient failures */
	struct dhost *hosts;                /* sorted by pref */
	size_t nhosts;
	unsigned rr;                        /* round-robin among equal choices */
	/* connection failures */
	unsigned mx_failures;               /* consecutive, on any MX */
	int64_t failing_since_ms;           /* first failure since the last success, 0 = none */
	/* queues */
	struct qmsg **delayed;              /* min-heap by next_us */
	size_t ndelayed, delayed_cap;
	struct dbind *binds;                /* indexed by binding slot */
	size_t nbinds;
	struct timer *maint;                /* the maintainer */
	int64_t maint_at_ms;                /* when it is due (monotonic), 0 = not armed */
	unsigned running;                   /* inside the maintainer (no re-entry) */
	/* counters */
	uint64_t delivered, transient, failed;
};

struct qloop {
	struct loop *loop;                  /* the event loop */
	int index;                          /* its index in the group */
	struct dns_resolver *dns;           /* this loop's resolver */
	struct domain **table;              /* hash of domains */
	size_t table_size, ndomains;
	int stopping;                       /* queue_stop ran here */
	unsigned jobs;                      /* pool jobs whose completion will come here */
};

/* ------------------------------------------------ scheduler services */

/* The process-wide scheduler state the delivery layer needs. */
struct spool *queue_spool(void);
struct tpool *queue_io(void);

/* Clock: monotonic ms (the loop's) and wall µs; tests may replace them. */
int64_t queue_now_ms(void);
int64_t queue_wall_us(void);

/* domain_kick: run the maintainer of d soon (coalesced). */
void domain_kick(struct domain *d);
/* domain_active_push: put m (QM_NONE) at the end (or front) of its binding's active queue. */
void domain_active_push(struct domain *d, struct qmsg *m, int front);
/* domain_active_take: the first message of slot's active queue, plus up to
 * max-1 more of the same batch right behind it; they become QM_INFLIGHT.
 * Returns how many were put in out. */
size_t domain_active_take(struct domain *d, int slot, struct qmsg **out, size_t max);
struct dbind *domain_bind(struct domain *d, int slot);
/* domain_dns_start: (re)resolve d unless a lookup is in flight or its hosts are static. */
void domain_dns_start(struct domain *d);
/* domain_purge: every message of d on every binding fails with note. */
void domain_purge(struct domain *d, const char *note);
/* domain_delay_active: every active message of d goes back to the delayed
 * queue as a transient failure with note (MX_Failures_To_Delay). */
void domain_delay_active(struct domain *d, const char *note);
/* domain_requeue1: one active message of slot fails transiently with note. */
void domain_requeue1(struct domain *d, int slot, const char *note);

/* Outcomes of an attempt (queue_outcome.c). m is QM_INFLIGHT or QM_ACTIVE.
 * remote: the peer tried (NULL none); stage: connection stage code. */
void qmsg_delivered(struct qmsg *m, const struct sockaddr *remote, const char *reply);
void qmsg_transient(struct qmsg *m, const struct sockaddr *remote, int stage, const char *reply);
void qmsg_failed(struct qmsg *m, const struct sockaddr *remote, int stage, const char *reply);
/* qmsg_failed_group: several recipients of one body failed in one attempt:
 * one bounce lists them all. */
void qmsg_failed_group(struct qmsg **ms, const char *const *replies, size_t n,
                       const struct sockaddr *remote, int stage);

/* Bodies: qmsg_data_hold makes m count as a user of its resident body
 * (returns it) or NULL when not resident; qmsg_data_release undoes it. */
const char *qmsg_data_hold(struct qmsg *m);
void qmsg_data_release(struct qmsg *m);
/* qmsg_data_load: read m's body from the spool on the pool, then
 * cb(m, ok, arg) on m's loop with m holding the data when ok. */
typedef void (*qmsg_load_fn)(struct qmsg *m, int ok, const char *reason, void *arg);
void qmsg_data_load(struct qmsg *m, qmsg_load_fn cb, void *arg);

/* Message view for hooks: a stack ec_message borrowing m's fields. */
struct ec_message;
void qmsg_view(const struct qmsg *m, struct ec_message *view);

/* Retry policy (queue_policy.c), pure functions. */
/* queue_retry_delay_s: the wait after the n-th transient failure (n >= 1). */
int64_t queue_retry_delay_s(unsigned n, int64_t retry_interval_s, int64_t max_retry_interval_s);
/* queue_max_retries_parse: "auto"/"none" -> -1, a number -> it. */
int queue_max_retries_parse(const char *text);
/* queue_expired: 1 when the message must fail now: age >= expiration_s
 * (0 = never), or retries > max_retries (>= 0). *why: the reply to use. */
int queue_expired(int64_t age_s, int64_t expiration_s, unsigned retries, int max_retries,
                  const char **why);
/* queue_conn_goal: sessions wanted for nactive queued messages. */
unsigned queue_conn_goal(size_t nactive, int max_conns);

#define QUEUE_NOTE_EXPIRED "554 5.4.7 [internal] exceeded max time without delivery"
#define QUEUE_NOTE_RETRIES "554 5.4.7 [internal] exceeded max retries"

#endif

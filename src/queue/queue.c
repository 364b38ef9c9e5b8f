/*
 * queue.c - the scheduler's entry: loops, bodies, submission, read-back.
 *
 *   queue_start / queue_stop / queue_free    per-loop schedulers
 *   queue_submit / queue_restore             mail into the domain queues
 *   qbody_ref / qbody_unref                  shared envelopes
 *   qmsg_data_hold / _release / _load        body residency
 *   qmsg_view                                a borrowed ec_message for hooks
 *   queue_rebind, queue_stats
 *
 * A recipient-message belongs to the loop that owns its domain (a hash of
 * the routing domain picks it); reception builds the qmsgs on its own loop
 * and posts them there in one call per loop. Bodies are shared by every
 * recipient of a batch, across loops, so their resident data is guarded by
 * a small array of locks; a body stays in memory while some recipient of it
 * is active or in flight and is read back from the spool otherwise.
 */
#include "queue/queue.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conf/conf.h"
#include "conf/conf_core.h"
#include "delivery/outbound.h"
#include "dns/dns.h"
#include "event/loop.h"
#include "event/tpool.h"
#include "lib/diag.h"
#include "lib/strbuf.h"
#include "lib/xalloc.h"
#include "message/message.h"
#include "queue/domain.h"
#include "queue/queue_internal.h"

#define BODY_LOCKS 64

struct qload {                          /* a body being read back */
	struct qbody *body;                 /* reference held */
	struct strbuf data;                 /* filled on the pool */
	int err;                            /* errno of the read, 0 ok */
	char reason[160];
	struct qloop *ql;                   /* the loop waiting */
	struct qload_waiter *waiters;
};

struct qload_waiter {
	struct qmsg *m;
	qmsg_load_fn cb;
	void *arg;
	struct qload_waiter *next;
};

struct queue_state {
	struct loop_group *group;
	struct qloop **loops;
	int nloops;
	struct spool *spool;
	struct tpool *io;
	char *spool_base;
	pthread_mutex_t body_locks[BODY_LOCKS];
	pthread_mutex_t stop_mu;
	pthread_cond_t stop_cv;
	int stopped;                        /* loops that finished queue_stop */
	atomic_int closing;                 /* queue_stop began: new mail stays in the spool */
	struct queue_counters counters;
};

static struct queue_state Q = {
	.stop_mu = PTHREAD_MUTEX_INITIALIZER,
	.stop_cv = PTHREAD_COND_INITIALIZER,
};

static pthread_mutex_t *body_lock(const struct qbody *b);
static void submit_on_loop(void *arg);
static void stop_on_loop(void *arg);
static void load_work(void *arg);
static void load_done(void *arg);
static void rebind_on_loop(void *arg);
static struct qbody *qbody_new(void);

struct queue_counters *
queue_counters(void)
{
	return &Q.counters;
}

struct spool *
queue_spool(void)
{
	return Q.spool;
}

struct tpool *
queue_io(void)
{
	return Q.io;
}

static queue_resolver_fn resolver_factory;
static void *resolver_factory_arg;
static int64_t (*clock_now_ms)(void);
static int64_t (*clock_wall_us)(void);

void
queue_set_resolver_factory(queue_resolver_fn fn, void *arg)
{
	resolver_factory = fn;
	resolver_factory_arg = arg;
}

void
queue_set_clock(int64_t (*now_ms)(void), int64_t (*wall_us)(void))
{
	clock_now_ms = now_ms;
	clock_wall_us = wall_us;
}

int64_t
queue_now_ms(void)
{
	struct timespec ts;

	if (clock_now_ms != NULL)
		return clock_now_ms();

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
queue_wall_us(void)
{
	struct timeval tv;

	if (clock_wall_us != NULL)
		return clock_wall_us();
	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

struct qloop *
queue_loop_of(const char *domain)
{
	uint64_t h = 1469598103934665603ull;

	for (const char *p = domain; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	return Q.loops[h % (uint64_t)Q.nloops];
}

int
queue_loop_count(void)
{
	return Q.loops != NULL ? Q.nloops : 0;
}

struct qloop *
queue_loop_at(int i)
{
	return Q.loops != NULL && i >= 0 && i < Q.nloops ? Q.loops[i] : NULL;
}

struct qloop *
queue_loop_current(void)
{
	struct loop *l = loop_current();

	if (l == NULL || Q.loops == NULL)
		return NULL;
	for (int i = 0; i < Q.nloops; i++)
		if (Q.loops[i]->loop == l)
			return Q.loops[i];
	return NULL;
}

int
queue_start(struct loop_group *g, struct spool *sp, struct tpool *io,
            const struct dns_config *dcfg, char *err, size_t errlen)
{
	atomic_store(&Q.closing, 0);
	Q.group = g;
	Q.spool = sp;
	Q.io = io;
	Q.spool_base = xstrdup(spool_base(sp));
	Q.nloops = loop_group_count(g);
	Q.loops = xcalloc((size_t)Q.nloops, sizeof(*Q.loops));
	for (int i = 0; i < BODY_LOCKS; i++)
		pthread_mutex_init(&Q.body_locks[i], NULL);
	for (int i = 0; i < Q.nloops; i++) {
		struct qloop *ql = xcalloc(1, sizeof(*ql));
		ql->loop = loop_group_get(g, i);
		ql->index = i;
		ql->table_size = 1024;
		ql->table = xcalloc(ql->table_size, sizeof(*ql->table));
		if (resolver_factory != NULL)
			ql->dns = resolver_factory(loop_base(ql->loop), resolver_factory_arg);
		else
			ql->dns = dns_resolver_new(loop_base(ql->loop), dcfg, err, errlen);
		Q.loops[i] = ql;
		if (ql->dns == NULL)
			return -1;
	}
	return 0;
}

void
queue_stop(void)
{
	if (Q.loops == NULL)
		return;
	atomic_store(&Q.closing, 1);
	pthread_mutex_lock(&Q.stop_mu);
	Q.stopped = 0;
	pthread_mutex_unlock(&Q.stop_mu);
	for (int i = 0; i < Q.nloops; i++)
		loop_post(Q.loops[i]->loop, stop_on_loop, Q.loops[i]);
	pthread_mutex_lock(&Q.stop_mu);
	while (Q.stopped < Q.nloops)
		pthread_cond_wait(&Q.stop_cv, &Q.stop_mu);
	pthread_mutex_unlock(&Q.stop_mu);
}

static void
stop_on_loop(void *arg)
{
	struct qloop *ql = arg;

	ql->stopping = 1;
	for (size_t i = 0; i < ql->table_size; i++)
		for (struct domain *d = ql->table[i]; d != NULL; d = d->hnext)
			domain_shutdown(d);
	if (ql->dns != NULL) {
		dns_resolver_free(ql->dns);
		ql->dns = NULL;
	}
	pthread_mutex_lock(&Q.stop_mu);
	Q.stopped++;
	pthread_cond_broadcast(&Q.stop_cv);
	pthread_mutex_unlock(&Q.stop_mu);
}

void
queue_free(void)
{
	if (Q.loops == NULL)
		return;
	for (int i = 0; i < Q.nloops; i++) {
		struct qloop *ql = Q.loops[i];
		for (size_t j = 0; j < ql->table_size; j++) {
			struct domain *d = ql->table[j], *next;
			for (; d != NULL; d = next) {
				next = d->hnext;
				domain_free(d);
			}
		}
		if (ql->dns != NULL)
			dns_resolver_free(ql->dns);
		free(ql->table);
		free(ql);
	}
	free(Q.loops);
	Q.loops = NULL;
	free(Q.spool_base);
	Q.spool_base = NULL;
}

/* ------------------------------------------------------------ bodies */

static pthread_mutex_t *
body_lock(const struct qbody *b)
{
	uintptr_t p = (uintptr_t)b;

	return &Q.body_locks[(p >> 6) % BODY_LOCKS];
}

static struct qbody *
qbody_new(void)
{
	struct qbody *b = xcalloc(1, sizeof(*b));

	atomic_init(&b->refs, 1);
	return b;
}

struct qbody *
qbody_ref(struct qbody *b)
{
	atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
	return b;
}

void
qbody_unref(struct qbody *b)
{
	if (b == NULL || atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
		return;
	free(b->data);
	free(b->mail_from);
	free(b->envid);
	free(b);
}

const char *
qmsg_data_hold(struct qmsg *m)
{
	struct qbody *b = m->body;
	pthread_mutex_t *mu = body_lock(b);
	const char *data;

	if (m->holds_data)
		return b->data;
	pthread_mutex_lock(mu);
	if ((data = b->data) != NULL || b->size == 0) {
		b->data_users++;
		m->holds_data = 1;
		if (data == NULL)
			data = b->data = xstrdup("");
	}
	pthread_mutex_unlock(mu);
	return data;
}

void
qmsg_data_release(struct qmsg *m)
{
	struct qbody *b = m->body;
	pthread_mutex_t *mu = body_lock(b);
	char *drop = NULL;

	if (!m->holds_data)
		return;
	m->holds_data = 0;
	pthread_mutex_lock(mu);
	if (--b->data_users == 0) {
		drop = b->data;
		b->data = NULL;
	}
	pthread_mutex_unlock(mu);
	free(drop);
}

void
qmsg_data_load(struct qmsg *m, qmsg_load_fn cb, void *arg)
{
	struct qload *ld = xcalloc(1, sizeof(*ld));
	struct qload_waiter *w = xcalloc(1, sizeof(*w));

	w->m = m;
	w->cb = cb;
	w->arg = arg;
	ld->body = qbody_ref(m->body);
	ld->ql = m->dom->ql;
	ld->waiters = w;
	memset(&ld->data, 0, sizeof(ld->data));
	ld->ql->jobs++;
	tpool_submit(Q.io, load_work, load_done, ld, ld->ql->loop);
}

static void
load_work(void *arg)
{
	struct qload *ld = arg;

	if (spool_body_read(Q.spool_base, ld->body->batch_id, &ld->data, ld->reason,
	                    sizeof(ld->reason)) < 0)
		ld->err = errno != 0 ? errno : EIO;
}

static void
load_done(void *arg)
{
	struct qload *ld = arg;
	struct qbody *b = ld->body;
	pthread_mutex_t *mu = body_lock(b);
	struct qload_waiter *w, *next;

	ld->ql->jobs--;
	if (ld->err == 0 && !ld->ql->stopping) {
		pthread_mutex_lock(mu);
		if (b->data == NULL) {
			b->data = strbuf_steal(&ld->data);
		}
		pthread_mutex_unlock(mu);
	}
	for (w = ld->waiters; w != NULL; w = next) {
		next = w->next;
		if (ld->ql->stopping) {
			w->cb(w->m, 0, "stopping", w->arg);
		} else if (ld->err == 0) {
			struct qmsg *m = w->m;
			pthread_mutex_lock(mu);
			if (b->data != NULL) {
				b->data_users++;
				m->holds_data = 1;
			}
			pthread_mutex_unlock(mu);
			w->cb(m, m->holds_data, m->holds_data ? NULL : "body lost", w->arg);
		} else {
			w->cb(w->m, 0, ld->reason, w->arg);
		}
		free(w);
	}
	strbuf_free(&ld->data);
	qbody_unref(b);
	free(ld);
}

void
qmsg_view(const struct qmsg *m, struct ec_message *v)
{
	const struct qbody *b = m->body;

	memset(v, 0, sizeof(*v));
	atomic_init(&v->refs, 1);
	memcpy(v->id, m->id, sizeof(m->id));
	memcpy(v->batch_id, b->batch_id, sizeof(b->batch_id));
	v->conn_id = b->conn_id;
	v->mailfrom = b->mail_from;
	v->rcptto = m->rcpt;
	v->binding_slot = m->slot;
	v->domain = m->dom != NULL ? &m->dom->pub : NULL;
	v->size = (size_t)b->size;
	v->num_retries = m->retries;
	v->reception = b->received;
	v->next_attempt.tv_sec = (time_t)(m->next_us / 1000000);
	v->next_attempt.tv_usec = (suseconds_t)(m->next_us % 1000000);
	v->protocol = b->protocol;
	memcpy(&v->recv_from, &b->peer, sizeof(b->peer));
}

/* ------------------------------------------------------- submission */

struct submit_job {                     /* qmsgs for one loop */
	struct qloop *ql;
	struct qmsg **msgs;
	size_t n, cap;
	int restored;                       /* read back at start */
};

/* The routing domain of an address: after the last '@', lower case. */
static char *
rcpt_domain(const char *rcpt)
{
	const char *at = strrchr(rcpt, '@');
	char *d = xstrdup(at != NULL ? at + 1 : rcpt);   /* a bare domain stays whole */

	for (char *p = d; *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p + 32);
	return d;
}

/* job_add: queue m for the loop owning domain; takes domain (malloc'd). */
static void
job_add(struct submit_job **jobs, struct qmsg *m, char *domain, int restored)
{
	struct qloop *ql = queue_loop_of(domain);
	struct submit_job *j = jobs[ql->index];

	if (j == NULL) {
		j = jobs[ql->index] = xcalloc(1, sizeof(*j));
		j->ql = ql;
		j->restored = restored;
	}
	if (j->n == j->cap) {
		j->cap = j->cap ? j->cap * 2 : 8;
		j->msgs = xrealloc(j->msgs, j->cap * sizeof(*j->msgs));
	}
	j->msgs[j->n++] = m;
	/* Until the owning loop routes it, dom carries the domain name. */
	m->dom = (struct domain *)(void *)domain;
}

static void
jobs_post(struct submit_job **jobs)
{
	for (int i = 0; i < Q.nloops; i++)
		if (jobs[i] != NULL)
			loop_post(jobs[i]->ql->loop, submit_on_loop, jobs[i]);
}

static void
submit_on_loop(void *arg)
{
	struct submit_job *j = arg;
	struct queue_counters *qc = &Q.counters;

	for (size_t i = 0; i < j->n; i++) {
		struct qmsg *m = j->msgs[i];
		char *name = (char *)(void *)m->dom;
		m->dom = NULL;
		if (j->ql->stopping) {
			qmsg_data_release(m);
			qmsg_free(m);
		} else {
			domain_enqueue(domain_get(j->ql, name), m);
		}
		free(name);
	}
	atomic_fetch_add_explicit(j->restored ? &qc->restored : &qc->received, j->n,
	                          memory_order_relaxed);
	free(j->msgs);
	free(j);
}

void
queue_submit(struct spool_batch *b)
{
	struct submit_job *jobs[Q.nloops > 0 ? Q.nloops : 1];
	struct qbody *body;
	struct conf *c;
	size_t n = spool_batch_rcpt_count(b);

	if (Q.loops == NULL || atomic_load(&Q.closing)) {
		spool_batch_free(b);    /* it is on disk: the next start delivers it */
		return;
	}
	body = qbody_new();
	c = conf_current();
	int64_t now = queue_wall_us();

	memset(jobs, 0, sizeof(jobs));
	{
		const char *mf, *envid;
		int ret;
		unsigned flags;
		size_t len;

		spool_batch_envelope(b, &mf, &envid, &ret, &flags, &body->conn_id, &body->peer,
		                     &body->received);
		snprintf(body->batch_id, sizeof(body->batch_id), "%s", spool_batch_id(b));
		body->mail_from = xstrdup(mf != NULL ? mf : "");
		body->envid = envid != NULL ? xstrdup(envid) : NULL;
		body->ret = (uint8_t)ret;
		body->flags = (uint8_t)flags;
		body->data = spool_batch_take_body(b, &len);
		body->size = len;
	}
	body->protocol = body->conn_id != 0 ? "esmtp" : "local";
	body->data_users = (unsigned)n;
	atomic_init(&body->pending, (unsigned)n);
	for (size_t i = 0; i < n; i++) {
		struct qmsg *m = xcalloc(1, sizeof(*m));
		const char *binding;
		char *domain;

		m->body = qbody_ref(body);
		snprintf(m->id, sizeof(m->id), "%s", spool_batch_rcpt_id(b, i));
		m->index = (uint32_t)i;
		m->rcpt = xstrdup(spool_batch_rcpt(b, i));
		if (spool_batch_rcpt_orcpt(b, i) != NULL)
			m->orcpt = xstrdup(spool_batch_rcpt_orcpt(b, i));
		m->notify = (uint8_t)spool_batch_rcpt_notify(b, i);
		binding = spool_batch_rcpt_binding(b, i);
		m->slot = (int16_t)(binding != NULL ? conf_binding_slot(c, binding) : 0);
		if (m->slot < 0)
			m->slot = 0;
		m->next_us = now;
		m->holds_data = 1;
		domain = rcpt_domain(m->rcpt);
		job_add(jobs, m, domain, 0);
	}
	qbody_unref(body);
	conf_unref(c);
	spool_batch_free(b);
	jobs_post(jobs);
}

void
queue_restore(const struct spool_batch_info *info)
{
	struct submit_job *jobs[Q.nloops > 0 ? Q.nloops : 1];
	struct qbody *body;
	struct conf *c;

	if (info->nrcpt == 0 || Q.loops == NULL || atomic_load(&Q.closing))
		return;
	memset(jobs, 0, sizeof(jobs));
	c = conf_current();
	body = qbody_new();
	snprintf(body->batch_id, sizeof(body->batch_id), "%s", info->batch_id);
	body->mail_from = xstrdup(info->mail_from != NULL ? info->mail_from : "");
	body->envid = info->envid != NULL ? xstrdup(info->envid) : NULL;
	body->ret = (uint8_t)info->ret;
	body->flags = (uint8_t)info->flags;
	body->conn_id = info->conn_id;
	body->received = info->received;
	body->size = info->body_len;
	body->protocol = info->conn_id != 0 ? "esmtp" : "local";
	memcpy(&body->peer, &info->peer, sizeof(body->peer));
	atomic_init(&body->pending, (unsigned)info->nrcpt);
	for (size_t i = 0; i < info->nrcpt; i++) {
		const struct spool_rcpt_info *ri = &info->rcpts[i];
		struct qmsg *m = xcalloc(1, sizeof(*m));
		char *domain;

		m->body = qbody_ref(body);
		memcpy(m->id, ri->id, sizeof(m->id));
		m->index = ri->index;
		m->rcpt = xstrdup(ri->rcpt);
		m->orcpt = ri->orcpt != NULL ? xstrdup(ri->orcpt) : NULL;
		m->notify = (uint8_t)ri->notify;
		m->slot = 0;
		if (ri->state.binding != NULL && ri->state.binding[0] != '\0') {
			int s = conf_binding_slot(c, ri->state.binding);
			if (s >= 0)
				m->slot = (int16_t)s;
		}
		m->retries = (uint16_t)ri->state.retries;
		m->next_us = (int64_t)ri->state.next_attempt.tv_sec * 1000000 +
		             ri->state.next_attempt.tv_usec;
		domain = rcpt_domain(m->rcpt);
		job_add(jobs, m, domain, 1);
	}
	qbody_unref(body);
	conf_unref(c);
	jobs_post(jobs);
}

void
qmsg_free(struct qmsg *m)
{
	if (m == NULL)
		return;
	qmsg_data_release(m);
	qbody_unref(m->body);
	free(m->rcpt);
	free(m->orcpt);
	free(m);
}

/* ------------------------------------------------------------ rebind */

struct rebind_job {
	struct qloop *ql;
	int from;                           /* slot, -1 = every */
	int to;
	char *domain;                       /* NULL = every */
};

static void
rebind_on_loop(void *arg)
{
	struct rebind_job *j = arg;

	if (!j->ql->stopping) {
		for (size_t i = 0; i < j->ql->table_size; i++)
			for (struct domain *d = j->ql->table[i]; d != NULL; d = d->hnext)
				if (j->domain == NULL || strcmp(j->domain, d->pub.domain) == 0)
					domain_rebind(d, j->from, j->to);
	}
	free(j->domain);
	free(j);
}

int
queue_rebind(const char *from, const char *domain, const char *to, char *err, size_t errlen)
{
	struct conf *c = conf_current();
	int sfrom = -1, sto;

	if (from != NULL && (sfrom = conf_binding_slot(c, from)) < 0) {
		snprintf(err, errlen, "unknown binding \"%s\"", from);
		conf_unref(c);
		return -1;
	}
	if ((sto = conf_binding_slot(c, to)) < 0) {
		snprintf(err, errlen, "unknown binding \"%s\"", to);
		conf_unref(c);
		return -1;
	}
	conf_unref(c);
	for (int i = 0; i < Q.nloops; i++) {
		struct rebind_job *j = xcalloc(1, sizeof(*j));
		j->ql = Q.loops[i];
		j->from = sfrom;
		j->to = sto;
		j->domain = domain != NULL ? rcpt_domain(domain) : NULL;
		loop_post(j->ql->loop, rebind_on_loop, j);
	}
	return 0;
}

static void
reload_on_loop(void *arg)
{
	struct qloop *ql = arg;

	if (ql->stopping)
		return;
	for (size_t i = 0; i < ql->table_size; i++)
		for (struct domain *d = ql->table[i]; d != NULL; d = d->hnext)
			domain_kick(d);
}

void
queue_reload(void)
{
	for (int i = 0; i < Q.nloops; i++)
		loop_post(Q.loops[i]->loop, reload_on_loop, Q.loops[i]);
}

void
queue_stats(struct queue_stats *out)
{
	struct queue_counters *qc = &Q.counters;

	memset(out, 0, sizeof(*out));
#define LD(f) out->f = atomic_load_explicit(&qc->f, memory_order_relaxed)
	LD(received); LD(restored); LD(delivered); LD(transient); LD(failed); LD(bounces);
	LD(active); LD(delayed); LD(domains); LD(conns); LD(conn_attempts); LD(conn_failures);
	LD(dns_queries); LD(dns_failures);
#undef LD
	for (int i = 0; i < QUEUE_CONN_CAUSES; i++)
		out->conn_failures_by_cause[i] = atomic_load_explicit(&qc->conn_failures_by_cause[i],
		                                                      memory_order_relaxed);
}

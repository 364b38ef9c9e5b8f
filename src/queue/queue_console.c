/*
 * queue_console.c - snapshots of the queues for the console and metrics.
 *
 *   queue_collect   rows per (domain, binding) from every loop
 *   queue_op        console actions: flush, delay, fail, message details /
 *                   retry / fail, DNS refresh, one domain's details
 *
 * Each loop fills its part of the snapshot (or does its part of the action)
 * on its own thread (posted); the last one to finish posts the result to
 * the origin loop. Memory: the snapshot owns copies of the names and is
 * freed after fn returns; an op owns a copy of its request.
 * A loop whose queue is stopping (or gone) answers with nothing.
 */
#include "queue/queue_console.h"

#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <impetus/binding.h>

#include "delivery/outbound.h"
#include "event/loop.h"
#include "lib/diag.h"
#include "lib/strbuf.h"
#include "lib/xalloc.h"
#include "queue/domain.h"
#include "queue/queue_internal.h"

struct collect_part {
	struct queue_row *rows;
	size_t n, cap;
	char **names;                       /* owned strings */
	size_t nnames;
};

struct collect_job {
	struct loop *origin;
	queue_collect_fn fn;
	void *arg;
	int nparts;
	atomic_int left;
	struct collect_part *parts;
};

static void collect_on_loop(void *arg);
static void collect_done(void *arg);

struct collect_one {
	struct collect_job *job;
	int index;
};

static const char *
keep(struct collect_part *p, const char *s)
{
	p->names = xrealloc(p->names, (p->nnames + 1) * sizeof(*p->names));
	return p->names[p->nnames++] = xstrdup(s != NULL ? s : "");
}

static struct queue_row *
row_new(struct collect_part *p)
{
	if (p->n == p->cap) {
		p->cap = p->cap ? p->cap * 2 : 64;
		p->rows = xrealloc(p->rows, p->cap * sizeof(*p->rows));
	}
	memset(&p->rows[p->n], 0, sizeof(p->rows[p->n]));
	return &p->rows[p->n++];
}

static const char *
dns_name(int state)
{
	switch (state) {
	case DD_PENDING: return "pending";
	case DD_READY: return "ready";
	case DD_FAILED: return "failed";
	default: return "none";
	}
}

static void
collect_on_loop(void *arg)
{
	struct collect_one *one = arg;
	struct collect_job *job = one->job;
	struct collect_part *p = &job->parts[one->index];
	struct qloop *ql = queue_loop_at(one->index);

	if (ql != NULL && !ql->stopping) {
		for (size_t i = 0; i < ql->table_size; i++)
			for (struct domain *d = ql->table[i]; d != NULL; d = d->hnext) {
				struct queue_row *r = row_new(p);
				const char *name = keep(p, d->pub.domain);
				r->domain = name;
				r->slot = -1;
				r->binding = "";
				r->delayed = d->ndelayed;
				r->delivered = d->delivered;
				r->transient = d->transient;
				r->failed = d->failed;
				r->dns = dns_name(d->dns);
				r->nhosts = (unsigned)d->nhosts;
				size_t nslots = d->nbinds;
				for (size_t k = 0; k < d->ndelayed; k++)
					if ((size_t)d->delayed[k]->slot + 1 > nslots)
						nslots = (size_t)d->delayed[k]->slot + 1;
				size_t *dslot = xcalloc(nslots ? nslots : 1, sizeof(*dslot));
				for (size_t k = 0; k < d->ndelayed; k++)
					if (d->delayed[k]->slot >= 0)
						dslot[d->delayed[k]->slot]++;
				for (size_t s = 0; s < nslots; s++) {
					struct dbind *b = s < d->nbinds ? &d->binds[s] : NULL;
					if ((b == NULL || (b->nactive == 0 && b->nconns == 0 &&
					                   b->ninflight == 0)) && dslot[s] == 0)
						continue;
					r = row_new(p);
					r->domain = name;
					r->slot = (int)s;
					r->binding = keep(p, config_get_binding_name_from_id((int)s));
					r->active = b != NULL ? b->nactive : 0;
					r->inflight = b != NULL ? b->ninflight : 0;
					r->conns = b != NULL ? b->nconns : 0;
					r->delayed_slot = dslot[s];
					r->dns = "";
				}
				free(dslot);
			}
	}
	free(one);
	if (atomic_fetch_sub(&job->left, 1) == 1)
		loop_post(job->origin, collect_done, job);
}

static void
collect_done(void *arg)
{
	struct collect_job *job = arg;
	struct queue_row *all = NULL;
	size_t n = 0;

	for (int i = 0; i < job->nparts; i++)
		n += job->parts[i].n;
	if (n > 0)
		all = xmalloc(n * sizeof(*all));
	n = 0;
	for (int i = 0; i < job->nparts; i++) {
		if (job->parts[i].n > 0)
			memcpy(all + n, job->parts[i].rows, job->parts[i].n * sizeof(*all));
		n += job->parts[i].n;
	}
	job->fn(all, n, job->arg);
	free(all);
	for (int i = 0; i < job->nparts; i++) {
		for (size_t k = 0; k < job->parts[i].nnames; k++)
			free(job->parts[i].names[k]);
		free(job->parts[i].names);
		free(job->parts[i].rows);
	}
	free(job->parts);
	free(job);
}

void
queue_collect(struct loop *origin, queue_collect_fn fn, void *arg)
{
	struct collect_job *job = xcalloc(1, sizeof(*job));
	int n = queue_loop_count();

	job->origin = origin;
	job->fn = fn;
	job->arg = arg;
	job->nparts = n;
	job->parts = xcalloc(n > 0 ? (size_t)n : 1, sizeof(*job->parts));
	if (n == 0) {
		loop_post(origin, collect_done, job);
		return;
	}
	atomic_init(&job->left, n);
	for (int i = 0; i < n; i++) {
		struct collect_one *one = xcalloc(1, sizeof(*one));
		one->job = job;
		one->index = i;
		loop_post(queue_loop_at(i)->loop, collect_on_loop, one);
	}
}

/* ------------------------------------------------------ console actions */

struct op_part {
	uint64_t count;
	unsigned domains;
	struct strbuf text;
};

struct op_job {
	struct loop *origin;
	queue_op_fn fn;
	void *arg;
	struct queue_op_request rq;         /* strings below are owned copies */
	char *domain, *note, *id;
	int nparts;
	atomic_int left;
	struct op_part *parts;
};

struct op_one {
	struct op_job *job;
	int index;
};

static void op_on_loop(void *arg);
static void op_done(void *arg);
static size_t snapshot_delayed(struct domain *d, int slot, struct qmsg ***out);
static size_t snapshot_active(struct domain *d, int slot, struct qmsg ***out);
static void domain_describe(struct domain *d, struct strbuf *out);
static void message_describe(const struct qmsg *m, struct strbuf *out);
static void rcpt_state_written(int err, void *arg);

static void
rcpt_state_written(int err, void *arg)
{
	(void)arg;
	if (err != 0)
		diag_warn("console: cannot record a new next attempt in the spool: %s", strerror(err));
}

/* The delayed messages of d (of slot, or all when slot < 0), in a new array. */
static size_t
snapshot_delayed(struct domain *d, int slot, struct qmsg ***out)
{
	struct qmsg **v = xmalloc((d->ndelayed ? d->ndelayed : 1) * sizeof(*v));
	size_t n = 0;

	for (size_t i = 0; i < d->ndelayed; i++)
		if (slot < 0 || d->delayed[i]->slot == slot)
			v[n++] = d->delayed[i];
	*out = v;
	return n;
}

/* The active messages of d (of slot, or all when slot < 0), in a new array. */
static size_t
snapshot_active(struct domain *d, int slot, struct qmsg ***out)
{
	size_t total = 0, n = 0;
	struct qmsg **v, *m;

	for (size_t s = 0; s < d->nbinds; s++)
		total += d->binds[s].nactive;
	v = xmalloc((total ? total : 1) * sizeof(*v));
	for (size_t s = 0; s < d->nbinds; s++) {
		if (slot >= 0 && (size_t)slot != s)
			continue;
		TAILQ_FOREACH(m, &d->binds[s].active, u.link)
			if (n < total)
				v[n++] = m;
	}
	*out = v;
	return n;
}

static const char *
where_name(int where)
{
	switch (where) {
	case QM_DELAYED: return "delayed";
	case QM_ACTIVE: return "active";
	case QM_INFLIGHT: return "in flight";
	default: return "none";
	}
}

static void
sockaddr_text(const struct sockaddr_storage *sa, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (sa->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(in->sin_port));
	} else if (sa->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(in6->sin6_port));
	} else {
		snprintf(buf, len, "?");
	}
}

static void
domain_describe(struct domain *d, struct strbuf *out)
{
	int64_t now = queue_now_ms();
	size_t nslots = d->nbinds;

	strbuf_printf(out, "domain %s\n", d->pub.domain);
	if (d->static_routes)
		strbuf_printf(out, "  routes: static (Routes or Gateway)\n");
	else
		strbuf_printf(out, "  lookup: %s  dns: %s%s%s%s  expires in %llds  "
		              "consecutive dns failures: %u\n",
		              d->lookup, dns_name(d->dns), d->dns_reason[0] ? " (" : "",
		              d->dns_reason, d->dns_reason[0] ? ")" : "",
		              (long long)(d->dns_expires_ms > now ? (d->dns_expires_ms - now) / 1000 : 0),
		              d->dns_failures);
	strbuf_printf(out, "  mx failures: %u consecutive", d->mx_failures);
	if (d->failing_since_ms != 0)
		strbuf_printf(out, ", failing for %llds", (long long)((now - d->failing_since_ms) / 1000));
	strbuf_putc(out, '\n');
	for (size_t h = 0; h < d->nhosts; h++) {
		struct dhost *hs = &d->hosts[h];
		strbuf_printf(out, "  host %s pref %u  connections %u\n", hs->name, hs->pref, hs->conns);
		for (size_t a = 0; a < hs->naddrs; a++) {
			struct daddr *ad = &hs->addrs[a];
			char text[80];
			sockaddr_text(&ad->sa, text, sizeof(text));
			strbuf_printf(out, "    address %s  connections %u  consecutive failures %u", text,
			              ad->conns, ad->failures);
			if (ad->failed_until_ms > now)
				strbuf_printf(out, "  not tried for %llds",
				              (long long)((ad->failed_until_ms - now + 999) / 1000));
			strbuf_printf(out, "  connect %ums  delivery %ums", (unsigned)ad->connect_ms,
			              (unsigned)ad->delivery_ms);
			if (ad->last_failure_s != 0)
				strbuf_printf(out, "  last failure %llds ago: %s",
				              (long long)(queue_wall_us() / 1000000 - ad->last_failure_s),
				              ad->last_failure);
			strbuf_putc(out, '\n');
		}
	}
	for (size_t k = 0; k < d->ndelayed; k++)
		if ((size_t)d->delayed[k]->slot + 1 > nslots)
			nslots = (size_t)d->delayed[k]->slot + 1;
	strbuf_printf(out, "  delayed: %zu\n", d->ndelayed);
	for (size_t s = 0; s < nslots; s++) {
		struct dbind *b = s < d->nbinds ? &d->binds[s] : NULL;
		size_t delayed = 0;
		for (size_t k = 0; k < d->ndelayed; k++)
			delayed += d->delayed[k]->slot == (int)s;
		if ((b == NULL || (b->nactive == 0 && b->nconns == 0)) && delayed == 0)
			continue;
		const char *name = config_get_binding_name_from_id((int)s);
		strbuf_printf(out, "  binding %s (slot %zu): active %zu  delayed %zu  connections %u\n",
		              name != NULL ? name : "?", s, b != NULL ? b->nactive : 0, delayed,
		              b != NULL ? b->nconns : 0);
		if (b != NULL && b->nconns > 0)
			outbound_describe(d, (int)s, out);
	}
	strbuf_printf(out, "  delivered %llu  transient %llu  failed %llu\n",
	              (unsigned long long)d->delivered, (unsigned long long)d->transient,
	              (unsigned long long)d->failed);
}

static void
message_describe(const struct qmsg *m, struct strbuf *out)
{
	int64_t wall = queue_wall_us();
	const char *binding = config_get_binding_name_from_id(m->slot);
	char when[64] = "";
	time_t t = (time_t)(m->next_us / 1000000);
	struct tm tm;

	if (gmtime_r(&t, &tm) != NULL)
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	strbuf_printf(out, "message %s\n", m->id);
	strbuf_printf(out, "  batch: %s\n", m->body->batch_id);
	strbuf_printf(out, "  from: <%s>\n", m->body->mail_from);
	strbuf_printf(out, "  to: <%s>\n", m->rcpt);
	strbuf_printf(out, "  domain: %s\n", m->dom->pub.domain);
	strbuf_printf(out, "  binding: %s\n", binding != NULL ? binding : "?");
	strbuf_printf(out, "  queue: %s\n", where_name(m->where));
	strbuf_printf(out, "  retries: %u\n", m->retries);
	strbuf_printf(out, "  next attempt: %s (%s%llds)\n", when, m->next_us >= wall ? "in " : "",
	              (long long)((m->next_us >= wall ? m->next_us - wall : wall - m->next_us) /
	                          1000000));
	strbuf_printf(out, "  size: %llu\n", (unsigned long long)m->body->size);
	strbuf_printf(out, "  received: %lld\n", (long long)m->body->received.tv_sec);
}

static struct qmsg *
message_find(struct qloop *ql, const char *id)
{
	for (size_t i = 0; i < ql->table_size; i++)
		for (struct domain *d = ql->table[i]; d != NULL; d = d->hnext) {
			struct qmsg *m;
			for (size_t k = 0; k < d->ndelayed; k++)
				if (strcmp(d->delayed[k]->id, id) == 0)
					return d->delayed[k];
			for (size_t s = 0; s < d->nbinds; s++)
				TAILQ_FOREACH(m, &d->binds[s].active, u.link)
					if (strcmp(m->id, id) == 0)
						return m;
		}
	return NULL;
}

static void
op_message(struct op_job *job, struct qloop *ql, struct op_part *p)
{
	struct qmsg *m = message_find(ql, job->rq.id);
	struct domain *d;

	if (m == NULL)
		return;
	d = m->dom;
	p->count = 1;
	switch (job->rq.kind) {
	case QUEUE_OP_MESSAGE_DETAILS:
		message_describe(m, &p->text);
		break;
	case QUEUE_OP_MESSAGE_RETRY:
		if (m->where == QM_DELAYED) {
			domain_unlink(d, m);
			m->next_us = queue_wall_us();
			domain_active_push(d, m, 0);
			strbuf_printf(&p->text, "message %s: due now\n", m->id);
		} else {
			strbuf_printf(&p->text, "message %s: already active\n", m->id);
		}
		domain_kick(d);
		break;
	case QUEUE_OP_MESSAGE_FAIL:
		strbuf_printf(&p->text, "message %s: failed%s\n", m->id, job->rq.quiet ? " quietly" : "");
		if (job->rq.quiet)
			m->notify = SPOOL_NOTIFY_NEVER;     /* wants_bounce: no report */
		qmsg_failed(m, NULL, 0, job->rq.note);
		break;
	default:
		break;
	}
}

static void
op_domain(struct op_job *job, struct domain *d, struct op_part *p)
{
	struct qmsg **v = NULL;
	size_t n;
	int64_t wall = queue_wall_us();

	p->domains++;
	switch (job->rq.kind) {
	case QUEUE_OP_FLUSH:
		n = snapshot_delayed(d, job->rq.slot, &v);
		for (size_t i = 0; i < n; i++) {
			domain_unlink(d, v[i]);
			v[i]->next_us = wall;
			domain_active_push(d, v[i], 0);
		}
		for (size_t h = 0; h < d->nhosts; h++)
			for (size_t a = 0; a < d->hosts[h].naddrs; a++)
				d->hosts[h].addrs[a].failed_until_ms = 0;
		p->count += n;
		domain_kick(d);
		break;
	case QUEUE_OP_DELAY:
		n = snapshot_active(d, job->rq.slot, &v);
		for (size_t i = 0; i < n; i++) {
			struct qmsg *m = v[i];
			struct spool_rcpt_state st;
			domain_unlink(d, m);
			m->next_us = wall + job->rq.secs * 1000000;
			memset(&st, 0, sizeof(st));
			st.binding = config_get_binding_name_from_id(m->slot);
			st.retries = m->retries;
			st.next_attempt.tv_sec = (time_t)(m->next_us / 1000000);
			st.next_attempt.tv_usec = (suseconds_t)(m->next_us % 1000000);
			spool_rcpt_update(queue_spool(), m->body->batch_id, m->index, &st, d->ql->loop,
			                  rcpt_state_written, NULL);
			domain_delay(d, m);
		}
		p->count += n;
		break;
	case QUEUE_OP_FAIL: {
		struct qmsg **a;
		size_t na = snapshot_active(d, -1, &a);
		n = snapshot_delayed(d, -1, &v);
		for (size_t i = 0; i < na + n; i++) {
			struct qmsg *m = i < na ? a[i] : v[i - na];
			if (job->rq.quiet)
				m->notify = SPOOL_NOTIFY_NEVER;     /* wants_bounce: no report */
			qmsg_failed(m, NULL, 0, job->rq.note);
		}
		p->count += na + n;
		free(a);
		break;
	}
	case QUEUE_OP_REFRESH:
		d->dns_expires_ms = 0;
		d->dns_failures = 0;
		if (!d->static_routes && d->query == NULL)
			domain_dns_start(d);
		domain_kick(d);
		strbuf_printf(&p->text, "%s: %s\n", d->pub.domain,
		              d->static_routes ? "static routes, nothing to look up" :
		                                 "looking up again");
		break;
	case QUEUE_OP_DETAILS:
		domain_describe(d, &p->text);
		break;
	default:
		break;
	}
	free(v);
}

static void
op_on_loop(void *arg)
{
	struct op_one *one = arg;
	struct op_job *job = one->job;
	struct op_part *p = &job->parts[one->index];
	struct qloop *ql = queue_loop_at(one->index);

	if (ql != NULL && !ql->stopping) {
		switch (job->rq.kind) {
		case QUEUE_OP_MESSAGE_DETAILS:
		case QUEUE_OP_MESSAGE_RETRY:
		case QUEUE_OP_MESSAGE_FAIL:
			op_message(job, ql, p);
			break;
		default:
			for (size_t i = 0; i < ql->table_size; i++) {
				struct domain *d, *next;
				for (d = ql->table[i]; d != NULL; d = next) {
					next = d->hnext;
					if (job->domain == NULL || strcmp(job->domain, d->pub.domain) == 0)
						op_domain(job, d, p);
				}
			}
			break;
		}
	}
	free(one);
	if (atomic_fetch_sub(&job->left, 1) == 1)
		loop_post(job->origin, op_done, job);
}

static void
op_done(void *arg)
{
	struct op_job *job = arg;
	struct queue_op_result r = { 0, 0, NULL };
	struct strbuf text = STRBUF_INIT;

	for (int i = 0; i < job->nparts; i++) {
		r.count += job->parts[i].count;
		r.domains += job->parts[i].domains;
		strbuf_puts(&text, strbuf_cstr(&job->parts[i].text));
		strbuf_free(&job->parts[i].text);
	}
	r.text = strbuf_cstr(&text);
	job->fn(&r, job->arg);
	strbuf_free(&text);
	free(job->parts);
	free(job->domain);
	free(job->note);
	free(job->id);
	free(job);
}

void
queue_op(struct loop *origin, const struct queue_op_request *rq, queue_op_fn fn, void *arg)
{
	struct op_job *job = xcalloc(1, sizeof(*job));
	int n = queue_loop_count();

	job->origin = origin;
	job->fn = fn;
	job->arg = arg;
	job->rq = *rq;
	if (rq->domain != NULL) {
		job->domain = xstrdup(rq->domain);
		for (char *c = job->domain; *c != '\0'; c++)
			if (*c >= 'A' && *c <= 'Z')
				*c = (char)(*c + 32);
	}
	job->note = xstrdup(rq->note != NULL ? rq->note : "");
	job->id = xstrdup(rq->id != NULL ? rq->id : "");
	job->rq.domain = job->domain;
	job->rq.note = job->note;
	job->rq.id = job->id;
	job->nparts = n;
	job->parts = xcalloc(n > 0 ? (size_t)n : 1, sizeof(*job->parts));
	if (n == 0) {
		loop_post(origin, op_done, job);
		return;
	}
	atomic_init(&job->left, n);
	for (int i = 0; i < n; i++) {
		struct op_one *one = xcalloc(1, sizeof(*one));
		one->job = job;
		one->index = i;
		loop_post(queue_loop_at(i)->loop, op_on_loop, one);
	}
}

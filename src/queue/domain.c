/*
 * domain.c - domain records: queues, DNS state and the maintainer.
 *
 *   domain_get / domain_free / domain_shutdown   records of one loop
 *   domain_enqueue / domain_delay                 mail in
 *   domain_active_push / domain_active_take       the active queues
 *   domain_kick                                   run the maintainer soon
 *   domain_purge / domain_delay_active / domain_requeue1 / domain_rebind
 *   domain_dns_start                              (re)resolve the domain
 *
 * Everything here runs on the domain's loop. The maintainer moves due mail
 * from the delayed heap to the active queues, then, per binding with active
 * mail, gives idle sessions work and opens sessions toward a goal under the
 * limits; it is re-armed for the earliest delayed message, for a throttle's
 * wake-up, or a second later while active mail waits for hosts.
 */
#include "queue/domain.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <impetus/binding.h>
#include <impetus/conn_errors.h>

#include "conf/conf.h"
#include "conf/conf_core.h"
#include "delivery/outbound.h"
#include "dns/dns.h"
#include "event/timer.h"
#include "lib/diag.h"
#include "lib/xalloc.h"
#include "queue/queue_internal.h"

#define MAINT_MOVE_MAX 20000            /* delayed -> active moves per run */
#define MAINT_WAIT_MS 1000              /* re-run while active mail waits for hosts */
#define MAINT_SCAN_MS 15000             /* delayed_queue_scan_interval */
#define DOMAIN_RESIDENT_ACTIVE 256      /* max_resident_active_queue: bodies kept per active queue */

static void maintain(struct timer *t, void *arg);
static void heap_push(struct domain *d, struct qmsg *m);
static struct qmsg *heap_pop(struct domain *d);
static void heap_remove(struct domain *d, size_t i);
static void heap_up(struct domain *d, size_t i);
static void heap_down(struct domain *d, size_t i);
static void routes_init(struct domain *d, const struct conf *c);
static void dns_answer(struct dns_mx_result *res, void *arg);
static void arm(struct domain *d, int64_t at_ms);
static int slot_suspended(const struct conf *c, const struct domain *d, int slot);

static int
sa_equal(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return 0;
	if (a->ss_family == AF_INET)
		return memcmp(&((const struct sockaddr_in *)a)->sin_addr,
		              &((const struct sockaddr_in *)b)->sin_addr, 4) == 0 &&
		       ((const struct sockaddr_in *)a)->sin_port == ((const struct sockaddr_in *)b)->sin_port;
	if (a->ss_family == AF_INET6)
		return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
		              &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0 &&
		       ((const struct sockaddr_in6 *)a)->sin6_port == ((const struct sockaddr_in6 *)b)->sin6_port;
	return 0;
}

static void
rebind_written(int err, void *arg)
{
	(void)arg;
	if (err != 0)
		diag_warn("queue: cannot record a new binding in the spool: %s", strerror(err));
}

static uint64_t
domain_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

struct domain *
domain_get(struct qloop *ql, const char *name)
{
	size_t i = domain_hash(name) % ql->table_size;
	struct domain *d;
	struct conf *c;

	for (d = ql->table[i]; d != NULL; d = d->hnext)
		if (strcmp(d->pub.domain, name) == 0)
			return d;
	d = xcalloc(1, sizeof(*d));
	d->pub.domain = xstrdup(name);
	d->ql = ql;
	d->maint = timer_new(ql->loop, maintain, d);
	d->hnext = ql->table[i];
	ql->table[i] = d;
	ql->ndomains++;
	QC_ADD(domains, 1);
	c = conf_current();
	routes_init(d, c);
	conf_unref(c);
	return d;
}

struct dbind *
domain_bind(struct domain *d, int slot)
{
	if (slot < 0)
		slot = 0;
	if ((size_t)slot >= d->nbinds) {
		/* The list heads point into themselves: move them, never realloc. */
		size_t n = (size_t)slot + 1;
		struct dbind *nb = xcalloc(n, sizeof(*nb));
		for (size_t i = 0; i < n; i++) {
			if (i < d->nbinds)
				nb[i] = d->binds[i];
			TAILQ_INIT(&nb[i].active);
			LIST_INIT(&nb[i].conns);
			if (i < d->nbinds) {
				TAILQ_CONCAT(&nb[i].active, &d->binds[i].active, u.link);
				outbound_move_conns(&nb[i], &d->binds[i]);
			}
		}
		free(d->binds);
		d->binds = nb;
		d->nbinds = n;
	}
	return &d->binds[slot];
}

/* --------------------------------------------------------- routing */

static void
hosts_free(struct dhost *h, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(h[i].name);
		free(h[i].addrs);
	}
	free(h);
}

/* Static hosts from Routes, or the Gateway; else the name to resolve. */
static void
routes_init(struct domain *d, const struct conf *c)
{
	const struct conf_setting *gw = conf_resolve(c, &conf_opt_gateway, -1, d->pub.domain);
	const struct conf_setting *rt = conf_resolve(c, &conf_opt_routes, -1, d->pub.domain);
	int port = (int)conf_resolve(c, &conf_opt_remote_smtp_port, -1, d->pub.domain)->i;
	char err[160];

	d->conf_gen = c->generation;
	d->port = port;
	free(d->lookup);
	d->lookup = xstrdup(d->pub.domain);
	d->static_routes = 0;
	if (rt != NULL && rt->nlist > 0) {
		struct dhost *hosts = xcalloc(rt->nlist, sizeof(*hosts));
		size_t n = 0;
		for (size_t i = 0; i < rt->nlist; i++) {
			struct conf_route r;
			struct sockaddr_storage ss;
			if (conf_route_parse(rt->list[i], &r, err, sizeof(err)) < 0)
				continue;
			if (conf_hostport_parse(r.host, r.port > 0 ? r.port : port, &ss, err,
			                        sizeof(err)) < 0) {
				/* A name: resolved as the domain's MX (the first one given). */
				free(d->lookup);
				d->lookup = xstrdup(r.host);
				if (r.port > 0)
					d->port = r.port;
				hosts_free(hosts, n);
				return;
			}
			hosts[n].name = xstrdup(r.host);
			hosts[n].pref = (unsigned)r.pref;
			hosts[n].addrs = xcalloc(1, sizeof(struct daddr));
			memcpy(&hosts[n].addrs[0].sa, &ss, sizeof(ss));
			hosts[n].naddrs = 1;
			n++;
		}
		/* insertion sort by pref (stable) */
		for (size_t i = 1; i < n; i++)
			for (size_t j = i; j > 0 && hosts[j - 1].pref > hosts[j].pref; j--) {
				struct dhost t = hosts[j];
				hosts[j] = hosts[j - 1];
				hosts[j - 1] = t;
			}
		if (n > 0) {
			hosts_free(d->hosts, d->nhosts);
			d->hosts = hosts;
			d->nhosts = n;
			d->static_routes = 1;
			d->dns = DD_READY;
			return;
		}
		free(hosts);
	}
	if (gw != NULL && gw->s != NULL && gw->s[0] != '\0') {
		struct conf_route r;
		struct sockaddr_storage ss;
		if (conf_route_parse(gw->s, &r, err, sizeof(err)) == 0) {
			if (r.port > 0)
				d->port = r.port;
			if (conf_hostport_parse(r.host, d->port, &ss, err, sizeof(err)) == 0) {
				hosts_free(d->hosts, d->nhosts);
				d->hosts = xcalloc(1, sizeof(*d->hosts));
				d->hosts[0].name = xstrdup(r.host);
				d->hosts[0].addrs = xcalloc(1, sizeof(struct daddr));
				memcpy(&d->hosts[0].addrs[0].sa, &ss, sizeof(ss));
				d->hosts[0].naddrs = 1;
				d->nhosts = 1;
				d->static_routes = 1;
				d->dns = DD_READY;
				return;
			}
			free(d->lookup);
			d->lookup = xstrdup(r.host);
		}
	}
}

/* A new configuration generation: Gateway, Routes or the port may differ. */
static void
domain_reroute(struct domain *d, const struct conf *c)
{
	char *old_lookup = xstrdup(d->lookup);
	int old_static = d->static_routes, old_port = d->port;

	routes_init(d, c);
	if (!d->static_routes &&
	    (old_static || old_port != d->port || strcmp(old_lookup, d->lookup) != 0)) {
		/* resolve the (new) name again */
		if (d->query != NULL) {
			dns_query_cancel(d->query);
			d->query = NULL;
		}
		hosts_free(d->hosts, d->nhosts);
		d->hosts = NULL;
		d->nhosts = 0;
		d->dns = DD_NONE;
		d->dns_failures = 0;
		d->dns_expires_ms = 0;
	}
	free(old_lookup);
}

void
domain_dns_start(struct domain *d)
{
	if (d->query != NULL || d->static_routes || d->ql->dns == NULL)
		return;
	QC_ADD(dns_queries, 1);
	d->query = dns_resolve_mx(d->ql->dns, d->lookup, dns_answer, d);
	if (d->dns == DD_NONE || d->dns == DD_FAILED)
		d->dns = DD_PENDING;
}

/* Keep what we know of addresses that stay: failures and session counts. */
static void
hosts_carry(struct dhost *nh, size_t nn, const struct dhost *oh, size_t on)
{
	for (size_t i = 0; i < nn; i++) {
		for (size_t j = 0; j < nh[i].naddrs; j++) {
			struct daddr *a = &nh[i].addrs[j];
			for (size_t k = 0; k < on; k++)
				for (size_t l = 0; l < oh[k].naddrs; l++)
					if (sa_equal(&a->sa, &oh[k].addrs[l].sa)) {
						a->failed_until_ms = oh[k].addrs[l].failed_until_ms;
						a->failures = oh[k].addrs[l].failures;
						a->conns = oh[k].addrs[l].conns;
						a->connect_ms = oh[k].addrs[l].connect_ms;
						a->delivery_ms = oh[k].addrs[l].delivery_ms;
						a->last_failure_s = oh[k].addrs[l].last_failure_s;
						memcpy(a->last_failure, oh[k].addrs[l].last_failure,
						       sizeof(a->last_failure));
					}
			nh[i].conns += a->conns;
		}
	}
}

static void
dns_answer(struct dns_mx_result *res, void *arg)
{
	struct domain *d = arg;
	struct conf *c = conf_current();
	int64_t now = queue_now_ms();
	int64_t ttl = res->ttl_s;
	int64_t lo = conf_global(c, &conf_opt_min_dns_ttl)->i;
	int64_t hi = conf_global(c, &conf_opt_max_dns_ttl)->i;

	d->query = NULL;
	if (ttl < lo)
		ttl = lo;
	if (ttl > hi)
		ttl = hi;
	d->dns_status = res->status;
	snprintf(d->dns_reason, sizeof(d->dns_reason), "%s", res->reason);
	if (res->status == DNS_OK) {
		size_t n = 0;
		struct dhost *hosts = xcalloc(res->nhosts ? res->nhosts : 1, sizeof(*hosts));
		for (size_t i = 0; i < res->nhosts; i++) {
			const struct dns_host *h = &res->hosts[i];
			if (h->naddrs == 0)
				continue;
			hosts[n].name = xstrdup(h->name);
			hosts[n].pref = h->pref;
			hosts[n].addrs = xcalloc(h->naddrs, sizeof(struct daddr));
			for (size_t j = 0; j < h->naddrs; j++) {
				struct sockaddr_storage *sa = &hosts[n].addrs[j].sa;
				memcpy(sa, &h->addrs[j], sizeof(*sa));
				if (sa->ss_family == AF_INET)
					((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)d->port);
				else if (sa->ss_family == AF_INET6)
					((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)d->port);
			}
			hosts[n].naddrs = h->naddrs;
			n++;
		}
		hosts_carry(hosts, n, d->hosts, d->nhosts);
		hosts_free(d->hosts, d->nhosts);
		d->hosts = hosts;
		d->nhosts = n;
		d->dns = DD_READY;
		d->dns_failures = 0;
		d->dns_expires_ms = now + ttl * 1000;
	} else if (res->status == DNS_TEMPFAIL) {
		int64_t backoff = 1000ll << (d->dns_failures < 6 ? d->dns_failures : 6);
		d->dns_failures++;
		QC_ADD(dns_failures, 1);
		if (d->dns != DD_READY)
			d->dns = DD_FAILED;
		d->dns_expires_ms = now + backoff;
	} else {
		QC_ADD(dns_failures, 1);
		d->dns = DD_FAILED;
		d->dns_expires_ms = now + (ttl > 0 ? ttl : 60) * 1000;
	}
	dns_mx_result_free(res);
	conf_unref(c);
	domain_kick(d);
}

/* ------------------------------------------------------------ heap */

static int
heap_less(const struct qmsg *a, const struct qmsg *b)
{
	return a->next_us < b->next_us;
}

static void
heap_swap(struct domain *d, size_t i, size_t j)
{
	struct qmsg *t = d->delayed[i];

	d->delayed[i] = d->delayed[j];
	d->delayed[j] = t;
	d->delayed[i]->u.heap_index = i;
	d->delayed[j]->u.heap_index = j;
}

static void
heap_up(struct domain *d, size_t i)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!heap_less(d->delayed[i], d->delayed[p]))
			break;
		heap_swap(d, i, p);
		i = p;
	}
}

static void
heap_down(struct domain *d, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < d->ndelayed && heap_less(d->delayed[l], d->delayed[m]))
			m = l;
		if (r < d->ndelayed && heap_less(d->delayed[r], d->delayed[m]))
			m = r;
		if (m == i)
			return;
		heap_swap(d, i, m);
		i = m;
	}
}

static void
heap_push(struct domain *d, struct qmsg *m)
{
	if (d->ndelayed == d->delayed_cap) {
		d->delayed_cap = d->delayed_cap ? d->delayed_cap * 2 : 16;
		d->delayed = xrealloc(d->delayed, d->delayed_cap * sizeof(*d->delayed));
	}
	m->u.heap_index = d->ndelayed;
	d->delayed[d->ndelayed++] = m;
	heap_up(d, m->u.heap_index);
}

static void
heap_remove(struct domain *d, size_t i)
{
	d->ndelayed--;
	if (i != d->ndelayed) {
		d->delayed[i] = d->delayed[d->ndelayed];
		d->delayed[i]->u.heap_index = i;
		heap_down(d, i);
		heap_up(d, i);
	}
}

static struct qmsg *
heap_pop(struct domain *d)
{
	struct qmsg *m = d->delayed[0];

	heap_remove(d, 0);
	return m;
}

/* ---------------------------------------------------------- queues */

void
domain_active_push(struct domain *d, struct qmsg *m, int front)
{
	struct dbind *b = domain_bind(d, m->slot);

	m->dom = d;
	m->where = QM_ACTIVE;
	if (front)
		TAILQ_INSERT_HEAD(&b->active, m, u.link);
	else
		TAILQ_INSERT_TAIL(&b->active, m, u.link);
	b->nactive++;
	QC_ADD(active, 1);
	/* Deep in a long queue (a suspended binding, a slow domain) the body
	 * goes back to the spool; a session reads it again when it gets there. */
	if (!front && b->nactive > DOMAIN_RESIDENT_ACTIVE)
		qmsg_data_release(m);
}

void
domain_delay(struct domain *d, struct qmsg *m)
{
	m->dom = d;
	m->where = QM_DELAYED;
	qmsg_data_release(m);
	heap_push(d, m);
	QC_ADD(delayed, 1);
	if (m->u.heap_index == 0)
		domain_kick(d);     /* re-arm for the new earliest */
}

void
domain_unlink(struct domain *d, struct qmsg *m)
{
	switch (m->where) {
	case QM_DELAYED:
		heap_remove(d, m->u.heap_index);
		QC_SUB(delayed, 1);
		break;
	case QM_ACTIVE: {
		struct dbind *b = domain_bind(d, m->slot);
		TAILQ_REMOVE(&b->active, m, u.link);
		b->nactive--;
		QC_SUB(active, 1);
		break;
	}
	case QM_INFLIGHT:
		domain_bind(d, m->slot)->ninflight--;
		QC_SUB(active, 1);
		break;
	default:
		break;
	}
	m->where = QM_NONE;
}

void
domain_enqueue(struct domain *d, struct qmsg *m)
{
	m->dom = d;
	if (m->next_us <= queue_wall_us()) {
		domain_active_push(d, m, 0);
		domain_kick(d);
	} else {
		domain_delay(d, m);
	}
}

size_t
domain_active_take(struct domain *d, int slot, struct qmsg **out, size_t max)
{
	struct dbind *b = domain_bind(d, slot);
	struct qmsg *first = TAILQ_FIRST(&b->active), *m, *next;
	size_t n = 0, scanned = 0;

	if (first == NULL || max == 0)
		return 0;
	for (m = first; m != NULL && n < max && scanned < max * 2; m = next, scanned++) {
		next = TAILQ_NEXT(m, u.link);
		if (m->body != first->body)
			continue;
		TAILQ_REMOVE(&b->active, m, u.link);
		b->nactive--;
		m->where = QM_INFLIGHT;
		b->ninflight++;
		out[n++] = m;
	}
	return n;
}

void
domain_kick(struct domain *d)
{
	if (d->ql->stopping || d->running || d->maint == NULL)
		return;
	arm(d, queue_now_ms());
}

static void
arm(struct domain *d, int64_t at_ms)
{
	int64_t now = queue_now_ms();

	if (d->maint_at_ms != 0 && d->maint_at_ms <= at_ms && timer_pending(d->maint))
		return;
	d->maint_at_ms = at_ms;
	timer_start_ms(d->maint, at_ms > now ? (uint64_t)(at_ms - now) : 0);
}

static int
slot_suspended(const struct conf *c, const struct domain *d, int slot)
{
	if (conf_resolve(c, &conf_opt_suspend_delivery, slot, d->pub.domain)->i)
		return 1;
	if (slot == 0 && conf_global(c, &conf_opt_default_binding)->i == 1)
		return 1;
	return 0;
}

static void
maintain(struct timer *t, void *arg)
{
	struct domain *d = arg;
	struct conf *c;
	int64_t wall = queue_wall_us(), now = queue_now_ms(), next = 0;
	size_t moved = 0;
	int waiting = 0;

	(void)t;
	if (d->ql->stopping)
		return;
	d->maint_at_ms = 0;
	d->running = 1;
	c = conf_current();
	if (c->generation != d->conf_gen)
		domain_reroute(d, c);
	while (d->ndelayed > 0 && d->delayed[0]->next_us <= wall && moved < MAINT_MOVE_MAX) {
		struct qmsg *m = heap_pop(d);
		QC_SUB(delayed, 1);
		m->where = QM_NONE;
		domain_active_push(d, m, 0);
		moved++;
	}
	for (size_t s = 0; s < d->nbinds; s++) {
		struct dbind *b = &d->binds[s];
		int slot = (int)s;
		int max_conns;
		unsigned goal, tries = 0;

		if (b->nactive == 0)
			continue;
		if (slot_suspended(c, d, slot))
			continue;
		outbound_feed(d, slot, c);
		if (b->nactive == 0)
			continue;
		max_conns = (int)conf_resolve(c, &conf_opt_max_outbound_connections, slot,
		                              d->pub.domain)->i;
		goal = queue_conn_goal(b->nactive, max_conns);
		while (b->nconns < goal && b->nactive > 0 && tries++ < goal + 4) {
			int64_t wake = 0;
			int r = outbound_open(d, slot, c, &wake);
			if (r == 0)
				continue;
			if (wake > 0 && (next == 0 || wake < next))
				next = wake;
			if (!(r & CONN_ACTION_REQUEUE1) || (r & CONN_ERROR_MASK) == 0)
				break;
		}
		if (b->nactive > 0 && b->nconns == 0)
			waiting = 1;
	}
	d->running = 0;
	if (moved == MAINT_MOVE_MAX)
		next = now;
	if (d->ndelayed > 0) {
		int64_t at = now + (d->delayed[0]->next_us - wall) / 1000 + 1;
		if (next == 0 || at < next)
			next = at;
	}
	if (waiting && (next == 0 || next > now + MAINT_WAIT_MS))
		next = now + MAINT_WAIT_MS;
	for (size_t s = 0; s < d->nbinds && next == 0; s++)
		if (d->binds[s].nactive > 0)
			next = now + MAINT_SCAN_MS;
	if (next != 0)
		arm(d, next);
	conf_unref(c);
}

/* ------------------------------------------------- bulk operations */

void
domain_requeue1(struct domain *d, int slot, const char *note)
{
	struct dbind *b = domain_bind(d, slot);
	struct qmsg *m = TAILQ_FIRST(&b->active);

	if (m == NULL)
		return;
	domain_unlink(d, m);
	qmsg_transient(m, NULL, 0, note);
}

/* Take every message of d (active and delayed; not those in flight). */
static size_t
domain_take_all(struct domain *d, struct qmsg ***out, int active_only)
{
	size_t n = 0, cap = 16;
	struct qmsg **v = xmalloc(cap * sizeof(*v));

	for (size_t s = 0; s < d->nbinds; s++) {
		struct qmsg *m;
		while ((m = TAILQ_FIRST(&d->binds[s].active)) != NULL) {
			domain_unlink(d, m);
			if (n == cap)
				v = xrealloc(v, (cap *= 2) * sizeof(*v));
			v[n++] = m;
		}
	}
	while (!active_only && d->ndelayed > 0) {
		struct qmsg *m = d->delayed[d->ndelayed - 1];
		domain_unlink(d, m);
		if (n == cap)
			v = xrealloc(v, (cap *= 2) * sizeof(*v));
		v[n++] = m;
	}
	*out = v;
	return n;
}

void
domain_purge(struct domain *d, const char *note)
{
	struct qmsg **v;
	size_t n = domain_take_all(d, &v, 0);

	for (size_t i = 0; i < n; i++)
		qmsg_failed(v[i], NULL, 0, note);
	free(v);
}

void
domain_delay_active(struct domain *d, const char *note)
{
	struct qmsg **v;
	size_t n = domain_take_all(d, &v, 1);

	for (size_t i = 0; i < n; i++)
		qmsg_transient(v[i], NULL, 0, note);
	free(v);
}

void
domain_rebind(struct domain *d, int from, int to)
{
	struct qmsg **v;
	size_t n = domain_take_all(d, &v, 0);
	const char *name = config_get_binding_name_from_id(to);

	for (size_t i = 0; i < n; i++) {
		struct qmsg *m = v[i];
		if (from < 0 || m->slot == from) {
			struct spool_rcpt_state st = {
				.binding = name, .retries = m->retries,
				.next_attempt = { (time_t)(m->next_us / 1000000),
				                  (suseconds_t)(m->next_us % 1000000) },
			};
			m->slot = (int16_t)to;
			spool_rcpt_update(queue_spool(), m->body->batch_id, m->index, &st,
			                  d->ql->loop, rebind_written, NULL);
		}
		domain_enqueue(d, m);
	}
	free(v);
}

void
domain_shutdown(struct domain *d)
{
	outbound_shutdown(d);
	if (d->query != NULL) {
		dns_query_cancel(d->query);
		d->query = NULL;
	}
	timer_free(d->maint);      /* timers belong to the loop: freed here, on it */
	d->maint = NULL;
}

void
domain_free(struct domain *d)
{
	struct qmsg **v;
	size_t n = domain_take_all(d, &v, 0);

	for (size_t i = 0; i < n; i++)
		qmsg_free(v[i]);
	free(v);
	outbound_shutdown(d);
	if (d->query != NULL)
		dns_query_cancel(d->query);
	if (d->maint != NULL)
		timer_free(d->maint);
	hosts_free(d->hosts, d->nhosts);
	free(d->delayed);
	free(d->binds);
	free(d->lookup);
	free(d->pub.domain);
	free(d);
}

/*
 * dns.c - MX resolution: the shared resolver and query objects, result
 * helpers, and the c-ares backend driven by libevent.
 *
 * Public functions (dns.h):
 *   dns_resolver_new     a c-ares resolver on an event_base
 *   dns_resolver_free    cancel every live query, free the backend and r
 *   dns_resolve_mx       start an MX lookup; the answer comes from the loop
 *   dns_query_cancel     drop a query before its answer was delivered
 *   dns_resolver_stats   queries / failures / in-flight counters
 *   dns_mx_result_free, dns_mx_result_copy, dns_status_name
 *   dns_result_new, dns_result_add_host, dns_host_add_addr   (test builders)
 *   dns_resolver_wrap ... dns_literal_result   (the backend interface)
 *
 * Shared layer: every query is linked into its resolver until its answer is
 * delivered or it is cancelled. A backend hands an answer over with
 * dns_query_done; the shared layer stores it and activates a per-query
 * event, whose callback unlinks and frees the query, then calls the user
 * last. So user callbacks never run inside c-ares or inside an API call, and
 * may do anything (start queries, free the resolver).
 *
 * c-ares backend: one ares_channel per resolver. Its sockets are watched by
 * one libevent event each (ARES_OPT_SOCK_STATE_CB); one timer re-armed from
 * ares_timeout after every ares_process_fd drives retries and timeouts.
 * A lookup (struct cares_lookup) asks MX, then A (and AAAA) for up to
 * DNS_MAX_MX_HOSTS hosts in parallel. It counts its outstanding c-ares
 * callbacks and is freed when the count drops to zero; cancelling only
 * detaches it from its query (lk->q = NULL), so a late c-ares callback finds
 * no query and issues nothing. dns_resolver_free cancels every query first,
 * then ares_destroy fires the remaining callbacks with ARES_EDESTRUCTION,
 * which free their lookups.
 *
 * ARES_FLAG_NOCHECKRESP: c-ares 1.18 otherwise treats SERVFAIL/REFUSED as
 * "try the next server", retries up to tries x servers and then reports
 * ARES_ECONNREFUSED, losing the reason. With the flag an rcode is reported
 * as it is, after one round trip (a SERVFAIL from the first server is not
 * retried on the others: the queue retries the domain later).
 *
 * TTLs: ares_parse_mx_reply has no TTLs, so a small bounded parser reads
 * the answer section (positive TTL) and the authority SOA (negative TTL:
 * min(SOA TTL, SOA MINIMUM), RFC 2308) from the raw answer.
 *
 * Ownership: a resolver owns its backend state and its live queries; a
 * query owns its undelivered result; results passed to callbacks belong to
 * the callee. Errors: dns_resolver_new returns NULL and a reason; lookup
 * failures are reported in the result. libevent allocation failures abort
 * like xalloc's. Nothing here logs.
 */
#include "dns/dns.h"

#include <arpa/inet.h>
#include <ares.h>
#include <ctype.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/xalloc.h"

#define DNS_DEFAULT_TIMEOUT_MS 2000       /* per try, when the config says 0 */
#define DNS_DEFAULT_TRIES      2          /* per server, when the config says 0 */
#define CARES_MAX_ADDRS        64         /* addresses read per A or AAAA answer */
#define DNS_T_A                1
#define DNS_T_MX               15
#define DNS_T_SOA              6
#define DNS_T_AAAA             28
#define DNS_C_IN               1

struct dns_resolver {
	struct event_base *base;          /* the loop this resolver runs on */
	const struct dns_ops *ops;        /* the backend */
	void *state;                      /* backend state, freed by ops->destroy */
	struct dns_query *queries;        /* live queries: started, not delivered or cancelled */
	struct dns_stats stats;           /* counters */
};

struct dns_query {
	struct dns_resolver *r;           /* owner */
	char *domain;                     /* lower case, no trailing dot */
	dns_mx_fn cb;                     /* the user's callback */
	void *arg;                        /* its argument, not owned */
	struct dns_mx_result *res;        /* the answer awaiting delivery, owned; NULL while resolving */
	struct event *deliver;            /* activated by dns_query_done, runs cb */
	void *state;                      /* backend state, NULL once the backend is done */
	struct dns_query *prev, *next;    /* r->queries */
};

/* The c-ares backend. */
struct cares_watch {
	ares_socket_t fd;                 /* a c-ares socket */
	struct event *ev;                 /* EV_READ and/or EV_WRITE, EV_PERSIST */
	struct cares_watch *next;         /* cr->watches */
};

struct cares_resolver {
	struct event_base *base;          /* the loop */
	ares_channel channel;             /* owned; ares_destroy at free */
	struct event *timer;              /* c-ares retries and timeouts */
	struct cares_watch *watches;      /* one per open c-ares socket */
	int ipv6;                         /* also ask AAAA */
};

struct cares_host {
	struct sockaddr_storage *v4, *v6; /* addresses found, in answer order */
	size_t n4, n6;                    /* entries in v4, v6 */
	uint32_t ttl_s;                   /* seconds: smallest TTL of the address records */
	int have_ttl;                     /* ttl_s is set */
	uint32_t neg_ttl_s;               /* seconds: smallest negative TTL seen */
	int have_neg_ttl;                 /* neg_ttl_s is known */
	int transient;                    /* some lookup failed transiently */
	int nxdomain;                     /* some lookup said NXDOMAIN */
	char reason[64];                  /* the first transient failure */
};

struct cares_lookup {
	struct dns_query *q;              /* NULL once cancelled */
	struct cares_resolver *cr;        /* the backend */
	unsigned outstanding;             /* c-ares callbacks still to come (+1 while issuing) */
	struct dns_mx_result *res;        /* under construction, owned */
	int final;                        /* res is the answer as it stands (no host phase) */
	struct cares_host *hs;            /* one per res->hosts[i] */
	size_t nhs;                       /* entries in hs */
	uint32_t mx_ttl_s;                /* seconds: MX TTL, or the MX NODATA negative TTL when implicit */
	int have_mx_ttl;                  /* mx_ttl_s is known */
};

struct cares_request {
	struct cares_lookup *lk;          /* the lookup this answer belongs to */
	size_t host;                      /* index into lk->hs */
	int qtype;                        /* DNS_T_A or DNS_T_AAAA */
};

static void query_deliver(evutil_socket_t fd, short what, void *arg);
static void query_unlink(struct dns_query *q);
static void result_set_reason(struct dns_mx_result *res, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int parse_server(const char *text, struct ares_addr_port_node *node, char *err, size_t errlen);
static void cares_start(struct dns_query *q);
static void cares_cancel(struct dns_query *q);
static void cares_destroy(struct dns_resolver *r);
static void cares_sock_state(void *data, ares_socket_t fd, int readable, int writable);
static void cares_sock_ready(evutil_socket_t fd, short what, void *arg);
static void cares_timer_fired(evutil_socket_t fd, short what, void *arg);
static void cares_rearm(struct cares_resolver *cr);
static void cares_mx_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen);
static void cares_host_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen);
static void cares_mx_result(struct cares_lookup *lk, int status, const unsigned char *abuf, int alen);
static void cares_host_result(struct cares_lookup *lk, struct cares_request *req, int status,
                              const unsigned char *abuf, int alen);
static void cares_ask_hosts(struct cares_lookup *lk);
static void cares_host_ttl(struct cares_host *h, int ttl);
static void cares_release(struct cares_lookup *lk);
static void cares_finish(struct cares_lookup *lk);
static void cares_lookup_free(struct cares_lookup *lk);
static const char *cares_reason(int status);
static int packet_ttls(const unsigned char *buf, int len, int rtype, uint32_t *ans_ttl, int *have_ans,
                       uint32_t *neg_ttl, int *have_neg);
static int packet_skip_name(const unsigned char *buf, int len, int off);
static uint32_t min_u32(uint32_t a, uint32_t b);

static const struct dns_ops cares_ops = {
	.name = "c-ares",
	.start = cares_start,
	.cancel = cares_cancel,
	.destroy = cares_destroy,
};

/* ---------------------------------------------------------------------------
 * The shared layer.
 */

struct dns_resolver *
dns_resolver_wrap(struct event_base *base, const struct dns_ops *ops, void *state)
{
	struct dns_resolver *r = xcalloc(1, sizeof(*r));

	r->base = base;
	r->ops = ops;
	r->state = state;
	return r;
}

void *
dns_resolver_state(const struct dns_resolver *r)
{
	return r->state;
}

const struct dns_ops *
dns_resolver_ops(const struct dns_resolver *r)
{
	return r->ops;
}

struct event_base *
dns_resolver_base(const struct dns_resolver *r)
{
	return r->base;
}

struct dns_resolver *
dns_query_resolver(const struct dns_query *q)
{
	return q->r;
}

const char *
dns_query_domain(const struct dns_query *q)
{
	return q->domain;
}

void *
dns_query_state(const struct dns_query *q)
{
	return q->state;
}

void
dns_query_set_state(struct dns_query *q, void *state)
{
	q->state = state;
}

char *
dns_name_normalize(const char *name)
{
	char *n = xstrdup(name);
	size_t len = strlen(n);

	for (size_t i = 0; i < len; i++)
		n[i] = (char)tolower((unsigned char)n[i]);
	if (len > 1 && n[len - 1] == '.')
		n[len - 1] = '\0';
	return n;
}

struct dns_query *
dns_resolve_mx(struct dns_resolver *r, const char *domain, dns_mx_fn cb, void *arg)
{
	struct dns_query *q = xcalloc(1, sizeof(*q));

	q->r = r;
	q->domain = dns_name_normalize(domain);
	q->cb = cb;
	q->arg = arg;
	q->next = r->queries;
	if (r->queries != NULL)
		r->queries->prev = q;
	r->queries = q;
	r->stats.queries++;
	r->stats.inflight++;
	r->ops->start(q);
	return q;
}

void
dns_query_done(struct dns_query *q, struct dns_mx_result *res)
{
	if (q->res != NULL)
		abort();  /* a backend answered twice: our bug */
	q->res = res;
	q->state = NULL;
	q->deliver = event_new(q->r->base, -1, 0, query_deliver, q);
	if (q->deliver == NULL)
		abort();
	event_active(q->deliver, EV_TIMEOUT, 1);
}

static void
query_unlink(struct dns_query *q)
{
	struct dns_resolver *r = q->r;

	if (q->prev != NULL)
		q->prev->next = q->next;
	else
		r->queries = q->next;
	if (q->next != NULL)
		q->next->prev = q->prev;
	r->stats.inflight--;
}

static void
query_deliver(evutil_socket_t fd, short what, void *arg)
{
	struct dns_query *q = arg;
	struct dns_mx_result *res = q->res;
	dns_mx_fn cb = q->cb;
	void *cb_arg = q->arg;

	query_unlink(q);
	if (res->status != DNS_OK)
		q->r->stats.failures++;
	event_free(q->deliver);  /* safe inside its own callback (see event/timer.c) */
	free(q->domain);
	free(q);
	/* Last: cb may free the resolver. */
	cb(res, cb_arg);
}

void
dns_query_cancel(struct dns_query *q)
{
	if (q == NULL)
		return;
	if (q->res == NULL) {
		q->r->ops->cancel(q);
	} else {
		event_free(q->deliver);
		dns_mx_result_free(q->res);
	}
	query_unlink(q);
	free(q->domain);
	free(q);
}

void
dns_resolver_free(struct dns_resolver *r)
{
	if (r == NULL)
		return;
	while (r->queries != NULL)
		dns_query_cancel(r->queries);
	r->ops->destroy(r);
	free(r);
}

void
dns_resolver_stats(const struct dns_resolver *r, struct dns_stats *out)
{
	*out = r->stats;
}

const char *
dns_status_name(enum dns_status s)
{
	switch (s) {
	case DNS_OK: return "ok";
	case DNS_NULL_MX: return "null-mx";
	case DNS_NXDOMAIN: return "nxdomain";
	case DNS_NO_ADDRESS: return "no-address";
	case DNS_TEMPFAIL: return "tempfail";
	}
	return "unknown";
}

static void
result_set_reason(struct dns_mx_result *res, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(res->reason, sizeof(res->reason), fmt, ap);
	va_end(ap);
}

struct dns_mx_result *
dns_result_new(enum dns_status st, uint32_t ttl_s)
{
	struct dns_mx_result *res = xcalloc(1, sizeof(*res));

	res->status = st;
	res->ttl_s = ttl_s;
	result_set_reason(res, "%s", dns_status_name(st));
	return res;
}

struct dns_host *
dns_result_add_host(struct dns_mx_result *res, const char *name, unsigned pref)
{
	size_t at = res->nhosts;

	while (at > 0 && res->hosts[at - 1].pref > pref)
		at--;
	res->hosts = xreallocarray(res->hosts, res->nhosts + 1, sizeof(*res->hosts));
	memmove(&res->hosts[at + 1], &res->hosts[at], (res->nhosts - at) * sizeof(*res->hosts));
	res->nhosts++;
	memset(&res->hosts[at], 0, sizeof(res->hosts[at]));
	res->hosts[at].name = dns_name_normalize(name);
	res->hosts[at].pref = pref;
	res->hosts[at].status = DNS_OK;
	return &res->hosts[at];
}

void
dns_host_add_addr(struct dns_host *h, const char *ip)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, ip, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		ss.ss_family = AF_INET;
	} else if (inet_pton(AF_INET6, ip, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		ss.ss_family = AF_INET6;
	} else {
		fprintf(stderr, "dns_host_add_addr: not an IP address: \"%s\"\n", ip);
		abort();
	}
	h->addrs = xreallocarray(h->addrs, h->naddrs + 1, sizeof(*h->addrs));
	h->addrs[h->naddrs++] = ss;
}

void
dns_mx_result_free(struct dns_mx_result *res)
{
	if (res == NULL)
		return;
	for (size_t i = 0; i < res->nhosts; i++) {
		free(res->hosts[i].name);
		free(res->hosts[i].addrs);
	}
	free(res->hosts);
	free(res);
}

struct dns_mx_result *
dns_mx_result_copy(const struct dns_mx_result *res)
{
	struct dns_mx_result *c = xmalloc(sizeof(*c));

	*c = *res;
	c->hosts = NULL;
	if (res->nhosts > 0) {
		c->hosts = xcalloc(res->nhosts, sizeof(*c->hosts));
		for (size_t i = 0; i < res->nhosts; i++) {
			const struct dns_host *h = &res->hosts[i];
			c->hosts[i] = *h;
			c->hosts[i].name = xstrdup(h->name);
			c->hosts[i].addrs = NULL;
			if (h->naddrs > 0) {
				c->hosts[i].addrs = xcalloc(h->naddrs, sizeof(*h->addrs));
				memcpy(c->hosts[i].addrs, h->addrs, h->naddrs * sizeof(*h->addrs));
			}
		}
	}
	return c;
}

struct dns_mx_result *
dns_literal_result(const char *domain)
{
	char text[INET6_ADDRSTRLEN + 1];
	const char *p = domain;
	size_t n = strlen(domain);
	int bracketed = 0;
	struct dns_mx_result *res;

	if (n == 0 || strcmp(domain, ".") == 0) {
		res = dns_result_new(DNS_NXDOMAIN, 0);
		result_set_reason(res, "empty domain");
		return res;
	}
	if (p[0] == '[') {
		bracketed = 1;
		if (n < 2 || p[n - 1] != ']')
			goto bad;
		p++;
		n -= 2;
		if (n >= 5 && strncasecmp(p, "ipv6:", 5) == 0) {
			p += 5;
			n -= 5;
		}
	}
	if (n == 0 || n >= sizeof(text))
		goto bad;
	memcpy(text, p, n);
	text[n] = '\0';
	unsigned char buf[16];
	if (inet_pton(AF_INET, text, buf) != 1 && inet_pton(AF_INET6, text, buf) != 1)
		goto bad;
	res = dns_result_new(DNS_OK, 0);
	res->implicit = 1;
	dns_host_add_addr(dns_result_add_host(res, text, 0), text);
	result_set_reason(res, "address literal");
	return res;
bad:
	if (!bracketed)
		return NULL;  /* an ordinary name */
	res = dns_result_new(DNS_NXDOMAIN, 0);
	result_set_reason(res, "bad address literal");
	return res;
}

/* ---------------------------------------------------------------------------
 * The c-ares backend: resolver, sockets and timer.
 */

static pthread_once_t cares_once = PTHREAD_ONCE_INIT;
static int cares_init_status;

static void
cares_library_init(void)
{
	cares_init_status = ares_library_init(ARES_LIB_INIT_ALL);
}

/* parse_server: "ip", "ip:port", "[ip6]" or "[ip6]:port" into node; 0, or -1 + reason. */
static int
parse_server(const char *text, struct ares_addr_port_node *node, char *err, size_t errlen)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *port = NULL, *end;
	size_t n;

	memset(node, 0, sizeof(*node));
	if (text[0] == '[') {
		end = strchr(text, ']');
		if (end == NULL || (end[1] != '\0' && end[1] != ':'))
			goto bad;
		n = (size_t)(end - text - 1);
		if (n == 0 || n >= sizeof(host))
			goto bad;
		memcpy(host, text + 1, n);
		host[n] = '\0';
		if (end[1] == ':')
			port = end + 2;
		if (inet_pton(AF_INET6, host, &node->addr.addr6) != 1)
			goto bad;
		node->family = AF_INET6;
	} else {
		end = strchr(text, ':');
		if (end != NULL && strchr(end + 1, ':') != NULL) {
			/* a bare IPv6 address: no port */
			if (inet_pton(AF_INET6, text, &node->addr.addr6) != 1)
				goto bad;
			node->family = AF_INET6;
		} else {
			n = end != NULL ? (size_t)(end - text) : strlen(text);
			if (n == 0 || n >= sizeof(host))
				goto bad;
			memcpy(host, text, n);
			host[n] = '\0';
			if (end != NULL)
				port = end + 1;
			if (inet_pton(AF_INET, host, &node->addr.addr4) != 1)
				goto bad;
			node->family = AF_INET;
		}
	}
	if (port != NULL) {
		char *stop;
		unsigned long v = strtoul(port, &stop, 10);
		if (*port < '0' || *port > '9' || *stop != '\0' || v == 0 || v > 65535)
			goto bad;
		node->udp_port = node->tcp_port = (int)v;
	}
	return 0;
bad:
	snprintf(err, errlen, "bad DNS server \"%s\" (want ip, ip:port or [ip6]:port)", text);
	return -1;
}

struct dns_resolver *
dns_resolver_new(struct event_base *base, const struct dns_config *cfg, char *err, size_t errlen)
{
	static const struct dns_config defaults;
	struct ares_addr_port_node *nodes = NULL;
	size_t nservers;
	struct ares_options opts;
	int rc;

	if (cfg == NULL)
		cfg = &defaults;
	nservers = cfg->servers != NULL ? cfg->nservers : 0;

	pthread_once(&cares_once, cares_library_init);
	if (cares_init_status != ARES_SUCCESS) {
		snprintf(err, errlen, "c-ares library init: %s", ares_strerror(cares_init_status));
		return NULL;
	}
	if (nservers > 0) {
		nodes = xcalloc(nservers, sizeof(*nodes));
		for (size_t i = 0; i < nservers; i++) {
			if (parse_server(cfg->servers[i], &nodes[i], err, errlen) < 0) {
				free(nodes);
				return NULL;
			}
			if (i > 0)
				nodes[i - 1].next = &nodes[i];
		}
	}

	struct cares_resolver *cr = xcalloc(1, sizeof(*cr));
	cr->base = base;
	cr->ipv6 = cfg->ipv6 != 0;
	memset(&opts, 0, sizeof(opts));
	opts.flags = ARES_FLAG_NOCHECKRESP | ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
	opts.timeout = (int)(cfg->timeout_ms != 0 ? cfg->timeout_ms : DNS_DEFAULT_TIMEOUT_MS);
	opts.tries = (int)(cfg->tries != 0 ? cfg->tries : DNS_DEFAULT_TRIES);
	opts.sock_state_cb = cares_sock_state;
	opts.sock_state_cb_data = cr;
	rc = ares_init_options(&cr->channel, &opts,
	                       ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB);
	if (rc != ARES_SUCCESS) {
		snprintf(err, errlen, "c-ares init: %s", ares_strerror(rc));
		free(nodes);
		free(cr);
		return NULL;
	}
	if (nodes != NULL) {
		rc = ares_set_servers_ports(cr->channel, nodes);
		free(nodes);
		if (rc != ARES_SUCCESS) {
			snprintf(err, errlen, "c-ares servers: %s", ares_strerror(rc));
			ares_destroy(cr->channel);
			free(cr);
			return NULL;
		}
	}
	cr->timer = evtimer_new(base, cares_timer_fired, cr);
	if (cr->timer == NULL)
		abort();
	return dns_resolver_wrap(base, &cares_ops, cr);
}

static void
cares_destroy(struct dns_resolver *r)
{
	struct cares_resolver *cr = dns_resolver_state(r);

	/* Every query was cancelled: the ARES_EDESTRUCTION callbacks only free lookups. */
	ares_destroy(cr->channel);
	while (cr->watches != NULL) {
		struct cares_watch *w = cr->watches;
		cr->watches = w->next;
		event_free(w->ev);
		free(w);
	}
	event_free(cr->timer);
	free(cr);
}

static void
cares_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct cares_resolver *cr = data;
	struct cares_watch **pw, *w;

	for (pw = &cr->watches; *pw != NULL && (*pw)->fd != fd; pw = &(*pw)->next)
		;
	w = *pw;
	if (!readable && !writable) {
		/* c-ares closes fd after this returns */
		if (w != NULL) {
			*pw = w->next;
			event_free(w->ev);
			free(w);
		}
		return;
	}
	if (w == NULL) {
		w = xcalloc(1, sizeof(*w));
		w->fd = fd;
		w->next = cr->watches;
		cr->watches = w;
	} else {
		event_free(w->ev);
	}
	short what = (short)((readable ? EV_READ : 0) | (writable ? EV_WRITE : 0) | EV_PERSIST);
	w->ev = event_new(cr->base, fd, what, cares_sock_ready, cr);
	if (w->ev == NULL || event_add(w->ev, NULL) != 0)
		abort();
}

static void
cares_sock_ready(evutil_socket_t fd, short what, void *arg)
{
	struct cares_resolver *cr = arg;

	ares_process_fd(cr->channel, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
	                (what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
	cares_rearm(cr);
}

static void
cares_timer_fired(evutil_socket_t fd, short what, void *arg)
{
	struct cares_resolver *cr = arg;

	ares_process_fd(cr->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	cares_rearm(cr);
}

/* cares_rearm: point the timer at c-ares's next deadline, or stop it when idle. */
static void
cares_rearm(struct cares_resolver *cr)
{
	struct timeval tv, *tvp = ares_timeout(cr->channel, NULL, &tv);

	if (tvp != NULL)
		evtimer_add(cr->timer, tvp);
	else
		evtimer_del(cr->timer);
}

/* ---------------------------------------------------------------------------
 * The c-ares backend: lookups.
 */

static void
cares_start(struct dns_query *q)
{
	struct cares_resolver *cr = dns_resolver_state(dns_query_resolver(q));
	struct dns_mx_result *res = dns_literal_result(dns_query_domain(q));

	if (res != NULL) {
		dns_query_done(q, res);
		return;
	}
	struct cares_lookup *lk = xcalloc(1, sizeof(*lk));
	lk->q = q;
	lk->cr = cr;
	lk->res = dns_result_new(DNS_TEMPFAIL, 0);
	lk->outstanding = 1;
	dns_query_set_state(q, lk);
	/* May call back at once (no servers, bad name): lk is gone then. */
	ares_query(cr->channel, dns_query_domain(q), DNS_C_IN, DNS_T_MX, cares_mx_answer, lk);
	cares_rearm(cr);
}

static void
cares_cancel(struct dns_query *q)
{
	struct cares_lookup *lk = dns_query_state(q);

	/* Its outstanding c-ares callbacks free it. */
	lk->q = NULL;
}

static void
cares_mx_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct cares_lookup *lk = arg;

	if (lk->q != NULL && status != ARES_EDESTRUCTION && status != ARES_ECANCELLED)
		cares_mx_result(lk, status, abuf, alen);
	cares_release(lk);
}

static void
cares_host_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct cares_request *req = arg;
	struct cares_lookup *lk = req->lk;

	if (lk->q != NULL && status != ARES_EDESTRUCTION && status != ARES_ECANCELLED)
		cares_host_result(lk, req, status, abuf, alen);
	free(req);
	cares_release(lk);
}

static void
cares_mx_result(struct cares_lookup *lk, int status, const unsigned char *abuf, int alen)
{
	struct dns_mx_result *res = lk->res;
	const char *domain = dns_query_domain(lk->q);
	struct ares_mx_reply *mx = NULL;
	uint32_t neg = 0;
	int have_neg = 0, rc;

	if (abuf != NULL && alen > 0)
		(void)packet_ttls(abuf, alen, DNS_T_MX, &lk->mx_ttl_s, &lk->have_mx_ttl, &neg, &have_neg);
	if (status == ARES_SUCCESS) {
		rc = ares_parse_mx_reply(abuf, alen, &mx);
		if (rc == ARES_ENODATA) {
			status = ARES_ENODATA;  /* e.g. a CNAME without MX: no MX records */
		} else if (rc != ARES_SUCCESS) {
			res->status = DNS_TEMPFAIL;
			result_set_reason(res, "bad MX answer: %s", ares_strerror(rc));
			lk->final = 1;
			return;
		}
	}
	if (status == ARES_SUCCESS) {
		size_t nrec = 0, nnull = 0;
		for (struct ares_mx_reply *m = mx; m != NULL; m = m->next) {
			nrec++;
			if (m->host[0] == '\0' || strcmp(m->host, ".") == 0)
				nnull++;
			else
				dns_result_add_host(res, m->host, m->priority);
		}
		ares_free_data(mx);
		if (nrec == nnull) {
			/* RFC 7505: a single "." target (several are a broken null MX, same meaning) */
			res->status = DNS_NULL_MX;
			res->ttl_s = lk->have_mx_ttl ? lk->mx_ttl_s : 0;
			result_set_reason(res, "null MX");
			lk->final = 1;
			return;
		}
		/* Keep the first (best) of duplicate targets, then the best DNS_MAX_MX_HOSTS. */
		size_t kept = 0;
		for (size_t i = 0; i < res->nhosts; i++) {
			int dup = 0;
			for (size_t j = 0; j < kept && !dup; j++)
				dup = strcmp(res->hosts[j].name, res->hosts[i].name) == 0;
			if (dup || kept >= DNS_MAX_MX_HOSTS) {
				free(res->hosts[i].name);
				continue;
			}
			res->hosts[kept++] = res->hosts[i];
		}
		res->nhosts = kept;
		cares_ask_hosts(lk);
		return;
	}
	switch (status) {
	case ARES_ENODATA:
		/* RFC 5321 5.1: no MX, the domain itself is the host */
		res->implicit = 1;
		dns_result_add_host(res, domain, 0);
		lk->mx_ttl_s = neg;
		lk->have_mx_ttl = have_neg;
		cares_ask_hosts(lk);
		return;
	case ARES_ENOTFOUND:
		res->status = DNS_NXDOMAIN;
		res->ttl_s = have_neg ? neg : 0;
		result_set_reason(res, "NXDOMAIN");
		break;
	case ARES_EBADNAME:
		res->status = DNS_NXDOMAIN;
		result_set_reason(res, "bad domain name");
		break;
	default:
		res->status = DNS_TEMPFAIL;
		result_set_reason(res, "%s", cares_reason(status));
		break;
	}
	lk->final = 1;
}

/* cares_ask_hosts: A (and AAAA) for every host of lk->res, all in parallel. */
static void
cares_ask_hosts(struct cares_lookup *lk)
{
	struct dns_mx_result *res = lk->res;
	static const int types[2] = { DNS_T_A, DNS_T_AAAA };
	int ntypes = lk->cr->ipv6 ? 2 : 1;

	lk->hs = xcalloc(res->nhosts, sizeof(*lk->hs));
	lk->nhs = res->nhosts;
	/* Hold a count while issuing: a query that fails at once calls back inside ares_query. */
	lk->outstanding++;
	for (size_t i = 0; i < res->nhosts; i++) {
		for (int t = 0; t < ntypes; t++) {
			struct cares_request *req = xmalloc(sizeof(*req));
			req->lk = lk;
			req->host = i;
			req->qtype = types[t];
			lk->outstanding++;
			ares_query(lk->cr->channel, res->hosts[i].name, DNS_C_IN, types[t], cares_host_answer,
			           req);
		}
	}
	cares_release(lk);
}

static void
cares_host_result(struct cares_lookup *lk, struct cares_request *req, int status, const unsigned char *abuf,
                  int alen)
{
	struct cares_host *h = &lk->hs[req->host];
	uint32_t ans = 0, neg = 0;
	int have_ans = 0, have_neg = 0;

	if (abuf != NULL && alen > 0)
		(void)packet_ttls(abuf, alen, req->qtype, &ans, &have_ans, &neg, &have_neg);
	if (status == ARES_SUCCESS) {
		int n = CARES_MAX_ADDRS, rc;
		if (req->qtype == DNS_T_A) {
			struct ares_addrttl at[CARES_MAX_ADDRS];
			rc = ares_parse_a_reply(abuf, alen, NULL, at, &n);
			if (rc == ARES_SUCCESS && n > 0) {
				h->v4 = xcalloc((size_t)n, sizeof(*h->v4));
				h->n4 = (size_t)n;
				for (int i = 0; i < n; i++) {
					struct sockaddr_in *sin = (struct sockaddr_in *)&h->v4[i];
					sin->sin_family = AF_INET;
					sin->sin_addr = at[i].ipaddr;
					cares_host_ttl(h, at[i].ttl);
				}
			}
		} else {
			struct ares_addr6ttl at[CARES_MAX_ADDRS];
			rc = ares_parse_aaaa_reply(abuf, alen, NULL, at, &n);
			if (rc == ARES_SUCCESS && n > 0) {
				h->v6 = xcalloc((size_t)n, sizeof(*h->v6));
				h->n6 = (size_t)n;
				for (int i = 0; i < n; i++) {
					struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&h->v6[i];
					sin6->sin6_family = AF_INET6;
					memcpy(&sin6->sin6_addr, &at[i].ip6addr, sizeof(sin6->sin6_addr));
					cares_host_ttl(h, at[i].ttl);
				}
			}
		}
		if (rc == ARES_SUCCESS && n > 0)
			return;
		if (rc != ARES_SUCCESS && rc != ARES_ENODATA) {
			h->transient = 1;
			if (h->reason[0] == '\0')
				snprintf(h->reason, sizeof(h->reason), "bad address answer: %s",
				         ares_strerror(rc));
			return;
		}
		status = ARES_ENODATA;  /* e.g. a CNAME without addresses */
	}
	switch (status) {
	case ARES_ENODATA:
	case ARES_ENOTFOUND:
	case ARES_EBADNAME:
		if (status != ARES_ENODATA)
			h->nxdomain = 1;
		if (have_neg) {
			h->neg_ttl_s = h->have_neg_ttl ? min_u32(h->neg_ttl_s, neg) : neg;
			h->have_neg_ttl = 1;
		}
		break;
	default:
		h->transient = 1;
		if (h->reason[0] == '\0')
			snprintf(h->reason, sizeof(h->reason), "%s", cares_reason(status));
		break;
	}
}

/* cares_host_ttl: fold one address record's TTL into h->ttl_s. */
static void
cares_host_ttl(struct cares_host *h, int ttl)
{
	uint32_t t = ttl > 0 ? (uint32_t)ttl : 0;

	h->ttl_s = h->have_ttl ? min_u32(h->ttl_s, t) : t;
	h->have_ttl = 1;
}

/* cares_release: one c-ares callback (or the issuing hold) is over; finish at zero. */
static void
cares_release(struct cares_lookup *lk)
{
	if (--lk->outstanding > 0)
		return;
	if (lk->q != NULL)
		cares_finish(lk);
	cares_lookup_free(lk);
}

/* cares_finish: turn the per-host outcomes into the answer and hand it over. */
static void
cares_finish(struct cares_lookup *lk)
{
	struct dns_mx_result *res = lk->res;
	struct dns_query *q = lk->q;
	int any_ok = 0, any_transient = 0, have_neg = 0;
	uint32_t ttl = lk->mx_ttl_s, neg = lk->mx_ttl_s;
	const char *temp_host = NULL, *temp_reason = NULL;

	lk->res = NULL;
	lk->q = NULL;
	if (lk->final) {
		dns_query_done(q, res);
		return;
	}
	have_neg = lk->have_mx_ttl;
	for (size_t i = 0; i < res->nhosts; i++) {
		struct dns_host *h = &res->hosts[i];
		struct cares_host *ch = &lk->hs[i];
		h->naddrs = ch->n4 + ch->n6;
		if (h->naddrs > 0) {
			h->addrs = xcalloc(h->naddrs, sizeof(*h->addrs));
			if (ch->n4 > 0)
				memcpy(h->addrs, ch->v4, ch->n4 * sizeof(*h->addrs));
			if (ch->n6 > 0)
				memcpy(h->addrs + ch->n4, ch->v6, ch->n6 * sizeof(*h->addrs));
			h->status = DNS_OK;
			ttl = any_ok || lk->have_mx_ttl ? min_u32(ttl, ch->ttl_s) : ch->ttl_s;
			any_ok = 1;
		} else if (ch->transient) {
			h->status = DNS_TEMPFAIL;
			if (!any_transient) {
				temp_host = h->name;
				temp_reason = ch->reason;
			}
			any_transient = 1;
		} else {
			h->status = ch->nxdomain ? DNS_NXDOMAIN : DNS_NO_ADDRESS;
			if (ch->have_neg_ttl) {
				neg = have_neg ? min_u32(neg, ch->neg_ttl_s) : ch->neg_ttl_s;
				have_neg = 1;
			}
		}
	}
	if (any_ok) {
		res->status = DNS_OK;
		res->ttl_s = ttl;
		result_set_reason(res, "ok");
	} else if (any_transient) {
		res->status = DNS_TEMPFAIL;
		res->ttl_s = 0;
		result_set_reason(res, "%s: %s", temp_host, temp_reason);
	} else {
		res->status = DNS_NO_ADDRESS;
		res->ttl_s = have_neg ? neg : 0;
		result_set_reason(res, "%s", res->implicit ? "no MX and no address records"
		                                           : "no MX host has an address");
	}
	dns_query_done(q, res);
}

static void
cares_lookup_free(struct cares_lookup *lk)
{
	for (size_t i = 0; i < lk->nhs; i++) {
		free(lk->hs[i].v4);
		free(lk->hs[i].v6);
	}
	free(lk->hs);
	dns_mx_result_free(lk->res);
	free(lk);
}

static const char *
cares_reason(int status)
{
	switch (status) {
	case ARES_ESERVFAIL: return "SERVFAIL";
	case ARES_EREFUSED: return "REFUSED";
	case ARES_ETIMEOUT: return "timeout";
	case ARES_ECONNREFUSED: return "connection refused";
	case ARES_ENOTFOUND: return "NXDOMAIN";
	case ARES_ENODATA: return "no data";
	case ARES_EFORMERR: return "FORMERR";
	case ARES_ENOTIMP: return "NOTIMP";
	case ARES_EBADRESP: return "bad response";
	default: return ares_strerror(status);
	}
}

/* ---------------------------------------------------------------------------
 * Raw answer parsing for TTLs (bounded: every offset is checked against len).
 */

static uint32_t
min_u32(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

/* packet_skip_name: the offset after the name at off, or -1 if it runs past len. */
static int
packet_skip_name(const unsigned char *buf, int len, int off)
{
	while (off < len) {
		unsigned c = buf[off];
		if (c == 0)
			return off + 1;
		if ((c & 0xC0) == 0xC0)
			return off + 2 <= len ? off + 2 : -1;
		if (c & 0xC0)
			return -1;
		off += 1 + (int)c;
	}
	return -1;
}

/*
 * packet_ttls: the smallest TTL of the answer records of type rtype
 * (*have_ans = 1 when there is one), and the negative TTL from an SOA in the
 * authority section, min(its TTL, its MINIMUM) (RFC 2308). 0, or -1 when the
 * packet is malformed (what was read before stays valid).
 */
static int
packet_ttls(const unsigned char *buf, int len, int rtype, uint32_t *ans_ttl, int *have_ans, uint32_t *neg_ttl,
            int *have_neg)
{
	if (len < 12)
		return -1;
	unsigned qd = (unsigned)(buf[4] << 8 | buf[5]);
	unsigned an = (unsigned)(buf[6] << 8 | buf[7]);
	unsigned ns = (unsigned)(buf[8] << 8 | buf[9]);
	int off = 12;

	for (unsigned i = 0; i < qd; i++) {
		off = packet_skip_name(buf, len, off);
		if (off < 0 || off + 4 > len)
			return -1;
		off += 4;
	}
	for (unsigned i = 0; i < an + ns; i++) {
		off = packet_skip_name(buf, len, off);
		if (off < 0 || off + 10 > len)
			return -1;
		int type = buf[off] << 8 | buf[off + 1];
		uint32_t ttl = (uint32_t)buf[off + 4] << 24 | (uint32_t)buf[off + 5] << 16 |
		               (uint32_t)buf[off + 6] << 8 | buf[off + 7];
		int rdlen = buf[off + 8] << 8 | buf[off + 9];
		off += 10;
		if (off + rdlen > len)
			return -1;
		if (ttl > 0x7fffffff)
			ttl = 0;  /* RFC 2181 8: treat as zero */
		if (i < an && type == rtype) {
			*ans_ttl = *have_ans ? min_u32(*ans_ttl, ttl) : ttl;
			*have_ans = 1;
		} else if (i >= an && type == DNS_T_SOA && rdlen >= 22) {
			const unsigned char *m = buf + off + rdlen - 4;
			uint32_t minimum = (uint32_t)m[0] << 24 | (uint32_t)m[1] << 16 |
			                   (uint32_t)m[2] << 8 | m[3];
			*neg_ttl = min_u32(ttl, minimum);
			*have_neg = 1;
		}
		off += rdlen;
	}
	return 0;
}

/*
 * outbound.c - connection initiation and the sessions of (domain, binding)
 * pairs.
 *
 *   outbound_open      DNS state, host choice, socket, bind, connect
 *   outbound_feed      hand active mail to idle sessions
 *   outbound_shutdown  close a domain's sessions
 *
 * Initiation follows SPEC §1: before a socket exists the domain's DNS state
 * and its hosts decide (MX_LOOKUP_PENDING / _FAILED, SMTP_NULL_MX,
 * PROHIBITED_IP, HOST_MAX_REACHED, NO_MXS_REACHABLE); then socket(),
 * O_NONBLOCK, bind() to the binding's Bind_Address (connection_post_bind may
 * veto), connect() within Connect_Timeout. A refused, unreachable or timed
 * out address is marked failed for Host_Failure_Retry and the next host is
 * tried; with none left one message is requeued. Each attempt reports to
 * log_client_connection_failure or log_client_connection_success.
 *
 * A session (struct oconn) owns the qmsgs of its transaction while it runs
 * and hands them to the outcome functions (queue/domain.h) when it ends.
 * Everything runs on the domain's loop.
 */
#include "delivery/outbound.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include <impetus/conn_errors.h>
#include <impetus/hooks/core/connection_post_bind.h>
#include <impetus/hooks/core/log_client_connection_failure.h>
#include <impetus/hooks/core/log_client_connection_success.h>
#include <impetus/hooks/core/veto_host_connection.h>
#include <impetus/message.h>

#include "conf/conf.h"
#include "conf/conf_core.h"
#include "conf/throttle.h"
#include "delivery/smtp_client.h"
#include "dns/dns.h"
#include "event/loop.h"
#include "lib/diag.h"
#include "lib/netaddr.h"
#include "lib/xalloc.h"
#include "lib/strbuf.h"
#include "queue/domain.h"
#include "queue/queue_internal.h"

#define LOG_PEER_LEN 64                 /* "[ip6]:port" */
#define OUT_BATCH_MAX 1000              /* Max_Recipients_Per_Batch's ceiling */

enum oconn_state {
	OC_CONNECTING,                      /* connect() in progress */
	OC_GREETING,                        /* banner, EHLO, STARTTLS */
	OC_IDLE,                            /* waiting for mail */
	OC_LOADING,                         /* reading a body from the spool */
	OC_BUSY,                            /* a transaction runs */
	OC_CLOSING,                         /* QUIT sent */
};

struct oconn {
	struct domain *d;                   /* owner */
	int slot;                           /* binding slot */
	LIST_ENTRY(oconn) link;             /* in d->binds[slot].conns */
	struct sockaddr_storage sa;         /* the peer */
	char host[256];                     /* its MX name */
	int fd;                             /* while connecting */
	struct event *ev;                   /* connect wait, idle and throttle timer */
	struct smtp_client *client;         /* after connect */
	enum oconn_state state;
	int dead;                           /* closed while a body loads: free on load */
	unsigned deliveries;                /* transactions done */
	int64_t started_ms;                 /* connect() or the transaction began (monotonic) */
	struct qmsg *msgs[OUT_BATCH_MAX];   /* the transaction's recipients */
	size_t nmsgs;
	struct smtp_txn txn;
	struct smtp_txn_rcpt rcpts[OUT_BATCH_MAX];
};

static void connect_done(evutil_socket_t fd, short what, void *arg);
static void conn_failed(struct oconn *oc, int cause);
static void on_ready(struct smtp_client *c, void *arg);
static void on_txn_done(struct smtp_client *c, struct smtp_txn *t, void *arg);
static void on_closed(struct smtp_client *c, const struct smtp_client_status *st, void *arg);
static void idle_expired(evutil_socket_t fd, short what, void *arg);
static void oconn_feed(struct oconn *oc, const struct conf *c);
static void oconn_free(struct oconn *oc);
static void body_loaded(struct qmsg *m, int ok, const char *reason, void *arg);
static void txn_start(struct oconn *oc);
static struct daddr *addr_find(struct domain *d, const struct sockaddr_storage *sa,
                               struct dhost **host);

static const struct smtp_client_cb oconn_cb = { on_ready, on_txn_done, on_closed };

/* ------------------------------------------------------ reporting */

static void
report_failure(struct domain *d, int slot, const struct sockaddr *sa, int err)
{
	struct timeval now;

	QC_ADD(conn_failures, 1);
	for (int i = 0; i < QUEUE_CONN_CAUSES; i++)
		if (err & (1 << i))
			atomic_fetch_add_explicit(&queue_counters()->conn_failures_by_cause[i], 1,
			                          memory_order_relaxed);
	if (!has_core_log_client_connection_failure_hook())
		return;
	gettimeofday(&now, NULL);
	call_core_log_client_connection_failure_hook((struct sockaddr *)sa, err, &d->pub, slot,
	                                             &now);
}

static void
report_success(struct domain *d, int slot, const struct sockaddr *sa)
{
	struct timeval now;

	if (!has_core_log_client_connection_success_hook())
		return;
	gettimeofday(&now, NULL);
	call_core_log_client_connection_success_hook((struct sockaddr *)sa, &d->pub, slot, &now);
}

/* ------------------------------------------------- choosing a host */

static int
in_cidrs(const struct conf_setting *s, const struct sockaddr_storage *sa)
{
	if (s == NULL)
		return 0;
	for (size_t i = 0; i < s->nlist; i++) {
		struct cidr c;
		char err[64];
		if (cidr_parse(s->list[i], &c, err, sizeof(err)) == 0 &&
		    cidr_match(&c, (const struct sockaddr *)sa))
			return 1;
	}
	return 0;
}

static int
host_limit(const struct conf *c, int slot, const struct dhost *h)
{
	const struct conf_setting *s = conf_resolve_host(c, &conf_opt_max_outbound_connections,
	                                                 slot, h->name);
	return s != NULL ? (int)s->i : -1;
}

#define pick outbound_pick

/* The best usable address: lowest preference with any usable address,
 * fewest sessions among equals (round robin on ties). */
/* Whether address a of host h may take a session now; counts why not. */
static int
addr_usable(struct domain *d, int slot, struct dhost *h, struct daddr *a, int lim,
            const struct conf_setting *proh, const struct conf_setting *skip, int64_t now,
            struct pick *p)
{
	if (in_cidrs(proh, &a->sa)) {
		p->prohibited++;
		return 0;
	}
	if (in_cidrs(skip, &a->sa)) {
		p->skipped++;
		return 0;
	}
	if (a->failed_until_ms > now) {
		p->failed++;
		return 0;
	}
	if (lim >= 0 && h->conns >= (unsigned)lim) {
		p->at_max++;
		return 0;
	}
	if (has_core_veto_host_connection_hook() &&
	    call_core_veto_host_connection_hook((host_record *)h, &d->pub, slot, lim,
	                                        (int)h->conns) != 0) {
		p->at_max++;
		return 0;
	}
	return 1;
}

void
outbound_pick(struct domain *d, int slot, const struct conf *c, int64_t now, struct pick *p)
{
	const struct conf_setting *proh = conf_global(c, &conf_opt_prohibited_hosts);
	const struct conf_setting *skip = conf_resolve(c, &conf_opt_skip_hosts, slot, d->pub.domain);
	size_t i = 0;

	memset(p, 0, sizeof(*p));
	while (i < d->nhosts && p->addr == NULL) {
		unsigned pref = d->hosts[i].pref, best = ~0u;
		size_t j, end, nbest = 0, want;

		/* First pass: the fewest sessions among the usable addresses of this preference. */
		for (end = i; end < d->nhosts && d->hosts[end].pref == pref; end++) {
			struct dhost *h = &d->hosts[end];
			int lim = host_limit(c, slot, h);
			for (size_t k = 0; k < h->naddrs; k++) {
				struct daddr *a = &h->addrs[k];
				p->total++;
				if (!addr_usable(d, slot, h, a, lim, proh, skip, now, p))
					continue;
				if (a->conns < best) {
					best = a->conns;
					nbest = 0;
				}
				if (a->conns == best)
					nbest++;
			}
		}
		/* Second pass: round robin among those with that many. */
		if (nbest > 0) {
			struct pick scratch;
			want = d->rr % nbest;
			memset(&scratch, 0, sizeof(scratch));
			for (j = i; j < end && p->addr == NULL; j++) {
				struct dhost *h = &d->hosts[j];
				int lim = host_limit(c, slot, h);
				for (size_t k = 0; k < h->naddrs; k++) {
					struct daddr *a = &h->addrs[k];
					if (a->conns != best ||
					    !addr_usable(d, slot, h, a, lim, proh, skip, now, &scratch))
						continue;
					if (want-- == 0) {
						p->addr = a;
						p->host = h;
						break;
					}
				}
			}
		}
		i = end;
	}
	if (p->addr != NULL)
		d->rr++;
}

/* ------------------------------------------------------ initiation */

static int
classify_connect(int err)
{
	switch (err) {
	case ENETUNREACH:
	case EHOSTUNREACH:
	case ENETDOWN:
	case EHOSTDOWN:
		return CONN_ERROR_CONNECT_NETWORK;
	case ETIMEDOUT:
		return CONN_ERROR_CONNECT_TIMEOUT;
	default:
		return CONN_ERROR_CONNECT;
	}
}

static const char *
note_of(int cause)
{
	switch (cause) {
	case CONN_ERROR_NO_MXS_REACHABLE:
		return "451 4.4.1 [internal] No valid hosts (all MXs failed recently)";
	case CONN_ERROR_SOCKET:
		return "451 4.3.0 [internal] cannot create a socket";
	case CONN_ERROR_IOCTL:
		return "451 4.3.0 [internal] cannot set up a socket";
	case CONN_ERROR_BIND:
		return "451 4.3.0 [internal] cannot bind to the binding's address";
	case CONN_ERROR_CONNECT:
		return "451 4.4.1 [internal] Connection refused";
	case CONN_ERROR_CONNECT_NETWORK:
		return "451 4.4.1 [internal] Network unreachable";
	case CONN_ERROR_CONNECT_TIMEOUT:
		return "450 4.4.1 [internal] Connection Timed Out";
	default:
		return "451 4.4.0 [internal] connection failed";
	}
}

/* The failure of a step before connect(): report, requeue one. */
static int
fail_local(struct domain *d, int slot, const struct sockaddr_storage *sa, int cause)
{
	int err = cause | CONN_ACTION_REQUEUE1;

	report_failure(d, slot, (const struct sockaddr *)sa, err);
	domain_requeue1(d, slot, note_of(cause));
	return err;
}

int
outbound_open(struct domain *d, int slot, const struct conf *c, int64_t *wake_ms)
{
	struct dbind *b = domain_bind(d, slot);
	int64_t now = queue_now_ms();
	struct pick p;
	struct oconn *oc;
	int fd, err;

	/* DNS */
	if (!d->static_routes) {
		if (d->dns == DD_NONE || (d->dns_expires_ms <= now && d->query == NULL))
			domain_dns_start(d);
		if (d->dns == DD_PENDING) {
			report_failure(d, slot, NULL, CONN_ERROR_MX_LOOKUP_PENDING);
			return CONN_ERROR_MX_LOOKUP_PENDING;
		}
		if (d->dns == DD_FAILED) {
			int purge_after = (int)conf_resolve(c, &conf_opt_dns_failures_to_purge, slot,
			                                    d->pub.domain)->i;
			switch (d->dns_status) {
			case DNS_NULL_MX:
				err = CONN_ERROR_SMTP_NULL_MX | CONN_ACTION_PURGE_DOMAIN;
				report_failure(d, slot, NULL, err);
				domain_purge(d, "556 5.1.10 [internal] recipient domain does not accept "
				                "mail (null MX, RFC 7505)");
				return err;
			case DNS_TEMPFAIL:
				if (d->dns_failures < (unsigned)purge_after) {
					report_failure(d, slot, NULL, CONN_ERROR_MX_LOOKUP_FAILED);
					*wake_ms = d->dns_expires_ms;
					return CONN_ERROR_MX_LOOKUP_FAILED;
				}
				/* FALLTHROUGH */
			default:
				err = CONN_ERROR_MX_LOOKUP_FAILED | CONN_ACTION_PURGE_DOMAIN;
				report_failure(d, slot, NULL, err);
				domain_purge(d, d->dns_status == DNS_NO_ADDRESS ?
				             "554 5.4.4 [internal] no MX or A for domain" :
				             "554 5.4.4 [internal] Domain Lookup Failed");
				d->dns_failures = 0;
				return err;
			}
		}
	}

	/* Host */
	outbound_pick(d, slot, c, now, &p);
	if (p.addr == NULL) {
		if (p.prohibited > 0 && p.prohibited + p.skipped == p.total) {
			err = CONN_ERROR_PROHIBITED_IP | CONN_ACTION_PURGE_DOMAIN;
			report_failure(d, slot, NULL, err);
			domain_purge(d, "551 5.4.6 [internal] Private/Loopback Address");
			return err;
		}
		if (p.at_max > 0) {
			report_failure(d, slot, NULL, CONN_ERROR_HOST_MAX_REACHED);
			return CONN_ERROR_HOST_MAX_REACHED;
		}
		err = CONN_ERROR_NO_MXS_REACHABLE | CONN_ACTION_REQUEUE1;
		report_failure(d, slot, NULL, err);
		domain_requeue1(d, slot, note_of(CONN_ERROR_NO_MXS_REACHABLE));
		return err;
	}

	/* Limits of the server and the throttle of new connections */
	if (atomic_load(&queue_counters()->conns) >=
	    (uint64_t)conf_resolve(c, &conf_opt_server_max_outbound_connections, slot,
	                           d->pub.domain)->i) {
		report_failure(d, slot, NULL, CONN_ERROR_HOST_MAX_REACHED);
		*wake_ms = now + 100;
		return CONN_ERROR_HOST_MAX_REACHED;
	}
	{
		const struct conf_setting *thr = conf_resolve(c, &conf_opt_outbound_throttle_connections,
		                                              slot, d->pub.domain);
		uint64_t wait_us;
		if (thr != NULL && thr->throttle != NULL &&
		    !throttle_take(thr->throttle, (uint64_t)now * 1000, &wait_us)) {
			*wake_ms = now + (int64_t)(wait_us / 1000) + 1;
			return CONN_ERROR_HOST_MAX_REACHED | 0;     /* not an attempt: no report */
		}
	}

	/* Socket */
	QC_ADD(conn_attempts, 1);
	if ((fd = socket(p.addr->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return fail_local(d, slot, &p.addr->sa, CONN_ERROR_SOCKET);
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
		close(fd);
		return fail_local(d, slot, &p.addr->sa, CONN_ERROR_IOCTL);
	}
	{
		const struct conf_setting *ba = conf_resolve(c, &conf_opt_bind_address, slot,
		                                             d->pub.domain);
		socklen_t salen = p.addr->sa.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
		                                                   : sizeof(struct sockaddr_in);
		if (ba != NULL && ba->s != NULL && ba->s[0] != '\0') {
			struct sockaddr_storage local;
			char e[128];
			if (conf_hostport_parse(ba->s, 0, &local, e, sizeof(e)) < 0 ||
			    local.ss_family != p.addr->sa.ss_family ||
			    bind(fd, (struct sockaddr *)&local, salen) < 0) {
				close(fd);
				return fail_local(d, slot, &p.addr->sa, CONN_ERROR_BIND);
			}
		}
		if (has_core_connection_post_bind_hook() &&
		    call_core_connection_post_bind_hook(&d->pub, slot, fd,
		                                        (struct sockaddr *)&p.addr->sa, (int)salen) != 0) {
			close(fd);
			return fail_local(d, slot, &p.addr->sa, CONN_ERROR_BIND);
		}
		oc = xcalloc(1, sizeof(*oc));
		oc->d = d;
		oc->slot = slot;
		oc->fd = fd;
		memcpy(&oc->sa, &p.addr->sa, sizeof(oc->sa));
		snprintf(oc->host, sizeof(oc->host), "%s", p.host->name);
		oc->state = OC_CONNECTING;
		oc->started_ms = queue_now_ms();
		p.addr->conns++;
		p.host->conns++;
		b->nconns++;
		LIST_INSERT_HEAD(&b->conns, oc, link);
		QC_ADD(conns, 1);
		if (connect(fd, (struct sockaddr *)&oc->sa, salen) < 0 && errno != EINPROGRESS) {
			conn_failed(oc, classify_connect(errno));
			return 0;
		}
	}
	{
		struct timeval tv = {
			conf_resolve(c, &conf_opt_connect_timeout, slot, d->pub.domain)->i, 0 };
		oc->ev = event_new(loop_base(d->ql->loop), fd, EV_WRITE, connect_done, oc);
		event_add(oc->ev, &tv);
	}
	return 0;
}

static struct daddr *
addr_find(struct domain *d, const struct sockaddr_storage *sa, struct dhost **host)
{
	for (size_t i = 0; i < d->nhosts; i++)
		for (size_t j = 0; j < d->hosts[i].naddrs; j++) {
			struct daddr *a = &d->hosts[i].addrs[j];
			if (a->sa.ss_family == sa->ss_family &&
			    memcmp(&a->sa, sa, sa->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
			                                                 : sizeof(struct sockaddr_in)) == 0) {
				*host = &d->hosts[i];
				return a;
			}
		}
	return NULL;
}

/* Forget oc in the counters of its domain. */
static void
oconn_unlink(struct oconn *oc)
{
	struct dhost *h;
	struct daddr *a = addr_find(oc->d, &oc->sa, &h);
	struct dbind *b = domain_bind(oc->d, oc->slot);

	if (a != NULL) {
		if (a->conns > 0)
			a->conns--;
		if (h->conns > 0)
			h->conns--;
	}
	b->nconns--;
	LIST_REMOVE(oc, link);
	QC_SUB(conns, 1);
}

/* The address failed (connect or greeting): mark it for Host_Failure_Retry. */
static void
mark_failed(struct domain *d, int slot, const struct sockaddr_storage *sa, const struct conf *c,
            const char *why)
{
	struct dhost *h;
	struct daddr *a = addr_find(d, sa, &h);
	int64_t now = queue_now_ms();

	if (a != NULL) {
		a->failed_until_ms = now + conf_resolve(c, &conf_opt_host_failure_retry, slot,
		                                        d->pub.domain)->i * 1000;
		a->failures++;
		a->last_failure_s = queue_wall_us() / 1000000;
		snprintf(a->last_failure, sizeof(a->last_failure), "%s", why);
	}
	d->mx_failures++;
	if (d->failing_since_ms == 0)
		d->failing_since_ms = now;
}

/* Too many failures: MX_Failures_To_Delay, Connect_Timeout_To_Delay. */
static void
check_delay(struct domain *d, int slot, const struct conf *c)
{
	int64_t lim = conf_resolve(c, &conf_opt_mx_failures_to_delay, slot, d->pub.domain)->i;
	int64_t tlim = conf_resolve(c, &conf_opt_connect_timeout_to_delay, slot, d->pub.domain)->i;
	int64_t now = queue_now_ms();

	if ((lim > 0 && d->mx_failures >= (uint64_t)lim) ||
	    (tlim > 0 && d->failing_since_ms != 0 && now - d->failing_since_ms >= tlim * 1000)) {
		d->mx_failures = 0;
		d->failing_since_ms = 0;
		domain_delay_active(d, "451 4.4.1 [internal] the domain's MXs keep failing: "
		                       "its mail is delayed");
	}
}

static void
conn_failed(struct oconn *oc, int cause)
{
	struct domain *d = oc->d;
	int slot = oc->slot;
	struct sockaddr_storage sa = oc->sa;
	struct conf *c = conf_current();
	struct pick p;

	if (oc->ev != NULL)
		event_free(oc->ev);
	oc->ev = NULL;
	close(oc->fd);
	oconn_unlink(oc);
	free(oc);
	mark_failed(d, slot, &sa, c, conn_error_name(cause));
	outbound_pick(d, slot, c, queue_now_ms(), &p);
	if (p.addr != NULL) {
		report_failure(d, slot, (struct sockaddr *)&sa, cause);
		check_delay(d, slot, c);
		domain_kick(d);
	} else {
		report_failure(d, slot, (struct sockaddr *)&sa, cause | CONN_ACTION_REQUEUE1);
		domain_requeue1(d, slot, note_of(cause));
		check_delay(d, slot, c);
		domain_kick(d);
	}
	conf_unref(c);
}

static void
connect_done(evutil_socket_t fd, short what, void *arg)
{
	struct oconn *oc = arg;
	struct domain *d = oc->d;
	struct conf *c;
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	if (what & EV_TIMEOUT) {
		conn_failed(oc, CONN_ERROR_CONNECT_TIMEOUT);
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		soerr = errno;
	if (soerr != 0) {
		conn_failed(oc, classify_connect(soerr));
		return;
	}
	event_free(oc->ev);
	oc->ev = NULL;
	d->mx_failures = 0;
	d->failing_since_ms = 0;
	{
		struct dhost *h;
		struct daddr *a = addr_find(d, &oc->sa, &h);
		if (a != NULL) {
			a->failures = 0;
			a->connect_ms = (uint32_t)(queue_now_ms() - oc->started_ms);
		}
	}
	report_success(d, oc->slot, (struct sockaddr *)&oc->sa);

	c = conf_current();
	{
		const char *dom = d->pub.domain;
		int slot = oc->slot;
		const struct conf_setting *ehlo = conf_resolve(c, &conf_opt_ehlo_hostname, slot, dom);
		char hostname[256];
		struct smtp_client_params prm;

		if (ehlo == NULL || ehlo->s == NULL || ehlo->s[0] == '\0') {
			if (gethostname(hostname, sizeof(hostname)) < 0)
				snprintf(hostname, sizeof(hostname), "localhost");
			hostname[sizeof(hostname) - 1] = '\0';
		} else {
			snprintf(hostname, sizeof(hostname), "%s", ehlo->s);
		}
		memset(&prm, 0, sizeof(prm));
		prm.ehlo_name = hostname;
		prm.tls = (enum smtp_client_tls)conf_resolve(c, &conf_opt_tls, slot, dom)->i;
		prm.verify = (enum smtp_client_verify)conf_resolve(c, &conf_opt_tls_verify, slot, dom)->i;
		prm.tls_host = oc->host;
		prm.banner_ms = (unsigned)conf_resolve(c, &conf_opt_connect_timeout, slot, dom)->i * 1000;
		prm.ehlo_ms = (unsigned)conf_resolve(c, &conf_opt_ehlo_timeout, slot, dom)->i * 1000;
		prm.starttls_ms = prm.ehlo_ms;
		prm.mailfrom_ms = (unsigned)conf_resolve(c, &conf_opt_mailfrom_timeout, slot, dom)->i * 1000;
		prm.rcptto_ms = (unsigned)conf_resolve(c, &conf_opt_rcptto_timeout, slot, dom)->i * 1000;
		prm.data_ms = (unsigned)conf_resolve(c, &conf_opt_data_timeout, slot, dom)->i * 1000;
		prm.body_ms = (unsigned)conf_resolve(c, &conf_opt_body_timeout, slot, dom)->i * 1000;
		prm.quit_ms = 30000;
		oc->state = OC_GREETING;
		oc->fd = -1;
		oc->client = smtp_client_new(loop_base(d->ql->loop), fd, &prm, &oconn_cb, oc);
	}
	conf_unref(c);
}

/* ------------------------------------------------------- sessions */

static void
on_ready(struct smtp_client *cl, void *arg)
{
	struct oconn *oc = arg;
	struct conf *c = conf_current();

	(void)cl;
	oc->state = OC_IDLE;
	oconn_feed(oc, c);
	conf_unref(c);
}

static void
idle_arm(struct oconn *oc, int64_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000) };

	if (oc->ev == NULL)
		oc->ev = event_new(loop_base(oc->d->ql->loop), -1, 0, idle_expired, oc);
	event_add(oc->ev, &tv);
}

static void
idle_expired(evutil_socket_t fd, short what, void *arg)
{
	struct oconn *oc = arg;
	struct conf *c;

	(void)fd;
	(void)what;
	if (oc->state != OC_IDLE)
		return;
	c = conf_current();
	oconn_feed(oc, c);
	if (oc->state == OC_IDLE && oc->client != NULL) {
		int64_t idle = conf_resolve(c, &conf_opt_idle_timeout, oc->slot, oc->d->pub.domain)->i;
		(void)idle;
		oc->state = OC_CLOSING;
		smtp_client_quit(oc->client);
	}
	conf_unref(c);
}

static void
oconn_feed(struct oconn *oc, const struct conf *c)
{
	struct domain *d = oc->d;
	const char *dom = d->pub.domain;
	int64_t maxdel = conf_resolve(c, &conf_opt_max_deliveries_per_connection, oc->slot, dom)->i;
	int64_t batch = conf_resolve(c, &conf_opt_max_recipients_per_batch, oc->slot, dom)->i;
	const struct conf_setting *thr;
	int64_t now = queue_now_ms();
	uint64_t wait_us;

	if (oc->state != OC_IDLE)
		return;
	if (maxdel > 0 && oc->deliveries >= (uint64_t)maxdel) {
		oc->state = OC_CLOSING;
		smtp_client_quit(oc->client);
		return;
	}
	if (domain_bind(d, oc->slot)->nactive == 0 ||
	    conf_resolve(c, &conf_opt_suspend_delivery, oc->slot, dom)->i) {
		idle_arm(oc, conf_resolve(c, &conf_opt_idle_timeout, oc->slot, dom)->i * 1000);
		return;
	}
	thr = conf_resolve(c, &conf_opt_outbound_throttle_messages, oc->slot, dom);
	if (thr != NULL && thr->throttle != NULL &&
	    !throttle_take(thr->throttle, (uint64_t)now * 1000, &wait_us)) {
		idle_arm(oc, (int64_t)(wait_us / 1000) + 1);
		return;
	}
	if (batch > OUT_BATCH_MAX)
		batch = OUT_BATCH_MAX;
	oc->nmsgs = domain_active_take(d, oc->slot, oc->msgs, (size_t)batch);
	if (oc->nmsgs == 0)
		return;
	if (oc->ev != NULL)
		event_del(oc->ev);
	if (qmsg_data_hold(oc->msgs[0]) == NULL) {
		oc->state = OC_LOADING;
		qmsg_data_load(oc->msgs[0], body_loaded, oc);
		return;
	}
	txn_start(oc);
}

static void
body_loaded(struct qmsg *m, int ok, const char *reason, void *arg)
{
	struct oconn *oc = arg;
	char note[256];

	(void)m;
	if (oc->dead || oc->d->ql->stopping) {
		for (size_t i = 0; i < oc->nmsgs; i++) {
			if (oc->d->ql->stopping) {
				domain_unlink(oc->d, oc->msgs[i]);
				qmsg_free(oc->msgs[i]);
			} else {
				domain_unlink(oc->d, oc->msgs[i]);
				domain_active_push(oc->d, oc->msgs[i], 1);
			}
		}
		if (!oc->d->ql->stopping)
			domain_kick(oc->d);
		free(oc);
		return;
	}
	if (!ok) {
		snprintf(note, sizeof(note), "451 4.3.0 [internal] cannot read the message from the "
		         "spool: %s", reason != NULL ? reason : "unknown error");
		for (size_t i = 0; i < oc->nmsgs; i++)
			qmsg_transient(oc->msgs[i], NULL, 0, note);
		oc->nmsgs = 0;
		oc->state = OC_IDLE;
		{
			struct conf *c = conf_current();
			oconn_feed(oc, c);
			conf_unref(c);
		}
		return;
	}
	txn_start(oc);
}

static void
txn_start(struct oconn *oc)
{
	struct qbody *body = oc->msgs[0]->body;
	const char *data = qmsg_data_hold(oc->msgs[0]);

	for (size_t i = 1; i < oc->nmsgs; i++)
		qmsg_data_hold(oc->msgs[i]);
	memset(&oc->txn, 0, sizeof(oc->txn));
	oc->txn.mail_from = body->mail_from;
	oc->txn.flags = ((body->flags & SPOOL_F_8BITMIME) ? SMTP_TXN_8BITMIME : 0) |
	                ((body->flags & SPOOL_F_SMTPUTF8) ? SMTP_TXN_SMTPUTF8 : 0);
	oc->txn.envid = body->envid;
	oc->txn.ret = body->ret;
	oc->txn.body = data;
	oc->txn.body_len = (size_t)body->size;
	oc->txn.rcpts = oc->rcpts;
	oc->txn.nrcpt = oc->nmsgs;
	for (size_t i = 0; i < oc->nmsgs; i++) {
		memset(&oc->rcpts[i], 0, sizeof(oc->rcpts[i]));
		oc->rcpts[i].rcpt = oc->msgs[i]->rcpt;
		oc->rcpts[i].orcpt = oc->msgs[i]->orcpt;
		oc->rcpts[i].notify = oc->msgs[i]->notify;
	}
	oc->state = OC_BUSY;
	oc->started_ms = queue_now_ms();
	if (smtp_client_send(oc->client, &oc->txn) < 0) {
		for (size_t i = 0; i < oc->nmsgs; i++) {
			domain_unlink(oc->d, oc->msgs[i]);
			domain_active_push(oc->d, oc->msgs[i], 1);
		}
		oc->nmsgs = 0;
		oc->state = OC_CLOSING;
		smtp_client_quit(oc->client);
	}
}

static void
on_txn_done(struct smtp_client *cl, struct smtp_txn *t, void *arg)
{
	struct oconn *oc = arg;
	struct qmsg *failed[OUT_BATCH_MAX], *rfailed[OUT_BATCH_MAX];
	const char *replies[OUT_BATCH_MAX], *rreplies[OUT_BATCH_MAX];
	size_t nfailed = 0, nrfailed = 0;
	struct conf *c;

	for (size_t i = 0; i < oc->nmsgs; i++) {
		struct qmsg *m = oc->msgs[i];
		const struct smtp_txn_rcpt *r = &t->rcpts[i];
		int stage = r->stage != 0 ? r->stage : t->stage;
		if (r->code >= 200 && r->code < 300)
			qmsg_delivered(m, (struct sockaddr *)&oc->sa, r->reply);
		else if (r->code >= 500 && r->code < 600 && stage == 4) {
			rfailed[nrfailed] = m;
			rreplies[nrfailed++] = r->reply;
		}
		else if (r->code >= 500 && r->code < 600) {
			failed[nfailed] = m;
			replies[nfailed++] = r->reply;
		} else
			qmsg_transient(m, (struct sockaddr *)&oc->sa, stage, r->reply);
	}
	{
		struct dhost *h;
		struct daddr *a = addr_find(oc->d, &oc->sa, &h);
		if (a != NULL) {
			a->delivery_ms = (uint32_t)(queue_now_ms() - oc->started_ms);
			if (t->temp_session || t->rcpts[0].code < 200 || t->rcpts[0].code >= 300) {
				a->last_failure_s = queue_wall_us() / 1000000;
				snprintf(a->last_failure, sizeof(a->last_failure), "%.95s", t->rcpts[0].reply);
			}
		}
	}
	if (nrfailed > 0)       /* refused at RCPT: one report for them all */
		qmsg_failed_group(rfailed, rreplies, nrfailed, (struct sockaddr *)&oc->sa, 4);
	if (nfailed > 0)
		qmsg_failed_group(failed, replies, nfailed, (struct sockaddr *)&oc->sa, t->stage);
	oc->nmsgs = 0;
	oc->deliveries++;
	if (oc->state == OC_BUSY)
		oc->state = OC_IDLE;
	if (smtp_client_idle(cl)) {
		c = conf_current();
		oconn_feed(oc, c);
		conf_unref(c);
	}
}

static void
on_closed(struct smtp_client *cl, const struct smtp_client_status *st, void *arg)
{
	struct oconn *oc = arg;
	struct domain *d = oc->d;

	(void)cl;
	if (oc->state == OC_GREETING) {
		/* The host would not talk to us: avoid it for Host_Failure_Retry. */
		struct conf *c = conf_current();
		mark_failed(d, oc->slot, &oc->sa, c, st->reply);
		check_delay(d, oc->slot, c);
		conf_unref(c);
	}
	smtp_client_free(oc->client);
	oc->client = NULL;
	if (oc->state == OC_LOADING) {
		oc->dead = 1;           /* body_loaded frees it */
		oconn_unlink(oc);
		if (oc->ev != NULL)
			event_free(oc->ev);
		oc->ev = NULL;
		domain_kick(d);
		return;
	}
	for (size_t i = 0; i < oc->nmsgs; i++) {
		domain_unlink(d, oc->msgs[i]);
		domain_active_push(d, oc->msgs[i], 1);
	}
	oc->nmsgs = 0;
	oconn_unlink(oc);
	oconn_free(oc);
	domain_kick(d);
}

static void
oconn_free(struct oconn *oc)
{
	if (oc->ev != NULL)
		event_free(oc->ev);
	if (oc->client != NULL)
		smtp_client_free(oc->client);
	if (oc->fd >= 0 && oc->state == OC_CONNECTING)
		close(oc->fd);
	free(oc);
}

void
outbound_feed(struct domain *d, int slot, const struct conf *c)
{
	struct dbind *b = domain_bind(d, slot);
	struct oconn *oc, *next;

	for (oc = LIST_FIRST(&b->conns); oc != NULL && b->nactive > 0; oc = next) {
		next = LIST_NEXT(oc, link);
		if (oc->state == OC_IDLE)
			oconn_feed(oc, c);
	}
}

static const char *
oconn_state_name(enum oconn_state st)
{
	switch (st) {
	case OC_CONNECTING: return "connecting";
	case OC_GREETING: return "greeting";
	case OC_IDLE: return "idle";
	case OC_LOADING: return "reading a body";
	case OC_BUSY: return "in a transaction";
	case OC_CLOSING: return "closing";
	}
	return "?";
}

void
outbound_describe(struct domain *d, int slot, struct strbuf *out)
{
	struct dbind *b = domain_bind(d, slot);
	struct oconn *oc;
	int64_t now = queue_now_ms();

	LIST_FOREACH(oc, &b->conns, link) {
		char peer[LOG_PEER_LEN];
		sockaddr_render_ip_port((const struct sockaddr *)&oc->sa, peer, sizeof(peer));
		strbuf_printf(out, "    session to %s (%s): %s, %u transactions, %llds in this state\n",
		              peer, oc->host, oconn_state_name(oc->state), oc->deliveries,
		              (long long)((now - oc->started_ms) / 1000));
	}
}

void
outbound_move_conns(struct dbind *to, struct dbind *from)
{
	struct oconn *oc;

	while ((oc = LIST_FIRST(&from->conns)) != NULL) {
		LIST_REMOVE(oc, link);
		LIST_INSERT_HEAD(&to->conns, oc, link);
	}
}

void
outbound_shutdown(struct domain *d)
{
	for (size_t s = 0; s < d->nbinds; s++) {
		struct oconn *oc;
		while ((oc = LIST_FIRST(&d->binds[s].conns)) != NULL) {
			oconn_unlink(oc);
			if (oc->state == OC_LOADING) {
				/* body_loaded frees it and its messages */
				oc->dead = 1;
				if (oc->ev != NULL)
					event_free(oc->ev);
				oc->ev = NULL;
				if (oc->client != NULL)
					smtp_client_free(oc->client);
				oc->client = NULL;
				continue;
			}
			for (size_t i = 0; i < oc->nmsgs; i++) {
				domain_unlink(d, oc->msgs[i]);
				qmsg_free(oc->msgs[i]);
			}
			oc->nmsgs = 0;
			oconn_free(oc);
		}
	}
}

/*
 * dns_test.c - MX resolution against an in-process DNS responder, and the
 * fake backend.
 *
 * The responder is a UDP socket on 127.0.0.1 (ephemeral port) served by the
 * same event_base as the resolver. It answers from a small zone (struct rr)
 * with hand-built packets: MX, A, AAAA, NODATA and NXDOMAIN with an SOA in
 * the authority section (the negative TTL), chosen rcodes (SERVFAIL,
 * REFUSED), and names it never answers (timeouts).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "dns/dns.h"
#include "test.h"

#define T_A    1
#define T_SOA  6
#define T_MX   15
#define T_AAAA 28

/* ---------------------------------------------------------------------------
 * The zone.
 */

struct rr {
	const char *name;
	int type;
	uint32_t ttl;          /* seconds */
	unsigned pref;         /* MX preference */
	const char *data;      /* MX target ("." for a null MX) or address */
};

static const struct rr zone[] = {
	/* equal preferences keep answer order: mx2 before mx1, then mx3 */
	{ "multi.test", T_MX, 600, 20, "mx3.multi.test" },
	{ "multi.test", T_MX, 600, 10, "mx2.multi.test" },
	{ "multi.test", T_MX, 600, 10, "mx1.multi.test" },
	{ "mx1.multi.test", T_A, 300, 0, "127.0.0.11" },
	{ "mx1.multi.test", T_A, 200, 0, "127.0.0.12" },
	{ "mx2.multi.test", T_A, 900, 0, "127.0.0.21" },
	{ "mx2.multi.test", T_AAAA, 50, 0, "::1" },
	{ "mx3.multi.test", T_A, 400, 0, "127.0.0.31" },
	{ "implicit.test", T_A, 120, 0, "127.0.0.5" },
	{ "nullmx.test", T_MX, 777, 0, "." },
	{ "halfbad.test", T_MX, 500, 10, "gone.halfbad.test" },
	{ "halfbad.test", T_MX, 500, 20, "ok.halfbad.test" },
	{ "ok.halfbad.test", T_A, 100, 0, "127.0.0.7" },
	{ "allbad.test", T_MX, 500, 10, "gone.allbad.test" },
	{ "allbad.test", T_MX, 500, 20, "empty.allbad.test" },
	{ "tempbad.test", T_MX, 500, 10, "servfail.test" },
	{ "tempbad.test", T_MX, 500, 20, "gone.tempbad.test" },
	{ "dup.test", T_MX, 300, 20, "a.dup.test" },
	{ "dup.test", T_MX, 300, 10, "A.Dup.Test." },
	{ "a.dup.test", T_A, 300, 0, "127.0.0.8" },
	{ "slowhost.test", T_MX, 300, 10, "silent.test" },
	{ "v6only.test", T_AAAA, 70, 0, "::1" },
};

/* Names with special behaviour, or that exist without records. */
struct special {
	const char *name;
	int rcode;             /* answer with this rcode (0: from the zone) */
	int drop;              /* never answer */
	int exists;            /* NODATA rather than NXDOMAIN for types it lacks */
	uint32_t soa_min;      /* seconds: SOA MINIMUM in negative answers (0: 900) */
};

static const struct special specials[] = {
	{ "servfail.test", 2, 0, 0, 0 },
	{ "refused.test", 5, 0, 0, 0 },
	{ "silent.test", 0, 1, 0, 0 },
	{ "nx.test", 0, 0, 0, 60 },
	{ "empty.allbad.test", 0, 0, 1, 30 },
	{ "noaddr.test", 0, 0, 1, 45 },
};

#define SOA_TTL 3600       /* seconds: TTL of the SOA record itself */

struct responder {
	int fd;
	struct event *ev;
	unsigned queries;      /* datagrams received */
};

static int
name_eq(const char *a, const char *b)
{
	return strcasecmp(a, b) == 0;
}

static const struct special *
special_find(const char *name)
{
	for (size_t i = 0; i < sizeof(specials) / sizeof(specials[0]); i++)
		if (name_eq(specials[i].name, name))
			return &specials[i];
	return NULL;
}

static size_t
put_name(unsigned char *p, const char *name)
{
	size_t n = 0;

	while (*name != '\0' && strcmp(name, ".") != 0) {
		const char *dot = strchr(name, '.');
		size_t len = dot ? (size_t)(dot - name) : strlen(name);
		p[n++] = (unsigned char)len;
		memcpy(p + n, name, len);
		n += len;
		name += len + (dot ? 1 : 0);
	}
	p[n++] = 0;
	return n;
}

static size_t
put16(unsigned char *p, unsigned v)
{
	p[0] = (unsigned char)(v >> 8);
	p[1] = (unsigned char)v;
	return 2;
}

static size_t
put32(unsigned char *p, uint32_t v)
{
	put16(p, v >> 16);
	put16(p + 2, v & 0xffff);
	return 4;
}

/* put_rr: one record; returns its length. */
static size_t
put_rr(unsigned char *p, const char *owner, int type, uint32_t ttl, const unsigned char *rdata, size_t rdlen)
{
	size_t n = put_name(p, owner);

	n += put16(p + n, (unsigned)type);
	n += put16(p + n, 1);
	n += put32(p + n, ttl);
	n += put16(p + n, (unsigned)rdlen);
	memcpy(p + n, rdata, rdlen);
	return n + rdlen;
}

/* build_answer: the reply to (name, qtype) after the question; returns the packet length, 0 to drop. */
static size_t
build_answer(unsigned char *out, const unsigned char *query, size_t qend, const char *name, int qtype)
{
	const struct special *sp = special_find(name);
	unsigned an = 0, ns = 0, rcode = 0;
	int exists = sp != NULL && sp->exists;
	size_t n = qend;
	unsigned char rdata[512];

	if (sp != NULL && sp->drop)
		return 0;
	memcpy(out, query, qend);
	if (sp != NULL && sp->rcode != 0) {
		rcode = (unsigned)sp->rcode;
	} else {
		for (size_t i = 0; i < sizeof(zone) / sizeof(zone[0]); i++) {
			const struct rr *z = &zone[i];
			size_t rdlen = 0;
			if (!name_eq(z->name, name))
				continue;
			exists = 1;
			if (z->type != qtype)
				continue;
			if (z->type == T_MX) {
				rdlen = put16(rdata, z->pref);
				rdlen += put_name(rdata + rdlen, z->data);
			} else if (z->type == T_A) {
				inet_pton(AF_INET, z->data, rdata);
				rdlen = 4;
			} else {
				inet_pton(AF_INET6, z->data, rdata);
				rdlen = 16;
			}
			n += put_rr(out + n, name, z->type, z->ttl, rdata, rdlen);
			an++;
		}
		if (an == 0) {
			size_t rdlen = put_name(rdata, "ns.test");
			rdlen += put_name(rdata + rdlen, "hostmaster.test");
			rdlen += put32(rdata + rdlen, 1);
			rdlen += put32(rdata + rdlen, 3600);
			rdlen += put32(rdata + rdlen, 600);
			rdlen += put32(rdata + rdlen, 86400);
			rdlen += put32(rdata + rdlen, sp != NULL && sp->soa_min ? sp->soa_min : 900);
			n += put_rr(out + n, "test", T_SOA, SOA_TTL, rdata, rdlen);
			ns = 1;
			if (!exists)
				rcode = 3;
		}
	}
	out[2] = 0x84 | (query[2] & 0x01);   /* QR, AA, RD copied */
	out[3] = (unsigned char)(0x80 | rcode); /* RA */
	put16(out + 6, an);
	put16(out + 8, ns);
	put16(out + 10, 0);
	return n;
}

static void
responder_read(evutil_socket_t fd, short what, void *arg)
{
	struct responder *rs = arg;
	unsigned char q[512], out[4096];
	struct sockaddr_storage from;
	socklen_t fromlen = sizeof(from);
	ssize_t len = recvfrom(fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fromlen);
	char name[256];
	size_t off = 12, nlen = 0;

	if (len < 12)
		return;
	rs->queries++;
	while (off < (size_t)len && q[off] != 0) {
		size_t l = q[off++];
		if (off + l > (size_t)len || nlen + l + 1 >= sizeof(name))
			return;
		if (nlen > 0)
			name[nlen++] = '.';
		memcpy(name + nlen, q + off, l);
		nlen += l;
		off += l;
	}
	name[nlen] = '\0';
	off++;
	if (off + 4 > (size_t)len)
		return;
	int qtype = q[off] << 8 | q[off + 1];
	off += 4;
	q[10] = q[11] = 0;  /* drop any EDNS record from the echoed query */
	size_t n = build_answer(out, q, off, name, qtype);
	if (n > 0)
		sendto(fd, out, n, 0, (struct sockaddr *)&from, fromlen);
}

static int
responder_start(struct responder *rs, struct event_base *base)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	memset(rs, 0, sizeof(*rs));
	rs->fd = socket(AF_INET, SOCK_DGRAM, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (rs->fd < 0 || bind(rs->fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
	    getsockname(rs->fd, (struct sockaddr *)&sin, &len) != 0)
		return -1;
	evutil_make_socket_nonblocking(rs->fd);
	rs->ev = event_new(base, rs->fd, EV_READ | EV_PERSIST, responder_read, rs);
	event_add(rs->ev, NULL);
	return ntohs(sin.sin_port);
}

static void
responder_stop(struct responder *rs)
{
	event_free(rs->ev);
	close(rs->fd);
}

/* ---------------------------------------------------------------------------
 * Driving the loop.
 */

struct answer {
	const char *domain;
	struct dns_mx_result *res;     /* owned once the callback ran */
	int calls;                     /* callback runs */
	int *pending;                  /* decremented by the callback */
	double at_s;                   /* seconds since start when answered */
};

static struct event_base *base;
static struct timespec t0;

static double
elapsed_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9;
}

static void
on_answer(struct dns_mx_result *res, void *arg)
{
	struct answer *a = arg;

	a->calls++;
	if (a->res != NULL)
		dns_mx_result_free(a->res);
	a->res = res;
	a->at_s = elapsed_s();
	if (a->pending != NULL && --*a->pending == 0)
		event_base_loopbreak(base);
}

static void
on_guard(evutil_socket_t fd, short what, void *arg)
{
	int *expired = arg;

	*expired = 1;
	event_base_loopbreak(base);
}

/* run_until: dispatch until *pending is 0 or limit_ms passed; 0, or -1 on the limit. */
static int
run_until(int *pending, unsigned limit_ms)
{
	int expired = 0;
	struct timeval tv = { (time_t)(limit_ms / 1000), (suseconds_t)(limit_ms % 1000) * 1000 };
	struct event *guard = evtimer_new(base, on_guard, &expired);

	evtimer_add(guard, &tv);
	while (*pending > 0 && !expired)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(guard);
	return expired ? -1 : 0;
}

/* run_for: dispatch for ms milliseconds. */
static void
run_for(unsigned ms)
{
	int never = 1;

	(void)run_until(&never, ms);
}

static struct dns_resolver *
resolver_for(int port, unsigned timeout_ms, unsigned tries, int ipv6)
{
	char server[64], err[256] = "";
	const char *servers[1] = { server };
	struct dns_config cfg = { servers, 1, timeout_ms, tries, ipv6 };
	struct dns_resolver *r;

	snprintf(server, sizeof(server), "127.0.0.1:%d", port);
	r = dns_resolver_new(base, &cfg, err, sizeof(err));
	CHECK(r != NULL, "dns_resolver_new: got NULL (%s), want a resolver", err);
	return r;
}

/* ---------------------------------------------------------------------------
 * Checking results.
 */

struct want_host {
	const char *name;
	unsigned pref;
	enum dns_status status;
	const char *addrs[3];
};

struct want {
	const char *domain;
	enum dns_status status;
	int implicit;
	uint32_t ttl_s;
	size_t nhosts;
	struct want_host hosts[4];
	const char *reason;            /* substring of reason, or NULL */
};

static void
addr_text(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, buf, (socklen_t)len);
	else if (ss->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, buf, (socklen_t)len);
	else
		snprintf(buf, len, "family %d", ss->ss_family);
}

static void
check_result(const struct want *w, const struct answer *a)
{
	const struct dns_mx_result *res = a->res;
	const char *d = w->domain;

	CHECK(a->calls == 1, "%s: callback ran %d times, want 1", d, a->calls);
	if (res == NULL)
		return;
	CHECK(res->status == w->status, "%s: status got %s, want %s (reason \"%s\")", d,
	      dns_status_name(res->status), dns_status_name(w->status), res->reason);
	CHECK_INT(res->implicit, w->implicit, d);
	CHECK(res->ttl_s == w->ttl_s, "%s: ttl_s got %u, want %u", d, res->ttl_s, w->ttl_s);
	CHECK(res->reason[0] != '\0', "%s: reason got empty, want text", d);
	if (w->reason != NULL)
		CHECK(strstr(res->reason, w->reason) != NULL, "%s: reason got \"%s\", want \"%s\"", d,
		      res->reason, w->reason);
	CHECK(res->nhosts == w->nhosts, "%s: nhosts got %zu, want %zu", d, res->nhosts, w->nhosts);
	for (size_t i = 0; i < res->nhosts && i < w->nhosts; i++) {
		const struct dns_host *h = &res->hosts[i];
		const struct want_host *wh = &w->hosts[i];
		size_t nwant = 0;
		CHECK_STR(h->name, wh->name, d);
		CHECK(h->pref == wh->pref, "%s: host %zu pref got %u, want %u", d, i, h->pref, wh->pref);
		CHECK(h->status == wh->status, "%s: host %s status got %s, want %s", d, h->name,
		      dns_status_name(h->status), dns_status_name(wh->status));
		while (nwant < 3 && wh->addrs[nwant] != NULL)
			nwant++;
		CHECK(h->naddrs == nwant, "%s: host %s naddrs got %zu, want %zu", d, h->name, h->naddrs, nwant);
		for (size_t j = 0; j < h->naddrs && j < nwant; j++) {
			char text[INET6_ADDRSTRLEN];
			addr_text(&h->addrs[j], text, sizeof(text));
			CHECK(strcmp(text, wh->addrs[j]) == 0, "%s: host %s addr %zu got %s, want %s", d, h->name, j,
			      text, wh->addrs[j]);
			int port = h->addrs[j].ss_family == AF_INET
			                   ? ntohs(((const struct sockaddr_in *)&h->addrs[j])->sin_port)
			                   : ntohs(((const struct sockaddr_in6 *)&h->addrs[j])->sin6_port);
			CHECK(port == 0, "%s: port got %d, want 0", d, port);
		}
	}
}

/* resolve_all: ask every domain of cases at once on r and check each answer. */
static void
resolve_all(struct dns_resolver *r, const struct want *cases, size_t n, unsigned limit_ms)
{
	struct answer *answers = calloc(n, sizeof(*answers));
	int pending = (int)n;

	for (size_t i = 0; i < n; i++) {
		answers[i].domain = cases[i].domain;
		answers[i].pending = &pending;
		struct dns_query *q = dns_resolve_mx(r, cases[i].domain, on_answer, &answers[i]);
		CHECK(q != NULL, "%s: dns_resolve_mx got NULL", cases[i].domain);
		CHECK(answers[i].calls == 0, "%s: callback ran inside dns_resolve_mx", cases[i].domain);
	}
	CHECK(run_until(&pending, 10000) == 0, "answers: got %d still pending after 10s, want 0", pending);
	for (size_t i = 0; i < n; i++) {
		check_result(&cases[i], &answers[i]);
		dns_mx_result_free(answers[i].res);
	}
	free(answers);
}

/* ---------------------------------------------------------------------------
 * Tests.
 */

static struct responder responder;
static int port;

static void
test_answers(void)
{
	static const struct want cases[] = {
		{ "multi.test", DNS_OK, 0, 200, 3,
		  { { "mx2.multi.test", 10, DNS_OK, { "127.0.0.21" } },
		    { "mx1.multi.test", 10, DNS_OK, { "127.0.0.11", "127.0.0.12" } },
		    { "mx3.multi.test", 20, DNS_OK, { "127.0.0.31" } } }, "ok" },
		{ "Multi.Test.", DNS_OK, 0, 200, 3,
		  { { "mx2.multi.test", 10, DNS_OK, { "127.0.0.21" } },
		    { "mx1.multi.test", 10, DNS_OK, { "127.0.0.11", "127.0.0.12" } },
		    { "mx3.multi.test", 20, DNS_OK, { "127.0.0.31" } } }, NULL },
		/* ttl: min(A 120, MX NODATA negative 900) */
		{ "implicit.test", DNS_OK, 1, 120, 1,
		  { { "implicit.test", 0, DNS_OK, { "127.0.0.5" } } }, NULL },
		{ "nullmx.test", DNS_NULL_MX, 0, 777, 0, { { NULL, 0, 0, { NULL } } }, "null MX" },
		/* negative TTL: min(SOA TTL 3600, MINIMUM 60) */
		{ "nx.test", DNS_NXDOMAIN, 0, 60, 0, { { NULL, 0, 0, { NULL } } }, "NXDOMAIN" },
		{ "servfail.test", DNS_TEMPFAIL, 0, 0, 0, { { NULL, 0, 0, { NULL } } }, "SERVFAIL" },
		{ "refused.test", DNS_TEMPFAIL, 0, 0, 0, { { NULL, 0, 0, { NULL } } }, "REFUSED" },
		{ "silent.test", DNS_TEMPFAIL, 0, 0, 0, { { NULL, 0, 0, { NULL } } }, "timeout" },
		{ "halfbad.test", DNS_OK, 0, 100, 2,
		  { { "gone.halfbad.test", 10, DNS_NXDOMAIN, { NULL } },
		    { "ok.halfbad.test", 20, DNS_OK, { "127.0.0.7" } } }, NULL },
		/* every host NXDOMAIN/NODATA: permanent; ttl min(MX 500, negatives 900, 30) */
		{ "allbad.test", DNS_NO_ADDRESS, 0, 30, 2,
		  { { "gone.allbad.test", 10, DNS_NXDOMAIN, { NULL } },
		    { "empty.allbad.test", 20, DNS_NO_ADDRESS, { NULL } } }, NULL },
		/* one host transient, the other permanent: transient wins */
		{ "tempbad.test", DNS_TEMPFAIL, 0, 0, 2,
		  { { "servfail.test", 10, DNS_TEMPFAIL, { NULL } },
		    { "gone.tempbad.test", 20, DNS_NXDOMAIN, { NULL } } }, "SERVFAIL" },
		/* no MX, no A: ttl = min(negative TTLs) = 45 */
		{ "noaddr.test", DNS_NO_ADDRESS, 1, 45, 1,
		  { { "noaddr.test", 0, DNS_NO_ADDRESS, { NULL } } }, NULL },
		/* no MX, and the implicit A is NXDOMAIN... only AAAA exists, no ipv6 here */
		{ "v6only.test", DNS_NO_ADDRESS, 1, 900, 1,
		  { { "v6only.test", 0, DNS_NO_ADDRESS, { NULL } } }, NULL },
		/* the same target twice: the better preference is kept, once */
		{ "dup.test", DNS_OK, 0, 300, 1, { { "a.dup.test", 10, DNS_OK, { "127.0.0.8" } } }, NULL },
		{ "slowhost.test", DNS_TEMPFAIL, 0, 0, 1,
		  { { "silent.test", 10, DNS_TEMPFAIL, { NULL } } }, "silent.test: timeout" },
		{ "[127.0.0.9]", DNS_OK, 1, 0, 1, { { "127.0.0.9", 0, DNS_OK, { "127.0.0.9" } } }, NULL },
		{ "[IPv6:::1]", DNS_OK, 1, 0, 1, { { "::1", 0, DNS_OK, { "::1" } } }, NULL },
		{ "10.1.2.3", DNS_OK, 1, 0, 1, { { "10.1.2.3", 0, DNS_OK, { "10.1.2.3" } } }, NULL },
		{ "[bogus]", DNS_NXDOMAIN, 0, 0, 0, { { NULL, 0, 0, { NULL } } }, "literal" },
		{ "", DNS_NXDOMAIN, 0, 0, 0, { { NULL, 0, 0, { NULL } } }, NULL },
	};
	struct dns_resolver *r = resolver_for(port, 200, 1, 0);
	struct dns_stats st;

	if (r == NULL)
		return;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	resolve_all(r, cases, sizeof(cases) / sizeof(cases[0]), 10000);
	dns_resolver_stats(r, &st);
	CHECK(st.queries == sizeof(cases) / sizeof(cases[0]), "stats.queries got %llu, want %zu",
	      (unsigned long long)st.queries, sizeof(cases) / sizeof(cases[0]));
	CHECK(st.inflight == 0, "stats.inflight got %llu, want 0", (unsigned long long)st.inflight);
	CHECK(st.failures == 12, "stats.failures got %llu, want 12", (unsigned long long)st.failures);
	dns_resolver_free(r);
}

static void
test_ipv6(void)
{
	static const struct want cases[] = {
		{ "multi.test", DNS_OK, 0, 50, 3,
		  { { "mx2.multi.test", 10, DNS_OK, { "127.0.0.21", "::1" } },
		    { "mx1.multi.test", 10, DNS_OK, { "127.0.0.11", "127.0.0.12" } },
		    { "mx3.multi.test", 20, DNS_OK, { "127.0.0.31" } } }, NULL },
		{ "v6only.test", DNS_OK, 1, 70, 1, { { "v6only.test", 0, DNS_OK, { "::1" } } }, NULL },
	};
	struct dns_resolver *r = resolver_for(port, 0, 0, 1);

	if (r == NULL)
		return;
	resolve_all(r, cases, sizeof(cases) / sizeof(cases[0]), 10000);
	dns_resolver_free(r);
}

/* A timeout answers after about timeout_ms x tries, not the defaults. */
static void
test_timeout(void)
{
	struct dns_resolver *r = resolver_for(port, 200, 1, 0);
	struct answer a = { "silent.test", NULL, 0, NULL, 0 };
	int pending = 1;

	if (r == NULL)
		return;
	a.pending = &pending;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	dns_resolve_mx(r, "silent.test", on_answer, &a);
	CHECK(run_until(&pending, 5000) == 0, "silent.test: no answer within 5s");
	CHECK(a.res != NULL && a.res->status == DNS_TEMPFAIL, "silent.test: got %s, want tempfail",
	      a.res ? dns_status_name(a.res->status) : "nothing");
	CHECK(a.at_s >= 0.15 && a.at_s < 1.5, "silent.test: answered after %.3fs, want about 0.2s", a.at_s);
	dns_mx_result_free(a.res);
	dns_resolver_free(r);
}

/* Cancelled queries never call back: at once, during the MX phase, during the host phase. */
static void
test_cancel(void)
{
	struct dns_resolver *r = resolver_for(port, 200, 1, 0);
	struct answer cancelled[4] = { { 0 } }, control = { "multi.test", NULL, 0, NULL, 0 };
	int pending = 1;
	struct dns_stats st;

	if (r == NULL)
		return;
	control.pending = &pending;
	struct dns_query *q0 = dns_resolve_mx(r, "multi.test", on_answer, &cancelled[0]);
	struct dns_query *q1 = dns_resolve_mx(r, "silent.test", on_answer, &cancelled[1]);
	struct dns_query *q2 = dns_resolve_mx(r, "slowhost.test", on_answer, &cancelled[2]);
	struct dns_query *q3 = dns_resolve_mx(r, "[127.0.0.1]", on_answer, &cancelled[3]);
	dns_query_cancel(q0);   /* MX query outstanding in c-ares */
	dns_query_cancel(q3);   /* answer waiting for delivery */
	run_for(50);            /* slowhost.test is now waiting for silent.test's A */
	dns_query_cancel(q1);
	dns_query_cancel(q2);
	dns_resolve_mx(r, "multi.test", on_answer, &control);
	CHECK(run_until(&pending, 5000) == 0, "control query: no answer");
	run_for(400);           /* let the cancelled lookups time out inside c-ares */
	for (int i = 0; i < 4; i++)
		CHECK(cancelled[i].calls == 0, "cancelled query %d: callback ran %d times, want 0", i,
		      cancelled[i].calls);
	CHECK(control.res != NULL && control.res->status == DNS_OK, "control: got %s, want ok",
	      control.res ? dns_status_name(control.res->status) : "nothing");
	dns_mx_result_free(control.res);
	dns_resolver_stats(r, &st);
	CHECK(st.queries == 5, "stats.queries got %llu, want 5", (unsigned long long)st.queries);
	CHECK(st.inflight == 0, "stats.inflight got %llu, want 0", (unsigned long long)st.inflight);
	CHECK(st.failures == 0, "stats.failures got %llu, want 0", (unsigned long long)st.failures);
	dns_resolver_free(r);
}

/* Freeing a resolver with queries in every phase: no callback, no leak (ASan). */
static void
test_free_inflight(void)
{
	struct answer early[2] = { { 0 } }, late[5] = { { 0 } };
	static const char *const domains[5] = { "multi.test", "silent.test", "slowhost.test", "[::1]", "nx.test" };
	struct dns_resolver *r = resolver_for(port, 200, 2, 1);

	if (r == NULL)
		return;
	/* after 30ms: silent.test still waits for its MX, slowhost.test for its host's A/AAAA */
	dns_resolve_mx(r, "silent.test", on_answer, &early[0]);
	dns_resolve_mx(r, "slowhost.test", on_answer, &early[1]);
	run_for(30);
	for (int i = 0; i < 5; i++)
		dns_resolve_mx(r, domains[i], on_answer, &late[i]);
	dns_resolver_free(r);
	run_for(300);
	for (int i = 0; i < 2; i++)
		CHECK(early[i].calls == 0, "%s: callback ran %d times after free, want 0", i ? "slowhost.test" : "silent.test",
		      early[i].calls);
	for (int i = 0; i < 5; i++)
		CHECK(late[i].calls == 0, "%s: callback ran %d times after free, want 0", domains[i], late[i].calls);
}

/* A callback may free its resolver while other queries are in flight. */
struct free_from_cb {
	struct dns_resolver *r;
	int calls;
};

static void
on_answer_free(struct dns_mx_result *res, void *arg)
{
	struct free_from_cb *f = arg;

	f->calls++;
	dns_mx_result_free(res);
	dns_resolver_free(f->r);
	event_base_loopbreak(base);
}

static void
test_free_in_callback(void)
{
	struct free_from_cb f = { resolver_for(port, 200, 1, 0), 0 };
	struct answer other = { 0 };

	if (f.r == NULL)
		return;
	dns_resolve_mx(f.r, "silent.test", on_answer, &other);
	dns_resolve_mx(f.r, "[127.0.0.3]", on_answer_free, &f);
	dns_resolve_mx(f.r, "multi.test", on_answer, &other);
	run_for(400);
	CHECK_INT(f.calls, 1, "freeing callback runs");
	CHECK_INT(other.calls, 0, "the others never run");
}

static void
test_bad_config(void)
{
	static const char *const bad[] = { "127.0.0.1:0", "127.0.0.1:99999", "localhost", "[::1", "[::1]x",
		                           "1.2.3.4:", "", "[1.2.3.4]:53" };
	static const char *const good[] = { "127.0.0.1", "127.0.0.1:5353", "[::1]:53", "::1", "[::1]" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *servers[1] = { bad[i] };
		struct dns_config cfg = { servers, 1, 0, 0, 0 };
		char err[256] = "";
		struct dns_resolver *r = dns_resolver_new(base, &cfg, err, sizeof(err));
		CHECK(r == NULL, "server \"%s\": got a resolver, want NULL", bad[i]);
		CHECK(err[0] != '\0', "server \"%s\": got no reason", bad[i]);
		dns_resolver_free(r);
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		const char *servers[1] = { good[i] };
		struct dns_config cfg = { servers, 1, 0, 0, 0 };
		char err[256] = "";
		struct dns_resolver *r = dns_resolver_new(base, &cfg, err, sizeof(err));
		CHECK(r != NULL, "server \"%s\": got NULL (%s), want a resolver", good[i], err);
		dns_resolver_free(r);
	}
	/* the system's resolv.conf */
	struct dns_config sys = { NULL, 0, 0, 0, 0 };
	char err[256] = "";
	struct dns_resolver *r = dns_resolver_new(base, &sys, err, sizeof(err));
	CHECK(r != NULL, "system resolver: got NULL (%s)", err);
	dns_resolver_free(r);
}

static void
test_result_helpers(void)
{
	struct dns_mx_result *res = dns_result_new(DNS_OK, 300);
	static const struct {
		const char *name;
		unsigned pref;
	} adds[] = { { "c.test", 20 }, { "a.test", 10 }, { "d.test", 20 }, { "b.test", 10 }, { "e.test", 5 } };
	static const char *const order[] = { "e.test", "a.test", "b.test", "c.test", "d.test" };

	for (size_t i = 0; i < sizeof(adds) / sizeof(adds[0]); i++)
		dns_host_add_addr(dns_result_add_host(res, adds[i].name, adds[i].pref), "127.0.0.1");
	dns_host_add_addr(&res->hosts[0], "::1");
	CHECK(res->nhosts == 5, "nhosts got %zu, want 5", res->nhosts);
	for (size_t i = 0; i < 5 && i < res->nhosts; i++)
		CHECK_STR(res->hosts[i].name, order[i], "sorted, stable");
	struct dns_mx_result *c = dns_mx_result_copy(res);
	dns_mx_result_free(res);
	CHECK(c->nhosts == 5 && c->ttl_s == 300 && c->status == DNS_OK, "copy: got %zu hosts ttl %u", c->nhosts,
	      c->ttl_s);
	CHECK(c->hosts[0].naddrs == 2 && c->hosts[0].addrs[1].ss_family == AF_INET6, "copy: addresses");
	dns_mx_result_free(c);
	static const char *const names[] = { "ok", "null-mx", "nxdomain", "no-address", "tempfail" };
	for (int s = DNS_OK; s <= DNS_TEMPFAIL; s++)
		CHECK_STR(dns_status_name((enum dns_status)s), names[s], "dns_status_name");
}

/* The fake backend: set, hold, release, queries, cancel, free. */
static void
test_fake(void)
{
	struct dns_resolver *r = dns_fake_new(base);
	struct dns_mx_result *set = dns_result_new(DNS_OK, 60);
	struct answer a[6] = { { 0 } };
	int pending;
	struct dns_stats st;

	dns_host_add_addr(dns_result_add_host(set, "mx.fake.test", 10), "127.0.0.2");
	dns_fake_set(r, "fake.test", set);
	dns_mx_result_free(set);  /* the fake copied it */

	pending = 2;
	a[0].pending = a[1].pending = &pending;
	dns_resolve_mx(r, "Fake.Test.", on_answer, &a[0]);
	dns_resolve_mx(r, "unset.test", on_answer, &a[1]);
	CHECK(a[0].calls == 0 && a[1].calls == 0, "fake: callback inside dns_resolve_mx");
	CHECK(run_until(&pending, 2000) == 0, "fake: no answers");
	CHECK(a[0].res && a[0].res->status == DNS_OK && a[0].res->nhosts == 1 && a[0].res->ttl_s == 60 &&
	              strcmp(a[0].res->hosts[0].name, "mx.fake.test") == 0 && a[0].res->hosts[0].naddrs == 1,
	      "fake.test: got %s, want ok with mx.fake.test", a[0].res ? dns_status_name(a[0].res->status) : "-");
	CHECK(a[1].res && a[1].res->status == DNS_NXDOMAIN, "unset.test: got %s, want nxdomain",
	      a[1].res ? dns_status_name(a[1].res->status) : "-");

	/* hold: nothing until release; the answer is the one set at release time */
	dns_fake_hold(r, "slow.test");
	pending = 2;
	a[2].pending = a[3].pending = &pending;
	dns_resolve_mx(r, "slow.test", on_answer, &a[2]);
	struct dns_query *cq = dns_resolve_mx(r, "slow.test", on_answer, &a[4]);
	dns_resolve_mx(r, "slow.test", on_answer, &a[3]);
	run_for(50);
	CHECK(a[2].calls == 0 && a[3].calls == 0, "held: got %d+%d callbacks, want none", a[2].calls, a[3].calls);
	dns_query_cancel(cq);
	set = dns_result_new(DNS_TEMPFAIL, 0);
	dns_fake_set(r, "slow.test", set);
	dns_mx_result_free(set);
	dns_fake_release(r, "slow.test");
	CHECK(a[2].calls == 0, "release: callback inside dns_fake_release");
	CHECK(run_until(&pending, 2000) == 0, "release: no answers");
	CHECK(a[2].res && a[2].res->status == DNS_TEMPFAIL && a[3].res && a[3].res->status == DNS_TEMPFAIL,
	      "released: want tempfail");
	CHECK(a[4].calls == 0, "cancelled held query: callback ran");
	CHECK_INT(dns_fake_queries(r, "slow.test"), 3, "queries slow.test");
	CHECK_INT(dns_fake_queries(r, "FAKE.test"), 1, "queries fake.test");
	CHECK_INT(dns_fake_queries(r, "never.test"), 0, "queries never.test");
	dns_resolver_stats(r, &st);
	CHECK(st.queries == 5 && st.inflight == 0 && st.failures == 3, "stats got %llu/%llu/%llu, want 5/0/3",
	      (unsigned long long)st.queries, (unsigned long long)st.inflight, (unsigned long long)st.failures);

	/* an IP literal answers on the fake too; free with held and undelivered queries */
	dns_fake_hold(r, "stuck.test");
	dns_resolve_mx(r, "stuck.test", on_answer, &a[5]);
	dns_resolve_mx(r, "[127.0.0.4]", on_answer, &a[5]);
	dns_resolve_mx(r, "fake.test", on_answer, &a[5]);
	dns_resolver_free(r);
	run_for(20);
	CHECK(a[5].calls == 0, "freed fake: got %d callbacks, want 0", a[5].calls);
	for (int i = 0; i < 6; i++)
		dns_mx_result_free(a[i].res);
}

static void
test_setup(void)
{
	base = event_base_new();
	port = responder_start(&responder, base);
	CHECK(port > 0, "responder: got port %d, want a bound port", port);
}

static void
test_teardown(void)
{
	CHECK(responder.queries > 0, "responder: got %u queries, want some", responder.queries);
	responder_stop(&responder);
	event_base_free(base);
}

TEST_MAIN("dns",
	TEST(test_setup),
	TEST(test_result_helpers),
	TEST(test_bad_config),
	TEST(test_answers),
	TEST(test_ipv6),
	TEST(test_timeout),
	TEST(test_cancel),
	TEST(test_free_inflight),
	TEST(test_free_in_callback),
	TEST(test_fake),
	TEST(test_teardown))

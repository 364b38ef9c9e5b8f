/*
 * dns.h - asynchronous MX resolution on an event loop.
 *
 * dns_resolve_mx turns a recipient domain into the ordered list of hosts to
 * try: the MX records (RFC 5321 5.1) with the A (and, when configured, AAAA)
 * addresses of each, or the domain's own addresses when it has no MX (an
 * implicit MX), or a null MX (RFC 7505), or a reason why there is nothing to
 * try (permanent: DNS_NXDOMAIN, DNS_NO_ADDRESS; transient: DNS_TEMPFAIL).
 *
 * Two backends share these functions: the c-ares resolver (dns_resolver_new,
 * dns.c) and a fake with scripted answers for other layers' unit tests
 * (dns_fake_new, dns_fake.c).
 *
 * Threads: a resolver belongs to the thread that runs its event_base (c-ares
 * channels are not thread-safe); every call that takes a resolver or a query
 * is made on that thread. Each loop thread owns its own resolver.
 *
 * Callbacks: the answer is always delivered later from the event loop, never
 * inside dns_resolve_mx, dns_fake_release or any other call of this API. The
 * query handle is freed just before its callback runs: do not cancel it from
 * the callback or after. From the callback anything may be called, including
 * dns_resolver_free.
 *
 * Ownership: results handed to a callback belong to the callee
 * (dns_mx_result_free). dns_fake_set copies its argument.
 *
 * Errors: dns_resolver_new returns NULL and a reason; everything else either
 * cannot fail or reports failure in the result's status and reason.
 * Allocation failures abort (xalloc). Nothing here logs.
 */
#ifndef IMPETUS_DNS_DNS_H
#define IMPETUS_DNS_DNS_H

#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum dns_status {
	DNS_OK = 0,        /* hosts[] lists at least one host with at least one address */
	DNS_NULL_MX,       /* RFC 7505 null MX: a single MX with preference 0 and target "." */
	DNS_NXDOMAIN,      /* the domain does not exist (permanent) */
	DNS_NO_ADDRESS,    /* the domain exists but has no MX and no A/AAAA, or every MX host is NXDOMAIN/NODATA (permanent) */
	DNS_TEMPFAIL,      /* SERVFAIL, REFUSED, timeout, no server reachable (transient) */
};

struct dns_host {
	char *name;                       /* MX target (or the domain itself when implicit), lower case, no trailing dot */
	unsigned pref;                    /* MX preference; 0 when implicit */
	struct sockaddr_storage *addrs;   /* its A (and AAAA when ipv6) addresses, port 0; A first, each in answer order */
	size_t naddrs;                    /* entries in addrs */
	enum dns_status status;           /* DNS_OK, or why this host has no addresses */
};

struct dns_mx_result {
	enum dns_status status;           /* the overall verdict */
	int implicit;                     /* 1: no MX records, hosts[0] is the domain's own A/AAAA (RFC 5321 5.1) */
	struct dns_host *hosts;           /* sorted by pref ascending; equal prefs keep answer order */
	size_t nhosts;                    /* entries in hosts */
	uint32_t ttl_s;                   /* seconds: smallest TTL of the records used (MX and A/AAAA); for failures, the negative TTL if known else 0 */
	char reason[128];                 /* short human text for logs: "SERVFAIL", "timeout", "NXDOMAIN", "null MX", ... */
};

struct dns_config {
	const char *const *servers;       /* "ip" or "ip:port" or "[ip6]:port"; NULL or nservers 0 = the system's /etc/resolv.conf */
	size_t nservers;                  /* entries in servers */
	unsigned timeout_ms;              /* milliseconds per try; 0 = 2000 */
	unsigned tries;                   /* attempts per server; 0 = 2 */
	int ipv6;                         /* also query AAAA */
};

struct dns_resolver;
struct dns_query;

/* dns_mx_fn: the answer; the callee owns res and frees it with dns_mx_result_free. */
typedef void (*dns_mx_fn)(struct dns_mx_result *res, void *arg);

/* dns_resolver_new: a c-ares resolver on base (cfg NULL: all defaults); NULL + reason on error
 * (bad server string, c-ares init failure). cfg is not kept. */
struct dns_resolver *dns_resolver_new(struct event_base *base, const struct dns_config *cfg, char *err, size_t errlen);
/* dns_resolver_free: pending queries are cancelled, their callbacks never run. NULL is ignored. */
void dns_resolver_free(struct dns_resolver *r);

/*
 * dns_resolve_mx: MX for domain, then A (and AAAA) for every MX host (at most
 * DNS_MAX_MX_HOSTS, the most preferred); no MX (NODATA) -> implicit MX (A/AAAA
 * of the domain itself); a domain that is an IP literal "[1.2.3.4]",
 * "[IPv6:::1]" or a bare IP answers at once (asynchronously) with that address
 * (host name = the bare address, ttl_s 0). The callback always runs later from
 * the event loop, never inside this call. Never returns NULL.
 */
struct dns_query *dns_resolve_mx(struct dns_resolver *r, const char *domain, dns_mx_fn cb, void *arg);
/* dns_query_cancel: the callback will not run; q is freed. Only before the callback ran. */
void dns_query_cancel(struct dns_query *q);

#define DNS_MAX_MX_HOSTS 32               /* MX hosts looked up per domain */

void dns_mx_result_free(struct dns_mx_result *res);
struct dns_mx_result *dns_mx_result_copy(const struct dns_mx_result *res);
/* dns_status_name: "ok", "null-mx", "nxdomain", "no-address", "tempfail". */
const char *dns_status_name(enum dns_status s);

/* statistics, per resolver */
struct dns_stats {
	uint64_t queries;                 /* dns_resolve_mx calls */
	uint64_t failures;                /* answers delivered with a status other than DNS_OK */
	uint64_t inflight;                /* queries started, not yet delivered or cancelled */
};
void dns_resolver_stats(const struct dns_resolver *r, struct dns_stats *out);

/* Fake backend for unit tests of other layers (dns_fake.c): same dns_resolve_mx/dns_query_cancel/dns_resolver_free work on it. */
struct dns_resolver *dns_fake_new(struct event_base *base);
/* dns_fake_set: the answer for domain (copied; NULL removes it); a domain with no answer set gets DNS_NXDOMAIN. */
void dns_fake_set(struct dns_resolver *r, const char *domain, const struct dns_mx_result *res);
/* dns_fake_hold: answers for domain wait until dns_fake_release (simulates slow DNS). */
void dns_fake_hold(struct dns_resolver *r, const char *domain);
/* dns_fake_release: deliver the held queries (with the answer set at release time) and stop holding. */
void dns_fake_release(struct dns_resolver *r, const char *domain);
unsigned dns_fake_queries(const struct dns_resolver *r, const char *domain);  /* dns_resolve_mx calls so far */

/* helpers to build results in tests: */
/* dns_result_new: an empty result; reason is set to dns_status_name(st). */
struct dns_mx_result *dns_result_new(enum dns_status st, uint32_t ttl_s);
/* dns_result_add_host: a new host (status DNS_OK, no addresses); keeps hosts sorted by pref (stable).
 * The pointer is valid until the next dns_result_add_host on res. */
struct dns_host *dns_result_add_host(struct dns_mx_result *res, const char *name, unsigned pref);
/* dns_host_add_addr: "127.0.0.2" or "::1"; aborts on a bad literal (test helper). */
void dns_host_add_addr(struct dns_host *h, const char *ip);

/*
 * Backend interface: for dns.c and dns_fake.c only; other layers use the
 * functions above. The shared code (dns.c) owns struct dns_resolver and
 * struct dns_query, counts statistics, and delivers results from a per-query
 * event; a backend starts lookups and hands back results with dns_query_done.
 */
struct dns_ops {
	const char *name;                                 /* "c-ares", "fake" */
	void (*start)(struct dns_query *q);               /* begin; later (or now) dns_query_done */
	void (*cancel)(struct dns_query *q);              /* forget q: never dns_query_done it */
	void (*destroy)(struct dns_resolver *r);          /* free the backend state; no query is live */
};
/* dns_resolver_wrap: a resolver running ops with backend state (owned by ops->destroy). */
struct dns_resolver *dns_resolver_wrap(struct event_base *base, const struct dns_ops *ops, void *state);
void *dns_resolver_state(const struct dns_resolver *r);
const struct dns_ops *dns_resolver_ops(const struct dns_resolver *r);
struct event_base *dns_resolver_base(const struct dns_resolver *r);
struct dns_resolver *dns_query_resolver(const struct dns_query *q);
/* dns_query_domain: the domain asked, lower case, trailing dot removed. */
const char *dns_query_domain(const struct dns_query *q);
void *dns_query_state(const struct dns_query *q);
void dns_query_set_state(struct dns_query *q, void *state);
/* dns_query_done: the backend's answer (ownership passes); delivered from the loop. At most once per query. */
void dns_query_done(struct dns_query *q, struct dns_mx_result *res);
/* dns_name_normalize: name in lower case without its trailing dot, allocated. */
char *dns_name_normalize(const char *name);
/* dns_literal_result: the answer for a domain that needs no lookup (an IP literal; NXDOMAIN for
 * "", "." or a malformed "[...]" literal), or NULL when domain is a name to look up. */
struct dns_mx_result *dns_literal_result(const char *domain);

#endif

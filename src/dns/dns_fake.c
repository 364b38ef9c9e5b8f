/*
 * dns_fake.c - a DNS backend with scripted answers, for unit tests of the
 * layers above DNS (queue, delivery).
 *
 * Public functions (dns.h):
 *   dns_fake_new      a resolver whose answers come from dns_fake_set
 *   dns_fake_set      the answer for a domain (copied); unset -> DNS_NXDOMAIN
 *   dns_fake_hold     park queries for a domain ...
 *   dns_fake_release  ... until released (answered with the answer set then)
 *   dns_fake_queries  how many dns_resolve_mx calls named a domain
 * dns_resolve_mx, dns_query_cancel, dns_resolver_free and dns_resolver_stats
 * work as on the c-ares resolver (the shared layer in dns.c): answers are
 * always delivered from the event loop, IP literals answer with their address.
 *
 * Domains are compared in lower case without a trailing dot. Entries are a
 * linked list and held queries an array: this is for tests, not for scale.
 *
 * Ownership: the fake owns copies of the answers set; each delivery gets a
 * fresh copy owned by the callee. Errors: calling a dns_fake_* function on
 * a resolver that is not a fake aborts (a bug in the test).
 */
#include "dns/dns.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/xalloc.h"

struct fake_entry {
	char *domain;                     /* normalized */
	struct dns_mx_result *res;        /* the answer, owned; NULL = NXDOMAIN */
	int held;                         /* queries wait for dns_fake_release */
	unsigned queries;                 /* dns_resolve_mx calls for domain */
	struct fake_entry *next;          /* fake->entries */
};

struct fake_state {
	struct fake_entry *entries;       /* one per domain ever named */
	struct dns_query **held;          /* parked queries, in arrival order */
	size_t nheld;                     /* entries in held */
	size_t capheld;                   /* allocated entries in held */
};

static void fake_start(struct dns_query *q);
static void fake_cancel(struct dns_query *q);
static void fake_destroy(struct dns_resolver *r);
static struct fake_state *fake_state_of(const struct dns_resolver *r);
static struct fake_entry *fake_entry(struct fake_state *f, const char *domain, int create);
static struct dns_mx_result *fake_answer(const struct fake_entry *e);

static const struct dns_ops fake_ops = {
	.name = "fake",
	.start = fake_start,
	.cancel = fake_cancel,
	.destroy = fake_destroy,
};

struct dns_resolver *
dns_fake_new(struct event_base *base)
{
	return dns_resolver_wrap(base, &fake_ops, xcalloc(1, sizeof(struct fake_state)));
}

static struct fake_state *
fake_state_of(const struct dns_resolver *r)
{
	if (dns_resolver_ops(r) != &fake_ops) {
		fprintf(stderr, "dns_fake: not a fake resolver (%s)\n", dns_resolver_ops(r)->name);
		abort();
	}
	return dns_resolver_state(r);
}

static struct fake_entry *
fake_entry(struct fake_state *f, const char *domain, int create)
{
	char *name = dns_name_normalize(domain);
	struct fake_entry *e;

	for (e = f->entries; e != NULL; e = e->next)
		if (strcmp(e->domain, name) == 0)
			break;
	if (e == NULL && create) {
		e = xcalloc(1, sizeof(*e));
		e->domain = name;
		e->next = f->entries;
		f->entries = e;
		return e;
	}
	free(name);
	return e;
}

static struct dns_mx_result *
fake_answer(const struct fake_entry *e)
{
	struct dns_mx_result *res;

	if (e != NULL && e->res != NULL)
		return dns_mx_result_copy(e->res);
	res = dns_result_new(DNS_NXDOMAIN, 0);
	strcpy(res->reason, "NXDOMAIN");
	return res;
}

void
dns_fake_set(struct dns_resolver *r, const char *domain, const struct dns_mx_result *res)
{
	struct fake_entry *e = fake_entry(fake_state_of(r), domain, 1);

	dns_mx_result_free(e->res);
	e->res = res != NULL ? dns_mx_result_copy(res) : NULL;
}

void
dns_fake_hold(struct dns_resolver *r, const char *domain)
{
	fake_entry(fake_state_of(r), domain, 1)->held = 1;
}

void
dns_fake_release(struct dns_resolver *r, const char *domain)
{
	struct fake_state *f = fake_state_of(r);
	struct fake_entry *e = fake_entry(f, domain, 1);
	size_t kept = 0;

	e->held = 0;
	/* dns_query_done only schedules delivery: no callback runs while we walk the array. */
	for (size_t i = 0; i < f->nheld; i++) {
		struct dns_query *q = f->held[i];
		if (strcmp(dns_query_domain(q), e->domain) == 0)
			dns_query_done(q, fake_answer(e));
		else
			f->held[kept++] = q;
	}
	f->nheld = kept;
}

unsigned
dns_fake_queries(const struct dns_resolver *r, const char *domain)
{
	struct fake_entry *e = fake_entry(fake_state_of(r), domain, 0);

	return e != NULL ? e->queries : 0;
}

static void
fake_start(struct dns_query *q)
{
	struct fake_state *f = dns_resolver_state(dns_query_resolver(q));
	struct fake_entry *e = fake_entry(f, dns_query_domain(q), 1);
	struct dns_mx_result *res;

	e->queries++;
	res = dns_literal_result(dns_query_domain(q));
	if (res != NULL) {
		dns_query_done(q, res);
	} else if (e->held) {
		if (f->nheld == f->capheld) {
			f->capheld = f->capheld ? 2 * f->capheld : 8;
			f->held = xreallocarray(f->held, f->capheld, sizeof(*f->held));
		}
		f->held[f->nheld++] = q;
	} else {
		dns_query_done(q, fake_answer(e));
	}
}

static void
fake_cancel(struct dns_query *q)
{
	struct fake_state *f = dns_resolver_state(dns_query_resolver(q));

	for (size_t i = 0; i < f->nheld; i++) {
		if (f->held[i] == q) {
			memmove(&f->held[i], &f->held[i + 1], (f->nheld - i - 1) * sizeof(*f->held));
			f->nheld--;
			return;
		}
	}
}

static void
fake_destroy(struct dns_resolver *r)
{
	struct fake_state *f = dns_resolver_state(r);

	while (f->entries != NULL) {
		struct fake_entry *e = f->entries;
		f->entries = e->next;
		dns_mx_result_free(e->res);
		free(e->domain);
		free(e);
	}
	free(f->held);
	free(f);
}

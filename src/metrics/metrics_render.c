/*
 * metrics_render.c - the Prometheus text exposition of a metrics snapshot.
 *
 *   metrics_render          every family: global counters and gauges, per
 *                           binding, per domain (capped), connection failures
 *                           by CONN_ERROR cause, the spool sync histogram
 *   metrics_escape_label    label value escaping (and UTF-8 repair)
 *   metrics_format_seconds  exact decimal seconds from microseconds
 *
 * Per-domain label sets: the domains are ranked by queue size (active +
 * in flight + delayed), then by outcomes since start (delivered + transient
 * + failed), then by name; the first label_cap get their own label set, the
 * rest are summed under domain="_other" (present only when something was
 * folded). The exported domains are listed by name, "_other" last.
 *
 * Memory: the snapshot is borrowed; scratch arrays are freed before return.
 * No errors: appending never fails (xalloc aborts on OOM).
 */
#include "metrics/metrics_render.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <impetus/conn_errors.h>

#include "lib/strbuf.h"
#include "lib/xalloc.h"
#include "queue/queue.h"
#include "queue/queue_console.h"
#include "spool/spool.h"

/* One domain's rows summed. */
struct domain_agg {
	const char *name;                       /* borrowed from the rows */
	uint64_t active;                        /* messages in active queues */
	uint64_t inflight;                      /* messages taken by sessions */
	uint64_t delayed;                       /* messages in the delayed queue */
	uint64_t conns;                         /* outbound sessions */
	uint64_t delivered;                     /* since start */
	uint64_t transient;                     /* since start */
	uint64_t failed;                        /* since start */
};

/* One binding slot's rows summed. */
struct binding_agg {
	const char *name;                       /* NULL: slot unknown and idle */
	uint64_t active;                        /* messages in its active queues */
	uint64_t inflight;                      /* messages taken by its sessions */
	uint64_t conns;                         /* its outbound sessions */
};

/* A per-domain family: which field of struct domain_agg it shows. */
struct domain_family {
	const char *name;
	const char *type;
	const char *help;
	size_t field;                           /* offsetof(struct domain_agg, ...) */
};

static void family(struct strbuf *out, const char *name, const char *type, const char *help);
static void sample(struct strbuf *out, const char *name, const char *label, const char *value,
                   uint64_t v);
static void render_global(const struct metrics_snapshot *s, struct strbuf *out);
static void render_causes(const struct queue_stats *q, struct strbuf *out);
static void render_bindings(const struct metrics_snapshot *s, struct strbuf *out);
static void render_domains(const struct metrics_snapshot *s, struct strbuf *out);
static void render_sync(const struct spool_sync_histogram *h, struct strbuf *out);
static int row_by_domain(const void *a, const void *b);
static int domain_by_rank(const void *a, const void *b);
static int domain_by_name(const void *a, const void *b);
static size_t utf8_valid_len(const unsigned char *p);

void
metrics_render(const struct metrics_snapshot *s, struct strbuf *out)
{
	render_global(s, out);
	render_causes(s->queue, out);
	render_bindings(s, out);
	render_domains(s, out);
	if (s->sync != NULL)
		render_sync(s->sync, out);
}

/* family: the HELP and TYPE lines (help is escaped: backslash, newline). */
static void
family(struct strbuf *out, const char *name, const char *type, const char *help)
{
	strbuf_printf(out, "# HELP %s ", name);
	for (const char *p = help; *p != '\0'; p++) {
		if (*p == '\\')
			strbuf_puts(out, "\\\\");
		else if (*p == '\n')
			strbuf_puts(out, "\\n");
		else
			strbuf_putc(out, *p);
	}
	strbuf_printf(out, "\n# TYPE %s %s\n", name, type);
}

/* sample: one line, with one label when label is not NULL. */
static void
sample(struct strbuf *out, const char *name, const char *label, const char *value, uint64_t v)
{
	strbuf_puts(out, name);
	if (label != NULL) {
		strbuf_printf(out, "{%s=\"", label);
		metrics_escape_label(out, value);
		strbuf_puts(out, "\"}");
	}
	strbuf_printf(out, " %llu\n", (unsigned long long)v);
}

static void
render_global(const struct metrics_snapshot *s, struct strbuf *out)
{
	const struct queue_stats *q = s->queue;
	static const struct {
		const char *name, *type, *help;
		size_t field;                   /* offsetof(struct queue_stats, ...), or QUEUE_TOTAL */
	} plain[] = {
#define F(f) offsetof(struct queue_stats, f)
#define QUEUE_TOTAL SIZE_MAX                    /* active + delayed */
		{ "impetus_received_total", "counter",
		  "Recipient-messages accepted by reception and queued.", F(received) },
		{ "impetus_restored_total", "counter",
		  "Recipient-messages read back from the spool at start.", F(restored) },
		{ "impetus_delivered_total", "counter",
		  "Recipient-messages delivered.", F(delivered) },
		{ "impetus_transient_failures_total", "counter",
		  "Delivery attempts that failed transiently (the message stays queued).",
		  F(transient) },
		{ "impetus_permanent_failures_total", "counter",
		  "Recipient-messages that failed permanently.", F(failed) },
		{ "impetus_bounces_total", "counter", "Bounce messages generated.", F(bounces) },
		{ "impetus_queue_active_messages", "gauge",
		  "Recipient-messages in active queues or in flight.", F(active) },
		{ "impetus_queue_delayed_messages", "gauge",
		  "Recipient-messages in delayed queues.", F(delayed) },
		{ "impetus_queue_messages", "gauge",
		  "Recipient-messages queued, active and delayed.", QUEUE_TOTAL },
		{ "impetus_domains", "gauge", "Domain records in the scheduler.", F(domains) },
		{ "impetus_outbound_connections", "gauge", "Outbound SMTP sessions open.", F(conns) },
		{ "impetus_outbound_connection_attempts_total", "counter",
		  "Outbound connection attempts.", F(conn_attempts) },
		{ "impetus_outbound_connection_failures_total", "counter",
		  "Outbound connection attempts that failed, all causes.", F(conn_failures) },
		{ "impetus_dns_queries_total", "counter", "DNS queries sent.", F(dns_queries) },
		{ "impetus_dns_failures_total", "counter",
		  "DNS queries that failed (SERVFAIL, timeout, NXDOMAIN).", F(dns_failures) },
#undef F
	};

	family(out, "impetus_build_info", "gauge", "The running version (value 1).");
	sample(out, "impetus_build_info", "version", s->version != NULL ? s->version : "", 1);
	family(out, "impetus_start_time_seconds", "gauge",
	       "When the daemon started, seconds since the epoch.");
	strbuf_printf(out, "impetus_start_time_seconds %.3f\n", s->start_time_s);
	family(out, "impetus_uptime_seconds", "gauge", "Seconds since the daemon started.");
	strbuf_printf(out, "impetus_uptime_seconds %.3f\n", s->uptime_s);
	family(out, "impetus_inbound_connections", "gauge", "Inbound SMTP sessions open.");
	sample(out, "impetus_inbound_connections", NULL, NULL, s->inbound_open);
	family(out, "impetus_inbound_connections_total", "counter",
	       "Inbound SMTP sessions accepted since start.");
	sample(out, "impetus_inbound_connections_total", NULL, NULL, s->inbound_total);
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
		uint64_t v = q->active + q->delayed;

		if (plain[i].field != QUEUE_TOTAL)
			memcpy(&v, (const char *)q + plain[i].field, sizeof(v));
		family(out, plain[i].name, plain[i].type, plain[i].help);
		sample(out, plain[i].name, NULL, NULL, v);
	}
#undef QUEUE_TOTAL
}

/* render_causes: one series per known CONN_ERROR cause, zeros included. */
static void
render_causes(const struct queue_stats *q, struct strbuf *out)
{
	static const char name[] = "impetus_outbound_connection_failures_by_cause_total";

	family(out, name, "counter",
	       "Outbound connection failures by CONN_ERROR cause (impetus/conn_errors.h).");
	for (int i = 0; i < QUEUE_CONN_CAUSES; i++) {
		const char *cause = conn_error_name(1 << i);

		if (cause != NULL)
			sample(out, name, "cause", cause, q->conn_failures_by_cause[i]);
	}
}

static void
render_bindings(const struct metrics_snapshot *s, struct strbuf *out)
{
	static const struct {
		const char *name, *help;
		size_t field;
	} fams[] = {
		{ "impetus_binding_active_messages", "Recipient-messages in the binding's active queues.",
		  offsetof(struct binding_agg, active) },
		{ "impetus_binding_inflight_messages",
		  "Recipient-messages taken by the binding's sessions.",
		  offsetof(struct binding_agg, inflight) },
		{ "impetus_binding_outbound_connections",
		  "Outbound SMTP sessions of the binding, open or opening.",
		  offsetof(struct binding_agg, conns) },
	};
	struct binding_agg *agg;
	size_t n = s->nbindings;

	for (size_t i = 0; i < s->nrows; i++)
		if (s->rows[i].slot >= 0 && (size_t)s->rows[i].slot >= n)
			n = (size_t)s->rows[i].slot + 1;
	agg = xcalloc(n > 0 ? n : 1, sizeof(*agg));
	for (size_t i = 0; i < s->nbindings; i++)
		agg[i].name = s->bindings[i];
	for (size_t i = 0; i < s->nrows; i++) {
		const struct queue_row *r = &s->rows[i];
		struct binding_agg *b;

		if (r->slot < 0)
			continue;
		b = &agg[r->slot];
		if (b->name == NULL)
			b->name = r->binding != NULL ? r->binding : "";
		b->active += r->active;
		b->inflight += r->inflight;
		b->conns += r->conns;
	}
	for (size_t f = 0; f < sizeof(fams) / sizeof(fams[0]); f++) {
		family(out, fams[f].name, "gauge", fams[f].help);
		for (size_t i = 0; i < n; i++) {
			uint64_t v;

			if (agg[i].name == NULL)
				continue;
			memcpy(&v, (const char *)&agg[i] + fams[f].field, sizeof(v));
			sample(out, fams[f].name, "binding", agg[i].name, v);
		}
	}
	free(agg);
}

static void
render_domains(const struct metrics_snapshot *s, struct strbuf *out)
{
	static const struct domain_family fams[] = {
#define F(f) offsetof(struct domain_agg, f)
		{ "impetus_domain_active_messages", "gauge",
		  "Recipient-messages in the domain's active queues.", F(active) },
		{ "impetus_domain_inflight_messages", "gauge",
		  "Recipient-messages of the domain taken by sessions.", F(inflight) },
		{ "impetus_domain_delayed_messages", "gauge",
		  "Recipient-messages in the domain's delayed queue.", F(delayed) },
		{ "impetus_domain_outbound_connections", "gauge",
		  "Outbound SMTP sessions to the domain, open or opening.", F(conns) },
		{ "impetus_domain_delivered_total", "counter",
		  "Recipient-messages delivered to the domain since start.", F(delivered) },
		{ "impetus_domain_transient_failures_total", "counter",
		  "Transient delivery failures for the domain since start.", F(transient) },
		{ "impetus_domain_permanent_failures_total", "counter",
		  "Permanent delivery failures for the domain since start.", F(failed) },
#undef F
	};
	const struct queue_row **sorted = NULL;
	struct domain_agg *dom = NULL, other;
	size_t ndom = 0, nexp, cap = s->label_cap > 0 ? (size_t)s->label_cap : 0;

	/* Group the rows by domain (a domain's rows normally come together,
	 * but nothing here relies on it). */
	if (s->nrows > 0) {
		sorted = xcalloc(s->nrows, sizeof(*sorted));
		dom = xcalloc(s->nrows, sizeof(*dom));
	}
	for (size_t i = 0; i < s->nrows; i++)
		sorted[i] = &s->rows[i];
	if (s->nrows > 1)
		qsort(sorted, s->nrows, sizeof(*sorted), row_by_domain);
	for (size_t i = 0; i < s->nrows; i++) {
		const struct queue_row *r = sorted[i];
		const char *name = r->domain != NULL ? r->domain : "";
		struct domain_agg *d;

		if (ndom == 0 || strcmp(dom[ndom - 1].name, name) != 0) {
			dom[ndom].name = name;
			ndom++;
		}
		d = &dom[ndom - 1];
		if (r->slot < 0) {
			d->delayed += r->delayed;
			d->delivered += r->delivered;
			d->transient += r->transient;
			d->failed += r->failed;
		} else {
			d->active += r->active;
			d->inflight += r->inflight;
			d->conns += r->conns;
		}
	}

	/* The busiest cap domains keep their label sets; the rest are summed. */
	if (ndom > 1)
		qsort(dom, ndom, sizeof(*dom), domain_by_rank);
	nexp = ndom < cap ? ndom : cap;
	memset(&other, 0, sizeof(other));
	other.name = METRICS_OTHER_DOMAIN;
	for (size_t i = nexp; i < ndom; i++) {
		other.active += dom[i].active;
		other.inflight += dom[i].inflight;
		other.delayed += dom[i].delayed;
		other.conns += dom[i].conns;
		other.delivered += dom[i].delivered;
		other.transient += dom[i].transient;
		other.failed += dom[i].failed;
	}
	if (nexp > 1)
		qsort(dom, nexp, sizeof(*dom), domain_by_name);

	for (size_t f = 0; f < sizeof(fams) / sizeof(fams[0]); f++) {
		uint64_t v;

		family(out, fams[f].name, fams[f].type, fams[f].help);
		for (size_t i = 0; i < nexp; i++) {
			memcpy(&v, (const char *)&dom[i] + fams[f].field, sizeof(v));
			sample(out, fams[f].name, "domain", dom[i].name, v);
		}
		if (ndom > nexp) {
			memcpy(&v, (const char *)&other + fams[f].field, sizeof(v));
			sample(out, fams[f].name, "domain", other.name, v);
		}
	}
	family(out, "impetus_metrics_domains_folded", "gauge",
	       "Domains past the label cap, summed under domain=\"_other\".");
	sample(out, "impetus_metrics_domains_folded", NULL, NULL, ndom - nexp);
	free(sorted);
	free(dom);
}

/* render_sync: the histogram, buckets made cumulative, bounds in seconds. */
static void
render_sync(const struct spool_sync_histogram *h, struct strbuf *out)
{
	static const char name[] = "impetus_spool_sync_duration_seconds";
	char le[32];
	uint64_t cum = 0;

	family(out, name, "histogram", "Time the spool's group commit spent in one sync (syncfs).");
	for (size_t i = 0; i < SPOOL_SYNC_BUCKETS; i++) {
		cum += h->bucket[i];
		strbuf_printf(out, "%s_bucket{le=\"%s\"} %llu\n", name,
		              metrics_format_seconds(spool_sync_bucket_us[i], le),
		              (unsigned long long)cum);
	}
	cum += h->bucket[SPOOL_SYNC_BUCKETS];
	strbuf_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
	strbuf_printf(out, "%s_sum %s\n", name, metrics_format_seconds(h->sum_us, le));
	strbuf_printf(out, "%s_count %llu\n", name, (unsigned long long)cum);
}

const char *
metrics_format_seconds(uint64_t us, char buf[32])
{
	unsigned long long whole = (unsigned long long)(us / 1000000);
	unsigned frac = (unsigned)(us % 1000000);
	int len = snprintf(buf, 32, "%llu", whole);

	if (frac != 0) {
		len += snprintf(buf + len, 32 - (size_t)len, ".%06u", frac);
		while (buf[len - 1] == '0')
			buf[--len] = '\0';
	}
	return buf;
}

void
metrics_escape_label(struct strbuf *out, const char *v)
{
	const unsigned char *p = (const unsigned char *)v;

	while (*p != '\0') {
		size_t n;

		if (*p == '\\') {
			strbuf_puts(out, "\\\\");
			p++;
		} else if (*p == '"') {
			strbuf_puts(out, "\\\"");
			p++;
		} else if (*p == '\n') {
			strbuf_puts(out, "\\n");
			p++;
		} else if ((n = utf8_valid_len(p)) > 0) {
			strbuf_append(out, p, n);
			p += n;
		} else {
			strbuf_puts(out, "\xEF\xBF\xBD");   /* U+FFFD */
			p++;
		}
	}
}

/* utf8_valid_len: the length of the well-formed UTF-8 sequence at p
 * (RFC 3629: no overlong forms, no surrogates, at most U+10FFFF), 0 if none. */
static size_t
utf8_valid_len(const unsigned char *p)
{
	unsigned char lo = 0x80, hi = 0xBF;
	size_t n;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xC2 && p[0] <= 0xDF)
		n = 2;
	else if (p[0] >= 0xE0 && p[0] <= 0xEF) {
		n = 3;
		if (p[0] == 0xE0)
			lo = 0xA0;
		else if (p[0] == 0xED)
			hi = 0x9F;
	} else if (p[0] >= 0xF0 && p[0] <= 0xF4) {
		n = 4;
		if (p[0] == 0xF0)
			lo = 0x90;
		else if (p[0] == 0xF4)
			hi = 0x8F;
	} else
		return 0;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xBF)
			return 0;
	return n;
}

static int
row_by_domain(const void *a, const void *b)
{
	const struct queue_row *x = *(const struct queue_row *const *)a;
	const struct queue_row *y = *(const struct queue_row *const *)b;

	return strcmp(x->domain != NULL ? x->domain : "", y->domain != NULL ? y->domain : "");
}

/* domain_by_rank: queue size descending, then outcomes descending, then name. */
static int
domain_by_rank(const void *a, const void *b)
{
	const struct domain_agg *x = a, *y = b;
	uint64_t qx = x->active + x->inflight + x->delayed, qy = y->active + y->inflight + y->delayed;
	uint64_t ox = x->delivered + x->transient + x->failed;
	uint64_t oy = y->delivered + y->transient + y->failed;

	if (qx != qy)
		return qx > qy ? -1 : 1;
	if (ox != oy)
		return ox > oy ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int
domain_by_name(const void *a, const void *b)
{
	return strcmp(((const struct domain_agg *)a)->name, ((const struct domain_agg *)b)->name);
}

/*
 * metrics_test.c - unit tests for src/metrics: the exposition renderer and
 * the HTTP listener.
 *
 * The renderer: every line of its output is checked against the text
 * exposition format by a strict parser (expo_check: HELP/TYPE before the
 * samples, families contiguous, valid names and label syntax, no duplicate
 * series, counters ending in _total, histogram buckets cumulative with
 * +Inf == _count); label value escaping (backslash, quote, newline, bad
 * UTF-8); exact decimal seconds; the per-domain cardinality cap (busiest
 * first, the rest summed under "_other", totals conserved); per-binding sums
 * with idle configured bindings; the spool's sync histogram buckets.
 * The listener: metrics_start on an in-process main loop, fetched over raw
 * sockets: /health, /metrics (parsed strictly), 404, a refused method, two
 * Listens at once, bad listen names.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <impetus/conn_errors.h>

#include "event/loop.h"
#include "lib/strbuf.h"
#include "metrics/metrics.h"
#include "metrics/metrics_render.h"
#include "queue/queue.h"
#include "queue/queue_console.h"
#include "spool/spool.h"
#include "test.h"

#define EXPO_FAMILIES_MAX 256
#define EXPO_SERIES_MAX   4096
#define HTTP_WAIT_MS      10000     /* longest wait for one HTTP answer */

/* What expo_check learnt from a text. */
struct expo {
	int nfamilies;
	struct {
		char name[128];
		char type[16];
	} fam[EXPO_FAMILIES_MAX];
	int nseries;
	char *series[EXPO_SERIES_MAX];      /* "name{labels}" as written */
	double value[EXPO_SERIES_MAX];
};

static int expo_check(const char *text, struct expo *e, char *why, size_t whylen);
static void expo_free(struct expo *e);
static int expo_get(const struct expo *e, const char *series, double *v);
static const char *expo_type(const struct expo *e, const char *name);
static const char *parse_name(const char *p, int metric);
static const char *parse_labels(const char *p, char *le, size_t lelen, char *why, size_t whylen);
static char *render(const struct metrics_snapshot *s);
static void snapshot_init(struct metrics_snapshot *s, const struct queue_stats *q);
static void test_escape_label(void);
static void test_format_seconds(void);
static void test_render_format(void);
static void test_cardinality_cap(void);
static void test_bindings(void);
static void test_histogram(void);
static void test_expo_check_rejects(void);
static void test_http(void);
static void test_start_errors(void);

struct http_answer;
static int http_fetch(int port, const char *request, struct http_answer *a);
static void *http_client_main(void *arg);
static void answer_free(struct http_answer *a);
static int free_port(void);

/* ---------------------------------------------------------------------- */
/* A strict parser of the text exposition format (version 0.0.4). */

static const char *
parse_name(const char *p, int metric)
{
	if (!(isalpha((unsigned char)*p) || *p == '_' || (metric && *p == ':')))
		return NULL;
	p++;
	while (isalnum((unsigned char)*p) || *p == '_' || (metric && *p == ':'))
		p++;
	return p;
}

/* parse_labels: p at '{'; returns the position after '}', or NULL. The le
 * label's value, if any, goes to le. */
static const char *
parse_labels(const char *p, char *le, size_t lelen, char *why, size_t whylen)
{
	char names[16][64];
	int nnames = 0;

	le[0] = '\0';
	p++;
	while (*p != '}') {
		const char *start = p, *end = parse_name(p, 0);
		char value[512];
		size_t vlen = 0;

		if (end == NULL || (size_t)(end - start) >= sizeof(names[0]) || nnames == 16) {
			snprintf(why, whylen, "bad label name at \"%.20s\"", start);
			return NULL;
		}
		for (int i = 0; i < nnames; i++)
			if (strlen(names[i]) == (size_t)(end - start) &&
			    strncmp(names[i], start, (size_t)(end - start)) == 0) {
				snprintf(why, whylen, "duplicate label %.*s", (int)(end - start), start);
				return NULL;
			}
		memcpy(names[nnames], start, (size_t)(end - start));
		names[nnames++][end - start] = '\0';
		p = end;
		if (p[0] != '=' || p[1] != '"') {
			snprintf(why, whylen, "label without =\" at \"%.20s\"", p);
			return NULL;
		}
		p += 2;
		while (*p != '"') {
			if (*p == '\0' || *p == '\n') {
				snprintf(why, whylen, "unterminated label value");
				return NULL;
			}
			if (*p == '\\') {
				if (p[1] != '\\' && p[1] != '"' && p[1] != 'n') {
					snprintf(why, whylen, "bad escape \\%c", p[1]);
					return NULL;
				}
				p++;
			}
			if (vlen + 1 < sizeof(value))
				value[vlen++] = *p;
			p++;
		}
		value[vlen] = '\0';
		p++;
		if (strcmp(names[nnames - 1], "le") == 0 && vlen < lelen)
			memcpy(le, value, vlen + 1);
		if (*p == ',')
			p++;
		else if (*p != '}') {
			snprintf(why, whylen, "expected , or } at \"%.20s\"", p);
			return NULL;
		}
	}
	return p + 1;
}

static int
expo_check(const char *text, struct expo *e, char *why, size_t whylen)
{
	const char *p = text;
	char cur[128] = "";                 /* the family whose samples may follow */
	char cur_type[16] = "";
	char help_for[128] = "";
	double last_bucket = -1, inf_bucket = -1;
	int line = 0;

	memset(e, 0, sizeof(*e));
	if (*text == '\0' || text[strlen(text) - 1] != '\n') {
		snprintf(why, whylen, "empty, or no newline at the end");
		return -1;
	}
	for (; *p != '\0'; p = strchr(p, '\n') + 1) {
		const char *nl = strchr(p, '\n');
		line++;
		if (p[0] == '#') {
			const char *name, *end;
			int is_help = strncmp(p, "# HELP ", 7) == 0, is_type = strncmp(p, "# TYPE ", 7) == 0;

			if (!is_help && !is_type) {
				snprintf(why, whylen, "line %d: comment that is neither HELP nor TYPE", line);
				return -1;
			}
			name = p + 7;
			end = parse_name(name, 1);
			if (end == NULL || *end != ' ' || (size_t)(end - name) >= sizeof(cur)) {
				snprintf(why, whylen, "line %d: bad metric name", line);
				return -1;
			}
			if (is_help) {
				if (end + 1 >= nl) {
					snprintf(why, whylen, "line %d: empty HELP", line);
					return -1;
				}
				snprintf(help_for, sizeof(help_for), "%.*s", (int)(end - name), name);
				continue;
			}
			/* TYPE: a new family; it must be new, after its HELP. */
			if (strlen(help_for) != (size_t)(end - name) ||
			    strncmp(help_for, name, (size_t)(end - name)) != 0) {
				snprintf(why, whylen, "line %d: TYPE without HELP just before", line);
				return -1;
			}
			if (strcmp(cur_type, "histogram") == 0 && inf_bucket < 0) {
				snprintf(why, whylen, "line %d: histogram %s without +Inf", line, cur);
				return -1;
			}
			snprintf(cur, sizeof(cur), "%.*s", (int)(end - name), name);
			snprintf(cur_type, sizeof(cur_type), "%.*s", (int)(nl - end - 1), end + 1);
			if (strcmp(cur_type, "counter") != 0 && strcmp(cur_type, "gauge") != 0 &&
			    strcmp(cur_type, "histogram") != 0) {
				snprintf(why, whylen, "line %d: type \"%s\"", line, cur_type);
				return -1;
			}
			if (strcmp(cur_type, "counter") == 0 &&
			    (strlen(cur) < 6 || strcmp(cur + strlen(cur) - 6, "_total") != 0)) {
				snprintf(why, whylen, "line %d: counter %s without _total", line, cur);
				return -1;
			}
			if (expo_type(e, cur) != NULL || e->nfamilies == EXPO_FAMILIES_MAX) {
				snprintf(why, whylen, "line %d: family %s again (not contiguous)", line, cur);
				return -1;
			}
			snprintf(e->fam[e->nfamilies].name, sizeof(e->fam[0].name), "%s", cur);
			snprintf(e->fam[e->nfamilies].type, sizeof(e->fam[0].type), "%s", cur_type);
			e->nfamilies++;
			help_for[0] = '\0';
			last_bucket = inf_bucket = -1;
			continue;
		}
		/* A sample. */
		{
			const char *end = parse_name(p, 1), *vstart;
			char base[160], le[64] = "", *vend;
			size_t blen;
			double v;

			if (end == NULL) {
				snprintf(why, whylen, "line %d: bad sample name", line);
				return -1;
			}
			blen = (size_t)(end - p);
			snprintf(base, sizeof(base), "%.*s", (int)blen, p);
			if (*end == '{') {
				end = parse_labels(end, le, sizeof(le), why, whylen);
				if (end == NULL)
					return -1;
			}
			if (*end != ' ') {
				snprintf(why, whylen, "line %d: no space before the value", line);
				return -1;
			}
			vstart = end + 1;
			v = strtod(vstart, &vend);
			if (vend == vstart || vend != nl) {
				snprintf(why, whylen, "line %d: bad value \"%.*s\"", line, (int)(nl - vstart),
				         vstart);
				return -1;
			}
			if (cur[0] == '\0') {
				snprintf(why, whylen, "line %d: sample before any TYPE", line);
				return -1;
			}
			if (strcmp(cur_type, "histogram") == 0) {
				char b[160], s[160], c[160];

				snprintf(b, sizeof(b), "%s_bucket", cur);
				snprintf(s, sizeof(s), "%s_sum", cur);
				snprintf(c, sizeof(c), "%s_count", cur);
				if (strcmp(base, b) == 0) {
					if (le[0] == '\0' || v < last_bucket || inf_bucket >= 0) {
						snprintf(why, whylen, "line %d: bucket out of order or not cumulative",
						         line);
						return -1;
					}
					last_bucket = v;
					if (strcmp(le, "+Inf") == 0)
						inf_bucket = v;
				} else if (strcmp(base, c) == 0) {
					if (inf_bucket < 0 || v != inf_bucket) {
						snprintf(why, whylen, "line %d: _count %g, +Inf bucket %g", line, v,
						         inf_bucket);
						return -1;
					}
				} else if (strcmp(base, s) != 0) {
					snprintf(why, whylen, "line %d: %s in histogram %s", line, base, cur);
					return -1;
				}
			} else if (strcmp(base, cur) != 0) {
				snprintf(why, whylen, "line %d: sample %s in family %s", line, base, cur);
				return -1;
			}
			if (strcmp(cur_type, "counter") == 0 && v < 0) {
				snprintf(why, whylen, "line %d: negative counter", line);
				return -1;
			}
			if (e->nseries == EXPO_SERIES_MAX) {
				snprintf(why, whylen, "too many series");
				return -1;
			}
			e->series[e->nseries] = strndup(p, (size_t)(end - p));
			e->value[e->nseries] = v;
			for (int i = 0; i < e->nseries; i++)
				if (strcmp(e->series[i], e->series[e->nseries]) == 0) {
					snprintf(why, whylen, "line %d: duplicate series %s", line, e->series[i]);
					e->nseries++;
					return -1;
				}
			e->nseries++;
		}
	}
	if (help_for[0] != '\0') {
		snprintf(why, whylen, "HELP %s without TYPE", help_for);
		return -1;
	}
	return e->nseries;
}

static void
expo_free(struct expo *e)
{
	for (int i = 0; i < e->nseries; i++)
		free(e->series[i]);
	e->nseries = 0;
}

static int
expo_get(const struct expo *e, const char *series, double *v)
{
	for (int i = 0; i < e->nseries; i++)
		if (strcmp(e->series[i], series) == 0) {
			*v = e->value[i];
			return 0;
		}
	return -1;
}

static const char *
expo_type(const struct expo *e, const char *name)
{
	for (int i = 0; i < e->nfamilies; i++)
		if (strcmp(e->fam[i].name, name) == 0)
			return e->fam[i].type;
	return NULL;
}

/* ---------------------------------------------------------------------- */

static char *
render(const struct metrics_snapshot *s)
{
	struct strbuf sb = STRBUF_INIT;

	metrics_render(s, &sb);
	return strbuf_steal(&sb);
}

static void
snapshot_init(struct metrics_snapshot *s, const struct queue_stats *q)
{
	memset(s, 0, sizeof(*s));
	s->uptime_s = 12.5;
	s->start_time_s = 1700000000.25;
	s->version = "0.1.0";
	s->queue = q;
	s->label_cap = 100;
}

/* Expect series to have value want in e. */
#define CHECK_SERIES(e, series, want)                                                  \
	do {                                                                           \
		double v_ = -1;                                                        \
		int rc_ = expo_get((e), (series), &v_);                                \
		CHECK(rc_ == 0 && v_ == (double)(want), "%s: got %s%g, want %g", (series), \
		      rc_ == 0 ? "" : "(missing) ", v_, (double)(want));               \
	} while (0)

static void
test_escape_label(void)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "example.com", "example.com" },
		{ "", "" },
		{ "a\\b", "a\\\\b" },
		{ "say \"hi\"", "say \\\"hi\\\"" },
		{ "two\nlines", "two\\nlines" },
		{ "b\xc3\xbc" "cher.de", "b\xc3\xbc" "cher.de" },           /* valid UTF-8 kept */
		{ "\xe2\x82\xac", "\xe2\x82\xac" },                          /* U+20AC */
		{ "\xf0\x9f\x93\xa7", "\xf0\x9f\x93\xa7" },                  /* U+1F4E7 */
		{ "x\xffy", "x\xef\xbf\xbdy" },                              /* bad byte */
		{ "\xc0\x80", "\xef\xbf\xbd\xef\xbf\xbd" },                  /* overlong NUL */
		{ "\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },  /* surrogate */
		{ "\xe2\x82", "\xef\xbf\xbd\xef\xbf\xbd" },                  /* truncated */
		{ "\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" }, /* > U+10FFFF */
		{ "\\\"\n", "\\\\\\\"\\n" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct strbuf sb = STRBUF_INIT;
		char ctx[32];

		metrics_escape_label(&sb, cases[i].in);
		snprintf(ctx, sizeof(ctx), "case %zu", i);
		CHECK_STR(strbuf_cstr(&sb), cases[i].want, ctx);
		strbuf_free(&sb);
	}
}

static void
test_format_seconds(void)
{
	static const struct {
		uint64_t us;
		const char *want;
	} cases[] = {
		{ 0, "0" }, { 1, "0.000001" }, { 50, "0.00005" }, { 100, "0.0001" },
		{ 250, "0.00025" }, { 1000, "0.001" }, { 1000000, "1" }, { 2500000, "2.5" },
		{ 10000000, "10" }, { 123456789, "123.456789" },
		{ UINT64_MAX, "18446744073709.551615" },
	};
	char buf[32];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char ctx[48];

		snprintf(ctx, sizeof(ctx), "%llu us", (unsigned long long)cases[i].us);
		CHECK_STR(metrics_format_seconds(cases[i].us, buf), cases[i].want, ctx);
	}
}

static void
test_render_format(void)
{
	struct queue_stats q;
	struct spool_sync_histogram h;
	struct metrics_snapshot s;
	struct queue_row rows[3];
	const char *bindings[] = { "default", "b\"1" };
	struct expo e;
	char why[256], *text;
	int n;

	memset(&q, 0, sizeof(q));
	q.received = 10; q.restored = 1; q.delivered = 7; q.transient = 3; q.failed = 2;
	q.bounces = 1; q.active = 4; q.delayed = 5; q.domains = 2; q.conns = 3;
	q.conn_attempts = 20; q.conn_failures = 6; q.dns_queries = 9; q.dns_failures = 1;
	q.conn_failures_by_cause[9] = 4;        /* CONN_ERROR_CONNECT */
	q.conn_failures_by_cause[11] = 2;       /* CONN_ERROR_CONNECT_TIMEOUT */
	memset(&h, 0, sizeof(h));
	h.bucket[0] = 2; h.bucket[4] = 3; h.bucket[SPOOL_SYNC_BUCKETS] = 1;
	h.sum_us = 20004250;
	memset(rows, 0, sizeof(rows));
	rows[0] = (struct queue_row){ .domain = "a.test", .slot = -1, .binding = "", .delayed = 2,
	                              .delivered = 5, .transient = 1, .failed = 0, .dns = "ready" };
	rows[1] = (struct queue_row){ .domain = "a.test", .slot = 1, .binding = "b\"1", .active = 3,
	                              .conns = 2, .dns = "" };
	rows[2] = (struct queue_row){ .domain = "we\\ird\n\"dom\"", .slot = -1, .binding = "",
	                              .delayed = 1, .delivered = 2, .failed = 2, .dns = "failed" };
	snapshot_init(&s, &q);
	s.sync = &h;
	s.rows = rows;
	s.nrows = 3;
	s.bindings = bindings;
	s.nbindings = 2;
	text = render(&s);
	n = expo_check(text, &e, why, sizeof(why));
	CHECK(n > 0, "expo_check: %s\n%s", why, text);

	CHECK_SERIES(&e, "impetus_received_total", 10);
	CHECK_SERIES(&e, "impetus_restored_total", 1);
	CHECK_SERIES(&e, "impetus_delivered_total", 7);
	CHECK_SERIES(&e, "impetus_transient_failures_total", 3);
	CHECK_SERIES(&e, "impetus_permanent_failures_total", 2);
	CHECK_SERIES(&e, "impetus_bounces_total", 1);
	CHECK_SERIES(&e, "impetus_queue_active_messages", 4);
	CHECK_SERIES(&e, "impetus_queue_delayed_messages", 5);
	CHECK_SERIES(&e, "impetus_queue_messages", 9);
	CHECK_SERIES(&e, "impetus_domains", 2);
	CHECK_SERIES(&e, "impetus_outbound_connections", 3);
	CHECK_SERIES(&e, "impetus_outbound_connection_attempts_total", 20);
	CHECK_SERIES(&e, "impetus_outbound_connection_failures_total", 6);
	CHECK_SERIES(&e, "impetus_dns_queries_total", 9);
	CHECK_SERIES(&e, "impetus_dns_failures_total", 1);
	CHECK_SERIES(&e, "impetus_uptime_seconds", 12.5);
	CHECK_SERIES(&e, "impetus_start_time_seconds", 1700000000.25);
	CHECK_SERIES(&e, "impetus_build_info{version=\"0.1.0\"}", 1);
	CHECK_SERIES(&e,
	    "impetus_outbound_connection_failures_by_cause_total{cause=\"CONN_ERROR_CONNECT\"}", 4);
	CHECK_SERIES(&e,
	    "impetus_outbound_connection_failures_by_cause_total{cause=\"CONN_ERROR_CONNECT_TIMEOUT\"}",
	    2);
	CHECK_SERIES(&e,
	    "impetus_outbound_connection_failures_by_cause_total{cause=\"CONN_ERROR_SOCKET\"}", 0);
	/* every named cause has a series */
	for (int i = 0; i < QUEUE_CONN_CAUSES; i++) {
		char series[160];
		double v;

		if (conn_error_name(1 << i) == NULL)
			continue;
		snprintf(series, sizeof(series),
		         "impetus_outbound_connection_failures_by_cause_total{cause=\"%s\"}",
		         conn_error_name(1 << i));
		CHECK(expo_get(&e, series, &v) == 0, "missing %s", series);
	}
	CHECK_SERIES(&e, "impetus_domain_delayed_messages{domain=\"a.test\"}", 2);
	CHECK_SERIES(&e, "impetus_domain_active_messages{domain=\"a.test\"}", 3);
	CHECK_SERIES(&e, "impetus_domain_outbound_connections{domain=\"a.test\"}", 2);
	CHECK_SERIES(&e, "impetus_domain_delivered_total{domain=\"a.test\"}", 5);
	CHECK_SERIES(&e, "impetus_domain_transient_failures_total{domain=\"a.test\"}", 1);
	CHECK_SERIES(&e, "impetus_domain_permanent_failures_total{domain=\"we\\\\ird\\n\\\"dom\\\"\"}",
	             2);
	CHECK_SERIES(&e, "impetus_binding_active_messages{binding=\"default\"}", 0);
	CHECK_SERIES(&e, "impetus_binding_active_messages{binding=\"b\\\"1\"}", 3);
	CHECK_SERIES(&e, "impetus_binding_outbound_connections{binding=\"b\\\"1\"}", 2);
	CHECK_SERIES(&e, "impetus_metrics_domains_folded", 0);
	CHECK_SERIES(&e, "impetus_spool_sync_duration_seconds_count", 6);
	CHECK_SERIES(&e, "impetus_spool_sync_duration_seconds_sum", 20.00425);
	CHECK(strstr(text, "impetus_domain_delivered_total{domain=\"_other\"}") == NULL,
	      "_other present with nothing folded");
	CHECK_STR(expo_type(&e, "impetus_delivered_total"), "counter", "type of delivered");
	CHECK_STR(expo_type(&e, "impetus_queue_active_messages"), "gauge", "type of active");
	CHECK_STR(expo_type(&e, "impetus_spool_sync_duration_seconds"), "histogram",
	          "type of the sync histogram");
	expo_free(&e);
	free(text);

	/* Without rows, bindings or histogram: still valid, no per-domain series. */
	snapshot_init(&s, &q);
	text = render(&s);
	n = expo_check(text, &e, why, sizeof(why));
	CHECK(n > 0, "expo_check (empty snapshot): %s\n%s", why, text);
	CHECK(strstr(text, "{domain=") == NULL, "domain series without rows");
	CHECK(expo_type(&e, "impetus_spool_sync_duration_seconds") == NULL,
	      "histogram without data");
	expo_free(&e);
	free(text);
}

static void
test_cardinality_cap(void)
{
	/* Queue sizes 10, 1+1, 0 (5 outcomes), 7, 0 (1 outcome); a binding row each for two. */
	static const struct {
		const char *domain;
		int slot;
		size_t active, delayed;
		uint64_t delivered;
	} in[] = {
		{ "big.test", -1, 0, 10, 100 },
		{ "two.test", -1, 0, 1, 3 },
		{ "two.test", 0, 1, 0, 0 },
		{ "idle5.test", -1, 0, 0, 5 },
		{ "seven.test", -1, 0, 2, 0 },
		{ "seven.test", 0, 5, 0, 0 },
		{ "idle1.test", -1, 0, 0, 1 },
	};
	static const struct {
		int cap;
		const char *exported[6];    /* NULL-terminated */
		int folded;
		uint64_t other_delivered, other_queue;
	} cases[] = {
		{ 2, { "big.test", "seven.test", NULL }, 3, 9, 2 },
		{ 3, { "big.test", "seven.test", "two.test", NULL }, 2, 6, 0 },
		{ 4, { "big.test", "idle5.test", "seven.test", "two.test", NULL }, 1, 1, 0 },
		{ 5, { "big.test", "idle1.test", "idle5.test", "seven.test", "two.test", NULL }, 0,
		  0, 0 },
		{ 100, { "big.test", "idle1.test", "idle5.test", "seven.test", "two.test", NULL }, 0,
		  0, 0 },
		{ 0, { NULL }, 5, 109, 19 },
		{ -3, { NULL }, 5, 109, 19 },
	};
	struct queue_row rows[sizeof(in) / sizeof(in[0])];
	struct queue_stats q;

	memset(&q, 0, sizeof(q));
	memset(rows, 0, sizeof(rows));
	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		rows[i].domain = in[i].domain;
		rows[i].slot = in[i].slot;
		rows[i].binding = in[i].slot < 0 ? "" : "default";
		rows[i].active = in[i].active;
		rows[i].delayed = in[i].delayed;
		rows[i].delivered = in[i].delivered;
		rows[i].dns = in[i].slot < 0 ? "ready" : "";
	}
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct metrics_snapshot s;
		struct expo e;
		char why[256], ctx[64], *text;
		int nexp = 0, nsets = 0;
		double total = 0, v;

		snapshot_init(&s, &q);
		s.rows = rows;
		s.nrows = sizeof(rows) / sizeof(rows[0]);
		s.label_cap = cases[c].cap;
		text = render(&s);
		snprintf(ctx, sizeof(ctx), "cap %d", cases[c].cap);
		CHECK(expo_check(text, &e, why, sizeof(why)) > 0, "%s: %s", ctx, why);
		for (; cases[c].exported[nexp] != NULL; nexp++) {
			char series[128];

			snprintf(series, sizeof(series), "impetus_domain_delivered_total{domain=\"%s\"}",
			         cases[c].exported[nexp]);
			CHECK(expo_get(&e, series, &v) == 0, "%s: %s missing", ctx, series);
		}
		for (int i = 0; i < e.nseries; i++)
			if (strncmp(e.series[i], "impetus_domain_delivered_total{", 31) == 0) {
				nsets++;
				total += e.value[i];
			}
		CHECK_INT(nsets, nexp + (cases[c].folded > 0), ctx);
		CHECK(total == 109, "%s: delivered summed over the label sets: got %g, want 109", ctx,
		      total);
		CHECK_SERIES(&e, "impetus_metrics_domains_folded", cases[c].folded);
		if (cases[c].folded > 0) {
			double qa = 0, qd = 0;

			CHECK_SERIES(&e, "impetus_domain_delivered_total{domain=\"_other\"}",
			             cases[c].other_delivered);
			expo_get(&e, "impetus_domain_active_messages{domain=\"_other\"}", &qa);
			expo_get(&e, "impetus_domain_delayed_messages{domain=\"_other\"}", &qd);
			CHECK(qa + qd == (double)cases[c].other_queue, "%s: _other queue: got %g, want %llu",
			      ctx, qa + qd, (unsigned long long)cases[c].other_queue);
		} else
			CHECK(strstr(text, "{domain=\"_other\"}") == NULL, "%s: _other without folding",
			      ctx);
		expo_free(&e);
		free(text);
	}
}

static void
test_bindings(void)
{
	struct queue_row rows[4];
	const char *bindings[] = { "default", NULL, "idle" };
	struct queue_stats q;
	struct metrics_snapshot s;
	struct expo e;
	char why[256], *text;

	memset(&q, 0, sizeof(q));
	memset(rows, 0, sizeof(rows));
	rows[0] = (struct queue_row){ .domain = "x.test", .slot = 0, .binding = "default",
	                              .active = 2, .inflight = 1, .conns = 1 };
	rows[1] = (struct queue_row){ .domain = "y.test", .slot = 0, .binding = "default",
	                              .active = 3, .conns = 2 };
	rows[2] = (struct queue_row){ .domain = "y.test", .slot = 4, .binding = "late",
	                              .active = 1 };
	rows[3] = (struct queue_row){ .domain = "y.test", .slot = -1, .binding = "", .delayed = 4 };
	snapshot_init(&s, &q);
	s.rows = rows;
	s.nrows = 4;
	s.bindings = bindings;
	s.nbindings = 3;
	text = render(&s);
	CHECK(expo_check(text, &e, why, sizeof(why)) > 0, "expo_check: %s", why);
	CHECK_SERIES(&e, "impetus_binding_active_messages{binding=\"default\"}", 5);
	CHECK_SERIES(&e, "impetus_binding_inflight_messages{binding=\"default\"}", 1);
	CHECK_SERIES(&e, "impetus_binding_outbound_connections{binding=\"default\"}", 3);
	CHECK_SERIES(&e, "impetus_binding_active_messages{binding=\"idle\"}", 0);
	CHECK_SERIES(&e, "impetus_binding_active_messages{binding=\"late\"}", 1);
	CHECK_SERIES(&e, "impetus_domain_active_messages{domain=\"y.test\"}", 4);
	CHECK_SERIES(&e, "impetus_domain_delayed_messages{domain=\"y.test\"}", 4);
	CHECK_SERIES(&e, "impetus_domain_inflight_messages{domain=\"x.test\"}", 1);
	expo_free(&e);
	free(text);
}

static void
test_histogram(void)
{
	struct spool_sync_histogram before, after, h;
	struct queue_stats q;
	struct metrics_snapshot s;
	struct expo e;
	char why[256], *text;
	uint64_t cum = 0;

	/* The spool side: bounds are inclusive, the last bucket is the overflow. */
	static const struct {
		uint64_t us;
		size_t bucket;
	} obs[] = {
		{ 0, 0 }, { 50, 0 }, { 51, 1 }, { 1000, 4 }, { 1001, 5 },
		{ 10000000, SPOOL_SYNC_BUCKETS - 1 }, { 10000001, SPOOL_SYNC_BUCKETS },
	};
	for (size_t i = 1; i < SPOOL_SYNC_BUCKETS; i++)
		CHECK(spool_sync_bucket_us[i] > spool_sync_bucket_us[i - 1],
		      "bounds not ascending at %zu", i);
	for (size_t i = 0; i < sizeof(obs) / sizeof(obs[0]); i++) {
		spool_sync_histogram(&before);
		spool_sync_observe(obs[i].us);
		spool_sync_histogram(&after);
		for (size_t b = 0; b <= SPOOL_SYNC_BUCKETS; b++)
			CHECK_INT(after.bucket[b] - before.bucket[b], b == obs[i].bucket ? 1 : 0,
			          "bucket delta");
		CHECK_INT(after.sum_us - before.sum_us, obs[i].us, "sum delta");
	}

	/* The rendering: cumulative, +Inf == _count, bounds in seconds. */
	memset(&q, 0, sizeof(q));
	memset(&h, 0, sizeof(h));
	for (size_t i = 0; i <= SPOOL_SYNC_BUCKETS; i++)
		h.bucket[i] = i % 3;
	h.sum_us = 1500;
	snapshot_init(&s, &q);
	s.sync = &h;
	text = render(&s);
	CHECK(expo_check(text, &e, why, sizeof(why)) > 0, "expo_check: %s", why);
	for (size_t i = 0; i < SPOOL_SYNC_BUCKETS; i++) {
		char series[128], le[32];

		cum += h.bucket[i];
		snprintf(series, sizeof(series), "impetus_spool_sync_duration_seconds_bucket{le=\"%s\"}",
		         metrics_format_seconds(spool_sync_bucket_us[i], le));
		CHECK_SERIES(&e, series, cum);
	}
	cum += h.bucket[SPOOL_SYNC_BUCKETS];
	CHECK_SERIES(&e, "impetus_spool_sync_duration_seconds_bucket{le=\"+Inf\"}", cum);
	CHECK_SERIES(&e, "impetus_spool_sync_duration_seconds_count", cum);
	CHECK_SERIES(&e, "impetus_spool_sync_duration_seconds_sum", 0.0015);
	CHECK_SERIES(&e, "impetus_spool_sync_duration_seconds_bucket{le=\"0.00005\"}", 0);
	CHECK_SERIES(&e, "impetus_spool_sync_duration_seconds_bucket{le=\"10\"}",
	             cum - h.bucket[SPOOL_SYNC_BUCKETS]);
	expo_free(&e);
	free(text);
}

/* The checker itself must refuse what Prometheus would refuse. */
static void
test_expo_check_rejects(void)
{
	static const char *bad[] = {
		"",
		"x 1",                                                      /* no newline */
		"x 1\n",                                                    /* no TYPE */
		"# TYPE x gauge\nx 1\n",                                    /* no HELP */
		"# HELP x h\n# TYPE x gauge\nx{a=\"1} 1\n",                 /* unterminated */
		"# HELP x h\n# TYPE x gauge\nx{a=\"\\t\"} 1\n",             /* bad escape */
		"# HELP x h\n# TYPE x gauge\nx one\n",                      /* bad value */
		"# HELP x h\n# TYPE x gauge\nx 1\nx 2\n",                   /* duplicate */
		"# HELP x h\n# TYPE x counter\nx 1\n",                      /* counter name */
		"# HELP x h\n# TYPE x gauge\ny 1\n",                        /* wrong family */
		"# HELP x h\n# TYPE x gauge\nx 1\n# HELP y h\n# TYPE y gauge\ny 1\n"
		"# HELP x h\n# TYPE x gauge\n",                             /* not contiguous */
		"# HELP h s\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"2\"} 1\n"
		"h_bucket{le=\"+Inf\"} 2\nh_count 2\n",                     /* not cumulative */
		"# HELP h s\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 3\n",
		"# HELP 1x h\n# TYPE 1x gauge\n1x 1\n",                     /* bad name */
	};
	static const char good[] =
		"# HELP x h\n# TYPE x gauge\nx{a=\"\\\\\\\"\\n\",b=\"\"} 1.5\n"
		"# HELP h s\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\n"
		"h_sum 3\nh_count 2\n";
	struct expo e;
	char why[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK(expo_check(bad[i], &e, why, sizeof(why)) < 0, "accepted bad case %zu", i);
		expo_free(&e);
	}
	why[0] = '\0';
	CHECK(expo_check(good, &e, why, sizeof(why)) == 5, "refused the good text: %s", why);
	expo_free(&e);
}

/* ---------------------------------------------------------------------- */
/* The listener, on an in-process main loop, fetched by a client thread. */

struct http_answer {
	int status;
	char *headers;                      /* the header block, malloc'd */
	char *body;                         /* malloc'd */
};

struct http_client {
	struct loop *main_loop;
	int port, port2;
	struct http_answer health, metrics, missing, post, metrics2, health2;
	int failed;                         /* a fetch did not complete */
};

/* http_fetch: send request to 127.0.0.1:port, read until the server closes. */
static int
http_fetch(int port, const char *request, struct http_answer *a)
{
	struct sockaddr_in sin;
	struct strbuf in = STRBUF_INIT;
	char buf[4096], *sep;
	int fd, rc = -1;

	memset(a, 0, sizeof(*a));
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    write(fd, request, strlen(request)) != (ssize_t)strlen(request))
		goto out;
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&pfd, 1, HTTP_WAIT_MS) <= 0)
			goto out;
		n = read(fd, buf, sizeof(buf));
		if (n < 0)
			goto out;
		if (n == 0)
			break;
		strbuf_append(&in, buf, (size_t)n);
	}
	sep = strstr(strbuf_cstr(&in), "\r\n\r\n");
	if (sep == NULL || sscanf(strbuf_cstr(&in), "HTTP/1.%*d %d", &a->status) != 1)
		goto out;
	a->headers = strndup(in.data, (size_t)(sep - in.data));
	a->body = strdup(sep + 4);
	rc = 0;
out:
	strbuf_free(&in);
	close(fd);
	return rc;
}

static void *
http_client_main(void *arg)
{
	struct http_client *c = arg;
	static const char close_hdr[] = "Host: localhost\r\nConnection: close\r\n\r\n";
	char req[256];

	snprintf(req, sizeof(req), "GET /health HTTP/1.1\r\n%s", close_hdr);
	c->failed |= http_fetch(c->port, req, &c->health) < 0;
	snprintf(req, sizeof(req), "GET /metrics HTTP/1.1\r\n%s", close_hdr);
	c->failed |= http_fetch(c->port, req, &c->metrics) < 0;
	snprintf(req, sizeof(req), "GET /nope HTTP/1.1\r\n%s", close_hdr);
	c->failed |= http_fetch(c->port, req, &c->missing) < 0;
	snprintf(req, sizeof(req), "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n%s", close_hdr);
	c->failed |= http_fetch(c->port, req, &c->post) < 0;
	snprintf(req, sizeof(req), "GET /metrics?x=1 HTTP/1.0\r\n\r\n");
	c->failed |= http_fetch(c->port2, req, &c->metrics2) < 0;
	snprintf(req, sizeof(req), "GET /health HTTP/1.0\r\n\r\n");
	c->failed |= http_fetch(c->port2, req, &c->health2) < 0;
	loop_main_break(c->main_loop);
	return NULL;
}

static void
answer_free(struct http_answer *a)
{
	free(a->headers);
	free(a->body);
}

/* free_port: a loopback TCP port free a moment ago (the kernel's pick). */
static int
free_port(void)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sin, &len) == 0)
		port = ntohs(sin.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static void
test_http(void)
{
	struct http_client c;
	struct expo e;
	pthread_t tid;
	char err[256], why[256];
	double v = -1;

	memset(&c, 0, sizeof(c));
	c.main_loop = loop_main_new();
	CHECK(c.main_loop != NULL, "loop_main_new: got NULL");
	if (c.main_loop == NULL)
		return;
	CHECK_INT(metrics_port(), -1, "port before start");
	for (int i = 0; i < 2; i++) {
		char listen[64];
		int want = free_port();

		snprintf(listen, sizeof(listen), "127.0.0.1:%d", want);
		CHECK(metrics_start(c.main_loop, listen, err, sizeof(err)) == 0, "start %s: %s",
		      listen, err);
		CHECK_INT(metrics_port(), want, listen);
		*(i == 0 ? &c.port : &c.port2) = metrics_port();
	}
	CHECK(c.port > 0 && c.port2 > 0 && c.port != c.port2, "ports: got %d and %d", c.port,
	      c.port2);
	/* The port is taken now. */
	{
		char listen[64];

		snprintf(listen, sizeof(listen), "127.0.0.1:%d", c.port);
		CHECK(metrics_start(c.main_loop, listen, err, sizeof(err)) < 0,
		      "a port in use: got 0, want -1");
		CHECK(strstr(err, "in use") != NULL, "a port in use: got \"%s\"", err);
	}
	metrics_set_label_cap(5);

	CHECK(pthread_create(&tid, NULL, http_client_main, &c) == 0, "pthread_create");
	CHECK_INT(loop_main_run(c.main_loop), 0, "loop_main_run");
	pthread_join(tid, NULL);
	CHECK(!c.failed, "a fetch did not complete");

	CHECK_INT(c.health.status, 200, "/health status");
	CHECK_STR(c.health.body, "ok\n", "/health body");
	CHECK_INT(c.metrics.status, 200, "/metrics status");
	CHECK(c.metrics.headers != NULL && strstr(c.metrics.headers, METRICS_CONTENT_TYPE) != NULL,
	      "/metrics content type: headers %s", c.metrics.headers ? c.metrics.headers : "(none)");
	if (c.metrics.body != NULL) {
		CHECK(expo_check(c.metrics.body, &e, why, sizeof(why)) > 0, "/metrics: %s\n%s", why,
		      c.metrics.body);
		CHECK(expo_get(&e, "impetus_uptime_seconds", &v) == 0 && v >= 0 && v < 60,
		      "uptime: got %g", v);
		CHECK(expo_get(&e, "impetus_start_time_seconds", &v) == 0 && v > 1.6e9,
		      "start time: got %g", v);
		CHECK_SERIES(&e, "impetus_delivered_total", 0);
		CHECK(expo_type(&e, "impetus_spool_sync_duration_seconds") != NULL,
		      "no sync histogram in /metrics");
		expo_free(&e);
	}
	CHECK_INT(c.missing.status, 404, "/nope status");
	CHECK_INT(c.post.status, 501, "POST /metrics status (GET only)");
	CHECK_INT(c.metrics2.status, 200, "/metrics?x=1 on the 2nd listener (HTTP/1.0)");
	if (c.metrics2.body != NULL) {
		CHECK(expo_check(c.metrics2.body, &e, why, sizeof(why)) > 0, "/metrics 2: %s", why);
		expo_free(&e);
	}
	CHECK_INT(c.health2.status, 200, "/health on the 2nd listener");

	metrics_stop();
	CHECK_INT(metrics_port(), -1, "port after stop");
	/* Stopped: the port is free again and another start works. */
	{
		char listen[64];

		snprintf(listen, sizeof(listen), "127.0.0.1:%d", c.port);
		CHECK(metrics_start(c.main_loop, listen, err, sizeof(err)) == 0,
		      "restart on the same port: %s", err);
		metrics_stop();
	}
	metrics_set_label_cap(METRICS_LABEL_CAP_DEFAULT);
	loop_main_free(c.main_loop);
	answer_free(&c.health);
	answer_free(&c.metrics);
	answer_free(&c.missing);
	answer_free(&c.post);
	answer_free(&c.metrics2);
	answer_free(&c.health2);
}

static void
test_start_errors(void)
{
	static const char *bad[] = {
		"nonsense", "127.0.0.1", "127.0.0.1:99999", "127.0.0.1:0", "/tmp/metrics.sock",
		"256.0.0.1:80",
		"", "192.0.2.1:8025",   /* not a local address: bind fails */
	};
	struct loop *l = loop_main_new();
	char err[256];

	CHECK(l != NULL, "loop_main_new");
	if (l == NULL)
		return;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		CHECK(metrics_start(l, bad[i], err, sizeof(err)) < 0, "\"%s\": got 0, want -1", bad[i]);
		CHECK(err[0] != '\0', "\"%s\": no reason", bad[i]);
	}
	CHECK(metrics_start(NULL, "127.0.0.1:8025", err, sizeof(err)) < 0, "NULL loop accepted");
	CHECK_INT(metrics_port(), -1, "port after failed starts");
	metrics_stop();
	loop_main_free(l);
}

TEST_MAIN("metrics",
          TEST(test_escape_label),
          TEST(test_format_seconds),
          TEST(test_render_format),
          TEST(test_cardinality_cap),
          TEST(test_bindings),
          TEST(test_histogram),
          TEST(test_expo_check_rejects),
          TEST(test_http),
          TEST(test_start_errors))

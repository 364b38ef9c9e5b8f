/*
 * dsn_test.c - delivery status notifications: reports are built and parsed
 * back (header fields, the MIME parts split by the boundary, the
 * delivery-status groups), and every output is checked for CRLF-only line
 * ends and lines of at most 998 octets. Also dsn_status_from_reply.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "delivery/dsn.h"
#include "lib/strbuf.h"
#include "test.h"

#define NOW 1700000000          /* Tue, 14 Nov 2023 22:13:20 +0000 */
#define ARRIVAL 1699999000      /* Tue, 14 Nov 2023 21:56:40 +0000 */
#define ATTEMPT 1700000500      /* Tue, 14 Nov 2023 22:21:40 +0000 */
#define MAX_PARTS 8
#define MAX_GROUPS 16

/* A parsed notification; pointers into the built text. */
struct parsed_part {
	const char *hdr;        /* the part's header section, each line with its CRLF */
	size_t hdr_len;
	const char *body;       /* the part's content, up to the CRLF before the delimiter */
	size_t body_len;
};

struct parsed {
	const char *hdr;        /* the message header section */
	size_t hdr_len;
	char boundary[128];     /* from Content-Type */
	struct parsed_part parts[MAX_PARTS];
	size_t nparts;
	int closed;             /* the close delimiter was found */
};

static const char ORIG[] =
	"From: Sender <sender@src.test>\r\n"
	"To: b@d1.test\r\n"
	"Subject: hello\r\n"
	"Message-ID: <m1@src.test>\r\n"
	"\r\n"
	"Body line one\r\n"
	"Body line two\r\n";
static const char ORIG_HEADERS[] =
	"From: Sender <sender@src.test>\r\n"
	"To: b@d1.test\r\n"
	"Subject: hello\r\n"
	"Message-ID: <m1@src.test>\r\n";

static struct dsn_rcpt base_rcpt(void);
static struct dsn_report base_report(const struct dsn_rcpt *rcpts, size_t n);
static char *header_get(const char *hdr, size_t len, const char *name);
static int header_count(const char *hdr, size_t len, const char *name);
static int parse_message(const char *msg, size_t len, struct parsed *pm);
static size_t split_groups(const char *s, size_t len, const char **starts, size_t *lens,
                           size_t max);
static void check_lines(const char *msg, size_t len, const char *ctx);
static void check_no_controls(const char *s, size_t len, const char *ctx);
static void check_header(const char *hdr, size_t len, const char *name, const char *want,
                         const char *ctx);
static int build(const struct dsn_report *r, struct strbuf *out, struct parsed *pm,
                 const char *ctx);
static int contains(const char *s, size_t len, const char *needle);

static void test_status_from_reply(void);
static void test_basic_failed(void);
static void test_headers_only_and_full(void);
static void test_subjects(void);
static void test_orcpt_envid(void);
static void test_diagnostic_cleaned(void);
static void test_long_fields(void);
static void test_boundary_collision(void);
static void test_original_line_ends(void);
static void test_original_long_lines(void);
static void test_no_original(void);
static void test_invalid_reports(void);
static void test_8bit(void);

static struct dsn_rcpt
base_rcpt(void)
{
	struct dsn_rcpt rc = {
		.rcpt = "b@d1.test",
		.orcpt = NULL,
		.action = "failed",
		.status = "5.1.1",
		.remote_mta = "mx.d1.test",
		.diagnostic = "550 5.1.1 <b@d1.test>: user unknown",
		.last_attempt = ATTEMPT,
	};
	return rc;
}

static struct dsn_report
base_report(const struct dsn_rcpt *rcpts, size_t n)
{
	struct dsn_report r = {
		.reporting_mta = "mta.impetus.test",
		.return_path = "sender@src.test",
		.envid = NULL,
		.arrival = ARRIVAL,
		.now = NOW,
		.message_id_seed = "0123abcd",
		.ret_full = 0,
		.orig = ORIG,
		.orig_len = sizeof(ORIG) - 1,
		.max_orig_len = 0,
		.rcpts = rcpts,
		.nrcpt = n,
	};
	return r;
}

static int
contains(const char *s, size_t len, const char *needle)
{
	return memmem(s, len, needle, strlen(needle)) != NULL;
}

/* header_get: the unfolded value of the first field called name (malloc'd), or NULL. */
static char *
header_get(const char *hdr, size_t len, const char *name)
{
	size_t nlen = strlen(name);
	const char *p = hdr, *end = hdr + len;

	while (p < end) {
		const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
		if (eol == NULL)
			eol = end;
		if ((size_t)(eol - p) > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
			struct strbuf v = STRBUF_INIT;
			const char *q = p + nlen + 1;

			while (q < eol && *q == ' ')
				q++;
			strbuf_append(&v, q, (size_t)(eol - q));
			/* continuation lines: CRLF then a space or tab */
			while (eol + 2 < end && (eol[2] == ' ' || eol[2] == '\t')) {
				const char *next = eol + 2;
				const char *e2 = memmem(next, (size_t)(end - next), "\r\n", 2);
				if (e2 == NULL)
					e2 = end;
				strbuf_append(&v, next, (size_t)(e2 - next));
				eol = e2;
			}
			return strbuf_steal(&v);
		}
		p = eol + 2;
	}
	return NULL;
}

static int
header_count(const char *hdr, size_t len, const char *name)
{
	size_t nlen = strlen(name);
	int n = 0;

	for (const char *p = hdr; p < hdr + len;) {
		const char *eol = memmem(p, (size_t)(hdr + len - p), "\r\n", 2);
		if (eol == NULL)
			eol = hdr + len;
		if ((size_t)(eol - p) > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':')
			n++;
		p = eol + 2;
	}
	return n;
}

static void
check_header(const char *hdr, size_t len, const char *name, const char *want, const char *ctx)
{
	char *got = header_get(hdr, len, name);
	char what[160];

	snprintf(what, sizeof(what), "%s: %s", ctx, name);
	CHECK_STR(got, want, what);
	free(got);
}

/* parse_message: split the notification into its header and MIME parts. */
static int
parse_message(const char *msg, size_t len, struct parsed *pm)
{
	const char *sep = memmem(msg, len, "\r\n\r\n", 4);
	char *ct, *b, delim[160];
	const char *cur, *end = msg + len;

	memset(pm, 0, sizeof(*pm));
	if (sep == NULL)
		return -1;
	pm->hdr = msg;
	pm->hdr_len = (size_t)(sep - msg) + 2;
	ct = header_get(pm->hdr, pm->hdr_len, "Content-Type");
	if (ct == NULL)
		return -1;
	b = strstr(ct, "boundary=\"");
	if (b == NULL || strchr(b + 10, '"') == NULL) {
		free(ct);
		return -1;
	}
	snprintf(pm->boundary, sizeof(pm->boundary), "%.*s",
	         (int)(strchr(b + 10, '"') - (b + 10)), b + 10);
	free(ct);
	snprintf(delim, sizeof(delim), "\r\n--%s", pm->boundary);
	cur = sep + 2;          /* the delimiter's CRLF may be the blank line's */
	while (cur < end) {
		const char *d = memmem(cur, (size_t)(end - cur), delim, strlen(delim));
		const char *after;

		if (d == NULL)
			break;
		if (pm->nparts > 0)
			pm->parts[pm->nparts - 1].body_len = (size_t)(d - pm->parts[pm->nparts - 1].body);
		after = d + strlen(delim);
		if (after + 2 <= end && after[0] == '-' && after[1] == '-') {
			pm->closed = 1;
			break;
		}
		if (after + 2 > end || after[0] != '\r' || after[1] != '\n' || pm->nparts == MAX_PARTS)
			return -1;
		struct parsed_part *p = &pm->parts[pm->nparts++];
		const char *psep;

		p->hdr = after + 2;
		psep = memmem(p->hdr, (size_t)(end - p->hdr), "\r\n\r\n", 4);
		if (psep == NULL)
			return -1;
		p->hdr_len = (size_t)(psep - p->hdr) + 2;
		p->body = psep + 4;
		cur = p->body - 2;      /* an empty body: the delimiter follows at once */
	}
	return pm->closed ? 0 : -1;
}

/* split_groups: the blank-line separated groups of a delivery-status body. */
static size_t
split_groups(const char *s, size_t len, const char **starts, size_t *lens, size_t max)
{
	size_t n = 0;
	const char *p = s, *end = s + len;

	while (p < end && n < max) {
		const char *q = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
		const char *gend = q ? q + 2 : end;

		starts[n] = p;
		lens[n] = (size_t)(gend - p);
		n++;
		if (q == NULL)
			break;
		p = q + 4;
	}
	return n;
}

/* check_lines: CRLF only, no line over 998 octets, ends with CRLF. */
static void
check_lines(const char *msg, size_t len, const char *ctx)
{
	size_t col = 0, longest = 0;
	int bare = 0;

	for (size_t i = 0; i < len; i++) {
		if (msg[i] == '\r') {
			if (i + 1 >= len || msg[i + 1] != '\n')
				bare++;
			continue;
		}
		if (msg[i] == '\n') {
			if (i == 0 || msg[i - 1] != '\r')
				bare++;
			col = 0;
			continue;
		}
		if (++col > longest)
			longest = col;
	}
	CHECK(bare == 0, "%s: got %d bare CR/LF, want 0", ctx, bare);
	CHECK(longest <= 998, "%s: got a line of %zu octets, want <= 998", ctx, longest);
	CHECK(len >= 2 && msg[len - 2] == '\r' && msg[len - 1] == '\n',
	      "%s: got no final CRLF, want one", ctx);
}

/* check_no_controls: no control characters but CR and LF. */
static void
check_no_controls(const char *s, size_t len, const char *ctx)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if ((c < 0x20 && c != '\r' && c != '\n') || c == 0x7f) {
			CHECK(0, "%s: got control 0x%02x at %zu, want none", ctx, c, i);
			return;
		}
	}
}

/* build: dsn_build into out (reset), the generic checks, and the parse. */
static int
build(const struct dsn_report *r, struct strbuf *out, struct parsed *pm, const char *ctx)
{
	strbuf_reset(out);
	int rc = dsn_build(r, out);
	CHECK_INT(rc, 0, ctx);
	if (rc != 0)
		return -1;
	check_lines(out->data, out->len, ctx);
	rc = parse_message(out->data, out->len, pm);
	CHECK(rc == 0, "%s: got an unparsable message, want multipart/report:\n%s", ctx, out->data);
	if (rc != 0)
		return -1;
	check_no_controls(pm->hdr, pm->hdr_len, ctx);
	for (size_t i = 0; i < pm->nparts && i < 2; i++)
		check_no_controls(pm->parts[i].body, pm->parts[i].body_len, ctx);
	return 0;
}

static void
test_status_from_reply(void)
{
	static const struct {
		const char *reply;      /* NULL: a NULL pointer */
		const char *want;
	} cases[] = {
		{ "550 5.1.1 <x@y.test>: user unknown", "5.1.1" },
		{ "550-5.1.1 first line\r\n550 5.1.1 last", "5.1.1" },
		{ "452 4.2.2 Mailbox full", "4.2.2" },
		{ "250 2.0.0 Ok", "2.0.0" },
		{ "554 5.7.1", "5.7.1" },
		{ "550 5.7.26 DMARC", "5.7.26" },
		{ "550 5.100.999 odd but valid", "5.100.999" },
		{ "550 5.01.001 leading zeros", "5.1.1" },
		{ "550  5.1.1 two spaces", "5.1.1" },
		{ "550 user unknown", "5.0.0" },
		{ "550", "5.0.0" },
		{ "451 Try again later", "4.0.0" },
		{ "421 4.3.2 shutting down", "4.3.2" },
		{ "550 4.1.1 class mismatch", "5.0.0" },
		{ "450 5.1.1 class mismatch", "4.0.0" },
		{ "550 5.1.1234 too many digits", "5.0.0" },
		{ "550 5.1 too short", "5.0.0" },
		{ "550 5.1.1x glued", "5.0.0" },
		{ "550 5..1 empty subject", "5.0.0" },
		{ "250 ok", "2.0.0" },
		{ "354 go ahead", "4.0.0" },
		{ "000 nothing", "4.0.0" },
		{ "0", "4.0.0" },
		{ "", "4.0.0" },
		{ "garbage", "4.0.0" },
		{ "55", "4.0.0" },
		{ "5500 5.1.1 four digits", "4.0.0" },
		{ " 550 5.1.1 leading space", "4.0.0" },
		{ NULL, "4.0.0" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[DSN_STATUS_MAX];
		const char *got = dsn_status_from_reply(cases[i].reply, buf, sizeof(buf));

		CHECK(got == buf, "%s: got a pointer other than buf", cases[i].reply);
		CHECK_STR(got, cases[i].want, cases[i].reply ? cases[i].reply : "(null)");
	}
}

static void
test_basic_failed(void)
{
	struct dsn_rcpt rc = base_rcpt();
	struct dsn_report r = base_report(&rc, 1);
	struct strbuf out = STRBUF_INIT;
	struct parsed pm;
	const char *g[MAX_GROUPS];
	size_t gl[MAX_GROUPS], ng;
	char *v;

	if (build(&r, &out, &pm, "basic") != 0)
		goto done;
	check_header(pm.hdr, pm.hdr_len, "From", "Mail Delivery System <MAILER-DAEMON@mta.impetus.test>", "basic");
	check_header(pm.hdr, pm.hdr_len, "To", "<sender@src.test>", "basic");
	check_header(pm.hdr, pm.hdr_len, "Subject", "Undelivered Mail Returned to Sender", "basic");
	check_header(pm.hdr, pm.hdr_len, "Date", "Tue, 14 Nov 2023 22:13:20 +0000", "basic");
	check_header(pm.hdr, pm.hdr_len, "Message-ID", "<0123abcd.dsn@mta.impetus.test>", "basic");
	check_header(pm.hdr, pm.hdr_len, "MIME-Version", "1.0", "basic");
	check_header(pm.hdr, pm.hdr_len, "Auto-Submitted", "auto-replied", "basic");
	check_header(pm.hdr, pm.hdr_len, "Content-Transfer-Encoding", "7bit", "basic");
	v = header_get(pm.hdr, pm.hdr_len, "Content-Type");
	CHECK(v && strncmp(v, "multipart/report;", 17) == 0 &&
	      strstr(v, "report-type=delivery-status") != NULL,
	      "basic: got Content-Type \"%s\", want multipart/report; report-type=delivery-status", v);
	free(v);
	CHECK_STR(pm.boundary, "=_impetus_dsn_0123abcd", "basic: boundary");
	CHECK_INT(pm.nparts, 3, "basic: parts");
	if (pm.nparts != 3)
		goto done;

	/* Part 1: for people. */
	check_header(pm.parts[0].hdr, pm.parts[0].hdr_len, "Content-Type", "text/plain; charset=us-ascii", "part 1");
	CHECK(contains(pm.parts[0].body, pm.parts[0].body_len, "mta.impetus.test"),
	      "part 1: got no reporting host, want it named");
	CHECK(contains(pm.parts[0].body, pm.parts[0].body_len,
	               "<b@d1.test>: host mx.d1.test said: 550 5.1.1 <b@d1.test>: user unknown"),
	      "part 1: got\n%.*s\nwant the recipient line", (int)pm.parts[0].body_len, pm.parts[0].body);

	/* Part 2: the delivery-status fields. */
	check_header(pm.parts[1].hdr, pm.parts[1].hdr_len, "Content-Type", "message/delivery-status", "part 2");
	ng = split_groups(pm.parts[1].body, pm.parts[1].body_len, g, gl, MAX_GROUPS);
	CHECK_INT(ng, 2, "part 2: groups");
	if (ng == 2) {
		check_header(g[0], gl[0], "Reporting-MTA", "dns; mta.impetus.test", "per-message");
		check_header(g[0], gl[0], "Arrival-Date", "Tue, 14 Nov 2023 21:56:40 +0000", "per-message");
		check_header(g[0], gl[0], "Original-Envelope-Id", NULL, "per-message");
		check_header(g[1], gl[1], "Original-Recipient", NULL, "per-rcpt");
		check_header(g[1], gl[1], "Final-Recipient", "rfc822; b@d1.test", "per-rcpt");
		check_header(g[1], gl[1], "Action", "failed", "per-rcpt");
		check_header(g[1], gl[1], "Status", "5.1.1", "per-rcpt");
		check_header(g[1], gl[1], "Remote-MTA", "dns; mx.d1.test", "per-rcpt");
		check_header(g[1], gl[1], "Diagnostic-Code", "smtp; 550 5.1.1 <b@d1.test>: user unknown", "per-rcpt");
		check_header(g[1], gl[1], "Last-Attempt-Date", "Tue, 14 Nov 2023 22:21:40 +0000", "per-rcpt");
	}

	/* Part 3: the header section only. */
	check_header(pm.parts[2].hdr, pm.parts[2].hdr_len, "Content-Type", "text/rfc822-headers", "part 3");
	CHECK(pm.parts[2].body_len == strlen(ORIG_HEADERS) &&
	      memcmp(pm.parts[2].body, ORIG_HEADERS, pm.parts[2].body_len) == 0,
	      "part 3: got\n%.*s\nwant\n%s", (int)pm.parts[2].body_len, pm.parts[2].body, ORIG_HEADERS);

	/* Without the optional fields: no Remote-MTA, Diagnostic-Code, dates. */
	rc.remote_mta = NULL;
	rc.diagnostic = NULL;
	rc.last_attempt = 0;
	r.arrival = 0;
	if (build(&r, &out, &pm, "minimal") != 0 || pm.nparts != 3)
		goto done;
	ng = split_groups(pm.parts[1].body, pm.parts[1].body_len, g, gl, MAX_GROUPS);
	CHECK_INT(ng, 2, "minimal: groups");
	if (ng == 2) {
		check_header(g[0], gl[0], "Arrival-Date", NULL, "minimal");
		check_header(g[1], gl[1], "Remote-MTA", NULL, "minimal");
		check_header(g[1], gl[1], "Diagnostic-Code", NULL, "minimal");
		check_header(g[1], gl[1], "Last-Attempt-Date", NULL, "minimal");
		check_header(g[1], gl[1], "Status", "5.1.1", "minimal");
	}
	CHECK(contains(pm.parts[0].body, pm.parts[0].body_len, "<b@d1.test>: failed (status 5.1.1)"),
	      "minimal: got\n%.*s\nwant the status in the text", (int)pm.parts[0].body_len,
	      pm.parts[0].body);
done:
	strbuf_free(&out);
}

static void
test_headers_only_and_full(void)
{
	static const struct {
		const char *name;
		int ret_full;
		size_t max;             /* max_orig_len */
		int want_full;
	} cases[] = {
		{ "hdrs", 0, 0, 0 },
		{ "full", 1, 0, 1 },
		{ "full-at-cap", 1, sizeof(ORIG) - 1, 1 },
		{ "full-over-cap", 1, 10, 0 },
		{ "hdrs-cap-ignored", 0, 100000, 0 },
	};
	struct dsn_rcpt rc = base_rcpt();
	struct strbuf out = STRBUF_INIT;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct dsn_report r = base_report(&rc, 1);
		struct parsed pm;
		const char *want = cases[i].want_full ? ORIG : ORIG_HEADERS;

		r.ret_full = cases[i].ret_full;
		r.max_orig_len = cases[i].max;
		if (build(&r, &out, &pm, cases[i].name) != 0 || pm.nparts != 3) {
			CHECK_INT(pm.nparts, 3, cases[i].name);
			continue;
		}
		check_header(pm.parts[2].hdr, pm.parts[2].hdr_len, "Content-Type",
		             cases[i].want_full ? "message/rfc822" : "text/rfc822-headers",
		             cases[i].name);
		CHECK(pm.parts[2].body_len == strlen(want) &&
		      memcmp(pm.parts[2].body, want, pm.parts[2].body_len) == 0,
		      "%s: got\n%.*s\nwant\n%s", cases[i].name, (int)pm.parts[2].body_len,
		      pm.parts[2].body, want);
		int says_capped = contains(pm.parts[0].body, pm.parts[0].body_len, "larger than 10 bytes");
		CHECK_INT(says_capped, strcmp(cases[i].name, "full-over-cap") == 0, cases[i].name);
	}
	strbuf_free(&out);
}

static void
test_subjects(void)
{
	static const struct {
		const char *name;
		const char *actions[3];
		size_t n;
		const char *subject;
	} cases[] = {
		{ "one-delayed", { "delayed" }, 1, "Delivery Status Notification (Delay)" },
		{ "all-delayed", { "delayed", "delayed" }, 2, "Delivery Status Notification (Delay)" },
		{ "mixed", { "delayed", "failed" }, 2, "Undelivered Mail Returned to Sender" },
		{ "all-failed", { "failed", "failed", "failed" }, 3, "Undelivered Mail Returned to Sender" },
		{ "delivered", { "delivered", "relayed" }, 2, "Successful Mail Delivery Report" },
	};
	struct strbuf out = STRBUF_INIT;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct dsn_rcpt rcs[3];
		static const char *const addrs[3] = { "r1@d1.test", "r2@d2.test", "r3@d3.test" };
		struct parsed pm;
		const char *g[MAX_GROUPS];
		size_t gl[MAX_GROUPS];

		for (size_t k = 0; k < cases[i].n; k++) {
			rcs[k] = base_rcpt();
			rcs[k].rcpt = addrs[k];
			rcs[k].action = cases[i].actions[k];
			rcs[k].status = strcmp(rcs[k].action, "delayed") == 0 ? "4.4.1"
			                : strcmp(rcs[k].action, "failed") == 0 ? "5.1.1" : "2.0.0";
		}
		struct dsn_report r = base_report(rcs, cases[i].n);
		if (build(&r, &out, &pm, cases[i].name) != 0 || pm.nparts != 3)
			continue;
		check_header(pm.hdr, pm.hdr_len, "Subject", cases[i].subject, cases[i].name);
		size_t ng = split_groups(pm.parts[1].body, pm.parts[1].body_len, g, gl, MAX_GROUPS);
		CHECK_INT(ng, cases[i].n + 1, cases[i].name);
		for (size_t k = 0; k < cases[i].n && k + 1 < ng; k++) {
			char want[64];

			snprintf(want, sizeof(want), "rfc822; %s", addrs[k]);
			check_header(g[k + 1], gl[k + 1], "Final-Recipient", want, cases[i].name);
			check_header(g[k + 1], gl[k + 1], "Action", cases[i].actions[k], cases[i].name);
			check_header(g[k + 1], gl[k + 1], "Status", rcs[k].status, cases[i].name);
		}
		int delay_text = contains(pm.parts[0].body, pm.parts[0].body_len, "has been delayed") ||
		                 contains(pm.parts[0].body, pm.parts[0].body_len, "delivered yet");
		int any_delayed = 0;
		for (size_t k = 0; k < cases[i].n; k++)
			any_delayed |= strcmp(cases[i].actions[k], "delayed") == 0;
		CHECK_INT(delay_text, any_delayed, cases[i].name);
	}
	strbuf_free(&out);
}

static void
test_orcpt_envid(void)
{
	struct dsn_rcpt rcs[3] = { base_rcpt(), base_rcpt(), base_rcpt() };
	struct strbuf out = STRBUF_INIT;
	struct parsed pm;
	const char *g[MAX_GROUPS];
	size_t gl[MAX_GROUPS], ng;

	rcs[0].orcpt = "rfc822;Orig@d1.test";
	rcs[1].rcpt = "c@d1.test";
	rcs[2].rcpt = "d@d1.test";
	rcs[2].orcpt = "rfc822;a+2Bb+3Dc@d1.test";     /* xtext: a+b=c@d1.test */
	struct dsn_report r = base_report(rcs, 3);
	r.envid = "QQ314159+2Bx";
	if (build(&r, &out, &pm, "orcpt") != 0 || pm.nparts != 3)
		goto done;
	ng = split_groups(pm.parts[1].body, pm.parts[1].body_len, g, gl, MAX_GROUPS);
	CHECK_INT(ng, 4, "orcpt: groups");
	if (ng != 4)
		goto done;
	check_header(g[0], gl[0], "Original-Envelope-Id", "QQ314159+x", "envid");
	check_header(g[1], gl[1], "Original-Recipient", "rfc822;Orig@d1.test", "orcpt 1");
	check_header(g[2], gl[2], "Original-Recipient", NULL, "orcpt 2");
	check_header(g[2], gl[2], "Final-Recipient", "rfc822; c@d1.test", "orcpt 2");
	check_header(g[3], gl[3], "Original-Recipient", "rfc822;a+b=c@d1.test", "orcpt 3");
	CHECK_INT(header_count(g[1], gl[1], "Original-Recipient"), 1, "orcpt 1: count");

	/* An ORCPT without an address type gets rfc822; an empty ENVID is left out. */
	rcs[0].orcpt = "bare@d1.test";
	r.envid = "";
	if (build(&r, &out, &pm, "orcpt-bare") != 0 || pm.nparts != 3)
		goto done;
	ng = split_groups(pm.parts[1].body, pm.parts[1].body_len, g, gl, MAX_GROUPS);
	if (ng == 4) {
		check_header(g[0], gl[0], "Original-Envelope-Id", NULL, "envid empty");
		check_header(g[1], gl[1], "Original-Recipient", "rfc822;bare@d1.test", "orcpt bare");
	}
done:
	strbuf_free(&out);
}

static void
test_diagnostic_cleaned(void)
{
	struct dsn_rcpt rc = base_rcpt();
	struct strbuf out = STRBUF_INIT;
	struct parsed pm;
	const char *g[MAX_GROUPS];
	size_t gl[MAX_GROUPS];

	rc.diagnostic = "550-5.1.1 first line\r\n550-5.1.1 second\nline\r550 5.1.1 bell\a tab\t del\x7f end\r\n";
	rc.rcpt = "evil\r\nBcc: x@y.test";
	rc.remote_mta = "mx\r\n.d1.test";
	struct dsn_report r = base_report(&rc, 1);
	r.return_path = "sender@src.test\r\nX-Injected: yes";
	r.reporting_mta = "mta\tinjected";
	if (build(&r, &out, &pm, "controls") != 0 || pm.nparts != 3)
		goto done;
	CHECK(!contains(out.data, out.len, "\r\nBcc:") && !contains(out.data, out.len, "\r\nX-Injected"),
	      "controls: got an injected header line, want none:\n%s", out.data);
	check_header(pm.hdr, pm.hdr_len, "To", "<sender@src.test X-Injected: yes>", "controls");
	check_header(pm.hdr, pm.hdr_len, "From", "Mail Delivery System <MAILER-DAEMON@mta_injected>", "controls");
	check_header(pm.hdr, pm.hdr_len, "Message-ID", "<0123abcd.dsn@mta_injected>", "controls");
	if (split_groups(pm.parts[1].body, pm.parts[1].body_len, g, gl, MAX_GROUPS) == 2) {
		check_header(g[0], gl[0], "Reporting-MTA", "dns; mta injected", "controls");
		check_header(g[1], gl[1], "Diagnostic-Code",
		             "smtp; 550-5.1.1 first line 550-5.1.1 second line 550 5.1.1 bell tab del end",
		             "controls");
		check_header(g[1], gl[1], "Final-Recipient", "rfc822; evil Bcc: x@y.test", "controls");
		check_header(g[1], gl[1], "Remote-MTA", "dns; mx .d1.test", "controls");
		CHECK_INT(header_count(g[1], gl[1], "Bcc"), 0, "controls: Bcc fields");
	}
done:
	strbuf_free(&out);
}

static void
test_long_fields(void)
{
	struct dsn_rcpt rcs[2] = { base_rcpt(), base_rcpt() };
	struct strbuf words = STRBUF_INIT, blob = STRBUF_INIT, want = STRBUF_INIT;
	struct strbuf out = STRBUF_INIT;
	struct parsed pm;
	const char *g[MAX_GROUPS];
	size_t gl[MAX_GROUPS];

	strbuf_puts(&words, "550 5.1.1");
	for (int i = 0; i < 400; i++)
		strbuf_printf(&words, " word%d", i);
	strbuf_puts(&blob, "550 5.7.1 ");
	for (int i = 0; i < 3000; i++)
		strbuf_putc(&blob, (char)('a' + i % 26));
	rcs[0].diagnostic = words.data;
	rcs[1].rcpt = "c@d1.test";
	rcs[1].diagnostic = blob.data;
	struct dsn_report r = base_report(rcs, 2);
	if (build(&r, &out, &pm, "long") != 0 || pm.nparts != 3)
		goto done;
	if (split_groups(pm.parts[1].body, pm.parts[1].body_len, g, gl, MAX_GROUPS) == 3) {
		strbuf_printf(&want, "smtp; %s", words.data);
		check_header(g[1], gl[1], "Diagnostic-Code", want.data, "long words");
		/* folded at spaces: no line of that field over 78 octets */
		const char *p = memmem(g[1], gl[1], "Diagnostic-Code:", 16);
		size_t col = 0, longest = 0;
		for (; p && p < g[1] + gl[1]; p++) {
			if (*p == '\r' && p[2] != ' ')
				break;
			col = (*p == '\n') ? 0 : col + 1;
			if (col > longest)
				longest = col;
		}
		CHECK(longest <= 79, "long words: got a folded line of %zu, want <= 78", longest);
		char *v = header_get(g[2], gl[2], "Diagnostic-Code");
		size_t letters = 0;
		for (char *q = v; q && *q; q++)
			letters += (*q >= 'a' && *q <= 'z');
		CHECK(v && strncmp(v, "smtp; 550 5.7.1 abc", 19) == 0 && letters == 3000 + 4,
		      "long blob: got %zu letters in \"%.40s...\", want all 3000 kept", letters,
		      v ? v : "(null)");
		free(v);
	}
	CHECK(contains(pm.parts[0].body, pm.parts[0].body_len, "word399"),
	      "long: got no last word in the text part, want it wrapped, not cut");
done:
	strbuf_free(&words);
	strbuf_free(&blob);
	strbuf_free(&want);
	strbuf_free(&out);
}

static void
test_boundary_collision(void)
{
	struct dsn_rcpt rc = base_rcpt();
	struct dsn_report r = base_report(&rc, 1);
	struct strbuf out = STRBUF_INIT, orig = STRBUF_INIT, want = STRBUF_INIT;
	struct parsed pm;
	char first[128];

	if (build(&r, &out, &pm, "boundary-probe") != 0)
		goto done;
	snprintf(first, sizeof(first), "%s", pm.boundary);
	/* The original holds the boundary the seed gives, and the first fallback. */
	strbuf_printf(&orig, "Subject: tricky\r\nX-Note: --%s\r\n\r\n--%s\r\nbody\r\n--%s_1--\r\n",
	              first, first, first);
	r.orig = orig.data;
	r.orig_len = orig.len;
	r.ret_full = 1;
	if (build(&r, &out, &pm, "boundary") != 0)
		goto done;
	strbuf_printf(&want, "%s_2", first);
	CHECK_STR(pm.boundary, want.data, "boundary: chosen");
	CHECK_INT(pm.nparts, 3, "boundary: parts");
	if (pm.nparts == 3)
		CHECK(pm.parts[2].body_len == orig.len &&
		      memcmp(pm.parts[2].body, orig.data, orig.len) == 0,
		      "boundary: got part 3\n%.*s\nwant the original intact",
		      (int)pm.parts[2].body_len, pm.parts[2].body);
	strbuf_reset(&want);
	strbuf_printf(&want, "--%s", pm.boundary);
	CHECK(!contains(orig.data, orig.len, want.data), "boundary: got it inside the original");

	/* A diagnostic may hold the boundary too (a hostile remote reply). */
	strbuf_reset(&want);
	strbuf_printf(&want, "550 5.1.1 --%s", first);
	rc.diagnostic = want.data;
	r.orig = ORIG;
	r.orig_len = sizeof(ORIG) - 1;
	if (build(&r, &out, &pm, "boundary-diag") == 0) {
		CHECK(strcmp(pm.boundary, first) != 0, "boundary-diag: got %s again", first);
		CHECK_INT(pm.nparts, 3, "boundary-diag: parts");
	}
done:
	strbuf_free(&out);
	strbuf_free(&orig);
	strbuf_free(&want);
}

static void
test_original_line_ends(void)
{
	static const struct {
		const char *name;
		const char *orig;
		const char *full;       /* part 3 with ret_full */
		const char *hdrs;       /* part 3 headers only */
	} cases[] = {
		{ "bare-lf", "Subject: lf\nFrom: a@src.test\n\nbody\nmore\n",
		  "Subject: lf\r\nFrom: a@src.test\r\n\r\nbody\r\nmore\r\n",
		  "Subject: lf\r\nFrom: a@src.test\r\n" },
		{ "bare-cr", "Subject: cr\rFrom: a@src.test\r\rbody\r",
		  "Subject: cr\r\nFrom: a@src.test\r\n\r\nbody\r\n",
		  "Subject: cr\r\nFrom: a@src.test\r\n" },
		{ "mixed", "Subject: m\r\nX: y\n\r\nline1\rline2\nline3\r\n\n",
		  "Subject: m\r\nX: y\r\n\r\nline1\r\nline2\r\nline3\r\n\r\n",
		  "Subject: m\r\nX: y\r\n" },
		{ "no-final-eol", "Subject: n\r\n\r\nlast line",
		  "Subject: n\r\n\r\nlast line\r\n", "Subject: n\r\n" },
		{ "no-body", "Subject: only\r\nFrom: a@src.test",
		  "Subject: only\r\nFrom: a@src.test\r\n", "Subject: only\r\nFrom: a@src.test\r\n" },
		{ "dots-and-crlf-crlf", "Subject: d\r\n\r\n.\r\n..\r\n\r\n\r\n",
		  "Subject: d\r\n\r\n.\r\n..\r\n\r\n\r\n", "Subject: d\r\n" },
	};
	struct dsn_rcpt rc = base_rcpt();
	struct strbuf out = STRBUF_INIT;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (int full = 0; full <= 1; full++) {
			struct dsn_report r = base_report(&rc, 1);
			struct parsed pm;
			const char *want = full ? cases[i].full : cases[i].hdrs;
			char ctx[64];

			snprintf(ctx, sizeof(ctx), "%s/%s", cases[i].name, full ? "full" : "hdrs");
			r.orig = cases[i].orig;
			r.orig_len = strlen(cases[i].orig);
			r.ret_full = full;
			if (build(&r, &out, &pm, ctx) != 0 || pm.nparts != 3) {
				CHECK_INT(pm.nparts, 3, ctx);
				continue;
			}
			CHECK(pm.parts[2].body_len == strlen(want) &&
			      memcmp(pm.parts[2].body, want, pm.parts[2].body_len) == 0,
			      "%s: got\n[%.*s]\nwant\n[%s]", ctx, (int)pm.parts[2].body_len,
			      pm.parts[2].body, want);
		}
	}
	strbuf_free(&out);
}

static void
test_original_long_lines(void)
{
	struct dsn_rcpt rc = base_rcpt();
	struct dsn_report r = base_report(&rc, 1);
	struct strbuf orig = STRBUF_INIT, out = STRBUF_INIT, hval = STRBUF_INIT, line = STRBUF_INIT;
	struct parsed pm;

	for (int i = 0; i < 2500; i++)
		strbuf_putc(&hval, (char)('A' + i % 26));
	for (int i = 0; i < 2100; i++)
		strbuf_putc(&line, (char)('0' + i % 10));
	strbuf_printf(&orig, "Subject: long\r\nX-Long: %s\r\n\r\n%s\r\nshort\r\n", hval.data, line.data);
	r.orig = orig.data;
	r.orig_len = orig.len;
	r.ret_full = 1;
	if (build(&r, &out, &pm, "long-orig") != 0 || pm.nparts != 3)
		goto done;
	const char *b = pm.parts[2].body;
	size_t bl = pm.parts[2].body_len;
	/* The header: 998 octets, then continuations starting with a space. */
	char *v = header_get(b, bl, "X-Long");
	struct strbuf joined = STRBUF_INIT;
	for (char *q = v; q && *q; q++)
		if (*q != ' ')
			strbuf_putc(&joined, *q);
	CHECK_STR(strbuf_cstr(&joined), hval.data, "long-orig: X-Long without the fold spaces");
	strbuf_free(&joined);
	free(v);
	/* "X-Long: " and 990 letters fill the first line; 'A' + 990 % 26 starts the next. */
	CHECK(contains(b, bl, "\r\n CDEF"), "long-orig: got no folded continuation of X-Long");
	/* The body line: pieces of 998, 998 and 104 octets. */
	const char *body = memmem(b, bl, "\r\n\r\n", 4);
	if (body != NULL) {
		body += 4;
		size_t lens[4] = { 0 }, n = 0;
		for (const char *p = body; p < b + bl && n < 4;) {
			const char *e = memmem(p, (size_t)(b + bl - p), "\r\n", 2);
			if (e == NULL)
				break;
			lens[n++] = (size_t)(e - p);
			p = e + 2;
		}
		CHECK(n == 4 && lens[0] == 998 && lens[1] == 998 && lens[2] == 104 && lens[3] == 5,
		      "long-orig: got body lines %zu %zu %zu %zu, want 998 998 104 5", lens[0], lens[1],
		      lens[2], lens[3]);
		CHECK(memcmp(body, line.data, 998) == 0 && memcmp(body + 1000, line.data + 998, 998) == 0,
		      "long-orig: got the pieces changed, want the bytes kept");
	}
done:
	strbuf_free(&orig);
	strbuf_free(&out);
	strbuf_free(&hval);
	strbuf_free(&line);
}

static void
test_no_original(void)
{
	struct dsn_rcpt rc = base_rcpt();
	struct dsn_report r = base_report(&rc, 1);
	struct strbuf out = STRBUF_INIT;
	struct parsed pm;

	r.orig = NULL;
	r.orig_len = 0;
	if (build(&r, &out, &pm, "no-orig") == 0)
		CHECK_INT(pm.nparts, 2, "no-orig: parts");
	strbuf_free(&out);
}

static void
test_invalid_reports(void)
{
	static const char *const names[] = {
		"null-report", "no-reporting-mta", "empty-return-path", "null-return-path",
		"no-seed", "no-rcpts", "null-rcpts", "bad-action", "null-action", "bad-status",
		"status-class-3", "status-long", "null-status", "empty-rcpt", "orig-null-len",
		"null-out",
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct dsn_rcpt rc = base_rcpt();
		struct dsn_report r = base_report(&rc, 1);
		struct strbuf out = STRBUF_INIT;
		const struct dsn_report *rp = &r;
		struct strbuf *op = &out;

		switch (i) {
		case 0: rp = NULL; break;
		case 1: r.reporting_mta = ""; break;
		case 2: r.return_path = ""; break;
		case 3: r.return_path = NULL; break;
		case 4: r.message_id_seed = NULL; break;
		case 5: r.nrcpt = 0; break;
		case 6: r.rcpts = NULL; break;
		case 7: rc.action = "bounced"; break;
		case 8: rc.action = NULL; break;
		case 9: rc.status = "5.1"; break;
		case 10: rc.status = "3.1.1"; break;
		case 11: rc.status = "5.1.1000"; break;
		case 12: rc.status = NULL; break;
		case 13: rc.rcpt = ""; break;
		case 14: r.orig = NULL; break;
		case 15: op = NULL; break;
		}
		errno = 0;
		int got = dsn_build(rp, op);
		CHECK_INT(got, -1, names[i]);
		CHECK_INT(errno, EINVAL, names[i]);
		CHECK_INT(out.len, 0, names[i]);
		strbuf_free(&out);
	}
}

static void
test_8bit(void)
{
	struct dsn_rcpt rc = base_rcpt();
	struct dsn_report r = base_report(&rc, 1);
	struct strbuf out = STRBUF_INIT;
	struct parsed pm;

	rc.rcpt = "j\xc3\xb6rg@d1.test";
	if (build(&r, &out, &pm, "8bit") != 0 || pm.nparts != 3)
		goto done;
	check_header(pm.hdr, pm.hdr_len, "Content-Transfer-Encoding", "8bit", "8bit");
	check_header(pm.parts[0].hdr, pm.parts[0].hdr_len, "Content-Type", "text/plain; charset=utf-8", "8bit");
	check_header(pm.parts[1].hdr, pm.parts[1].hdr_len, "Content-Transfer-Encoding", "8bit", "8bit");
	check_header(pm.parts[2].hdr, pm.parts[2].hdr_len, "Content-Transfer-Encoding", NULL, "8bit");
	CHECK(contains(pm.parts[1].body, pm.parts[1].body_len, "Final-Recipient: rfc822; j\xc3\xb6rg@d1.test"),
	      "8bit: got no UTF-8 recipient, want it kept");
done:
	strbuf_free(&out);
}

TEST_MAIN("dsn",
          TEST(test_status_from_reply),
          TEST(test_basic_failed),
          TEST(test_headers_only_and_full),
          TEST(test_subjects),
          TEST(test_orcpt_envid),
          TEST(test_diagnostic_cleaned),
          TEST(test_long_fields),
          TEST(test_boundary_collision),
          TEST(test_original_line_ends),
          TEST(test_original_long_lines),
          TEST(test_no_original),
          TEST(test_invalid_reports),
          TEST(test_8bit))

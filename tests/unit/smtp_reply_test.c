/*
 * smtp_reply_test.c - the SMTP client's reply parser: complete and partial
 * replies in every chunking, malformed input and limits, one-line
 * rendering, enhanced status codes and EHLO keywords.
 */
#include <stdint.h>

#include "delivery/smtp_reply.h"
#include "test.h"

static void test_replies(void);
static void test_chunked(void);
static void test_errors(void);
static void test_limits(void);
static void test_render_bounds(void);
static void test_ehlo(void);
static void test_sequence(void);

struct parsed {
	enum smtp_reply_status st;
	int code;
	char enh[SMTP_REPLY_ENH_MAX];
	char text[600];
	size_t consumed;
	enum smtp_reply_err err;
};

/* parse: feed in chunks of step bytes (0 = all at once) until DONE or ERROR. */
static struct parsed
parse(const char *in, size_t len, size_t step)
{
	struct smtp_reply_parser p;
	struct parsed r;
	size_t off = 0;

	memset(&r, 0, sizeof(r));
	smtp_reply_init(&p);
	r.st = SMTP_REPLY_MORE;
	while (off < len) {
		size_t n = step == 0 || len - off < step ? len - off : step, used;

		r.st = smtp_reply_feed(&p, in + off, n, &used);
		off += used;
		if (r.st != SMTP_REPLY_MORE)
			break;
	}
	r.consumed = off;
	r.err = p.err;
	if (r.st == SMTP_REPLY_DONE) {
		r.code = p.code;
		snprintf(r.enh, sizeof(r.enh), "%s", p.enh);
		smtp_reply_render(&p, r.text, sizeof(r.text));
	}
	smtp_reply_free(&p);
	return r;
}

static const struct {
	const char *in;
	int code;
	const char *enh;
	const char *text;          /* rendered */
	size_t rest;               /* bytes left after the reply */
} good[] = {
	{ "220 mx.example ESMTP ready\r\n", 220, "", "220 mx.example ESMTP ready", 0 },
	{ "250 2.0.0 Ok\r\n", 250, "2.0.0", "250 2.0.0 Ok", 0 },
	{ "250\r\n", 250, "", "250", 0 },
	{ "250 \r\n", 250, "", "250", 0 },
	{ "354 End data with <CR><LF>.<CR><LF>\r\n", 354, "", "354 End data with <CR><LF>.<CR><LF>", 0 },
	{ "550-5.1.1 The email account\r\n550-5.1.1 does not exist.\r\n550 5.1.1 https://x.test\r\n",
	  550, "5.1.1", "550 5.1.1 The email account does not exist. https://x.test", 0 },
	{ "250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n", 250, "",
	  "250 mx.example PIPELINING SIZE 1000", 0 },
	{ "250 ok\n", 250, "", "250 ok", 0 },                         /* bare LF accepted */
	{ "250 ok\r\n250 next\r\n", 250, "", "250 ok", 10 },         /* one reply at a time */
	{ "451 4.3.0 tab\there\r\n", 451, "4.3.0", "451 4.3.0 tab here", 0 },
	{ "250 a\rb\r\n", 250, "", "250 a b", 0 },                    /* CR inside: a space */
	{ "550 2.0.0 class mismatch\r\n", 550, "", "550 2.0.0 class mismatch", 0 },
	{ "250 2.0.0.1 not enhanced\r\n", 250, "", "250 2.0.0.1 not enhanced", 0 },
	{ "250 2.1234.0 too many digits\r\n", 250, "", "250 2.1234.0 too many digits", 0 },
	{ "452 4.5.3 Too many recipients\r\n", 452, "4.5.3", "452 4.5.3 Too many recipients", 0 },
	{ "421 4.4.2 mx.example Error: timeout exceeded\r\n", 421, "4.4.2",
	  "421 4.4.2 mx.example Error: timeout exceeded", 0 },
	{ "250 2.0.0\r\n", 250, "2.0.0", "250 2.0.0", 0 },
	{ "150 odd but valid\r\n", 150, "", "150 odd but valid", 0 },
};

static void
test_replies(void)
{
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		size_t len = strlen(good[i].in);
		struct parsed r = parse(good[i].in, len, 0);

		CHECK_INT(r.st, SMTP_REPLY_DONE, good[i].in);
		CHECK_INT(r.code, good[i].code, good[i].in);
		CHECK_STR(r.enh, good[i].enh, good[i].in);
		CHECK_STR(r.text, good[i].text, good[i].in);
		CHECK_INT(len - r.consumed, good[i].rest, good[i].in);
	}
}

static void
test_chunked(void)
{
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		size_t len = strlen(good[i].in);
		for (size_t step = 1; step <= 7; step++) {
			struct parsed r = parse(good[i].in, len, step);
			char ctx[100];

			snprintf(ctx, sizeof(ctx), "case %zu step %zu", i, step);
			CHECK_INT(r.st, SMTP_REPLY_DONE, ctx);
			CHECK_INT(r.code, good[i].code, ctx);
			CHECK_STR(r.text, good[i].text, ctx);
			CHECK_INT(len - r.consumed, good[i].rest, ctx);
		}
	}
}

static void
test_errors(void)
{
	static const struct {
		const char *in;
		size_t len;             /* 0: strlen */
		enum smtp_reply_err err;
	} cases[] = {
		{ "hello\r\n", 0, SMTP_REPLY_ERR_CODE },
		{ "25\r\n", 0, SMTP_REPLY_ERR_CODE },
		{ "\r\n", 0, SMTP_REPLY_ERR_CODE },
		{ "2500 x\r\n", 0, SMTP_REPLY_ERR_CODE },
		{ "250_x\r\n", 0, SMTP_REPLY_ERR_CODE },
		{ "650 x\r\n", 0, SMTP_REPLY_ERR_CODE },
		{ "260 x\r\n", 0, SMTP_REPLY_ERR_CODE },
		{ "25a x\r\n", 0, SMTP_REPLY_ERR_CODE },
		{ "050 x\r\n", 0, SMTP_REPLY_ERR_CODE },
		{ "250-a\r\n251 b\r\n", 0, SMTP_REPLY_ERR_CODE_CHANGED },
		{ "250-a\r\nxyz\r\n", 0, SMTP_REPLY_ERR_CODE },
		{ "250 a\0b\r\n", 9, SMTP_REPLY_ERR_NUL },
		{ "250-a\r\n\0", 8, SMTP_REPLY_ERR_NUL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = cases[i].len ? cases[i].len : strlen(cases[i].in);
		for (size_t step = 0; step <= 3; step++) {
			struct parsed r = parse(cases[i].in, len, step);
			char ctx[100];

			snprintf(ctx, sizeof(ctx), "error case %zu step %zu", i, step);
			CHECK_INT(r.st, SMTP_REPLY_ERROR, ctx);
			CHECK_INT(r.err, cases[i].err, ctx);
			CHECK(r.consumed <= len, "%s: got consumed %zu, want <= %zu", ctx, r.consumed, len);
		}
	}
	/* An error is sticky. */
	struct smtp_reply_parser p;
	size_t used;
	smtp_reply_init(&p);
	CHECK_INT(smtp_reply_feed(&p, "xx\r\n", 4, &used), SMTP_REPLY_ERROR, "first");
	CHECK_INT(smtp_reply_feed(&p, "250 ok\r\n", 8, &used), SMTP_REPLY_ERROR, "sticky");
	CHECK_INT(used, 0, "sticky consumed");
	smtp_reply_free(&p);
}

static void
test_limits(void)
{
	static char buf[200000];
	struct parsed r;
	size_t n;

	/* 998 bytes of line (code included) plus CRLF: accepted; 999: refused. */
	memset(buf, 'a', sizeof(buf));
	memcpy(buf, "250 ", 4);
	memcpy(buf + 998, "\r\n", 2);
	r = parse(buf, 1000, 0);
	CHECK_INT(r.st, SMTP_REPLY_DONE, "998-byte line");
	memset(buf, 'a', sizeof(buf));
	memcpy(buf, "250 ", 4);
	memcpy(buf + 999, "\r\n", 2);
	r = parse(buf, 1001, 0);
	CHECK_INT(r.st, SMTP_REPLY_ERROR, "999-byte line");
	CHECK_INT(r.err, SMTP_REPLY_ERR_LINE_TOO_LONG, "999-byte line");
	r = parse(buf, 1001, 1);
	CHECK_INT(r.err, SMTP_REPLY_ERR_LINE_TOO_LONG, "999-byte line, bytewise");
	/* A line that never ends. */
	memset(buf, 'a', sizeof(buf));
	memcpy(buf, "250 ", 4);
	r = parse(buf, 5000, 100);
	CHECK_INT(r.err, SMTP_REPLY_ERR_LINE_TOO_LONG, "endless line");

	/* 100 lines: fine; 101: refused. */
	n = 0;
	for (int i = 0; i < 99; i++)
		n += (size_t)sprintf(buf + n, "250-line %d\r\n", i);
	n += (size_t)sprintf(buf + n, "250 last\r\n");
	r = parse(buf, n, 0);
	CHECK_INT(r.st, SMTP_REPLY_DONE, "100 lines");
	n = 0;
	for (int i = 0; i < 100; i++)
		n += (size_t)sprintf(buf + n, "250-line %d\r\n", i);
	n += (size_t)sprintf(buf + n, "250 last\r\n");
	r = parse(buf, n, 0);
	CHECK_INT(r.err, SMTP_REPLY_ERR_TOO_MANY_LINES, "101 lines");

	/* 99 lines of 900 bytes: over 64 KiB. */
	n = 0;
	for (int i = 0; i < 99; i++) {
		memcpy(buf + n, "250-", 4);
		memset(buf + n + 4, 'x', 896);
		memcpy(buf + n + 900, "\r\n", 2);
		n += 902;
	}
	n += (size_t)sprintf(buf + n, "250 last\r\n");
	r = parse(buf, n, 0);
	CHECK_INT(r.err, SMTP_REPLY_ERR_TOO_BIG, "over 64 KiB");
	r = parse(buf, n, 333);
	CHECK_INT(r.err, SMTP_REPLY_ERR_TOO_BIG, "over 64 KiB, chunked");
}

static void
test_render_bounds(void)
{
	struct smtp_reply_parser p;
	char small[12], one[1];
	size_t used, n;
	const char *in = "550 5.1.1 \xc3\xa9\xc3\xa9\xc3\xa9\x01 user\r\n";

	smtp_reply_init(&p);
	CHECK_INT(smtp_reply_feed(&p, in, strlen(in), &used), SMTP_REPLY_DONE, "utf8 reply");
	n = smtp_reply_render(&p, small, sizeof(small));
	/* "550 5.1.1 " is 10 bytes; the next is a 2-byte sequence that does not fit. */
	CHECK_STR(small, "550 5.1.1", "cut before a UTF-8 sequence");
	CHECK_INT(n, strlen(small), "length");
	n = smtp_reply_render(&p, one, sizeof(one));
	CHECK_INT(n, 0, "1-byte buffer");
	CHECK_INT(one[0], 0, "1-byte buffer NUL");
	char big[100];
	smtp_reply_render(&p, big, sizeof(big));
	CHECK_STR(big, "550 5.1.1 \xc3\xa9\xc3\xa9\xc3\xa9  user", "control replaced");
	size_t ll;
	const char *l = smtp_reply_line(&p, 0, &ll);
	CHECK(l != NULL && ll == strlen(in) - 6, "got line length %zu, want %zu", ll, strlen(in) - 6);
	CHECK(smtp_reply_line(&p, 1, &ll) == NULL, "got a second line, want none");
	smtp_reply_free(&p);
}

static void
test_ehlo(void)
{
	static const struct {
		const char *in;
		unsigned ext;
		uint64_t size;
	} cases[] = {
		{ "250 mx.example\r\n", 0, 0 },
		{ "250-mx.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n"
		  "250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n"
		  "250-SMTPUTF8\r\n250 CHUNKING\r\n",
		  SMTP_REPLY_EXT_PIPELINING | SMTP_REPLY_EXT_SIZE | SMTP_REPLY_EXT_STARTTLS |
		  SMTP_REPLY_EXT_ENHANCED | SMTP_REPLY_EXT_8BITMIME | SMTP_REPLY_EXT_DSN |
		  SMTP_REPLY_EXT_SMTPUTF8 | SMTP_REPLY_EXT_CHUNKING, 10240000 },
		{ "250-mx\r\n250-size\r\n250 pipelining\r\n",
		  SMTP_REPLY_EXT_SIZE | SMTP_REPLY_EXT_PIPELINING, 0 },
		{ "250-mx\r\n250-SIZE 0\r\n250 SIZEX 5\r\n", SMTP_REPLY_EXT_SIZE, 0 },
		{ "250-mx\r\n250-SIZE 12abc\r\n250 PIPELININGX\r\n", SMTP_REPLY_EXT_SIZE, 0 },
		{ "250-mx\r\n250 SIZE 99999999999999999999999\r\n", SMTP_REPLY_EXT_SIZE, 0 },
		{ "250-mx\r\n250 SIZE 18446744073709551610\r\n", SMTP_REPLY_EXT_SIZE,
		  18446744073709551610ull },
		{ "250-mx STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n", 0, 0 },  /* the first line is the name */
		{ "250-mx\r\n250-\r\n250  DSN\r\n", 0, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtp_reply_parser p;
		struct smtp_reply_ehlo e;
		size_t used;

		smtp_reply_init(&p);
		CHECK_INT(smtp_reply_feed(&p, cases[i].in, strlen(cases[i].in), &used), SMTP_REPLY_DONE,
		          cases[i].in);
		smtp_reply_ehlo(&p, &e);
		CHECK_INT(e.ext, cases[i].ext, cases[i].in);
		CHECK(e.size_max == cases[i].size, "%s: got size %llu, want %llu", cases[i].in,
		      (unsigned long long)e.size_max, (unsigned long long)cases[i].size);
		smtp_reply_free(&p);
	}
}

/* Several replies through one parser, the next starting where the last stopped. */
static void
test_sequence(void)
{
	const char *in = "220 hi\r\n250-mx\r\n250 DSN\r\n354 go\r\n250 2.0.0 queued\r\n";
	static const int codes[] = { 220, 250, 354, 250 };
	struct smtp_reply_parser p;
	size_t off = 0, len = strlen(in), used, k = 0;

	smtp_reply_init(&p);
	while (off < len) {
		enum smtp_reply_status st = smtp_reply_feed(&p, in + off, len - off, &used);
		off += used;
		if (st == SMTP_REPLY_DONE) {
			CHECK(k < 4, "got more than 4 replies");
			if (k < 4)
				CHECK_INT(p.code, codes[k], "sequence");
			k++;
		} else {
			CHECK_INT(st, SMTP_REPLY_DONE, "sequence status");
			break;
		}
	}
	CHECK_INT(k, 4, "replies");
	char text[100];
	smtp_reply_render(&p, text, sizeof(text));
	CHECK_STR(text, "250 2.0.0 queued", "last");
	smtp_reply_free(&p);
}

TEST_MAIN("smtp_reply", TEST(test_replies), TEST(test_chunked), TEST(test_errors),
          TEST(test_limits), TEST(test_render_bounds), TEST(test_ehlo), TEST(test_sequence))

/*
 * smtp_parse_test.c - the SMTP command line reader, command parser, paths,
 * MAIL / RCPT parameters, BDAT arguments and the error table.
 */
#include <stdint.h>

#include "listener/smtp_parse.h"
#include "test.h"

static void test_verbs(void);
static void test_malformed(void);
static void test_line_reader(void);
static void test_line_split(void);
static void test_line_too_long(void);
static void test_paths(void);
static void test_path_limits(void);
static void test_render(void);
static void test_mail_params(void);
static void test_rcpt_params(void);
static void test_bdat_arg(void);
static void test_strerror(void);

static void
test_verbs(void)
{
	static const struct {
		const char *line;
		enum smtp_verb verb;
		const char *arg;        /* NULL: no argument */
	} cases[] = {
		{ "HELO client.example", SMTP_VERB_HELO, "client.example" },
		{ "helo   client.example  ", SMTP_VERB_HELO, "client.example" },
		{ "EHLO [192.0.2.1]", SMTP_VERB_EHLO, "[192.0.2.1]" },
		{ "MAIL FROM:<a@b.example>", SMTP_VERB_MAIL, "<a@b.example>" },
		{ "mail from: <a@b.example> SIZE=10", SMTP_VERB_MAIL, "<a@b.example> SIZE=10" },
		{ "MAIL  FROM:<>", SMTP_VERB_MAIL, "<>" },
		{ "RCPT TO:<c@d.example>", SMTP_VERB_RCPT, "<c@d.example>" },
		{ "Rcpt To:   <c@d.example> NOTIFY=NEVER", SMTP_VERB_RCPT, "<c@d.example> NOTIFY=NEVER" },
		{ "DATA", SMTP_VERB_DATA, NULL },
		{ "data ", SMTP_VERB_DATA, NULL },
		{ "BDAT 100 LAST", SMTP_VERB_BDAT, "100 LAST" },
		{ "RSET", SMTP_VERB_RSET, NULL },
		{ "NOOP", SMTP_VERB_NOOP, NULL },
		{ "NOOP anything at all", SMTP_VERB_NOOP, "anything at all" },
		{ "QUIT", SMTP_VERB_QUIT, NULL },
		{ "VRFY postmaster", SMTP_VERB_VRFY, "postmaster" },
		{ "EXPN list", SMTP_VERB_EXPN, "list" },
		{ "HELP", SMTP_VERB_HELP, NULL },
		{ "HELP MAIL", SMTP_VERB_HELP, "MAIL" },
		{ "STARTTLS", SMTP_VERB_STARTTLS, NULL },
		{ "starttls", SMTP_VERB_STARTTLS, NULL },
		{ "AUTH PLAIN AGFsaWNlAHNlY3JldA==", SMTP_VERB_AUTH, "PLAIN AGFsaWNlAHNlY3JldA==" },
		{ "AUTH LOGIN", SMTP_VERB_AUTH, "LOGIN" },
		{ "EHLO\thost", SMTP_VERB_EHLO, "host" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtp_cmd cmd;
		int err = smtp_cmd_parse(cases[i].line, strlen(cases[i].line), &cmd);
		char got[600];

		CHECK_INT(err, 0, cases[i].line);
		CHECK_INT(cmd.verb, cases[i].verb, cases[i].line);
		if (cases[i].arg == NULL) {
			CHECK(cmd.arg == NULL && cmd.arglen == 0, "%s: got arg \"%.*s\", want none",
			      cases[i].line, (int)cmd.arglen, cmd.arg ? cmd.arg : "");
		} else {
			snprintf(got, sizeof(got), "%.*s", (int)cmd.arglen, cmd.arg ? cmd.arg : "");
			CHECK_STR(got, cases[i].arg, cases[i].line);
		}
	}
}

static void
test_malformed(void)
{
	static const struct {
		const char *line;
		size_t len;             /* 0: strlen */
		int err;
		enum smtp_verb verb;
	} cases[] = {
		{ "", 0, SMTP_PARSE_EMPTY, SMTP_VERB_UNKNOWN },
		{ "   ", 0, SMTP_PARSE_UNKNOWN_CMD, SMTP_VERB_UNKNOWN },
		{ "FOO", 0, SMTP_PARSE_UNKNOWN_CMD, SMTP_VERB_UNKNOWN },
		{ "HELOX host", 0, SMTP_PARSE_UNKNOWN_CMD, SMTP_VERB_UNKNOWN },
		{ "MAILFROM:<a@b>", 0, SMTP_PARSE_UNKNOWN_CMD, SMTP_VERB_UNKNOWN },
		{ "HELO", 0, SMTP_PARSE_ARG_MISSING, SMTP_VERB_HELO },
		{ "EHLO   ", 0, SMTP_PARSE_ARG_MISSING, SMTP_VERB_EHLO },
		{ "MAIL", 0, SMTP_PARSE_ARG_MISSING, SMTP_VERB_MAIL },
		{ "MAIL FROM:", 0, SMTP_PARSE_ARG_MISSING, SMTP_VERB_MAIL },
		{ "MAIL FROM:   ", 0, SMTP_PARSE_ARG_MISSING, SMTP_VERB_MAIL },
		{ "MAIL TO:<a@b>", 0, SMTP_PARSE_SYNTAX, SMTP_VERB_MAIL },
		{ "MAIL FROM<a@b>", 0, SMTP_PARSE_SYNTAX, SMTP_VERB_MAIL },
		{ "MAIL FRO", 0, SMTP_PARSE_SYNTAX, SMTP_VERB_MAIL },
		{ "RCPT FROM:<a@b>", 0, SMTP_PARSE_SYNTAX, SMTP_VERB_RCPT },
		{ "RCPT <a@b>", 0, SMTP_PARSE_SYNTAX, SMTP_VERB_RCPT },
		{ "DATA now", 0, SMTP_PARSE_ARG_UNEXPECTED, SMTP_VERB_DATA },
		{ "RSET x", 0, SMTP_PARSE_ARG_UNEXPECTED, SMTP_VERB_RSET },
		{ "QUIT please", 0, SMTP_PARSE_ARG_UNEXPECTED, SMTP_VERB_QUIT },
		{ "STARTTLS x", 0, SMTP_PARSE_ARG_UNEXPECTED, SMTP_VERB_STARTTLS },
		{ "BDAT", 0, SMTP_PARSE_ARG_MISSING, SMTP_VERB_BDAT },
		{ "VRFY", 0, SMTP_PARSE_ARG_MISSING, SMTP_VERB_VRFY },
		{ "EXPN", 0, SMTP_PARSE_ARG_MISSING, SMTP_VERB_EXPN },
		{ "AUTH", 0, SMTP_PARSE_ARG_MISSING, SMTP_VERB_AUTH },
		{ "HELO a\0b", 8, SMTP_PARSE_BAD_CHAR, SMTP_VERB_UNKNOWN },
		{ "HELO a\rb", 0, SMTP_PARSE_BAD_CHAR, SMTP_VERB_HELO },
		{ "HELO a\x01", 0, SMTP_PARSE_BAD_CHAR, SMTP_VERB_HELO },
		{ "\xff\xfe", 0, SMTP_PARSE_UNKNOWN_CMD, SMTP_VERB_UNKNOWN },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtp_cmd cmd;
		size_t len = cases[i].len ? cases[i].len : strlen(cases[i].line);
		int err = smtp_cmd_parse(cases[i].line, len, &cmd);

		CHECK_INT(err, cases[i].err, cases[i].line);
		CHECK_INT(cmd.verb, cases[i].verb, cases[i].line);
	}
}

/* Collects the lines of one stream fed whole, for comparison. */
struct line_result {
	enum smtp_line_status st;
	char text[600];
};

static size_t
read_all_lines(const char *in, size_t len, size_t split, struct line_result *res, size_t max)
{
	struct smtp_line_reader r;
	char buf[4096];
	size_t have = 0, fed = 0, n = 0, consumed, linelen;
	const char *line;
	enum smtp_line_status st;

	smtp_line_init(&r, 0);
	while (fed < len || have > 0) {
		size_t chunk = split ? split : len;
		if (fed < len) {
			if (chunk > len - fed)
				chunk = len - fed;
			memcpy(buf + have, in + fed, chunk);
			have += chunk;
			fed += chunk;
		}
		for (;;) {
			st = smtp_line_next(&r, buf, have, &consumed, &line, &linelen);
			CHECK(consumed <= have, "consumed %zu > have %zu", consumed, have);
			if (st != SMTP_LINE_MORE && n < max) {
				res[n].st = st;
				snprintf(res[n].text, sizeof(res[n].text), "%.*s", (int)linelen,
				         line ? line : "");
				n++;
			}
			memmove(buf, buf + consumed, have - consumed);
			have -= consumed;
			if (st == SMTP_LINE_MORE)
				break;
		}
		if (fed == len)
			break;
	}
	return n;
}

static void
test_line_reader(void)
{
	static const char in[] = "EHLO a\r\nMAIL FROM:<x@y>\nNOOP\r\r\nRSET\r\n\r\nHE\0LO\r\nQUIT";
	struct line_result res[10];
	size_t n = read_all_lines(in, sizeof(in) - 1, 0, res, 10);
	static const struct { enum smtp_line_status st; const char *text; } want[] = {
		{ SMTP_LINE_OK, "EHLO a" },
		{ SMTP_LINE_OK, "MAIL FROM:<x@y>" },    /* bare LF ends a command */
		{ SMTP_LINE_OK, "NOOP\r" },             /* a CR before CRLF stays */
		{ SMTP_LINE_OK, "RSET" },
		{ SMTP_LINE_OK, "" },
		{ SMTP_LINE_NUL, "HE" },                /* printed up to the NUL */
	};

	CHECK_INT(n, 6, "line count");
	for (size_t i = 0; i < n && i < 6; i++) {
		CHECK_INT(res[i].st, want[i].st, want[i].text);
		CHECK_STR(res[i].text, want[i].text, "line text");
	}
}

static void
test_line_split(void)
{
	char longline[700];
	char in[2048];
	size_t len;
	struct line_result whole[10], split[10];
	size_t nw, ns;

	memset(longline, 'x', sizeof(longline));
	len = 0;
	memcpy(in + len, "EHLO a\r\nNOOP ", 13);
	len += 13;
	memcpy(in + len, longline, sizeof(longline));
	len += sizeof(longline);
	memcpy(in + len, "\r\nRSET\nMA\0L\r\nQUIT\r\n", 19);
	len += 19;

	nw = read_all_lines(in, len, 0, whole, 10);
	CHECK_INT(nw, 5, "lines whole");
	CHECK_INT(whole[1].st, SMTP_LINE_TOO_LONG, "long line");
	CHECK_STR(whole[2].text, "RSET", "after long line");
	CHECK_INT(whole[3].st, SMTP_LINE_NUL, "NUL line");
	CHECK_STR(whole[4].text, "QUIT", "last line");
	for (size_t split_at = 1; split_at <= len; split_at++) {
		char ctx[64];
		ns = read_all_lines(in, len, split_at, split, 10);
		snprintf(ctx, sizeof(ctx), "split %zu", split_at);
		CHECK_INT(ns, nw, ctx);
		for (size_t i = 0; i < ns && i < nw; i++) {
			CHECK_INT(split[i].st, whole[i].st, ctx);
			CHECK_STR(split[i].text, whole[i].text, ctx);
		}
	}
}

static void
test_line_too_long(void)
{
	static const struct {
		size_t content;         /* octets before the terminator */
		const char *term;
		enum smtp_line_status st;
	} cases[] = {
		{ 510, "\r\n", SMTP_LINE_OK },          /* 512 with CRLF */
		{ 511, "\r\n", SMTP_LINE_TOO_LONG },
		{ 511, "\n", SMTP_LINE_OK },            /* 512 with a bare LF */
		{ 512, "\n", SMTP_LINE_TOO_LONG },
		{ 5000, "\r\n", SMTP_LINE_TOO_LONG },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[6000];
		struct smtp_line_reader r = { 0, 0 };
		size_t len = cases[i].content, consumed, linelen;
		const char *line;
		enum smtp_line_status st;
		char ctx[64];

		snprintf(ctx, sizeof(ctx), "%zu octets + %zu", cases[i].content,
		         strlen(cases[i].term));
		memset(buf, 'a', len);
		memcpy(buf + len, cases[i].term, strlen(cases[i].term));
		len += strlen(cases[i].term);
		memcpy(buf + len, "QUIT\r\n", 6);
		len += 6;
		st = smtp_line_next(&r, buf, len, &consumed, &line, &linelen);
		CHECK_INT(st, cases[i].st, ctx);
		CHECK_INT(consumed, cases[i].content + strlen(cases[i].term), ctx);
		st = smtp_line_next(&r, buf + consumed, len - consumed, &consumed, &line, &linelen);
		CHECK_INT(st, SMTP_LINE_OK, ctx);
		CHECK_INT(linelen, 4, ctx);
	}
	/* An endless line: TOO_LONG once, then everything is dropped until LF. */
	{
		char buf[600];
		struct smtp_line_reader r;
		size_t consumed, linelen;
		const char *line;

		smtp_line_init(&r, 0);
		memset(buf, 'b', sizeof(buf));
		CHECK_INT(smtp_line_next(&r, buf, 100, &consumed, &line, &linelen),
		          SMTP_LINE_MORE, "endless: short");
		CHECK_INT(consumed, 0, "endless: nothing consumed");
		CHECK_INT(smtp_line_next(&r, buf, 600, &consumed, &line, &linelen),
		          SMTP_LINE_TOO_LONG, "endless: too long");
		CHECK_INT(consumed, 600, "endless: dropped");
		CHECK_INT(smtp_line_next(&r, buf, 600, &consumed, &line, &linelen),
		          SMTP_LINE_MORE, "endless: skipping");
		CHECK_INT(consumed, 600, "endless: dropped again");
		memcpy(buf, "bb\r\nNOOP\r\n", 10);
		CHECK_INT(smtp_line_next(&r, buf, 10, &consumed, &line, &linelen),
		          SMTP_LINE_OK, "endless: next line");
		CHECK_INT(consumed, 10, "endless: consumed tail and line");
		CHECK(linelen == 4 && memcmp(line, "NOOP", 4) == 0, "got \"%.*s\", want NOOP",
		      (int)linelen, line);
	}
	/* A configured limit. */
	{
		struct smtp_line_reader r;
		size_t consumed, linelen;
		const char *line;

		smtp_line_init(&r, 8);
		CHECK_INT(smtp_line_next(&r, "123456\r\n", 8, &consumed, &line, &linelen),
		          SMTP_LINE_OK, "max 8: 8");
		CHECK_INT(smtp_line_next(&r, "1234567\r\n", 9, &consumed, &line, &linelen),
		          SMTP_LINE_TOO_LONG, "max 8: 9");
	}
}

static void
test_paths(void)
{
	static const struct {
		const char *arg;
		int flags;
		int err;
		const char *local, *domain, *params;
		int utf8;
	} cases[] = {
		{ "<user@example.com>", 0, 0, "user", "example.com", "", 0 },
		{ "  <user@example.com>", 0, 0, "user", "example.com", "", 0 },
		{ "<First.Last+tag@Sub.Example.COM> SIZE=100", 0, 0, "First.Last+tag",
		  "Sub.Example.COM", "SIZE=100", 0 },
		{ "<a@b>   BODY=8BITMIME  SMTPUTF8", 0, 0, "a", "b", "BODY=8BITMIME  SMTPUTF8", 0 },
		{ "<>", SMTP_PATH_ALLOW_NULL, 0, "", "", "", 0 },
		{ "<> SIZE=5", SMTP_PATH_ALLOW_NULL, 0, "", "", "SIZE=5", 0 },
		{ "<>", 0, SMTP_PARSE_PATH_NULL, NULL, NULL, NULL, 0 },
		/* quoted local parts: '@' inside never moves the domain */
		{ "<\"a@evil.example\"@good.example>", 0, 0, "a@evil.example", "good.example", "", 0 },
		{ "<\"a\\\"b\\\\c\"@d.example>", 0, 0, "a\"b\\c", "d.example", "", 0 },
		{ "<\"a b>c\"@d.example>", 0, 0, "a b>c", "d.example", "", 0 },
		{ "<\"\"@d.example>", 0, 0, "", "d.example", "", 0 },
		{ "<\"a\x01\"@d.example>", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "<\"abc@d.example>", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		/* source routes: accepted, discarded */
		{ "<@a.example,@b.example:user@c.example>", 0, 0, "user", "c.example", "", 0 },
		{ "<@a.example:user@c.example>", 0, 0, "user", "c.example", "", 0 },
		{ "<@a.example,b.example:user@c.example>", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "<@a.example user@c.example>", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "<@:user@c.example>", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		/* the % hack and bang paths are local-part characters */
		{ "<user%evil.example@good.example>", 0, 0, "user%evil.example", "good.example", "", 0 },
		{ "<evil.example!user@good.example>", 0, 0, "evil.example!user", "good.example", "", 0 },
		{ "<evil!user%other@good.example>", 0, 0, "evil!user%other", "good.example", "", 0 },
		{ "<user@evil.example@good.example>", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "<user%evil.example>", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "<evil!user>", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		/* address literals */
		{ "<u@[192.0.2.1]>", 0, 0, "u", "[192.0.2.1]", "", 0 },
		{ "<u@[IPv6:2001:db8::1]>", 0, 0, "u", "[IPv6:2001:db8::1]", "", 0 },
		{ "<u@[ipv6:::1]>", 0, 0, "u", "[ipv6:::1]", "", 0 },
		{ "<u@[192.0.2.256]>", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "<u@[192.0.2]>", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "<u@[IPv6:zz::1]>", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "<u@[x-tag:foo]>", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "<u@[]>", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "<u@[192.0.2.1>", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		/* domain syntax */
		{ "<u@-a.example>", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "<u@a-.example>", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "<u@a..example>", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "<u@example.>", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "<u@.example>", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "<u@a_b.example>", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "<u@>", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "<u@x-1.example>", 0, 0, "u", "x-1.example", "", 0 },
		/* local part syntax */
		{ "<.u@example>", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "<u.@example>", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "<u..v@example>", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "<@example>", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "<u v@example>", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "<u(c)@example>", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		/* brackets and what follows */
		{ "user@example.com", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "<user@example.com", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "<user@example.com>x", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "<user@example.com>>", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "<<user@example.com>>", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "<", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		/* postmaster */
		{ "<Postmaster>", SMTP_PATH_ALLOW_POSTMASTER, 0, "Postmaster", "", "", 0 },
		{ "<postmaster>", 0, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "<\"postmaster\">", SMTP_PATH_ALLOW_POSTMASTER, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "<@a:postmaster>", SMTP_PATH_ALLOW_POSTMASTER, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "<user>", SMTP_PATH_ALLOW_POSTMASTER, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		/* UTF-8 */
		{ "<j\xc3\xb6rg@b\xc3\xbc" "cher.example>", SMTP_PATH_ALLOW_UTF8, 0, "j\xc3\xb6rg",
		  "b\xc3\xbc" "cher.example", "", 1 },
		{ "<\"j\xc3\xb6 rg\"@example>", SMTP_PATH_ALLOW_UTF8, 0, "j\xc3\xb6 rg", "example", "", 1 },
		{ "<j\xc3\xb6rg@example>", 0, SMTP_PARSE_UTF8_NOT_ALLOWED, NULL, NULL, NULL, 1 },
		{ "<u@b\xc3\xbc" "cher.example>", 0, SMTP_PARSE_UTF8_NOT_ALLOWED, NULL, NULL, NULL, 1 },
		{ "<\"\xc3\xb6\"@example>", 0, SMTP_PARSE_UTF8_NOT_ALLOWED, NULL, NULL, NULL, 1 },
		{ "<j\xc3rg@example>", SMTP_PATH_ALLOW_UTF8, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "<j\xc0\xafrg@example>", SMTP_PATH_ALLOW_UTF8, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "<j\xed\xa0\x80@example>", SMTP_PATH_ALLOW_UTF8, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
		{ "<j\xff@example>", SMTP_PATH_ALLOW_UTF8, SMTP_PARSE_PATH_SYNTAX, NULL, NULL, NULL, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtp_mailbox mb;
		const char *params = NULL;
		size_t plen = 0;
		char got[600];
		int err = smtp_parse_path(cases[i].arg, strlen(cases[i].arg), cases[i].flags, &mb,
		                          &params, &plen);

		CHECK_INT(err, cases[i].err, cases[i].arg);
		if (err != 0 || cases[i].err != 0) {
			if (cases[i].err == SMTP_PARSE_UTF8_NOT_ALLOWED)
				CHECK_INT(mb.utf8, 1, cases[i].arg);
			continue;
		}
		CHECK_STR(mb.local, cases[i].local, cases[i].arg);
		CHECK_STR(mb.domain, cases[i].domain, cases[i].arg);
		CHECK_INT(mb.utf8, cases[i].utf8, cases[i].arg);
		CHECK_INT(mb.null_path, strncmp(cases[i].arg, "<>", 2) == 0, cases[i].arg);
		snprintf(got, sizeof(got), "%.*s", (int)plen, params);
		CHECK_STR(got, cases[i].params, cases[i].arg);
	}
}

static void
test_path_limits(void)
{
	static const struct {
		size_t local, label, labels;    /* local octets; labels x label octets */
		int err;
	} cases[] = {
		{ 64, 10, 1, 0 },
		{ 65, 10, 1, SMTP_PARSE_LOCAL_TOO_LONG },
		{ 1, 63, 1, 0 },
		{ 1, 64, 1, SMTP_PARSE_DOMAIN_TOO_LONG },
		/* 3 x 63 + 2 dots = 191 domain octets, path 1 + 1 + 1 + 191 + 1 = 195 */
		{ 1, 63, 3, 0 },
		/* 4 x 62 + 3 dots = 251 domain, path = 2 + 2 + 251 = 255 */
		{ 1, 62, 4, 0 },
		/* local 2: path 256 */
		{ 2, 62, 4, 0 },
		/* local 3: path 257 */
		{ 3, 62, 4, SMTP_PARSE_PATH_TOO_LONG },
		/* domain 255 + local 1 = path 259 */
		{ 1, 63, 4, SMTP_PARSE_PATH_TOO_LONG },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char arg[1024], ctx[64];
		size_t n = 0;
		struct smtp_mailbox mb;

		arg[n++] = '<';
		memset(arg + n, 'l', cases[i].local);
		n += cases[i].local;
		arg[n++] = '@';
		for (size_t l = 0; l < cases[i].labels; l++) {
			if (l > 0)
				arg[n++] = '.';
			memset(arg + n, 'd', cases[i].label);
			n += cases[i].label;
		}
		arg[n++] = '>';
		snprintf(ctx, sizeof(ctx), "local %zu, %zu x %zu", cases[i].local, cases[i].labels,
		         cases[i].label);
		CHECK_INT(smtp_parse_path(arg, n, 0, &mb, NULL, NULL), cases[i].err, ctx);
	}
	/* A quoted local part counts with its quotes: 62 + 2 = 64 fits, 63 + 2 does not. */
	{
		char arg[128];
		struct smtp_mailbox mb;
		size_t n;

		for (size_t q = 62; q <= 63; q++) {
			n = 0;
			arg[n++] = '<';
			arg[n++] = '"';
			memset(arg + n, 'q', q);
			n += q;
			memcpy(arg + n, "\"@x>", 4);
			n += 4;
			CHECK_INT(smtp_parse_path(arg, n, 0, &mb, NULL, NULL),
			          q == 62 ? 0 : SMTP_PARSE_LOCAL_TOO_LONG, "quoted local");
		}
	}
	/* Huge inputs are bounded. */
	{
		static char arg[5000];
		struct smtp_mailbox mb;

		arg[0] = '<';
		arg[1] = '"';
		memset(arg + 2, 'q', sizeof(arg) - 6);
		memcpy(arg + sizeof(arg) - 4, "\"@x>", 4);
		CHECK_INT(smtp_parse_path(arg, sizeof(arg), 0, &mb, NULL, NULL),
		          SMTP_PARSE_PATH_TOO_LONG, "5000-octet quoted path");
	}
}

static void
test_render(void)
{
	static const struct {
		const char *arg;
		int flags;
		const char *want;
	} cases[] = {
		{ "<user@example.com>", 0, "user@example.com" },
		{ "<\"a@evil\"@good.example>", 0, "\"a@evil\"@good.example" },
		{ "<\"a\\\"b\\\\c\"@d>", 0, "\"a\\\"b\\\\c\"@d" },
		{ "<\"plain\"@d>", 0, "plain@d" },
		{ "<\"a..b\"@d>", 0, "\"a..b\"@d" },
		{ "<\"\"@d>", 0, "\"\"@d" },
		{ "<@r:u%v!w@d>", 0, "u%v!w@d" },
		{ "<u@[IPv6:::1]>", 0, "u@[IPv6:::1]" },
		{ "<>", SMTP_PATH_ALLOW_NULL, "" },
		{ "<PostMaster>", SMTP_PATH_ALLOW_POSTMASTER, "PostMaster" },
		{ "<j\xc3\xb6rg@example>", SMTP_PATH_ALLOW_UTF8, "j\xc3\xb6rg@example" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtp_mailbox mb;
		char buf[600];
		size_t n;

		CHECK_INT(smtp_parse_path(cases[i].arg, strlen(cases[i].arg), cases[i].flags, &mb,
		                          NULL, NULL), 0, cases[i].arg);
		n = smtp_mailbox_render(&mb, buf, sizeof(buf));
		CHECK_STR(buf, cases[i].want, cases[i].arg);
		CHECK_INT(n, strlen(cases[i].want), cases[i].arg);
	}
	/* truncation */
	{
		struct smtp_mailbox mb;
		char buf[5];

		smtp_parse_path("<user@example.com>", 18, 0, &mb, NULL, NULL);
		CHECK_INT(smtp_mailbox_render(&mb, buf, sizeof(buf)), 16, "truncated length");
		CHECK_STR(buf, "user", "truncated text");
	}
}

#define ALL_EXT (SMTP_EXT_SIZE | SMTP_EXT_8BITMIME | SMTP_EXT_SMTPUTF8 | SMTP_EXT_DSN | \
                 SMTP_EXT_AUTH | SMTP_EXT_CHUNKING | SMTP_EXT_BINARYMIME)

static void
test_mail_params(void)
{
	static const struct {
		const char *params;
		unsigned ext;
		int err;
	} cases[] = {
		{ "", ALL_EXT, 0 },
		{ "   ", ALL_EXT, 0 },
		{ "SIZE=12345", ALL_EXT, 0 },
		{ "size=0", ALL_EXT, 0 },
		{ "SIZE=18446744073709551615", ALL_EXT, 0 },
		{ "SIZE=18446744073709551616", ALL_EXT, SMTP_PARSE_PARAM_VALUE },
		{ "SIZE=123456789012345678901", ALL_EXT, SMTP_PARSE_PARAM_VALUE },
		{ "SIZE=12a", ALL_EXT, SMTP_PARSE_PARAM_VALUE },
		{ "SIZE=-1", ALL_EXT, SMTP_PARSE_PARAM_VALUE },
		{ "SIZE", ALL_EXT, SMTP_PARSE_PARAM_VALUE },
		{ "SIZE=", ALL_EXT, SMTP_PARSE_PARAM_SYNTAX },
		{ "SIZE=1", 0, SMTP_PARSE_PARAM_DISABLED },
		{ "SIZE=1 SIZE=2", ALL_EXT, SMTP_PARSE_PARAM_DUPLICATE },
		{ "SIZE=1 size=1", ALL_EXT, SMTP_PARSE_PARAM_DUPLICATE },
		{ "BODY=7BIT", 0, 0 },
		{ "BODY=8BITMIME", ALL_EXT, 0 },
		{ "body=8bitmime", ALL_EXT, 0 },
		{ "BODY=8BITMIME", SMTP_EXT_SIZE, SMTP_PARSE_PARAM_DISABLED },
		{ "BODY=BINARYMIME", ALL_EXT, 0 },
		{ "BODY=BINARYMIME", SMTP_EXT_BINARYMIME, SMTP_PARSE_PARAM_DISABLED },
		{ "BODY=BINARYMIME", SMTP_EXT_CHUNKING, SMTP_PARSE_PARAM_DISABLED },
		{ "BODY=9BIT", ALL_EXT, SMTP_PARSE_PARAM_VALUE },
		{ "BODY", ALL_EXT, SMTP_PARSE_PARAM_VALUE },
		{ "BODY=7BIT BODY=8BITMIME", ALL_EXT, SMTP_PARSE_PARAM_DUPLICATE },
		{ "SMTPUTF8", ALL_EXT, 0 },
		{ "SMTPUTF8", SMTP_EXT_SIZE, SMTP_PARSE_PARAM_DISABLED },
		{ "SMTPUTF8=yes", ALL_EXT, SMTP_PARSE_PARAM_VALUE },
		{ "SMTPUTF8 SMTPUTF8", ALL_EXT, SMTP_PARSE_PARAM_DUPLICATE },
		{ "RET=FULL", ALL_EXT, 0 },
		{ "RET=hdrs", ALL_EXT, 0 },
		{ "RET=ALL", ALL_EXT, SMTP_PARSE_PARAM_VALUE },
		{ "RET=FULL", SMTP_EXT_SIZE, SMTP_PARSE_PARAM_DISABLED },
		{ "RET=FULL RET=HDRS", ALL_EXT, SMTP_PARSE_PARAM_DUPLICATE },
		{ "ENVID=QQ314159", ALL_EXT, 0 },
		{ "ENVID=a+2Bb+3Dc", ALL_EXT, 0 },
		{ "ENVID=a+2b", ALL_EXT, SMTP_PARSE_PARAM_XTEXT },
		{ "ENVID=a+2", ALL_EXT, SMTP_PARSE_PARAM_XTEXT },
		{ "ENVID=a+", ALL_EXT, SMTP_PARSE_PARAM_XTEXT },
		{ "ENVID=a+ZZ", ALL_EXT, SMTP_PARSE_PARAM_XTEXT },
		{ "ENVID=caf\xc3\xa9", ALL_EXT, SMTP_PARSE_PARAM_XTEXT },
		{ "ENVID=a=b", ALL_EXT, SMTP_PARSE_PARAM_SYNTAX },
		{ "ENVID=x", SMTP_EXT_SIZE, SMTP_PARSE_PARAM_DISABLED },
		{ "ENVID=x ENVID=y", ALL_EXT, SMTP_PARSE_PARAM_DUPLICATE },
		{ "AUTH=<>", ALL_EXT, 0 },
		{ "AUTH=user+40example.com", ALL_EXT, 0 },
		{ "AUTH=user+4", ALL_EXT, SMTP_PARSE_PARAM_XTEXT },
		{ "AUTH=<>", SMTP_EXT_SIZE, SMTP_PARSE_PARAM_DISABLED },
		{ "AUTH=<> AUTH=<>", ALL_EXT, SMTP_PARSE_PARAM_DUPLICATE },
		{ "FOO=bar", ALL_EXT, SMTP_PARSE_PARAM_UNKNOWN },
		{ "X-FOO", ALL_EXT, SMTP_PARSE_PARAM_UNKNOWN },
		{ "NOTIFY=NEVER", ALL_EXT, SMTP_PARSE_PARAM_UNKNOWN },
		{ "-X", ALL_EXT, SMTP_PARSE_PARAM_SYNTAX },
		{ "SIZE=1\x01", ALL_EXT, SMTP_PARSE_PARAM_SYNTAX },
		{ "SIZE!=1", ALL_EXT, SMTP_PARSE_PARAM_SYNTAX },
		{ "SIZE=100 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=abc AUTH=<>", ALL_EXT, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtp_mail_params mp;
		CHECK_INT(smtp_parse_mail_params(cases[i].params, strlen(cases[i].params),
		                                 cases[i].ext, &mp), cases[i].err, cases[i].params);
	}
	/* values */
	{
		struct smtp_mail_params mp;
		const char *s = "size=100 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=a+2Bb AUTH=u+40d";

		CHECK_INT(smtp_parse_mail_params(s, strlen(s), ALL_EXT, &mp), 0, s);
		CHECK_INT(mp.size, 100, "size");
		CHECK_INT(mp.size_given, 1, "size_given");
		CHECK_INT(mp.body, SMTP_BODY_8BITMIME, "body");
		CHECK_INT(mp.smtputf8, 1, "smtputf8");
		CHECK_INT(mp.ret, SMTP_RET_HDRS, "ret");
		CHECK_STR(mp.envid, "a+2Bb", "envid");
		CHECK_STR(mp.auth, "u+40d", "auth");
		CHECK_INT(smtp_parse_mail_params("", 0, ALL_EXT, &mp), 0, "empty");
		CHECK_INT(mp.size_given, 0, "no size");
		CHECK_INT(mp.body, SMTP_BODY_NONE, "no body");
		CHECK_INT(mp.ret, SMTP_RET_NONE, "no ret");
		CHECK_INT(smtp_parse_mail_params("SIZE=18446744073709551615", 25, ALL_EXT, &mp), 0,
		          "max size");
		CHECK(mp.size == UINT64_MAX, "got %llu, want UINT64_MAX", (unsigned long long)mp.size);
	}
	/* ENVID length: 100 fits, 101 does not */
	{
		struct smtp_mail_params mp;
		char s[200];

		for (size_t n = 100; n <= 101; n++) {
			memcpy(s, "ENVID=", 6);
			memset(s + 6, 'e', n);
			CHECK_INT(smtp_parse_mail_params(s, 6 + n, ALL_EXT, &mp),
			          n == 100 ? 0 : SMTP_PARSE_PARAM_TOO_LONG, "ENVID length");
		}
	}
}

static void
test_rcpt_params(void)
{
	static const struct {
		const char *params;
		unsigned ext;
		int err;
		unsigned notify;
		const char *orcpt;
	} cases[] = {
		{ "", ALL_EXT, 0, 0, "" },
		{ "NOTIFY=NEVER", ALL_EXT, 0, SMTP_NOTIFY_NEVER, "" },
		{ "NOTIFY=SUCCESS,FAILURE", ALL_EXT, 0, SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE, "" },
		{ "notify=delay,failure,success", ALL_EXT, 0,
		  SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY, "" },
		{ "NOTIFY=NEVER,SUCCESS", ALL_EXT, SMTP_PARSE_NOTIFY_CONFLICT, 0, NULL },
		{ "NOTIFY=DELAY,NEVER", ALL_EXT, SMTP_PARSE_NOTIFY_CONFLICT, 0, NULL },
		{ "NOTIFY=SOMETIMES", ALL_EXT, SMTP_PARSE_PARAM_VALUE, 0, NULL },
		{ "NOTIFY=SUCCESS,", ALL_EXT, SMTP_PARSE_PARAM_VALUE, 0, NULL },
		{ "NOTIFY=,SUCCESS", ALL_EXT, SMTP_PARSE_PARAM_VALUE, 0, NULL },
		{ "NOTIFY", ALL_EXT, SMTP_PARSE_PARAM_VALUE, 0, NULL },
		{ "NOTIFY=NEVER NOTIFY=NEVER", ALL_EXT, SMTP_PARSE_PARAM_DUPLICATE, 0, NULL },
		{ "NOTIFY=NEVER", SMTP_EXT_SIZE, SMTP_PARSE_PARAM_DISABLED, 0, NULL },
		{ "ORCPT=rfc822;user+40example.com", ALL_EXT, 0, 0, "rfc822;user+40example.com" },
		{ "ORCPT=rfc822;a+2", ALL_EXT, SMTP_PARSE_PARAM_XTEXT, 0, NULL },
		{ "ORCPT=rfc822;a+zz", ALL_EXT, SMTP_PARSE_PARAM_XTEXT, 0, NULL },
		{ "ORCPT=rfc822", ALL_EXT, SMTP_PARSE_PARAM_VALUE, 0, NULL },
		{ "ORCPT=;user", ALL_EXT, SMTP_PARSE_PARAM_VALUE, 0, NULL },
		{ "ORCPT=rfc822;", ALL_EXT, SMTP_PARSE_PARAM_VALUE, 0, NULL },
		{ "ORCPT=rf(c;user", ALL_EXT, SMTP_PARSE_PARAM_VALUE, 0, NULL },
		{ "ORCPT=utf-8;j\xc3\xb6rg@example", ALL_EXT, 0, 0, "utf-8;j\xc3\xb6rg@example" },
		{ "ORCPT=rfc822;j\xc3\xb6rg@example", ALL_EXT, SMTP_PARSE_PARAM_XTEXT, 0, NULL },
		{ "ORCPT=utf-8;j\xc3rg@example", ALL_EXT, SMTP_PARSE_PARAM_XTEXT, 0, NULL },
		{ "ORCPT=rfc822;a ORCPT=rfc822;b", ALL_EXT, SMTP_PARSE_PARAM_DUPLICATE, 0, NULL },
		{ "ORCPT=rfc822;a", SMTP_EXT_SIZE, SMTP_PARSE_PARAM_DISABLED, 0, NULL },
		{ "SIZE=10", ALL_EXT, SMTP_PARSE_PARAM_UNKNOWN, 0, NULL },
		{ "NOTIFY=FAILURE ORCPT=rfc822;x+40y", ALL_EXT, 0, SMTP_NOTIFY_FAILURE, "rfc822;x+40y" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtp_rcpt_params rp;
		int err = smtp_parse_rcpt_params(cases[i].params, strlen(cases[i].params),
		                                 cases[i].ext, &rp);
		CHECK_INT(err, cases[i].err, cases[i].params);
		if (err == 0 && cases[i].err == 0) {
			CHECK_INT(rp.notify, cases[i].notify, cases[i].params);
			CHECK_STR(rp.orcpt, cases[i].orcpt, cases[i].params);
		}
	}
	/* ORCPT length: 500 fits, 501 does not */
	{
		struct smtp_rcpt_params rp;
		char s[600];

		for (size_t n = 500; n <= 501; n++) {
			memcpy(s, "ORCPT=rfc822;", 13);
			memset(s + 13, 'o', n - 7);
			CHECK_INT(smtp_parse_rcpt_params(s, 6 + n, ALL_EXT, &rp),
			          n == 500 ? 0 : SMTP_PARSE_PARAM_TOO_LONG, "ORCPT length");
		}
	}
}

static void
test_bdat_arg(void)
{
	static const struct {
		const char *arg;
		int err;
		uint64_t size;
		int last;
	} cases[] = {
		{ "0", 0, 0, 0 },
		{ "100", 0, 100, 0 },
		{ "100 LAST", 0, 100, 1 },
		{ "100   last  ", 0, 100, 1 },
		{ "0 LAST", 0, 0, 1 },
		{ "18446744073709551615", 0, UINT64_MAX, 0 },
		{ "18446744073709551616", SMTP_PARSE_BDAT_SYNTAX, 0, 0 },
		{ "", SMTP_PARSE_BDAT_SYNTAX, 0, 0 },
		{ "LAST", SMTP_PARSE_BDAT_SYNTAX, 0, 0 },
		{ "-1", SMTP_PARSE_BDAT_SYNTAX, 0, 0 },
		{ "10x", SMTP_PARSE_BDAT_SYNTAX, 0, 0 },
		{ "10 FIRST", SMTP_PARSE_BDAT_SYNTAX, 0, 0 },
		{ "10 LAST x", SMTP_PARSE_BDAT_SYNTAX, 0, 0 },
		{ "10 LASTX", SMTP_PARSE_BDAT_SYNTAX, 0, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t size;
		int last;
		int err = smtp_bdat_parse_arg(cases[i].arg, strlen(cases[i].arg), &size, &last);

		CHECK_INT(err, cases[i].err, cases[i].arg);
		if (err == 0) {
			CHECK(size == cases[i].size, "%s: got %llu, want %llu", cases[i].arg,
			      (unsigned long long)size, (unsigned long long)cases[i].size);
			CHECK_INT(last, cases[i].last, cases[i].arg);
		}
	}
}

static void
test_strerror(void)
{
	static const struct {
		int err;
		int code;
		const char *enhanced;
	} cases[] = {
		{ SMTP_PARSE_EMPTY, 500, "5.5.2" },
		{ SMTP_PARSE_UNKNOWN_CMD, 500, "5.5.2" },
		{ SMTP_PARSE_LINE_TOO_LONG, 500, "5.5.6" },
		{ SMTP_PARSE_SYNTAX, 501, "5.5.4" },
		{ SMTP_PARSE_PATH_SYNTAX, 501, "5.1.3" },
		{ SMTP_PARSE_LOCAL_TOO_LONG, 553, "5.1.3" },
		{ SMTP_PARSE_UTF8_NOT_ALLOWED, 553, "5.6.7" },
		{ SMTP_PARSE_PARAM_UNKNOWN, 555, "5.5.4" },
		{ SMTP_PARSE_PARAM_DISABLED, 555, "5.5.4" },
		{ SMTP_PARSE_NOTIFY_CONFLICT, 501, "5.5.4" },
		{ -1, 500, "5.5.0" },
		{ SMTP_PARSE_ERR_MAX, 500, "5.5.0" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int code = 0;
		const char *enh = NULL;
		const char *text = smtp_parse_strerror(cases[i].err, &code, &enh);
		char ctx[32];

		snprintf(ctx, sizeof(ctx), "err %d", cases[i].err);
		CHECK(text != NULL && *text != '\0', "%s: no text", ctx);
		CHECK_INT(code, cases[i].code, ctx);
		CHECK_STR(enh, cases[i].enhanced, ctx);
	}
	/* every error has its own entry with a 5xx code */
	for (int e = 1; e < SMTP_PARSE_ERR_MAX; e++) {
		int code = 0;
		const char *enh = NULL;
		const char *text = smtp_parse_strerror(e, &code, &enh);
		char ctx[32];

		snprintf(ctx, sizeof(ctx), "err %d", e);
		CHECK(code >= 500 && code < 600 && enh != NULL && enh[0] == '5' &&
		      strcmp(text, "Error") != 0, "%s: got %d %s %s", ctx, code, enh, text);
	}
}

TEST_MAIN("smtp_parse",
          TEST(test_verbs),
          TEST(test_malformed),
          TEST(test_line_reader),
          TEST(test_line_split),
          TEST(test_line_too_long),
          TEST(test_paths),
          TEST(test_path_limits),
          TEST(test_render),
          TEST(test_mail_params),
          TEST(test_rcpt_params),
          TEST(test_bdat_arg),
          TEST(test_strerror))

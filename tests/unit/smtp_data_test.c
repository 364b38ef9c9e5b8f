/*
 * smtp_data_test.c - the DATA parser and the BDAT checker: the end of data
 * and its smuggling variants (whole and split at every byte), dot-unstuffing,
 * bare CR / LF in both modes, NUL, long lines, the size cap and pipelined
 * bytes after the end.
 */
#include <stdint.h>

#include "listener/smtp_parse.h"
#include "test.h"

/* What one run of the parser over an input gave. */
struct data_run {
	enum smtp_data_status st;       /* the last status */
	int ends;                       /* how many calls returned a final status */
	size_t consumed;                /* octets consumed in total */
	struct strbuf out;              /* the content */
	uint64_t bytes;                 /* smtp_data_bytes at the end */
};

static void test_variants(void);
static void test_variants_at_start(void);
static void test_unstuffing(void);
static void test_bare(void);
static void test_nul(void);
static void test_long_lines(void);
static void test_size_cap(void);
static void test_pipelined(void);
static void test_split_everywhere(void);
static void test_strerror(void);
static void test_bdat(void);
static void test_bdat_split(void);

static int
has_bare(const struct strbuf *sb)
{
	for (size_t i = 0; i < sb->len; i++) {
		if (sb->data[i] == '\r' && (i + 1 >= sb->len || sb->data[i + 1] != '\n'))
			return 1;
		if (sb->data[i] == '\n' && (i == 0 || sb->data[i - 1] != '\r'))
			return 1;
	}
	return 0;
}

/*
 * run_data: feed in / len to a fresh parser (or p, if given, without
 * re-initialising) in chunks of split octets (0: one buffer). Stops feeding
 * at the end, as a session would; the rest stays unconsumed.
 */
static void
run_data(struct smtp_data_parser *p, const char *in, size_t len, size_t split,
         struct data_run *r)
{
	size_t off = 0, consumed;

	r->st = SMTP_DATA_MORE;
	r->ends = 0;
	while (off < len) {
		size_t chunk = split && split < len - off ? split : len - off;
		r->st = smtp_data_feed(p, in + off, chunk, &consumed, &r->out);
		CHECK(consumed <= chunk, "consumed %zu of %zu", consumed, chunk);
		off += consumed;
		r->consumed += consumed;
		if (r->st != SMTP_DATA_MORE) {
			r->ends++;
			break;
		}
		CHECK(consumed == chunk, "MORE but consumed %zu of %zu", consumed, chunk);
	}
	r->bytes = smtp_data_bytes(p);
}

/* The 11 sequences that look like an end of data but are not. */
static const struct {
	const char *seq;
	size_t len;
	int nul;                /* holds a NUL: BAD_NUL in both modes */
} variants[] = {
	{ "\n.\n", 3, 0 },
	{ "\n.\r\n", 4, 0 },
	{ "\r.\r", 3, 0 },
	{ "\r.\n", 3, 0 },
	{ "\n.\r", 3, 0 },
	{ "\r.\r\n", 4, 0 },
	{ "\r\n.\n", 4, 0 },
	{ "\r\n.\r", 4, 0 },
	{ "\r\n\0.\r\n", 6, 1 },
	{ "\r\n.\0\r\n", 6, 1 },
	{ "\r\n.\r\r\n", 6, 0 },
};

static void
check_variant(const char *prefix, size_t v, int mode, size_t split)
{
	char in[256], ctx[96];
	size_t len = strlen(prefix), consumed;
	struct smtp_data_parser p;
	struct data_run r = { 0 };
	enum smtp_data_status st, want;

	memcpy(in, prefix, len);
	memcpy(in + len, variants[v].seq, variants[v].len);
	len += variants[v].len;
	snprintf(ctx, sizeof(ctx), "variant %zu, prefix %zu, %s, split %zu", v, strlen(prefix),
	         mode == SMTP_BARE_REJECT ? "reject" : "normalize", split);

	smtp_data_init(&p, mode, 0);
	run_data(&p, in, len, split, &r);
	CHECK_INT(r.st, SMTP_DATA_MORE, ctx);
	CHECK_INT(r.ends, 0, ctx);
	CHECK_INT(r.consumed, len, ctx);

	/* the real end: exactly one final status, the whole of it consumed */
	st = smtp_data_feed(&p, "\r\n.\r\nQUIT\r\n", 11, &consumed, &r.out);
	if (variants[v].nul)
		want = SMTP_DATA_BAD_NUL;
	else
		want = mode == SMTP_BARE_REJECT ? SMTP_DATA_BAD_BARE : SMTP_DATA_DONE;
	CHECK_INT(st, want, ctx);
	CHECK_INT(consumed, 5, ctx);
	CHECK_INT(smtp_data_feed(&p, "QUIT\r\n", 6, &consumed, &r.out), want, ctx);
	CHECK_INT(consumed, 0, ctx);
	CHECK(!has_bare(&r.out), "%s: bare CR/LF in output", ctx);
	CHECK(r.out.len == 0 || (r.out.len >= 2 && memcmp(r.out.data + r.out.len - 2, "\r\n", 2) == 0),
	      "%s: output does not end in CRLF", ctx);
	strbuf_free(&r.out);
}

static void
test_variants(void)
{
	static const char *prefixes[] = { "Subject: x\r\n\r\nbody", "body\r\n", "" };

	for (size_t pi = 0; pi < sizeof(prefixes) / sizeof(prefixes[0]); pi++)
		for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]); v++)
			for (int mode = SMTP_BARE_REJECT; mode <= SMTP_BARE_NORMALIZE; mode++)
				for (size_t split = 0; split <= 30; split++)
					check_variant(prefixes[pi], v, mode, split);
	/* and one message holding all of them, one after the other */
	for (int mode = SMTP_BARE_REJECT; mode <= SMTP_BARE_NORMALIZE; mode++) {
		struct strbuf in = STRBUF_INIT;
		struct smtp_data_parser p;

		strbuf_puts(&in, "Subject: all\r\n\r\n");
		for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]); v++) {
			strbuf_puts(&in, "text");
			strbuf_append(&in, variants[v].seq, variants[v].len);
		}
		for (size_t split = 0; split <= in.len; split++) {
			struct data_run r = { 0 };
			char ctx[64];

			snprintf(ctx, sizeof(ctx), "all variants, mode %d, split %zu", mode, split);
			smtp_data_init(&p, mode, 0);
			run_data(&p, in.data, in.len, split, &r);
			CHECK_INT(r.st, SMTP_DATA_MORE, ctx);
			CHECK_INT(r.consumed, in.len, ctx);
			strbuf_free(&r.out);
		}
		strbuf_free(&in);
	}
}

/* The variants with the expected content, in one buffer with the real end. */
static void
test_variants_at_start(void)
{
	static const struct {
		const char *in;
		size_t len;
		const char *out;        /* normalize mode */
	} cases[] = {
		{ "a\n.\nb\r\n.\r\n", 10, "a\r\n\r\nb\r\n" },
		{ "a\n.\r\nb\r\n.\r\n", 11, "a\r\n\r\nb\r\n" },
		{ "a\r.\rb\r\n.\r\n", 10, "a\r\n\r\nb\r\n" },
		{ "a\r\n.\nb\r\n.\r\n", 11, "a\r\n\r\nb\r\n" },
		{ "a\r\n.\rb\r\n.\r\n", 11, "a\r\n\r\nb\r\n" },
		{ "a\r\n.\r\r\nb\r\n.\r\n", 13, "a\r\n\r\n\r\nb\r\n" },
		{ "a\r\n\0.\r\nb\r\n.\r\n", 13, "a\r\n.\r\nb\r\n" },
		{ "a\r\n.\0\r\nb\r\n.\r\n", 13, "a\r\n\r\nb\r\n" },
		/* ".\r\n" after a bare LF is not the end; after the next CRLF it is */
		{ "\n.\n.\r\n.\r\n", 9, "\r\n\r\n\r\n" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtp_data_parser p;
		struct data_run r = { 0 };
		char ctx[32];

		snprintf(ctx, sizeof(ctx), "case %zu", i);
		smtp_data_init(&p, SMTP_BARE_NORMALIZE, 0);
		run_data(&p, cases[i].in, cases[i].len, 0, &r);
		CHECK_INT(r.ends, 1, ctx);
		CHECK_INT(r.consumed, cases[i].len, ctx);
		CHECK_STR(strbuf_cstr(&r.out), cases[i].out, ctx);
		CHECK_INT(r.bytes, strlen(cases[i].out), ctx);
		strbuf_free(&r.out);
	}
}

static void
test_unstuffing(void)
{
	static const struct {
		const char *in;
		const char *out;
	} cases[] = {
		{ ".\r\n", "" },
		{ "\r\n.\r\n", "\r\n" },
		{ "..\r\n.\r\n", ".\r\n" },
		{ "...\r\n.\r\n", "..\r\n" },
		{ "..x\r\n.\r\n", ".x\r\n" },
		{ ".x\r\n.\r\n", "x\r\n" },
		{ "a\r\n.b\r\n.\r\n", "a\r\nb\r\n" },
		{ "a.\r\n.\r\n", "a.\r\n" },
		{ "a\r\n. \r\n.\r\n", "a\r\n \r\n" },
		{ "a\r\n..\r\n..\r\n.\r\n", "a\r\n.\r\n.\r\n" },
		{ ". .\r\n.\r\n", " .\r\n" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (size_t split = 0; split <= 3; split++) {
			struct smtp_data_parser p;
			struct data_run r = { 0 };

			smtp_data_init(&p, SMTP_BARE_REJECT, 0);
			run_data(&p, cases[i].in, strlen(cases[i].in), split, &r);
			CHECK_INT(r.st, SMTP_DATA_DONE, cases[i].in);
			CHECK_INT(r.consumed, strlen(cases[i].in), cases[i].in);
			CHECK_STR(strbuf_cstr(&r.out), cases[i].out, cases[i].in);
			strbuf_free(&r.out);
		}
	}
}

static void
test_bare(void)
{
	static const struct {
		const char *in;
		const char *out;        /* normalize mode */
	} cases[] = {
		{ "a\nb\r\n.\r\n", "a\r\nb\r\n" },
		{ "a\rb\r\n.\r\n", "a\r\nb\r\n" },
		{ "a\r\r\n.\r\n", "a\r\n\r\n" },
		{ "a\n\r\n.\r\n", "a\r\n\r\n" },
		{ "a\n\n\r\n.\r\n", "a\r\n\r\n\r\n" },
		{ "\n\r\n.\r\n", "\r\n\r\n" },
		{ "\r\r\n.\r\n", "\r\n\r\n" },
		{ "a\n..b\r\n.\r\n", "a\r\n.b\r\n" },
		{ "a\r\n.\n.\r\n.\r\n", "a\r\n\r\n\r\n" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtp_data_parser p;
		struct data_run r = { 0 };

		smtp_data_init(&p, SMTP_BARE_NORMALIZE, 0);
		run_data(&p, cases[i].in, strlen(cases[i].in), 0, &r);
		CHECK_INT(r.st, SMTP_DATA_DONE, cases[i].in);
		CHECK_INT(r.consumed, strlen(cases[i].in), cases[i].in);
		CHECK_STR(strbuf_cstr(&r.out), cases[i].out, cases[i].in);
		strbuf_free(&r.out);

		memset(&r, 0, sizeof(r));
		smtp_data_init(&p, SMTP_BARE_REJECT, 0);
		run_data(&p, cases[i].in, strlen(cases[i].in), 0, &r);
		CHECK_INT(r.st, SMTP_DATA_BAD_BARE, cases[i].in);
		CHECK_INT(r.consumed, strlen(cases[i].in), cases[i].in);
		CHECK(!has_bare(&r.out), "%s: bare CR/LF in output", cases[i].in);
		strbuf_free(&r.out);
	}
}

static void
test_nul(void)
{
	static const struct {
		const char *in;
		size_t len;
		int mode;
		enum smtp_data_status st;
		const char *out;
	} cases[] = {
		{ "a\0b\r\n.\r\n", 8, SMTP_BARE_REJECT, SMTP_DATA_BAD_NUL, "ab\r\n" },
		{ "\0\r\n.\r\n", 6, SMTP_BARE_NORMALIZE, SMTP_DATA_BAD_NUL, "\r\n" },
		{ ".\0\r\n.\r\n", 7, SMTP_BARE_REJECT, SMTP_DATA_BAD_NUL, "\r\n" },
		/* NUL outranks a bare LF */
		{ "a\n\0\r\n.\r\n", 8, SMTP_BARE_REJECT, SMTP_DATA_BAD_NUL, "a\r\n\r\n" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtp_data_parser p;
		struct data_run r = { 0 };
		char ctx[32];

		snprintf(ctx, sizeof(ctx), "case %zu", i);
		smtp_data_init(&p, cases[i].mode, 0);
		run_data(&p, cases[i].in, cases[i].len, 0, &r);
		CHECK_INT(r.st, cases[i].st, ctx);
		CHECK_INT(r.consumed, cases[i].len, ctx);
		CHECK_STR(strbuf_cstr(&r.out), cases[i].out, ctx);
		strbuf_free(&r.out);
	}
}

static void
test_long_lines(void)
{
	static const struct {
		size_t text;            /* octets of the line before CRLF */
		int stuffed;            /* the line starts with a stuffing dot */
		const char *term;       /* its terminator */
		int mode;
		enum smtp_data_status st;
	} cases[] = {
		{ 998, 0, "\r\n", SMTP_BARE_REJECT, SMTP_DATA_DONE },
		{ 999, 0, "\r\n", SMTP_BARE_REJECT, SMTP_DATA_BAD_LINE_TOO_LONG },
		{ 5000, 0, "\r\n", SMTP_BARE_REJECT, SMTP_DATA_BAD_LINE_TOO_LONG },
		{ 998, 1, "\r\n", SMTP_BARE_REJECT, SMTP_DATA_DONE },  /* the dot is not counted */
		{ 999, 1, "\r\n", SMTP_BARE_REJECT, SMTP_DATA_BAD_LINE_TOO_LONG },
		{ 998, 0, "\n", SMTP_BARE_NORMALIZE, SMTP_DATA_DONE },
		{ 999, 0, "\n", SMTP_BARE_NORMALIZE, SMTP_DATA_BAD_LINE_TOO_LONG },
		/* bare LF outranks the long line */
		{ 999, 0, "\n", SMTP_BARE_REJECT, SMTP_DATA_BAD_BARE },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct strbuf in = STRBUF_INIT;
		struct smtp_data_parser p;
		char ctx[64];

		snprintf(ctx, sizeof(ctx), "case %zu (%zu octets)", i, cases[i].text);
		strbuf_puts(&in, "Subject: long\r\n\r\n");
		if (cases[i].stuffed)
			strbuf_putc(&in, '.');
		for (size_t n = 0; n < cases[i].text; n++)
			strbuf_putc(&in, (char)('a' + n % 26));
		strbuf_puts(&in, cases[i].term);
		strbuf_puts(&in, "short\r\n.\r\n");
		for (size_t split = 0; split <= 7; split += 7) {
			struct data_run r = { 0 };

			smtp_data_init(&p, cases[i].mode, 0);
			run_data(&p, in.data, in.len, split, &r);
			CHECK_INT(r.st, cases[i].st, ctx);
			CHECK_INT(r.consumed, in.len, ctx);
			strbuf_free(&r.out);
		}
		strbuf_free(&in);
	}
}

static void
test_size_cap(void)
{
	static const struct {
		const char *in;
		size_t max;
		enum smtp_data_status st;
		uint64_t bytes;
	} cases[] = {
		{ "12345678\r\n.\r\n", 10, SMTP_DATA_DONE, 10 },
		{ "123456789\r\n.\r\n", 10, SMTP_DATA_BAD_TOO_BIG, 11 },
		{ "12345678\r\n.\r\n", 9, SMTP_DATA_BAD_TOO_BIG, 10 },
		{ "..\r\n.\r\n", 3, SMTP_DATA_DONE, 3 },
		{ "12345678\r\n.\r\n", 0, SMTP_DATA_DONE, 10 },
		/* too big outranks NUL */
		{ "1234\0" "5678\r\n.\r\n", 5, SMTP_DATA_BAD_TOO_BIG, 10 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtp_data_parser p;
		struct data_run r = { 0 };
		char ctx[32];
		size_t len = strlen(cases[i].in);

		if (i == 5)
			len = 14;
		snprintf(ctx, sizeof(ctx), "case %zu", i);
		smtp_data_init(&p, SMTP_BARE_REJECT, cases[i].max);
		run_data(&p, cases[i].in, len, 0, &r);
		CHECK_INT(r.st, cases[i].st, ctx);
		CHECK_INT(r.bytes, cases[i].bytes, ctx);
		CHECK_INT(r.consumed, len, ctx);
		CHECK(cases[i].max == 0 || r.out.len <= cases[i].max, "%s: got %zu octets, cap %zu",
		      ctx, r.out.len, cases[i].max);
		CHECK(!has_bare(&r.out), "%s: bare CR/LF in output", ctx);
		strbuf_free(&r.out);
	}
	/* 4 MB through a 64 kB cap: memory stays bounded, the end is still found */
	{
		static char line[80];
		struct smtp_data_parser p;
		struct strbuf out = STRBUF_INIT;
		size_t consumed;
		enum smtp_data_status st = SMTP_DATA_MORE;

		memset(line, 'z', sizeof(line) - 2);
		memcpy(line + sizeof(line) - 2, "\r\n", 2);
		smtp_data_init(&p, SMTP_BARE_REJECT, 65536);
		for (int i = 0; i < 4 * 1024 * 1024 / (int)sizeof(line); i++) {
			st = smtp_data_feed(&p, line, sizeof(line), &consumed, &out);
			CHECK(st == SMTP_DATA_MORE && consumed == sizeof(line), "line %d: st %d", i, st);
		}
		st = smtp_data_feed(&p, ".\r\nRSET\r\n", 9, &consumed, &out);
		CHECK_INT(st, SMTP_DATA_BAD_TOO_BIG, "4 MB");
		CHECK_INT(consumed, 3, "4 MB consumed");
		CHECK(out.len <= 65536, "got %zu octets, want <= 65536", out.len);
		CHECK_INT(smtp_data_bytes(&p), 4 * 1024 * 1024 / sizeof(line) * sizeof(line), "4 MB bytes");
		strbuf_free(&out);
	}
}

static void
test_pipelined(void)
{
	static const char in[] = "Subject: 1\r\n\r\nfirst\r\n.\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"
	                         "DATA\r\n";
	size_t end = strlen("Subject: 1\r\n\r\nfirst\r\n.\r\n");

	for (size_t split = 0; split <= sizeof(in); split++) {
		struct smtp_data_parser p;
		struct data_run r = { 0 };
		char ctx[32];

		snprintf(ctx, sizeof(ctx), "split %zu", split);
		smtp_data_init(&p, SMTP_BARE_REJECT, 0);
		run_data(&p, in, sizeof(in) - 1, split, &r);
		CHECK_INT(r.st, SMTP_DATA_DONE, ctx);
		CHECK_INT(r.ends, 1, ctx);
		CHECK_INT(r.consumed, end, ctx);
		CHECK_STR(strbuf_cstr(&r.out), "Subject: 1\r\n\r\nfirst\r\n", ctx);
		strbuf_free(&r.out);
	}
	/* a second message right after the first, with the parser re-initialised */
	{
		static const char two[] = "one\r\n.\r\ntwo\r\n.\r\n";
		struct smtp_data_parser p;
		struct data_run r1 = { 0 }, r2 = { 0 };

		smtp_data_init(&p, SMTP_BARE_REJECT, 0);
		run_data(&p, two, sizeof(two) - 1, 0, &r1);
		CHECK_INT(r1.consumed, 8, "first");
		smtp_data_init(&p, SMTP_BARE_REJECT, 0);
		run_data(&p, two + r1.consumed, sizeof(two) - 1 - r1.consumed, 0, &r2);
		CHECK_INT(r2.st, SMTP_DATA_DONE, "second");
		CHECK_STR(strbuf_cstr(&r2.out), "two\r\n", "second");
		strbuf_free(&r1.out);
		strbuf_free(&r2.out);
	}
}

/* Any split of any input gives the same status, consumption and output. */
#define DATA_CASE(s) { s, sizeof(s) - 1 }

static void
test_split_everywhere(void)
{
	static const struct {
		const char *in;
		size_t len;
	} cases[] = {
		DATA_CASE("From: a\r\n..x\n.\r\r.\n\r\n\0.\r\nz\r\n.\r\r\n\r\n.\rq\r\n.\r\nNOOP\r\n"),
		DATA_CASE("\r\r\r\n\n\n.\r\n..\r\n.\r\n"),
		DATA_CASE(".\r\n"),
		DATA_CASE("\r\n.\r\n"),
		DATA_CASE("x\r\n.\r"),
		DATA_CASE("a\n.\nb\r.\rc\r\n.\nd\r\n.\r\r\n.\r\n"),
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (int mode = SMTP_BARE_REJECT; mode <= SMTP_BARE_NORMALIZE; mode++) {
			struct smtp_data_parser p;
			struct data_run whole = { 0 };

			smtp_data_init(&p, mode, 0);
			run_data(&p, cases[i].in, cases[i].len, 0, &whole);
			CHECK(!has_bare(&whole.out), "case %zu: bare CR/LF in output", i);
			for (size_t a = 1; a < cases[i].len; a++) {
				/* two cuts: at a, then every b octets */
				for (size_t b = 1; b <= cases[i].len; b++) {
					struct data_run r = { 0 };
					char ctx[64];
					size_t consumed;

					snprintf(ctx, sizeof(ctx), "case %zu mode %d cut %zu/%zu", i, mode,
					         a, b);
					smtp_data_init(&p, mode, 0);
					r.st = smtp_data_feed(&p, cases[i].in, a, &consumed, &r.out);
					r.consumed = consumed;
					if (r.st == SMTP_DATA_MORE)
						run_data(&p, cases[i].in + a, cases[i].len - a, b, &r);
					CHECK_INT(r.st, whole.st, ctx);
					CHECK_INT(r.consumed, whole.consumed, ctx);
					CHECK(r.out.len == whole.out.len &&
					      memcmp(r.out.data ? r.out.data : "", whole.out.data ?
					             whole.out.data : "", r.out.len) == 0,
					      "%s: output differs", ctx);
					strbuf_free(&r.out);
				}
			}
			strbuf_free(&whole.out);
		}
	}
}

static void
test_strerror(void)
{
	static const struct {
		enum smtp_data_status st;
		int code;
		const char *enhanced;
	} cases[] = {
		{ SMTP_DATA_DONE, 250, "2.0.0" },
		{ SMTP_DATA_BAD_BARE, 550, "5.6.0" },
		{ SMTP_DATA_BAD_NUL, 550, "5.6.0" },
		{ SMTP_DATA_BAD_LINE_TOO_LONG, 550, "5.6.0" },
		{ SMTP_DATA_BAD_TOO_BIG, 552, "5.3.4" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int code = 0;
		const char *enh = NULL;
		char ctx[32];

		snprintf(ctx, sizeof(ctx), "status %d", cases[i].st);
		CHECK(smtp_data_strerror(cases[i].st, &code, &enh) != NULL, "%s: no text", ctx);
		CHECK_INT(code, cases[i].code, ctx);
		CHECK_STR(enh, cases[i].enhanced, ctx);
	}
}

static void
test_bdat(void)
{
	static const struct {
		const char *chunks[3];  /* NULL-terminated */
		size_t lens[3];         /* 0: strlen */
		int body;
		int mode;
		size_t max;
		enum smtp_data_status st;
		const char *out;
		size_t outlen;          /* 0: strlen(out) */
	} cases[] = {
		{ { "a\r\nb\r\n", NULL }, { 0 }, SMTP_BODY_8BITMIME, SMTP_BARE_REJECT, 0,
		  SMTP_DATA_DONE, "a\r\nb\r\n", 0 },
		{ { "a\r", "\nb\r\n", NULL }, { 0 }, SMTP_BODY_NONE, SMTP_BARE_REJECT, 0,
		  SMTP_DATA_DONE, "a\r\nb\r\n", 0 },
		{ { "a\r\n.\r\nb\r\n", NULL }, { 0 }, SMTP_BODY_NONE, SMTP_BARE_REJECT, 0,
		  SMTP_DATA_DONE, "a\r\n.\r\nb\r\n", 0 },             /* no unstuffing, no end */
		{ { "..\r\n", NULL }, { 0 }, SMTP_BODY_NONE, SMTP_BARE_REJECT, 0,
		  SMTP_DATA_DONE, "..\r\n", 0 },
		{ { "a\nb\r\n", NULL }, { 0 }, SMTP_BODY_NONE, SMTP_BARE_REJECT, 0,
		  SMTP_DATA_BAD_BARE, NULL, 0 },
		{ { "a\nb\r\n", NULL }, { 0 }, SMTP_BODY_NONE, SMTP_BARE_NORMALIZE, 0,
		  SMTP_DATA_DONE, "a\r\nb\r\n", 0 },
		{ { "a\r", "b", NULL }, { 0 }, SMTP_BODY_NONE, SMTP_BARE_NORMALIZE, 0,
		  SMTP_DATA_DONE, "a\r\nb\r\n", 0 },                  /* last line ended */
		{ { "a\r", NULL }, { 0 }, SMTP_BODY_NONE, SMTP_BARE_REJECT, 0,
		  SMTP_DATA_BAD_BARE, NULL, 0 },                      /* CR at the very end */
		{ { "a\r", NULL }, { 0 }, SMTP_BODY_NONE, SMTP_BARE_NORMALIZE, 0,
		  SMTP_DATA_DONE, "a\r\n", 0 },
		{ { "a\0b\r\n", NULL }, { 5 }, SMTP_BODY_NONE, SMTP_BARE_REJECT, 0,
		  SMTP_DATA_BAD_NUL, NULL, 0 },
		{ { "a\0b\nc\rd", NULL }, { 7 }, SMTP_BODY_BINARYMIME, SMTP_BARE_REJECT, 0,
		  SMTP_DATA_DONE, "a\0b\nc\rd", 7 },                  /* binary: verbatim */
		{ { "0123456789", "x", NULL }, { 0 }, SMTP_BODY_BINARYMIME, SMTP_BARE_REJECT, 10,
		  SMTP_DATA_BAD_TOO_BIG, "0123456789", 0 },
		{ { "12345678\r\n", NULL }, { 0 }, SMTP_BODY_NONE, SMTP_BARE_REJECT, 10,
		  SMTP_DATA_DONE, "12345678\r\n", 0 },
		{ { "12345678", NULL }, { 0 }, SMTP_BODY_NONE, SMTP_BARE_REJECT, 9,
		  SMTP_DATA_BAD_TOO_BIG, NULL, 0 },                   /* the added CRLF counts */
		{ { "", NULL }, { 0 }, SMTP_BODY_NONE, SMTP_BARE_REJECT, 0,
		  SMTP_DATA_DONE, "", 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtp_bdat_checker c;
		struct strbuf out = STRBUF_INIT;
		enum smtp_data_status st;
		char ctx[32];

		snprintf(ctx, sizeof(ctx), "case %zu", i);
		smtp_bdat_init(&c, cases[i].body, cases[i].mode, cases[i].max);
		for (size_t k = 0; k < 3 && cases[i].chunks[k] != NULL; k++)
			smtp_bdat_feed(&c, cases[i].chunks[k],
			               cases[i].lens[k] ? cases[i].lens[k] : strlen(cases[i].chunks[k]),
			               &out);
		st = smtp_bdat_finish(&c, &out);
		CHECK_INT(st, cases[i].st, ctx);
		if (cases[i].out != NULL) {
			size_t want = cases[i].outlen ? cases[i].outlen : strlen(cases[i].out);
			CHECK(out.len == want && memcmp(out.data ? out.data : "", cases[i].out, want) == 0,
			      "%s: got %zu octets \"%s\", want %zu", ctx, out.len, strbuf_cstr(&out),
			      want);
		}
		if (cases[i].body != SMTP_BODY_BINARYMIME)
			CHECK(!has_bare(&out), "%s: bare CR/LF in output", ctx);
		if (cases[i].max != 0)
			CHECK(out.len <= cases[i].max, "%s: %zu octets over the cap", ctx, out.len);
		strbuf_free(&out);
	}
	/* long lines */
	for (size_t n = 998; n <= 999; n++) {
		struct smtp_bdat_checker c;
		char line[1001];

		memset(line, 'l', n);
		memcpy(line + n, "\r\n", 2);
		smtp_bdat_init(&c, SMTP_BODY_8BITMIME, SMTP_BARE_REJECT, 0);
		smtp_bdat_feed(&c, line, n + 2, NULL);
		CHECK_INT(smtp_bdat_finish(&c, NULL),
		          n == 998 ? SMTP_DATA_DONE : SMTP_DATA_BAD_LINE_TOO_LONG, "BDAT long line");
		CHECK_INT(smtp_bdat_bytes(&c), n + 2, "BDAT bytes");
	}
}

static void
test_bdat_split(void)
{
	static const char in[] = "a\r\nb\rc\nd\r\r\n\r\n..\r\ne";
	size_t len = sizeof(in) - 1;

	for (int mode = SMTP_BARE_REJECT; mode <= SMTP_BARE_NORMALIZE; mode++) {
		struct smtp_bdat_checker c;
		struct strbuf whole = STRBUF_INIT;
		enum smtp_data_status want;

		smtp_bdat_init(&c, SMTP_BODY_NONE, mode, 0);
		smtp_bdat_feed(&c, in, len, &whole);
		want = smtp_bdat_finish(&c, &whole);
		CHECK_INT(want, mode == SMTP_BARE_REJECT ? SMTP_DATA_BAD_BARE : SMTP_DATA_DONE, "whole");
		if (mode == SMTP_BARE_NORMALIZE)
			CHECK_STR(strbuf_cstr(&whole), "a\r\nb\r\nc\r\nd\r\n\r\n\r\n..\r\ne\r\n", "whole");
		for (size_t a = 0; a <= len; a++) {
			for (size_t b = a; b <= len; b++) {
				struct strbuf out = STRBUF_INIT;
				char ctx[48];

				snprintf(ctx, sizeof(ctx), "mode %d cuts %zu %zu", mode, a, b);
				smtp_bdat_init(&c, SMTP_BODY_NONE, mode, 0);
				smtp_bdat_feed(&c, in, a, &out);
				smtp_bdat_feed(&c, in + a, b - a, &out);
				smtp_bdat_feed(&c, in + b, len - b, &out);
				CHECK_INT(smtp_bdat_finish(&c, &out), want, ctx);
				CHECK_STR(strbuf_cstr(&out), strbuf_cstr(&whole), ctx);
				strbuf_free(&out);
			}
		}
		strbuf_free(&whole);
	}
}

TEST_MAIN("smtp_data",
          TEST(test_variants),
          TEST(test_variants_at_start),
          TEST(test_unstuffing),
          TEST(test_bare),
          TEST(test_nul),
          TEST(test_long_lines),
          TEST(test_size_cap),
          TEST(test_pipelined),
          TEST(test_split_everywhere),
          TEST(test_strerror),
          TEST(test_bdat),
          TEST(test_bdat_split))

/*
 * smtp_data_fuzz.c - libFuzzer target for the DATA parser and the BDAT
 * checker, fed in chunk splits chosen by the input.
 *
 * Invariants checked:
 *   - consumed never exceeds what was fed; MORE consumes everything;
 *   - the end is found exactly after the first CR LF "." CR LF of the input
 *     (the CRLF of the DATA command counting as the first CR LF), never
 *     elsewhere, and not at all when there is none;
 *   - the output never holds a bare CR or LF and stays under max_size;
 *   - a chunked run gives the same status, consumption and output as one
 *     buffer.
 * Input layout: byte 0 mode and split seed, bytes 1-2 max_size, the rest is
 * the DATA stream.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "listener/smtp_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_run {
	enum smtp_data_status st;
	size_t consumed;        /* octets consumed in total */
	struct strbuf out;
};

static void check_output(const struct strbuf *out, size_t max);
static void run_data(const char *in, size_t len, int mode, size_t max, uint32_t seed,
                     struct fuzz_run *r);
static void run_bdat(const char *in, size_t len, int mode, size_t max, uint32_t seed);

static void
check_output(const struct strbuf *out, size_t max)
{
	for (size_t i = 0; i < out->len; i++) {
		if (out->data[i] == '\r' && (i + 1 == out->len || out->data[i + 1] != '\n'))
			abort();
		if (out->data[i] == '\n' && (i == 0 || out->data[i - 1] != '\r'))
			abort();
	}
	if (max != 0 && out->len > max)
		abort();
}

/* run_data: feed in chunks drawn from seed (0: one buffer), stop at the end. */
static void
run_data(const char *in, size_t len, int mode, size_t max, uint32_t seed, struct fuzz_run *r)
{
	struct smtp_data_parser p;
	size_t off = 0, consumed;

	smtp_data_init(&p, mode, max);
	memset(r, 0, sizeof(*r));
	r->st = SMTP_DATA_MORE;
	while (off < len) {
		size_t chunk = len - off;

		if (seed != 0) {
			seed = seed * 1103515245u + 12345u;
			chunk = (seed >> 16) % 17;      /* empty chunks too */
			if (chunk > len - off)
				chunk = len - off;
		}
		r->st = smtp_data_feed(&p, in + off, chunk, &consumed, &r->out);
		if (consumed > chunk)
			abort();
		off += consumed;
		if (r->st != SMTP_DATA_MORE)
			break;
		if (consumed != chunk)
			abort();
	}
	r->consumed = off;
	if (smtp_data_bytes(&p) < r->out.len)
		abort();
	check_output(&r->out, max);
}

static void
run_bdat(const char *in, size_t len, int mode, size_t max, uint32_t seed)
{
	struct smtp_bdat_checker c;
	struct strbuf whole = STRBUF_INIT, split = STRBUF_INIT;
	enum smtp_data_status st_whole, st_split;
	int body = (int)(seed & 3);
	size_t off = 0;

	smtp_bdat_init(&c, body, mode, max);
	smtp_bdat_feed(&c, in, len, &whole);
	st_whole = smtp_bdat_finish(&c, &whole);
	smtp_bdat_init(&c, body, mode, max);
	while (off < len) {
		size_t chunk;

		seed = seed * 1103515245u + 12345u;
		chunk = (seed >> 16) % 13;
		if (chunk > len - off)
			chunk = len - off;
		smtp_bdat_feed(&c, in + off, chunk, &split);
		off += chunk;
	}
	st_split = smtp_bdat_finish(&c, &split);
	if (st_whole != st_split || whole.len != split.len ||
	    (whole.len && memcmp(whole.data, split.data, whole.len) != 0))
		abort();
	if (body != SMTP_BODY_BINARYMIME)
		check_output(&whole, max);
	else if (max != 0 && whole.len > max)
		abort();
	if (st_whole == SMTP_DATA_MORE)
		abort();
	strbuf_free(&whole);
	strbuf_free(&split);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_run whole, split;
	const char *in;
	size_t len, max, want_end = 0;
	int mode, has_end = 0;
	uint32_t seed;
	char *virt;

	if (size < 3)
		return 0;
	mode = data[0] & 1 ? SMTP_BARE_NORMALIZE : SMTP_BARE_REJECT;
	seed = (uint32_t)data[0] * 2654435761u | 1u;
	max = (size_t)data[1] | (size_t)data[2] << 8;   /* 0: no limit */
	in = (const char *)data + 3;
	len = size - 3;

	/* The oracle: the first CRLF.CRLF of "\r\n" + input. */
	virt = malloc(len + 2);
	if (virt == NULL)
		return 0;
	memcpy(virt, "\r\n", 2);
	memcpy(virt + 2, in, len);
	{
		const char *m = memmem(virt, len + 2, "\r\n.\r\n", 5);
		if (m != NULL) {
			has_end = 1;
			want_end = (size_t)(m - virt) + 5 - 2;
		}
	}
	free(virt);

	run_data(in, len, mode, max, 0, &whole);
	run_data(in, len, mode, max, seed, &split);
	if (has_end) {
		if (whole.st == SMTP_DATA_MORE || whole.consumed != want_end)
			abort();
	} else {
		if (whole.st != SMTP_DATA_MORE || whole.consumed != len)
			abort();
	}
	if (whole.st != split.st || whole.consumed != split.consumed ||
	    whole.out.len != split.out.len ||
	    (whole.out.len && memcmp(whole.out.data, split.out.data, whole.out.len) != 0))
		abort();
	strbuf_free(&whole.out);
	strbuf_free(&split.out);

	run_bdat(in, len, mode, max, seed);
	return 0;
}

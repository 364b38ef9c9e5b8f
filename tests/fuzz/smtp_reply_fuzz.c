/*
 * smtp_reply_fuzz.c - libFuzzer target for the SMTP client's reply parser
 * (delivery/smtp_reply.h): arbitrary bytes fed in chunk sizes chosen by the
 * input, each complete reply rendered (into buffers of several sizes) and
 * read as an EHLO reply. Invariants: consumed never exceeds the input and
 * is positive for DONE; a reply has a code 100-599, 1-100 lines and at most
 * 64 KiB; its enhanced status matches its class; the rendering is
 * NUL-terminated, inside its buffer, free of control characters and starts
 * with the code; an error is sticky.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "delivery/smtp_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_reply(const struct smtp_reply_parser *p);

static void
check_reply(const struct smtp_reply_parser *p)
{
	static const size_t sizes[] = { 1, 2, 4, 5, 13, 512, 70000 };
	static char buf[70000];
	struct smtp_reply_ehlo e;
	size_t total = 0, len;
	char code[4];

	if (p->code < 100 || p->code > 599 || p->nlines == 0 || p->nlines > SMTP_REPLY_LINES_MAX ||
	    p->bytes > SMTP_REPLY_SIZE_MAX)
		abort();
	if (p->enh[0] != '\0' && p->enh[0] != '0' + p->code / 100)
		abort();
	for (size_t i = 0; i < p->nlines; i++) {
		const char *l = smtp_reply_line(p, i, &len);
		if (l == NULL || len > SMTP_REPLY_LINE_MAX || memchr(l, '\n', len) != NULL ||
		    memchr(l, '\0', len) != NULL)
			abort();
		total += len;
	}
	if (smtp_reply_line(p, p->nlines, &len) != NULL || total > SMTP_REPLY_SIZE_MAX)
		abort();
	snprintf(code, sizeof(code), "%03d", p->code);
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		size_t n;

		memset(buf, 0x55, sizes[k]);
		n = smtp_reply_render(p, buf, sizes[k]);
		if (n >= sizes[k] || buf[n] != '\0' || strlen(buf) != n)
			abort();
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
				abort();
		if (strncmp(buf, code, n < 3 ? n : 3) != 0)
			abort();
	}
	smtp_reply_ehlo(p, &e);
	if (e.ext & ~0xffu)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_reply_parser p;
	size_t off = 0, used, step, k = 0;
	const uint8_t *steps;
	size_t nsteps;
	enum smtp_reply_status st = SMTP_REPLY_MORE;

	if (size < 4)
		return 0;
	/* The first bytes pick the chunk sizes (1-64, cycled); the rest is the stream. */
	nsteps = data[0] % 4 + 1;
	steps = data + 1;
	data += 1 + nsteps;
	size -= 1 + nsteps < size ? 1 + nsteps : size;
	if (size == 0)
		return 0;
	smtp_reply_init(&p);
	while (off < size) {
		step = (size_t)steps[k++ % nsteps] % 64 + 1;
		if (step > size - off)
			step = size - off;
		/* Feed the chunk until it is used up: a DONE leaves the rest for the next call. */
		size_t chunk_off = 0;
		while (chunk_off < step) {
			st = smtp_reply_feed(&p, (const char *)data + off + chunk_off, step - chunk_off, &used);
			if (used > step - chunk_off)
				abort();
			chunk_off += used;
			if (st == SMTP_REPLY_DONE) {
				if (used == 0)
					abort();
				check_reply(&p);
			} else if (st == SMTP_REPLY_ERROR) {
				if (p.err == SMTP_REPLY_OK ||
				    smtp_reply_feed(&p, "250 ok\r\n", 8, &used) != SMTP_REPLY_ERROR || used != 0)
					abort();
				if (smtp_reply_strerror(p.err) == NULL)
					abort();
				goto out;
			} else if (chunk_off != step) {
				abort();        /* MORE takes everything */
			}
		}
		off += step;
	}
out:
	smtp_reply_free(&p);
	return 0;
}

/*
 * control_request.c - the console protocol's request parser and answer
 * framing (control_request.h).
 *
 *   control_request_parse / control_request_free   a line into words
 *   control_answer_frame                           dot-stuffing, terminator
 *
 * Pure functions on caller buffers; the parser never reads past len and
 * refuses what it does not understand with one line of text.
 */
#include "control/control_request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/xalloc.h"

static void words_free(char **v, int n);

static void
words_free(char **v, int n)
{
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void
control_request_free(struct control_request *rq)
{
	if (rq == NULL)
		return;
	words_free(rq->argv, rq->argc);
	rq->argv = NULL;
	rq->argc = 0;
}

int
control_request_parse(const char *line, size_t len, struct control_request *out,
                      char *err, size_t errlen)
{
	char **v = xcalloc(CONTROL_ARGS_MAX + 1, sizeof(*v));
	struct strbuf w = STRBUF_INIT;
	int n = 0;
	size_t i = 0;

	out->argc = 0;
	out->argv = NULL;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len > CONTROL_LINE_MAX) {
		snprintf(err, errlen, "request longer than %d bytes", CONTROL_LINE_MAX);
		goto fail;
	}
	for (size_t k = 0; k < len; k++) {
		unsigned char ch = (unsigned char)line[k];
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
			snprintf(err, errlen, "control character 0x%02x in the request", ch);
			goto fail;
		}
	}
	for (;;) {
		int have = 0;
		while (i < len && (line[i] == ' ' || line[i] == '\t'))
			i++;
		if (i >= len)
			break;
		strbuf_reset(&w);
		while (i < len && line[i] != ' ' && line[i] != '\t') {
			char q = line[i];
			if (q == '"' || q == '\'') {
				size_t start = i++;
				int closed = 0;
				while (i < len) {
					char ch = line[i++];
					if (ch == q) {
						closed = 1;
						break;
					}
					if (q == '"' && ch == '\\' && i < len) {
						char e = line[i++];
						switch (e) {
						case 'n': ch = '\n'; break;
						case 't': ch = '\t'; break;
						case '"': case '\\': ch = e; break;
						default:
							strbuf_putc(&w, '\\');
							ch = e;
							break;
						}
					}
					strbuf_putc(&w, ch);
				}
				if (!closed) {
					snprintf(err, errlen, "unbalanced %c quote at column %zu", q, start + 1);
					goto fail;
				}
				have = 1;
				continue;
			}
			strbuf_putc(&w, q);
			have = 1;
			i++;
		}
		if (!have)
			break;
		if (n == CONTROL_ARGS_MAX) {
			snprintf(err, errlen, "more than %d words in the request", CONTROL_ARGS_MAX);
			goto fail;
		}
		v[n++] = xstrdup(strbuf_cstr(&w));
	}
	strbuf_free(&w);
	out->argc = n;
	out->argv = v;
	return 0;
fail:
	strbuf_free(&w);
	words_free(v, n);
	return -1;
}

void
control_answer_frame(const char *text, size_t len, int status, struct strbuf *out)
{
	size_t i = 0;

	while (i < len) {
		const char *nl = memchr(text + i, '\n', len - i);
		size_t end = nl != NULL ? (size_t)(nl - text) : len;
		if (text[i] == '.')
			strbuf_putc(out, '.');
		strbuf_append(out, text + i, end - i);
		strbuf_putc(out, '\n');
		i = end + 1;
	}
	strbuf_puts(out, status == 0 ? CONTROL_END_OK "\n" : CONTROL_END_ERROR "\n");
}

/*
 * smtp_reply.c - the SMTP client's reply parser (see smtp_reply.h).
 *
 *   smtp_reply_init / smtp_reply_free, smtp_reply_feed, smtp_reply_line,
 *   smtp_reply_render, smtp_reply_strerror, smtp_reply_ehlo
 *
 * The parser keeps its position in struct smtp_reply_parser (the partial
 * line and the lines read so far), so the caller may hand it the input in
 * any chunking. Ownership: the parser owns its text buffer; the caller owns
 * the parser. Errors: a malformed or oversized reply gives SMTP_REPLY_ERROR
 * with p->err; nothing here logs.
 */
#include "delivery/smtp_reply.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static enum smtp_reply_status line_done(struct smtp_reply_parser *p);
static void parse_enhanced(struct smtp_reply_parser *p, const char *text, size_t len);
static size_t enhanced_len(const char *text, size_t len, int cls);
static void start_reply(struct smtp_reply_parser *p);
static enum smtp_reply_status fail(struct smtp_reply_parser *p, enum smtp_reply_err err);

void
smtp_reply_init(struct smtp_reply_parser *p)
{
	memset(p, 0, sizeof(*p));
	strbuf_reset(&p->text);
}

void
smtp_reply_free(struct smtp_reply_parser *p)
{
	strbuf_free(&p->text);
	memset(p, 0, sizeof(*p));
}

static void
start_reply(struct smtp_reply_parser *p)
{
	p->code = 0;
	p->enh[0] = '\0';
	p->nlines = 0;
	p->bytes = 0;
	p->linelen = 0;
	p->done = 0;
	strbuf_reset(&p->text);
}

static enum smtp_reply_status
fail(struct smtp_reply_parser *p, enum smtp_reply_err err)
{
	p->err = err;
	return SMTP_REPLY_ERROR;
}

enum smtp_reply_status
smtp_reply_feed(struct smtp_reply_parser *p, const char *buf, size_t len, size_t *consumed)
{
	size_t used = 0;

	*consumed = 0;
	if (p->err != SMTP_REPLY_OK)
		return SMTP_REPLY_ERROR;
	if (p->done)
		start_reply(p);
	while (used < len) {
		const char *nl = memchr(buf + used, '\n', len - used);
		size_t chunk = nl != NULL ? (size_t)(nl - (buf + used)) : len - used;

		if (memchr(buf + used, '\0', chunk) != NULL) {
			*consumed = used;
			return fail(p, SMTP_REPLY_ERR_NUL);
		}
		/* Room for 998 bytes of text and a CR before the LF. */
		if (p->linelen + chunk > SMTP_REPLY_LINE_MAX - 1) {
			*consumed = used;
			return fail(p, SMTP_REPLY_ERR_LINE_TOO_LONG);
		}
		if (p->bytes + chunk + 1 > SMTP_REPLY_SIZE_MAX) {
			*consumed = used;
			return fail(p, SMTP_REPLY_ERR_TOO_BIG);
		}
		memcpy(p->line + p->linelen, buf + used, chunk);
		p->linelen += chunk;
		p->bytes += chunk;
		used += chunk;
		if (nl == NULL)
			break;
		used++;                 /* the LF */
		p->bytes++;
		if (p->linelen > 0 && p->line[p->linelen - 1] == '\r')
			p->linelen--;
		if (p->linelen > SMTP_REPLY_LINE_MAX - 2) {
			*consumed = used;
			return fail(p, SMTP_REPLY_ERR_LINE_TOO_LONG);
		}
		enum smtp_reply_status st = line_done(p);
		if (st != SMTP_REPLY_MORE) {
			*consumed = used;
			return st;
		}
	}
	*consumed = used;
	return SMTP_REPLY_MORE;
}

/* line_done: one whole line (without its terminator) is in p->line. */
static enum smtp_reply_status
line_done(struct smtp_reply_parser *p)
{
	const char *l = p->line;
	size_t n = p->linelen;
	int code, last;

	if (n < 3 || l[0] < '1' || l[0] > '5' || l[1] < '0' || l[1] > '5' || l[2] < '0' ||
	    l[2] > '9')
		return fail(p, SMTP_REPLY_ERR_CODE);
	if (n == 3 || l[3] == ' ')
		last = 1;
	else if (l[3] == '-')
		last = 0;
	else
		return fail(p, SMTP_REPLY_ERR_CODE);
	code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
	if (p->nlines > 0 && code != p->code)
		return fail(p, SMTP_REPLY_ERR_CODE_CHANGED);
	if (p->nlines + 1 > SMTP_REPLY_LINES_MAX)
		return fail(p, SMTP_REPLY_ERR_TOO_MANY_LINES);
	p->code = code;
	if (n > 4)
		strbuf_append(&p->text, l + 4, n - 4);
	strbuf_putc(&p->text, '\n');
	if (p->nlines == 0)
		parse_enhanced(p, n > 4 ? l + 4 : "", n > 4 ? n - 4 : 0);
	p->nlines++;
	p->linelen = 0;
	if (!last)
		return SMTP_REPLY_MORE;
	p->done = 1;
	return SMTP_REPLY_DONE;
}

/*
 * enhanced_len: the length of an RFC 3463 status "c.sss.ddd" at the start of
 * text (class c equal to cls, 1-3 digits each after it), followed by a space
 * or the end; 0 when there is none.
 */
static size_t
enhanced_len(const char *text, size_t len, int cls)
{
	size_t i = 0, digits;

	if (len < 5 || text[0] != '0' + cls || text[1] != '.')
		return 0;
	i = 2;
	for (int part = 0; part < 2; part++) {
		for (digits = 0; i < len && isdigit((unsigned char)text[i]) && digits < 3; i++)
			digits++;
		if (digits == 0)
			return 0;
		if (part == 0) {
			if (i >= len || text[i] != '.')
				return 0;
			i++;
		}
	}
	if (i < len && text[i] != ' ')
		return 0;
	return i;
}

static void
parse_enhanced(struct smtp_reply_parser *p, const char *text, size_t len)
{
	int cls = p->code / 100;
	size_t n = cls == 2 || cls == 4 || cls == 5 ? enhanced_len(text, len, cls) : 0;

	memcpy(p->enh, text, n);
	p->enh[n] = '\0';
}

const char *
smtp_reply_line(const struct smtp_reply_parser *p, size_t i, size_t *len)
{
	const char *s = strbuf_cstr(&p->text);
	const char *end = s + p->text.len;

	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		if (nl == NULL)
			break;
		if (i == 0) {
			*len = (size_t)(nl - s);
			return s;
		}
		i--;
		s = nl + 1;
	}
	*len = 0;
	return NULL;
}

size_t
smtp_reply_render(const struct smtp_reply_parser *p, char *buf, size_t len)
{
	size_t used = 0, enhlen = strlen(p->enh);
	int n;

	if (len == 0)
		return 0;
	n = snprintf(buf, len, "%03d", p->code);
	used = n < 0 ? 0 : (size_t)n >= len ? len - 1 : (size_t)n;
	for (size_t i = 0; i < p->nlines && used + 1 < len; i++) {
		size_t tl;
		const char *t = smtp_reply_line(p, i, &tl);

		if (t == NULL)
			break;
		/* A continuation repeating the first line's enhanced status drops it. */
		if (i > 0 && enhlen > 0 && tl >= enhlen && memcmp(t, p->enh, enhlen) == 0 &&
		    (tl == enhlen || t[enhlen] == ' ')) {
			t += enhlen;
			tl -= enhlen;
		}
		while (tl > 0 && (*t == ' ' || *t == '\t')) {
			t++;
			tl--;
		}
		if (tl == 0)
			continue;
		buf[used++] = ' ';
		for (size_t k = 0; k < tl && used + 1 < len; k++) {
			unsigned char ch = (unsigned char)t[k];
			buf[used++] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
		}
	}
	/* Do not end inside a UTF-8 sequence when the text was cut. */
	if (used + 1 >= len && used > 0) {
		size_t k = used;
		while (k > 0 && ((unsigned char)buf[k - 1] & 0xc0) == 0x80)
			k--;
		if (k > 0 && ((unsigned char)buf[k - 1] & 0xc0) == 0xc0)
			used = k - 1;
	}
	while (used > 3 && buf[used - 1] == ' ')
		used--;
	buf[used] = '\0';
	return used;
}

const char *
smtp_reply_strerror(enum smtp_reply_err err)
{
	switch (err) {
	case SMTP_REPLY_OK:
		return "no error";
	case SMTP_REPLY_ERR_CODE:
		return "line without a reply code";
	case SMTP_REPLY_ERR_CODE_CHANGED:
		return "reply code changed between lines";
	case SMTP_REPLY_ERR_LINE_TOO_LONG:
		return "reply line too long";
	case SMTP_REPLY_ERR_TOO_BIG:
		return "reply too long";
	case SMTP_REPLY_ERR_TOO_MANY_LINES:
		return "too many reply lines";
	case SMTP_REPLY_ERR_NUL:
		return "NUL byte in reply";
	}
	return "unknown reply error";
}

void
smtp_reply_ehlo(const struct smtp_reply_parser *p, struct smtp_reply_ehlo *out)
{
	static const struct {
		const char *kw;
		unsigned bit;
	} keywords[] = {
		{ "PIPELINING", SMTP_REPLY_EXT_PIPELINING },
		{ "SIZE", SMTP_REPLY_EXT_SIZE },
		{ "8BITMIME", SMTP_REPLY_EXT_8BITMIME },
		{ "SMTPUTF8", SMTP_REPLY_EXT_SMTPUTF8 },
		{ "DSN", SMTP_REPLY_EXT_DSN },
		{ "STARTTLS", SMTP_REPLY_EXT_STARTTLS },
		{ "ENHANCEDSTATUSCODES", SMTP_REPLY_EXT_ENHANCED },
		{ "CHUNKING", SMTP_REPLY_EXT_CHUNKING },
	};

	out->ext = 0;
	out->size_max = 0;
	for (size_t i = 1; i < p->nlines; i++) {
		size_t tl, kwlen = 0;
		const char *t = smtp_reply_line(p, i, &tl);

		if (t == NULL)
			break;
		while (kwlen < tl && t[kwlen] != ' ')
			kwlen++;
		for (size_t k = 0; k < sizeof(keywords) / sizeof(keywords[0]); k++) {
			if (strlen(keywords[k].kw) != kwlen || strncasecmp(t, keywords[k].kw, kwlen) != 0)
				continue;
			out->ext |= keywords[k].bit;
			if (keywords[k].bit == SMTP_REPLY_EXT_SIZE) {
				uint64_t v = 0;
				size_t j = kwlen;
				int ok = 1;

				while (j < tl && t[j] == ' ')
					j++;
				if (j == tl)
					ok = 0;
				for (; j < tl && t[j] != ' '; j++) {
					if (!isdigit((unsigned char)t[j]) ||
					    v > (UINT64_MAX - (uint64_t)(t[j] - '0')) / 10) {
						ok = 0;
						break;
					}
					v = v * 10 + (uint64_t)(t[j] - '0');
				}
				out->size_max = ok ? v : 0;
			}
		}
	}
}

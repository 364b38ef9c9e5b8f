/*
 * smtp_data.c - message content of DATA and BDAT, smuggling-proof.
 *
 *   smtp_data_init / smtp_data_feed / smtp_data_bytes
 *                         the resumable DATA parser: dot-unstuffing, the
 *                         end of data (only CR LF "." CR LF), bare CR / LF,
 *                         NUL, line length and size checks.
 *   smtp_data_strerror    a DATA status -> its reply.
 *   smtp_bdat_init / smtp_bdat_feed / smtp_bdat_finish / smtp_bdat_bytes
 *                         the same content rules for BDAT chunks, without
 *                         dot-unstuffing or an end marker.
 *
 * The parsers keep their whole state in the caller's struct and take input
 * in pieces of any size: the same bytes split anywhere give the same output
 * and status. Content goes to a caller-owned strbuf, always as whole CRLF
 * pairs (a CR is held back until the next octet shows whether it is part of
 * CRLF), so the output never holds a bare CR or LF.
 *
 * How the end is recognised: the state records whether the current line
 * began after a real CRLF (or at the start of the message). Only such a
 * line, holding exactly "." and closed by CR LF, ends the data. A line that
 * began after a bare CR or LF is dot-unstuffed like any other but can never
 * end it, and a dot followed by anything but CR LF (including a bare CR,
 * a NUL or a bare LF) is content.
 */
#include "listener/smtp_parse.h"

#include <string.h>

enum data_state {
	DATA_BOL,               /* at a line begun after a real CRLF or at the start */
	DATA_BOL_SOFT,          /* at a line begun after a bare CR or LF */
	DATA_DOT,               /* DATA_BOL then "." */
	DATA_DOT_CR,            /* DATA_BOL then ".\r" */
	DATA_TEXT,              /* inside a line */
	DATA_CR,                /* inside a line, after a CR */
};

enum data_fault {
	FAULT_BARE = 1u << 0,
	FAULT_NUL = 1u << 1,
	FAULT_LONG = 1u << 2,
	FAULT_BIG = 1u << 3,
};

/* Where content goes, shared by the DATA parser and the BDAT checker. */
struct content_sink {
	unsigned *faults;       /* enum data_fault bits */
	uint64_t *bytes;        /* octets of content so far */
	size_t *line_len;       /* octets of the current line so far */
	size_t max_size;        /* octets allowed; 0 = no limit */
	int mode;               /* enum smtp_bare_lf_mode */
	struct strbuf *out;     /* may be NULL: check only */
};

static void sink_put(struct content_sink *k, const char *data, size_t n, int divisible);
static void sink_text(struct content_sink *k, const char *data, size_t n);
static void sink_eol(struct content_sink *k);
static void sink_bare(struct content_sink *k);
static size_t text_run(const char *in, size_t len);
static enum smtp_data_status faults_status(unsigned faults);

/*
 * sink_put: count n octets of content and append them. Past max_size the
 * message is too big and nothing more is appended; the octets that still
 * fit are (when divisible: text, not a CRLF), so the output is the same
 * however the input was split.
 */
static void
sink_put(struct content_sink *k, const char *data, size_t n, int divisible)
{
	uint64_t before = *k->bytes;

	*k->bytes += n;
	if (*k->faults & FAULT_BIG)
		return;
	if (k->max_size != 0 && *k->bytes > k->max_size) {
		*k->faults |= FAULT_BIG;
		if (!divisible)
			return;
		n = (size_t)(k->max_size - before);
	}
	if (k->out != NULL && n > 0)
		strbuf_append(k->out, data, n);
}

/* sink_text: octets of a line (no CR, LF or NUL among them). */
static void
sink_text(struct content_sink *k, const char *data, size_t n)
{
	*k->line_len += n;
	if (*k->line_len + 2 > SMTP_TEXT_LINE_MAX)
		*k->faults |= FAULT_LONG;
	sink_put(k, data, n, 1);
}

/* sink_eol: the end of a line, written as CRLF. */
static void
sink_eol(struct content_sink *k)
{
	*k->line_len = 0;
	sink_put(k, "\r\n", 2, 0);
}

/* sink_bare: a bare CR or LF: a fault, or a line end in normalize mode. */
static void
sink_bare(struct content_sink *k)
{
	if (k->mode != SMTP_BARE_NORMALIZE)
		*k->faults |= FAULT_BARE;
	sink_eol(k);
}

/* text_run: how many octets from in are ordinary text (not CR, LF, NUL). */
static size_t
text_run(const char *in, size_t len)
{
	size_t i = 0;

	while (i < len && in[i] != '\r' && in[i] != '\n' && in[i] != '\0')
		i++;
	return i;
}

static enum smtp_data_status
faults_status(unsigned faults)
{
	if (faults & FAULT_BIG)
		return SMTP_DATA_BAD_TOO_BIG;
	if (faults & FAULT_NUL)
		return SMTP_DATA_BAD_NUL;
	if (faults & FAULT_BARE)
		return SMTP_DATA_BAD_BARE;
	if (faults & FAULT_LONG)
		return SMTP_DATA_BAD_LINE_TOO_LONG;
	return SMTP_DATA_DONE;
}

const char *
smtp_data_strerror(enum smtp_data_status st, int *smtp_code, const char **enhanced)
{
	int code = 550;
	const char *enh = "5.6.0", *text;

	switch (st) {
	case SMTP_DATA_DONE:
		code = 250;
		enh = "2.0.0";
		text = "OK";
		break;
	case SMTP_DATA_BAD_BARE:
		text = "Message contains bare CR or LF";
		break;
	case SMTP_DATA_BAD_NUL:
		text = "Message contains NUL characters";
		break;
	case SMTP_DATA_BAD_LINE_TOO_LONG:
		text = "Message contains a line longer than 1000 octets";
		break;
	case SMTP_DATA_BAD_TOO_BIG:
		code = 552;
		enh = "5.3.4";
		text = "Message size exceeds fixed limit";
		break;
	default:
		code = 451;
		enh = "4.3.0";
		text = "Message incomplete";
		break;
	}
	if (smtp_code != NULL)
		*smtp_code = code;
	if (enhanced != NULL)
		*enhanced = enh;
	return text;
}

void
smtp_data_init(struct smtp_data_parser *p, enum smtp_bare_lf_mode mode, size_t max_size)
{
	memset(p, 0, sizeof(*p));
	p->state = DATA_BOL;
	p->mode = mode;
	p->max_size = max_size;
}

uint64_t
smtp_data_bytes(const struct smtp_data_parser *p)
{
	return p->bytes;
}

enum smtp_data_status
smtp_data_feed(struct smtp_data_parser *p, const char *in, size_t len,
               size_t *consumed, struct strbuf *out)
{
	struct content_sink k = { &p->faults, &p->bytes, &p->line_len, p->max_size, p->mode, out };
	size_t i = 0, n;
	char ch;

	*consumed = 0;
	if (p->done)
		return faults_status(p->faults);
	while (i < len) {
		ch = in[i];
		switch (p->state) {
		case DATA_BOL:
			if (ch == '.') {
				p->state = DATA_DOT;
				i++;
				continue;
			}
			p->state = DATA_TEXT;
			continue;
		case DATA_BOL_SOFT:
			if (ch == '.')          /* unstuffed, never the end */
				i++;
			p->state = DATA_TEXT;
			continue;
		case DATA_DOT:
			/* the dot was stuffing (or a lone dot): it is dropped */
			p->state = ch == '\r' ? DATA_DOT_CR : DATA_TEXT;
			if (ch == '\r')
				i++;
			continue;
		case DATA_DOT_CR:
			if (ch == '\n') {
				p->done = 1;
				*consumed = i + 1;
				return faults_status(p->faults);
			}
			sink_bare(&k);          /* "." then a bare CR: content */
			p->state = DATA_BOL_SOFT;
			continue;
		case DATA_TEXT:
			if (ch == '\r') {
				p->state = DATA_CR;
				i++;
			} else if (ch == '\n') {
				sink_bare(&k);
				p->state = DATA_BOL_SOFT;
				i++;
			} else if (ch == '\0') {
				p->faults |= FAULT_NUL;
				i++;
			} else {
				n = text_run(in + i, len - i);
				sink_text(&k, in + i, n);
				i += n;
			}
			continue;
		case DATA_CR:
			if (ch == '\n') {
				sink_eol(&k);
				p->state = DATA_BOL;
				i++;
			} else {
				sink_bare(&k);  /* the CR was bare; ch starts a line */
				p->state = DATA_BOL_SOFT;
			}
			continue;
		}
	}
	*consumed = len;
	return SMTP_DATA_MORE;
}

void
smtp_bdat_init(struct smtp_bdat_checker *c, int body, enum smtp_bare_lf_mode mode,
               size_t max_size)
{
	memset(c, 0, sizeof(*c));
	c->body = body;
	c->mode = mode;
	c->max_size = max_size;
}

uint64_t
smtp_bdat_bytes(const struct smtp_bdat_checker *c)
{
	return c->bytes;
}

void
smtp_bdat_feed(struct smtp_bdat_checker *c, const char *in, size_t len, struct strbuf *out)
{
	struct content_sink k = { &c->faults, &c->bytes, &c->line_len, c->max_size, c->mode, out };
	size_t i = 0, n;

	if (c->body == SMTP_BODY_BINARYMIME) {
		sink_put(&k, in, len, 1);
		return;
	}
	while (i < len) {
		if (c->pending_cr) {
			c->pending_cr = 0;
			if (in[i] == '\n') {
				sink_eol(&k);
				i++;
				continue;
			}
			sink_bare(&k);
		}
		if (in[i] == '\r') {
			c->pending_cr = 1;
			i++;
		} else if (in[i] == '\n') {
			sink_bare(&k);
			i++;
		} else if (in[i] == '\0') {
			c->faults |= FAULT_NUL;
			i++;
		} else {
			n = text_run(in + i, len - i);
			sink_text(&k, in + i, n);
			i += n;
		}
	}
}

enum smtp_data_status
smtp_bdat_finish(struct smtp_bdat_checker *c, struct strbuf *out)
{
	struct content_sink k = { &c->faults, &c->bytes, &c->line_len, c->max_size, c->mode, out };

	if (c->body != SMTP_BODY_BINARYMIME) {
		if (c->pending_cr) {
			c->pending_cr = 0;
			sink_bare(&k);
		} else if (c->line_len > 0) {
			sink_eol(&k);   /* an unterminated last line */
		}
	}
	return faults_status(c->faults);
}

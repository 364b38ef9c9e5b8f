/*
 * smtp_reply.h - SMTP replies as a client reads them (RFC 5321 §4.2):
 * a resumable parser, one-line rendering, enhanced status codes (RFC 3463)
 * and the EHLO keywords the outbound client acts on.
 *
 *   smtp_reply_init / smtp_reply_free   set up and release a parser
 *   smtp_reply_feed          consume bytes until one whole reply is read
 *   smtp_reply_line          the text of line i of the reply just read
 *   smtp_reply_render        "250 2.0.0 Ok" style one-line text, bounded
 *   smtp_reply_ehlo          the extensions an EHLO reply advertises
 *
 * Input rules (anything else is SMTP_REPLY_ERROR, which the caller treats as
 * a transient failure of the session, never a crash):
 *   - a line is "ddd" (first digit 2-5 or 1, second 0-5), then "-" (more
 *     lines follow), " " or the end of the line (the last line), then text;
 *   - lines end in CRLF; a bare LF is accepted as a line end (a CR before it
 *     is dropped, a CR elsewhere is kept as text and rendered as a space);
 *   - a NUL byte anywhere is an error;
 *   - every line of a reply carries the same code;
 *   - limits: SMTP_REPLY_LINE_MAX bytes per line (terminator included),
 *     SMTP_REPLY_SIZE_MAX bytes per reply, SMTP_REPLY_LINES_MAX lines.
 *
 * Ownership: the parser owns the reply's text until the next feed after a
 * complete reply (or smtp_reply_free). Nothing here logs or allocates
 * beyond the text buffer (xalloc: never fails).
 */
#ifndef IMPETUS_DELIVERY_SMTP_REPLY_H
#define IMPETUS_DELIVERY_SMTP_REPLY_H

#include <stddef.h>
#include <stdint.h>

#include "lib/strbuf.h"

#define SMTP_REPLY_LINE_MAX  1000       /* bytes of one line, CRLF included */
#define SMTP_REPLY_SIZE_MAX  65536      /* bytes of one reply, all lines */
#define SMTP_REPLY_LINES_MAX 100        /* lines of one reply */
#define SMTP_REPLY_ENH_MAX   16         /* "x.yyy.zzz" plus NUL, with room */

enum smtp_reply_status {
	SMTP_REPLY_MORE,        /* all input consumed, the reply is not complete yet */
	SMTP_REPLY_DONE,        /* a whole reply is ready (code, lines, enh) */
	SMTP_REPLY_ERROR,       /* malformed or over a limit: the stream is unusable */
};

enum smtp_reply_err {
	SMTP_REPLY_OK = 0,
	SMTP_REPLY_ERR_CODE,        /* a line without a valid code and separator */
	SMTP_REPLY_ERR_CODE_CHANGED, /* a continuation line with another code */
	SMTP_REPLY_ERR_LINE_TOO_LONG,
	SMTP_REPLY_ERR_TOO_BIG,     /* SMTP_REPLY_SIZE_MAX */
	SMTP_REPLY_ERR_TOO_MANY_LINES,
	SMTP_REPLY_ERR_NUL,
};

struct smtp_reply_parser {
	/* the reply (valid after SMTP_REPLY_DONE) */
	int code;                       /* 100..599; 0 before the first line */
	char enh[SMTP_REPLY_ENH_MAX];   /* enhanced status of the first line, "" when none */
	size_t nlines;                  /* lines read so far */
	size_t bytes;                   /* raw bytes of the reply so far, terminators included */
	struct strbuf text;             /* each line's text (after "ddd-"), '\n'-terminated */
	/* position */
	char line[SMTP_REPLY_LINE_MAX]; /* the line being read, without its terminator */
	size_t linelen;                 /* bytes in line */
	int done;                       /* the last feed returned DONE: the next starts afresh */
	enum smtp_reply_err err;        /* set with SMTP_REPLY_ERROR; sticky */
};

void smtp_reply_init(struct smtp_reply_parser *p);
void smtp_reply_free(struct smtp_reply_parser *p);

/*
 * smtp_reply_feed: read from buf[0..len) up to the end of one reply.
 * *consumed is the number of bytes used: on DONE the bytes after the reply
 * are left for the next call; on MORE all of them were taken. After ERROR
 * every call returns ERROR again (p->err says why).
 */
enum smtp_reply_status smtp_reply_feed(struct smtp_reply_parser *p, const char *buf, size_t len,
                                       size_t *consumed);

/* smtp_reply_line: the text of line i (< nlines) and its length; NULL past the end. */
const char *smtp_reply_line(const struct smtp_reply_parser *p, size_t i, size_t *len);

/*
 * smtp_reply_render: "ddd text" into buf (len > 0), always NUL-terminated,
 * cut at len - 1 bytes. The lines are joined with a space; an enhanced
 * status repeated at the start of later lines is dropped, control
 * characters become a space, trailing spaces go. Returns the length written.
 */
size_t smtp_reply_render(const struct smtp_reply_parser *p, char *buf, size_t len);

/* smtp_reply_strerror: a short English reason for an enum smtp_reply_err. */
const char *smtp_reply_strerror(enum smtp_reply_err err);

/* EHLO keywords (RFC 5321 §4.1.1.1 and the extension RFCs) the client uses. */
#define SMTP_REPLY_EXT_PIPELINING  0x001u   /* RFC 2920 */
#define SMTP_REPLY_EXT_SIZE        0x002u   /* RFC 1870; the limit in size_max */
#define SMTP_REPLY_EXT_8BITMIME    0x004u   /* RFC 6152 */
#define SMTP_REPLY_EXT_SMTPUTF8    0x008u   /* RFC 6531 */
#define SMTP_REPLY_EXT_DSN         0x010u   /* RFC 3461 */
#define SMTP_REPLY_EXT_STARTTLS    0x020u   /* RFC 3207 */
#define SMTP_REPLY_EXT_ENHANCED    0x040u   /* ENHANCEDSTATUSCODES, RFC 2034 */
#define SMTP_REPLY_EXT_CHUNKING    0x080u   /* RFC 3030 */

struct smtp_reply_ehlo {
	unsigned ext;                   /* SMTP_REPLY_EXT_* */
	uint64_t size_max;              /* bytes, SIZE's argument; 0 = no limit given */
};

/*
 * smtp_reply_ehlo: the keywords of a (2xx) EHLO reply: every line after the
 * first, keyword case-insensitive, unknown keywords ignored. A SIZE whose
 * argument is missing, zero or not a number means "no fixed limit".
 */
void smtp_reply_ehlo(const struct smtp_reply_parser *p, struct smtp_reply_ehlo *out);

#endif

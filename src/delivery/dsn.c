/*
 * dsn.c - delivery status notifications: an RFC 3464 message/delivery-status
 * inside an RFC 3462 multipart/report, marked Auto-Submitted (RFC 3834).
 *
 * Public functions (dsn.h):
 *   dsn_build              the notification message, appended to a strbuf
 *   dsn_status_from_reply  the enhanced status code of an SMTP reply
 *
 * The message: From: Mail Delivery System <MAILER-DAEMON@reporting_mta>,
 * To: <return_path>, Subject (a delay notice when every recipient is
 * "delayed"), Date (UTC), Message-ID <seed.dsn@reporting_mta>, MIME-Version,
 * Auto-Submitted: auto-replied, Content-Type: multipart/report; then three
 * parts: text/plain for people, message/delivery-status, and the original as
 * text/rfc822-headers (its header section) or message/rfc822 (all of it, when
 * ret_full and within max_orig_len). Without an original (orig_len 0) the
 * third part is left out.
 *
 * Line rules: every line ends in CRLF and holds at most 998 octets.
 *   - Text we write from the report (addresses, host names, diagnostics,
 *     ENVID, ORCPT) is cleaned first: control characters (CR, LF, TAB, DEL
 *     and the rest of C0) become a space, runs of spaces one space, ends
 *     trimmed; so a multi-line SMTP reply becomes one line. Bytes >= 0x80
 *     (SMTPUTF8 addresses) pass through; a part holding them is labelled
 *     8bit. ORCPT and ENVID are xtext-decoded (RFC 3461 "+HH") first.
 *   - Header fields and delivery-status fields are folded at spaces before
 *     78 columns where a space allows it; a run without spaces longer than
 *     998 octets is cut and continued after an inserted CRLF SP (so the
 *     unfolded value gains a space at each cut). Text lines wrap the same
 *     way; a recipient's line continues indented four spaces.
 *   - The original keeps its bytes but not its line ends: CRLF, a bare LF and
 *     a bare CR each become CRLF, and a final line end is added if missing.
 *     A line longer than 998 octets is cut into pieces of at most 998; in
 *     the header section each further piece starts with a space (a folded
 *     continuation of the same field), in the body the pieces are plain
 *     lines. Either way the included copy differs from the original there.
 * The MIME boundary is "=_impetus_dsn_" plus the seed (characters outside
 * [A-Za-z0-9-._] become '_'), with "_N" added for the first N >= 1 that makes
 * "--boundary" occur in none of the three parts.
 *
 * Ownership: the report and its strings belong to the caller; dsn_build
 * appends to out and keeps nothing. Errors: dsn_build returns -1 with errno
 * EINVAL for a bad report and appends nothing; it does not log. Allocation
 * never fails (xalloc).
 */
#include "delivery/dsn.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DSN_LINE_SOFT 78                /* octets: fold before this when a space allows */
#define DSN_LINE_HARD 998               /* octets: no line is longer (CRLF not counted) */
#define DSN_SEED_MAX 48                 /* characters of the seed used in the boundary */
#define DSN_TEXT_INDENT "    "          /* continuation of a wrapped text line */

enum dsn_fold {
	DSN_FOLD_HEADER,        /* continuation lines start with the space folded at */
	DSN_FOLD_TEXT,          /* the space is dropped, continuations are indented */
	DSN_FOLD_PROSE,         /* the space is dropped, continuations are not indented */
};

static int dsn_report_valid(const struct dsn_report *r, time_t now);
static int dsn_status_valid(const char *s);
static int dsn_action_known(const char *a);
static int dsn_date_ok(time_t t);
static int dsn_nonempty(const char *s);
static void dsn_put_clean(struct strbuf *sb, const char *s, size_t len);
static void dsn_put_xtext_clean(struct strbuf *sb, const char *s);
static void dsn_put_token(struct strbuf *sb, const char *s, const char *also);
static void dsn_put_folded(struct strbuf *out, const char *s, size_t len, size_t min_break,
                           enum dsn_fold mode);
static void dsn_put_field(struct strbuf *out, const char *name, const char *prefix,
                          const char *value);
static void dsn_put_line(struct strbuf *out, const struct strbuf *line, enum dsn_fold mode,
                         size_t min_break);
static void dsn_put_date(struct strbuf *sb, time_t t);
static void dsn_put_original(struct strbuf *out, const char *orig, size_t len,
                             int headers_only);
static void dsn_put_long_line(struct strbuf *out, const char *s, size_t len, int header);
static void dsn_build_text(struct strbuf *out, const struct dsn_report *r, int all_delayed,
                           int all_success, int capped);
static void dsn_build_status(struct strbuf *out, const struct dsn_report *r);
static void dsn_choose_boundary(struct strbuf *b, const char *seed,
                                const struct strbuf *const *parts, size_t nparts);
static int dsn_has_8bit(const char *s, size_t len);

static const char dsn_days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
static const char dsn_months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

static int
dsn_nonempty(const char *s)
{
	return s != NULL && *s != '\0';
}

static int
dsn_action_known(const char *a)
{
	static const char *const known[] = { "failed", "delayed", "delivered", "relayed",
		                             "expanded" };

	if (a == NULL)
		return 0;
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(a, known[i]) == 0)
			return 1;
	return 0;
}

/* dsn_status_valid: "c.s.d" with c one of 2, 4, 5 and 1-3 digits in s and d. */
static int
dsn_status_valid(const char *s)
{
	if (s == NULL || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return 0;
	s += 2;
	for (int part = 0; part < 2; part++) {
		int n = 0;

		while (isdigit((unsigned char)*s) && n < 4) {
			s++;
			n++;
		}
		if (n < 1 || n > 3)
			return 0;
		if (part == 0 && *s++ != '.')
			return 0;
	}
	return *s == '\0';
}

static int
dsn_date_ok(time_t t)
{
	struct tm tm;

	return gmtime_r(&t, &tm) != NULL && tm.tm_year >= 0 && tm.tm_year <= 9999 - 1900;
}

static int
dsn_report_valid(const struct dsn_report *r, time_t now)
{
	if (r == NULL || !dsn_nonempty(r->reporting_mta) || !dsn_nonempty(r->return_path) ||
	    !dsn_nonempty(r->message_id_seed) || r->rcpts == NULL || r->nrcpt == 0 ||
	    (r->orig_len > 0 && r->orig == NULL))
		return 0;
	if (!dsn_date_ok(now) || (r->arrival != 0 && !dsn_date_ok(r->arrival)))
		return 0;
	for (size_t i = 0; i < r->nrcpt; i++) {
		const struct dsn_rcpt *rc = &r->rcpts[i];

		if (!dsn_nonempty(rc->rcpt) || !dsn_action_known(rc->action) ||
		    !dsn_status_valid(rc->status))
			return 0;
		if (rc->last_attempt != 0 && !dsn_date_ok(rc->last_attempt))
			return 0;
	}
	return 1;
}

/* dsn_put_clean: s (len bytes) with controls as spaces, space runs as one, ends trimmed. */
static void
dsn_put_clean(struct strbuf *sb, const char *s, size_t len)
{
	int pending = 0, any = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c <= 0x20 || c == 0x7f) {
			pending = any;
			continue;
		}
		if (pending)
			strbuf_putc(sb, ' ');
		pending = 0;
		strbuf_putc(sb, (char)c);
		any = 1;
	}
}

/* dsn_put_xtext_clean: s with "+HH" decoded (RFC 3461 xtext), then cleaned. */
static void
dsn_put_xtext_clean(struct strbuf *sb, const char *s)
{
	struct strbuf dec = STRBUF_INIT;

	for (const char *p = s; *p; p++) {
		if (p[0] == '+' && isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2])) {
			char hex[3] = { p[1], p[2], '\0' };

			strbuf_putc(&dec, (char)strtol(hex, NULL, 16));
			p += 2;
		} else {
			strbuf_putc(&dec, *p);
		}
	}
	dsn_put_clean(sb, dec.data ? dec.data : "", dec.len);
	strbuf_free(&dec);
}

/* dsn_put_token: s with every byte outside [A-Za-z0-9] and also as '_'. */
static void
dsn_put_token(struct strbuf *sb, const char *s, const char *also)
{
	for (const char *p = s; *p; p++) {
		unsigned char c = (unsigned char)*p;

		strbuf_putc(sb, (c < 0x80 && (isalnum(c) || strchr(also, c))) ? (char)c : '_');
	}
}

/*
 * dsn_put_folded: one logical line (no CR or LF in it, no space runs) as
 * physical lines of at most DSN_LINE_HARD octets, broken at spaces before
 * DSN_LINE_SOFT where possible; never at a space before offset min_break.
 */
static void
dsn_put_folded(struct strbuf *out, const char *s, size_t len, size_t min_break,
               enum dsn_fold mode)
{
	size_t start = 0, col = 0;

	while (start < len) {
		size_t rest = len - start;
		size_t soft = col < DSN_LINE_SOFT ? DSN_LINE_SOFT - col : 0;
		size_t hard = DSN_LINE_HARD - col;
		size_t brk = 0;

		if (rest <= soft)
			break;
		for (size_t p = start + soft; p > start; p--) {
			if (s[p] == ' ' && p >= min_break) {
				brk = p;
				break;
			}
		}
		for (size_t p = start + soft + 1; brk == 0 && p < len && p - start <= hard; p++)
			if (s[p] == ' ' && p >= min_break)
				brk = p;
		if (brk == 0) {
			if (rest <= hard)
				break;
			/* No space to fold at: cut, and continue after an inserted one. */
			strbuf_append(out, s + start, hard);
			strbuf_puts(out, "\r\n");
			start += hard;
			col = 0;
			if (mode == DSN_FOLD_HEADER) {
				strbuf_putc(out, ' ');
				col = 1;
			}
		} else {
			strbuf_append(out, s + start, brk - start);
			strbuf_puts(out, "\r\n");
			col = 0;
			if (mode == DSN_FOLD_HEADER)
				start = brk;    /* the space starts the continuation line */
			else
				start = brk + 1;
		}
		if (mode == DSN_FOLD_TEXT) {
			strbuf_puts(out, DSN_TEXT_INDENT);
			col = strlen(DSN_TEXT_INDENT);
		}
	}
	strbuf_append(out, s + start, len - start);
	strbuf_puts(out, "\r\n");
}

static void
dsn_put_line(struct strbuf *out, const struct strbuf *line, enum dsn_fold mode, size_t min_break)
{
	dsn_put_folded(out, line->data ? line->data : "", line->len, min_break, mode);
}

/* dsn_put_field: "Name: prefix value" folded, value cleaned. */
static void
dsn_put_field(struct strbuf *out, const char *name, const char *prefix, const char *value)
{
	struct strbuf line = STRBUF_INIT;

	strbuf_printf(&line, "%s: %s", name, prefix ? prefix : "");
	dsn_put_clean(&line, value, strlen(value));
	dsn_put_line(out, &line, DSN_FOLD_HEADER, strlen(name) + 2);
	strbuf_free(&line);
}

/* dsn_put_date: RFC 5322 date-time in UTC; t already checked by dsn_date_ok. */
static void
dsn_put_date(struct strbuf *sb, time_t t)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strbuf_printf(sb, "%s, %02d %s %04d %02d:%02d:%02d +0000", dsn_days[tm.tm_wday],
	              tm.tm_mday, dsn_months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
	              tm.tm_sec);
}

/* dsn_put_long_line: one line of the original, cut into pieces of at most 998 octets. */
static void
dsn_put_long_line(struct strbuf *out, const char *s, size_t len, int header)
{
	size_t room = DSN_LINE_HARD;

	while (len > room) {
		strbuf_append(out, s, room);
		strbuf_puts(out, "\r\n");
		s += room;
		len -= room;
		if (header) {
			strbuf_putc(out, ' ');
			room = DSN_LINE_HARD - 1;
		}
	}
	strbuf_append(out, s, len);
	strbuf_puts(out, "\r\n");
}

/* dsn_put_original: the original (or its header section) with CRLF line ends. */
static void
dsn_put_original(struct strbuf *out, const char *orig, size_t len, int headers_only)
{
	int in_headers = 1;
	size_t i = 0;

	while (i < len) {
		size_t end = i, next;

		while (end < len && orig[end] != '\r' && orig[end] != '\n')
			end++;
		next = end;
		if (next < len)
			next += (orig[next] == '\r' && next + 1 < len && orig[next + 1] == '\n') ? 2 : 1;
		if (in_headers && end == i) {
			in_headers = 0;
			if (headers_only)
				return;
			strbuf_puts(out, "\r\n");
		} else {
			dsn_put_long_line(out, orig + i, end - i, in_headers);
		}
		i = next;
	}
}

static int
dsn_has_8bit(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] >= 0x80)
			return 1;
	return 0;
}

/* dsn_build_text: the part for people: what happened, then one line per recipient. */
static void
dsn_build_text(struct strbuf *out, const struct dsn_report *r, int all_delayed,
               int all_success, int capped)
{
	static const struct {
		const char *action;     /* NULL: any other action */
		const char *heading;
	} groups[] = {
		{ "failed", "Delivery to the following recipients failed permanently:" },
		{ "delayed", "Delivery to the following recipients has been delayed; the mail "
		             "system will keep trying:" },
		{ NULL, "Delivery report for the following recipients:" },
	};
	struct strbuf line = STRBUF_INIT;

	strbuf_puts(&line, "This is the mail system at host ");
	dsn_put_clean(&line, r->reporting_mta, strlen(r->reporting_mta));
	strbuf_putc(&line, '.');
	dsn_put_line(out, &line, DSN_FOLD_PROSE, 0);
	strbuf_puts(out, "\r\n");
	strbuf_reset(&line);
	if (all_delayed)
		strbuf_puts(&line, "Your message could not be delivered yet to one or more "
		                   "recipients. The mail system will keep trying to deliver it; "
		                   "you do not need to send it again.");
	else if (all_success)
		strbuf_puts(&line, "This is the delivery status report you asked for.");
	else
		strbuf_puts(&line, "I'm sorry to have to inform you that your message could not "
		                   "be delivered to one or more recipients. The details are below.");
	dsn_put_line(out, &line, DSN_FOLD_PROSE, 0);
	strbuf_puts(out, "\r\n");
	strbuf_reset(&line);
	strbuf_puts(&line, "For further assistance, please send mail to postmaster. If you do "
	                   "so, please include this problem report.");
	dsn_put_line(out, &line, DSN_FOLD_PROSE, 0);
	for (size_t g = 0; g < sizeof(groups) / sizeof(groups[0]); g++) {
		int shown = 0;

		for (size_t i = 0; i < r->nrcpt; i++) {
			const struct dsn_rcpt *rc = &r->rcpts[i];
			int in_group = groups[g].action ? strcmp(rc->action, groups[g].action) == 0
			                                : (strcmp(rc->action, "failed") != 0 &&
			                                   strcmp(rc->action, "delayed") != 0);

			if (!in_group)
				continue;
			if (!shown) {
				strbuf_puts(out, "\r\n");
				strbuf_reset(&line);
				strbuf_puts(&line, groups[g].heading);
				dsn_put_line(out, &line, DSN_FOLD_PROSE, 0);
				strbuf_puts(out, "\r\n");
				shown = 1;
			}
			strbuf_reset(&line);
			strbuf_putc(&line, '<');
			dsn_put_clean(&line, rc->rcpt, strlen(rc->rcpt));
			strbuf_puts(&line, ">: ");
			if (dsn_nonempty(rc->remote_mta)) {
				strbuf_puts(&line, "host ");
				dsn_put_clean(&line, rc->remote_mta, strlen(rc->remote_mta));
				strbuf_puts(&line, dsn_nonempty(rc->diagnostic) ? " said: " : " ");
			}
			if (dsn_nonempty(rc->diagnostic))
				dsn_put_clean(&line, rc->diagnostic, strlen(rc->diagnostic));
			else
				strbuf_printf(&line, "%s (status %s)", rc->action, rc->status);
			dsn_put_line(out, &line, DSN_FOLD_TEXT, 0);
		}
	}
	if (capped) {
		strbuf_puts(out, "\r\n");
		strbuf_reset(&line);
		strbuf_printf(&line, "The original message was larger than %zu bytes; only its "
		                     "headers are included below.", r->max_orig_len);
		dsn_put_line(out, &line, DSN_FOLD_PROSE, 0);
	}
	strbuf_free(&line);
}

/* dsn_build_status: the message/delivery-status body (RFC 3464 §2). */
static void
dsn_build_status(struct strbuf *out, const struct dsn_report *r)
{
	struct strbuf value = STRBUF_INIT;

	dsn_put_field(out, "Reporting-MTA", "dns; ", r->reporting_mta);
	if (dsn_nonempty(r->envid)) {
		dsn_put_xtext_clean(&value, r->envid);
		dsn_put_field(out, "Original-Envelope-Id", NULL, value.data ? value.data : "");
	}
	if (r->arrival != 0) {
		strbuf_reset(&value);
		dsn_put_date(&value, r->arrival);
		dsn_put_field(out, "Arrival-Date", NULL, value.data);
	}
	for (size_t i = 0; i < r->nrcpt; i++) {
		const struct dsn_rcpt *rc = &r->rcpts[i];

		strbuf_puts(out, "\r\n");
		if (dsn_nonempty(rc->orcpt)) {
			strbuf_reset(&value);
			dsn_put_xtext_clean(&value, rc->orcpt);
			dsn_put_field(out, "Original-Recipient",
			              strchr(strbuf_cstr(&value), ';') ? NULL : "rfc822;",
			              strbuf_cstr(&value));
		}
		dsn_put_field(out, "Final-Recipient", "rfc822; ", rc->rcpt);
		dsn_put_field(out, "Action", NULL, rc->action);
		dsn_put_field(out, "Status", NULL, rc->status);
		if (dsn_nonempty(rc->remote_mta))
			dsn_put_field(out, "Remote-MTA", "dns; ", rc->remote_mta);
		if (dsn_nonempty(rc->diagnostic))
			dsn_put_field(out, "Diagnostic-Code", "smtp; ", rc->diagnostic);
		if (rc->last_attempt != 0) {
			strbuf_reset(&value);
			dsn_put_date(&value, rc->last_attempt);
			dsn_put_field(out, "Last-Attempt-Date", NULL, value.data);
		}
	}
	strbuf_free(&value);
}

/* dsn_choose_boundary: the boundary from the seed, unique against the parts. */
static void
dsn_choose_boundary(struct strbuf *b, const char *seed, const struct strbuf *const *parts,
                    size_t nparts)
{
	struct strbuf base = STRBUF_INIT, delim = STRBUF_INIT;
	char cut[DSN_SEED_MAX + 1];

	snprintf(cut, sizeof(cut), "%s", seed);
	strbuf_puts(&base, "=_impetus_dsn_");
	dsn_put_token(&base, cut, "-._");
	for (unsigned long n = 0;; n++) {
		int found = 0;

		strbuf_reset(b);
		strbuf_puts(b, strbuf_cstr(&base));
		if (n > 0)
			strbuf_printf(b, "_%lu", n);
		strbuf_reset(&delim);
		strbuf_printf(&delim, "--%s", strbuf_cstr(b));
		for (size_t i = 0; i < nparts && !found; i++)
			found = parts[i]->len > 0 &&
			        memmem(parts[i]->data, parts[i]->len, delim.data, delim.len) != NULL;
		if (!found)
			break;
	}
	strbuf_free(&base);
	strbuf_free(&delim);
}

int
dsn_build(const struct dsn_report *r, struct strbuf *out)
{
	struct strbuf text = STRBUF_INIT, status = STRBUF_INIT, orig = STRBUF_INIT;
	struct strbuf boundary = STRBUF_INIT, line = STRBUF_INIT;
	time_t now = (r != NULL && r->now != 0) ? r->now : time(NULL);
	int all_delayed = 1, all_success = 1, headers_only, capped, eightbit;

	if (out == NULL || !dsn_report_valid(r, now)) {
		errno = EINVAL;
		return -1;
	}
	for (size_t i = 0; i < r->nrcpt; i++) {
		const char *a = r->rcpts[i].action;

		all_delayed &= strcmp(a, "delayed") == 0;
		all_success &= strcmp(a, "failed") != 0 && strcmp(a, "delayed") != 0;
	}
	capped = r->ret_full && r->max_orig_len != 0 && r->orig_len > r->max_orig_len;
	headers_only = !r->ret_full || capped;

	dsn_build_text(&text, r, all_delayed, all_success, capped && r->orig_len > 0);
	dsn_build_status(&status, r);
	if (r->orig_len > 0)
		dsn_put_original(&orig, r->orig, r->orig_len, headers_only);
	const struct strbuf *const parts[] = { &text, &status, &orig };
	dsn_choose_boundary(&boundary, r->message_id_seed, parts, 3);
	eightbit = dsn_has_8bit(strbuf_cstr(&text), text.len) ||
	           dsn_has_8bit(strbuf_cstr(&status), status.len) ||
	           dsn_has_8bit(strbuf_cstr(&orig), orig.len);

	/* The message header. */
	strbuf_puts(&line, "From: Mail Delivery System <MAILER-DAEMON@");
	dsn_put_token(&line, r->reporting_mta, "-._[]:");
	strbuf_putc(&line, '>');
	dsn_put_line(out, &line, DSN_FOLD_HEADER, 6);
	strbuf_reset(&line);
	strbuf_puts(&line, "To: <");
	dsn_put_clean(&line, r->return_path, strlen(r->return_path));
	strbuf_putc(&line, '>');
	dsn_put_line(out, &line, DSN_FOLD_HEADER, 4);
	dsn_put_field(out, "Subject", NULL,
	              all_delayed ? "Delivery Status Notification (Delay)"
	                          : all_success ? "Successful Mail Delivery Report"
	                                        : "Undelivered Mail Returned to Sender");
	strbuf_reset(&line);
	dsn_put_date(&line, now);
	dsn_put_field(out, "Date", NULL, line.data);
	strbuf_reset(&line);
	strbuf_puts(&line, "Message-ID: <");
	dsn_put_token(&line, r->message_id_seed, "!#$%&'*+-/=?^_`{|}~.");
	strbuf_puts(&line, ".dsn@");
	dsn_put_token(&line, r->reporting_mta, "-._[]:");
	strbuf_putc(&line, '>');
	dsn_put_line(out, &line, DSN_FOLD_HEADER, 12);
	strbuf_puts(out, "MIME-Version: 1.0\r\n");
	strbuf_puts(out, "Auto-Submitted: auto-replied\r\n");
	strbuf_reset(&line);
	strbuf_printf(&line, "Content-Type: multipart/report; report-type=delivery-status; "
	                     "boundary=\"%s\"", boundary.data);
	dsn_put_line(out, &line, DSN_FOLD_HEADER, 14);
	strbuf_printf(out, "Content-Transfer-Encoding: %s\r\n", eightbit ? "8bit" : "7bit");
	strbuf_puts(out, "\r\nThis is a MIME-encapsulated message.\r\n");

	/* Part 1: for people. */
	strbuf_printf(out, "\r\n--%s\r\n", boundary.data);
	strbuf_printf(out, "Content-Description: Notification\r\n"
	                   "Content-Type: text/plain; charset=%s\r\n",
	              dsn_has_8bit(strbuf_cstr(&text), text.len) ? "utf-8" : "us-ascii");
	if (dsn_has_8bit(strbuf_cstr(&text), text.len))
		strbuf_puts(out, "Content-Transfer-Encoding: 8bit\r\n");
	strbuf_puts(out, "\r\n");
	strbuf_append(out, strbuf_cstr(&text), text.len);

	/* Part 2: for programs. */
	strbuf_printf(out, "\r\n--%s\r\n", boundary.data);
	strbuf_puts(out, "Content-Description: Delivery report\r\n"
	                 "Content-Type: message/delivery-status\r\n");
	if (dsn_has_8bit(strbuf_cstr(&status), status.len))
		strbuf_puts(out, "Content-Transfer-Encoding: 8bit\r\n");
	strbuf_puts(out, "\r\n");
	strbuf_append(out, strbuf_cstr(&status), status.len);

	/* Part 3: the original, or its header section. */
	if (r->orig_len > 0) {
		strbuf_printf(out, "\r\n--%s\r\n", boundary.data);
		strbuf_printf(out, "Content-Description: %s\r\nContent-Type: %s\r\n",
		              headers_only ? "Undelivered Message Headers" : "Undelivered Message",
		              headers_only ? "text/rfc822-headers" : "message/rfc822");
		if (dsn_has_8bit(strbuf_cstr(&orig), orig.len))
			strbuf_puts(out, "Content-Transfer-Encoding: 8bit\r\n");
		strbuf_puts(out, "\r\n");
		strbuf_append(out, strbuf_cstr(&orig), orig.len);
	}
	strbuf_printf(out, "\r\n--%s--\r\n", boundary.data);

	strbuf_free(&text);
	strbuf_free(&status);
	strbuf_free(&orig);
	strbuf_free(&boundary);
	strbuf_free(&line);
	return 0;
}

const char *
dsn_status_from_reply(const char *reply, char *buf, size_t len)
{
	const unsigned char *p = (const unsigned char *)reply;
	unsigned subject = 0, detail = 0;
	int cls;

	if (buf == NULL || len == 0)
		return buf;
	if (p == NULL || !isdigit(p[0]) || !isdigit(p[1]) || !isdigit(p[2]) ||
	    (p[3] != '\0' && p[3] != ' ' && p[3] != '-' && p[3] != '\r' && p[3] != '\n') ||
	    (p[0] != '2' && p[0] != '4' && p[0] != '5')) {
		snprintf(buf, len, "4.0.0");
		return buf;
	}
	cls = p[0] - '0';
	p += 3;
	if (*p == ' ' || *p == '-')
		p++;
	while (*p == ' ' || *p == '\t')
		p++;
	/* "c.sss.ddd" whose class is the reply's, then the end of a word. */
	if (p[0] == '0' + cls && p[1] == '.') {
		const unsigned char *q = p + 2;
		int n = 0;

		for (subject = 0; isdigit(*q) && n < 4; q++, n++)
			subject = subject * 10 + (unsigned)(*q - '0');
		if (n >= 1 && n <= 3 && *q == '.') {
			q++;
			for (n = 0, detail = 0; isdigit(*q) && n < 4; q++, n++)
				detail = detail * 10 + (unsigned)(*q - '0');
			if (n >= 1 && n <= 3 &&
			    (*q == '\0' || *q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')) {
				snprintf(buf, len, "%d.%u.%u", cls, subject, detail);
				return buf;
			}
		}
	}
	snprintf(buf, len, "%d.0.0", cls);
	return buf;
}

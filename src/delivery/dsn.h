/*
 * dsn.h - delivery status notifications (RFC 3464 in an RFC 3462
 * multipart/report): the bounce or delay message sent to the original sender.
 *
 *   dsn_build              the whole notification message into a strbuf
 *   dsn_status_from_reply  the enhanced status code (RFC 3463) of an SMTP reply
 *
 * The caller owns every string in the report; dsn_build copies what it needs
 * into out and keeps nothing. The caller never bounces a null sender, sends
 * the result with MAIL FROM:<> and, when the report holds 8-bit bytes
 * (SMTPUTF8 addresses, an 8-bit original), with BODY=8BITMIME / SMTPUTF8.
 */
#ifndef IMPETUS_DELIVERY_DSN_H
#define IMPETUS_DELIVERY_DSN_H

#include <stddef.h>
#include <time.h>

#include "lib/strbuf.h"

#define DSN_STATUS_MAX 16               /* bytes for dsn_status_from_reply's buffer */

struct dsn_rcpt {
	const char *rcpt;                 /* final recipient address */
	const char *orcpt;                /* DSN ORCPT as given ("rfc822;x@y", xtext), or NULL */
	const char *action;               /* "failed" or "delayed" (or "delivered", "relayed", "expanded") */
	const char *status;               /* enhanced status "5.1.1" */
	const char *remote_mta;           /* the host that answered (name or IP), or NULL */
	const char *diagnostic;           /* the reply, e.g. "550 5.1.1 <x@y.test>: user unknown" (becomes "smtp; …"), or NULL */
	time_t last_attempt;              /* seconds since the epoch; 0 = none */
};

struct dsn_report {
	const char *reporting_mta;        /* our host name (also the From: domain: MAILER-DAEMON@…) */
	const char *return_path;          /* the original MAIL FROM: the bounce's To:; never "" */
	const char *envid;                /* original ENVID (xtext) or NULL */
	time_t arrival;                   /* original reception time, seconds since the epoch; 0 = unknown */
	time_t now;                       /* report time (Date:), seconds since the epoch; 0 = time(NULL) */
	const char *message_id_seed;      /* unique text for Message-ID and the MIME boundary (e.g. the batch id) */
	int ret_full;                     /* 1: include the whole original (message/rfc822); 0: headers only (text/rfc822-headers) */
	const char *orig;                 /* the original message (headers + body, CRLF lines), or NULL */
	size_t orig_len;                  /* bytes of orig; 0 = no original part */
	size_t max_orig_len;              /* bytes: cap on the included original when ret_full; 0 = no cap (over the cap: headers only) */
	const struct dsn_rcpt *rcpts;     /* the recipients reported, in this order */
	size_t nrcpt;                     /* entries in rcpts, at least 1 */
};

/*
 * dsn_build: append the whole notification (RFC 5322 headers and the
 * multipart/report body) to out. Every line ends in CRLF and holds at most
 * 998 octets. 0, or -1 with errno EINVAL for a bad report (a missing field,
 * an unknown action, a malformed status); nothing is appended then.
 */
int dsn_build(const struct dsn_report *r, struct strbuf *out);

/*
 * dsn_status_from_reply: the enhanced status code of an SMTP reply text
 * ("550 5.1.1 ..." -> "5.1.1") when its class agrees with the reply code,
 * else one derived from the code's class ("5.0.0", "4.0.0", "2.0.0"); for
 * NULL, code 0, another class or unparsable text "4.0.0". Writes into buf
 * (len >= DSN_STATUS_MAX) and returns buf.
 */
const char *dsn_status_from_reply(const char *reply, char *buf, size_t len);

#endif

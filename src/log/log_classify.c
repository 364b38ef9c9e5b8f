/*
 * log_classify.c - bounce classification: which of Momentum's codes (10
 * invalid recipient, 21 DNS failure, 22 mailbox full, …) an SMTP reply or
 * internal reason belongs to.
 *
 * Public functions (log_format.h):
 *   log_classify_builtin   the built-in rule table
 *   log_classify           smtp_error_classify's providers, then the table
 *   log_classify_name      a code's name
 *
 * The built-in classifier, in order:
 *   1. text rules: a case-insensitive substring of the reply, for the reply
 *      classes the rule names (4xx, 5xx, or a text without a code); the
 *      first match wins, so specific phrases come before general ones.
 *      Addresses in angle brackets are blanked first, so that
 *      <spam.team@example.com> does not read as a spam block;
 *   2. enhanced status codes (RFC 3463 "5.1.1") after the reply code;
 *   3. fallback: 4xx is 70 (transient failure), 5.0.0 is 40 (generic
 *      bounce), anything else 1 (undetermined).
 * docs/logs.md lists the table. Pure functions; safe on any thread.
 */
#include "log/log_format.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <impetus/hooks/core/smtp_error_classify.h>

enum {
	CL_4XX = 1u << 0,       /* a 4xx reply */
	CL_5XX = 1u << 1,       /* a 5xx reply */
	CL_NONE = 1u << 2,      /* a text without a reply code */
	CL_ANY = CL_4XX | CL_5XX | CL_NONE,
	CL_HARD = CL_5XX | CL_NONE,
};

struct classify_text_rule {
	unsigned when;          /* CL_* classes the rule applies to */
	const char *text;       /* substring, matched case-insensitively */
	int code;               /* classification */
};

struct classify_status_rule {
	int cls;                /* 4 or 5: the status class */
	int subject;            /* the status subject (x.SUBJECT.y) */
	int detail;             /* the detail (x.y.DETAIL), -1 = any */
	int code;               /* classification */
};

#define CLASSIFY_TEXT_MAX 1024     /* bytes of a reply the text rules look at */

static int reply_class(const char *s, const char **rest);
static void fold_text(const char *s, char *out, size_t len);
static int parse_status(const char *s, int *cls, int *subject, int *detail);

static const struct classify_text_rule classify_text_rules[] = {
	/* Our own reasons ([internal] replies, MOMENTUM.md §5.2). */
	{ CL_ANY, "null mx", LOG_BC_INVALID_RECIPIENT },
	{ CL_ANY, "discarded by policy", LOG_BC_ADMIN_FAILURE },
	{ CL_ANY, "manually purged", LOG_BC_ADMIN_FAILURE },
	{ CL_ANY, "manually delayed", LOG_BC_ADMIN_FAILURE },
	{ CL_ANY, "private/loopback address", LOG_BC_ADMIN_FAILURE },
	{ CL_ANY, "exceeded max time", LOG_BC_TIMEOUT },
	{ CL_ANY, "exceeded max retries", LOG_BC_TIMEOUT },
	{ CL_ANY, "message expired", LOG_BC_TIMEOUT },
	{ CL_ANY, "delivery time expired", LOG_BC_TIMEOUT },
	{ CL_ANY, "timed out", LOG_BC_TIMEOUT },
	{ CL_ANY, "timeout", LOG_BC_TIMEOUT },
	{ CL_ANY, "no banner", LOG_BC_TIMEOUT },
	{ CL_ANY, "no mail from response", LOG_BC_TIMEOUT },
	{ CL_ANY, "no rcpt to response", LOG_BC_TIMEOUT },
	{ CL_ANY, "no data response", LOG_BC_TIMEOUT },
	{ CL_ANY, "no body response", LOG_BC_TIMEOUT },
	{ CL_ANY, "no rset response", LOG_BC_TIMEOUT },
	/* Relaying. */
	{ CL_ANY, "relaying denied", LOG_BC_RELAYING_DENIED },
	{ CL_ANY, "relay denied", LOG_BC_RELAYING_DENIED },
	{ CL_ANY, "relay access denied", LOG_BC_RELAYING_DENIED },
	{ CL_ANY, "relaying not permitted", LOG_BC_RELAYING_DENIED },
	{ CL_ANY, "relay not permitted", LOG_BC_RELAYING_DENIED },
	{ CL_ANY, "relaying not allowed", LOG_BC_RELAYING_DENIED },
	{ CL_ANY, "relay not allowed", LOG_BC_RELAYING_DENIED },
	{ CL_ANY, "relaying prohibited", LOG_BC_RELAYING_DENIED },
	{ CL_ANY, "not permitted to relay", LOG_BC_RELAYING_DENIED },
	{ CL_ANY, "unable to relay", LOG_BC_RELAYING_DENIED },
	{ CL_ANY, "we do not relay", LOG_BC_RELAYING_DENIED },
	/* Mailbox full, before "size limit" and "does not exist". */
	{ CL_ANY, "mailbox full", LOG_BC_MAILBOX_FULL },
	{ CL_ANY, "mailbox is full", LOG_BC_MAILBOX_FULL },
	{ CL_ANY, "mail box full", LOG_BC_MAILBOX_FULL },
	{ CL_ANY, "mailfolder is full", LOG_BC_MAILBOX_FULL },
	{ CL_ANY, "mailbox has exceeded", LOG_BC_MAILBOX_FULL },
	{ CL_ANY, "mailbox size limit", LOG_BC_MAILBOX_FULL },
	{ CL_ANY, "quota", LOG_BC_MAILBOX_FULL },
	{ CL_ANY, "storage limit", LOG_BC_MAILBOX_FULL },
	{ CL_ANY, "user is over", LOG_BC_MAILBOX_FULL },
	/* Too large. */
	{ CL_ANY, "too large", LOG_BC_TOO_LARGE },
	{ CL_ANY, "too big", LOG_BC_TOO_LARGE },
	{ CL_ANY, "size exceeds", LOG_BC_TOO_LARGE },
	{ CL_ANY, "exceeds size limit", LOG_BC_TOO_LARGE },
	{ CL_ANY, "size limit exceeded", LOG_BC_TOO_LARGE },
	{ CL_ANY, "message size limit", LOG_BC_TOO_LARGE },
	{ CL_ANY, "maximum message size", LOG_BC_TOO_LARGE },
	{ CL_ANY, "message length exceeds", LOG_BC_TOO_LARGE },
	/* DNS. */
	{ CL_ANY, "no mx or a for domain", LOG_BC_DNS_FAILURE },
	{ CL_ANY, "domain lookup failed", LOG_BC_DNS_FAILURE },
	{ CL_ANY, "host not found", LOG_BC_DNS_FAILURE },
	{ CL_ANY, "host unknown", LOG_BC_DNS_FAILURE },
	{ CL_ANY, "domain not found", LOG_BC_DNS_FAILURE },
	{ CL_ANY, "no such domain", LOG_BC_DNS_FAILURE },
	{ CL_ANY, "unknown domain", LOG_BC_DNS_FAILURE },
	{ CL_ANY, "domain does not exist", LOG_BC_DNS_FAILURE },
	{ CL_ANY, "name service error", LOG_BC_DNS_FAILURE },
	{ CL_ANY, "dns error", LOG_BC_DNS_FAILURE },
	{ CL_ANY, "dns failure", LOG_BC_DNS_FAILURE },
	{ CL_ANY, "could not be resolved", LOG_BC_DNS_FAILURE },
	{ CL_ANY, "unresolvable", LOG_BC_DNS_FAILURE },
	/* The recipient: hard replies only (450 "address rejected" is greylisting). */
	{ CL_HARD, "no valid recipients", LOG_BC_GENERIC_NO_RCPT },
	{ CL_HARD, "user unknown", LOG_BC_INVALID_RECIPIENT },
	{ CL_HARD, "unknown user", LOG_BC_INVALID_RECIPIENT },
	{ CL_HARD, "no such user", LOG_BC_INVALID_RECIPIENT },
	{ CL_HARD, "no such recipient", LOG_BC_INVALID_RECIPIENT },
	{ CL_HARD, "no such mailbox", LOG_BC_INVALID_RECIPIENT },
	{ CL_HARD, "no such account", LOG_BC_INVALID_RECIPIENT },
	{ CL_HARD, "no such address", LOG_BC_INVALID_RECIPIENT },
	{ CL_HARD, "no mailbox", LOG_BC_INVALID_RECIPIENT },
	{ CL_HARD, "recipient unknown", LOG_BC_INVALID_RECIPIENT },
	{ CL_HARD, "unknown recipient", LOG_BC_INVALID_RECIPIENT },
	{ CL_HARD, "invalid recipient", LOG_BC_INVALID_RECIPIENT },
	{ CL_HARD, "recipient invalid", LOG_BC_INVALID_RECIPIENT },
	{ CL_HARD, "recipient rejected", LOG_BC_INVALID_RECIPIENT },
	{ CL_HARD, "recipient not found", LOG_BC_INVALID_RECIPIENT },
	{ CL_HARD, "invalid mailbox", LOG_BC_INVALID_RECIPIENT },
	{ CL_HARD, "not a valid mailbox", LOG_BC_INVALID_RECIPIENT },
	{ CL_HARD, "mailbox unavailable", LOG_BC_INVALID_RECIPIENT },
	{ CL_HARD, "mailbox not found", LOG_BC_INVALID_RECIPIENT },
	{ CL_HARD, "user not found", LOG_BC_INVALID_RECIPIENT },
	{ CL_HARD, "does not exist", LOG_BC_INVALID_RECIPIENT },
	{ CL_HARD, "doesn't exist", LOG_BC_INVALID_RECIPIENT },
	{ CL_HARD, "unrouteable address", LOG_BC_INVALID_RECIPIENT },
	{ CL_HARD, "address unknown", LOG_BC_INVALID_RECIPIENT },
	{ CL_HARD, "address rejected", LOG_BC_INVALID_RECIPIENT },
	{ CL_HARD, "bad destination mailbox", LOG_BC_INVALID_RECIPIENT },
	{ CL_HARD, "unknown local part", LOG_BC_INVALID_RECIPIENT },
	{ CL_HARD, "account disabled", LOG_BC_INVALID_RECIPIENT },
	{ CL_HARD, "account has been disabled", LOG_BC_INVALID_RECIPIENT },
	{ CL_HARD, "account is disabled", LOG_BC_INVALID_RECIPIENT },
	/* The sender's reputation, before the generic "spam". */
	{ CL_ANY, "spamhaus", LOG_BC_SPAM_BLOCK },
	{ CL_ANY, "spamcop", LOG_BC_SPAM_BLOCK },
	{ CL_ANY, "sorbs", LOG_BC_SPAM_BLOCK },
	{ CL_ANY, "barracuda", LOG_BC_SPAM_BLOCK },
	{ CL_ANY, "blacklist", LOG_BC_SPAM_BLOCK },
	{ CL_ANY, "black list", LOG_BC_SPAM_BLOCK },
	{ CL_ANY, "blocklist", LOG_BC_SPAM_BLOCK },
	{ CL_ANY, "block list", LOG_BC_SPAM_BLOCK },
	{ CL_ANY, "blocked using", LOG_BC_SPAM_BLOCK },
	{ CL_ANY, "dnsbl", LOG_BC_SPAM_BLOCK },
	{ CL_ANY, "listed at", LOG_BC_SPAM_BLOCK },
	{ CL_ANY, "listed in", LOG_BC_SPAM_BLOCK },
	{ CL_ANY, "reputation", LOG_BC_SPAM_BLOCK },
	/* The message itself. */
	{ CL_ANY, "attachment", LOG_BC_PROHIBITED_ATTACHMENT },
	{ CL_ANY, "prohibited file", LOG_BC_PROHIBITED_ATTACHMENT },
	{ CL_ANY, "banned file", LOG_BC_PROHIBITED_ATTACHMENT },
	{ CL_ANY, "spam", LOG_BC_SPAM_CONTENT },
	{ CL_ANY, "content rejected", LOG_BC_SPAM_CONTENT },
	{ CL_ANY, "rejected due to content", LOG_BC_SPAM_CONTENT },
	{ CL_ANY, "message content", LOG_BC_SPAM_CONTENT },
	{ CL_ANY, "unsolicited", LOG_BC_SPAM_CONTENT },
	{ CL_ANY, "junk", LOG_BC_SPAM_CONTENT },
	{ CL_ANY, "phish", LOG_BC_SPAM_CONTENT },
	{ CL_ANY, "virus", LOG_BC_SPAM_CONTENT },
	{ CL_ANY, "malware", LOG_BC_SPAM_CONTENT },
	/* Auto-replies and challenges (out-of-band texts, mostly). */
	{ CL_ANY, "out of office", LOG_BC_AUTO_REPLY },
	{ CL_ANY, "out of the office", LOG_BC_AUTO_REPLY },
	{ CL_ANY, "auto-reply", LOG_BC_AUTO_REPLY },
	{ CL_ANY, "autoreply", LOG_BC_AUTO_REPLY },
	{ CL_ANY, "auto reply", LOG_BC_AUTO_REPLY },
	{ CL_ANY, "automatic reply", LOG_BC_AUTO_REPLY },
	{ CL_ANY, "vacation", LOG_BC_AUTO_REPLY },
	{ CL_ANY, "challenge-response", LOG_BC_CHALLENGE_RESPONSE },
	{ CL_ANY, "challenge response", LOG_BC_CHALLENGE_RESPONSE },
	/* The receiver's policy. */
	{ CL_HARD, "access denied", LOG_BC_MAIL_BLOCK },
	{ CL_HARD, "denied", LOG_BC_MAIL_BLOCK },
	{ CL_HARD, "refused", LOG_BC_MAIL_BLOCK },
	{ CL_HARD, "blocked", LOG_BC_MAIL_BLOCK },
	{ CL_HARD, "prohibited", LOG_BC_MAIL_BLOCK },
	{ CL_HARD, "not authorized", LOG_BC_MAIL_BLOCK },
	{ CL_HARD, "unauthorized", LOG_BC_MAIL_BLOCK },
	{ CL_HARD, "not allowed", LOG_BC_MAIL_BLOCK },
	{ CL_HARD, "policy", LOG_BC_MAIL_BLOCK },
	{ CL_HARD, "spf", LOG_BC_MAIL_BLOCK },
	{ CL_HARD, "dmarc", LOG_BC_MAIL_BLOCK },
	{ CL_HARD, "dkim", LOG_BC_MAIL_BLOCK },
	{ CL_HARD, "reverse dns", LOG_BC_MAIL_BLOCK },
	{ CL_HARD, "ptr record", LOG_BC_MAIL_BLOCK },
};

static const struct classify_status_rule classify_status_rules[] = {
	{ 5, 1, 0, LOG_BC_INVALID_RECIPIENT },      /* other address status */
	{ 5, 1, 1, LOG_BC_INVALID_RECIPIENT },      /* bad destination mailbox */
	{ 5, 1, 2, LOG_BC_DNS_FAILURE },            /* bad destination system */
	{ 5, 1, 3, LOG_BC_INVALID_RECIPIENT },      /* bad destination syntax */
	{ 5, 1, 6, LOG_BC_INVALID_RECIPIENT },      /* mailbox has moved */
	{ 5, 1, 10, LOG_BC_INVALID_RECIPIENT },     /* null MX (RFC 7505) */
	{ 5, 2, 1, LOG_BC_INVALID_RECIPIENT },      /* mailbox disabled */
	{ 5, 2, 2, LOG_BC_MAILBOX_FULL },
	{ 5, 2, 3, LOG_BC_TOO_LARGE },              /* message length exceeds limit */
	{ 5, 3, 4, LOG_BC_TOO_LARGE },              /* message too big for system */
	{ 5, 4, 4, LOG_BC_DNS_FAILURE },            /* unable to route */
	{ 5, 4, 7, LOG_BC_TIMEOUT },                /* delivery time expired */
	{ 5, 7, -1, LOG_BC_MAIL_BLOCK },            /* security or policy status */
	{ 5, 0, 0, LOG_BC_GENERIC_BOUNCE },
	{ 4, 2, 2, LOG_BC_MAILBOX_FULL },
	{ 4, 4, 3, LOG_BC_DNS_FAILURE },            /* directory server failure */
	{ 4, 4, 7, LOG_BC_TIMEOUT },
};

static const struct {
	int code;
	const char *name;
} classify_names[] = {
	{ LOG_BC_UNDETERMINED, "Undetermined" },
	{ LOG_BC_INVALID_RECIPIENT, "Invalid Recipient" },
	{ LOG_BC_SOFT_BOUNCE, "Soft Bounce" },
	{ LOG_BC_DNS_FAILURE, "DNS Failure" },
	{ LOG_BC_MAILBOX_FULL, "Mailbox Full" },
	{ LOG_BC_TOO_LARGE, "Too Large" },
	{ LOG_BC_TIMEOUT, "Timeout" },
	{ LOG_BC_ADMIN_FAILURE, "Admin Failure" },
	{ LOG_BC_GENERIC_NO_RCPT, "Generic Bounce: No RCPT" },
	{ LOG_BC_GENERIC_BOUNCE, "Generic Bounce" },
	{ LOG_BC_MAIL_BLOCK, "Mail Block" },
	{ LOG_BC_SPAM_BLOCK, "Spam Block" },
	{ LOG_BC_SPAM_CONTENT, "Spam Content" },
	{ LOG_BC_PROHIBITED_ATTACHMENT, "Prohibited Attachment" },
	{ LOG_BC_RELAYING_DENIED, "Relaying Denied" },
	{ LOG_BC_AUTO_REPLY, "Auto-Reply" },
	{ LOG_BC_TRANSIENT_FAILURE, "Transient Failure" },
	{ LOG_BC_SUBSCRIBE, "Subscribe" },
	{ LOG_BC_UNSUBSCRIBE, "Unsubscribe" },
	{ LOG_BC_CHALLENGE_RESPONSE, "Challenge-Response" },
};

/* CL_4XX / CL_5XX from a leading reply code (rest: after it), else CL_NONE. */
static int
reply_class(const char *s, const char **rest)
{
	int code = log_format_reply_code(s, strlen(s));

	*rest = s;
	if (code == 0)
		return CL_NONE;
	*rest = s + 3;
	if (code >= 400 && code < 500)
		return CL_4XX;
	if (code >= 500)
		return CL_5XX;
	return CL_NONE;
}

/* An enhanced status code "c.s.d" at the start of s (after blanks or '-'). */
static int
parse_status(const char *s, int *cls, int *subject, int *detail)
{
	char *end;
	long v[3];

	while (*s == ' ' || *s == '-')
		s++;
	if (*s != '2' && *s != '4' && *s != '5')
		return -1;
	for (int i = 0; i < 3; i++) {
		if (!isdigit((unsigned char)*s))
			return -1;
		v[i] = strtol(s, &end, 10);
		if (end - s > 3 || (i < 2 && *end != '.'))
			return -1;
		s = i < 2 ? end + 1 : end;
	}
	if (*s != '\0' && !isspace((unsigned char)*s))
		return -1;
	*cls = (int)v[0];
	*subject = (int)v[1];
	*detail = (int)v[2];
	return 0;
}

/* s in lower case, "<…>" emptied, cut to len - 1 bytes. */
static void
fold_text(const char *s, char *out, size_t len)
{
	size_t n = 0;
	int in_angle = 0;

	for (; *s != '\0' && n + 1 < len; s++) {
		if (*s == '>')
			in_angle = 0;
		if (!in_angle)
			out[n++] = (char)tolower((unsigned char)*s);
		if (*s == '<')
			in_angle = 1;
	}
	out[n] = '\0';
}

int
log_classify_builtin(const char *response)
{
	char text[CLASSIFY_TEXT_MAX];
	const char *rest;
	int when, cls, subject, detail;

	if (response == NULL || *response == '\0')
		return LOG_BC_UNDETERMINED;
	when = reply_class(response, &rest);
	fold_text(response, text, sizeof(text));
	for (size_t i = 0; i < sizeof(classify_text_rules) / sizeof(classify_text_rules[0]); i++) {
		const struct classify_text_rule *r = &classify_text_rules[i];
		if ((r->when & (unsigned)when) && strstr(text, r->text) != NULL)
			return r->code;
	}
	if (when != CL_NONE && parse_status(rest, &cls, &subject, &detail) == 0) {
		for (size_t i = 0; i < sizeof(classify_status_rules) / sizeof(classify_status_rules[0]);
		     i++) {
			const struct classify_status_rule *r = &classify_status_rules[i];
			if (r->cls == cls && r->subject == subject &&
			    (r->detail < 0 || r->detail == detail))
				return r->code;
		}
	}
	return when == CL_4XX ? LOG_BC_TRANSIENT_FAILURE : LOG_BC_UNDETERMINED;
}

int
log_classify(const char *response, const char *domain)
{
	int code;

	if (has_core_smtp_error_classify_hook() &&
	    (code = call_core_smtp_error_classify_hook(response, domain)) != 0)
		return code;
	return log_classify_builtin(response);
}

const char *
log_classify_name(int code)
{
	for (size_t i = 0; i < sizeof(classify_names) / sizeof(classify_names[0]); i++)
		if (classify_names[i].code == code)
			return classify_names[i].name;
	return "Unknown";
}

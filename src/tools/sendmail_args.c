/*
 * sendmail_args.c - impetus-sendmail's options and address lists
 * (sendmail_args.h).
 *
 * sendmail_args_parse     sendmail's command line, getopt-like: flags may be
 *                         grouped ("-ti"), an option's value may be attached
 *                         ("-fme@host") or the next argument ("-f me@host")
 * sendmail_addr_ok        an address safe to put between < and >
 * sendmail_rcpts_add      a recipient list without duplicates
 * sendmail_addr_list      the addresses of a To:/Cc:/Bcc: field value
 *
 * Options that sendmail accepts and that mean nothing here (delivery and
 * error modes, aliasing, hop counts...) are accepted and ignored; an
 * unknown option or mode is a usage error. Nothing here prints or exits.
 */
#include "tools/sendmail_args.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/strbuf.h"
#include "lib/xalloc.h"

/* Options that take a value, and flags; both lists are sendmail's letters. */
#define OPTS_WITH_VALUE "fFrSboeBhNRVLC"
#define OPTS_FLAGS      "tivmnUG"

static int set_option(struct sendmail_args *a, char opt, const char *val, char *err,
                      size_t errlen);
static int parse_notify(const char *val, unsigned *out);
static int arg_addr_ok(const char *arg);
static void list_element_end(struct strbuf *plain, struct strbuf *angle, int *has_angle,
                             struct sendmail_rcpts *r, const char *domain);
static void add_trimmed(struct sendmail_rcpts *r, const char *s, size_t len, const char *domain);

int
sendmail_args_parse(int argc, char **argv, struct sendmail_args *a, char *err, size_t errlen)
{
	int i;

	memset(a, 0, sizeof(*a));
	a->mode = SENDMAIL_MODE_DELIVER;
	for (i = 1; i < argc; i++) {
		const char *arg = argv[i];
		if (strcmp(arg, "--") == 0) {
			i++;
			break;
		}
		if (arg[0] != '-' || arg[1] == '\0')
			break;
		for (const char *p = arg + 1; *p != '\0'; p++) {
			if (strchr(OPTS_FLAGS, *p) != NULL) {
				if (set_option(a, *p, NULL, err, errlen) < 0)
					return -1;
				continue;
			}
			if (strchr(OPTS_WITH_VALUE, *p) == NULL) {
				snprintf(err, errlen, "unknown option -%c", *p);
				return -1;
			}
			const char *val = p[1] != '\0' ? p + 1 : (i + 1 < argc ? argv[++i] : NULL);
			if (val == NULL) {
				snprintf(err, errlen, "option -%c needs a value", *p);
				return -1;
			}
			if (set_option(a, *p, val, err, errlen) < 0)
				return -1;
			break;
		}
	}
	a->rcpts = argv + i;
	a->nrcpts = argc - i;
	if (a->mode == SENDMAIL_MODE_SMTP && a->nrcpts > 0) {
		snprintf(err, errlen, "-bs takes no recipients");
		return -1;
	}
	if (a->mode == SENDMAIL_MODE_DELIVER && !a->from_headers && a->nrcpts == 0) {
		snprintf(err, errlen, "no recipients (give addresses, or -t to read them from the headers)");
		return -1;
	}
	for (int k = 0; k < a->nrcpts; k++) {
		if (!arg_addr_ok(a->rcpts[k])) {
			snprintf(err, errlen, "\"%s\" is not a usable address", a->rcpts[k]);
			return -1;
		}
	}
	return 0;
}

static int
set_option(struct sendmail_args *a, char opt, const char *val, char *err, size_t errlen)
{
	switch (opt) {
	case 't':
		a->from_headers = 1;
		return 0;
	case 'i':
		a->ignore_dots = 1;
		return 0;
	case 'v':
		a->verbose = 1;
		return 0;
	case 'm': case 'n': case 'U': case 'G':
		return 0;               /* me too, no aliasing, initial submission, gateway */
	case 'f': case 'r':
		if (!arg_addr_ok(val)) {
			snprintf(err, errlen, "-%c \"%s\" is not a usable address", opt, val);
			return -1;
		}
		a->sender = val;
		return 0;
	case 'F':
		if (strpbrk(val, "\r\n") != NULL) {
			snprintf(err, errlen, "-F: the name must be one line");
			return -1;
		}
		a->full_name = val;
		return 0;
	case 'S':
		a->socket_path = val;
		return 0;
	case 'b':
		if (strcmp(val, "m") == 0) {
			a->mode = SENDMAIL_MODE_DELIVER;
			return 0;
		}
		if (strcmp(val, "s") == 0) {
			a->mode = SENDMAIL_MODE_SMTP;
			return 0;
		}
		snprintf(err, errlen, "-b%s is not supported (only -bm and -bs)", val);
		return -1;
	case 'o':
		if (strcmp(val, "i") == 0) {
			a->ignore_dots = 1;
			return 0;
		}
		/* Error modes, delivery modes, "me too": the exit status and stderr
		 * always report, and the daemon always queues. */
		if ((val[0] == 'e' && val[1] != '\0' && strchr("mepqw", val[1]) && val[2] == '\0') ||
		    (val[0] == 'd' && val[1] != '\0' && strchr("ibqdf", val[1]) && val[2] == '\0') ||
		    strcmp(val, "m") == 0)
			return 0;
		snprintf(err, errlen, "-o%s is not supported", val);
		return -1;
	case 'e':
		if (val[1] == '\0' && strchr("mepqw", val[0]) != NULL)
			return 0;
		snprintf(err, errlen, "-e%s is not an error mode (m, e, p, q or w)", val);
		return -1;
	case 'B':
		if (strcasecmp(val, "7BIT") == 0 || strcasecmp(val, "8BITMIME") == 0)
			return 0;       /* the body type is found from the message itself */
		snprintf(err, errlen, "-B%s: the body type is 7BIT or 8BITMIME", val);
		return -1;
	case 'h': {
		char *end;
		strtol(val, &end, 10);
		if (*val == '\0' || *end != '\0') {
			snprintf(err, errlen, "-h%s: the hop count is a number", val);
			return -1;
		}
		return 0;
	}
	case 'N':
		if (parse_notify(val, &a->notify) < 0) {
			snprintf(err, errlen, "-N%s: never, or a list of success, failure, delay", val);
			return -1;
		}
		return 0;
	case 'R':
		if (strcasecmp(val, "full") == 0)
			a->ret = "FULL";
		else if (strcasecmp(val, "hdrs") == 0)
			a->ret = "HDRS";
		else {
			snprintf(err, errlen, "-R%s: full or hdrs", val);
			return -1;
		}
		return 0;
	case 'V':
		if (*val == '\0' || strlen(val) > 100) {
			snprintf(err, errlen, "-V: the envelope id is 1 to 100 characters");
			return -1;
		}
		for (const char *p = val; *p; p++) {
			if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e) {
				snprintf(err, errlen, "-V: the envelope id is printable ASCII");
				return -1;
			}
		}
		a->envid = val;
		return 0;
	case 'L': case 'C':
		return 0;               /* syslog tag, configuration file: not ours */
	default:
		snprintf(err, errlen, "unknown option -%c", opt);
		return -1;
	}
}

/* "never", or a comma-separated list of success, failure, delay. */
static int
parse_notify(const char *val, unsigned *out)
{
	unsigned bits = 0;
	const char *p = val;

	while (*p != '\0') {
		size_t n = strcspn(p, ",");
		if (n == 5 && strncasecmp(p, "never", 5) == 0)
			bits |= SENDMAIL_NOTIFY_NEVER;
		else if (n == 7 && strncasecmp(p, "success", 7) == 0)
			bits |= SENDMAIL_NOTIFY_SUCCESS;
		else if (n == 7 && strncasecmp(p, "failure", 7) == 0)
			bits |= SENDMAIL_NOTIFY_FAILURE;
		else if (n == 5 && strncasecmp(p, "delay", 5) == 0)
			bits |= SENDMAIL_NOTIFY_DELAY;
		else
			return -1;
		p += n;
		if (*p == ',')
			p++;
	}
	if (bits == 0 || ((bits & SENDMAIL_NOTIFY_NEVER) && bits != SENDMAIL_NOTIFY_NEVER))
		return -1;
	*out = bits;
	return 0;
}

int
sendmail_addr_ok(const char *addr)
{
	for (const unsigned char *p = (const unsigned char *)addr; *p; p++)
		if (*p < 0x20 || *p == 0x7f || *p == '<' || *p == '>')
			return 0;
	return 1;
}

/* An address argument: sendmail_addr_ok, once inside one pair of <>. */
static int
arg_addr_ok(const char *arg)
{
	size_t len = strlen(arg);
	int ok;

	if (len < 2 || arg[0] != '<' || arg[len - 1] != '>')
		return sendmail_addr_ok(arg);
	char *inner = xstrndup(arg + 1, len - 2);
	ok = sendmail_addr_ok(inner);
	free(inner);
	return ok;
}

void
sendmail_rcpts_add(struct sendmail_rcpts *r, const char *addr, size_t len, const char *domain)
{
	char *a;

	if (domain != NULL && memchr(addr, '@', len) == NULL)
		a = xasprintf("%.*s@%s", (int)len, addr, domain);
	else
		a = xstrndup(addr, len);
	for (size_t i = 0; i < r->n; i++) {
		if (strcasecmp(r->v[i], a) == 0) {
			free(a);
			return;
		}
	}
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 8;
		r->v = xreallocarray(r->v, r->cap, sizeof(*r->v));
	}
	r->v[r->n++] = a;
}

void
sendmail_rcpts_free(struct sendmail_rcpts *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->v[i]);
	free(r->v);
	memset(r, 0, sizeof(*r));
}

/* Add s without surrounding white space; nothing when it is empty. */
static void
add_trimmed(struct sendmail_rcpts *r, const char *s, size_t len, const char *domain)
{
	while (len > 0 && isspace((unsigned char)*s)) {
		s++;
		len--;
	}
	while (len > 0 && isspace((unsigned char)s[len - 1]))
		len--;
	/* A source route "@a,@b:user@c" leaves the mailbox only. */
	if (len > 0 && s[0] == '@') {
		const char *colon = memchr(s, ':', len);
		if (colon != NULL) {
			len -= (size_t)(colon + 1 - s);
			s = colon + 1;
		}
	}
	if (len > 0)
		sendmail_rcpts_add(r, s, len, domain);
}

/* One element of the list ends: its address is what was in <>, or else
 * everything outside comments (white space outside quotes dropped). */
static void
list_element_end(struct strbuf *plain, struct strbuf *angle, int *has_angle,
                 struct sendmail_rcpts *r, const char *domain)
{
	if (*has_angle)
		add_trimmed(r, angle->data ? angle->data : "", angle->len, domain);
	else
		add_trimmed(r, plain->data ? plain->data : "", plain->len, domain);
	strbuf_reset(plain);
	strbuf_reset(angle);
	*has_angle = 0;
}

int
sendmail_addr_list(const char *value, size_t len, struct sendmail_rcpts *r, const char *domain)
{
	struct strbuf plain = STRBUF_INIT, angle = STRBUF_INIT;
	int in_quote = 0, in_angle = 0, has_angle = 0, comment = 0, rc = 0;

	for (size_t i = 0; i < len; i++) {
		char c = value[i];
		struct strbuf *to = in_angle ? &angle : &plain;
		if (in_quote) {
			strbuf_putc(to, c);
			if (c == '\\' && i + 1 < len)
				strbuf_putc(to, value[++i]);
			else if (c == '"')
				in_quote = 0;
		} else if (comment > 0) {
			if (c == '\\' && i + 1 < len)
				i++;
			else if (c == '(')
				comment++;
			else if (c == ')')
				comment--;
		} else if (c == '"') {
			in_quote = 1;
			strbuf_putc(to, c);
		} else if (c == '(') {
			comment = 1;
		} else if (c == '<') {
			if (in_angle) {
				rc = -1;
				break;
			}
			in_angle = has_angle = 1;
			strbuf_reset(&angle);
		} else if (c == '>') {
			if (!in_angle) {
				rc = -1;
				break;
			}
			in_angle = 0;
		} else if (in_angle) {
			if (!isspace((unsigned char)c))
				strbuf_putc(&angle, c);
		} else if (c == ',' || c == ';') {
			list_element_end(&plain, &angle, &has_angle, r, domain);
		} else if (c == ':') {
			strbuf_reset(&plain);   /* "Group name:" starts a group */
		} else if (!isspace((unsigned char)c)) {
			strbuf_putc(&plain, c);
		}
	}
	if (rc == 0 && (in_quote || in_angle || comment > 0))
		rc = -1;
	if (rc == 0)
		list_element_end(&plain, &angle, &has_angle, r, domain);
	strbuf_free(&plain);
	strbuf_free(&angle);
	return rc;
}

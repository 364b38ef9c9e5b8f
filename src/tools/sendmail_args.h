/*
 * sendmail_args.h - impetus-sendmail's command line and recipient lists.
 *
 * sendmail_args_parse reads sendmail's options (docs/sendmail.md lists
 * them): the options stop at "--" or at the first argument that is not an
 * option; every argument after that is a recipient. sendmail_addr_list
 * reads the addresses of a To:/Cc:/Bcc: field value (RFC 5322 address
 * lists: display names, comments, quoted strings, groups).
 * sendmail_rcpts_add keeps a recipient list without duplicates, adding
 * "@domain" to an address that has no domain.
 *
 * No I/O, no exits: the caller reports. Strings in struct sendmail_args
 * point into argv; a struct sendmail_rcpts owns its strings.
 */
#ifndef IMPETUS_TOOLS_SENDMAIL_ARGS_H
#define IMPETUS_TOOLS_SENDMAIL_ARGS_H

#include <stddef.h>

enum sendmail_mode {
	SENDMAIL_MODE_DELIVER,          /* -bm: read a message on stdin and submit it */
	SENDMAIL_MODE_SMTP,             /* -bs: SMTP on stdin/stdout, relayed to the daemon */
};

/* DSN NOTIFY bits (-N). */
#define SENDMAIL_NOTIFY_NEVER   0x1
#define SENDMAIL_NOTIFY_SUCCESS 0x2
#define SENDMAIL_NOTIFY_FAILURE 0x4
#define SENDMAIL_NOTIFY_DELAY   0x8

struct sendmail_args {
	enum sendmail_mode mode;
	int from_headers;               /* -t: recipients from To:, Cc:, Bcc: as well */
	int ignore_dots;                /* -i, -oi: a line with a single dot is text */
	int verbose;                    /* -v: the SMTP dialogue on stderr */
	const char *sender;             /* -f, -r: envelope sender; NULL: the user's */
	const char *full_name;          /* -F: the name in a From: header we add */
	const char *socket_path;        /* -S: NULL: $IMPETUS_SUBMIT_SOCKET or the default */
	unsigned notify;                /* -N: SENDMAIL_NOTIFY_* bits, 0: not given */
	const char *ret;                /* -R: "FULL" or "HDRS", NULL: not given */
	const char *envid;              /* -V: DSN envelope id, NULL: not given */
	char **rcpts;                   /* recipients given as arguments (into argv) */
	int nrcpts;
};

/* sendmail_args_parse: fill a from argv; 0, or -1 with a usage message in err. */
int sendmail_args_parse(int argc, char **argv, struct sendmail_args *a, char *err,
                        size_t errlen);

/* sendmail_addr_ok: 1 when addr can go into MAIL FROM:<> / RCPT TO:<> (no
 * control characters, no angle brackets), else 0. (sendmail_args_parse
 * allows one pair of <> around an address argument.) */
int sendmail_addr_ok(const char *addr);

struct sendmail_rcpts {
	char **v;                       /* the addresses, owned */
	size_t n;
	size_t cap;
};

/* sendmail_rcpts_add: append addr (len bytes) unless already there (case
 * aside); with domain non-NULL an address without '@' gets "@domain". */
void sendmail_rcpts_add(struct sendmail_rcpts *r, const char *addr, size_t len,
                        const char *domain);
void sendmail_rcpts_free(struct sendmail_rcpts *r);

/* sendmail_addr_list: append the addresses of an address-list field value
 * (len bytes, unfolded or not) to r; 0, or -1 when it does not parse
 * (an unclosed quote, comment or angle bracket). */
int sendmail_addr_list(const char *value, size_t len, struct sendmail_rcpts *r,
                       const char *domain);

#endif

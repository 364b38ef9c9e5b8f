/*
 * impetus-sendmail.c - the sendmail command: hand a message on stdin to the
 * running impetusd through its local submission socket.
 *
 *   impetus-sendmail [options] [--] recipient...
 *   impetus-sendmail -t [options] [recipient...]
 *   impetus-sendmail -bs [-S path]
 *
 * The options are sendmail's (sendmail_args.c, docs/sendmail.md). The
 * message is read up to end of file (or a line holding a single dot, unless
 * -i/-oi), its lines end in CRLF whatever they ended in (LF, CRLF or a lone
 * CR), a leading mbox "From " line is dropped, Bcc: (and Resent-Bcc:)
 * fields are removed, and From:, Date: and Message-ID: are added when
 * missing. It is then submitted over SMTP on the Unix socket (-S path, else
 * $IMPETUS_SUBMIT_SOCKET, else SENDMAIL_DEFAULT_SOCKET): EHLO, MAIL, one
 * RCPT per recipient, DATA with dot-stuffing. A 452 after some recipients
 * were accepted is the server's recipient limit: the message is sent to
 * those and the rest go in another transaction.
 *
 * Exit status (sysexits.h): 0 sent to every recipient; EX_USAGE bad options
 * or no recipients; EX_NOINPUT stdin unreadable; EX_DATAERR the message or
 * the sender refused (5xx) or unusable input (a NUL byte, a bad header
 * address); EX_NOUSER a recipient refused (5xx); EX_UNAVAILABLE no daemon
 * on the socket, or it refuses service; EX_TEMPFAIL a 4xx reply, a lost
 * connection or a timeout; EX_SOFTWARE a reply that makes no sense;
 * EX_IOERR reading stdin or relaying (-bs) failed. When several things
 * fail, a permanent failure's status wins over a temporary one. What
 * happened goes to stderr, one line per failure.
 */
#include <errno.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "lib/strbuf.h"
#include "lib/xalloc.h"
#include "tools/sendmail_args.h"

#ifndef SENDMAIL_DEFAULT_SOCKET
#define SENDMAIL_DEFAULT_SOCKET "/run/impetus/submit.sock"
#endif
#define SOCKET_ENV "IMPETUS_SUBMIT_SOCKET"
#define CMD_TIMEOUT_S 300               /* a reply to a command, or a write */
#define DATA_TIMEOUT_S 600              /* the reply after the final dot (RFC 5321 4.5.3.2.6) */
#define REPLY_LINE_MAX 2048             /* longest reply line we take */

static const char *progname = "impetus-sendmail";

/* One line of the message as read: its text without the line end. */
struct msg_line {
	char *text;                     /* owned */
	size_t len;
};

struct message {
	struct msg_line *lines;
	size_t n;
	size_t cap;
};

/* The SMTP client side of the Unix socket. */
struct client {
	int fd;
	int verbose;                    /* -v: the dialogue on stderr */
	char in[REPLY_LINE_MAX * 2];    /* bytes read, not yet taken */
	size_t inlen;
	char reply[512];                /* the last reply line, for messages */
	int ext_size;                   /* what EHLO advertised */
	int ext_8bitmime;
	int ext_smtputf8;
	int ext_dsn;
};

/* Why a reply could not be had. */
enum reply_error {
	REPLY_LOST = -1,                /* EOF, a read error or a timeout */
	REPLY_GARBLED = -2,             /* not an SMTP reply */
};

static void warnx_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int worse(int a, int b);
static const char *local_hostname(void);
static char *default_sender(const char *host);
static char *normalize_sender(const char *arg, const char *host);
static int read_message(struct message *m, int ignore_dots);
static void message_add(struct message *m, const char *text, size_t len);
static void message_free(struct message *m);
static int header_name_len(const struct msg_line *l);
static int header_is(const struct msg_line *l, const char *name);
static int build_message(const struct message *m, const struct sendmail_args *a,
                         const char *sender, const char *host, struct sendmail_rcpts *rcpts,
                         struct strbuf *out, int *eightbit);
static void put_line(struct strbuf *out, const char *text, size_t len);
static void put_from(struct strbuf *out, const char *name, const char *sender);
static int client_connect(struct client *c, const char *path);
static int client_send(struct client *c, const char *data, size_t len);
static int client_cmd(struct client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int client_reply(struct client *c, int timeout_s);
static int client_fail(struct client *c, int code, const char *what, int ex5xx);
static void client_quit(struct client *c);
static int submit(struct client *c, const struct sendmail_args *a, const char *sender,
                  const struct sendmail_rcpts *rcpts, const struct strbuf *msg, int eightbit);
static int addr_is_utf8(const char *addr);
static void notify_param(unsigned notify, char *buf, size_t len);
static int relay_smtp(const char *path);
static void set_timeout(int fd, int seconds);

static void
warnx_(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* The exit status to keep of two failures: permanent ones win. */
static int
worse(int a, int b)
{
	static const int order[] = { EX_SOFTWARE, EX_DATAERR, EX_NOUSER, EX_UNAVAILABLE, EX_IOERR,
	                             EX_TEMPFAIL, 0 };

	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
		if (a == order[i] || b == order[i])
			return order[i];
	return a ? a : b;
}

static const char *
local_hostname(void)
{
	static char host[256];

	if (gethostname(host, sizeof(host)) < 0 || host[0] == '\0')
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	return host;
}

/* The invoking user's name at the host name. */
static char *
default_sender(const char *host)
{
	struct passwd *pw = getpwuid(getuid());
	const char *user = pw != NULL ? pw->pw_name : getenv("LOGNAME");

	if (user == NULL || *user == '\0' || !sendmail_addr_ok(user))
		return xasprintf("uid%lu@%s", (unsigned long)getuid(), host);
	return xasprintf("%s@%s", user, host);
}

/* -f's value: "<addr>" or "addr"; "" and "<>" are the null sender. */
static char *
normalize_sender(const char *arg, const char *host)
{
	size_t len = strlen(arg);

	while (len > 0 && (*arg == ' ' || *arg == '\t')) {
		arg++;
		len--;
	}
	while (len > 0 && (arg[len - 1] == ' ' || arg[len - 1] == '\t'))
		len--;
	if (len >= 2 && arg[0] == '<' && arg[len - 1] == '>') {
		arg++;
		len -= 2;
	}
	if (len == 0)
		return xstrdup("");
	if (memchr(arg, '@', len) == NULL)
		return xasprintf("%.*s@%s", (int)len, arg, host);
	return xstrndup(arg, len);
}

static void
message_add(struct message *m, const char *text, size_t len)
{
	if (m->n == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 64;
		m->lines = xreallocarray(m->lines, m->cap, sizeof(*m->lines));
	}
	m->lines[m->n].text = xstrndup(text, len);
	m->lines[m->n].len = len;
	m->n++;
}

static void
message_free(struct message *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->lines[i].text);
	free(m->lines);
	memset(m, 0, sizeof(*m));
}

/*
 * Read stdin into lines. LF, CRLF and a lone CR all end a line. Without -i
 * a line holding a single dot ends the input. 0, or an exit status.
 */
static int
read_message(struct message *m, int ignore_dots)
{
	char *buf = NULL;
	size_t cap = 0;
	ssize_t n;

	errno = 0;
	while ((n = getline(&buf, &cap, stdin)) > 0) {
		size_t len = (size_t)n;
		if (len > 0 && buf[len - 1] == '\n')
			len--;
		if (len > 0 && buf[len - 1] == '\r')
			len--;
		if (!ignore_dots && len == 1 && buf[0] == '.')
			break;
		if (memchr(buf, '\0', len) != NULL) {
			warnx_("the message contains a NUL byte: not sent");
			free(buf);
			return EX_DATAERR;
		}
		/* A lone CR inside the line ends a line too. */
		size_t start = 0;
		for (size_t i = 0; i < len; i++) {
			if (buf[i] == '\r') {
				message_add(m, buf + start, i - start);
				start = i + 1;
			}
		}
		message_add(m, buf + start, len - start);
		errno = 0;
	}
	free(buf);
	if (ferror(stdin)) {
		if (errno == EBADF) {
			warnx_("cannot read the message: no standard input");
			return EX_NOINPUT;
		}
		warnx_("cannot read the message: %s", strerror(errno ? errno : EIO));
		return EX_IOERR;
	}
	return 0;
}

/* Length of the field name when l starts a header field ("Name:"), else 0. */
static int
header_name_len(const struct msg_line *l)
{
	size_t i;

	for (i = 0; i < l->len && l->text[i] != ':'; i++) {
		unsigned char c = (unsigned char)l->text[i];
		if (c <= 0x20 || c >= 0x7f)
			return 0;
	}
	return i > 0 && i < l->len && i < 1000 ? (int)i : 0;
}

static int
header_is(const struct msg_line *l, const char *name)
{
	size_t n = strlen(name);

	return (size_t)header_name_len(l) == n && strncasecmp(l->text, name, n) == 0;
}

/* One line to the SMTP data: dot-stuffed, CRLF. */
static void
put_line(struct strbuf *out, const char *text, size_t len)
{
	if (len > 0 && text[0] == '.')
		strbuf_putc(out, '.');
	strbuf_append(out, text, len);
	strbuf_append(out, "\r\n", 2);
}

/* "From: Name <sender>", the name quoted when it holds specials. */
static void
put_from(struct strbuf *out, const char *name, const char *sender)
{
	struct strbuf line = STRBUF_INIT;

	strbuf_puts(&line, "From: ");
	if (name != NULL && *name != '\0') {
		if (strpbrk(name, "()<>[]:;@\\,.\"") != NULL) {
			strbuf_putc(&line, '"');
			for (const char *p = name; *p; p++) {
				if (*p == '"' || *p == '\\')
					strbuf_putc(&line, '\\');
				strbuf_putc(&line, *p);
			}
			strbuf_putc(&line, '"');
		} else {
			strbuf_puts(&line, name);
		}
		strbuf_printf(&line, " <%s>", sender);
	} else {
		strbuf_puts(&line, sender);
	}
	put_line(out, line.data, line.len);
	strbuf_free(&line);
}

/*
 * The message as SMTP data (dot-stuffed CRLF lines, without the final dot),
 * and with -t the recipients of its header. 0, or an exit status.
 */
static int
build_message(const struct message *m, const struct sendmail_args *a, const char *sender,
              const char *host, struct sendmail_rcpts *rcpts, struct strbuf *out, int *eightbit)
{
	size_t first = 0, end, body;
	int has_from = 0, has_date = 0, has_msgid = 0, resent = 0;

	if (m->n > 0 && m->lines[0].len >= 5 && strncmp(m->lines[0].text, "From ", 5) == 0)
		first = 1;             /* an mbox separator, not a header */
	/* The header: fields and their continuation lines, up to an empty line
	 * or the first line that is neither. */
	for (end = first; end < m->n; end++) {
		const struct msg_line *l = &m->lines[end];
		if (header_name_len(l) > 0)
			continue;
		if (end > first && l->len > 0 && (l->text[0] == ' ' || l->text[0] == '\t'))
			continue;
		break;
	}
	body = end < m->n && m->lines[end].len == 0 ? end + 1 : end;
	for (size_t i = first; i < end; i++) {
		const struct msg_line *l = &m->lines[i];
		has_from |= header_is(l, "From");
		has_date |= header_is(l, "Date");
		has_msgid |= header_is(l, "Message-ID");
		resent |= header_is(l, "Resent-To") || header_is(l, "Resent-Cc") ||
		          header_is(l, "Resent-Bcc");
	}
	for (size_t i = first; i < end; i++) {
		const struct msg_line *l = &m->lines[i];
		int nlen = header_name_len(l);
		if (nlen == 0)
			continue;
		size_t next = i + 1;
		while (next < end && header_name_len(&m->lines[next]) == 0)
			next++;
		int is_bcc = header_is(l, "Bcc") || header_is(l, "Resent-Bcc");
		int wanted = resent ? header_is(l, "Resent-To") || header_is(l, "Resent-Cc") ||
		                      header_is(l, "Resent-Bcc")
		                    : header_is(l, "To") || header_is(l, "Cc") || header_is(l, "Bcc");
		if (a->from_headers && wanted) {
			struct strbuf value = STRBUF_INIT;
			strbuf_append(&value, l->text + nlen + 1, l->len - (size_t)nlen - 1);
			for (size_t k = i + 1; k < next; k++) {
				strbuf_putc(&value, ' ');
				strbuf_append(&value, m->lines[k].text, m->lines[k].len);
			}
			int rc = sendmail_addr_list(value.data, value.len, rcpts, host);
			strbuf_free(&value);
			if (rc < 0) {
				warnx_("cannot read the addresses of the %.*s: field", nlen, l->text);
				return EX_DATAERR;
			}
		}
		if (!is_bcc)
			for (size_t k = i; k < next; k++)
				put_line(out, m->lines[k].text, m->lines[k].len);
		i = next - 1;
	}
	if (!has_from && *sender != '\0')
		put_from(out, a->full_name, sender);
	if (!has_date) {
		char date[64];
		time_t now = time(NULL);
		struct tm tm;
		localtime_r(&now, &tm);
		strftime(date, sizeof(date), "Date: %a, %d %b %Y %H:%M:%S %z", &tm);
		put_line(out, date, strlen(date));
	}
	if (!has_msgid) {
		struct timeval tv;
		char id[512];
		gettimeofday(&tv, NULL);
		snprintf(id, sizeof(id), "Message-ID: <%lld.%06ld.%ld.impetus@%s>",
		         (long long)tv.tv_sec, (long)tv.tv_usec, (long)getpid(), host);
		put_line(out, id, strlen(id));
	}
	put_line(out, "", 0);
	for (size_t i = body; i < m->n; i++)
		put_line(out, m->lines[i].text, m->lines[i].len);
	*eightbit = 0;
	for (size_t i = 0; i < out->len && !*eightbit; i++)
		*eightbit = (unsigned char)out->data[i] >= 0x80;
	for (size_t i = 0; i < rcpts->n; i++) {
		if (!sendmail_addr_ok(rcpts->v[i])) {
			warnx_("\"%s\": not a usable address", rcpts->v[i]);
			return EX_DATAERR;
		}
	}
	return 0;
}

static void
set_timeout(int fd, int seconds)
{
	struct timeval tv = { seconds, 0 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* Connect to the daemon's socket; 0, or an exit status. */
static int
client_connect(struct client *c, const char *path)
{
	struct sockaddr_un su;

	memset(&su, 0, sizeof(su));
	su.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(su.sun_path)) {
		warnx_("%s: the socket path is too long", path);
		return EX_USAGE;
	}
	memcpy(su.sun_path, path, strlen(path) + 1);
	if ((c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		warnx_("socket: %s", strerror(errno));
		return EX_OSERR;
	}
	if (connect(c->fd, (struct sockaddr *)&su, sizeof(su)) < 0) {
		warnx_("cannot connect to impetusd at %s: %s", path, strerror(errno));
		close(c->fd);
		c->fd = -1;
		return EX_UNAVAILABLE;
	}
	set_timeout(c->fd, CMD_TIMEOUT_S);
	return 0;
}

static int
client_send(struct client *c, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(c->fd, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Send one command line; 0, or -1 when the connection is gone. */
static int
client_cmd(struct client *c, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 2)
		return -1;
	if (c->verbose)
		fprintf(stderr, ">>> %s\n", line);
	memcpy(line + n, "\r\n", 3);
	return client_send(c, line, (size_t)n + 2);
}

/*
 * One whole reply (every line of a multi-line one); its code, or a
 * reply_error. The last line's text is kept in c->reply; EHLO keywords
 * are noted on the way.
 */
static int
client_reply(struct client *c, int timeout_s)
{
	int code = 0;

	set_timeout(c->fd, timeout_s);
	for (;;) {
		char *eol;
		while ((eol = memchr(c->in, '\n', c->inlen)) == NULL) {
			if (c->inlen == sizeof(c->in))
				return REPLY_GARBLED;
			ssize_t n = read(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return REPLY_LOST;
			c->inlen += (size_t)n;
		}
		size_t len = (size_t)(eol - c->in), used = len + 1;
		if (len > 0 && c->in[len - 1] == '\r')
			len--;
		char line[sizeof(c->in)];
		memcpy(line, c->in, len);
		line[len] = '\0';
		memmove(c->in, c->in + used, c->inlen - used);
		c->inlen -= used;
		if (c->verbose)
			fprintf(stderr, "<<< %s\n", line);
		if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
		    line[2] < '0' || line[2] > '9' || (len > 3 && line[3] != ' ' && line[3] != '-'))
			return REPLY_GARBLED;
		int this = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
		if (code != 0 && this != code)
			return REPLY_GARBLED;
		code = this;
		snprintf(c->reply, sizeof(c->reply), "%s", line);
		if (code == 250 && len > 4) {
			const char *kw = line + 4;
			if (strncasecmp(kw, "SIZE", 4) == 0 && (kw[4] == '\0' || kw[4] == ' '))
				c->ext_size = 1;
			else if (strcasecmp(kw, "8BITMIME") == 0)
				c->ext_8bitmime = 1;
			else if (strcasecmp(kw, "SMTPUTF8") == 0)
				c->ext_smtputf8 = 1;
			else if (strcasecmp(kw, "DSN") == 0)
				c->ext_dsn = 1;
		}
		if (len == 3 || line[3] == ' ')
			return code;
	}
}

/*
 * Report a failed step (what: "MAIL FROM", "the message" ...) and give its
 * exit status: 4xx temporary, 5xx ex5xx, a lost connection temporary,
 * anything else a protocol surprise.
 */
static int
client_fail(struct client *c, int code, const char *what, int ex5xx)
{
	if (code == REPLY_LOST) {
		warnx_("%s: the connection to impetusd was lost (%s)", what,
		       errno == EAGAIN || errno == EWOULDBLOCK ? "timeout" :
		       errno ? strerror(errno) : "closed");
		return EX_TEMPFAIL;
	}
	if (code == REPLY_GARBLED) {
		warnx_("%s: not an SMTP reply from impetusd", what);
		return EX_SOFTWARE;
	}
	warnx_("%s: %s", what, c->reply);
	if (code >= 400 && code < 500)
		return EX_TEMPFAIL;
	if (code >= 500)
		return ex5xx;
	return EX_SOFTWARE;
}

static void
client_quit(struct client *c)
{
	if (client_cmd(c, "QUIT") == 0)
		client_reply(c, 10);
}

/* Has addr a byte beyond ASCII? */
static int
addr_is_utf8(const char *addr)
{
	for (const unsigned char *p = (const unsigned char *)addr; *p; p++)
		if (*p >= 0x80)
			return 1;
	return 0;
}

/* The DSN parameters of RCPT, from -N ("" when none). */
static void
notify_param(unsigned notify, char *buf, size_t len)
{
	buf[0] = '\0';
	if (notify == 0)
		return;
	if (notify & SENDMAIL_NOTIFY_NEVER) {
		snprintf(buf, len, " NOTIFY=NEVER");
		return;
	}
	snprintf(buf, len, " NOTIFY=%s%s%s",
	         notify & SENDMAIL_NOTIFY_SUCCESS ? "SUCCESS," : "",
	         notify & SENDMAIL_NOTIFY_FAILURE ? "FAILURE," : "",
	         notify & SENDMAIL_NOTIFY_DELAY ? "DELAY," : "");
	buf[strlen(buf) - 1] = '\0';            /* the last comma */
}

/*
 * The SMTP dialogue after the banner: EHLO, then transactions until every
 * recipient was tried. 0 when all took the message, else the exit status.
 */
static int
submit(struct client *c, const struct sendmail_args *a, const char *sender,
       const struct sendmail_rcpts *rcpts, const struct strbuf *msg, int eightbit)
{
	char params[256], notify[64], envid[256];
	int code, status = 0, utf8 = addr_is_utf8(sender);
	size_t next = 0, sent = 0;

	for (size_t i = 0; i < rcpts->n; i++)
		utf8 |= addr_is_utf8(rcpts->v[i]);
	if (client_cmd(c, "EHLO localhost") < 0)
		return client_fail(c, REPLY_LOST, "EHLO", EX_UNAVAILABLE);
	code = client_reply(c, CMD_TIMEOUT_S);
	if (code >= 500) {
		/* An SMTP-only server: HELO, no extensions. */
		if (client_cmd(c, "HELO localhost") < 0)
			return client_fail(c, REPLY_LOST, "HELO", EX_UNAVAILABLE);
		code = client_reply(c, CMD_TIMEOUT_S);
	}
	if (code != 250)
		return client_fail(c, code, "EHLO", EX_UNAVAILABLE);
	if (utf8 && !c->ext_smtputf8) {
		warnx_("the addresses need SMTPUTF8, which impetusd does not offer");
		return EX_DATAERR;
	}
	envid[0] = '\0';
	if (c->ext_dsn && a->envid != NULL) {
		/* xtext (RFC 3461 §4): '+', '=' and anything unprintable as +XX. */
		size_t k = 0;
		k += (size_t)snprintf(envid, sizeof(envid), " ENVID=");
		for (const char *p = a->envid; *p && k + 4 < sizeof(envid); p++) {
			if (*p == '+' || *p == '=')
				k += (size_t)snprintf(envid + k, sizeof(envid) - k, "+%02X", (unsigned char)*p);
			else
				envid[k++] = *p;
		}
		envid[k] = '\0';
	}
	snprintf(params, sizeof(params), "%s%s%s%s%s",
	         eightbit && c->ext_8bitmime ? " BODY=8BITMIME" : "",
	         utf8 ? " SMTPUTF8" : "", c->ext_dsn && a->ret ? " RET=" : "",
	         c->ext_dsn && a->ret ? a->ret : "", envid);
	if (c->ext_dsn)
		notify_param(a->notify, notify, sizeof(notify));
	else
		notify[0] = '\0';

	while (next < rcpts->n) {
		size_t accepted = 0, i;
		if (c->ext_size) {
			if (client_cmd(c, "MAIL FROM:<%s> SIZE=%zu%s", sender, msg->len, params) < 0)
				return worse(status, client_fail(c, REPLY_LOST, "MAIL FROM", EX_DATAERR));
		} else if (client_cmd(c, "MAIL FROM:<%s>%s", sender, params) < 0) {
			return worse(status, client_fail(c, REPLY_LOST, "MAIL FROM", EX_DATAERR));
		}
		code = client_reply(c, CMD_TIMEOUT_S);
		if (code != 250) {
			status = worse(status, client_fail(c, code, "sender", EX_DATAERR));
			break;
		}
		for (i = next; i < rcpts->n; i++) {
			char what[600];
			if (client_cmd(c, "RCPT TO:<%s>%s", rcpts->v[i], notify) < 0)
				return worse(status, client_fail(c, REPLY_LOST, "RCPT TO", EX_NOUSER));
			code = client_reply(c, CMD_TIMEOUT_S);
			if (code == 250 || code == 251) {
				accepted++;
				continue;
			}
			if (code == 452 && accepted > 0)
				break;          /* the recipient limit: the rest in another transaction */
			snprintf(what, sizeof(what), "recipient <%s>", rcpts->v[i]);
			status = worse(status, client_fail(c, code, what, EX_NOUSER));
			if (code < 0)
				return status;
		}
		next = i;
		if (accepted == 0) {
			if (client_cmd(c, "RSET") < 0 || client_reply(c, CMD_TIMEOUT_S) != 250)
				return worse(status, EX_TEMPFAIL);
			continue;
		}
		if (client_cmd(c, "DATA") < 0)
			return worse(status, client_fail(c, REPLY_LOST, "DATA", EX_DATAERR));
		code = client_reply(c, CMD_TIMEOUT_S);
		if (code != 354) {
			status = worse(status, client_fail(c, code, "DATA", EX_DATAERR));
			break;
		}
		set_timeout(c->fd, DATA_TIMEOUT_S);
		if (client_send(c, msg->data ? msg->data : "", msg->len) < 0 ||
		    client_send(c, ".\r\n", 3) < 0)
			return worse(status, client_fail(c, REPLY_LOST, "the message", EX_DATAERR));
		if (c->verbose)
			fprintf(stderr, ">>> (%zu bytes of message)\n>>> .\n", msg->len);
		code = client_reply(c, DATA_TIMEOUT_S);
		if (code != 250) {
			status = worse(status, client_fail(c, code, "the message", EX_DATAERR));
			break;
		}
		sent += accepted;
	}
	if (status != 0 && sent > 0)
		warnx_("the message was sent to %zu of %zu recipients", sent, rcpts->n);
	client_quit(c);
	return status;
}

/* -bs: the caller speaks SMTP on stdin/stdout; relay it to the daemon. */
static int
relay_smtp(const char *path)
{
	struct client c;
	char buf[16384];
	int stdin_open = 1, rc;

	memset(&c, 0, sizeof(c));
	if ((rc = client_connect(&c, path)) != 0)
		return rc;
	for (;;) {
		struct pollfd pf[2] = { { c.fd, POLLIN, 0 }, { 0, POLLIN, 0 } };
		if (poll(pf, stdin_open ? 2 : 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			rc = EX_IOERR;
			break;
		}
		if (pf[0].revents) {
			ssize_t n = read(c.fd, buf, sizeof(buf));
			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n <= 0)
				break;              /* the daemon closed: done */
			if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n || fflush(stdout) != 0) {
				rc = EX_IOERR;
				break;
			}
		}
		if (stdin_open && pf[1].revents) {
			ssize_t n = read(0, buf, sizeof(buf));
			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n <= 0) {
				stdin_open = 0;
				shutdown(c.fd, SHUT_WR);
			} else if (client_send(&c, buf, (size_t)n) < 0) {
				rc = EX_IOERR;
				break;
			}
		}
	}
	close(c.fd);
	return rc;
}

int
main(int argc, char **argv)
{
	struct sendmail_args a;
	struct sendmail_rcpts rcpts = { NULL, 0, 0 };
	struct message m = { NULL, 0, 0 };
	struct strbuf msg = STRBUF_INIT;
	struct client c;
	char err[512];
	const char *path, *host;
	char *sender;
	int rc, eightbit = 0;

	if (argc > 0 && argv[0] != NULL) {
		const char *slash = strrchr(argv[0], '/');
		progname = slash ? slash + 1 : argv[0];
	}
	if (sendmail_args_parse(argc, argv, &a, err, sizeof(err)) < 0) {
		warnx_("%s", err);
		fprintf(stderr, "usage: %s [-t] [-i] [-f sender] [-F name] [-S socket] [-v] "
		        "[--] recipient...\n       %s -bs [-S socket]\n", progname, progname);
		return EX_USAGE;
	}
	signal(SIGPIPE, SIG_IGN);
	path = a.socket_path;
	if (path == NULL)
		path = getenv(SOCKET_ENV);
	if (path == NULL || *path == '\0')
		path = SENDMAIL_DEFAULT_SOCKET;
	if (a.mode == SENDMAIL_MODE_SMTP)
		return relay_smtp(path);

	host = local_hostname();
	sender = a.sender ? normalize_sender(a.sender, host) : default_sender(host);
	for (int i = 0; i < a.nrcpts; i++) {
		const char *r = a.rcpts[i];
		size_t len = strlen(r);
		if (len >= 2 && r[0] == '<' && r[len - 1] == '>')
			sendmail_rcpts_add(&rcpts, r + 1, len - 2, host);
		else if (len > 0)
			sendmail_rcpts_add(&rcpts, r, len, host);
	}
	if ((rc = read_message(&m, a.ignore_dots)) != 0)
		goto out;
	if ((rc = build_message(&m, &a, sender, host, &rcpts, &msg, &eightbit)) != 0)
		goto out;
	if (rcpts.n == 0) {
		warnx_("no recipients: none given and none found in To:, Cc: or Bcc:");
		rc = EX_USAGE;
		goto out;
	}
	memset(&c, 0, sizeof(c));
	c.verbose = a.verbose;
	if ((rc = client_connect(&c, path)) != 0)
		goto out;
	rc = client_reply(&c, CMD_TIMEOUT_S);
	if (rc != 220)
		rc = client_fail(&c, rc, "impetusd", EX_UNAVAILABLE);
	else
		rc = submit(&c, &a, sender, &rcpts, &msg, eightbit);
	close(c.fd);
out:
	free(sender);
	message_free(&m);
	strbuf_free(&msg);
	sendmail_rcpts_free(&rcpts);
	return rc;
}

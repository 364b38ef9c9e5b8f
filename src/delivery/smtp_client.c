/*
 * smtp_client.c - the outbound SMTP session (see smtp_client.h).
 *
 *   smtp_client_new, smtp_client_send, smtp_client_quit, smtp_client_free,
 *   smtp_client_extensions, smtp_client_idle, smtp_client_stage
 *
 * One explicit state machine per connection, each state with its deadline
 * (a libevent timer; the params give the milliseconds):
 *
 *   BANNER     waiting for the 220 greeting                     banner_ms
 *   EHLO/HELO  EHLO sent (HELO after a 5xx to EHLO)              ehlo_ms
 *   STARTTLS   STARTTLS sent                                     starttls_ms
 *   HANDSHAKE  the TLS handshake (a filter bufferevent)          starttls_ms
 *   IDLE       ready for smtp_client_send                        none
 *   REFUSE     a transaction decided locally; on_txn_done next   0 ms
 *   MAIL       MAIL FROM reply awaited                           mailfrom_ms
 *   RCPT       RCPT TO replies awaited, one deadline each        rcptto_ms
 *   DATA       DATA reply awaited                                data_ms
 *   BODY       body written, final reply awaited                 body_ms
 *   DOT        a lone "." after an unwanted 354; reply ignored   body_ms
 *   RSET       RSET after an aborted transaction                 mailfrom_ms
 *   QUIT       QUIT sent                                         quit_ms
 *   CLOSED     over: the connection is gone, waiting for free
 *
 * With PIPELINING, MAIL, every RCPT and DATA leave in one write and the
 * replies are matched in order (RFC 2920); without it, one at a time. The
 * body goes out dot-stuffed with strictly CRLF line ends, mostly as
 * references into the caller's buffer (evbuffer_add_reference).
 *
 * Callbacks run only from the client's own libevent callbacks (every
 * bufferevent uses BEV_OPT_DEFER_CALLBACKS), never inside an API call.
 * Those entry points count themselves in c->depth: smtp_client_free inside
 * a callback only marks the client, and the outermost entry point frees it
 * on its way out; everything after a user callback checks c->freed.
 *
 * Ownership: the client owns its socket, bufferevents, timer, reply parser
 * and copies of the params' strings; it borrows the smtp_txn from
 * smtp_client_send to on_txn_done. The connection (and with it every
 * reference into the body) is released before a failing session's
 * on_txn_done. SSL_CTXs are cached process-wide, one per CA file, for the
 * life of the process. Errors: nothing here logs; failures reach the
 * caller as verdicts and statuses (texts listed in smtp_client.h).
 */
#include "delivery/smtp_client.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/util.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "delivery/smtp_reply.h"
#include "lib/xalloc.h"

/* RFC 5321 §4.5.3.2 defaults, ms, for a zero in the params. */
#define DEFAULT_BANNER_MS   300000u
#define DEFAULT_EHLO_MS     300000u
#define DEFAULT_STARTTLS_MS 120000u
#define DEFAULT_MAILFROM_MS 300000u
#define DEFAULT_RCPTTO_MS   300000u
#define DEFAULT_DATA_MS     120000u
#define DEFAULT_BODY_MS     600000u
#define DEFAULT_QUIT_MS     10000u
#define BODY_COPY_MAX       128     /* runs shorter than this are copied, not referenced */

enum client_state {
	CS_BANNER,
	CS_EHLO,
	CS_HELO,
	CS_STARTTLS,
	CS_HANDSHAKE,
	CS_IDLE,
	CS_REFUSE,
	CS_MAIL,
	CS_RCPT,
	CS_DATA,
	CS_BODY,
	CS_DOT,
	CS_RSET,
	CS_QUIT,
	CS_CLOSED,
};

struct smtp_client {
	enum client_state state;
	struct event_base *base;
	struct bufferevent *bev;        /* the socket's, or the TLS filter over it; NULL when over */
	struct event *timer;            /* the current state's deadline */
	struct smtp_client_params p;    /* copy; its strings point at the copies below */
	char *ehlo_name;                /* owned */
	char *tls_host;                 /* owned, NULL when none */
	char *tls_ca_file;              /* owned, NULL = system store */
	struct smtp_client_cb cb;
	void *arg;
	struct smtp_reply_parser rp;    /* position in the server's replies */
	struct smtp_client_ext ext;     /* from the last EHLO */
	int size_param;                 /* SIZE advertised: send SIZE= */
	/* the transaction */
	struct smtp_txn *txn;           /* borrowed until on_txn_done; NULL when none */
	size_t *sent;                   /* indexes of the recipients sent, in order; owned */
	size_t nsent;                   /* entries in sent */
	size_t next_reply;              /* entry of sent whose RCPT reply comes next */
	size_t naccepted;               /* RCPTs answered 2xx */
	int mail_refused;               /* MAIL FROM got a non-2xx reply */
	int pipelined;                  /* this transaction was sent as one group */
	int txn_stage;                  /* stage code of the reply that decided it */
	/* the end */
	int quit_pending;               /* QUIT asked while busy */
	int quit_stage;                 /* stage code when QUIT was sent */
	int end_set;                    /* end holds the reason to report after QUIT */
	struct smtp_client_status end;  /* see end_set */
	int closed_stage;               /* stage code when the session ended */
	int depth;                      /* entry points (libevent callbacks) running */
	int freed;                      /* smtp_client_free called while depth > 0 */
};

struct tls_ctx_entry {
	char *ca_file;                  /* owned; NULL = system store */
	SSL_CTX *ctx;                   /* one reference, kept for the life of the process */
	struct tls_ctx_entry *next;
};

static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);
static void timer_cb(evutil_socket_t fd, short what, void *arg);
static void leave(struct smtp_client *c);
static void destroy(struct smtp_client *c);
static int process_input(struct smtp_client *c);
static int handle_reply(struct smtp_client *c);
static int class_expected(const struct smtp_client *c, int code);
static int txn_reply(struct smtp_client *c, int code, const char *text);
static void enter(struct smtp_client *c, enum client_state st);
static int stage_now(const struct smtp_client *c);
static const char *stage_phrase(const struct smtp_client *c);
static void send_text(struct smtp_client *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int send_ehlo(struct smtp_client *c, enum client_state st);
static int after_greeting(struct smtp_client *c);
static int send_quit(struct smtp_client *c);
static int quit_with(struct smtp_client *c, int code, const char *text, int stage);
static int quit_done(struct smtp_client *c, int code, const char *text);
static int tls_start(struct smtp_client *c);
static SSL_CTX *tls_ctx_get(const char *ca_file, char *err, size_t errlen);
static void tls_error_text(struct smtp_client *c, char *buf, size_t len);
static void close_conn(struct smtp_client *c);
static int notify_txn(struct smtp_client *c, struct smtp_txn *t);
static int notify_closed(struct smtp_client *c, int code, const char *text, int stage, int clean);
static int end_session(struct smtp_client *c, int code, const char *text, int txn_code,
                       const char *txn_text);
static int session_lost(struct smtp_client *c, const char *what, const char *detail,
                        const char *enh);
static int txn_finish(struct smtp_client *c);
static int send_rset(struct smtp_client *c);
static void send_rcpt(struct smtp_client *c, struct evbuffer *out, size_t i);
static void write_body(struct smtp_client *c);
static void set_verdict(struct smtp_txn_rcpt *r, int code, const char *text);
static void set_accepted(struct smtp_client *c, int code, const char *text);
static void add_run(struct evbuffer *out, const char *p, size_t n);
static int arg_ok(const char *s);
static int xtext_ok(const char *s);

static unsigned or_default(unsigned ms, unsigned def);
static int is2xx(int code);

static pthread_mutex_t tls_ctx_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tls_ctx_entry *tls_ctx_cache;

static unsigned
or_default(unsigned ms, unsigned def)
{
	return ms ? ms : def;
}

static int
is2xx(int code)
{
	return code >= 200 && code <= 299;
}

struct smtp_client *
smtp_client_new(struct event_base *base, int fd, const struct smtp_client_params *p,
                const struct smtp_client_cb *cb, void *arg)
{
	struct smtp_client *c = xcalloc(1, sizeof(*c));
	int one = 1;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* fails on AF_UNIX */
	c->base = base;
	c->p = *p;
	c->ehlo_name = xstrdup(p->ehlo_name != NULL && p->ehlo_name[0] ? p->ehlo_name : "localhost");
	c->tls_host = p->tls_host != NULL ? xstrdup(p->tls_host) : NULL;
	c->tls_ca_file = p->tls_ca_file != NULL ? xstrdup(p->tls_ca_file) : NULL;
	c->p.ehlo_name = c->ehlo_name;
	c->p.tls_host = c->tls_host;
	c->p.tls_ca_file = c->tls_ca_file;
	c->p.banner_ms = or_default(p->banner_ms, DEFAULT_BANNER_MS);
	c->p.ehlo_ms = or_default(p->ehlo_ms, DEFAULT_EHLO_MS);
	c->p.starttls_ms = or_default(p->starttls_ms, DEFAULT_STARTTLS_MS);
	c->p.mailfrom_ms = or_default(p->mailfrom_ms, DEFAULT_MAILFROM_MS);
	c->p.rcptto_ms = or_default(p->rcptto_ms, DEFAULT_RCPTTO_MS);
	c->p.data_ms = or_default(p->data_ms, DEFAULT_DATA_MS);
	c->p.body_ms = or_default(p->body_ms, DEFAULT_BODY_MS);
	c->p.quit_ms = or_default(p->quit_ms, DEFAULT_QUIT_MS);
	c->cb = *cb;
	c->arg = arg;
	smtp_reply_init(&c->rp);
	c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	c->timer = evtimer_new(base, timer_cb, c);
	if (c->bev == NULL || c->timer == NULL) {
		if (c->bev == NULL)
			close(fd);
		destroy(c);
		return NULL;
	}
	bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	enter(c, CS_BANNER);
	return c;
}

int
smtp_client_send(struct smtp_client *c, struct smtp_txn *t)
{
	struct evbuffer *out;
	int refuse_code = 0;
	const char *refuse_text = NULL;

	if (c == NULL || c->freed || c->state == CS_CLOSED || c->state == CS_QUIT ||
	    c->quit_pending) {
		errno = EPIPE;
		return -1;
	}
	if (c->state != CS_IDLE) {
		errno = EBUSY;
		return -1;
	}
	if (t->nrcpt == 0) {
		errno = EINVAL;
		return -1;
	}
	t->stage = 2;
	t->bytes_sent = 0;
	t->temp_session = 0;
	for (size_t i = 0; i < t->nrcpt; i++) {
		t->rcpts[i].code = 0;
		t->rcpts[i].stage = 0;
		t->rcpts[i].reply[0] = '\0';
	}
	c->txn = t;
	c->sent = xcalloc(t->nrcpt, sizeof(*c->sent));
	c->nsent = 0;
	c->next_reply = 0;
	c->naccepted = 0;
	c->mail_refused = 0;
	c->pipelined = c->ext.pipelining;
	c->txn_stage = 2;

	if (!arg_ok(t->mail_from)) {
		refuse_code = 553;
		refuse_text = "553 5.1.7 [internal] invalid sender address";
	} else if ((t->flags & SMTP_TXN_SMTPUTF8) && !c->ext.smtputf8) {
		refuse_code = 553;
		refuse_text = "553 5.6.7 [internal] SMTPUTF8 not supported by the remote server";
	} else if (c->ext.size_max != 0 && t->body_len > c->ext.size_max) {
		refuse_code = 552;
		refuse_text = "552 5.3.4 [internal] message too large for the remote server";
	}
	if (refuse_code != 0) {
		for (size_t i = 0; i < t->nrcpt; i++)
			set_verdict(&t->rcpts[i], refuse_code, refuse_text);
		enter(c, CS_REFUSE);
		return 0;
	}
	for (size_t i = 0; i < t->nrcpt; i++) {
		if (arg_ok(t->rcpts[i].rcpt))
			c->sent[c->nsent++] = i;
		else
			set_verdict(&t->rcpts[i], 553, "553 5.1.3 [internal] invalid recipient address");
	}
	if (c->nsent == 0) {
		c->txn_stage = 4;
		enter(c, CS_REFUSE);
		return 0;
	}

	out = evbuffer_new();
	evbuffer_add_printf(out, "MAIL FROM:<%s>", t->mail_from);
	if (c->size_param)
		evbuffer_add_printf(out, " SIZE=%zu", t->body_len);
	if ((t->flags & SMTP_TXN_8BITMIME) && c->ext.eightbit)
		evbuffer_add_printf(out, " BODY=8BITMIME");
	if (t->flags & SMTP_TXN_SMTPUTF8)
		evbuffer_add_printf(out, " SMTPUTF8");
	if (c->ext.dsn) {
		if (t->ret == 1 || t->ret == 2)
			evbuffer_add_printf(out, " RET=%s", t->ret == 1 ? "FULL" : "HDRS");
		if (t->envid != NULL && t->envid[0] && xtext_ok(t->envid))
			evbuffer_add_printf(out, " ENVID=%s", t->envid);
	}
	evbuffer_add(out, "\r\n", 2);
	if (c->pipelined) {
		for (size_t k = 0; k < c->nsent; k++)
			send_rcpt(c, out, c->sent[k]);
		evbuffer_add(out, "DATA\r\n", 6);
	}
	bufferevent_write_buffer(c->bev, out);
	evbuffer_free(out);
	enter(c, CS_MAIL);
	return 0;
}

void
smtp_client_quit(struct smtp_client *c)
{
	if (c == NULL || c->freed || c->state == CS_CLOSED || c->state == CS_QUIT)
		return;
	if (c->state == CS_IDLE)
		(void)send_quit(c);
	else
		c->quit_pending = 1;
}

void
smtp_client_free(struct smtp_client *c)
{
	if (c == NULL)
		return;
	if (c->depth > 0) {
		c->freed = 1;           /* the outermost entry point frees on its way out */
		return;
	}
	destroy(c);
}

const struct smtp_client_ext *
smtp_client_extensions(const struct smtp_client *c)
{
	return &c->ext;
}

int
smtp_client_idle(const struct smtp_client *c)
{
	return c != NULL && !c->freed && c->state == CS_IDLE && !c->quit_pending;
}

int
smtp_client_stage(const struct smtp_client *c)
{
	return stage_now(c);
}

/* --- entry points ------------------------------------------------------ */

static void
leave(struct smtp_client *c)
{
	if (--c->depth == 0 && c->freed)
		destroy(c);
}

static void
destroy(struct smtp_client *c)
{
	if (c->bev != NULL)
		bufferevent_free(c->bev);   /* a TLS filter frees its SSL and the socket's one */
	if (c->timer != NULL)
		event_free(c->timer);
	smtp_reply_free(&c->rp);
	free(c->sent);
	free(c->ehlo_name);
	free(c->tls_host);
	free(c->tls_ca_file);
	free(c);
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_client *c = arg;

	c->depth++;
	(void)process_input(c);
	leave(c);
}

/* The output drained: in BODY, the whole message has gone to the socket (or TLS). */
static void
write_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_client *c = arg;

	if (c->state == CS_BODY && c->txn != NULL)
		c->txn->bytes_sent = c->txn->body_len;
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_client *c = arg;
	char detail[300];

	c->depth++;
	if (what & BEV_EVENT_CONNECTED) {
		if (c->state == CS_HANDSHAKE) {
			c->ext.tls_active = 1;
			(void)send_ehlo(c, CS_EHLO);
		}
		goto out;
	}
	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		goto out;
	/* Replies that came with the close count first (a 421 before the EOF). */
	if (process_input(c) < 0 || c->state == CS_CLOSED)
		goto out;
	if (c->state == CS_QUIT) {
		(void)quit_done(c, 0, NULL);
		goto out;
	}
	detail[0] = '\0';
	if (c->state == CS_HANDSHAKE) {
		char why[300], text[SMTP_REPLY_MAX];

		tls_error_text(c, why, sizeof(why));
		snprintf(text, sizeof(text), "[internal] STARTTLS failed: %s", why);
		(void)end_session(c, 0, text, 451, "451 4.7.0 [internal] STARTTLS failed");
		goto out;
	}
	if (what & BEV_EVENT_ERROR) {
		if (c->ext.tls_active)
			tls_error_text(c, detail, sizeof(detail));
		else
			snprintf(detail, sizeof(detail), "%s",
			         evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	}
	(void)session_lost(c, "connection lost", detail, "4.4.2");
out:
	leave(c);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_client *c = arg;

	c->depth++;
	switch (c->state) {
	case CS_REFUSE:
		(void)txn_finish(c);
		break;
	case CS_QUIT:
		(void)quit_done(c, 0, NULL);
		break;
	case CS_IDLE:
	case CS_CLOSED:
		break;
	default:
		(void)session_lost(c, "timeout", "", "4.4.2");
		break;
	}
	leave(c);
}

/* --- states ------------------------------------------------------------ */

static void
enter(struct smtp_client *c, enum client_state st)
{
	unsigned ms = 0;
	int arm = 1;

	c->state = st;
	switch (st) {
	case CS_BANNER: ms = c->p.banner_ms; break;
	case CS_EHLO:
	case CS_HELO: ms = c->p.ehlo_ms; break;
	case CS_STARTTLS:
	case CS_HANDSHAKE: ms = c->p.starttls_ms; break;
	case CS_REFUSE: ms = 0; break;
	case CS_MAIL:
	case CS_RSET: ms = c->p.mailfrom_ms; break;
	case CS_RCPT: ms = c->p.rcptto_ms; break;
	case CS_DATA: ms = c->p.data_ms; break;
	case CS_BODY:
	case CS_DOT: ms = c->p.body_ms; break;
	case CS_QUIT: ms = c->p.quit_ms; break;
	case CS_IDLE:
	case CS_CLOSED: arm = 0; break;
	}
	if (c->timer == NULL)
		return;
	if (!arm) {
		evtimer_del(c->timer);
		return;
	}
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	evtimer_add(c->timer, &tv);
}

static int
stage_now(const struct smtp_client *c)
{
	switch (c->state) {
	case CS_BANNER: return 12;
	case CS_EHLO:
	case CS_HELO: return 10;
	case CS_STARTTLS: return 15;
	case CS_HANDSHAKE: return 17;
	case CS_IDLE: return 1;
	case CS_REFUSE:
	case CS_MAIL: return 2;
	case CS_RCPT: return 4;
	case CS_DATA: return 6;
	case CS_BODY:
		return c->bev != NULL && evbuffer_get_length(bufferevent_get_output(c->bev)) > 0 ? 8 : 9;
	case CS_DOT: return 9;
	case CS_RSET: return 13;
	case CS_QUIT: return c->quit_stage;
	case CS_CLOSED: return c->closed_stage;
	}
	return 22;
}

/* stage_phrase: "<what> during DATA" wording for timeouts and lost connections. */
static const char *
stage_phrase(const struct smtp_client *c)
{
	switch (c->state) {
	case CS_BANNER: return "while reading the banner";
	case CS_EHLO: return "during EHLO";
	case CS_HELO: return "during HELO";
	case CS_STARTTLS: return "during STARTTLS";
	case CS_HANDSHAKE: return "during the TLS handshake";
	case CS_IDLE:
	case CS_REFUSE: return "while idle";
	case CS_MAIL: return "during MAIL FROM";
	case CS_RCPT: return "during RCPT TO";
	case CS_DATA: return "during DATA";
	case CS_BODY:
		return stage_now(c) == 8 ? "while sending the body" : "while reading the confirmation";
	case CS_DOT: return "while reading the confirmation";
	case CS_RSET: return "during RSET";
	case CS_QUIT: return "during QUIT";
	case CS_CLOSED: break;
	}
	return "";
}

static void
send_text(struct smtp_client *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(c->bev), fmt, ap);
	va_end(ap);
}

/* process_input: feed the parser whatever arrived; -1 when the client must not be touched. */
static int
process_input(struct smtp_client *c)
{
	while (c->bev != NULL && c->state != CS_CLOSED && c->state != CS_HANDSHAKE) {
		struct evbuffer *in = bufferevent_get_input(c->bev);
		struct evbuffer_iovec v;
		size_t used;
		enum smtp_reply_status st;

		size_t avail = evbuffer_get_length(in);

		if (avail == 0)
			break;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0) {
			/* The first chain is empty: make a contiguous piece instead. */
			v.iov_len = avail < 4096 ? avail : 4096;
			v.iov_base = evbuffer_pullup(in, (ev_ssize_t)v.iov_len);
		}
		st = smtp_reply_feed(&c->rp, v.iov_base, v.iov_len, &used);
		evbuffer_drain(in, used);
		if (st == SMTP_REPLY_MORE)
			continue;
		if (st == SMTP_REPLY_ERROR) {
			if (c->state == CS_QUIT)
				return quit_done(c, 0, NULL);
			return end_session(c, 0, "[internal] invalid reply from the remote server", 451,
			                   "451 4.5.0 [internal] invalid reply from the remote server");
		}
		if (handle_reply(c) < 0)
			return -1;
	}
	return c->freed ? -1 : 0;
}

/*
 * class_expected: 1xx never, 3xx only as the 354 to DATA, and DATA must
 * not be answered 2xx (no message went out): anything else is a protocol
 * violation, not a verdict.
 */
static int
class_expected(const struct smtp_client *c, int code)
{
	if (code < 200 || code > 599)
		return 0;
	if (c->state == CS_DATA)
		return code == 354 || code >= 400;
	return code / 100 != 3;
}

static int
handle_reply(struct smtp_client *c)
{
	int code = c->rp.code;
	char text[SMTP_REPLY_MAX];

	smtp_reply_render(&c->rp, text, sizeof(text));
	if (c->state == CS_QUIT)
		return quit_done(c, code, text);
	if (code == 421)
		return end_session(c, code, text, code, text);
	if (!class_expected(c, code))
		return end_session(c, 0, "[internal] invalid reply from the remote server", 451,
		                   "451 4.5.0 [internal] invalid reply from the remote server");
	switch (c->state) {
	case CS_BANNER:
		if (code == 220)
			return send_ehlo(c, CS_EHLO);
		return quit_with(c, code, text, 12);
	case CS_EHLO:
		if (is2xx(code)) {
			struct smtp_reply_ehlo e;
			unsigned tls_active = c->ext.tls_active;

			smtp_reply_ehlo(&c->rp, &e);
			memset(&c->ext, 0, sizeof(c->ext));
			c->ext.tls_active = tls_active;
			c->ext.pipelining = !!(e.ext & SMTP_REPLY_EXT_PIPELINING);
			c->ext.eightbit = !!(e.ext & SMTP_REPLY_EXT_8BITMIME);
			c->ext.smtputf8 = !!(e.ext & SMTP_REPLY_EXT_SMTPUTF8);
			c->ext.dsn = !!(e.ext & SMTP_REPLY_EXT_DSN);
			c->ext.starttls = !!(e.ext & SMTP_REPLY_EXT_STARTTLS);
			c->ext.enhanced = !!(e.ext & SMTP_REPLY_EXT_ENHANCED);
			c->ext.chunking = !!(e.ext & SMTP_REPLY_EXT_CHUNKING);
			c->ext.size_max = e.size_max;
			c->size_param = !!(e.ext & SMTP_REPLY_EXT_SIZE);
			return after_greeting(c);
		}
		if (code >= 500)
			return send_ehlo(c, CS_HELO);
		return quit_with(c, code, text, 10);
	case CS_HELO:
		if (is2xx(code)) {
			unsigned tls_active = c->ext.tls_active;

			memset(&c->ext, 0, sizeof(c->ext));
			c->ext.tls_active = tls_active;
			c->size_param = 0;
			return after_greeting(c);
		}
		return quit_with(c, code, text, 10);
	case CS_STARTTLS:
		if (code == 220)
			return tls_start(c);
		if (c->p.tls == SMTP_TLS_IFAVAILABLE) {
			/* Refused: go on in clear, as if it had not been offered. */
			c->ext.starttls = 0;
			return after_greeting(c);
		}
		{
			char why[SMTP_REPLY_MAX];

			snprintf(why, sizeof(why), "[internal] STARTTLS failed: %.470s", text);
			return quit_with(c, 0, why, 15);
		}
	case CS_IDLE:
	case CS_REFUSE:
		/* Nothing was asked: the server is not following the protocol. */
		return end_session(c, code, text, 451,
		                   "451 4.5.0 [internal] invalid reply from the remote server");
	case CS_MAIL:
	case CS_RCPT:
	case CS_DATA:
	case CS_BODY:
	case CS_DOT:
	case CS_RSET:
		return txn_reply(c, code, text);
	case CS_HANDSHAKE:
	case CS_QUIT:
	case CS_CLOSED:
		break;
	}
	return 0;
}

static int
send_ehlo(struct smtp_client *c, enum client_state st)
{
	send_text(c, "%s %s\r\n", st == CS_HELO ? "HELO" : "EHLO", c->ehlo_name);
	enter(c, st);
	return 0;
}

/* after_greeting: EHLO or HELO accepted; STARTTLS next, or idle. */
static int
after_greeting(struct smtp_client *c)
{
	if (!c->ext.tls_active && c->p.tls != SMTP_TLS_NO) {
		if (c->ext.starttls) {
			send_text(c, "STARTTLS\r\n");
			enter(c, CS_STARTTLS);
			return 0;
		}
		if (c->p.tls == SMTP_TLS_REQUIRED)
			return quit_with(c, 0, "[internal] TLS required but not offered", 11);
	}
	enter(c, CS_IDLE);
	if (c->quit_pending)
		return send_quit(c);
	c->cb.on_ready(c, c->arg);
	return c->freed ? -1 : 0;
}

static int
send_quit(struct smtp_client *c)
{
	c->quit_pending = 0;
	c->quit_stage = stage_now(c);
	send_text(c, "QUIT\r\n");
	enter(c, CS_QUIT);
	return 0;
}

/* quit_with: the session cannot go on for a reason the server gave us; say QUIT politely. */
static int
quit_with(struct smtp_client *c, int code, const char *text, int stage)
{
	c->end_set = 1;
	c->end.code = code;
	snprintf(c->end.reply, sizeof(c->end.reply), "%s", text);
	c->end.stage = stage;
	send_quit(c);
	c->quit_stage = stage;
	return 0;
}

/* quit_done: QUIT answered (code > 0), or the connection closed or timed out. */
static int
quit_done(struct smtp_client *c, int code, const char *text)
{
	close_conn(c);
	if (c->end_set)         /* a failure: the polite QUIT does not make it clean */
		return notify_closed(c, c->end.code, c->end.reply, c->end.stage, 0);
	if (code > 0)
		return notify_closed(c, code, text, c->quit_stage, 1);
	return notify_closed(c, 0, "[internal] connection closed after QUIT", c->quit_stage, 1);
}

/* --- the end of a session ---------------------------------------------- */

/* close_conn: release the connection and the timer's deadline; state CLOSED. */
static void
close_conn(struct smtp_client *c)
{
	c->closed_stage = stage_now(c);
	if (c->bev != NULL) {
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	if (c->timer != NULL)
		evtimer_del(c->timer);
	c->state = CS_CLOSED;
}

/* notify_txn: hand the transaction back; -1 when the client was freed in the callback. */
static int
notify_txn(struct smtp_client *c, struct smtp_txn *t)
{
	t->stage = c->txn_stage;
	c->txn = NULL;
	free(c->sent);
	c->sent = NULL;
	c->nsent = 0;
	c->cb.on_txn_done(c, t, c->arg);
	return c->freed ? -1 : 0;
}

static int
notify_closed(struct smtp_client *c, int code, const char *text, int stage, int clean)
{
	struct smtp_client_status st;

	st.code = code;
	snprintf(st.reply, sizeof(st.reply), "%s", text);
	st.stage = stage;
	st.clean = clean;
	c->cb.on_closed(c, &st, c->arg);
	return -1;
}

/*
 * end_session: the session failed (code/text for on_closed). The
 * connection goes first; then a transaction in progress ends with txn_code /
 * txn_text for every recipient not yet decided (temp_session = 1 if any),
 * then on_closed. Always -1.
 */
static int
end_session(struct smtp_client *c, int code, const char *text, int txn_code,
            const char *txn_text)
{
	int stage = stage_now(c);
	struct smtp_txn *t = c->txn;

	close_conn(c);
	if (t != NULL) {
		for (size_t k = 0; k < c->nsent; k++) {
			struct smtp_txn_rcpt *r = &t->rcpts[c->sent[k]];
			if (r->code == 0 || is2xx(r->code)) {
				set_verdict(r, txn_code, txn_text);
				t->temp_session = 1;
			}
		}
		c->txn_stage = stage;
		if (notify_txn(c, t) < 0)
			return -1;
	}
	return notify_closed(c, code, text, stage, 0);
}

/* session_lost: a timeout or a broken connection: "[internal] <what> <stage>[: detail]". */
static int
session_lost(struct smtp_client *c, const char *what, const char *detail, const char *enh)
{
	char text[SMTP_REPLY_MAX], txn_text[SMTP_REPLY_MAX];
	const char *phrase = stage_phrase(c);

	snprintf(text, sizeof(text), "[internal] %s %s%s%s", what, phrase, detail[0] ? ": " : "",
	         detail);
	snprintf(txn_text, sizeof(txn_text), "451 %s [internal] %s %s", enh, what, phrase);
	return end_session(c, 0, text, 451, txn_text);
}

/* --- the transaction --------------------------------------------------- */

static void
set_verdict(struct smtp_txn_rcpt *r, int code, const char *text)
{
	r->code = code;
	snprintf(r->reply, sizeof(r->reply), "%s", text);
}

/* set_accepted: the recipients the server accepted get this reply. */
static void
set_accepted(struct smtp_client *c, int code, const char *text)
{
	for (size_t k = 0; k < c->nsent; k++) {
		struct smtp_txn_rcpt *r = &c->txn->rcpts[c->sent[k]];
		if (is2xx(r->code))
			set_verdict(r, code, text);
	}
}

static void
send_rcpt(struct smtp_client *c, struct evbuffer *out, size_t i)
{
	const struct smtp_txn_rcpt *r = &c->txn->rcpts[i];

	evbuffer_add_printf(out, "RCPT TO:<%s>", r->rcpt);
	if (c->ext.dsn) {
		if (r->notify & SMTP_NOTIFY_NEVER) {
			evbuffer_add_printf(out, " NOTIFY=NEVER");
		} else if (r->notify & (SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY)) {
			const char *sep = "";

			evbuffer_add_printf(out, " NOTIFY=");
			if (r->notify & SMTP_NOTIFY_SUCCESS) {
				evbuffer_add_printf(out, "SUCCESS");
				sep = ",";
			}
			if (r->notify & SMTP_NOTIFY_FAILURE) {
				evbuffer_add_printf(out, "%sFAILURE", sep);
				sep = ",";
			}
			if (r->notify & SMTP_NOTIFY_DELAY)
				evbuffer_add_printf(out, "%sDELAY", sep);
		}
		if (r->orcpt != NULL && r->orcpt[0] && xtext_ok(r->orcpt))
			evbuffer_add_printf(out, " ORCPT=%s", r->orcpt);
	}
	evbuffer_add(out, "\r\n", 2);
}

/* txn_finish: the transaction is over and the session goes on: idle, then on_txn_done. */
static int
txn_finish(struct smtp_client *c)
{
	enter(c, CS_IDLE);
	if (notify_txn(c, c->txn) < 0)
		return -1;
	if (c->state == CS_IDLE && c->quit_pending)
		return send_quit(c);
	return 0;
}

static int
send_rset(struct smtp_client *c)
{
	send_text(c, "RSET\r\n");
	enter(c, CS_RSET);
	return 0;
}

static int
txn_reply(struct smtp_client *c, int code, const char *text)
{
	struct smtp_txn *t = c->txn;

	switch (c->state) {
	case CS_MAIL:
		if (!is2xx(code)) {
			c->mail_refused = 1;
			for (size_t k = 0; k < c->nsent; k++)
				set_verdict(&t->rcpts[c->sent[k]], code, text);
			c->txn_stage = 2;
			if (!c->pipelined)
				return txn_finish(c);   /* nothing is open on the server */
			enter(c, CS_RCPT);              /* the RCPT and DATA replies still come */
			return 0;
		}
		if (!c->pipelined) {
			struct evbuffer *out = evbuffer_new();

			send_rcpt(c, out, c->sent[0]);
			bufferevent_write_buffer(c->bev, out);
			evbuffer_free(out);
		}
		enter(c, CS_RCPT);
		return 0;
	case CS_RCPT:
		if (!c->mail_refused) {
			set_verdict(&t->rcpts[c->sent[c->next_reply]], code, text);
			if (!is2xx(code))
				t->rcpts[c->sent[c->next_reply]].stage = 4;
			if (is2xx(code))
				c->naccepted++;
		}
		c->next_reply++;
		if (c->next_reply < c->nsent) {
			if (!c->pipelined) {
				struct evbuffer *out = evbuffer_new();

				send_rcpt(c, out, c->sent[c->next_reply]);
				bufferevent_write_buffer(c->bev, out);
				evbuffer_free(out);
			}
			enter(c, CS_RCPT);
			return 0;
		}
		if (!c->mail_refused)
			c->txn_stage = 4;
		if (c->pipelined) {
			enter(c, CS_DATA);
			return 0;
		}
		if (c->naccepted == 0)
			return send_rset(c);
		send_text(c, "DATA\r\n");
		enter(c, CS_DATA);
		return 0;
	case CS_DATA:
		if (code == 354) {
			if (c->mail_refused || c->naccepted == 0) {
				/* Pipelined, nobody to deliver to: end the empty message at once. */
				send_text(c, ".\r\n");
				enter(c, CS_DOT);
				return 0;
			}
			write_body(c);
			enter(c, CS_BODY);
			return 0;
		}
		if (c->mail_refused)
			return txn_finish(c);
		if (c->naccepted > 0) {
			set_accepted(c, code, text);
			c->txn_stage = 6;
		}
		return send_rset(c);
	case CS_BODY: {
		int drained = evbuffer_get_length(bufferevent_get_output(c->bev)) == 0;

		set_accepted(c, code, text);
		if (!drained) {
			/*
			 * An answer before the end of the message: the rest of the
			 * body would be read as commands. The verdict stands; the
			 * session ends (the connection, and its references into the
			 * body, go before on_txn_done).
			 */
			c->txn_stage = 8;
			close_conn(c);
			if (notify_txn(c, t) < 0)
				return -1;
			return notify_closed(c, code, text, 8, 0);
		}
		t->bytes_sent = t->body_len;
		c->txn_stage = 9;
		return txn_finish(c);
	}
	case CS_DOT:
		return txn_finish(c);
	case CS_RSET:
		if (is2xx(code))
			return txn_finish(c);
		/* The transaction's verdicts stand; a session that refuses RSET is not reused. */
		{
			int stage = stage_now(c);

			close_conn(c);
			if (notify_txn(c, t) < 0)
				return -1;
			return notify_closed(c, code, text, stage, 0);
		}
	default:
		break;
	}
	return 0;
}

static void
add_run(struct evbuffer *out, const char *p, size_t n)
{
	if (n == 0)
		return;
	if (n < BODY_COPY_MAX)
		evbuffer_add(out, p, n);
	else
		evbuffer_add_reference(out, p, n, NULL, NULL);
}

/*
 * write_body: the message dot-stuffed, every line end made CRLF (a bare CR
 * or LF becomes CRLF), a CRLF added if the last line lacks one, then ".".
 */
static void
write_body(struct smtp_client *c)
{
	const char *b = c->txn->body;
	size_t n = c->txn->body_len, run = 0;
	struct evbuffer *out = evbuffer_new();
	int bol = 1;

	for (size_t i = 0; i < n; i++) {
		char ch = b[i];

		if (bol && ch == '.') {
			add_run(out, b + run, i - run);
			evbuffer_add(out, ".", 1);
			run = i;                /* the original dot starts the next run */
			bol = 0;
			continue;
		}
		bol = 0;
		if (ch == '\r') {
			if (i + 1 < n && b[i + 1] == '\n') {
				i++;
				bol = 1;
				continue;
			}
		} else if (ch != '\n') {
			continue;
		}
		/* A bare CR or bare LF. */
		add_run(out, b + run, i - run);
		evbuffer_add(out, "\r\n", 2);
		run = i + 1;
		bol = 1;
	}
	add_run(out, b + run, n - run);
	if (!bol)
		evbuffer_add(out, "\r\n", 2);
	evbuffer_add(out, ".\r\n", 3);
	bufferevent_write_buffer(c->bev, out);
	evbuffer_free(out);
}

/* arg_ok: an address safe to put in a command: no control characters. */
static int
arg_ok(const char *s)
{
	if (s == NULL)
		return 0;
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch < 0x20 || ch == 0x7f)
			return 0;
	}
	return 1;
}

/* xtext_ok: RFC 3461 xtext characters (printable ASCII but space and '='). */
static int
xtext_ok(const char *s)
{
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch < 0x21 || ch > 0x7e || ch == '=')
			return 0;
	}
	return 1;
}

/* --- TLS --------------------------------------------------------------- */

/*
 * tls_start: STARTTLS got 220. Whatever else the server sent in clear is
 * thrown away (RFC 3207 §6), then the TLS filter goes over the socket.
 */
static int
tls_start(struct smtp_client *c)
{
	char err[256], text[SMTP_REPLY_MAX];
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct bufferevent *tls;
	SSL_CTX *ctx;
	SSL *ssl;

	evbuffer_drain(in, evbuffer_get_length(in));
	smtp_reply_free(&c->rp);        /* nothing of the clear text carries over */
	smtp_reply_init(&c->rp);
	if (c->p.verify == SMTP_VERIFY_HOST && (c->tls_host == NULL || c->tls_host[0] == '\0')) {
		snprintf(text, sizeof(text), "[internal] STARTTLS failed: no host name to verify");
		return end_session(c, 0, text, 451, "451 4.7.0 [internal] STARTTLS failed");
	}
	ctx = tls_ctx_get(c->tls_ca_file, err, sizeof(err));
	if (ctx == NULL || (ssl = SSL_new(ctx)) == NULL) {
		if (ctx != NULL) {
			ERR_clear_error();
			snprintf(err, sizeof(err), "out of memory");
		}
		snprintf(text, sizeof(text), "[internal] STARTTLS failed: %s", err);
		return end_session(c, 0, text, 451, "451 4.7.0 [internal] STARTTLS failed");
	}
	if (c->p.verify != SMTP_VERIFY_NO)
		SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
	if (c->p.verify == SMTP_VERIFY_HOST) {
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		SSL_set1_host(ssl, c->tls_host);
	}
	if (c->tls_host != NULL && c->tls_host[0] != '\0' && c->tls_host[0] != '[') {
		unsigned char addr[sizeof(struct in6_addr)];

		/* RFC 6066 §3: SNI carries host names, never address literals. */
		if (inet_pton(AF_INET, c->tls_host, addr) != 1 &&
		    inet_pton(AF_INET6, c->tls_host, addr) != 1)
			SSL_set_tlsext_host_name(ssl, c->tls_host);
	}
	tls = bufferevent_openssl_filter_new(c->base, c->bev, ssl, BUFFEREVENT_SSL_CONNECTING,
	                                     BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (tls == NULL) {
		SSL_free(ssl);
		return end_session(c, 0, "[internal] STARTTLS failed: cannot set up TLS", 451,
		                   "451 4.7.0 [internal] STARTTLS failed");
	}
	bufferevent_openssl_set_allow_dirty_shutdown(tls, 1);
	c->bev = tls;
	bufferevent_setcb(tls, read_cb, write_cb, event_cb, c);
	bufferevent_enable(tls, EV_READ | EV_WRITE);
	enter(c, CS_HANDSHAKE);
	return 0;
}

/* tls_error_text: why TLS failed: the verification result, else OpenSSL's errors. */
static void
tls_error_text(struct smtp_client *c, char *buf, size_t len)
{
	SSL *ssl = c->bev != NULL ? bufferevent_openssl_get_ssl(c->bev) : NULL;
	unsigned long e;
	size_t used = 0;
	long vr;

	buf[0] = '\0';
	if (ssl != NULL && c->p.verify != SMTP_VERIFY_NO &&
	    (vr = SSL_get_verify_result(ssl)) != X509_V_OK) {
		int n = snprintf(buf, len, "certificate verification failed: %s",
		                 X509_verify_cert_error_string(vr));
		used = n < 0 ? 0 : (size_t)n >= len ? len - 1 : (size_t)n;
	}
	while (c->bev != NULL && (e = bufferevent_get_openssl_error(c->bev)) != 0) {
		char one[200];

		if (used > 0)
			continue;       /* the verification result says it best; drain the rest */
		ERR_error_string_n(e, one, sizeof(one));
		int n = snprintf(buf + used, len - used, "%s", one);
		used = n < 0 ? used : used + (size_t)n >= len ? len - 1 : used + (size_t)n;
	}
	ERR_clear_error();
	if (buf[0] == '\0') {
		int err = EVUTIL_SOCKET_ERROR();
		snprintf(buf, len, "%s", err ? evutil_socket_error_to_string(err)
		                             : "connection closed by the remote server");
	}
}

/* tls_ctx_get: the client SSL_CTX for ca_file (NULL = system store), built once. */
static SSL_CTX *
tls_ctx_get(const char *ca_file, char *err, size_t errlen)
{
	struct tls_ctx_entry *e;
	SSL_CTX *ctx = NULL;

	pthread_mutex_lock(&tls_ctx_lock);
	for (e = tls_ctx_cache; e != NULL; e = e->next) {
		if ((e->ca_file == NULL && ca_file == NULL) ||
		    (e->ca_file != NULL && ca_file != NULL && strcmp(e->ca_file, ca_file) == 0)) {
			ctx = e->ctx;
			goto out;
		}
	}
	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL) {
		ERR_clear_error();
		snprintf(err, errlen, "cannot make a TLS context");
		goto out;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	if ((ca_file != NULL ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
	                     : SSL_CTX_set_default_verify_paths(ctx)) != 1) {
		unsigned long ec = ERR_get_error();
		char why[200];

		ERR_error_string_n(ec, why, sizeof(why));
		ERR_clear_error();
		snprintf(err, errlen, "CA file \"%s\": %s", ca_file ? ca_file : "(system)", why);
		SSL_CTX_free(ctx);
		ctx = NULL;
		goto out;
	}
	e = xcalloc(1, sizeof(*e));
	e->ca_file = ca_file != NULL ? xstrdup(ca_file) : NULL;
	e->ctx = ctx;
	e->next = tls_ctx_cache;
	tls_ctx_cache = e;
out:
	pthread_mutex_unlock(&tls_ctx_lock);
	return ctx;
}

/*
 * smtp_session.c - the ESMTP server session (RFC 5321), one per client.
 *
 * smtp_session_start and smtp_session_shutdown (listener_internal.h).
 *
 * A session is an explicit state machine on the loop that accepted it:
 *
 *   CMD       reading command lines (HELO, EHLO, MAIL, RCPT, DATA, BDAT,
 *             RSET, NOOP, QUIT, VRFY, EXPN, HELP, STARTTLS, AUTH);
 *             pipelined commands are answered in order and the replies
 *             leave in one write
 *   DATA      feeding the DATA parser (smtp_parse.h: only CRLF.CRLF ends it)
 *   BDAT      reading exactly the announced chunk octets
 *   TLS       after "220 Ready to start TLS": the TLS handshake (RFC 3207).
 *             Whatever the client sent after STARTTLS in the same read is
 *             thrown away unread first, so nothing pipelined in plain text
 *             is ever executed inside TLS (CVE-2011-0411). Once the
 *             handshake is done the session forgets HELO/EHLO and the
 *             transaction; a failed handshake is logged and closes.
 *   AUTH      reading SASL response lines (RFC 4954: PLAIN, LOGIN; "*"
 *             cancels)
 *   VERIFY    a worker thread checks the password (smtp_auth.h); input waits
 *   AUTH_DELAY  a failed AUTH is answered after a growing delay (a timer;
 *             1 s, 2 s, 4 s, 8 s at most); the last allowed failure gets
 *             421 4.7.0 and the close
 *   SPOOLING  the message is being made durable; input waits
 *   CLOSING   the last reply is being written; then the session is freed
 *
 * Every state has the same timeout, Idle_Time. The 250 after DATA (or BDAT
 * LAST) is sent only when the spool said the batch is on stable storage;
 * a failed commit gives 451 4.3.0. Every accepted recipient-message fires
 * log_reception_v1, every refused command log_rejection.
 *
 * The session owns its bufferevent (the socket one, or the TLS filter over
 * it after STARTTLS), transaction, spool batch, references on its TLS
 * context and users table, and the AUTH delay timer. A session whose client
 * goes away while the spool or a password check works is freed by that
 * callback, never before.
 */
#include <ctype.h>
#include <errno.h>
#include <stdatomic.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <impetus/hooks/core/log_reception_v1.h>
#include <impetus/hooks/core/log_rejection.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "conf/conf.h"
#include "conf/conf_core.h"
#include "event/loop.h"
#include "event/timer.h"
#include "lib/diag.h"
#include "lib/netaddr.h"
#include "lib/strbuf.h"
#include "lib/xalloc.h"
#include "listener/listener.h"
#include "listener/listener_internal.h"
#include "listener/smtp_auth.h"
#include "listener/smtp_parse.h"
#include "listener/smtp_tls.h"
#include "message/message.h"
#include "queue/queue.h"
#include "spool/spool.h"

#define SESSION_READ_CHUNK 4096     /* bytes of command input looked at per pass */
#define BODY_FLUSH 65536            /* body bytes kept before handing them to the batch */
#define AUTH_DELAY_MAX_S 8          /* longest pause before answering a failed AUTH */
#define LINE_COPY_MAX (SMTP_AUTH_LINE_MAX > SMTP_LINE_MAX ? SMTP_AUTH_LINE_MAX : SMTP_LINE_MAX)

enum session_state {
	SS_CMD,
	SS_DATA,
	SS_BDAT,
	SS_TLS,
	SS_AUTH,
	SS_VERIFY,
	SS_AUTH_DELAY,
	SS_SPOOLING,
	SS_CLOSING,
};

struct session_settings {
	unsigned ext;                   /* SMTP_EXT_* offered */
	uint64_t max_size;              /* bytes, 0 = no limit */
	long max_rcpts;                 /* per transaction, 0 = no limit */
	long max_receptions;            /* per connection, 0 = no limit */
	int require_ehlo;
	int bare_mode;                  /* enum smtp_bare_lf_mode */
	long idle_s;                    /* seconds */
	int relay_all;                  /* Open_Relay, or the client is in Relay_Hosts */
	const struct conf_setting *relay_domains; /* Relay_Domains */
	char hostname[256];             /* Banner_Hostname or the host name */
	SSL_CTX *tls_ctx;               /* referenced; NULL: STARTTLS not offered */
	struct smtp_auth_users *users;  /* referenced; NULL: AUTH not offered */
	int auth_without_tls;           /* Auth_Without_TLS */
	long auth_max_failures;         /* Auth_Max_Failures, per connection */
	long auth_peer_max;             /* Auth_Peer_Max_Failures, 0 = no limit */
	long auth_window_s;             /* Auth_Failure_Window, seconds */
};

struct smtp_session {
	enum session_state state;
	struct listen_sock *ls;         /* the address it came in on */
	struct loop *loop;              /* its loop; all work happens there */
	struct bufferevent *bev;        /* the connection */
	struct conf *conf;              /* generation read at connect, referenced */
	struct session_settings set;
	struct accept_construct ac;     /* for the hooks */
	int counted_peer;               /* entered in the per-client counts */
	struct smtp_line_reader lr;
	int greeted;                    /* HELO or EHLO seen */
	int esmtp;                      /* EHLO (not HELO) */
	char helo[256];                 /* the client's HELO/EHLO argument */
	unsigned receptions;            /* messages accepted on this connection */
	/* the transaction */
	int in_mail;                    /* MAIL accepted */
	struct smtp_mailbox from;
	struct smtp_mail_params mail_params;
	struct spool_batch *batch;      /* created at MAIL, committed at the end of data */
	size_t nrcpt;                   /* recipients accepted */
	struct smtp_data_parser dp;
	struct smtp_bdat_checker bc;
	uint64_t bdat_left;             /* octets of the current chunk still to read */
	int bdat_last;                  /* the current chunk is the LAST one */
	int bdat_started;               /* a BDAT transaction is in progress */
	int bdat_failed;                /* a chunk was refused: answer errors until LAST */
	struct strbuf body;             /* parsed content waiting to go into the batch */
	int client_gone;                /* the connection died while spooling or verifying */
	int tls;                        /* the TLS handshake is done */
	char *auth_user;                /* the authenticated user, owned; NULL before AUTH */
	struct smtp_line_reader auth_lr; /* SASL response lines (longer than commands) */
	enum smtp_auth_mech auth_mech;  /* the exchange in progress (SS_AUTH) */
	int auth_step;                  /* LOGIN: 0 wants the user name, 1 the password */
	char auth_login_user[SMTP_AUTH_FIELD_MAX + 1]; /* LOGIN: the user name given */
	unsigned auth_failures;         /* failed AUTH attempts on this connection */
	struct timer *auth_timer;       /* the delay before a failure's reply */
	struct evbuffer_cb_entry *socket_drained; /* TLS: watches the socket's output */
	struct smtp_session *prev, *next; /* the sessions of this loop */
};

static __thread struct smtp_session *loop_sessions;     /* per loop thread */
static atomic_uint_fast64_t session_conn_ids;

static void session_read(struct bufferevent *bev, void *arg);
static void session_write(struct bufferevent *bev, void *arg);
static void session_event(struct bufferevent *bev, short what, void *arg);
static void session_process(struct smtp_session *s);
static void session_free(struct smtp_session *s);
static void reply(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void reject(struct smtp_session *s, int phase, int code, const char *enh,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void txn_reset(struct smtp_session *s);
static void data_finish(struct smtp_session *s, enum smtp_data_status st);
static void tls_start(struct smtp_session *s);
static void tls_established(struct smtp_session *s);
static void auth_response(struct smtp_session *s, const char *line, size_t len);
static void auth_verified(int ok, const char *user, void *arg);
static void auth_delay_over(struct timer *t, void *arg);

/* ------------------------------------------------------------ settings */

static unsigned
ext_bits(const struct conf_setting *list)
{
	static const struct { const char *name; unsigned bit; } names[] = {
		{ "PIPELINING", SMTP_EXT_PIPELINING }, { "SIZE", SMTP_EXT_SIZE },
		{ "8BITMIME", SMTP_EXT_8BITMIME }, { "ENHANCEDSTATUSCODES", SMTP_EXT_ENHANCEDSTATUSCODES },
		{ "SMTPUTF8", SMTP_EXT_SMTPUTF8 }, { "DSN", SMTP_EXT_DSN },
		{ "CHUNKING", SMTP_EXT_CHUNKING }, { "BINARYMIME", SMTP_EXT_BINARYMIME },
		{ "STARTTLS", SMTP_EXT_STARTTLS }, { "AUTH", SMTP_EXT_AUTH },
	};
	unsigned bits = 0;

	for (size_t i = 0; list != NULL && i < list->nlist; i++)
		for (size_t j = 0; j < sizeof(names) / sizeof(names[0]); j++)
			if (strcasecmp(list->list[i], names[j].name) == 0)
				bits |= names[j].bit;
	if (!(bits & SMTP_EXT_CHUNKING))
		bits &= ~SMTP_EXT_BINARYMIME;
	return bits;
}

/* The scope of the most specific Peer matching addr in listen or listener. */
static const struct conf_scope *
peer_scope(const struct conf_scope *listener, const struct conf_scope *listen,
           const struct sockaddr *addr)
{
	const struct conf_scope *best = NULL, *p;
	unsigned best_prefix = 0;
	char err[128];

	for (int pass = 0; pass < 2; pass++) {
		const struct conf_scope *parent = pass == 0 ? listen : listener;
		for (size_t i = 0; parent != NULL && (p = conf_scope_child(parent, CONF_SCOPE_PEER, i)); i++) {
			struct cidr c;
			if (cidr_parse(p->name, &c, err, sizeof(err)) < 0 || !cidr_match(&c, addr))
				continue;
			/* Longer prefixes win; at equal length the Listen's own Peer. */
			if (best == NULL || c.prefix > best_prefix) {
				best = p;
				best_prefix = c.prefix;
			}
		}
	}
	return best;
}

static int
addr_in_list(const struct conf_setting *list, const struct sockaddr *addr)
{
	char err[128];

	for (size_t i = 0; list != NULL && i < list->nlist; i++) {
		struct cidr c;
		if (cidr_parse(list->list[i], &c, err, sizeof(err)) == 0 && cidr_match(&c, addr))
			return 1;
	}
	return 0;
}

static void
settings_load(struct smtp_session *s, const struct conf_scope *scope)
{
	struct session_settings *st = &s->set;
	const struct conf_setting *v;
	const struct sockaddr *peer = (const struct sockaddr *)&s->ac.remote;

	st->ext = ext_bits(conf_resolve_chain(scope, &conf_opt_smtp_extensions));
	st->max_size = (uint64_t)conf_resolve_chain(scope, &conf_opt_max_message_size)->i;
	st->max_rcpts = (long)conf_resolve_chain(scope, &conf_opt_max_recipients_per_message)->i;
	st->max_receptions = (long)conf_resolve_chain(scope, &conf_opt_max_receptions_per_connection)->i;
	st->require_ehlo = (int)conf_resolve_chain(scope, &conf_opt_require_ehlo)->i;
	st->bare_mode = conf_resolve_chain(scope, &conf_opt_bare_line_feed)->i == 1 ?
	                SMTP_BARE_NORMALIZE : SMTP_BARE_REJECT;
	st->idle_s = (long)conf_resolve_chain(scope, &conf_opt_idle_time)->i;
	/* A local (Unix socket) client is trusted like a Relay_Hosts one: only
	 * the socket's permissions decide who may connect. */
	st->relay_all = conf_resolve_chain(scope, &conf_opt_open_relay)->i ||
	                peer->sa_family == AF_UNIX ||
	                addr_in_list(conf_resolve_chain(scope, &conf_opt_relay_hosts), peer);
	st->relay_domains = conf_resolve_chain(scope, &conf_opt_relay_domains);
	v = conf_resolve_chain(scope, &conf_opt_banner_hostname);
	if (v != NULL)
		snprintf(st->hostname, sizeof(st->hostname), "%s", v->s);
	else if (gethostname(st->hostname, sizeof(st->hostname)) < 0)
		snprintf(st->hostname, sizeof(st->hostname), "localhost");
	st->hostname[sizeof(st->hostname) - 1] = '\0';

	/* STARTTLS: listed, and a certificate in this scope (not over a Unix socket). */
	const struct conf_setting *cert = conf_resolve_chain(scope, &conf_opt_tls_certificate);
	if ((st->ext & SMTP_EXT_STARTTLS) && cert != NULL && peer->sa_family != AF_UNIX) {
		const struct conf_setting *key = conf_resolve_chain(scope, &conf_opt_tls_key);
		const struct conf_setting *ca = conf_resolve_chain(scope, &conf_opt_tls_ca);
		char err[1024];
		int first;
		st->tls_ctx = smtp_tls_ctx_get(s->conf->generation, cert->s, key ? key->s : NULL,
		                               ca ? ca->s : NULL, &first, err, sizeof(err));
		if (st->tls_ctx == NULL && first)
			diag_warn("STARTTLS not offered: %s", err);
	}
	if (st->tls_ctx == NULL)
		st->ext &= ~(unsigned)SMTP_EXT_STARTTLS;
	/* AUTH: listed, and a users file in this scope. */
	v = conf_resolve_chain(scope, &conf_opt_auth_users_file);
	if ((st->ext & SMTP_EXT_AUTH) && v != NULL) {
		char err[1024];
		int first;
		st->users = smtp_auth_users_get(s->conf->generation, v->s, &first, err, sizeof(err));
		if (st->users == NULL && first)
			diag_warn("AUTH not offered: Auth_Users_File %s", err);
	}
	if (st->users == NULL)
		st->ext &= ~(unsigned)SMTP_EXT_AUTH;
	st->auth_without_tls = (int)conf_resolve_chain(scope, &conf_opt_auth_without_tls)->i;
	st->auth_max_failures = (long)conf_resolve_chain(scope, &conf_opt_auth_max_failures)->i;
	st->auth_peer_max = (long)conf_resolve_chain(scope, &conf_opt_auth_peer_max_failures)->i;
	st->auth_window_s = (long)conf_resolve_chain(scope, &conf_opt_auth_failure_window)->i;
}

/* AUTH is offered now: configured, and after TLS unless Auth_Without_TLS. */
static int
auth_offered(const struct smtp_session *s)
{
	return (s->set.ext & SMTP_EXT_AUTH) && (s->tls || s->set.auth_without_tls);
}

/* The extensions in force now: STARTTLS only before TLS, AUTH when offered. */
static unsigned
session_ext(const struct smtp_session *s)
{
	unsigned ext = s->set.ext;

	if (s->tls)
		ext &= ~(unsigned)SMTP_EXT_STARTTLS;
	if (!auth_offered(s))
		ext &= ~(unsigned)SMTP_EXT_AUTH;
	return ext;
}

/* ------------------------------------------------------------- replies */

static void
reply(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	va_list ap;

	if (enh != NULL && (s->set.ext & SMTP_EXT_ENHANCEDSTATUSCODES))
		evbuffer_add_printf(out, "%d %s ", code, enh);
	else
		evbuffer_add_printf(out, "%d ", code);
	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
}

static void
call_rejection(struct smtp_session *s, int phase, const char *fmt, ...)
{
	va_list ap;
	struct timeval now;

	if (!has_core_log_rejection_hook())
		return;
	gettimeofday(&now, NULL);
	va_start(ap, fmt);
	call_core_log_rejection_hook(&now, &s->ac, NULL, phase, fmt, ap);
	va_end(ap);
}

/* A refusal: the reply, and the same text to the rejection log. */
static void
reject(struct smtp_session *s, int phase, int code, const char *enh, const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	reply(s, code, enh, "%s", text);
	call_rejection(s, phase, "%d %s %s", code, enh ? enh : "", text);
}

static void
reply_parse_error(struct smtp_session *s, int phase, int err)
{
	int code;
	const char *enh, *text = smtp_parse_strerror(err, &code, &enh);

	reject(s, phase, code, enh, "%s", text);
}

/* Octets still to be written: with TLS, in the filter and in the socket's buffer. */
static size_t
output_pending(struct smtp_session *s)
{
	struct bufferevent *under = bufferevent_get_underlying(s->bev);
	size_t n = evbuffer_get_length(bufferevent_get_output(s->bev));

	if (under != NULL)
		n += evbuffer_get_length(bufferevent_get_output(under));
	return n;
}

/* Say the last words and close once they are written. */
static void
close_after_reply(struct smtp_session *s)
{
	s->state = SS_CLOSING;
	bufferevent_disable(s->bev, EV_READ);
	if (s->auth_timer != NULL)
		timer_stop(s->auth_timer);
	if (output_pending(s) == 0)
		session_free(s);
}

/* TLS: the socket's output shrank; a closing session goes once all is sent
 * (the filter's write callback fires when its records are made, not sent). */
static void
socket_output_drained(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct smtp_session *s = arg;

	if (s->state == SS_CLOSING && info->n_deleted > 0 && output_pending(s) == 0)
		session_free(s);
}

/* ------------------------------------------------------------ lifecycle */

static atomic_uint_fast64_t sessions_open, sessions_total;

void
listener_stats(struct listener_stats *out)
{
	out->sessions_open = atomic_load_explicit(&sessions_open, memory_order_relaxed);
	out->sessions_total = atomic_load_explicit(&sessions_total, memory_order_relaxed);
}

void
smtp_session_start(struct listen_sock *ls, struct loop *l, int fd, const struct sockaddr *peer,
                   int peerlen)
{
	struct smtp_session *s = xcalloc(1, sizeof(*s));
	struct conf *c = conf_current();
	const struct conf_scope *listener = NULL, *listen = NULL, *el, *lsn, *scope;

	atomic_fetch_add_explicit(&sessions_open, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&sessions_total, 1, memory_order_relaxed);
	socklen_t llen = sizeof(s->ac.local);
	struct timeval idle;

	s->ls = ls;
	s->loop = l;
	s->conf = c;
	s->ac.conn_id = atomic_fetch_add(&session_conn_ids, 1) + 1;
	message_set_addr(&s->ac.remote, peer);
	getsockname(fd, (struct sockaddr *)&s->ac.local, &llen);
	for (size_t i = 0; listen == NULL && (el = conf_scope_child(c->global, CONF_SCOPE_ESMTP_LISTENER, i)); i++)
		for (size_t j = 0; listen == NULL && (lsn = conf_scope_child(el, CONF_SCOPE_LISTEN, j)); j++)
			if (strcmp(lsn->name, ls->name) == 0) {
				listener = el;
				listen = lsn;
			}
	scope = peer_scope(listener, listen, peer);
	if (scope == NULL)
		scope = listen ? listen : c->global;
	settings_load(s, scope);
	smtp_line_init(&s->lr, SMTP_LINE_MAX);
	smtp_line_init(&s->auth_lr, SMTP_AUTH_LINE_MAX);

	evutil_make_socket_nonblocking(fd);
	s->bev = bufferevent_socket_new(loop_base(l), fd, BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL) {
		close(fd);
		if (s->set.tls_ctx != NULL)
			SSL_CTX_free(s->set.tls_ctx);
		smtp_auth_users_unref(s->set.users);
		conf_unref(c);
		free(s);
		atomic_fetch_sub_explicit(&sessions_open, 1, memory_order_relaxed);
		return;
	}
	bufferevent_setcb(s->bev, session_read, session_write, session_event, s);
	idle.tv_sec = s->set.idle_s;
	idle.tv_usec = 0;
	bufferevent_set_timeouts(s->bev, &idle, &idle);
	s->next = loop_sessions;
	if (loop_sessions != NULL)
		loop_sessions->prev = s;
	loop_sessions = s;

	/* Limits: per Listen address and per client address. */
	int per_listen = atomic_fetch_add(&ls->sessions, 1) + 1;
	long max_listen = listen ? (long)conf_resolve_chain(listen, &conf_opt_listener_sessions)->i : 0;
	long max_peer = (long)conf_resolve_chain(scope, &conf_opt_peer_sessions)->i;
	int per_peer = peer_sessions_enter(peer);
	s->counted_peer = 1;
	s->state = SS_CMD;
	bufferevent_enable(s->bev, EV_READ);
	if ((max_listen > 0 && per_listen > max_listen) || (max_peer > 0 && per_peer > max_peer)) {
		reject(s, VALIDATE_PHASE_CONNECT, 421, "4.4.5", "%s Too many sessions, try again later",
		       s->set.hostname);
		close_after_reply(s);
		return;
	}
	reply(s, 220, NULL, "%s ESMTP impetus", s->set.hostname);
}

static void
session_free(struct smtp_session *s)
{
	if (s->state == SS_SPOOLING || s->state == SS_VERIFY) {
		/* The spool's (or the password check's) callback still refers to us: it frees. */
		s->client_gone = 1;
		return;
	}
	if (s->prev != NULL)
		s->prev->next = s->next;
	else if (loop_sessions == s)
		loop_sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	if (s->counted_peer)
		peer_sessions_leave((const struct sockaddr *)&s->ac.remote);
	atomic_fetch_sub(&s->ls->sessions, 1);
	if (s->batch != NULL)
		spool_batch_free(s->batch);
	strbuf_free(&s->body);
	timer_free(s->auth_timer);
	if (s->socket_drained != NULL)
		evbuffer_remove_cb_entry(bufferevent_get_output(bufferevent_get_underlying(s->bev)),
		                         s->socket_drained);
	if (s->auth_user != NULL)
		free(s->auth_user);
	explicit_bzero(s->auth_login_user, sizeof(s->auth_login_user));
	bufferevent_free(s->bev);       /* the TLS filter frees its SSL and the socket's one */
	if (s->set.tls_ctx != NULL)
		SSL_CTX_free(s->set.tls_ctx);
	smtp_auth_users_unref(s->set.users);
	conf_unref(s->conf);
	free(s);
	atomic_fetch_sub_explicit(&sessions_open, 1, memory_order_relaxed);
}

void
smtp_session_shutdown(struct loop *l)
{
	struct smtp_session *s = loop_sessions, *next;

	for (; s != NULL; s = next) {
		next = s->next;
		if (s->state == SS_SPOOLING || s->state == SS_VERIFY || s->state == SS_CLOSING)
			continue;       /* finishes its reply, then goes */
		if (s->state == SS_TLS) {
			s->state = SS_CLOSING;  /* no reply fits inside a handshake */
			session_free(s);
			continue;
		}
		reply(s, 421, "4.3.2", "%s Service shutting down", s->set.hostname);
		close_after_reply(s);
	}
}

static void
session_write(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;

	if (s->state == SS_CLOSING && output_pending(s) == 0)
		session_free(s);
}

/* The OpenSSL errors libevent kept for bev, as one line. */
static void
tls_bev_error_text(struct bufferevent *bev, char *buf, size_t len)
{
	unsigned long e;
	size_t used = 0;

	buf[0] = '\0';
	while ((e = bufferevent_get_openssl_error(bev)) != 0 && used + 2 < len) {
		char one[256];
		ERR_error_string_n(e, one, sizeof(one));
		int n = snprintf(buf + used, len - used, "%s%s", used ? "; " : "", one);
		if (n < 0)
			break;
		used += (size_t)n;
	}
	if (buf[0] == '\0')
		snprintf(buf, len, "%s", EVUTIL_SOCKET_ERROR() ? evutil_socket_error_to_string(
		         EVUTIL_SOCKET_ERROR()) : "connection closed");
}

static void
session_event(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_session *s = arg;

	if ((what & BEV_EVENT_CONNECTED) && s->state == SS_TLS) {
		tls_established(s);
		return;
	}
	if (s->state == SS_TLS && (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF | BEV_EVENT_TIMEOUT))) {
		char ip[64], why[512];
		sockaddr_render_ip((const struct sockaddr *)&s->ac.remote, ip, sizeof(ip));
		if (what & BEV_EVENT_TIMEOUT)
			snprintf(why, sizeof(why), "timeout");
		else
			tls_bev_error_text(bev, why, sizeof(why));
		diag_info("connection %llu from [%s]: TLS handshake failed: %s",
		          (unsigned long long)s->ac.conn_id, ip, why);
		s->state = SS_CLOSING;
		session_free(s);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		if (s->state == SS_SPOOLING || s->state == SS_VERIFY || s->state == SS_AUTH_DELAY)
			return;         /* our own wait, not the client's */
		if (s->state == SS_CLOSING) {
			session_free(s);        /* the client does not read its last reply */
			return;
		}
		reply(s, 421, "4.4.2", "%s Error: timeout exceeded", s->set.hostname);
		call_rejection(s, VALIDATE_PHASE_CONNECT, "421 4.4.2 idle timeout");
		close_after_reply(s);
		return;
	}
	/* EOF or an error: the client is gone. */
	if (s->state == SS_SPOOLING || s->state == SS_VERIFY) {
		s->client_gone = 1;
		return;
	}
	s->state = SS_CLOSING;
	session_free(s);
}

/* ------------------------------------------------------------ commands */

static void
txn_reset(struct smtp_session *s)
{
	if (s->batch != NULL) {
		spool_batch_free(s->batch);
		s->batch = NULL;
	}
	s->in_mail = 0;
	s->nrcpt = 0;
	s->bdat_started = 0;
	s->bdat_failed = 0;
	s->bdat_left = 0;
	memset(&s->from, 0, sizeof(s->from));
	memset(&s->mail_params, 0, sizeof(s->mail_params));
	strbuf_reset(&s->body);
}

static void
cmd_ehlo(struct smtp_session *s, const struct smtp_cmd *cmd, int esmtp)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	size_t n = cmd->arglen < sizeof(s->helo) - 1 ? cmd->arglen : sizeof(s->helo) - 1;

	memcpy(s->helo, cmd->arg, n);
	s->helo[n] = '\0';
	for (size_t i = 0; i < n; i++)
		if (!isgraph((unsigned char)s->helo[i]))
			s->helo[i] = '_';
	s->greeted = 1;
	s->esmtp = esmtp;
	txn_reset(s);
	if (!esmtp) {
		reply(s, 250, NULL, "%s", s->set.hostname);
		return;
	}
	evbuffer_add_printf(out, "250-%s\r\n", s->set.hostname);
	if (s->set.ext & SMTP_EXT_PIPELINING)
		evbuffer_add_printf(out, "250-PIPELINING\r\n");
	if (s->set.ext & SMTP_EXT_SIZE)
		evbuffer_add_printf(out, "250-SIZE %llu\r\n", (unsigned long long)s->set.max_size);
	if (s->set.ext & SMTP_EXT_8BITMIME)
		evbuffer_add_printf(out, "250-8BITMIME\r\n");
	if (s->set.ext & SMTP_EXT_ENHANCEDSTATUSCODES)
		evbuffer_add_printf(out, "250-ENHANCEDSTATUSCODES\r\n");
	if (s->set.ext & SMTP_EXT_SMTPUTF8)
		evbuffer_add_printf(out, "250-SMTPUTF8\r\n");
	if (s->set.ext & SMTP_EXT_DSN)
		evbuffer_add_printf(out, "250-DSN\r\n");
	if (s->set.ext & SMTP_EXT_BINARYMIME)
		evbuffer_add_printf(out, "250-BINARYMIME\r\n");
	if (s->set.ext & SMTP_EXT_CHUNKING)
		evbuffer_add_printf(out, "250-CHUNKING\r\n");
	if (session_ext(s) & SMTP_EXT_STARTTLS)
		evbuffer_add_printf(out, "250-STARTTLS\r\n");
	if (session_ext(s) & SMTP_EXT_AUTH)
		evbuffer_add_printf(out, "250-AUTH PLAIN LOGIN\r\n");
	evbuffer_add_printf(out, "250 HELP\r\n");
}

static void
cmd_mail(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	const char *params;
	size_t plen;
	int err;

	if (s->in_mail) {
		reject(s, VALIDATE_PHASE_MAILFROM, 503, "5.5.1", "Error: nested MAIL command");
		return;
	}
	if (!s->greeted && s->set.require_ehlo) {
		reject(s, VALIDATE_PHASE_MAILFROM, 503, "5.5.1", "Error: send HELO/EHLO first");
		return;
	}
	if (s->set.max_receptions > 0 && s->receptions >= (unsigned long)s->set.max_receptions) {
		reject(s, VALIDATE_PHASE_MAILFROM, 421, "4.7.0",
		       "%s Too many messages in this connection", s->set.hostname);
		close_after_reply(s);
		return;
	}
	int flags = SMTP_PATH_ALLOW_NULL | ((s->set.ext & SMTP_EXT_SMTPUTF8) ? SMTP_PATH_ALLOW_UTF8 : 0);
	err = smtp_parse_path(cmd->arg, cmd->arglen, flags, &s->from, &params, &plen);
	if (err == 0)
		err = smtp_parse_mail_params(params, plen, session_ext(s), &s->mail_params);
	if (err == 0 && s->from.utf8 && !s->mail_params.smtputf8)
		err = SMTP_PARSE_UTF8_NOT_ALLOWED;
	if (err != 0) {
		reply_parse_error(s, VALIDATE_PHASE_MAILFROM, err);
		return;
	}
	if (s->set.max_size > 0 && s->mail_params.size_given && s->mail_params.size > s->set.max_size) {
		reject(s, VALIDATE_PHASE_MAILFROM, 552, "5.3.4", "Message size exceeds fixed limit");
		return;
	}
	char path[600];
	smtp_mailbox_render(&s->from, path, sizeof(path));
	s->batch = spool_batch_new(s->ls->spool);
	if (spool_batch_set_mail_from(s->batch, path) < 0) {
		txn_reset(s);
		reject(s, VALIDATE_PHASE_MAILFROM, 501, "5.1.7", "Bad sender address");
		return;
	}
	if (s->mail_params.ret != SMTP_RET_NONE || s->mail_params.envid[0] != '\0')
		spool_batch_set_dsn(s->batch, s->mail_params.ret == SMTP_RET_FULL ? SPOOL_RET_FULL :
		                    s->mail_params.ret == SMTP_RET_HDRS ? SPOOL_RET_HDRS : SPOOL_RET_UNSET,
		                    s->mail_params.envid[0] ? s->mail_params.envid : NULL);
	spool_batch_set_flags(s->batch, (s->mail_params.smtputf8 ? SPOOL_F_SMTPUTF8 : 0) |
	                      (s->mail_params.body == SMTP_BODY_8BITMIME ? SPOOL_F_8BITMIME : 0) |
	                      (s->mail_params.body == SMTP_BODY_BINARYMIME ? SPOOL_F_BINARYMIME : 0));
	s->in_mail = 1;
	reply(s, 250, "2.1.0", "Ok");
}

/* Relay_Domains entry: "example.test" exactly, "*.example.test" its subdomains. */
static int
relay_domain_allowed(const struct conf_setting *list, const char *domain)
{
	size_t dlen = strlen(domain);

	for (size_t i = 0; list != NULL && i < list->nlist; i++) {
		const char *d = list->list[i];
		if (d[0] == '*' && d[1] == '.') {
			size_t slen = strlen(d + 1);       /* ".example.test" */
			if (dlen > slen && strcasecmp(domain + dlen - slen, d + 1) == 0)
				return 1;
		} else if (strcasecmp(d, domain) == 0) {
			return 1;
		}
	}
	return 0;
}

static void
cmd_rcpt(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	struct smtp_mailbox to;
	struct smtp_rcpt_params rp;
	const char *params;
	size_t plen;
	int err;

	if (!s->in_mail) {
		reject(s, VALIDATE_PHASE_RCPTTO, 503, "5.5.1", "Error: need MAIL command");
		return;
	}
	if (s->set.max_rcpts > 0 && s->nrcpt >= (size_t)s->set.max_rcpts) {
		reject(s, VALIDATE_PHASE_RCPTTO, 452, "4.5.3", "Error: too many recipients");
		return;
	}
	int flags = SMTP_PATH_ALLOW_POSTMASTER | (s->mail_params.smtputf8 ? SMTP_PATH_ALLOW_UTF8 : 0);
	err = smtp_parse_path(cmd->arg, cmd->arglen, flags, &to, &params, &plen);
	if (err == 0)
		err = smtp_parse_rcpt_params(params, plen, s->set.ext, &rp);
	if (err != 0) {
		reply_parse_error(s, VALIDATE_PHASE_RCPTTO, err);
		return;
	}
	/* The domain is what follows the last unquoted '@': '%', '!', routes and
	 * quoted '@' never change it, so they cannot open the relay. */
	int may_relay = s->set.relay_all || s->auth_user != NULL;
	if (!may_relay && (to.postmaster || !relay_domain_allowed(s->set.relay_domains, to.domain))) {
		if (!to.postmaster) {
			reject(s, VALIDATE_PHASE_RCPTTO, 550, "5.7.1", "<%s@%s>: Relay access denied",
			       to.local, to.domain);
			return;
		}
	}
	char addr[600];
	smtp_mailbox_render(&to, addr, sizeof(addr));
	unsigned notify = (rp.notify & SMTP_NOTIFY_NEVER ? SPOOL_NOTIFY_NEVER : 0) |
	                  (rp.notify & SMTP_NOTIFY_SUCCESS ? SPOOL_NOTIFY_SUCCESS : 0) |
	                  (rp.notify & SMTP_NOTIFY_FAILURE ? SPOOL_NOTIFY_FAILURE : 0) |
	                  (rp.notify & SMTP_NOTIFY_DELAY ? SPOOL_NOTIFY_DELAY : 0);
	if (spool_batch_add_rcpt(s->batch, addr, rp.orcpt[0] ? rp.orcpt : NULL, notify, "default") < 0) {
		reject(s, VALIDATE_PHASE_RCPTTO, 501, "5.1.3", "Bad recipient address");
		return;
	}
	s->nrcpt++;
	reply(s, 250, "2.1.5", "Ok");
}

/* The Received: trace header that heads every stored message. */
static void
add_received(struct smtp_session *s)
{
	char ip[64], date[64], line[1024];
	time_t now = time(NULL);
	struct tm tm;
	const char *with;
	int n;

	sockaddr_render_ip((const struct sockaddr *)&s->ac.remote, ip, sizeof(ip));
	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	/* RFC 3848 and RFC 6531 §3.7.4: S after TLS, A after AUTH. */
	static const char *const withs[2][4] = {
		{ "ESMTP", "ESMTPA", "ESMTPS", "ESMTPSA" },
		{ "UTF8SMTP", "UTF8SMTPA", "UTF8SMTPS", "UTF8SMTPSA" },
	};
	if (!s->esmtp && !s->mail_params.smtputf8)
		with = "SMTP";
	else
		with = withs[s->mail_params.smtputf8 ? 1 : 0][(s->tls ? 2 : 0) + (s->auth_user ? 1 : 0)];
	if (s->ac.remote.ss_family == AF_UNIX)
		n = snprintf(line, sizeof(line),
		             "Received: from %s (local submission)\r\n\tby %s (impetus) with %s id %s;\r\n\t%s\r\n",
		             s->helo[0] ? s->helo : "localhost", s->set.hostname, with,
		             spool_batch_id(s->batch), date);
	else
		n = snprintf(line, sizeof(line),
		             "Received: from %s ([%s])\r\n\tby %s (impetus) with %s id %s;\r\n\t%s\r\n",
		             s->helo[0] ? s->helo : "unknown", ip, s->set.hostname, with,
		             spool_batch_id(s->batch), date);
	if (n > 0)
		spool_batch_append(s->batch, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

static void
cmd_data(struct smtp_session *s)
{
	if (!s->in_mail) {
		reject(s, VALIDATE_PHASE_DATA, 503, "5.5.1", "Error: need MAIL command");
		return;
	}
	if (s->nrcpt == 0) {
		reject(s, VALIDATE_PHASE_DATA, 554, "5.5.1", "Error: no valid recipients");
		return;
	}
	if (s->bdat_started) {
		reject(s, VALIDATE_PHASE_DATA, 503, "5.5.1", "Error: DATA after BDAT");
		return;
	}
	add_received(s);
	smtp_data_init(&s->dp, s->set.bare_mode, (size_t)s->set.max_size);
	s->state = SS_DATA;
	reply(s, 354, NULL, "End data with <CR><LF>.<CR><LF>");
}

static void
cmd_bdat(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	uint64_t size;
	int last;

	if (!(s->set.ext & SMTP_EXT_CHUNKING)) {
		reject(s, VALIDATE_PHASE_DATA, 502, "5.5.1", "Error: command not implemented");
		return;
	}
	if (smtp_bdat_parse_arg(cmd->arg, cmd->arglen, &size, &last) != 0) {
		/* The chunk size is unknown: the stream cannot be followed. */
		reject(s, VALIDATE_PHASE_DATA, 501, "5.5.4", "Syntax: BDAT size [LAST]");
		close_after_reply(s);
		return;
	}
	s->bdat_left = size;
	s->bdat_last = last;
	if (!s->in_mail || s->nrcpt == 0) {
		/* Read and discard the chunk, then refuse it. */
		s->bdat_failed = 1;
	} else if (!s->bdat_started) {
		s->bdat_started = 1;
		add_received(s);
		smtp_bdat_init(&s->bc, s->mail_params.body, s->set.bare_mode, (size_t)s->set.max_size);
	}
	s->state = SS_BDAT;
}

static void
cmd_starttls(struct smtp_session *s)
{
	if (!(session_ext(s) & SMTP_EXT_STARTTLS)) {
		reject(s, VALIDATE_PHASE_CONNECT, s->tls ? 503 : 502, "5.5.1",
		       s->tls ? "Error: TLS already active" : "Error: command not implemented");
		return;
	}
	if (s->in_mail) {
		reject(s, VALIDATE_PHASE_CONNECT, 503, "5.5.1", "Error: MAIL transaction in progress");
		return;
	}
	reply(s, 220, "2.0.0", "Ready to start TLS");
	tls_start(s);
}

/*
 * The 220 is queued on the socket's bufferevent: drop every byte the client
 * sent after the STARTTLS line (RFC 3207 §6: never act on it), then put the
 * TLS filter over the socket; the 220 leaves first, in plain text.
 */
static void
tls_start(struct smtp_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	struct bufferevent *tls;
	SSL *ssl = SSL_new(s->set.tls_ctx);
	struct timeval idle = { s->set.idle_s, 0 };

	evbuffer_drain(in, evbuffer_get_length(in));
	smtp_line_init(&s->lr, SMTP_LINE_MAX);
	if (ssl == NULL) {
		ERR_clear_error();
		diag_warn("connection %llu: cannot start TLS: out of memory",
		          (unsigned long long)s->ac.conn_id);
		close_after_reply(s);
		return;
	}
	tls = bufferevent_openssl_filter_new(loop_base(s->loop), s->bev, ssl,
	                                     BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (tls == NULL) {
		SSL_free(ssl);
		diag_warn("connection %llu: cannot start TLS", (unsigned long long)s->ac.conn_id);
		close_after_reply(s);
		return;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(tls, 1);
	bufferevent_set_timeouts(s->bev, NULL, NULL);
	s->socket_drained = evbuffer_add_cb(bufferevent_get_output(s->bev), socket_output_drained, s);
	s->bev = tls;
	s->state = SS_TLS;
	bufferevent_setcb(tls, session_read, session_write, session_event, s);
	bufferevent_set_timeouts(tls, &idle, &idle);
	bufferevent_enable(tls, EV_READ);
}

/* The handshake is done: a fresh session inside TLS (RFC 3207 §4.2). */
static void
tls_established(struct smtp_session *s)
{
	s->tls = 1;
	s->state = SS_CMD;
	s->greeted = 0;
	s->esmtp = 0;
	s->helo[0] = '\0';
	txn_reset(s);
	session_process(s);
}

static void
cmd_auth(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	enum smtp_auth_mech mech;
	const char *ir;
	size_t irlen;
	long window_fails;

	if (!(s->set.ext & SMTP_EXT_AUTH)) {
		reject(s, VALIDATE_PHASE_AUTH, 502, "5.5.1", "Error: command not implemented");
		return;
	}
	if (!auth_offered(s)) {
		/* RFC 4954 §6: the mechanisms we have need an encrypted channel. */
		reject(s, VALIDATE_PHASE_AUTH, 538, "5.7.11",
		       "Encryption required for requested authentication mechanism");
		return;
	}
	if (!s->esmtp) {
		reject(s, VALIDATE_PHASE_AUTH, 503, "5.5.1", "Error: send EHLO first");
		return;
	}
	if (s->auth_user != NULL) {
		reject(s, VALIDATE_PHASE_AUTH, 503, "5.5.1", "Error: already authenticated");
		return;
	}
	if (s->in_mail) {
		reject(s, VALIDATE_PHASE_AUTH, 503, "5.5.1", "Error: MAIL transaction in progress");
		return;
	}
	if (smtp_auth_mech_parse(cmd->arg, cmd->arglen, &mech, &ir, &irlen) < 0) {
		reject(s, VALIDATE_PHASE_AUTH, 501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
		return;
	}
	if (mech == SMTP_AUTH_MECH_UNKNOWN) {
		reject(s, VALIDATE_PHASE_AUTH, 504, "5.5.4", "Unrecognized authentication type");
		return;
	}
	window_fails = s->set.auth_peer_max > 0 ?
	               smtp_auth_peer_failures((const struct sockaddr *)&s->ac.remote,
	                                       s->set.auth_window_s, time(NULL)) : 0;
	if (s->set.auth_peer_max > 0 && window_fails >= s->set.auth_peer_max) {
		reject(s, VALIDATE_PHASE_AUTH, 421, "4.7.0",
		       "%s Too many failed authentications from your address, try again later",
		       s->set.hostname);
		close_after_reply(s);
		return;
	}
	s->auth_mech = mech;
	s->auth_step = 0;
	s->state = SS_AUTH;
	smtp_line_init(&s->auth_lr, SMTP_AUTH_LINE_MAX);
	if (ir != NULL) {
		auth_response(s, ir, irlen);
		return;
	}
	if (mech == SMTP_AUTH_MECH_PLAIN)
		evbuffer_add_printf(bufferevent_get_output(s->bev), "334 \r\n");
	else
		evbuffer_add_printf(bufferevent_get_output(s->bev), "334 VXNlcm5hbWU6\r\n");
}

/* End the SASL exchange without a verdict: back to commands. */
static void
auth_abort(struct smtp_session *s, int code, const char *enh, const char *text)
{
	explicit_bzero(s->auth_login_user, sizeof(s->auth_login_user));
	s->state = SS_CMD;
	reject(s, VALIDATE_PHASE_AUTH, code, enh, "%s", text);
}

static void
auth_check(struct smtp_session *s, const char *user, const char *pass)
{
	s->state = SS_VERIFY;
	bufferevent_disable(s->bev, EV_READ);
	smtp_auth_verify_async(s->set.users, user, pass, s->loop, auth_verified, s);
}

/* One SASL response line (or the initial response): line / len, base64 or "*" / "=". */
static void
auth_response(struct smtp_session *s, const char *line, size_t len)
{
	unsigned char buf[SMTP_AUTH_LINE_MAX];
	size_t n = 0;
	struct smtp_auth_creds cr;

	if (len == 1 && line[0] == '*') {
		auth_abort(s, 501, "5.7.0", "Authentication canceled");
		return;
	}
	if (!(len == 1 && line[0] == '=') &&
	    smtp_auth_b64_decode(line, len, buf, sizeof(buf), &n) < 0) {
		auth_abort(s, 501, "5.5.2", "Invalid base64 data");
		return;
	}
	if (s->auth_mech == SMTP_AUTH_MECH_PLAIN) {
		int bad = smtp_auth_plain_decode(buf, n, &cr) < 0 ||
		          (cr.authzid[0] != '\0' && strcmp(cr.authzid, cr.user) != 0);
		explicit_bzero(buf, sizeof(buf));
		if (bad) {
			smtp_auth_creds_wipe(&cr);
			auth_abort(s, 501, "5.5.2", "Invalid PLAIN authentication data");
			return;
		}
		auth_check(s, cr.user, cr.pass);
		smtp_auth_creds_wipe(&cr);
		return;
	}
	/* LOGIN: the user name, then the password. */
	if (n == 0 || n > SMTP_AUTH_FIELD_MAX || memchr(buf, '\0', n) != NULL) {
		explicit_bzero(buf, sizeof(buf));
		auth_abort(s, 501, "5.5.2", "Invalid LOGIN authentication data");
		return;
	}
	if (s->auth_step == 0) {
		memcpy(s->auth_login_user, buf, n);
		s->auth_login_user[n] = '\0';
		s->auth_step = 1;
		evbuffer_add_printf(bufferevent_get_output(s->bev), "334 UGFzc3dvcmQ6\r\n");
		return;
	}
	char pass[SMTP_AUTH_FIELD_MAX + 1];
	memcpy(pass, buf, n);
	pass[n] = '\0';
	explicit_bzero(buf, sizeof(buf));
	auth_check(s, s->auth_login_user, pass);
	explicit_bzero(pass, sizeof(pass));
	explicit_bzero(s->auth_login_user, sizeof(s->auth_login_user));
}

/* The worker's verdict, on our loop. */
static void
auth_verified(int ok, const char *user, void *arg)
{
	struct smtp_session *s = arg;

	if (s->client_gone) {
		s->state = SS_CLOSING;
		session_free(s);
		return;
	}
	if (ok) {
		s->auth_user = xstrdup(user);
		s->state = SS_CMD;
		reply(s, 235, "2.7.0", "Authentication successful");
		bufferevent_enable(s->bev, EV_READ);
		session_process(s);
		return;
	}
	s->auth_failures++;
	smtp_auth_peer_fail((const struct sockaddr *)&s->ac.remote, s->set.auth_window_s, time(NULL));
	unsigned shift = s->auth_failures - 1 < 3 ? s->auth_failures - 1 : 3;
	uint64_t delay_s = (uint64_t)1 << shift;
	if (delay_s > AUTH_DELAY_MAX_S)
		delay_s = AUTH_DELAY_MAX_S;
	if (s->auth_timer == NULL)
		s->auth_timer = timer_new(s->loop, auth_delay_over, s);
	s->state = SS_AUTH_DELAY;
	timer_start_ms(s->auth_timer, delay_s * 1000);
}

static void
auth_delay_over(struct timer *t, void *arg)
{
	struct smtp_session *s = arg;

	s->state = SS_CMD;
	if ((long)s->auth_failures >= s->set.auth_max_failures) {
		reject(s, VALIDATE_PHASE_AUTH, 421, "4.7.0",
		       "%s Too many failed authentications, closing", s->set.hostname);
		close_after_reply(s);
		return;
	}
	reject(s, VALIDATE_PHASE_AUTH, 535, "5.7.8", "Authentication credentials invalid");
	bufferevent_enable(s->bev, EV_READ);
	session_process(s);
}

static void
handle_command(struct smtp_session *s, const char *line, size_t len)
{
	struct smtp_cmd cmd;
	int err = smtp_cmd_parse(line, len, &cmd);

	if (err != 0 && cmd.verb == SMTP_VERB_UNKNOWN) {
		reject(s, VALIDATE_PHASE_CONNECT, 502, "5.5.2", "Error: command not recognized");
		return;
	}
	if (err != 0) {
		reply_parse_error(s, cmd.verb == SMTP_VERB_MAIL ? VALIDATE_PHASE_MAILFROM :
		                  cmd.verb == SMTP_VERB_RCPT ? VALIDATE_PHASE_RCPTTO :
		                  VALIDATE_PHASE_CONNECT, err);
		return;
	}
	switch (cmd.verb) {
	case SMTP_VERB_HELO:
		cmd_ehlo(s, &cmd, 0);
		break;
	case SMTP_VERB_EHLO:
		cmd_ehlo(s, &cmd, 1);
		break;
	case SMTP_VERB_MAIL:
		cmd_mail(s, &cmd);
		break;
	case SMTP_VERB_RCPT:
		cmd_rcpt(s, &cmd);
		break;
	case SMTP_VERB_DATA:
		cmd_data(s);
		break;
	case SMTP_VERB_BDAT:
		cmd_bdat(s, &cmd);
		break;
	case SMTP_VERB_RSET:
		txn_reset(s);
		reply(s, 250, "2.0.0", "Ok");
		break;
	case SMTP_VERB_NOOP:
		reply(s, 250, "2.0.0", "Ok");
		break;
	case SMTP_VERB_QUIT:
		reply(s, 221, "2.0.0", "Bye");
		close_after_reply(s);
		break;
	case SMTP_VERB_VRFY:
		reply(s, 502, "5.5.1", "VRFY command is disabled");
		break;
	case SMTP_VERB_EXPN:
		reply(s, 502, "5.5.1", "EXPN command is disabled");
		break;
	case SMTP_VERB_HELP:
		reply(s, 214, "2.0.0", "See RFC 5321 (impetus)");
		break;
	case SMTP_VERB_STARTTLS:
		cmd_starttls(s);
		break;
	case SMTP_VERB_AUTH:
		cmd_auth(s, &cmd);
		break;
	case SMTP_VERB_UNKNOWN:
		reject(s, VALIDATE_PHASE_CONNECT, 502, "5.5.1", "Error: command not implemented");
		break;
	}
}

/* ----------------------------------------------------------- spooling */

static void
log_receptions(struct smtp_session *s)
{
	struct timeval now;

	if (!has_core_log_reception_v1_hook())
		return;
	gettimeofday(&now, NULL);
	for (size_t i = 0; i < spool_batch_rcpt_count(s->batch); i++) {
		struct ec_message *m = message_new(spool_batch_rcpt_id(s->batch, i), spool_batch_id(s->batch),
		                                   spool_batch_mail_from(s->batch),
		                                   spool_batch_rcpt(s->batch, i));
		m->conn_id = s->ac.conn_id;
		m->size = spool_batch_body_len(s->batch);
		m->binding_slot = 0;
		m->protocol = s->ac.remote.ss_family == AF_UNIX ? "local" : s->esmtp ? "esmtp" : "smtp";
		message_set_addr(&m->recv_from, (const struct sockaddr *)&s->ac.remote);
		call_core_log_reception_v1_hook(&s->ac, m, &now, NULL, 0);
		message_unref(m);
	}
}

static void
spooled(struct spool_batch *b, int err, void *arg)
{
	struct smtp_session *s = arg;

	s->state = SS_CMD;
	if (err == 0) {
		s->receptions++;
		log_receptions(s);
		if (!s->client_gone)
			reply(s, 250, "2.0.0", "Ok: queued as %s", spool_batch_id(b));
		s->batch = NULL;
		queue_submit(b);        /* takes the batch */
	} else {
		diag_warn("spool: cannot store a message from connection %llu: %s",
		          (unsigned long long)s->ac.conn_id, strerror(err));
		if (!s->client_gone)
			reject(s, VALIDATE_PHASE_DATA_SPOOL, 451, "4.3.0",
			       "Error: queue file write error, try again later");
	}
	txn_reset(s);
	if (s->client_gone) {
		s->state = SS_CLOSING;
		session_free(s);
		return;
	}
	bufferevent_enable(s->bev, EV_READ);
	session_process(s);     /* pipelined commands that arrived meanwhile */
}

/*
 * Find header `name` (case-insensitive) in the header section of the body;
 * copy its unfolded value (trimmed) into val and remove the header from the
 * body. 1 when found.
 */
static int
header_take(struct spool_batch *b, const char *name, char *val, size_t vlen)
{
	size_t len, nlen = strlen(name), off = 0;
	const char *body = spool_batch_body(b, &len);

	while (off < len) {
		const char *line = body + off;
		const char *eol = memchr(line, '\n', len - off);
		size_t llen = eol != NULL ? (size_t)(eol - line) + 1 : len - off;
		size_t end = off + llen;

		if (llen <= 2 && line[0] == '\r')
			return 0;       /* the end of the header section */
		if (llen > nlen && strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
			size_t vo = 0;
			/* unfold continuation lines */
			while (end < len && (body[end] == ' ' || body[end] == '\t')) {
				const char *e2 = memchr(body + end, '\n', len - end);
				end = e2 != NULL ? (size_t)(e2 - body) + 1 : len;
			}
			for (size_t i = off + nlen + 1; i < end && vo + 1 < vlen; i++) {
				char ch = body[i];
				if (ch == '\r' || ch == '\n')
					continue;
				if ((ch == ' ' || ch == '\t') && vo == 0)
					continue;
				val[vo++] = ch;
			}
			while (vo > 0 && (val[vo - 1] == ' ' || val[vo - 1] == '\t'))
				vo--;
			val[vo] = '\0';
			spool_batch_body_cut(b, off, end - off);
			return 1;
		}
		off = end;
	}
	return 0;
}

/* Bind every recipient (queue_assign_binding); -1 when Default_Binding is
 * none and a recipient would go to the default binding. */
static int
assign_bindings(struct smtp_session *s)
{
	char hb[256], hg[256];
	int trusted = s->set.relay_all || s->auth_user != NULL;
	int have_b = 0, have_g = 0;
	size_t n = spool_batch_rcpt_count(s->batch);

	/* The headers are removed whoever sent them; only a trusted peer's count. */
	have_b = header_take(s->batch, "X-Binding", hb, sizeof(hb)) && trusted;
	have_g = header_take(s->batch, "X-Binding-Group", hg, sizeof(hg)) && trusted;
	for (size_t i = 0; i < n; i++) {
		struct queue_binding_request rq = {
			.mailfrom = spool_batch_mail_from(s->batch),
			.rcpt = spool_batch_rcpt(s->batch, i),
			.msg_id = spool_batch_rcpt_id(s->batch, i),
			.batch_id = spool_batch_id(s->batch),
			.header_binding = have_b ? hb : NULL,
			.header_group = have_g ? hg : NULL,
		};
		int is_default;
		int slot = queue_assign_binding(s->conf, &rq, &is_default);
		if (slot < 0)
			return -1;
		spool_batch_set_rcpt_binding(s->batch, i, conf_binding_name(s->conf, slot));
	}
	return 0;
}

static void
spool_start(struct smtp_session *s)
{
	if (s->body.len > 0) {
		spool_batch_append(s->batch, s->body.data, s->body.len);
		strbuf_reset(&s->body);
	}
	if (assign_bindings(s) < 0) {
		reject(s, VALIDATE_PHASE_DATA, 451, "4.3.2",
		       "No binding accepts this message now, try again later");
		txn_reset(s);
		return;
	}
	struct timeval now;
	gettimeofday(&now, NULL);
	spool_batch_set_reception(s->batch, s->ac.conn_id, (const struct sockaddr *)&s->ac.remote,
	                          s->helo, s->esmtp ? "esmtp" : "smtp", &now);
	s->state = SS_SPOOLING;
	bufferevent_disable(s->bev, EV_READ);
	spool_batch_commit(s->batch, s->loop, spooled, s);
}

/* The end of DATA (or of the last BDAT chunk) was read, with status st. */
static void
data_finish(struct smtp_session *s, enum smtp_data_status st)
{
	int code;
	const char *enh, *text;

	s->state = SS_CMD;
	if (st == SMTP_DATA_DONE) {
		spool_start(s);
		return;
	}
	text = smtp_data_strerror(st, &code, &enh);
	reject(s, VALIDATE_PHASE_DATA, code, enh, "%s", text);
	txn_reset(s);
}

/* ------------------------------------------------------------- input */

/* Feed the first chunk of input to the DATA parser; 1 when the end was found. */
static int
feed_data(struct smtp_session *s, struct evbuffer *in)
{
	struct evbuffer_iovec vec;
	size_t used = 0;

	if (evbuffer_peek(in, -1, NULL, &vec, 1) < 1)
		return 0;
	enum smtp_data_status st = smtp_data_feed(&s->dp, vec.iov_base, vec.iov_len, &used, &s->body);
	evbuffer_drain(in, used);
	if (st != SMTP_DATA_MORE) {
		data_finish(s, st);
		return 1;
	}
	if (s->body.len >= BODY_FLUSH) {
		spool_batch_append(s->batch, s->body.data, s->body.len);
		strbuf_reset(&s->body);
	}
	return 0;
}

static void
feed_bdat(struct smtp_session *s, struct evbuffer *in)
{
	while (s->bdat_left > 0 && evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec vec;
		if (evbuffer_peek(in, -1, NULL, &vec, 1) < 1)
			break;
		size_t take = vec.iov_len < s->bdat_left ? vec.iov_len : (size_t)s->bdat_left;
		if (!s->bdat_failed)
			smtp_bdat_feed(&s->bc, vec.iov_base, take, &s->body);
		evbuffer_drain(in, take);
		s->bdat_left -= take;
		if (s->body.len >= BODY_FLUSH && s->batch != NULL) {
			spool_batch_append(s->batch, s->body.data, s->body.len);
			strbuf_reset(&s->body);
		}
	}
	if (s->bdat_left > 0)
		return;
	s->state = SS_CMD;
	if (s->bdat_failed) {
		if (!s->in_mail)
			reject(s, VALIDATE_PHASE_DATA, 503, "5.5.1", "Error: need MAIL command");
		else
			reject(s, VALIDATE_PHASE_DATA, 554, "5.5.1", "Error: no valid recipients");
		if (s->bdat_last)
			txn_reset(s);
		return;
	}
	if (!s->bdat_last) {
		reply(s, 250, "2.0.0", "Ok: %llu octets", (unsigned long long)smtp_bdat_bytes(&s->bc));
		return;
	}
	data_finish(s, smtp_bdat_finish(&s->bc, &s->body));
}

static void
session_process(struct smtp_session *s)
{
	while (s->state == SS_CMD || s->state == SS_DATA || s->state == SS_BDAT ||
	       s->state == SS_AUTH) {
		/* Fetched each pass: STARTTLS replaces the bufferevent. */
		struct evbuffer *in = bufferevent_get_input(s->bev);
		int sasl = s->state == SS_AUTH;
		struct smtp_line_reader *lr = sasl ? &s->auth_lr : &s->lr;
		if (s->state == SS_DATA) {
			if (evbuffer_get_length(in) == 0)
				return;
			feed_data(s, in);
			continue;
		}
		if (s->state == SS_BDAT) {
			feed_bdat(s, in);
			if (s->state == SS_BDAT)
				return;
			continue;
		}
		size_t avail = evbuffer_get_length(in);
		if (avail == 0)
			return;
		size_t look = avail < SESSION_READ_CHUNK ? avail : SESSION_READ_CHUNK;
		const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
		const char *line;
		size_t linelen, used = 0;
		enum smtp_line_status ls = smtp_line_next(lr, buf, look, &used, &line, &linelen);
		switch (ls) {
		case SMTP_LINE_MORE:
			evbuffer_drain(in, used);
			if (used == 0 || evbuffer_get_length(in) == 0)
				return;
			break;
		case SMTP_LINE_TOO_LONG:
			evbuffer_drain(in, used);
			if (sasl)
				auth_abort(s, 500, "5.5.6", "Error: authentication line too long");
			else
				reject(s, VALIDATE_PHASE_CONNECT, 500, "5.5.6", "Error: line too long");
			break;
		case SMTP_LINE_NUL:
			evbuffer_drain(in, used);
			if (sasl)
				auth_abort(s, 501, "5.5.2", "Error: NUL in authentication data");
			else
				reject(s, VALIDATE_PHASE_CONNECT, 500, "5.5.2", "Error: NUL in command");
			break;
		case SMTP_LINE_OK: {
			char copy[LINE_COPY_MAX + 1];
			memcpy(copy, line, linelen);
			copy[linelen] = '\0';
			evbuffer_drain(in, used);
			if (sasl) {
				auth_response(s, copy, linelen);
				explicit_bzero(copy, linelen);
			} else {
				handle_command(s, copy, linelen);
			}
			break;
		}
		}
	}
}

static void
session_read(struct bufferevent *bev, void *arg)
{
	session_process(arg);
}

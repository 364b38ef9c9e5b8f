/*
 * smtp_client_test.c - the outbound SMTP client against scripted peers.
 *
 * Each test is a dialogue: a peer thread on the other end of a socketpair
 * plays a script (send these bytes, expect exactly those bytes, start TLS,
 * close, expect EOF) while the client runs on a libevent loop in the main
 * thread. Checks cover the exact bytes the client sent, every recipient's
 * verdict, the transaction's stage and the session's end status.
 * STARTTLS tests make a self-signed certificate in memory (OpenSSL API).
 */
#include <errno.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include "delivery/smtp_client.h"
#include "test.h"

enum step_op {
	S_END = 0,
	S_SEND,         /* write data */
	S_SEND_SLOW,    /* write data one byte at a time */
	S_EXPECT,       /* read exactly strlen(data) bytes, equal to data */
	S_EXPECT_EOF,   /* read until EOF; nothing more may arrive */
	S_DRAIN,        /* read and ignore everything until EOF */
	S_CLOSE,        /* close the connection now */
	S_TLS,          /* TLS server handshake; must succeed */
	S_TLS_FAIL,     /* TLS server handshake; must fail (the client refuses) */
};

struct step {
	enum step_op op;
	const char *data;
};

struct peer {
	int fd;
	const struct step *script;
	SSL *ssl;                       /* after S_TLS */
	char failure[2048];             /* "" when the script ran as written */
};

#define FREE_ON_CLOSED 0
#define FREE_ON_READY 1
#define FREE_ON_TXN 2

struct drive {
	struct event_base *base;
	struct smtp_client *c;
	struct smtp_txn *txns[4];       /* sent in order: on_ready, then each on_txn_done */
	size_t ntxn, next;
	int quit_at_end;                /* smtp_client_quit after the last transaction */
	int quit_right_after_send;      /* smtp_client_quit while the transaction runs */
	int free_in;                    /* FREE_ON_* */
	char events[256];               /* "R" ready, "T" txn done, "C" closed */
	struct smtp_client_status st;
	struct smtp_client_ext ext;     /* at on_ready */
	int send_rc;                    /* the last smtp_client_send result */
	int idle_after_txn;             /* smtp_client_idle inside on_txn_done */
};

static const char *BANNER = "220 mx.test ESMTP\r\n";
static const char *EHLO_PIPE = "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n"
                               "250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 DSN\r\n";
static const char *EHLO_PLAIN = "250-mx.test\r\n250 ENHANCEDSTATUSCODES\r\n";
static const char *BODY = "Subject: t\r\n\r\nhello\r\n";

static X509 *test_cert;
static EVP_PKEY *test_key;
static char test_ca_path[64];
static SSL_CTX *server_ctx;

/* --- the peer ---------------------------------------------------------- */

static int
peer_wait(struct peer *pr, int ms)
{
	struct pollfd pfd = { pr->fd, POLLIN, 0 };

	if (pr->ssl != NULL && SSL_pending(pr->ssl) > 0)
		return 1;
	return poll(&pfd, 1, ms) > 0;
}

static ssize_t
peer_read(struct peer *pr, char *buf, size_t len)
{
	if (!peer_wait(pr, 5000))
		return -2;      /* timed out */
	if (pr->ssl != NULL) {
		int n = SSL_read(pr->ssl, buf, (int)len);
		return n > 0 ? n : 0;
	}
	return read(pr->fd, buf, len);
}

static int
peer_write(struct peer *pr, const char *buf, size_t len)
{
	if (pr->ssl != NULL)
		return SSL_write(pr->ssl, buf, (int)len) == (int)len ? 0 : -1;
	while (len > 0) {
		ssize_t n = write(pr->fd, buf, len);
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static void *
peer_run(void *arg)
{
	struct peer *pr = arg;
	int i;

	for (i = 0; pr->script[i].op != S_END; i++) {
		const struct step *s = &pr->script[i];
		char got[8192];
		size_t have = 0, want;
		ssize_t n;

		switch (s->op) {
		case S_SEND:
			if (peer_write(pr, s->data, strlen(s->data)) < 0) {
				snprintf(pr->failure, sizeof(pr->failure), "step %d: write failed", i);
				goto out;
			}
			break;
		case S_SEND_SLOW:
			for (size_t k = 0; s->data[k]; k++) {
				if (peer_write(pr, s->data + k, 1) < 0) {
					snprintf(pr->failure, sizeof(pr->failure), "step %d: write failed", i);
					goto out;
				}
				usleep(200);
			}
			break;
		case S_EXPECT:
			want = strlen(s->data);
			while (have < want) {
				n = peer_read(pr, got + have, want - have);
				if (n <= 0) {
					snprintf(pr->failure, sizeof(pr->failure),
					         "step %d: got \"%.*s\" then %s, want \"%s\"", i, (int)have, got,
					         n == -2 ? "nothing for 5 s" : "EOF", s->data);
					goto out;
				}
				have += (size_t)n;
			}
			if (memcmp(got, s->data, want) != 0) {
				snprintf(pr->failure, sizeof(pr->failure), "step %d: got \"%.*s\", want \"%s\"",
				         i, (int)have, got, s->data);
				goto out;
			}
			break;
		case S_EXPECT_EOF:
			n = peer_read(pr, got, sizeof(got) - 1);
			if (n != 0) {
				snprintf(pr->failure, sizeof(pr->failure), "step %d: got %s, want EOF", i,
				         n == -2 ? "nothing for 5 s" : "more bytes");
				if (n > 0)
					snprintf(pr->failure + strlen(pr->failure),
					         sizeof(pr->failure) - strlen(pr->failure), ": \"%.*s\"",
					         (int)n, got);
				goto out;
			}
			break;
		case S_DRAIN:
			while ((n = peer_read(pr, got, sizeof(got))) > 0)
				;
			if (n == -2) {
				snprintf(pr->failure, sizeof(pr->failure), "step %d: no EOF for 5 s", i);
				goto out;
			}
			break;
		case S_CLOSE:
			goto out;
		case S_TLS:
		case S_TLS_FAIL: {
			int rc;

			pr->ssl = SSL_new(server_ctx);
			SSL_set_fd(pr->ssl, pr->fd);
			rc = SSL_accept(pr->ssl);
			if ((rc == 1) != (s->op == S_TLS)) {
				char e[256];
				ERR_error_string_n(ERR_get_error(), e, sizeof(e));
				snprintf(pr->failure, sizeof(pr->failure), "step %d: handshake %s (%s)", i,
				         rc == 1 ? "succeeded" : "failed", e);
				ERR_clear_error();
				goto out;
			}
			ERR_clear_error();
			if (rc != 1) {
				SSL_free(pr->ssl);
				pr->ssl = NULL;
			}
			break;
		}
		case S_END:
			break;
		}
	}
out:
	if (pr->ssl != NULL) {
		SSL_shutdown(pr->ssl);
		SSL_free(pr->ssl);
		pr->ssl = NULL;
	}
	ERR_clear_error();
	close(pr->fd);
	return NULL;
}

/* --- the client side --------------------------------------------------- */

static void
drive_event(struct drive *d, char e)
{
	size_t n = strlen(d->events);
	if (n + 1 < sizeof(d->events)) {
		d->events[n] = e;
		d->events[n + 1] = '\0';
	}
}

static void
next_step(struct drive *d, struct smtp_client *c)
{
	if (d->next < d->ntxn) {
		d->send_rc = smtp_client_send(c, d->txns[d->next++]);
		if (d->quit_right_after_send)
			smtp_client_quit(c);
	} else if (d->quit_at_end) {
		smtp_client_quit(c);
	}
}

static void
on_ready(struct smtp_client *c, void *arg)
{
	struct drive *d = arg;

	drive_event(d, 'R');
	d->ext = *smtp_client_extensions(c);
	if (!smtp_client_idle(c))
		drive_event(d, '!');
	if (d->free_in == FREE_ON_READY) {
		smtp_client_free(c);
		d->c = NULL;
		event_base_loopbreak(d->base);
		return;
	}
	next_step(d, c);
}

static void
on_txn_done(struct smtp_client *c, struct smtp_txn *t, void *arg)
{
	struct drive *d = arg;

	drive_event(d, 'T');
	d->idle_after_txn = smtp_client_idle(c);
	if (d->free_in == FREE_ON_TXN) {
		smtp_client_free(c);
		d->c = NULL;
		event_base_loopbreak(d->base);
		return;
	}
	if (smtp_client_idle(c))
		next_step(d, c);
}

static void
on_closed(struct smtp_client *c, const struct smtp_client_status *st, void *arg)
{
	struct drive *d = arg;

	drive_event(d, 'C');
	d->st = *st;
	smtp_client_free(c);
	d->c = NULL;
	event_base_loopbreak(d->base);
}

static const struct smtp_client_cb callbacks = { on_ready, on_txn_done, on_closed };

static struct smtp_client_params
default_params(void)
{
	struct smtp_client_params p;

	memset(&p, 0, sizeof(p));
	p.ehlo_name = "client.test";
	p.banner_ms = p.ehlo_ms = p.starttls_ms = p.mailfrom_ms = p.rcptto_ms = p.data_ms =
		p.body_ms = p.quit_ms = 5000;
	return p;
}

static void
give_up(evutil_socket_t fd, short what, void *arg)
{
	struct drive *d = arg;

	drive_event(d, 'X');
	event_base_loopbreak(d->base);
}

/* run: the client with params p against script; d says what to send. */
static void
run(const struct step *script, const struct smtp_client_params *p, struct drive *d)
{
	int sv[2];
	struct peer pr;
	pthread_t th;
	struct timeval ten = { 10, 0 };
	struct event *guard;

	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", strerror(errno));
	memset(&pr, 0, sizeof(pr));
	pr.fd = sv[1];
	pr.script = script;
	evutil_make_socket_nonblocking(sv[0]);
	pthread_create(&th, NULL, peer_run, &pr);
	d->base = event_base_new();
	guard = evtimer_new(d->base, give_up, d);
	evtimer_add(guard, &ten);
	d->c = smtp_client_new(d->base, sv[0], p, &callbacks, d);
	CHECK(d->c != NULL, "smtp_client_new failed");
	event_base_dispatch(d->base);
	if (d->c != NULL) {
		smtp_client_free(d->c);     /* the guard fired */
		d->c = NULL;
	}
	/* libevent closes a freed bufferevent's socket from the loop: let it run. */
	event_base_loop(d->base, EVLOOP_NONBLOCK);
	event_base_loop(d->base, EVLOOP_NONBLOCK);
	pthread_join(th, NULL);
	event_free(guard);
	event_base_free(d->base);
	CHECK(pr.failure[0] == '\0', "peer: %s", pr.failure);
	CHECK(strchr(d->events, 'X') == NULL, "got a stuck session (events %s)", d->events);
}

static void
init_txn(struct smtp_txn *t, struct smtp_txn_rcpt *r, size_t n, const char *const *addrs,
         const char *from, const char *body)
{
	memset(t, 0, sizeof(*t));
	memset(r, 0, n * sizeof(*r));
	for (size_t i = 0; i < n; i++)
		r[i].rcpt = addrs[i];
	t->mail_from = from;
	t->rcpts = r;
	t->nrcpt = n;
	t->body = body;
	t->body_len = strlen(body);
}

static void
check_rcpt(const struct smtp_txn_rcpt *r, int code, const char *reply, const char *ctx)
{
	CHECK_INT(r->code, code, ctx);
	CHECK_STR(r->reply, reply, ctx);
}

static void
check_status(const struct drive *d, int code, const char *reply, int stage, int clean)
{
	CHECK_INT(d->st.code, code, "status code");
	CHECK_STR(d->st.reply, reply, "status reply");
	CHECK_INT(d->st.stage, stage, "status stage");
	CHECK_INT(d->st.clean, clean, "status clean");
}

/* --- plain dialogues --------------------------------------------------- */

static const char *const xyz[] = { "x@mx.test", "y@mx.test", "z@mx.test" };

static void
test_pipelined(void)
{
	const struct step script[] = {
		{ S_SEND, BANNER },
		{ S_EXPECT, "EHLO client.test\r\n" },
		{ S_SEND, EHLO_PIPE },
		{ S_EXPECT, "MAIL FROM:<a@src.test> SIZE=21 BODY=8BITMIME\r\n"
		            "RCPT TO:<x@mx.test>\r\nRCPT TO:<y@mx.test>\r\nRCPT TO:<z@mx.test>\r\n"
		            "DATA\r\n" },
		{ S_SEND, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 <y@mx.test>: user unknown\r\n"
		          "250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n" },
		{ S_EXPECT, "Subject: t\r\n\r\nhello\r\n.\r\n" },
		{ S_SEND, "250 2.0.0 Ok: queued as 4F2\r\n" },
		{ S_EXPECT, "QUIT\r\n" },
		{ S_SEND, "221 2.0.0 Bye\r\n" },
		{ S_EXPECT_EOF, NULL },
		{ S_END, NULL },
	};
	struct smtp_client_params p = default_params();
	struct drive d = { 0 };
	struct smtp_txn t;
	struct smtp_txn_rcpt r[3];

	init_txn(&t, r, 3, xyz, "a@src.test", BODY);
	t.flags = SMTP_TXN_8BITMIME;
	d.txns[0] = &t;
	d.ntxn = 1;
	d.quit_at_end = 1;
	run(script, &p, &d);
	CHECK_STR(d.events, "RTC", "events");
	CHECK_INT(d.send_rc, 0, "send");
	CHECK(d.ext.pipelining && d.ext.eightbit && d.ext.dsn && d.ext.enhanced && !d.ext.starttls &&
	      d.ext.size_max == 1000000 && !d.ext.tls_active, "got other extensions");
	check_rcpt(&r[0], 250, "250 2.0.0 Ok: queued as 4F2", "rcpt x");
	check_rcpt(&r[1], 550, "550 5.1.1 <y@mx.test>: user unknown", "rcpt y");
	check_rcpt(&r[2], 250, "250 2.0.0 Ok: queued as 4F2", "rcpt z");
	CHECK_INT(t.stage, 9, "txn stage");
	CHECK_INT(t.bytes_sent, strlen(BODY), "bytes sent");
	CHECK_INT(t.temp_session, 0, "temp_session");
	CHECK_INT(d.idle_after_txn, 1, "idle in on_txn_done");
	check_status(&d, 221, "221 2.0.0 Bye", 1, 1);
}

static void
test_not_pipelined(void)
{
	const struct step script[] = {
		{ S_SEND, BANNER },
		{ S_EXPECT, "EHLO client.test\r\n" },
		{ S_SEND, EHLO_PLAIN },
		{ S_EXPECT, "MAIL FROM:<a@src.test>\r\n" },
		{ S_SEND, "250 2.1.0 Ok\r\n" },
		{ S_EXPECT, "RCPT TO:<x@mx.test>\r\n" },
		{ S_SEND, "250 2.1.5 Ok\r\n" },
		{ S_EXPECT, "RCPT TO:<y@mx.test>\r\n" },
		{ S_SEND, "450 4.2.0 <y@mx.test>: greylisted\r\n" },
		{ S_EXPECT, "RCPT TO:<z@mx.test>\r\n" },
		{ S_SEND, "250 2.1.5 Ok\r\n" },
		{ S_EXPECT, "DATA\r\n" },
		{ S_SEND, "354 go ahead\r\n" },
		{ S_EXPECT, "Subject: t\r\n\r\nhello\r\n.\r\n" },
		{ S_SEND, "554 5.7.1 rejected: spam\r\n" },
		{ S_EXPECT, "QUIT\r\n" },
		{ S_SEND, "221 2.0.0 Bye\r\n" },
		{ S_EXPECT_EOF, NULL },
		{ S_END, NULL },
	};
	struct smtp_client_params p = default_params();
	struct drive d = { 0 };
	struct smtp_txn t;
	struct smtp_txn_rcpt r[3];

	init_txn(&t, r, 3, xyz, "a@src.test", BODY);
	t.flags = SMTP_TXN_8BITMIME;        /* not advertised: no BODY= */
	t.envid = "e1";                     /* DSN not advertised: no ENVID= */
	t.ret = 1;
	r[0].notify = SMTP_NOTIFY_NEVER;
	d.txns[0] = &t;
	d.ntxn = 1;
	d.quit_at_end = 1;
	run(script, &p, &d);
	CHECK_STR(d.events, "RTC", "events");
	check_rcpt(&r[0], 554, "554 5.7.1 rejected: spam", "rcpt x");
	check_rcpt(&r[1], 450, "450 4.2.0 <y@mx.test>: greylisted", "rcpt y");
	check_rcpt(&r[2], 554, "554 5.7.1 rejected: spam", "rcpt z");
	CHECK_INT(t.stage, 9, "txn stage");
	check_status(&d, 221, "221 2.0.0 Bye", 1, 1);
}

static void
test_helo_fallback(void)
{
	const struct step script[] = {
		{ S_SEND, BANNER },
		{ S_EXPECT, "EHLO client.test\r\n" },
		{ S_SEND, "502 5.5.2 Error: command not recognized\r\n" },
		{ S_EXPECT, "HELO client.test\r\n" },
		{ S_SEND, "250 mx.test\r\n" },
		{ S_EXPECT, "MAIL FROM:<>\r\n" },
		{ S_SEND, "250 Ok\r\n" },
		{ S_EXPECT, "RCPT TO:<x@mx.test>\r\n" },
		{ S_SEND, "250 Ok\r\n" },
		{ S_EXPECT, "DATA\r\n" },
		{ S_SEND, "354 go\r\n" },
		{ S_EXPECT, "Subject: t\r\n\r\nhello\r\n.\r\n" },
		{ S_SEND, "250 Ok\r\n" },
		{ S_EXPECT, "QUIT\r\n" },
		{ S_CLOSE, NULL },      /* no 221: the close ends it */
		{ S_END, NULL },
	};
	struct smtp_client_params p = default_params();
	struct drive d = { 0 };
	struct smtp_txn t;
	struct smtp_txn_rcpt r[1];

	init_txn(&t, r, 1, xyz, "", BODY);
	t.flags = SMTP_TXN_8BITMIME;
	d.txns[0] = &t;
	d.ntxn = 1;
	d.quit_at_end = 1;
	run(script, &p, &d);
	CHECK_STR(d.events, "RTC", "events");
	CHECK(!d.ext.pipelining && !d.ext.eightbit && d.ext.size_max == 0, "got extensions after HELO");
	check_rcpt(&r[0], 250, "250 Ok", "rcpt x");
	check_status(&d, 0, "[internal] connection closed after QUIT", 1, 1);
}

/* Local verdicts: SIZE over the limit, SMTPUTF8 missing; nothing goes out for them. */
static void
test_local_refusals(void)
{
	const struct step script[] = {
		{ S_SEND, BANNER },
		{ S_EXPECT, "EHLO client.test\r\n" },
		{ S_SEND, "250-mx.test\r\n250-PIPELINING\r\n250 SIZE 10\r\n" },
		{ S_EXPECT, "QUIT\r\n" },
		{ S_SEND, "221 Bye\r\n" },
		{ S_EXPECT_EOF, NULL },
		{ S_END, NULL },
	};
	struct smtp_client_params p = default_params();
	struct drive d = { 0 };
	struct smtp_txn t1, t2;
	struct smtp_txn_rcpt r1[2], r2[1];

	init_txn(&t1, r1, 2, xyz, "a@src.test", BODY);
	init_txn(&t2, r2, 1, xyz, "a@src.test", "tiny\r\n");
	t2.flags = SMTP_TXN_SMTPUTF8;
	d.txns[0] = &t1;
	d.txns[1] = &t2;
	d.ntxn = 2;
	d.quit_at_end = 1;
	run(script, &p, &d);
	CHECK_STR(d.events, "RTTC", "events");
	check_rcpt(&r1[0], 552, "552 5.3.4 [internal] message too large for the remote server", "size x");
	check_rcpt(&r1[1], 552, "552 5.3.4 [internal] message too large for the remote server", "size y");
	check_rcpt(&r2[0], 553, "553 5.6.7 [internal] SMTPUTF8 not supported by the remote server",
	           "utf8");
	CHECK_INT(t1.temp_session, 0, "temp_session");
	CHECK_INT(t1.bytes_sent, 0, "bytes sent");
	check_status(&d, 221, "221 Bye", 1, 1);
}

static void
test_dsn(void)
{
	const struct step script[] = {
		{ S_SEND, BANNER },
		{ S_EXPECT, "EHLO client.test\r\n" },
		{ S_SEND, "250-mx.test\r\n250-PIPELINING\r\n250-SIZE\r\n250-SMTPUTF8\r\n"
		          "250-8BITMIME\r\n250 DSN\r\n" },
		{ S_EXPECT, "MAIL FROM:<b\xc3\xa9@src.test> SIZE=6 BODY=8BITMIME SMTPUTF8 RET=HDRS "
		            "ENVID=abc+2Bdef\r\n"
		            "RCPT TO:<x@mx.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@orig.test\r\n"
		            "RCPT TO:<y@mx.test> NOTIFY=NEVER\r\n"
		            "RCPT TO:<z@mx.test> NOTIFY=DELAY\r\n"
		            "DATA\r\n" },
		{ S_SEND_SLOW, "250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n" },
		{ S_EXPECT, "tiny\r\n.\r\n" },
		{ S_SEND, "250 ok\r\n" },
		{ S_EXPECT, "QUIT\r\n" },
		{ S_SEND, "221 Bye\r\n" },
		{ S_EXPECT_EOF, NULL },
		{ S_END, NULL },
	};
	struct smtp_client_params p = default_params();
	struct drive d = { 0 };
	struct smtp_txn t;
	struct smtp_txn_rcpt r[3];

	init_txn(&t, r, 3, xyz, "b\xc3\xa9@src.test", "tiny\r\n");
	t.flags = SMTP_TXN_8BITMIME | SMTP_TXN_SMTPUTF8;
	t.envid = "abc+2Bdef";
	t.ret = 2;
	r[0].notify = SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE;
	r[0].orcpt = "rfc822;x@orig.test";
	r[1].notify = SMTP_NOTIFY_NEVER;
	r[1].orcpt = "bad value";           /* not xtext: left out */
	r[2].notify = SMTP_NOTIFY_DELAY;
	d.txns[0] = &t;
	d.ntxn = 1;
	d.quit_at_end = 1;
	run(script, &p, &d);
	CHECK_STR(d.events, "RTC", "events");
	for (int i = 0; i < 3; i++)
		check_rcpt(&r[i], 250, "250 ok", "rcpt");
}

/* Dot-stuffing and line ends: every bare CR or LF becomes CRLF, exact bytes. */
static void
test_body_encoding(void)
{
	static char body[1200], want[1400];
	const struct step script[] = {
		{ S_SEND, BANNER },
		{ S_EXPECT, "EHLO client.test\r\n" },
		{ S_SEND, "250-mx.test\r\n250 PIPELINING\r\n" },
		{ S_EXPECT, "MAIL FROM:<a@src.test>\r\nRCPT TO:<x@mx.test>\r\nDATA\r\n" },
		{ S_SEND, "250 ok\r\n250 ok\r\n354 go\r\n" },
		{ S_EXPECT, want },
		{ S_SEND, "250 ok\r\n" },
		{ S_EXPECT, "MAIL FROM:<a@src.test>\r\nRCPT TO:<x@mx.test>\r\nDATA\r\n" },
		{ S_SEND, "250 ok\r\n250 ok\r\n354 go\r\n" },
		{ S_EXPECT, ".\r\n" },          /* an empty message */
		{ S_SEND, "250 ok\r\n" },
		{ S_EXPECT, "MAIL FROM:<a@src.test>\r\nRCPT TO:<x@mx.test>\r\nDATA\r\n" },
		{ S_SEND, "250 ok\r\n250 ok\r\n354 go\r\n" },
		{ S_EXPECT, "..\r\n.\r\n" },    /* a lone dot without a line end */
		{ S_SEND, "250 ok\r\n" },
		{ S_EXPECT, "QUIT\r\n" },
		{ S_SEND, "221 Bye\r\n" },
		{ S_EXPECT_EOF, NULL },
		{ S_END, NULL },
	};
	char longline[301];
	struct smtp_client_params p = default_params();
	struct drive d = { 0 };
	struct smtp_txn t1, t2, t3;
	struct smtp_txn_rcpt r1[1], r2[1], r3[1];

	memset(longline, 'L', 300);
	longline[300] = '\0';
	snprintf(body, sizeof(body), ".start\nline2\r\n..two\rbare cr\r\n.\r\n.%s\n%s\r\n\r\r\n\n\nlast",
	         longline, longline);
	snprintf(want, sizeof(want),
	         "..start\r\nline2\r\n...two\r\nbare cr\r\n..\r\n..%s\r\n%s\r\n\r\n\r\n\r\n\r\nlast\r\n"
	         ".\r\n", longline, longline);
	init_txn(&t1, r1, 1, xyz, "a@src.test", body);
	init_txn(&t2, r2, 1, xyz, "a@src.test", "");
	init_txn(&t3, r3, 1, xyz, "a@src.test", ".");
	d.txns[0] = &t1;
	d.txns[1] = &t2;
	d.txns[2] = &t3;
	d.ntxn = 3;
	d.quit_at_end = 1;
	run(script, &p, &d);
	CHECK_STR(d.events, "RTTTC", "events");
	check_rcpt(&r1[0], 250, "250 ok", "body");
	check_rcpt(&r2[0], 250, "250 ok", "empty");
	check_rcpt(&r3[0], 250, "250 ok", "dot");
	CHECK_INT(t1.bytes_sent, strlen(body), "bytes sent");
}

static void
test_multiline(void)
{
	const struct step script[] = {
		{ S_SEND_SLOW, "220-mx.test ESMTP\r\n220-no UCE\r\n220 welcome\r\n" },
		{ S_EXPECT, "EHLO client.test\r\n" },
		{ S_SEND_SLOW, "250-mx.test\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n" },
		{ S_EXPECT, "MAIL FROM:<a@src.test>\r\nRCPT TO:<x@mx.test>\r\nRCPT TO:<y@mx.test>\r\n"
		            "DATA\r\n" },
		{ S_SEND, "250 2.1.0 ok\r\n550-5.1.1 The email account that you tried to reach\r\n"
		          "550-5.1.1 does not exist. Please try\r\n550 5.1.1 https://support.test\r\n"
		          "250 2.1.5 ok\r\n354 go\r\n" },
		{ S_EXPECT, "Subject: t\r\n\r\nhello\r\n.\r\n" },
		{ S_SEND, "250-2.0.0 first\r\n250 2.0.0 second\r\n" },
		{ S_EXPECT, "QUIT\r\n" },
		{ S_SEND, "221 Bye\r\n" },
		{ S_EXPECT_EOF, NULL },
		{ S_END, NULL },
	};
	struct smtp_client_params p = default_params();
	struct drive d = { 0 };
	struct smtp_txn t;
	struct smtp_txn_rcpt r[2];

	init_txn(&t, r, 2, xyz, "a@src.test", BODY);
	d.txns[0] = &t;
	d.ntxn = 1;
	d.quit_at_end = 1;
	run(script, &p, &d);
	CHECK_STR(d.events, "RTC", "events");
	check_rcpt(&r[0], 550, "550 5.1.1 The email account that you tried to reach does not exist. "
	           "Please try https://support.test", "rcpt x");
	check_rcpt(&r[1], 250, "250 2.0.0 first second", "rcpt y");
}

/* No recipient accepted: without pipelining RSET and stay idle; with it, a lone "." after 354. */
static void
test_no_rcpt_accepted(void)
{
	const struct step plain[] = {
		{ S_SEND, BANNER },
		{ S_EXPECT, "EHLO client.test\r\n" },
		{ S_SEND, EHLO_PLAIN },
		{ S_EXPECT, "MAIL FROM:<a@src.test>\r\n" },
		{ S_SEND, "250 ok\r\n" },
		{ S_EXPECT, "RCPT TO:<x@mx.test>\r\n" },
		{ S_SEND, "550 5.1.1 no\r\n" },
		{ S_EXPECT, "RSET\r\n" },
		{ S_SEND, "250 ok\r\n" },
		{ S_EXPECT, "QUIT\r\n" },
		{ S_SEND, "221 Bye\r\n" },
		{ S_EXPECT_EOF, NULL },
		{ S_END, NULL },
	};
	const struct step piped[] = {
		{ S_SEND, BANNER },
		{ S_EXPECT, "EHLO client.test\r\n" },
		{ S_SEND, "250-mx.test\r\n250 PIPELINING\r\n" },
		{ S_EXPECT, "MAIL FROM:<a@src.test>\r\nRCPT TO:<x@mx.test>\r\nDATA\r\n" },
		{ S_SEND, "250 ok\r\n550 5.1.1 no\r\n354 go anyway\r\n" },
		{ S_EXPECT, ".\r\n" },
		{ S_SEND, "554 5.5.1 no valid recipients\r\n" },
		{ S_EXPECT, "MAIL FROM:<a@src.test>\r\nRCPT TO:<x@mx.test>\r\nDATA\r\n" },
		{ S_SEND, "250 ok\r\n550 5.1.1 no\r\n554 5.5.1 no valid recipients\r\n" },
		{ S_EXPECT, "RSET\r\n" },
		{ S_SEND, "250 ok\r\n" },
		{ S_EXPECT, "QUIT\r\n" },
		{ S_SEND, "221 Bye\r\n" },
		{ S_EXPECT_EOF, NULL },
		{ S_END, NULL },
	};
	struct smtp_client_params p = default_params();
	struct drive d = { 0 };
	struct smtp_txn t, t2;
	struct smtp_txn_rcpt r[1], r2[1];

	init_txn(&t, r, 1, xyz, "a@src.test", BODY);
	d.txns[0] = &t;
	d.ntxn = 1;
	d.quit_at_end = 1;
	run(plain, &p, &d);
	CHECK_STR(d.events, "RTC", "plain events");
	check_rcpt(&r[0], 550, "550 5.1.1 no", "plain");
	CHECK_INT(t.stage, 4, "plain stage");

	memset(&d, 0, sizeof(d));
	init_txn(&t, r, 1, xyz, "a@src.test", BODY);
	init_txn(&t2, r2, 1, xyz, "a@src.test", BODY);
	d.txns[0] = &t;
	d.txns[1] = &t2;
	d.ntxn = 2;
	d.quit_at_end = 1;
	run(piped, &p, &d);
	CHECK_STR(d.events, "RTTC", "piped events");
	check_rcpt(&r[0], 550, "550 5.1.1 no", "piped 354");
	check_rcpt(&r2[0], 550, "550 5.1.1 no", "piped 554");
	CHECK_INT(t.bytes_sent, 0, "no body sent");
}

static void
test_mail_refused(void)
{
	const struct step script[] = {
		{ S_SEND, BANNER },
		{ S_EXPECT, "EHLO client.test\r\n" },
		{ S_SEND, "250-mx.test\r\n250 PIPELINING\r\n" },
		{ S_EXPECT, "MAIL FROM:<a@src.test>\r\nRCPT TO:<x@mx.test>\r\nRCPT TO:<y@mx.test>\r\n"
		            "DATA\r\n" },
		{ S_SEND, "553 5.7.1 sender refused\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n"
		          "503 5.5.1 need MAIL\r\n" },
		{ S_EXPECT, "MAIL FROM:<a@src.test>\r\nRCPT TO:<x@mx.test>\r\nRCPT TO:<y@mx.test>\r\n"
		            "DATA\r\n" },
		{ S_SEND, "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n" },
		{ S_EXPECT, "Subject: t\r\n\r\nhello\r\n.\r\n" },
		{ S_SEND, "250 ok\r\n" },
		{ S_EXPECT, "QUIT\r\n" },
		{ S_SEND, "221 Bye\r\n" },
		{ S_EXPECT_EOF, NULL },
		{ S_END, NULL },
	};
	struct smtp_client_params p = default_params();
	struct drive d = { 0 };
	struct smtp_txn t, t2;
	struct smtp_txn_rcpt r[2], r2[2];

	init_txn(&t, r, 2, xyz, "a@src.test", BODY);
	init_txn(&t2, r2, 2, xyz, "a@src.test", BODY);
	d.txns[0] = &t;
	d.txns[1] = &t2;
	d.ntxn = 2;
	d.quit_at_end = 1;
	run(script, &p, &d);
	CHECK_STR(d.events, "RTTC", "events");
	check_rcpt(&r[0], 553, "553 5.7.1 sender refused", "rcpt x");
	check_rcpt(&r[1], 553, "553 5.7.1 sender refused", "rcpt y");
	CHECK_INT(t.stage, 2, "stage");
	check_rcpt(&r2[0], 250, "250 ok", "second x");
	check_rcpt(&r2[1], 250, "250 ok", "second y");
}

static void
test_421(void)
{
	const struct step script[] = {
		{ S_SEND, BANNER },
		{ S_EXPECT, "EHLO client.test\r\n" },
		{ S_SEND, EHLO_PIPE },
		{ S_EXPECT, "MAIL FROM:<a@src.test> SIZE=21\r\nRCPT TO:<x@mx.test>\r\n"
		            "RCPT TO:<y@mx.test>\r\nRCPT TO:<z@mx.test>\r\nDATA\r\n" },
		{ S_SEND, "250 2.1.0 ok\r\n550 5.1.1 unknown\r\n421 4.7.0 mx.test closing\r\n" },
		{ S_EXPECT_EOF, NULL },
		{ S_END, NULL },
	};
	struct smtp_client_params p = default_params();
	struct drive d = { 0 };
	struct smtp_txn t;
	struct smtp_txn_rcpt r[3];

	init_txn(&t, r, 3, xyz, "a@src.test", BODY);
	d.txns[0] = &t;
	d.ntxn = 1;
	run(script, &p, &d);
	CHECK_STR(d.events, "RTC", "events");
	check_rcpt(&r[0], 550, "550 5.1.1 unknown", "rcpt x");
	check_rcpt(&r[1], 421, "421 4.7.0 mx.test closing", "rcpt y");
	check_rcpt(&r[2], 421, "421 4.7.0 mx.test closing", "rcpt z");
	CHECK_INT(t.temp_session, 1, "temp_session");
	CHECK_INT(t.stage, 4, "txn stage");
	CHECK_INT(d.idle_after_txn, 0, "idle in on_txn_done");
	check_status(&d, 421, "421 4.7.0 mx.test closing", 4, 0);
}

static void
test_garbage(void)
{
	const struct step script[] = {
		{ S_SEND, BANNER },
		{ S_EXPECT, "EHLO client.test\r\n" },
		{ S_SEND, EHLO_PLAIN },
		{ S_EXPECT, "MAIL FROM:<a@src.test>\r\n" },
		{ S_SEND, "hello there\r\n" },
		{ S_EXPECT_EOF, NULL },
		{ S_END, NULL },
	};
	struct smtp_client_params p = default_params();
	struct drive d = { 0 };
	struct smtp_txn t;
	struct smtp_txn_rcpt r[2];

	init_txn(&t, r, 2, xyz, "a@src.test", BODY);
	d.txns[0] = &t;
	d.ntxn = 1;
	run(script, &p, &d);
	CHECK_STR(d.events, "RTC", "events");
	for (int i = 0; i < 2; i++)
		check_rcpt(&r[i], 451, "451 4.5.0 [internal] invalid reply from the remote server", "rcpt");
	CHECK_INT(t.temp_session, 1, "temp_session");
	CHECK_INT(t.stage, 2, "stage");
	check_status(&d, 0, "[internal] invalid reply from the remote server", 2, 0);
}

/* Replies of the wrong class, unsolicited replies, early closes. */
static void
test_protocol_violations(void)
{
	const struct step data_250[] = {
		{ S_SEND, BANNER },
		{ S_EXPECT, "EHLO client.test\r\n" },
		{ S_SEND, "250-mx.test\r\n250 PIPELINING\r\n" },
		{ S_EXPECT, "MAIL FROM:<a@src.test>\r\nRCPT TO:<x@mx.test>\r\nDATA\r\n" },
		{ S_SEND, "250 ok\r\n250 ok\r\n250 ok\r\n" },
		{ S_EXPECT_EOF, NULL },
		{ S_END, NULL },
	};
	const struct step rcpt_354[] = {
		{ S_SEND, BANNER },
		{ S_EXPECT, "EHLO client.test\r\n" },
		{ S_SEND, EHLO_PLAIN },
		{ S_EXPECT, "MAIL FROM:<a@src.test>\r\n" },
		{ S_SEND, "250 ok\r\n" },
		{ S_EXPECT, "RCPT TO:<x@mx.test>\r\n" },
		{ S_SEND, "354 what\r\n" },
		{ S_EXPECT_EOF, NULL },
		{ S_END, NULL },
	};
	const struct step idle_reply[] = {
		{ S_SEND, BANNER },
		{ S_EXPECT, "EHLO client.test\r\n" },
		{ S_SEND, EHLO_PLAIN },
		{ S_SEND, "500 5.5.1 unprompted\r\n" },
		{ S_EXPECT_EOF, NULL },
		{ S_END, NULL },
	};
	const struct step idle_close[] = {
		{ S_SEND, BANNER },
		{ S_EXPECT, "EHLO client.test\r\n" },
		{ S_SEND, EHLO_PLAIN },
		{ S_CLOSE, NULL },
		{ S_END, NULL },
	};
	const struct step banner_421[] = {
		{ S_SEND, "421 4.3.2 busy\r\n" },
		{ S_EXPECT_EOF, NULL },
		{ S_END, NULL },
	};
	const struct step ehlo_451[] = {
		{ S_SEND, BANNER },
		{ S_EXPECT, "EHLO client.test\r\n" },
		{ S_SEND, "451 4.3.0 later\r\n" },
		{ S_EXPECT, "QUIT\r\n" },
		{ S_SEND, "221 Bye\r\n" },
		{ S_EXPECT_EOF, NULL },
		{ S_END, NULL },
	};
	struct smtp_client_params p = default_params();
	struct drive d = { 0 };
	struct smtp_txn t;
	struct smtp_txn_rcpt r[1];

	init_txn(&t, r, 1, xyz, "a@src.test", BODY);
	d.txns[0] = &t;
	d.ntxn = 1;
	run(data_250, &p, &d);
	CHECK_STR(d.events, "RTC", "DATA 250 events");
	check_rcpt(&r[0], 451, "451 4.5.0 [internal] invalid reply from the remote server", "DATA 250");
	CHECK_INT(t.stage, 6, "DATA 250 stage");

	memset(&d, 0, sizeof(d));
	init_txn(&t, r, 1, xyz, "a@src.test", BODY);
	d.txns[0] = &t;
	d.ntxn = 1;
	run(rcpt_354, &p, &d);
	CHECK_STR(d.events, "RTC", "RCPT 354 events");
	check_rcpt(&r[0], 451, "451 4.5.0 [internal] invalid reply from the remote server", "RCPT 354");

	memset(&d, 0, sizeof(d));
	run(idle_reply, &p, &d);
	CHECK_STR(d.events, "RC", "idle reply events");
	check_status(&d, 500, "500 5.5.1 unprompted", 1, 0);

	memset(&d, 0, sizeof(d));
	run(idle_close, &p, &d);
	CHECK_STR(d.events, "RC", "idle close events");
	check_status(&d, 0, "[internal] connection lost while idle", 1, 0);

	memset(&d, 0, sizeof(d));
	run(banner_421, &p, &d);
	CHECK_STR(d.events, "C", "banner 421 events");
	check_status(&d, 421, "421 4.3.2 busy", 12, 0);

	memset(&d, 0, sizeof(d));
	run(ehlo_451, &p, &d);
	CHECK_STR(d.events, "C", "EHLO 451 events");
	check_status(&d, 451, "451 4.3.0 later", 10, 0);
}

/* The final reply comes while the body is still going out: verdict kept, session closed. */
static void
test_early_reply(void)
{
	const struct step script[] = {
		{ S_SEND, BANNER },
		{ S_EXPECT, "EHLO client.test\r\n" },
		{ S_SEND, "250-mx.test\r\n250 PIPELINING\r\n" },
		{ S_EXPECT, "MAIL FROM:<a@src.test>\r\nRCPT TO:<x@mx.test>\r\nDATA\r\n" },
		{ S_SEND, "250 ok\r\n250 ok\r\n354 go\r\n" },
		{ S_SEND, "552 5.3.4 message too big\r\n" },
		{ S_DRAIN, NULL },
		{ S_END, NULL },
	};
	size_t len = 8u << 20;
	char *body = malloc(len + 1);
	struct smtp_client_params p = default_params();
	struct drive d = { 0 };
	struct smtp_txn t;
	struct smtp_txn_rcpt r[1];

	for (size_t i = 0; i < len; i++)
		body[i] = i % 80 == 78 ? '\r' : i % 80 == 79 ? '\n' : 'b';
	body[len] = '\0';
	init_txn(&t, r, 1, xyz, "a@src.test", body);
	d.txns[0] = &t;
	d.ntxn = 1;
	run(script, &p, &d);
	CHECK_STR(d.events, "RTC", "events");
	check_rcpt(&r[0], 552, "552 5.3.4 message too big", "early");
	CHECK_INT(t.stage, 8, "stage");
	CHECK_INT(t.temp_session, 0, "temp_session");
	check_status(&d, 552, "552 5.3.4 message too big", 8, 0);
	free(body);
}

static void
test_oversized_banner(void)
{
	static char big[3000];
	const struct step script[] = {
		{ S_SEND, big },
		{ S_EXPECT_EOF, NULL },
		{ S_END, NULL },
	};
	struct smtp_client_params p = default_params();
	struct drive d = { 0 };

	memset(big, 'x', sizeof(big) - 3);
	memcpy(big, "220 ", 4);
	memcpy(big + sizeof(big) - 3, "\r\n", 3);
	run(script, &p, &d);
	CHECK_STR(d.events, "C", "events");
	check_status(&d, 0, "[internal] invalid reply from the remote server", 12, 0);
}

static void
test_timeout(void)
{
	const struct step script[] = {
		{ S_SEND, BANNER },
		{ S_EXPECT, "EHLO client.test\r\n" },
		{ S_SEND, EHLO_PLAIN },
		{ S_EXPECT, "MAIL FROM:<a@src.test>\r\n" },
		{ S_SEND, "250 ok\r\n" },
		{ S_EXPECT, "RCPT TO:<x@mx.test>\r\n" },
		{ S_SEND, "250 ok\r\n" },
		{ S_EXPECT, "DATA\r\n" },
		{ S_EXPECT_EOF, NULL },         /* no answer: the client gives up */
		{ S_END, NULL },
	};
	const struct step banner[] = {
		{ S_EXPECT_EOF, NULL },
		{ S_END, NULL },
	};
	struct smtp_client_params p = default_params();
	struct drive d = { 0 };
	struct smtp_txn t;
	struct smtp_txn_rcpt r[1];

	p.data_ms = 150;
	init_txn(&t, r, 1, xyz, "a@src.test", BODY);
	d.txns[0] = &t;
	d.ntxn = 1;
	run(script, &p, &d);
	CHECK_STR(d.events, "RTC", "events");
	check_rcpt(&r[0], 451, "451 4.4.2 [internal] timeout during DATA", "rcpt");
	CHECK_INT(t.temp_session, 1, "temp_session");
	CHECK_INT(t.stage, 6, "stage");
	check_status(&d, 0, "[internal] timeout during DATA", 6, 0);

	memset(&d, 0, sizeof(d));
	p.banner_ms = 100;
	run(banner, &p, &d);
	CHECK_STR(d.events, "C", "banner events");
	check_status(&d, 0, "[internal] timeout while reading the banner", 12, 0);
}

static void
test_reset(void)
{
	const struct step script[] = {
		{ S_SEND, BANNER },
		{ S_EXPECT, "EHLO client.test\r\n" },
		{ S_SEND, EHLO_PLAIN },
		{ S_EXPECT, "MAIL FROM:<a@src.test>\r\n" },
		{ S_SEND, "250 ok\r\n" },
		{ S_EXPECT, "RCPT TO:<x@mx.test>\r\n" },
		{ S_SEND, "250 ok\r\n" },
		{ S_EXPECT, "DATA\r\n" },
		{ S_SEND, "354 go\r\n" },
		{ S_EXPECT, "Subject: t\r\n\r\nhello\r\n.\r\n" },
		{ S_CLOSE, NULL },
		{ S_END, NULL },
	};
	struct smtp_client_params p = default_params();
	struct drive d = { 0 };
	struct smtp_txn t;
	struct smtp_txn_rcpt r[1];

	init_txn(&t, r, 1, xyz, "a@src.test", BODY);
	d.txns[0] = &t;
	d.ntxn = 1;
	run(script, &p, &d);
	CHECK_STR(d.events, "RTC", "events");
	check_rcpt(&r[0], 451, "451 4.4.2 [internal] connection lost while reading the confirmation",
	           "rcpt");
	CHECK_INT(t.temp_session, 1, "temp_session");
	CHECK_INT(t.stage, 9, "stage");
	CHECK_INT(t.bytes_sent, strlen(BODY), "bytes sent");
	check_status(&d, 0, "[internal] connection lost while reading the confirmation", 9, 0);
}

/* Two transactions on one session (no RSET between), QUIT asked while the second runs. */
static void
test_reuse_and_quit(void)
{
	const struct step script[] = {
		{ S_SEND, BANNER },
		{ S_EXPECT, "EHLO client.test\r\n" },
		{ S_SEND, "250-mx.test\r\n250 PIPELINING\r\n" },
		{ S_EXPECT, "MAIL FROM:<a@src.test>\r\nRCPT TO:<x@mx.test>\r\nDATA\r\n" },
		{ S_SEND, "250 ok\r\n250 ok\r\n354 go\r\n" },
		{ S_EXPECT, "one\r\n.\r\n" },
		{ S_SEND, "250 2.0.0 first\r\n" },
		{ S_EXPECT, "MAIL FROM:<b@src.test>\r\nRCPT TO:<x@mx.test>\r\nDATA\r\n" },
		{ S_SEND, "250 ok\r\n250 ok\r\n354 go\r\n" },
		{ S_EXPECT, "two\r\n.\r\n" },
		{ S_SEND, "451 4.3.0 try later\r\n" },
		{ S_EXPECT, "QUIT\r\n" },
		{ S_SEND, "221 2.0.0 Bye\r\n" },
		{ S_EXPECT_EOF, NULL },
		{ S_END, NULL },
	};
	struct smtp_client_params p = default_params();
	struct drive d = { 0 };
	struct smtp_txn t1, t2;
	struct smtp_txn_rcpt r1[1], r2[1];

	init_txn(&t1, r1, 1, xyz, "a@src.test", "one\r\n");
	init_txn(&t2, r2, 1, xyz, "b@src.test", "two\r\n");
	d.txns[0] = &t1;
	d.txns[1] = &t2;
	d.ntxn = 2;
	d.quit_at_end = 1;
	run(script, &p, &d);
	CHECK_STR(d.events, "RTTC", "events");
	check_rcpt(&r1[0], 250, "250 2.0.0 first", "first");
	check_rcpt(&r2[0], 451, "451 4.3.0 try later", "second");
	CHECK_INT(t2.temp_session, 0, "temp_session");
	check_status(&d, 221, "221 2.0.0 Bye", 1, 1);

	/* QUIT asked while a transaction runs: it finishes, then QUIT. */
	const struct step pending[] = {
		{ S_SEND, BANNER },
		{ S_EXPECT, "EHLO client.test\r\n" },
		{ S_SEND, "250 mx.test\r\n" },
		{ S_EXPECT, "MAIL FROM:<a@src.test>\r\n" },
		{ S_SEND, "250 ok\r\n" },
		{ S_EXPECT, "RCPT TO:<x@mx.test>\r\n" },
		{ S_SEND, "250 ok\r\n" },
		{ S_EXPECT, "DATA\r\n" },
		{ S_SEND, "354 go\r\n" },
		{ S_EXPECT, "one\r\n.\r\n" },
		{ S_SEND, "250 ok\r\n" },
		{ S_EXPECT, "QUIT\r\n" },
		{ S_SEND, "221 Bye\r\n" },
		{ S_EXPECT_EOF, NULL },
		{ S_END, NULL },
	};
	memset(&d, 0, sizeof(d));
	init_txn(&t1, r1, 1, xyz, "a@src.test", "one\r\n");
	d.txns[0] = &t1;
	d.ntxn = 1;
	d.quit_right_after_send = 1;
	run(pending, &p, &d);
	CHECK_STR(d.events, "RTC", "pending events");
	check_rcpt(&r1[0], 250, "250 ok", "pending");
	CHECK_INT(d.idle_after_txn, 0, "idle with QUIT pending");
	check_status(&d, 221, "221 Bye", 1, 1);
}

/* A 554 greeting: QUIT politely, report the greeting (not clean: a failure). */
static void
test_banner_refused(void)
{
	const struct step script[] = {
		{ S_SEND, "554 5.7.1 go away\r\n" },
		{ S_EXPECT, "QUIT\r\n" },
		{ S_SEND, "221 Bye\r\n" },
		{ S_EXPECT_EOF, NULL },
		{ S_END, NULL },
	};
	struct smtp_client_params p = default_params();
	struct drive d = { 0 };

	run(script, &p, &d);
	CHECK_STR(d.events, "C", "events");
	check_status(&d, 554, "554 5.7.1 go away", 12, 0);
}

/* smtp_client_free inside on_ready and inside a failing session's on_txn_done. */
static void
test_free_in_callbacks(void)
{
	const struct step ready[] = {
		{ S_SEND, BANNER },
		{ S_EXPECT, "EHLO client.test\r\n" },
		{ S_SEND, EHLO_PLAIN },
		{ S_EXPECT_EOF, NULL },
		{ S_END, NULL },
	};
	const struct step txn[] = {
		{ S_SEND, BANNER },
		{ S_EXPECT, "EHLO client.test\r\n" },
		{ S_SEND, EHLO_PIPE },
		{ S_EXPECT, "MAIL FROM:<a@src.test> SIZE=21\r\nRCPT TO:<x@mx.test>\r\nDATA\r\n" },
		{ S_SEND, "250 ok\r\n250 ok\r\n354 go\r\n" },
		{ S_EXPECT, "Subject: t\r\n\r\nhello\r\n.\r\n" },
		{ S_SEND, "421 4.3.2 shutting down\r\n" },
		{ S_EXPECT_EOF, NULL },
		{ S_END, NULL },
	};
	const struct step ok[] = {
		{ S_SEND, BANNER },
		{ S_EXPECT, "EHLO client.test\r\n" },
		{ S_SEND, EHLO_PIPE },
		{ S_EXPECT, "MAIL FROM:<a@src.test> SIZE=21\r\nRCPT TO:<x@mx.test>\r\nDATA\r\n" },
		{ S_SEND, "250 ok\r\n250 ok\r\n354 go\r\n" },
		{ S_EXPECT, "Subject: t\r\n\r\nhello\r\n.\r\n" },
		{ S_SEND, "250 ok\r\n" },
		{ S_EXPECT_EOF, NULL },
		{ S_END, NULL },
	};
	struct smtp_client_params p = default_params();
	struct drive d = { 0 };
	struct smtp_txn t;
	struct smtp_txn_rcpt r[1];

	d.free_in = FREE_ON_READY;
	run(ready, &p, &d);
	CHECK_STR(d.events, "R", "free in on_ready");

	memset(&d, 0, sizeof(d));
	init_txn(&t, r, 1, xyz, "a@src.test", BODY);
	d.txns[0] = &t;
	d.ntxn = 1;
	d.free_in = FREE_ON_TXN;
	run(txn, &p, &d);
	CHECK_STR(d.events, "RT", "free in a failing on_txn_done");
	check_rcpt(&r[0], 421, "421 4.3.2 shutting down", "421 after the body");

	memset(&d, 0, sizeof(d));
	init_txn(&t, r, 1, xyz, "a@src.test", BODY);
	d.txns[0] = &t;
	d.ntxn = 1;
	d.free_in = FREE_ON_TXN;
	run(ok, &p, &d);
	CHECK_STR(d.events, "RT", "free in on_txn_done");
	check_rcpt(&r[0], 250, "250 ok", "delivered");
}

static void
test_api_misuse(void)
{
	const struct step script[] = {
		{ S_SEND, BANNER },
		{ S_EXPECT, "EHLO client.test\r\n" },
		{ S_SEND, EHLO_PLAIN },
		{ S_EXPECT, "QUIT\r\n" },
		{ S_SEND, "221 Bye\r\n" },
		{ S_EXPECT_EOF, NULL },
		{ S_END, NULL },
	};
	struct smtp_client_params p = default_params();
	struct drive d = { 0 };
	struct smtp_txn t;
	struct smtp_txn_rcpt r[1];
	int sv[2];

	/* Not idle before the banner: EBUSY; no recipients: EINVAL. */
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
	evutil_make_socket_nonblocking(sv[0]);
	struct event_base *base = event_base_new();
	struct smtp_client *c = smtp_client_new(base, sv[0], &p, &callbacks, &d);
	init_txn(&t, r, 1, xyz, "a@src.test", BODY);
	errno = 0;
	CHECK_INT(smtp_client_send(c, &t), -1, "send before ready");
	CHECK_INT(errno, EBUSY, "errno");
	CHECK_INT(smtp_client_idle(c), 0, "idle before ready");
	CHECK_INT(smtp_client_stage(c), 12, "stage before the banner");
	smtp_client_free(c);            /* outside any callback: at once */
	smtp_client_free(NULL);
	close(sv[1]);
	event_base_free(base);

	/* Recipients with control characters are refused locally. */
	const char *const bad[] = { "x\r\nRSET@mx.test" };
	init_txn(&t, r, 1, bad, "a@src.test", BODY);
	d.txns[0] = &t;
	d.ntxn = 1;
	d.quit_at_end = 1;
	run(script, &p, &d);
	CHECK_STR(d.events, "RTC", "events");
	check_rcpt(&r[0], 553, "553 5.1.3 [internal] invalid recipient address", "bad rcpt");
}

/* --- STARTTLS ---------------------------------------------------------- */

static int
make_cert(void)
{
	X509_NAME *name;
	X509_EXTENSION *ext;
	X509V3_CTX v3;
	FILE *f;
	int fd;

	test_key = EVP_EC_gen("P-256");
	test_cert = X509_new();
	if (test_key == NULL || test_cert == NULL)
		return -1;
	X509_set_version(test_cert, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(test_cert), 1);
	X509_gmtime_adj(X509_getm_notBefore(test_cert), -3600);
	X509_gmtime_adj(X509_getm_notAfter(test_cert), 86400);
	X509_set_pubkey(test_cert, test_key);
	name = X509_get_subject_name(test_cert);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"mx.test", -1, -1, 0);
	X509_set_issuer_name(test_cert, name);
	X509V3_set_ctx(&v3, test_cert, test_cert, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "DNS:mx.test");
	X509_add_ext(test_cert, ext, -1);
	X509_EXTENSION_free(ext);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, "critical,CA:TRUE");
	X509_add_ext(test_cert, ext, -1);
	X509_EXTENSION_free(ext);
	if (X509_sign(test_cert, test_key, EVP_sha256()) == 0)
		return -1;

	snprintf(test_ca_path, sizeof(test_ca_path), "/tmp/smtp_client_test_ca.XXXXXX");
	fd = mkstemp(test_ca_path);
	if (fd < 0 || (f = fdopen(fd, "w")) == NULL)
		return -1;
	PEM_write_X509(f, test_cert);
	fclose(f);

	server_ctx = SSL_CTX_new(TLS_server_method());
	SSL_CTX_use_certificate(server_ctx, test_cert);
	SSL_CTX_use_PrivateKey(server_ctx, test_key);
	return SSL_CTX_check_private_key(server_ctx) == 1 ? 0 : -1;
}

static void
free_cert(void)
{
	unlink(test_ca_path);
	SSL_CTX_free(server_ctx);
	X509_free(test_cert);
	EVP_PKEY_free(test_key);
}

static const char *EHLO_TLS = "250-mx.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n";

static void
test_starttls(void)
{
	const struct step script[] = {
		{ S_SEND, BANNER },
		{ S_EXPECT, "EHLO client.test\r\n" },
		{ S_SEND, EHLO_TLS },
		{ S_EXPECT, "STARTTLS\r\n" },
		{ S_SEND, "220 2.0.0 Ready to start TLS\r\n250 injected in clear\r\n" },
		{ S_TLS, NULL },
		{ S_EXPECT, "EHLO client.test\r\n" },
		{ S_SEND, "250-mx.test\r\n250 PIPELINING\r\n" },
		{ S_EXPECT, "MAIL FROM:<a@src.test>\r\nRCPT TO:<x@mx.test>\r\nDATA\r\n" },
		{ S_SEND, "250 ok\r\n250 ok\r\n354 go\r\n" },
		{ S_EXPECT, "Subject: t\r\n\r\nhello\r\n.\r\n" },
		{ S_SEND, "250 2.0.0 over TLS\r\n" },
		{ S_EXPECT, "QUIT\r\n" },
		{ S_SEND, "221 Bye\r\n" },
		{ S_EXPECT_EOF, NULL },
		{ S_END, NULL },
	};
	static const struct {
		enum smtp_client_tls tls;
		enum smtp_client_verify verify;
		int use_ca;
	} modes[] = {
		{ SMTP_TLS_IFAVAILABLE, SMTP_VERIFY_NO, 0 },
		{ SMTP_TLS_REQUIRED, SMTP_VERIFY_CA, 1 },
		{ SMTP_TLS_REQUIRED, SMTP_VERIFY_HOST, 1 },
	};
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		struct smtp_client_params p = default_params();
		struct drive d = { 0 };
		struct smtp_txn t;
		struct smtp_txn_rcpt r[1];
		char ctx[64];

		snprintf(ctx, sizeof(ctx), "mode %zu", i);
		p.tls = modes[i].tls;
		p.verify = modes[i].verify;
		p.tls_host = "mx.test";
		p.tls_ca_file = modes[i].use_ca ? test_ca_path : NULL;
		init_txn(&t, r, 1, xyz, "a@src.test", BODY);
		d.txns[0] = &t;
		d.ntxn = 1;
		d.quit_at_end = 1;
		run(script, &p, &d);
		CHECK_STR(d.events, "RTC", ctx);
		CHECK(d.ext.tls_active && d.ext.pipelining && !d.ext.starttls,
		      "%s: got tls_active %d, want 1", ctx, (int)d.ext.tls_active);
		check_rcpt(&r[0], 250, "250 2.0.0 over TLS", ctx);
		check_status(&d, 221, "221 Bye", 1, 1);
	}
}

static void
test_starttls_failures(void)
{
	const struct step not_offered[] = {
		{ S_SEND, BANNER },
		{ S_EXPECT, "EHLO client.test\r\n" },
		{ S_SEND, EHLO_PLAIN },
		{ S_EXPECT, "QUIT\r\n" },
		{ S_SEND, "221 Bye\r\n" },
		{ S_EXPECT_EOF, NULL },
		{ S_END, NULL },
	};
	const struct step refused[] = {
		{ S_SEND, BANNER },
		{ S_EXPECT, "EHLO client.test\r\n" },
		{ S_SEND, EHLO_TLS },
		{ S_EXPECT, "STARTTLS\r\n" },
		{ S_SEND, "454 4.7.0 TLS not available\r\n" },
		{ S_EXPECT, "QUIT\r\n" },
		{ S_SEND, "221 Bye\r\n" },
		{ S_EXPECT_EOF, NULL },
		{ S_END, NULL },
	};
	const struct step untrusted[] = {
		{ S_SEND, BANNER },
		{ S_EXPECT, "EHLO client.test\r\n" },
		{ S_SEND, EHLO_TLS },
		{ S_EXPECT, "STARTTLS\r\n" },
		{ S_SEND, "220 2.0.0 Ready to start TLS\r\n" },
		{ S_TLS_FAIL, NULL },
		{ S_END, NULL },
	};
	const struct step ifavail_plain[] = {
		{ S_SEND, BANNER },
		{ S_EXPECT, "EHLO client.test\r\n" },
		{ S_SEND, EHLO_PLAIN },
		{ S_EXPECT, "QUIT\r\n" },
		{ S_SEND, "221 Bye\r\n" },
		{ S_EXPECT_EOF, NULL },
		{ S_END, NULL },
	};
	struct smtp_client_params p = default_params();
	struct drive d = { 0 };

	p.tls = SMTP_TLS_REQUIRED;
	run(not_offered, &p, &d);
	CHECK_STR(d.events, "C", "not offered");
	check_status(&d, 0, "[internal] TLS required but not offered", 11, 0);

	memset(&d, 0, sizeof(d));
	p.tls = SMTP_TLS_REQUIRED;
	run(refused, &p, &d);
	CHECK_STR(d.events, "C", "refused");
	check_status(&d, 0, "[internal] STARTTLS failed: 454 4.7.0 TLS not available", 15, 0);

	/* IFAVAILABLE: a refused STARTTLS goes on in clear (the session becomes ready). */
	{
		const struct step refused_clear[] = {
			{ S_SEND, BANNER },
			{ S_EXPECT, "EHLO client.test\r\n" },
			{ S_SEND, EHLO_TLS },
			{ S_EXPECT, "STARTTLS\r\n" },
			{ S_SEND, "454 4.7.0 TLS not available\r\n" },
			{ S_END, NULL },
		};
		memset(&d, 0, sizeof(d));
		p.tls = SMTP_TLS_IFAVAILABLE;
		run(refused_clear, &p, &d);
		CHECK(d.events[0] == 'R', "refused, ifavailable: got events \"%s\", want ready first",
		      d.events);
	}

	/* VERIFY_CA against the system store: the self-signed certificate fails. */
	memset(&d, 0, sizeof(d));
	p.tls = SMTP_TLS_REQUIRED;
	p.verify = SMTP_VERIFY_CA;
	p.tls_host = "mx.test";
	run(untrusted, &p, &d);
	CHECK_STR(d.events, "C", "untrusted");
	CHECK_INT(d.st.code, 0, "untrusted code");
	CHECK_INT(d.st.stage, 17, "untrusted stage");
	CHECK(strncmp(d.st.reply, "[internal] STARTTLS failed: certificate verification failed: ",
	              61) == 0, "got \"%s\", want a verification failure", d.st.reply);

	/* VERIFY_HOST with the right CA but another name. */
	memset(&d, 0, sizeof(d));
	p.verify = SMTP_VERIFY_HOST;
	p.tls_host = "other.test";
	p.tls_ca_file = test_ca_path;
	run(untrusted, &p, &d);
	CHECK_STR(d.events, "C", "wrong name");
	CHECK(strstr(d.st.reply, "certificate verification failed: hostname mismatch") != NULL,
	      "got \"%s\", want a host name mismatch", d.st.reply);

	/* IFAVAILABLE without the offer: the session stays in clear. */
	memset(&d, 0, sizeof(d));
	p = default_params();
	p.tls = SMTP_TLS_IFAVAILABLE;
	d.quit_at_end = 1;
	run(ifavail_plain, &p, &d);
	CHECK_STR(d.events, "RC", "if available, not offered");
	CHECK_INT(d.ext.tls_active, 0, "tls_active");
	check_status(&d, 221, "221 Bye", 1, 1);
}

static void
test_tls_suite(void)
{
	CHECK(make_cert() == 0, "cannot make the test certificate");
	if (server_ctx == NULL)
		return;
	test_starttls();
	test_starttls_failures();
	free_cert();
}

static void
setup(void)
{
	signal(SIGPIPE, SIG_IGN);
}

TEST_MAIN("smtp_client", TEST(setup), TEST(test_pipelined), TEST(test_not_pipelined),
          TEST(test_helo_fallback), TEST(test_local_refusals), TEST(test_dsn),
          TEST(test_body_encoding), TEST(test_multiline), TEST(test_no_rcpt_accepted),
          TEST(test_mail_refused), TEST(test_421), TEST(test_garbage),
          TEST(test_protocol_violations), TEST(test_early_reply),
          TEST(test_oversized_banner), TEST(test_timeout), TEST(test_reset),
          TEST(test_reuse_and_quit), TEST(test_banner_refused), TEST(test_free_in_callbacks),
          TEST(test_api_misuse), TEST(test_tls_suite))

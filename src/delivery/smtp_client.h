/*
 * smtp_client.h - the outbound SMTP client: one session over one connected
 * socket (RFC 5321, with PIPELINING, SIZE, 8BITMIME, SMTPUTF8, DSN,
 * STARTTLS and ENHANCEDSTATUSCODES).
 *
 *   smtp_client_new         start a session over a connected socket
 *   smtp_client_send        run one mail transaction on an idle session
 *   smtp_client_quit        say QUIT (now, or when the session is next idle)
 *   smtp_client_free        drop the session at once, without callbacks
 *   smtp_client_extensions  what the server advertised
 *   smtp_client_idle / smtp_client_stage
 *
 * Callbacks always run from the event loop, never inside an smtp_client_*
 * call. The session's stages are the codes of docs/logs.md ("Connection
 * stages"): 12 banner, 10 EHLO/HELO, 15 STARTTLS, 17 TLS handshake, 1 idle,
 * 2 MAIL FROM, 4 RCPT TO, 6 DATA, 8 sending the body, 9 reading the
 * confirmation, 13 RSET.
 *
 * Verdicts made here rather than by the server (every one is a complete
 * one-line reply in smtp_txn_rcpt.reply, with "[internal]" after the codes):
 *   552 5.3.4 [internal] message too large for the remote server
 *   553 5.6.7 [internal] SMTPUTF8 not supported by the remote server
 *   553 5.1.7 [internal] invalid sender address      (control characters in it)
 *   553 5.1.3 [internal] invalid recipient address   (control characters in it)
 *   451 4.4.2 [internal] timeout <stage>              (temp_session = 1)
 *   451 4.4.2 [internal] connection lost <stage>      (temp_session = 1)
 *   451 4.5.0 [internal] invalid reply from the remote server (temp_session = 1)
 * A 421 from the server goes to every undecided recipient as it is, with
 * temp_session = 1. smtp_client_status uses code 0 and "[internal] ..."
 * text for local and network failures ("[internal] timeout during DATA",
 * "[internal] connection lost while idle: <errno text>", "[internal] TLS
 * required but not offered", "[internal] STARTTLS failed: 454 4.7.0 ...",
 * "[internal] STARTTLS failed: certificate verification failed: <why>"),
 * and the server's code and reply when a reply ended the session.
 * <stage> reads "while reading the banner", "during EHLO", "during HELO",
 * "during STARTTLS", "during the TLS handshake", "while idle", "during
 * MAIL FROM", "during RCPT TO", "during DATA", "while sending the body",
 * "while reading the confirmation", "during RSET" or "during QUIT".
 *
 * Timeouts: each is a deadline for its stage, in milliseconds; 0 takes the
 * RFC 5321 §4.5.3.2 value (5 min; DATA 2 min; body and final reply 10 min;
 * STARTTLS and the handshake 2 min; QUIT 10 s).
 *
 * Replies of an unexpected class (1xx; 3xx other than 354 to DATA; 2xx
 * to DATA) count as invalid replies. EHLO falls back to HELO after a 5xx;
 * a non-220 greeting, a refused HELO, a refused STARTTLS (any mode) and
 * "TLS required but not offered" end the session after a polite QUIT
 * (the status carries the reason, with clean = 0); a 421, a timeout, a
 * lost connection, an invalid reply or a failed handshake close at once.
 * clean = 1 only for a session ended by smtp_client_quit.
 * ehlo_name NULL or "" means "localhost".
 *
 * Ownership: the client owns fd (closed when the session ends or by
 * smtp_client_free, also when smtp_client_new fails; libevent does the
 * close() from the loop right after), copies params (strings included),
 * and borrows each smtp_txn (and its body and recipients) from
 * smtp_client_send until its on_txn_done. The caller frees the client with smtp_client_free: at
 * any time, and at the latest after on_closed (also inside it).
 */
#ifndef IMPETUS_DELIVERY_SMTP_CLIENT_H
#define IMPETUS_DELIVERY_SMTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

enum smtp_client_tls { SMTP_TLS_NO = 0, SMTP_TLS_IFAVAILABLE, SMTP_TLS_REQUIRED };
enum smtp_client_verify { SMTP_VERIFY_NO = 0, SMTP_VERIFY_CA, SMTP_VERIFY_HOST };

struct smtp_client_params {
	const char *ehlo_name;            /* our name in EHLO/HELO */
	enum smtp_client_tls tls;
	enum smtp_client_verify verify;
	const char *tls_host;             /* name for SNI and host verification (the MX name); may be NULL */
	const char *tls_ca_file;          /* NULL = the system store */
	unsigned banner_ms, ehlo_ms, starttls_ms, mailfrom_ms, rcptto_ms, data_ms, body_ms,
	         quit_ms;                 /* per-stage timeouts, ms (0: RFC default); body_ms covers
	                                     sending the body and waiting for the final reply */
};

#define SMTP_TXN_8BITMIME 0x01u
#define SMTP_TXN_SMTPUTF8 0x02u
/* Same values as spool.h SPOOL_NOTIFY_*, spelt as listener/smtp_parse.h does. */
#define SMTP_NOTIFY_NEVER   0x1
#define SMTP_NOTIFY_SUCCESS 0x2
#define SMTP_NOTIFY_FAILURE 0x4
#define SMTP_NOTIFY_DELAY   0x8
#define SMTP_REPLY_MAX 512                /* bytes of a one-line reply, NUL included */

struct smtp_txn_rcpt {
	const char *rcpt;                 /* in: address without <> */
	const char *orcpt;                /* in: DSN ORCPT value ("rfc822;xtext") or NULL */
	unsigned notify;                  /* in: SMTP_NOTIFY_* or 0 */
	int code;                         /* out: the final verdict: the RCPT reply if not 2xx, else
	                                     the end-of-data reply (or the transaction's failure) */
	char reply[SMTP_REPLY_MAX];       /* out: one-line text of that reply */
	int stage;                        /* out: 4 when the RCPT reply decided it, else 0 (the
	                                     transaction's stage applies) */
};

struct smtp_txn {
	const char *mail_from;            /* in: "" = null reverse path */
	unsigned flags;                   /* in: SMTP_TXN_* */
	const char *envid;                /* in: DSN ENVID (xtext) or NULL */
	int ret;                          /* in: 0 none, 1 FULL, 2 HDRS */
	struct smtp_txn_rcpt *rcpts;      /* in/out */
	size_t nrcpt;                     /* at least 1 */
	const char *body;                 /* in: CRLF lines, not dot-stuffed; valid until on_txn_done */
	size_t body_len;                  /* bytes */
	int stage;                        /* out: stage code where it ended; 9 after the final reply */
	uint64_t bytes_sent;              /* out: body bytes written (body_len once the body went out) */
	int temp_session;                 /* out: 1 when the session failed, not this message */
};

struct smtp_client_status {           /* why a session ended or could not start */
	int code;                         /* last SMTP reply code, or 0 for a local/network failure */
	char reply[SMTP_REPLY_MAX];       /* one line; "[internal] ..." for local/network failures */
	int stage;                        /* where it ended */
	int clean;                        /* 1 after our QUIT (smtp_client_quit), 0 for failures */
};

struct smtp_client_ext {
	unsigned pipelining:1, eightbit:1, smtputf8:1, dsn:1, starttls:1, enhanced:1, chunking:1,
	         tls_active:1;
	uint64_t size_max;                /* bytes, 0 = none */
};

struct smtp_client;

struct smtp_client_cb {
	/* banner, EHLO (and STARTTLS + EHLO again) done: idle, ready for smtp_client_send */
	void (*on_ready)(struct smtp_client *c, void *arg);
	/* every rcpt has code+reply; if the session survived, the client is idle again */
	void (*on_txn_done)(struct smtp_client *c, struct smtp_txn *t, void *arg);
	/* the session is over; the caller must smtp_client_free(c) (also inside this callback) */
	void (*on_closed)(struct smtp_client *c, const struct smtp_client_status *st, void *arg);
};

/*
 * smtp_client_new: run a session over fd (a connected non-blocking stream
 * socket; the client takes ownership and closes it). NULL (fd closed) only
 * when libevent cannot make a bufferevent.
 */
struct smtp_client *smtp_client_new(struct event_base *base, int fd,
                                    const struct smtp_client_params *p,
                                    const struct smtp_client_cb *cb, void *arg);
/*
 * smtp_client_send: start a transaction. 0, or -1 with errno EBUSY (not
 * idle), EPIPE (the session is over or QUIT was asked) or EINVAL (no
 * recipients). Verdicts decided locally (SIZE, SMTPUTF8) still arrive
 * through on_txn_done, from the loop.
 */
int smtp_client_send(struct smtp_client *c, struct smtp_txn *t);
/*
 * smtp_client_quit: send QUIT now if idle, else when the current
 * transaction or greeting ends (on_ready is then not called; on_txn_done
 * still is); on_closed follows with clean = 1. No effect once the session
 * is over.
 */
void smtp_client_quit(struct smtp_client *c);
/* smtp_client_free: close now; no callback runs after it. Safe inside any callback of c; NULL ok. */
void smtp_client_free(struct smtp_client *c);
const struct smtp_client_ext *smtp_client_extensions(const struct smtp_client *c);
/* smtp_client_idle: 1 when ready for smtp_client_send. */
int smtp_client_idle(const struct smtp_client *c);
/* smtp_client_stage: the current stage code (docs/logs.md). */
int smtp_client_stage(const struct smtp_client *c);

#endif

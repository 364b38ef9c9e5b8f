/*
 * log_format.h - the record layouts of the mainlog, bouncelog, rejectlog
 * and jsonlog, and the bounce classifier.
 *
 * An event is first gathered into a record (log_record_from_message,
 * log_reject_from_hook: they read the message and binding accessors), then
 * rendered by pure functions into a caller's buffer. Every log_format_*
 * function follows snprintf: it returns the length of the whole record
 * (its '\n' included, the NUL not), writes at most len bytes with a NUL,
 * and a return value >= len means the buffer was too small: call again
 * with return + 1 bytes. The layouts are documented in docs/logs.md.
 *
 * Threads: every function here is safe on any thread.
 */
#ifndef IMPETUS_LOG_LOG_FORMAT_H
#define IMPETUS_LOG_LOG_FORMAT_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>
#include <time.h>

#include <impetus/message.h>
#include <impetus/types.h>

#define LOG_ADDR_LEN (INET6_ADDRSTRLEN + 8)     /* "[ip6]:port" with its NUL */

/* Bounce classification codes (Momentum's). */
enum log_bounce_class {
	LOG_BC_UNDETERMINED = 1,
	LOG_BC_INVALID_RECIPIENT = 10,
	LOG_BC_SOFT_BOUNCE = 20,
	LOG_BC_DNS_FAILURE = 21,
	LOG_BC_MAILBOX_FULL = 22,
	LOG_BC_TOO_LARGE = 23,
	LOG_BC_TIMEOUT = 24,
	LOG_BC_ADMIN_FAILURE = 25,
	LOG_BC_GENERIC_NO_RCPT = 30,
	LOG_BC_GENERIC_BOUNCE = 40,
	LOG_BC_MAIL_BLOCK = 50,
	LOG_BC_SPAM_BLOCK = 51,
	LOG_BC_SPAM_CONTENT = 52,
	LOG_BC_PROHIBITED_ATTACHMENT = 53,
	LOG_BC_RELAYING_DENIED = 54,
	LOG_BC_AUTO_REPLY = 60,
	LOG_BC_TRANSIENT_FAILURE = 70,
	LOG_BC_SUBSCRIBE = 80,
	LOG_BC_UNSUBSCRIBE = 90,
	LOG_BC_CHALLENGE_RESPONSE = 100,
};

/* One message event: a mainlog R, D, T or P record, a bouncelog B or T
 * record, a jsonlog object. Strings are borrowed from the message (or the
 * hook's caller) and valid while it is. */
struct log_msg_record {
	char type;                          /* 'R', 'D', 'T' or 'P' */
	time_t time;                        /* seconds since the epoch */
	const char *msg_id;                 /* the recipient-message's id */
	const char *batch_id;               /* the submission's id */
	uint64_t conn_id;                   /* connection id; 0 = local */
	const char *rcpt;                   /* recipient address */
	const char *mailfrom;               /* reverse path; "" = null sender */
	const char *dest_domain;            /* D/T/P: routing domain */
	uint64_t size;                      /* bytes of the message body */
	uint64_t bytes_sent;                /* T/P: bytes sent before the failure */
	const char *binding_group;          /* name; "default" when unbound */
	const char *binding;                /* name; "default" when unbound */
	unsigned retries;                   /* failed attempts before this one */
	int64_t secs;                       /* seconds from reception to this event */
	int stage;                          /* connection stage code, 0-22 */
	const char *proto;                  /* R: "esmtp", "rest", "internal"… */
	char src_ip[INET6_ADDRSTRLEN];      /* R: the injecting peer; "" = local */
	char remote_ip[INET6_ADDRSTRLEN];   /* D/T/P: peer of the attempt; "" = none */
	const char *response;               /* reply or internal reason, response_len bytes */
	size_t response_len;                /* bytes, no NUL needed */
	int bounce_class;                   /* T/P: classification code (log_classify) */
};

/* One rejectlog record. */
struct log_reject_record {
	time_t time;                        /* seconds since the epoch */
	char remote[LOG_ADDR_LEN];          /* client "ip:port" */
	char local[LOG_ADDR_LEN];           /* our "ip:port" */
	uint64_t conn_id;                   /* inbound connection */
	const char *phase;                  /* validate_phase_name() */
	int code;                           /* leading reply code; 0 = none */
	const char *module;                 /* module that refused */
	const char *message;                /* the reply text, message_len bytes */
	size_t message_len;                 /* bytes, no NUL needed */
};

/* log_format_time: now in seconds, or the current time when now is NULL. */
time_t log_format_time(const struct timeval *now);
/* log_format_reply_code: the leading 3-digit code of text, or 0. */
int log_format_reply_code(const char *text, size_t len);

/* log_record_from_message: fill r for a message event of the given type.
 * ac: the inbound connection (R only, may be NULL); dr: the domain record
 * (may be NULL); note: the reply, note_len bytes (may be NULL; a negative
 * note_len means NUL-terminated). bounce_class is left 0. */
void log_record_from_message(struct log_msg_record *r, char type, const accept_construct *ac,
                             const ec_message *m, const domain_record *dr,
                             const struct timeval *now, const char *note, int note_len);
/* log_reject_from_hook: fill r from log_rejection's arguments and the
 * formatted reply (message, len bytes); module names who refused. */
void log_reject_from_hook(struct log_reject_record *r, const struct timeval *now,
                          const accept_construct *ac, int phase, const char *module,
                          const char *message, size_t len);

/* The '@' layouts: the mainlog record of r's type, the bouncelog record
 * ('B' for a P event, 'T' for a T event). */
size_t log_format_mainlog(char *buf, size_t len, const struct log_msg_record *r);
size_t log_format_bouncelog(char *buf, size_t len, const struct log_msg_record *r);
/* The rejectlog's key="value" layout. */
size_t log_format_rejectlog(char *buf, size_t len, const struct log_reject_record *r);
/* One JSON object per line. */
size_t log_format_json_message(char *buf, size_t len, const struct log_msg_record *r);
size_t log_format_json_rejection(char *buf, size_t len, const struct log_reject_record *r);
/* Heartbeats (logfile_heartbeat_fn): "t@@@@M", "t@@@@M1", "t: Marker 1". */
size_t log_format_heartbeat_mainlog(char *buf, size_t len, time_t t);
size_t log_format_heartbeat_bouncelog(char *buf, size_t len, time_t t);
size_t log_format_heartbeat_rejectlog(char *buf, size_t len, time_t t);

/* log_classify_builtin: the classification code of an SMTP reply or
 * internal reason (NUL-terminated), from the built-in rule table. */
int log_classify_builtin(const char *response);
/* log_classify: smtp_error_classify's providers first (the first non-zero
 * answer wins), then the built-in table. */
int log_classify(const char *response, const char *domain);
/* log_classify_name: "Invalid Recipient" for 10…; "Unknown" otherwise. */
const char *log_classify_name(int code);

#endif

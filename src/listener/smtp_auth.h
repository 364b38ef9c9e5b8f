/*
 * smtp_auth.h - SMTP AUTH (RFC 4954) for the server: PLAIN (RFC 4616) and
 * LOGIN payloads, the users file, password checks, failure accounting.
 *
 * Pure parsers (no I/O, no logging, never read past the length given):
 *   smtp_auth_mech_parse    "AUTH <mech> [initial-response]" argument
 *   smtp_auth_b64_decode    strict base64 (RFC 4648) of a SASL response
 *   smtp_auth_plain_decode  authzid NUL authcid NUL passwd
 *   smtp_auth_users_parse   "user:crypt-hash" lines -> a users table
 *
 * Users tables:
 *   smtp_auth_users_load     read and parse a file (blocking: main thread,
 *                            or once per configuration generation)
 *   smtp_auth_users_check_file  the Auth_Users_File option check
 *   smtp_auth_users_get      the table of a path for a configuration
 *                            generation, loaded on first use and cached
 *   smtp_auth_users_ref / _unref  reference counting (any thread)
 *   smtp_auth_users_verify   crypt_r and a constant-time compare (blocking)
 *   smtp_auth_verify_async   the same on a worker thread; the answer comes
 *                            back on the caller's loop
 *
 * Per-client failure accounting (all threads share one table):
 *   smtp_auth_peer_failures / smtp_auth_peer_fail
 *
 * Error contract: parsers return 0 or -1; loaders return NULL with a reason
 * in err. Nothing here logs, and no password is ever copied anywhere but
 * into the worker's job, which wipes it.
 */
#ifndef IMPETUS_LISTENER_SMTP_AUTH_H
#define IMPETUS_LISTENER_SMTP_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

struct loop;

#define SMTP_AUTH_LINE_MAX  2048    /* octets of a SASL response line, CRLF included */
#define SMTP_AUTH_FIELD_MAX 255     /* octets of an authzid, authcid or password */

enum smtp_auth_mech {
	SMTP_AUTH_MECH_UNKNOWN,
	SMTP_AUTH_MECH_PLAIN,
	SMTP_AUTH_MECH_LOGIN,
};

/*
 * smtp_auth_mech_parse: arg / len is the AUTH command's argument. *mech is
 * the mechanism (case-insensitive; UNKNOWN for any other name); *ir /
 * *irlen the initial response after one space (NULL / 0 when absent; "="
 * stays "=", the caller maps it to an empty response). -1 for a syntax
 * error (a second argument, or nothing).
 */
int smtp_auth_mech_parse(const char *arg, size_t len, enum smtp_auth_mech *mech,
                         const char **ir, size_t *irlen);

/*
 * smtp_auth_b64_decode: base64 in / len (no whitespace; padding required,
 * so len is a multiple of 4) into out (room for outmax octets). 0 with
 * *outlen, or -1 on a bad character, bad padding or too little room.
 * An empty input decodes to nothing.
 */
int smtp_auth_b64_decode(const char *in, size_t len, unsigned char *out, size_t outmax,
                         size_t *outlen);

/* Credentials of one exchange; the password is wiped by smtp_auth_creds_wipe. */
struct smtp_auth_creds {
	char authzid[SMTP_AUTH_FIELD_MAX + 1]; /* "" when not given */
	char user[SMTP_AUTH_FIELD_MAX + 1];    /* authcid */
	char pass[SMTP_AUTH_FIELD_MAX + 1];
};

void smtp_auth_creds_wipe(struct smtp_auth_creds *c);

/*
 * smtp_auth_plain_decode: the decoded PLAIN message (RFC 4616 §2):
 * [authzid] NUL authcid NUL passwd, authcid and passwd 1..255 octets,
 * authzid 0..255, no other NUL. -1 when malformed.
 */
int smtp_auth_plain_decode(const unsigned char *msg, size_t len, struct smtp_auth_creds *out);

/* ---------------------------------------------------------------- users */

struct smtp_auth_users;

/*
 * smtp_auth_users_parse: text / len holds lines "user:hash" (blank lines and
 * lines starting with '#' are skipped; CRLF is fine). A user is 1..255
 * octets without ':' or white space, listed once; a hash is a crypt(3)
 * string whose method libcrypt supports (crypt_checksalt OK), e.g.
 * "$6$..." (openssl passwd -6) or "$y$..." (mkpasswd). NULL with
 * "line N: why" in err. The table starts with one reference.
 */
struct smtp_auth_users *smtp_auth_users_parse(const char *text, size_t len, char *err,
                                              size_t errlen);
struct smtp_auth_users *smtp_auth_users_load(const char *path, char *err, size_t errlen);
/* smtp_auth_users_check_file: 0 when path loads, else -1 with the reason. */
int smtp_auth_users_check_file(const char *path, char *err, size_t errlen);
size_t smtp_auth_users_count(const struct smtp_auth_users *u);
struct smtp_auth_users *smtp_auth_users_ref(struct smtp_auth_users *u);
void smtp_auth_users_unref(struct smtp_auth_users *u);

/*
 * smtp_auth_users_get: the table of path for configuration generation gen,
 * with a reference for the caller. Loaded on the first call for that
 * generation and cached; tables of older generations leave the cache then
 * (sessions still holding them keep them alive). NULL with err when the
 * file cannot be loaded (also cached: *first_error is 1 only for the call
 * that found the error, so the caller logs it once). Any thread.
 */
struct smtp_auth_users *smtp_auth_users_get(uint64_t gen, const char *path, int *first_error,
                                            char *err, size_t errlen);

/* smtp_auth_users_verify: 1 when user exists and pass matches its hash,
 * else 0. An unknown user costs the same crypt as a known one. Blocking. */
int smtp_auth_users_verify(const struct smtp_auth_users *u, const char *user, const char *pass);

/*
 * smtp_auth_verify_async: smtp_auth_users_verify on a worker thread (the
 * module's own small pool, started on first use), then done(ok, user, arg)
 * on origin's thread. The job copies user and pass (and wipes its copy) and
 * holds a reference on u. user in the callback is valid during the call.
 */
typedef void (*smtp_auth_verify_fn)(int ok, const char *user, void *arg);
void smtp_auth_verify_async(struct smtp_auth_users *u, const char *user, const char *pass,
                            struct loop *origin, smtp_auth_verify_fn done, void *arg);

/* ------------------------------------------------------ failures per client */

/* smtp_auth_peer_failures: failed authentications from addr's address in
 * the window_s seconds before now (0 when the window has passed). */
long smtp_auth_peer_failures(const struct sockaddr *addr, long window_s, time_t now);
/* smtp_auth_peer_fail: count one more failure from addr; a new window
 * starts when the last one is over. */
void smtp_auth_peer_fail(const struct sockaddr *addr, long window_s, time_t now);

#endif

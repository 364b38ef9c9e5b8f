/*
 * listener.h - the ESMTP listeners: sockets, accepting, sessions.
 *
 * Every Listen stanza of every ESMTP_Listener is one address. At start, as
 * root if need be, listener_set_bind opens it once per event loop
 * (SO_REUSEPORT: the kernel spreads connections over the loops); after the
 * privilege drop listener_set_start attaches the sockets to the loops and
 * SMTP sessions (smtp_session.c) run on the loop that accepted them.
 *
 * A Listen name that is a path (listen_addr_is_unix in lib/netaddr.h) is a
 * Unix socket for local submission (impetus-sendmail): one socket, accepted
 * on loop 0, mode 0660; a stale file is replaced, a live socket is never
 * taken over; listener_set_chown gives it to the daemon's user before the
 * privilege drop; listener_set_free removes it. Its clients are local: the
 * session trusts them to relay (only the file's permissions decide who may
 * connect).
 * listener_set_stop (main thread) stops accepting and ends the sessions:
 * idle ones get 421, one waiting for the spool finishes its reply first.
 *
 * Options are read per connection from the running configuration, in the
 * scope of the most specific Peer CIDR that matches the client (a Peer in
 * the Listen stanza wins over one in ESMTP_Listener at equal length), then
 * Listen, ESMTP_Listener and global. Listen addresses themselves need a
 * restart to change (listener_set_matches refuses such a reload).
 */
#ifndef IMPETUS_LISTENER_LISTENER_H
#define IMPETUS_LISTENER_LISTENER_H

#include <stdint.h>

#include <stddef.h>
#include <sys/types.h>

struct conf;
struct conf_errors;
struct loop_group;
struct spool;
struct listener_set;

/* listener_register_checks: give the TLS and AUTH file options their
 * validators (the configuration layer knows nothing of TLS); call once,
 * before any configuration is loaded. */
void listener_register_checks(void);

/* listener_set_bind: bind and listen on every Listen address of c, nsockets
 * times each. NULL with err on failure (address in use, permission). */
struct listener_set *listener_set_bind(const struct conf *c, int nsockets, char *err,
                                       size_t errlen);
/* listener_set_chown: give the Unix socket files to uid:gid (as root, before
 * the privilege drop). 0, or -1 with err. */
int listener_set_chown(const struct listener_set *ls, uid_t uid, gid_t gid, char *err,
                       size_t errlen);
/* listener_set_start: accept on the loops; sessions spool into sp. */
int listener_set_start(struct listener_set *ls, struct loop_group *loops, struct spool *sp,
                       char *err, size_t errlen);
/* listener_set_stop: stop accepting and end the sessions; returns once every
 * loop has done so (main thread, loops running). */
void listener_set_stop(struct listener_set *ls);
/* listener_set_free: close the sockets (after the loops have stopped) and
 * remove the Unix socket files this set created. */
void listener_set_free(struct listener_set *ls);

/* Inbound SMTP sessions of the process: open now, and accepted since start
 * (any thread; approximate while loops run). */
struct listener_stats {
	uint64_t sessions_open;             /* sessions running now */
	uint64_t sessions_total;            /* sessions started since the process began */
};
void listener_stats(struct listener_stats *out);
/* listener_set_count: addresses listened on. */
size_t listener_set_count(const struct listener_set *ls);
/* listener_set_matches: 0 when c has the same Listen addresses; else -1 with
 * an error in errs (a reload cannot move listeners). */
int listener_set_matches(const struct listener_set *ls, const struct conf *c,
                         struct conf_errors *errs);

#endif

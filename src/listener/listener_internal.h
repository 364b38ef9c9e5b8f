/*
 * listener_internal.h - shared by listener.c and smtp_session.c only.
 */
#ifndef IMPETUS_LISTENER_LISTENER_INTERNAL_H
#define IMPETUS_LISTENER_LISTENER_INTERNAL_H

#include <stdatomic.h>
#include <sys/socket.h>

struct evconnlistener;
struct loop;
struct spool;

/* One Listen address, opened once per loop. */
struct listen_sock {
	char *name;                         /* the Listen stanza name, "127.0.0.1:2525" */
	struct sockaddr_storage addr;       /* what it is bound to */
	socklen_t addrlen;
	int *fds;                           /* one listening socket per loop */
	struct evconnlistener **evl;        /* one per loop, NULL until started */
	int nfds;
	atomic_int sessions;                /* open sessions on this address, all loops */
	struct spool *spool;                /* where sessions store messages */
};

/* peer_sessions_enter: count a session of addr; returns the new count.
 * peer_sessions_leave undoes it. Any thread. */
int peer_sessions_enter(const struct sockaddr *addr);
void peer_sessions_leave(const struct sockaddr *addr);

/* smtp_session_start: run an SMTP session on fd (accepted on l's thread). */
void smtp_session_start(struct listen_sock *ls, struct loop *l, int fd,
                        const struct sockaddr *peer, int peerlen);
/* smtp_session_shutdown: on l's thread, end every session of that loop. */
void smtp_session_shutdown(struct loop *l);

#endif

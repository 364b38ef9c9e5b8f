/*
 * control.h - the console: Control_Listener sockets, sessions, verbs.
 *
 * Every Listen stanza of every Control_Listener is one socket: a path is a
 * Unix socket (mode 0660, given to the daemon's user and group by
 * control_chown; a stale file is replaced, a live socket is never taken
 * over, the file is removed at stop), "127.0.0.1:port" a TCP socket (off
 * unless configured; anyone who can connect can run every verb, so keep it
 * on loopback). impetusctl (src/tools/impetusctl.c) is the client; the
 * protocol is in control_request.h, the verbs in docs/console.md.
 *
 *   control_bind    open the sockets (as root if need be, before the drop)
 *   control_chown   give the Unix socket files to the daemon's user/group
 *   control_start   accept on the main loop, with the daemon's services
 *   control_stop    close sessions and sockets, remove the files
 *
 * Threads: everything on the main thread; sessions run on the main loop,
 * and verbs that read or change queues post their work to the queue loops
 * (queue/queue_console.h) and answer when it comes back. A session that
 * goes away while its answer is being gathered is freed when it arrives.
 * Errors: bind/start return -1 with a reason; nothing here exits.
 */
#ifndef IMPETUS_CONTROL_CONTROL_H
#define IMPETUS_CONTROL_CONTROL_H

#include <stddef.h>
#include <sys/types.h>

#include "lib/strbuf.h"

struct conf;
struct loop;
struct module_generation;

/* What the daemon does for the console (all called on the main thread). */
struct control_ops {
	void *arg;
	/* reload: the SIGHUP path (re-read the file); 0, or -1 with why in out. */
	int (*reload)(void *arg, struct strbuf *out);
	/* install: a generation built by "config set" (taken over, checked and
	 * installed like a reload); 0, or -1 with why in out. */
	int (*install)(void *arg, struct conf *fresh, struct strbuf *out);
	/* reopen: SIGUSR1's work (paniclog and log writers). */
	void (*reopen)(void *arg);
	/* shutdown: stop the daemon as SIGTERM does (after the answer is sent). */
	void (*shutdown)(void *arg);
	/* modules: the running module generation (for module verbs). */
	const struct module_generation *(*modules)(void *arg);
};

/* control_bind: open every Listen of every Control_Listener of c. Returns
 * 0 (also when there is none), or -1 with err. */
int control_bind(const struct conf *c, char *err, size_t errlen);
/* control_chown: Unix socket files to uid:gid. 0, or -1 with err. */
int control_chown(uid_t uid, gid_t gid, char *err, size_t errlen);
/* control_start: accept on main_loop; ops is copied. 0, or -1 with err. */
int control_start(struct loop *main_loop, const struct control_ops *ops, char *err,
                  size_t errlen);
/* control_stop: close every session and socket; remove the socket files. */
void control_stop(void);

#endif

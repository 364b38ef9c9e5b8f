/*
 * control.c - the Control_Listener sockets and the console sessions.
 *
 *   control_bind / control_chown / control_start / control_stop  (control.h)
 *   control_cmd_out / _done / _fail / _shutdown_after             (control_internal.h)
 *
 * A session is a bufferevent on the main loop. It answers one request at a
 * time: while a command is pending, later lines wait in the input buffer
 * (a client may pipeline). A line longer than CONTROL_LINE_MAX gets an error
 * and the session is closed. At most CONTROL_SESSIONS_MAX sessions; more
 * are answered with an error and closed.
 *
 * Ownership: the process has one control state (static). A session owns its
 * bufferevent and its pending command until the client leaves; then the
 * command is detached (cmd->s = NULL) and freed by control_cmd_done.
 * Unix socket files are removed at stop if they are still the ones bound
 * (same device and inode).
 */
#include "control/control.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "conf/conf.h"
#include "control/control_internal.h"
#include "control/control_request.h"
#include "event/loop.h"
#include "lib/diag.h"
#include "lib/netaddr.h"
#include "lib/xalloc.h"

#define CONTROL_SOCKET_MODE 0660        /* the daemon's user and group */
#define CONTROL_SESSIONS_MAX 64         /* concurrent console sessions */

struct control_sock {
	char *name;                         /* the Listen name */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	int fd;
	int bound_file;                     /* we created the Unix socket file */
	dev_t dev;                          /* its device and inode */
	ino_t ino;
	struct evconnlistener *evl;         /* after control_start */
};

struct control_session {
	struct bufferevent *bev;
	struct control_cmd *pending;        /* the request being answered, or NULL */
	int in_next;                        /* inside session_next (no re-entry) */
	int close_after;                    /* close once the output is written */
	int shutdown_after;                 /* stop the daemon once the output is written */
	LIST_ENTRY(control_session) link;
};

struct control_cmd {
	struct control_session *s;          /* NULL once the client left */
	struct strbuf out;                  /* the answer's text */
	int shutdown_after;
};

static struct {
	struct control_sock *socks;
	size_t nsocks;
	struct loop *loop;
	struct control_ops ops;
	time_t started;
	LIST_HEAD(, control_session) sessions;
	unsigned nsessions;
} C;

static void on_accept(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg);
static void on_read(struct bufferevent *bev, void *arg);
static void on_write(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);
static void session_next(struct control_session *s);
static void session_free(struct control_session *s);
static void session_send(struct control_session *s, const char *text, int status);
static int open_unix(struct control_sock *cs, char *err, size_t errlen);
static int open_tcp(struct control_sock *cs, char *err, size_t errlen);

const struct control_ops *
control_ops_get(void)
{
	return &C.ops;
}

struct loop *
control_loop(void)
{
	return C.loop;
}

time_t
control_started(void)
{
	return C.started;
}

/* ------------------------------------------------------------ sockets */

static int
unix_live(const struct control_sock *cs)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), live;

	if (fd < 0)
		return 1;
	if (connect(fd, (const struct sockaddr *)&cs->addr, cs->addrlen) == 0)
		live = 1;
	else
		live = errno != ECONNREFUSED && errno != ENOENT;
	close(fd);
	return live;
}

static int
open_unix(struct control_sock *cs, char *err, size_t errlen)
{
	const char *path = ((const struct sockaddr_un *)&cs->addr)->sun_path;
	struct stat st;
	int fd;

	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "Control_Listener Listen \"%s\": the file exists and is "
			         "not a socket", cs->name);
			return -1;
		}
		if (unix_live(cs)) {
			snprintf(err, errlen, "Control_Listener Listen \"%s\": another process is "
			         "listening on it", cs->name);
			return -1;
		}
		unlink(path);
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0 ||
	    bind(fd, (const struct sockaddr *)&cs->addr, cs->addrlen) < 0) {
		snprintf(err, errlen, "Control_Listener Listen \"%s\": %s", cs->name, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (stat(path, &st) == 0) {
		cs->bound_file = 1;
		cs->dev = st.st_dev;
		cs->ino = st.st_ino;
	}
	/* The mode before listen(): nobody connects while it is the umask's. */
	if (chmod(path, CONTROL_SOCKET_MODE) < 0 || listen(fd, 64) < 0) {
		snprintf(err, errlen, "Control_Listener Listen \"%s\": %s", cs->name, strerror(errno));
		close(fd);
		return -1;
	}
	cs->fd = fd;
	return 0;
}

static int
open_tcp(struct control_sock *cs, char *err, size_t errlen)
{
	int one = 1;
	int fd = socket(cs->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		snprintf(err, errlen, "Control_Listener Listen \"%s\": %s", cs->name, strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&cs->addr, cs->addrlen) < 0 || listen(fd, 64) < 0) {
		snprintf(err, errlen, "Control_Listener Listen \"%s\": %s", cs->name, strerror(errno));
		close(fd);
		return -1;
	}
	cs->fd = fd;
	return 0;
}

int
control_bind(const struct conf *c, char *err, size_t errlen)
{
	const struct conf_scope *cl, *ln;
	size_t n = 0;

	for (size_t i = 0; (cl = conf_scope_child(c->global, CONF_SCOPE_CONTROL_LISTENER, i)); i++)
		for (size_t j = 0; conf_scope_child(cl, CONF_SCOPE_LISTEN, j); j++)
			n++;
	C.socks = xcalloc(n ? n : 1, sizeof(*C.socks));
	C.nsocks = 0;
	LIST_INIT(&C.sessions);
	for (size_t i = 0; (cl = conf_scope_child(c->global, CONF_SCOPE_CONTROL_LISTENER, i)); i++)
		for (size_t j = 0; (ln = conf_scope_child(cl, CONF_SCOPE_LISTEN, j)); j++) {
			struct control_sock *cs = &C.socks[C.nsocks++];
			cs->name = xstrdup(ln->name);
			cs->fd = -1;
			if (listen_addr_parse(cs->name, &cs->addr, &cs->addrlen, err, errlen) < 0 ||
			    (cs->addr.ss_family == AF_UNIX ? open_unix(cs, err, errlen)
			                                   : open_tcp(cs, err, errlen)) < 0) {
				control_stop();
				return -1;
			}
		}
	return 0;
}

int
control_chown(uid_t uid, gid_t gid, char *err, size_t errlen)
{
	for (size_t i = 0; i < C.nsocks; i++) {
		struct control_sock *cs = &C.socks[i];
		if (cs->addr.ss_family != AF_UNIX || !cs->bound_file)
			continue;
		if (lchown(((struct sockaddr_un *)&cs->addr)->sun_path, uid, gid) < 0) {
			snprintf(err, errlen, "Control_Listener Listen \"%s\": chown: %s", cs->name,
			         strerror(errno));
			return -1;
		}
	}
	return 0;
}

int
control_start(struct loop *main_loop, const struct control_ops *ops, char *err, size_t errlen)
{
	C.loop = main_loop;
	C.ops = *ops;
	C.started = time(NULL);
	for (size_t i = 0; i < C.nsocks; i++) {
		struct control_sock *cs = &C.socks[i];
		cs->evl = evconnlistener_new(loop_base(main_loop), on_accept, cs,
		                             LEV_OPT_CLOSE_ON_EXEC, -1, cs->fd);
		if (cs->evl == NULL) {
			snprintf(err, errlen, "Control_Listener Listen \"%s\": cannot accept", cs->name);
			return -1;
		}
	}
	return 0;
}

void
control_stop(void)
{
	struct control_session *s;

	while ((s = LIST_FIRST(&C.sessions)) != NULL)
		session_free(s);
	for (size_t i = 0; i < C.nsocks; i++) {
		struct control_sock *cs = &C.socks[i];
		struct stat st;
		if (cs->evl != NULL)
			evconnlistener_free(cs->evl);   /* closes fd */
		else if (cs->fd >= 0)
			close(cs->fd);
		if (cs->addr.ss_family == AF_UNIX && cs->bound_file) {
			const char *path = ((struct sockaddr_un *)&cs->addr)->sun_path;
			if (lstat(path, &st) == 0 && st.st_dev == cs->dev && st.st_ino == cs->ino)
				unlink(path);
		}
		free(cs->name);
	}
	free(C.socks);
	C.socks = NULL;
	C.nsocks = 0;
}

/* ------------------------------------------------------------ sessions */

static void
on_accept(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa, int salen,
          void *arg)
{
	struct control_session *s = xcalloc(1, sizeof(*s));

	s->bev = bufferevent_socket_new(loop_base(C.loop), fd, BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL) {
		close(fd);
		free(s);
		return;
	}
	LIST_INSERT_HEAD(&C.sessions, s, link);
	C.nsessions++;
	bufferevent_setcb(s->bev, on_read, on_write, on_event, s);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	if (C.nsessions > CONTROL_SESSIONS_MAX) {
		s->close_after = 1;
		session_send(s, "too many console sessions", 1);
	}
}

static void
session_free(struct control_session *s)
{
	if (s->pending != NULL)
		s->pending->s = NULL;           /* freed when its answer comes */
	LIST_REMOVE(s, link);
	C.nsessions--;
	bufferevent_free(s->bev);
	free(s);
}

static void
session_send(struct control_session *s, const char *text, int status)
{
	struct strbuf framed = STRBUF_INIT;

	control_answer_frame(text, strlen(text), status, &framed);
	bufferevent_write(s->bev, framed.data, framed.len);
	strbuf_free(&framed);
}

/* Run the buffered requests, one at a time, until one is pending. */
static void
session_next(struct control_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);

	if (s->in_next)
		return;
	s->in_next = 1;
	while (s->pending == NULL && !s->close_after && !s->shutdown_after) {
		size_t len;
		char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF);
		struct control_request rq;
		char err[160];

		if (line == NULL) {
			if (evbuffer_get_length(in) > CONTROL_LINE_MAX + 1) {
				s->close_after = 1;
				session_send(s, "request line too long", 1);
			}
			break;
		}
		if (control_request_parse(line, len, &rq, err, sizeof(err)) < 0) {
			session_send(s, err, 1);
		} else if (rq.argc == 0) {
			session_send(s, "", 0);
		} else {
			struct control_cmd *cmd = xcalloc(1, sizeof(*cmd));
			cmd->s = s;
			s->pending = cmd;
			control_dispatch(cmd, rq.argc, rq.argv);
		}
		control_request_free(&rq);
		free(line);
	}
	s->in_next = 0;
}

static void
on_read(struct bufferevent *bev, void *arg)
{
	session_next(arg);
}

static void
on_write(struct bufferevent *bev, void *arg)
{
	struct control_session *s = arg;

	if (evbuffer_get_length(bufferevent_get_output(bev)) > 0)
		return;
	if (s->shutdown_after) {
		s->shutdown_after = 0;
		if (C.ops.shutdown != NULL)
			C.ops.shutdown(C.ops.arg);
		return;
	}
	if (s->close_after)
		session_free(s);
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
	struct control_session *s = arg;

	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		session_free(s);
}

/* ------------------------------------------------------------ commands */

struct strbuf *
control_cmd_out(struct control_cmd *cmd)
{
	return &cmd->out;
}

void
control_cmd_shutdown_after(struct control_cmd *cmd)
{
	cmd->shutdown_after = 1;
}

void
control_cmd_fail(struct control_cmd *cmd, const char *fmt, ...)
{
	struct strbuf line = STRBUF_INIT;
	va_list ap;

	/* The arguments may point into cmd->out: format first. */
	va_start(ap, fmt);
	strbuf_vprintf(&line, fmt, ap);
	va_end(ap);
	strbuf_free(&cmd->out);
	cmd->out = line;
	control_cmd_done(cmd, 1);
}

void
control_cmd_done(struct control_cmd *cmd, int status)
{
	struct control_session *s = cmd->s;

	if (s != NULL) {
		s->pending = NULL;
		session_send(s, strbuf_cstr(&cmd->out), status);
		if (cmd->shutdown_after) {
			s->shutdown_after = 1;
			/* Written at once if the socket takes it: on_write may not come. */
			if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
				on_write(s->bev, s);
		}
	} else if (cmd->shutdown_after && C.ops.shutdown != NULL) {
		C.ops.shutdown(C.ops.arg);
	}
	strbuf_free(&cmd->out);
	free(cmd);
	if (s != NULL && !s->in_next)
		session_next(s);
}

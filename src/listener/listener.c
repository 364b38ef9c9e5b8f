/*
 * listener.c - ESMTP listening sockets and the per-client session counts.
 *
 * listener_set_bind / _chown / _start / _stop / _free / _count / _matches
 * (listener.h), peer_sessions_enter / _leave (listener_internal.h). The set
 * owns its sockets and evconnlisteners; each evconnlistener lives on the
 * loop that accepts with it and is created and freed on that loop's thread.
 *
 * An IP Listen address is one SO_REUSEPORT socket per loop. A Unix socket
 * path is one socket, accepted on loop 0: a stale socket file is replaced,
 * a live one (connect() succeeds) or any other kind of file is refused; the
 * file is made 0660 and is removed by listener_set_free if it is still the
 * one we bound (same device and inode).
 */
#include "listener/listener.h"

#include <errno.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "conf/conf.h"
#include "event/loop.h"
#include "lib/diag.h"
#include "lib/netaddr.h"
#include "lib/xalloc.h"
#include "conf/conf_core.h"
#include "listener/listener_internal.h"
#include "listener/smtp_auth.h"
#include "listener/smtp_tls.h"

#define PEER_TABLE_SIZE 4096            /* buckets of the per-client session counts */
#define UNIX_SOCKET_MODE 0660           /* the daemon's user and group may submit */

/* The file of a Unix socket we bound: removed at free if it is still ours. */
struct unix_file {
	int bound;                          /* bind() created the file */
	dev_t dev;                          /* its device and inode after bind() */
	ino_t ino;
};

struct listener_set {
	struct listen_sock *socks;          /* one per Listen address */
	struct unix_file *files;            /* one per Listen address; AF_UNIX ones only */
	size_t nsocks;
	struct loop_group *loops;           /* set by listener_set_start */
};

struct peer_count {
	unsigned char addr[16];             /* IPv4 in the first 4 bytes */
	int family;
	int count;                          /* open sessions */
	struct peer_count *next;
};

struct start_ctx {
	struct listener_set *ls;
	size_t sock;                        /* index into ls->socks */
	int loop;                           /* index into the loop group */
};

static void on_accept(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg);
static void on_accept_error(struct evconnlistener *evl, void *arg);
static int open_socket(const struct sockaddr_storage *ss, socklen_t len, const char *name,
                       char *err, size_t errlen);
static int unix_socket_live(const struct sockaddr_storage *ss, socklen_t len);
static int open_unix_socket(const struct sockaddr_storage *ss, socklen_t len, const char *name,
                            struct unix_file *uf, char *err, size_t errlen);
static const char *sock_path(const struct listen_sock *s);
static void unix_file_remove(const struct listen_sock *s, const struct unix_file *uf);

static pthread_mutex_t peer_lock = PTHREAD_MUTEX_INITIALIZER;
static struct peer_count *peer_table[PEER_TABLE_SIZE];


static unsigned
peer_bucket(const unsigned char key[16])
{
	uint32_t h = 2166136261u;

	for (int i = 0; i < 16; i++)
		h = (h ^ key[i]) * 16777619u;
	return h % PEER_TABLE_SIZE;
}

int
peer_sessions_enter(const struct sockaddr *addr)
{
	unsigned char key[16];
	int family, n;
	struct peer_count *p;

	if (sockaddr_ip_key(addr, key, &family) < 0)
		return 1;
	unsigned b = peer_bucket(key);
	pthread_mutex_lock(&peer_lock);
	for (p = peer_table[b]; p != NULL; p = p->next)
		if (p->family == family && memcmp(p->addr, key, 16) == 0)
			break;
	if (p == NULL) {
		p = xcalloc(1, sizeof(*p));
		memcpy(p->addr, key, 16);
		p->family = family;
		p->next = peer_table[b];
		peer_table[b] = p;
	}
	n = ++p->count;
	pthread_mutex_unlock(&peer_lock);
	return n;
}

void
peer_sessions_leave(const struct sockaddr *addr)
{
	unsigned char key[16];
	int family;

	if (sockaddr_ip_key(addr, key, &family) < 0)
		return;
	unsigned b = peer_bucket(key);
	pthread_mutex_lock(&peer_lock);
	for (struct peer_count **pp = &peer_table[b]; *pp != NULL; pp = &(*pp)->next) {
		struct peer_count *p = *pp;
		if (p->family == family && memcmp(p->addr, key, 16) == 0) {
			if (--p->count <= 0) {
				*pp = p->next;
				free(p);
			}
			break;
		}
	}
	pthread_mutex_unlock(&peer_lock);
}

static int
open_socket(const struct sockaddr_storage *ss, socklen_t len, const char *name, char *err,
            size_t errlen)
{
	int one = 1, fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		snprintf(err, errlen, "Listen \"%s\": socket: %s", name, strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    bind(fd, (const struct sockaddr *)ss, len) < 0 || listen(fd, 511) < 0) {
		snprintf(err, errlen, "Listen \"%s\": %s", name, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* 1 when a process accepts on the Unix socket at ss (or we cannot tell),
 * 0 when nobody does (a stale file left by a crash). */
static int
unix_socket_live(const struct sockaddr_storage *ss, socklen_t len)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), live;

	if (fd < 0)
		return 1;
	if (connect(fd, (const struct sockaddr *)ss, len) == 0)
		live = 1;
	else
		live = errno != ECONNREFUSED && errno != ENOENT;   /* EAGAIN: backlog full */
	close(fd);
	return live;
}

static int
open_unix_socket(const struct sockaddr_storage *ss, socklen_t len, const char *name,
                 struct unix_file *uf, char *err, size_t errlen)
{
	const char *path = ((const struct sockaddr_un *)ss)->sun_path;
	struct stat st;
	int fd;

	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "Listen \"%s\": the file exists and is not a socket", name);
			return -1;
		}
		if (unix_socket_live(ss, len)) {
			snprintf(err, errlen, "Listen \"%s\": another process is listening on it", name);
			return -1;
		}
		if (unlink(path) < 0 && errno != ENOENT) {
			snprintf(err, errlen, "Listen \"%s\": cannot remove the stale socket: %s", name,
			         strerror(errno));
			return -1;
		}
	} else if (errno != ENOENT) {
		snprintf(err, errlen, "Listen \"%s\": %s", name, strerror(errno));
		return -1;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) {
		snprintf(err, errlen, "Listen \"%s\": socket: %s", name, strerror(errno));
		return -1;
	}
	if (bind(fd, (const struct sockaddr *)ss, len) < 0) {
		snprintf(err, errlen, "Listen \"%s\": %s", name, strerror(errno));
		close(fd);
		return -1;
	}
	if (stat(path, &st) < 0) {
		snprintf(err, errlen, "Listen \"%s\": %s", name, strerror(errno));
		unlink(path);
		close(fd);
		return -1;
	}
	uf->bound = 1;
	uf->dev = st.st_dev;
	uf->ino = st.st_ino;
	/* The mode before listen(): nobody can connect while it is still the umask's.
	 * On failure listener_set_free removes the file. */
	if (chmod(path, UNIX_SOCKET_MODE) < 0 || listen(fd, 511) < 0) {
		snprintf(err, errlen, "Listen \"%s\": %s", name, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static const char *
sock_path(const struct listen_sock *s)
{
	return s->addr.ss_family == AF_UNIX ? ((const struct sockaddr_un *)&s->addr)->sun_path : NULL;
}

struct listener_set *
listener_set_bind(const struct conf *c, int nsockets, char *err, size_t errlen)
{
	struct listener_set *ls = xcalloc(1, sizeof(*ls));
	const struct conf_scope *el, *lsn;

	if (nsockets < 1)
		nsockets = 1;
	for (size_t i = 0; (el = conf_scope_child(c->global, CONF_SCOPE_ESMTP_LISTENER, i)); i++)
		for (size_t j = 0; conf_scope_child(el, CONF_SCOPE_LISTEN, j); j++)
			ls->nsocks++;
	ls->socks = xcalloc(ls->nsocks ? ls->nsocks : 1, sizeof(*ls->socks));
	ls->files = xcalloc(ls->nsocks ? ls->nsocks : 1, sizeof(*ls->files));
	size_t k = 0;
	for (size_t i = 0; (el = conf_scope_child(c->global, CONF_SCOPE_ESMTP_LISTENER, i)); i++) {
		for (size_t j = 0; (lsn = conf_scope_child(el, CONF_SCOPE_LISTEN, j)); j++) {
			size_t idx = k++;
			struct listen_sock *s = &ls->socks[idx];
			s->name = xstrdup(lsn->name);
			atomic_init(&s->sessions, 0);
			s->fds = xcalloc((size_t)nsockets, sizeof(int));
			s->evl = xcalloc((size_t)nsockets, sizeof(*s->evl));
			if (listen_addr_parse(s->name, &s->addr, &s->addrlen, err, errlen) < 0)
				goto fail;
			if (s->addr.ss_family == AF_UNIX) {
				s->fds[0] = open_unix_socket(&s->addr, s->addrlen, s->name,
				                             &ls->files[idx], err, errlen);
				if (s->fds[0] < 0)
					goto fail;
				s->nfds = 1;
				continue;
			}
			for (int n = 0; n < nsockets; n++) {
				s->fds[n] = open_socket(&s->addr, s->addrlen, s->name, err, errlen);
				if (s->fds[n] < 0)
					goto fail;
				s->nfds++;
			}
		}
	}
	return ls;
fail:
	listener_set_free(ls);
	return NULL;
}

int
listener_set_chown(const struct listener_set *ls, uid_t uid, gid_t gid, char *err, size_t errlen)
{
	for (size_t i = 0; ls != NULL && i < ls->nsocks; i++) {
		const char *path = sock_path(&ls->socks[i]);
		if (path == NULL || !ls->files[i].bound)
			continue;
		if (lchown(path, uid, gid) < 0) {
			snprintf(err, errlen, "Listen \"%s\": chown: %s", ls->socks[i].name, strerror(errno));
			return -1;
		}
	}
	return 0;
}

size_t
listener_set_count(const struct listener_set *ls)
{
	return ls ? ls->nsocks : 0;
}

static void
start_on_loop(void *arg)
{
	struct start_ctx *sc = arg;
	struct listen_sock *s = &sc->ls->socks[sc->sock];
	struct loop *l = loop_group_get(sc->ls->loops, sc->loop);

	s->evl[sc->loop] = evconnlistener_new(loop_base(l), on_accept, s,
	                                      LEV_OPT_CLOSE_ON_EXEC, -1, s->fds[sc->loop]);
	if (s->evl[sc->loop] == NULL)
		diag_warn("Listen \"%s\": cannot accept on loop %d", s->name, sc->loop);
	else
		evconnlistener_set_error_cb(s->evl[sc->loop], on_accept_error);
	free(sc);
}

int
listener_set_start(struct listener_set *ls, struct loop_group *loops, struct spool *sp,
                   char *err, size_t errlen)
{
	int n = loop_group_count(loops);

	ls->loops = loops;
	for (size_t i = 0; i < ls->nsocks; i++) {
		struct listen_sock *s = &ls->socks[i];
		s->spool = sp;
		if (s->addr.ss_family == AF_UNIX) {
			/* One socket: loop 0 accepts for it. */
			struct start_ctx *sc = xmalloc(sizeof(*sc));
			sc->ls = ls;
			sc->sock = i;
			sc->loop = 0;
			loop_post(loop_group_get(loops, 0), start_on_loop, sc);
			continue;
		}
		if (s->nfds < n) {
			snprintf(err, errlen, "Listen \"%s\": %d sockets for %d loops", s->name, s->nfds, n);
			return -1;
		}
		for (int j = 0; j < n; j++) {
			struct start_ctx *sc = xmalloc(sizeof(*sc));
			sc->ls = ls;
			sc->sock = i;
			sc->loop = j;
			loop_post(loop_group_get(loops, j), start_on_loop, sc);
		}
	}
	return 0;
}

static void
on_accept(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa, int salen,
          void *arg)
{
	struct listen_sock *s = arg;

	smtp_session_start(s, loop_current(), fd, sa, salen);
}

static void
on_accept_error(struct evconnlistener *evl, void *arg)
{
	struct listen_sock *s = arg;
	int e = EVUTIL_SOCKET_ERROR();

	/* EMFILE and friends: say so, keep listening (libevent retries). */
	diag_warn("Listen \"%s\": accept: %s", s->name, evutil_socket_error_to_string(e));
}

struct stop_ctx {
	struct listener_set *ls;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int pending;                        /* loops that have not stopped yet */
};

struct stop_one {
	struct stop_ctx *ctx;
	int loop;
};

static void
stop_on_loop(void *arg)
{
	struct stop_one *one = arg;
	struct stop_ctx *sc = one->ctx;

	for (size_t i = 0; i < sc->ls->nsocks; i++) {
		struct listen_sock *s = &sc->ls->socks[i];
		if (one->loop < s->nfds && s->evl[one->loop] != NULL) {
			evconnlistener_free(s->evl[one->loop]);
			s->evl[one->loop] = NULL;
		}
	}
	smtp_session_shutdown(loop_current());
	pthread_mutex_lock(&sc->lock);
	if (--sc->pending == 0)
		pthread_cond_signal(&sc->cond);
	pthread_mutex_unlock(&sc->lock);
	free(one);
}

void
listener_set_stop(struct listener_set *ls)
{
	struct stop_ctx sc;
	int n;

	if (ls == NULL || ls->loops == NULL)
		return;
	n = loop_group_count(ls->loops);
	sc.ls = ls;
	sc.pending = n;
	pthread_mutex_init(&sc.lock, NULL);
	pthread_cond_init(&sc.cond, NULL);
	for (int j = 0; j < n; j++) {
		struct stop_one *one = xmalloc(sizeof(*one));
		one->ctx = &sc;
		one->loop = j;
		loop_post(loop_group_get(ls->loops, j), stop_on_loop, one);
	}
	/* Wait until every loop has stopped accepting and told its sessions. */
	pthread_mutex_lock(&sc.lock);
	while (sc.pending > 0)
		pthread_cond_wait(&sc.cond, &sc.lock);
	pthread_mutex_unlock(&sc.lock);
	pthread_mutex_destroy(&sc.lock);
	pthread_cond_destroy(&sc.cond);
}

/* Remove the socket file we bound, unless another process replaced it. */
static void
unix_file_remove(const struct listen_sock *s, const struct unix_file *uf)
{
	const char *path = sock_path(s);
	struct stat st;

	if (path == NULL || !uf->bound || lstat(path, &st) < 0)
		return;
	if (st.st_dev != uf->dev || st.st_ino != uf->ino)
		return;
	if (unlink(path) < 0 && errno != ENOENT)
		diag_warn("Listen \"%s\": cannot remove the socket file: %s", s->name, strerror(errno));
}

void
listener_set_free(struct listener_set *ls)
{
	if (ls == NULL)
		return;
	for (size_t i = 0; i < ls->nsocks; i++) {
		struct listen_sock *s = &ls->socks[i];
		for (int j = 0; j < s->nfds; j++) {
			if (s->evl[j] != NULL)
				evconnlistener_free(s->evl[j]);     /* loops are stopped by now */
			close(s->fds[j]);
		}
		unix_file_remove(s, &ls->files[i]);
		free(s->fds);
		free(s->evl);
		free(s->name);
	}
	free(ls->socks);
	free(ls->files);
	free(ls);
}

int
listener_set_matches(const struct listener_set *ls, const struct conf *c, struct conf_errors *errs)
{
	const struct conf_scope *el, *lsn;
	size_t n = 0;
	int same = 1;

	for (size_t i = 0; (el = conf_scope_child(c->global, CONF_SCOPE_ESMTP_LISTENER, i)); i++) {
		for (size_t j = 0; (lsn = conf_scope_child(el, CONF_SCOPE_LISTEN, j)); j++, n++) {
			int found = 0;
			for (size_t k = 0; k < ls->nsocks && !found; k++)
				found = strcmp(ls->socks[k].name, lsn->name) == 0;
			if (!found) {
				conf_error(errs, &lsn->loc,
				           "Listen \"%s\" is new: listeners change on restart only", lsn->name);
				same = 0;
			}
		}
	}
	if (same && n != ls->nsocks) {
		struct conf_loc loc = { c->source, 0, 0 };
		conf_error(errs, &loc, "a Listen address was removed: listeners change on restart only");
		same = 0;
	}
	return same ? 0 : -1;
}

void
listener_register_checks(void)
{
	conf_opt_tls_certificate.check = smtp_tls_check_certificate;
	conf_opt_tls_key.check = smtp_tls_check_key;
	conf_opt_tls_ca.check = smtp_tls_check_ca;
	conf_opt_auth_users_file.check = smtp_auth_users_check_file;
}

/*
 * metrics.c - the HTTP listener of /metrics and /health (evhttp, main loop).
 *
 * Public functions (metrics.h):
 *   metrics_start          bind "ip:port", serve it from the main loop
 *   metrics_stop           answer scrapes in flight with 503, close every socket
 *   metrics_set_label_cap  per-domain label sets exported (default 100)
 *   metrics_port           the port bound last (tests)
 *
 * One evhttp serves every Listen (each metrics_start adds a socket). A
 * scrape of /metrics is answered later: the request waits in the pending
 * list while queue_collect asks every loop for its rows; on_rows (back on
 * the main loop) takes the global counters too, renders the snapshot with
 * metrics_render and replies. evhttp keeps a request whose client went away
 * until it is answered (the reply then just frees it), so a pending scrape
 * is always answered exactly once: by on_rows, or with 503 by metrics_stop
 * (on_rows then finds it orphaned and only frees its record).
 *
 * Memory: the server and its pending records are owned here; a record
 * is freed by on_rows, which queue_collect always calls.
 * Errors: metrics_start returns -1 with a reason; no logging here.
 */
#include "metrics/metrics.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include <impetus/binding.h>

#include "event/loop.h"
#include "lib/netaddr.h"
#include "lib/strbuf.h"
#include "lib/xalloc.h"
#include "metrics/metrics_render.h"
#include "listener/listener.h"
#include "queue/queue.h"
#include "queue/queue_console.h"
#include "spool/spool.h"

#define METRICS_SCRAPES_MAX   8         /* scrapes gathering at once; more get 503 */
#define METRICS_TIMEOUT_S     30        /* idle HTTP connection / slow client */
#define METRICS_HEADERS_MAX   8192      /* bytes of request headers accepted */
#define METRICS_BODY_MAX      1024      /* bytes of request body accepted */
#define METRICS_BACKLOG       64        /* listen(2) backlog */

#ifndef IMPETUS_VERSION
#define IMPETUS_VERSION "unknown"
#endif

/* scrape: one /metrics request waiting for queue_collect. */
struct scrape {
	struct evhttp_request *req;         /* NULL once metrics_stop answered it */
	struct scrape *next;                /* pending list */
	struct scrape **pprev;              /* the link pointing here; NULL when unlinked */
};

static struct {
	struct loop *loop;                  /* the main loop serving HTTP */
	struct evhttp *http;                /* NULL when stopped */
	struct scrape *pending;             /* scrapes waiting for their rows */
	size_t npending;                    /* entries in pending */
	int port;                           /* port bound last, -1 when none */
	int started;                        /* start times recorded */
	uint64_t start_ms;                  /* loop_now_ms at the first metrics_start */
	double start_wall_s;                /* the same moment, seconds since the epoch */
} M = { .port = -1 };

static atomic_int label_cap = METRICS_LABEL_CAP_DEFAULT;

static int listen_socket(const char *name, int *port, char *err, size_t errlen);
static void on_request(struct evhttp_request *req, void *arg);
static void reply_text(struct evhttp_request *req, int code, const char *reason,
                       const char *body);
static void on_rows(const struct queue_row *rows, size_t n, void *arg);
static void scrape_unlink(struct scrape *sc);
static void free_rendered(const void *data, size_t len, void *arg);

int
metrics_start(struct loop *main_loop, const char *listen, char *err, size_t errlen)
{
	int fd, port, fresh = 0;

	if (main_loop == NULL || listen == NULL) {
		snprintf(err, errlen, "metrics: no loop or no listen address");
		return -1;
	}
	if (M.http != NULL && M.loop != main_loop) {
		snprintf(err, errlen, "metrics: every Listen must run on the same loop");
		return -1;
	}
	fd = listen_socket(listen, &port, err, errlen);
	if (fd < 0)
		return -1;
	if (M.http == NULL) {
		M.http = evhttp_new(loop_base(main_loop));
		if (M.http == NULL) {
			close(fd);
			snprintf(err, errlen, "metrics: cannot create the HTTP server");
			return -1;
		}
		fresh = 1;
		M.loop = main_loop;
		evhttp_set_gencb(M.http, on_request, NULL);
		evhttp_set_allowed_methods(M.http, EVHTTP_REQ_GET);
		evhttp_set_timeout(M.http, METRICS_TIMEOUT_S);
		evhttp_set_max_headers_size(M.http, METRICS_HEADERS_MAX);
		evhttp_set_max_body_size(M.http, METRICS_BODY_MAX);
	}
	if (evhttp_accept_socket_with_handle(M.http, fd) == NULL) {
		close(fd);
		snprintf(err, errlen, "metrics: cannot accept on %s", listen);
		if (fresh) {
			evhttp_free(M.http);
			M.http = NULL;
			M.loop = NULL;
		}
		return -1;
	}
	M.port = port;
	if (!M.started) {
		struct timespec now;

		clock_gettime(CLOCK_REALTIME, &now);
		M.start_wall_s = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
		M.start_ms = loop_now_ms(main_loop);
		M.started = 1;
	}
	return 0;
}

void
metrics_stop(void)
{
	while (M.pending != NULL) {
		struct scrape *sc = M.pending;

		scrape_unlink(sc);
		reply_text(sc->req, 503, "Service Unavailable", "stopping\n");
		sc->req = NULL;                 /* on_rows frees sc */
	}
	if (M.http != NULL)
		evhttp_free(M.http);            /* closes the sockets and connections */
	M.http = NULL;
	M.loop = NULL;
	M.port = -1;
}

void
metrics_set_label_cap(int cap)
{
	atomic_store(&label_cap, cap < 0 ? 0 : cap);
}

int
metrics_port(void)
{
	return M.port;
}

/* listen_socket: a listening, non-blocking TCP socket on listen; its fd and
 * port, or -1 with a reason. */
static int
listen_socket(const char *name, int *port, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char why[256];
	int fd, one = 1;

	if (listen_addr_is_unix(name)) {
		snprintf(err, errlen, "metrics: %s: a Unix socket cannot serve HTTP here", name);
		return -1;
	}
	if (listen_addr_parse(name, &ss, &len, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "metrics: %s: %s", name, why);
		return -1;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "metrics: %s: socket: %s", name, strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, METRICS_BACKLOG) < 0) {
		snprintf(err, errlen, "metrics: %s: %s", name, strerror(errno));
		close(fd);
		return -1;
	}
	len = sizeof(ss);
	*port = -1;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET)
			*port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			*port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	return fd;
}

/* on_request: route by path; /metrics is answered later, by on_rows. */
static void
on_request(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	struct scrape *sc;

	if (path == NULL)
		path = "";
	if (strcmp(path, "/health") == 0) {
		reply_text(req, 200, "OK", "ok\n");
		return;
	}
	if (strcmp(path, "/metrics") != 0) {
		reply_text(req, 404, "Not Found", "not found: try /metrics or /health\n");
		return;
	}
	if (M.npending >= METRICS_SCRAPES_MAX) {
		reply_text(req, 503, "Service Unavailable", "too many scrapes in progress\n");
		return;
	}
	sc = xcalloc(1, sizeof(*sc));
	sc->req = req;
	sc->next = M.pending;
	if (M.pending != NULL)
		M.pending->pprev = &sc->next;
	sc->pprev = &M.pending;
	M.pending = sc;
	M.npending++;
	queue_collect(M.loop, on_rows, sc);
}

/* on_rows (main loop): the rows are in; render and answer, unless stopped. */
static void
on_rows(const struct queue_row *rows, size_t n, void *arg)
{
	struct scrape *sc = arg;
	struct evhttp_request *req = sc->req;
	struct queue_stats qs;
	struct spool_sync_histogram sync;
	struct metrics_snapshot snap;
	struct strbuf text = STRBUF_INIT;
	const char **bindings;
	size_t nb, len;
	char *data;

	scrape_unlink(sc);
	free(sc);
	if (req == NULL)
		return;

	nb = (size_t)config_get_binding_slot_count();
	bindings = xcalloc(nb > 0 ? nb : 1, sizeof(*bindings));
	for (size_t i = 0; i < nb; i++)
		bindings[i] = config_get_binding_name_from_id((int)i);
	queue_stats(&qs);
	spool_sync_histogram(&sync);
	memset(&snap, 0, sizeof(snap));
	snap.uptime_s = (double)(loop_now_ms(M.loop) - M.start_ms) / 1000.0;
	snap.start_time_s = M.start_wall_s;
	snap.version = IMPETUS_VERSION;
	snap.queue = &qs;
	snap.sync = &sync;
	snap.rows = rows;
	snap.nrows = n;
	snap.bindings = bindings;
	snap.nbindings = nb;
	{
		struct listener_stats ls;
		listener_stats(&ls);
		snap.inbound_open = ls.sessions_open;
		snap.inbound_total = ls.sessions_total;
	}
	snap.label_cap = atomic_load(&label_cap);
	metrics_render(&snap, &text);
	free(bindings);

	len = text.len;
	data = strbuf_steal(&text);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	                  METRICS_CONTENT_TYPE);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
	if (evbuffer_add_reference(evhttp_request_get_output_buffer(req), data, len,
	                           free_rendered, NULL) < 0)
		free(data);
	evhttp_send_reply(req, 200, "OK", NULL);
}

static void
reply_text(struct evhttp_request *req, int code, const char *reason, const char *body)
{
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	                  "text/plain; charset=utf-8");
	evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
	evhttp_send_reply(req, code, reason, NULL);
}

static void
scrape_unlink(struct scrape *sc)
{
	if (sc->pprev == NULL)
		return;
	*sc->pprev = sc->next;
	if (sc->next != NULL)
		sc->next->pprev = sc->pprev;
	sc->pprev = NULL;
	sc->next = NULL;
	M.npending--;
}

static void
free_rendered(const void *data, size_t len, void *arg)
{
	free((void *)data);
}

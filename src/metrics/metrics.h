/*
 * metrics.h - /metrics (Prometheus text format) and /health over HTTP.
 *
 * Every Listen of the HTTP_Listener stanza is one metrics_start. The server
 * is libevent's evhttp on the main loop: a scrape of /metrics gathers the
 * queues' (domain, binding) rows with queue_collect (asynchronously, on every
 * loop) and answers once they are in; /health answers 200 "ok\n" at once.
 * The metric names are listed in docs/metrics.md.
 *
 *   metrics_start          listen on "ip:port" (one call per Listen)
 *   metrics_stop           close every listener; scrapes in flight are dropped
 *   metrics_set_label_cap  how many domains get their own label set
 *   metrics_port           the port of the last listener started (tests)
 *
 * Threads: main thread (the loop given to metrics_start) for all but
 * metrics_set_label_cap, which any thread may call.
 * Errors: metrics_start returns -1 with a reason; nothing here logs.
 */
#ifndef IMPETUS_METRICS_METRICS_H
#define IMPETUS_METRICS_METRICS_H

#include <stddef.h>

struct loop;

#define METRICS_LABEL_CAP_DEFAULT 100       /* per-domain label sets when not configured */

/* metrics_start: serve /metrics and /health on listen ("ip:port", loopback or any) from the main loop. 0, or -1 with a reason. May be called once per Listen. */
int metrics_start(struct loop *main_loop, const char *listen, char *err, size_t errlen);
/* metrics_stop: close every listener (main thread, before the loops stop). */
void metrics_stop(void);
/* metrics_set_label_cap: the most per-domain label sets exported (the busiest domains by queue size, the rest summed under domain="_other"); default 100. */
void metrics_set_label_cap(int cap);
/* metrics_port: the local port of the listener started last, or -1 when
 * none runs. */
int metrics_port(void);

#endif

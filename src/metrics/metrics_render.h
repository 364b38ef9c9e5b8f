/*
 * metrics_render.h - the Prometheus text exposition of a snapshot.
 *
 * A pure function of its input (no clock, no globals), so the format is
 * unit-tested without a daemon: metrics.c gathers the snapshot (queue
 * counters, the (domain, binding) rows of queue_collect, the spool's sync
 * histogram) and renders it here.
 *
 *   metrics_render          every metric family, HELP and TYPE lines first
 *   metrics_escape_label    a label value, escaped (\\, \", \n) and valid UTF-8
 *   metrics_format_seconds  microseconds as exact decimal seconds ("0.00025")
 *
 * The format is version 0.0.4 of the text exposition format (the one every
 * Prometheus server scrapes): METRICS_CONTENT_TYPE.
 */
#ifndef IMPETUS_METRICS_METRICS_RENDER_H
#define IMPETUS_METRICS_METRICS_RENDER_H

#include <stddef.h>
#include <stdint.h>

struct queue_row;
struct queue_stats;
struct spool_sync_histogram;
struct strbuf;

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define METRICS_OTHER_DOMAIN "_other"       /* label of the domains past the cap */

struct metrics_snapshot {
	double uptime_s;                        /* seconds since the daemon started */
	double start_time_s;                    /* its start, seconds since the epoch */
	const char *version;                    /* impetus_build_info's version label */
	const struct queue_stats *queue;        /* global counters (required) */
	const struct spool_sync_histogram *sync; /* sync latency; NULL: not exported */
	const struct queue_row *rows;           /* queue_collect rows (any order) */
	size_t nrows;
	const char *const *bindings;            /* configured binding names: exported even idle */
	size_t nbindings;
	int label_cap;                          /* most per-domain label sets (< 0 counts as 0) */
	uint64_t inbound_open;                  /* inbound SMTP sessions now */
	uint64_t inbound_total;                 /* inbound SMTP sessions since start */
};

/* metrics_render: append the exposition of s to out. */
void metrics_render(const struct metrics_snapshot *s, struct strbuf *out);
/* metrics_escape_label: append v as the inside of a quoted label value:
 * backslash, double quote and newline escaped; bytes that are not valid
 * UTF-8 replaced by U+FFFD. */
void metrics_escape_label(struct strbuf *out, const char *v);
/* metrics_format_seconds: us microseconds as decimal seconds, without
 * exponent or trailing zeros ("0.00005", "2.5", "10"); buf holds 32 bytes. */
const char *metrics_format_seconds(uint64_t us, char buf[32]);

#endif

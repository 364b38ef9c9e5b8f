/*
 * log.c - the log writers: providers on the logging hooks that write the
 * mainlog, rejectlog, jsonlog (ec_logger stanzas) and bouncelog
 * (bounce_logger stanzas).
 *
 * Public functions (log.h):
 *   log_writers_configure   open/keep files and register providers for a generation
 *   log_writers_collect     free generations no call can reach; close unused files
 *   log_writers_reopen      reopen every file (rotation)
 *   log_writers_flush       wait for every record logged so far
 *   log_writers_shutdown    unregister, flush, close, free
 *
 * State. A generation (struct log_gen) is what one configuration asked for:
 * its sinks (one per stanza) and references to the files they write. It is
 * the closure of its providers, so it must outlive every hook call that can
 * see it: a generation is freed only when none of the logging hooks lists
 * it any more (superseded by a later commit, or never committed) and
 * imp_hook_reclaim reports no retired provider array left (so no call that
 * began before the switch is still running). Files are shared between
 * generations through a table keyed by path, counted by generation: an
 * unchanged path keeps its logfile, and a file is closed when the last
 * generation using it is freed.
 *
 * Errors: configure returns them; everything after (write errors, drops,
 * reopen failures) goes to diag_warn. Main thread only, except the
 * providers, which run on any thread and only read their generation.
 */
#include "log/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <impetus/hooks/core/log_delivery_v1.h>
#include <impetus/hooks/core/log_permanent_failure_v1.h>
#include <impetus/hooks/core/log_reception_v1.h>
#include <impetus/hooks/core/log_rejection.h>
#include <impetus/hooks/core/log_transient_failure_v1.h>

#include "conf/conf.h"
#include "conf/conf_core.h"
#include "lib/diag.h"
#include "lib/xalloc.h"
#include "log/log_format.h"
#include "log/logfile.h"

#define LOG_LINE_STACK 4096     /* bytes of a record formatted without malloc */
#define LOG_REPLY_STACK 1024    /* bytes of a rejection text formatted without malloc */
#define LOG_SHUTDOWN_WAIT_MS 2000 /* longest wait for running calls at shutdown */

/* Events, as sink flags and as the hooks a generation registers on. */
enum {
	LOG_EV_RECEPTION = 1u << 0,
	LOG_EV_DELIVERY = 1u << 1,
	LOG_EV_TRANSIENT = 1u << 2,
	LOG_EV_PERMANENT = 1u << 3,
	LOG_EV_REJECTION = 1u << 4,
};

/* One open file, shared by the generations that name its path. */
struct log_file_ref {
	char *path;                         /* owned; the table's key */
	struct logfile *f;                  /* owned */
	int refs;                           /* generations holding it */
	unsigned hb_interval_s;             /* heartbeat now set on f (seconds) */
	logfile_heartbeat_fn *hb_fn;        /* … and its record */
	uint64_t want_stamp;                /* configure call that set want_* */
	unsigned want_interval_s;           /* heartbeat that configure asks for */
	logfile_heartbeat_fn *want_fn;      /* … and its record */
	struct log_file_ref *next;          /* log_files list */
};

/* One ec_logger or bounce_logger stanza. NULL files are not configured. */
struct log_sink {
	struct logfile *mainlog;            /* ec_logger: R, D, T, P records */
	struct logfile *rejectlog;          /* ec_logger: rejections */
	struct logfile *jsonlog;            /* ec_logger: every event as JSON */
	struct logfile *bouncelog;          /* bounce_logger: B and T records */
	unsigned events;                    /* LOG_EV_* its Log_* options allow */
};

struct log_gen {
	struct log_sink *sinks;             /* owned */
	size_t nsinks;                      /* sinks with something to write */
	struct log_file_ref **files;        /* one reference each, owned array */
	size_t nfiles;                      /* references held */
	unsigned hooks;                     /* LOG_EV_* hooks registered with this closure */
	int classify;                       /* a sink needs the bounce class */
	struct log_gen *next;               /* older generations */
};

typedef size_t log_msg_format_fn(char *buf, size_t len, const struct log_msg_record *r);

static struct log_file_ref *file_ref_get(const char *path, char *err, size_t errlen);
static void file_ref_put(struct log_file_ref *ref);
static struct logfile *gen_open(struct log_gen *g, const struct conf_scope *s,
                                const struct conf_option *opt, logfile_heartbeat_fn *hb,
                                unsigned hb_interval_s, char *err, size_t errlen);
static void gen_free(struct log_gen *g);
static int gen_live(const struct log_gen *g);
static int head_lists(struct imp_hook_head *h, const void *closure);
static void gen_register(struct log_gen *g);
static void gen_unregister(struct log_gen *g);
static void collect(int include_newest);
static const struct conf_setting *setting(const struct conf_scope *s,
                                          const struct conf_option *opt);
static void emit_msg(struct logfile *f, log_msg_format_fn *fmt, const struct log_msg_record *r);
static void emit_reject(struct logfile *f,
                        size_t (*fmt)(char *, size_t, const struct log_reject_record *),
                        const struct log_reject_record *r);
static void message_event(struct log_gen *g, char type, unsigned ev, accept_construct *ac,
                          ec_message *msg, domain_record *dr, struct timeval *now,
                          const char *note, int note_len);
static imp_hook_core_log_reception_v1_func_t on_reception;
static imp_hook_core_log_delivery_v1_func_t on_delivery;
static imp_hook_core_log_transient_failure_v1_func_t on_transient_failure;
static imp_hook_core_log_permanent_failure_v1_func_t on_permanent_failure;
static imp_hook_core_log_rejection_func_t on_rejection;

static struct log_file_ref *log_files;  /* every open file */
static struct log_gen *log_gens;        /* newest first */
static uint64_t log_configure_stamp;    /* configure calls so far */

static const struct conf_setting *
setting(const struct conf_scope *s, const struct conf_option *opt)
{
	const struct conf_setting *set = conf_scope_get(s, opt);

	return set ? set : opt->def_setting;
}

static struct log_file_ref *
file_ref_get(const char *path, char *err, size_t errlen)
{
	struct log_file_ref *ref;
	struct logfile *f;

	for (ref = log_files; ref != NULL; ref = ref->next) {
		if (strcmp(ref->path, path) == 0) {
			ref->refs++;
			return ref;
		}
	}
	if ((f = logfile_open(path, err, errlen)) == NULL)
		return NULL;
	ref = xcalloc(1, sizeof(*ref));
	ref->path = xstrdup(path);
	ref->f = f;
	ref->refs = 1;
	ref->next = log_files;
	log_files = ref;
	return ref;
}

static void
file_ref_put(struct log_file_ref *ref)
{
	struct log_file_ref **pp;

	if (--ref->refs > 0)
		return;
	for (pp = &log_files; *pp != ref; pp = &(*pp)->next)
		;
	*pp = ref->next;
	logfile_close(ref->f);
	free(ref->path);
	free(ref);
}

/* The file of opt in stanza s, opened (or shared) and held by g; NULL when
 * the option is unset, or on error with err filled. */
static struct logfile *
gen_open(struct log_gen *g, const struct conf_scope *s, const struct conf_option *opt,
         logfile_heartbeat_fn *hb, unsigned hb_interval_s, char *err, size_t errlen)
{
	const struct conf_setting *set = conf_scope_get(s, opt);
	struct log_file_ref *ref;
	char why[256];

	err[0] = '\0';
	if (set == NULL || set->s == NULL || set->s[0] == '\0')
		return NULL;
	if ((ref = file_ref_get(set->s, why, sizeof(why))) == NULL) {
		snprintf(err, errlen, "%s:%d: %s: %s", set->loc.file ? set->loc.file : "?",
		         set->loc.line, opt->name, why);
		return NULL;
	}
	g->files = xreallocarray(g->files, g->nfiles + 1, sizeof(*g->files));
	g->files[g->nfiles++] = ref;
	if (ref->want_stamp != log_configure_stamp && hb != NULL) {
		/* The first role of a shared file sets its heartbeat. */
		ref->want_stamp = log_configure_stamp;
		ref->want_interval_s = hb_interval_s;
		ref->want_fn = hb;
	}
	return ref->f;
}

static void
gen_free(struct log_gen *g)
{
	for (size_t i = 0; i < g->nfiles; i++)
		file_ref_put(g->files[i]);
	free(g->files);
	free(g->sinks);
	free(g);
}

/* Does h's published provider array name closure? */
static int
head_lists(struct imp_hook_head *h, const void *closure)
{
	const struct imp_hook_set *s;
	int found = 0;

	imp_hook_enter();
	s = atomic_load_explicit(&h->live, memory_order_acquire);
	for (size_t i = 0; s != NULL && i < s->n && !found; i++)
		found = s->e[i].closure == closure;
	imp_hook_leave();
	return found;
}

static int
gen_live(const struct log_gen *g)
{
	return head_lists(&IMP_HOOK_HEAD(core, log_reception_v1), g) ||
	       head_lists(&IMP_HOOK_HEAD(core, log_delivery_v1), g) ||
	       head_lists(&IMP_HOOK_HEAD(core, log_transient_failure_v1), g) ||
	       head_lists(&IMP_HOOK_HEAD(core, log_permanent_failure_v1), g) ||
	       head_lists(&IMP_HOOK_HEAD(core, log_rejection), g);
}

static void
gen_register(struct log_gen *g)
{
	if (g->hooks & LOG_EV_RECEPTION)
		register_core_log_reception_v1_hook_last(on_reception, g);
	if (g->hooks & LOG_EV_DELIVERY)
		register_core_log_delivery_v1_hook_last(on_delivery, g);
	if (g->hooks & LOG_EV_TRANSIENT)
		register_core_log_transient_failure_v1_hook_last(on_transient_failure, g);
	if (g->hooks & LOG_EV_PERMANENT)
		register_core_log_permanent_failure_v1_hook_last(on_permanent_failure, g);
	if (g->hooks & LOG_EV_REJECTION)
		register_core_log_rejection_hook_last(on_rejection, g);
}

static void
gen_unregister(struct log_gen *g)
{
	imp_hook_unregister(&IMP_HOOK_HEAD(core, log_reception_v1),
	                    (void (*)(void))on_reception, g);
	imp_hook_unregister(&IMP_HOOK_HEAD(core, log_delivery_v1),
	                    (void (*)(void))on_delivery, g);
	imp_hook_unregister(&IMP_HOOK_HEAD(core, log_transient_failure_v1),
	                    (void (*)(void))on_transient_failure, g);
	imp_hook_unregister(&IMP_HOOK_HEAD(core, log_permanent_failure_v1),
	                    (void (*)(void))on_permanent_failure, g);
	imp_hook_unregister(&IMP_HOOK_HEAD(core, log_rejection),
	                    (void (*)(void))on_rejection, g);
}

/* Free every generation no call can reach. include_newest = 0 spares the
 * newest one, which an open transaction may be about to publish. */
static void
collect(int include_newest)
{
	struct log_gen **pp, *g;
	int any = 0;

	for (g = include_newest ? log_gens : (log_gens ? log_gens->next : NULL); g; g = g->next)
		if (!gen_live(g))
			any = 1;
	/* Retired arrays that may list them must be gone, with every call that read them. */
	if (!any || imp_hook_reclaim() != 0)
		return;
	pp = include_newest ? &log_gens : (log_gens ? &log_gens->next : &log_gens);
	while (*pp != NULL) {
		g = *pp;
		if (!gen_live(g)) {
			*pp = g->next;
			gen_free(g);
		} else {
			pp = &g->next;
		}
	}
}

int
log_writers_configure(const struct conf *c, char *err, size_t errlen)
{
	static const uint32_t kinds[] = { CONF_SCOPE_EC_LOGGER, CONF_SCOPE_BOUNCE_LOGGER };
	struct log_gen *g;
	const struct conf_scope *s;

	if (!imp_hook_txn_open()) {
		snprintf(err, errlen, "log writers: no hook registration transaction is open");
		return -1;
	}
	/* The previous generation's transaction is closed: committed or not. */
	collect(1);
	log_configure_stamp++;

	g = xcalloc(1, sizeof(*g));
	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		for (size_t i = 0; (s = conf_scope_child(c->global, kinds[k], i)) != NULL; i++) {
			struct log_sink sink;
			unsigned hb = (unsigned)setting(s, &conf_opt_log_heartbeat)->i;

			memset(&sink, 0, sizeof(sink));
			if (kinds[k] == CONF_SCOPE_EC_LOGGER) {
				if (setting(s, &conf_opt_log_receptions)->i)
					sink.events |= LOG_EV_RECEPTION;
				if (setting(s, &conf_opt_log_deliveries)->i)
					sink.events |= LOG_EV_DELIVERY;
				if (setting(s, &conf_opt_log_rejections)->i)
					sink.events |= LOG_EV_REJECTION;
			}
			if (setting(s, &conf_opt_log_transient_failures)->i)
				sink.events |= LOG_EV_TRANSIENT;
			if (setting(s, &conf_opt_log_permanent_failures)->i)
				sink.events |= LOG_EV_PERMANENT;

			if (kinds[k] == CONF_SCOPE_EC_LOGGER) {
				sink.mainlog = gen_open(g, s, &conf_opt_mainlog,
				                        log_format_heartbeat_mainlog, hb, err, errlen);
				if (sink.mainlog == NULL && err[0] != '\0')
					goto fail;
				sink.rejectlog = gen_open(g, s, &conf_opt_rejectlog,
				                          log_format_heartbeat_rejectlog, hb, err, errlen);
				if (sink.rejectlog == NULL && err[0] != '\0')
					goto fail;
				sink.jsonlog = gen_open(g, s, &conf_opt_jsonlog, NULL, 0, err, errlen);
				if (sink.jsonlog == NULL && err[0] != '\0')
					goto fail;
				if (sink.mainlog == NULL && sink.jsonlog == NULL)
					sink.events &= ~(unsigned)(LOG_EV_RECEPTION | LOG_EV_DELIVERY |
					                           LOG_EV_TRANSIENT | LOG_EV_PERMANENT);
				if (sink.rejectlog == NULL && sink.jsonlog == NULL)
					sink.events &= ~(unsigned)LOG_EV_REJECTION;
				if (sink.jsonlog != NULL &&
				    (sink.events & (LOG_EV_TRANSIENT | LOG_EV_PERMANENT)))
					g->classify = 1;
			} else {
				sink.bouncelog = gen_open(g, s, &conf_opt_bouncelog,
				                          log_format_heartbeat_bouncelog, hb, err, errlen);
				if (sink.bouncelog == NULL && err[0] != '\0')
					goto fail;
				if (sink.bouncelog == NULL)
					sink.events = 0;
				if (sink.events)
					g->classify = 1;
			}
			if (sink.events == 0)
				continue;
			g->sinks = xreallocarray(g->sinks, g->nsinks + 1, sizeof(*g->sinks));
			g->sinks[g->nsinks++] = sink;
			g->hooks |= sink.events;
		}
	}
	/* Heartbeats: reset only where they change, so a reload does not delay them. */
	for (struct log_file_ref *ref = log_files; ref != NULL; ref = ref->next) {
		unsigned interval = 0;
		logfile_heartbeat_fn *fn = NULL;
		if (ref->want_stamp == log_configure_stamp) {
			interval = ref->want_interval_s;
			fn = interval ? ref->want_fn : NULL;
		} else {
			int used = 0;
			for (size_t i = 0; i < g->nfiles && !used; i++)
				used = g->files[i] == ref;
			if (!used)
				continue;       /* an older generation's file: leave it be */
		}
		if (interval != ref->hb_interval_s || fn != ref->hb_fn) {
			logfile_set_heartbeat(ref->f, interval, fn);
			ref->hb_interval_s = interval;
			ref->hb_fn = fn;
		}
	}
	gen_register(g);
	g->next = log_gens;
	log_gens = g;
	return 0;

fail:
	gen_free(g);
	return -1;
}

void
log_writers_collect(void)
{
	collect(!imp_hook_txn_open());
}

void
log_writers_reopen(void)
{
	log_writers_collect();
	for (struct log_file_ref *ref = log_files; ref != NULL; ref = ref->next)
		if (logfile_reopen(ref->f) < 0)
			diag_warn("cannot reopen log %s: %m; still writing to the old file", ref->path);
}

void
log_writers_flush(void)
{
	for (struct log_file_ref *ref = log_files; ref != NULL; ref = ref->next)
		logfile_sync(ref->f);
}

void
log_writers_shutdown(void)
{
	struct timespec pause = { 0, 1000000 };

	IMP_ASSERT(!imp_hook_txn_open());
	for (struct log_gen *g = log_gens; g != NULL; g = g->next)
		gen_unregister(g);
	/* Calls still running may hold the generations: give them time. */
	for (int ms = 0; imp_hook_reclaim() != 0 && ms < LOG_SHUTDOWN_WAIT_MS; ms++)
		nanosleep(&pause, NULL);
	while (log_gens != NULL) {
		struct log_gen *g = log_gens;
		log_gens = g->next;
		gen_free(g);
	}
}

/* One record to render: a message record or a rejection, with its formatter. */
struct log_render {
	log_msg_format_fn *msg_fmt;         /* set for message records */
	const struct log_msg_record *msg;
	size_t (*reject_fmt)(char *, size_t, const struct log_reject_record *);
	const struct log_reject_record *reject;
};

static size_t
render(const struct log_render *x, char *buf, size_t len)
{
	return x->msg_fmt ? x->msg_fmt(buf, len, x->msg) : x->reject_fmt(buf, len, x->reject);
}

/* Format on the stack; only a record longer than LOG_LINE_STACK allocates. */
static void
emit(struct logfile *f, const struct log_render *x)
{
	char line[LOG_LINE_STACK];
	size_t n = render(x, line, sizeof(line));
	char *big;

	if (n < sizeof(line)) {
		logfile_write(f, line, n);
		return;
	}
	big = xmalloc(n + 1);
	render(x, big, n + 1);
	logfile_write(f, big, n);
	free(big);
}

static void
emit_msg(struct logfile *f, log_msg_format_fn *fmt, const struct log_msg_record *r)
{
	struct log_render x = { fmt, r, NULL, NULL };

	emit(f, &x);
}

static void
emit_reject(struct logfile *f, size_t (*fmt)(char *, size_t, const struct log_reject_record *),
            const struct log_reject_record *r)
{
	struct log_render x = { NULL, NULL, fmt, r };

	emit(f, &x);
}

static void
message_event(struct log_gen *g, char type, unsigned ev, accept_construct *ac, ec_message *msg,
              domain_record *dr, struct timeval *now, const char *note, int note_len)
{
	struct log_msg_record r;

	log_record_from_message(&r, type, ac, msg, dr, now, note, note_len);
	if ((type == 'T' || type == 'P') && g->classify) {
		char stack[LOG_REPLY_STACK];
		char *text = r.response_len < sizeof(stack) ? stack : xmalloc(r.response_len + 1);
		if (r.response_len > 0)
			memcpy(text, r.response, r.response_len);
		text[r.response_len] = '\0';
		r.bounce_class = log_classify(text, r.dest_domain);
		if (text != stack)
			free(text);
	}
	for (size_t i = 0; i < g->nsinks; i++) {
		const struct log_sink *s = &g->sinks[i];
		if (!(s->events & ev))
			continue;
		if (s->mainlog != NULL)
			emit_msg(s->mainlog, log_format_mainlog, &r);
		if (s->jsonlog != NULL)
			emit_msg(s->jsonlog, log_format_json_message, &r);
		if (s->bouncelog != NULL && type != 'R' && type != 'D')
			emit_msg(s->bouncelog, log_format_bouncelog, &r);
	}
}

static void
on_reception(void *closure, accept_construct *ac, ec_message *msg, struct timeval *now,
             const char *note, int note_len)
{
	message_event(closure, 'R', LOG_EV_RECEPTION, ac, msg, NULL, now, note, note_len);
}

static void
on_delivery(void *closure, ec_message *msg, domain_record *dr, struct timeval *now,
            const char *note, int note_len)
{
	message_event(closure, 'D', LOG_EV_DELIVERY, NULL, msg, dr, now, note, note_len);
}

static void
on_transient_failure(void *closure, ec_message *msg, domain_record *dr, struct timeval *now,
                     const char *note, int note_len)
{
	message_event(closure, 'T', LOG_EV_TRANSIENT, NULL, msg, dr, now, note, note_len);
}

static void
on_permanent_failure(void *closure, ec_message *msg, domain_record *dr, struct timeval *now,
                     const char *note, int note_len)
{
	message_event(closure, 'P', LOG_EV_PERMANENT, NULL, msg, dr, now, note, note_len);
}

static void
on_rejection(void *closure, struct timeval *now, accept_construct *ac, validate_context *ctx,
             int phase, const char *fmt, va_list ap)
{
	struct log_gen *g = closure;
	struct log_reject_record r;
	char stack[LOG_REPLY_STACK];
	char *text = stack;
	va_list again;
	int n;

	va_copy(again, ap);
	n = vsnprintf(stack, sizeof(stack), fmt ? fmt : "", ap);
	if (n < 0) {
		n = 0;
		stack[0] = '\0';
	} else if ((size_t)n >= sizeof(stack)) {
		text = xmalloc((size_t)n + 1);
		vsnprintf(text, (size_t)n + 1, fmt, again);
	}
	va_end(again);
	/* The hook does not say which module refused: the core, until it does. */
	log_reject_from_hook(&r, now, ac, phase, "core", text, (size_t)n);
	for (size_t i = 0; i < g->nsinks; i++) {
		const struct log_sink *s = &g->sinks[i];
		if (!(s->events & LOG_EV_REJECTION))
			continue;
		if (s->rejectlog != NULL)
			emit_reject(s->rejectlog, log_format_rejectlog, &r);
		if (s->jsonlog != NULL)
			emit_reject(s->jsonlog, log_format_json_rejection, &r);
	}
	if (text != stack)
		free(text);
}

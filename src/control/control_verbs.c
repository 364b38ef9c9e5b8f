/*
 * control_verbs.c - the console's verbs, with Momentum's names.
 *
 *   control_dispatch   find the verb of a request and run it
 *
 * Status: summary [reset], domain <d>|all, binding summary [name|slot|group:g],
 * mailq, showqueue, version, memory, help. Queue control: flush domain <d>,
 * binding flush domain <b> <d>, delay <secs> [--domain d] [--binding b],
 * fail domain [quiet] <d> [note], message details|retry|fail [quiet] <id>
 * [note], rebind <binding|all> [domain] [--to b], refresh domain <d>.
 * Configuration: config … (control_config.c). Process: reopen logs,
 * shutdown [now]. Any other first word is tried as a module's verb
 * ("conn_failure_log counts").
 *
 * Verbs that read or change queues go through queue/queue_console.h and
 * answer from its callback on the main loop; the others answer at once.
 * Every error is one line and the error status.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <impetus/binding.h>

#include "conf/conf.h"
#include "conf/conf_core.h"
#include "control/control_internal.h"
#include "event/loop.h"
#include "lib/xalloc.h"
#include "module/module.h"
#include "listener/listener.h"
#include "queue/queue.h"
#include "queue/queue_console.h"

#define NOTE_FAIL_DOMAIN "554 5.0.0 [internal] failed by the administrator (console: fail domain)"
#define NOTE_FAIL_MESSAGE "554 5.0.0 [internal] failed by the administrator (console: message fail)"

struct verb {
	const char *name;
	const char *usage;
	void (*run)(struct control_cmd *cmd, int argc, char **argv);
};

static void verb_summary(struct control_cmd *cmd, int argc, char **argv);
static void verb_domain(struct control_cmd *cmd, int argc, char **argv);
static void verb_binding(struct control_cmd *cmd, int argc, char **argv);
static void verb_showqueue(struct control_cmd *cmd, int argc, char **argv);
static void verb_flush(struct control_cmd *cmd, int argc, char **argv);
static void verb_delay(struct control_cmd *cmd, int argc, char **argv);
static void verb_fail(struct control_cmd *cmd, int argc, char **argv);
static void verb_message(struct control_cmd *cmd, int argc, char **argv);
static void verb_rebind(struct control_cmd *cmd, int argc, char **argv);
static void verb_refresh(struct control_cmd *cmd, int argc, char **argv);
static void verb_reopen(struct control_cmd *cmd, int argc, char **argv);
static void verb_shutdown(struct control_cmd *cmd, int argc, char **argv);
static void verb_version(struct control_cmd *cmd, int argc, char **argv);
static void verb_memory(struct control_cmd *cmd, int argc, char **argv);
static void verb_help(struct control_cmd *cmd, int argc, char **argv);
static void verb_history(struct control_cmd *cmd, int argc, char **argv);

static const struct verb verbs[] = {
	{ "summary", "summary [reset]  counters, queues, rates, uptime", verb_summary },
	{ "domain", "domain <d>|all  a domain's MXs, addresses, queues, sessions", verb_domain },
	{ "binding", "binding summary [name|slot|group:g] | binding flush domain <b> <d>",
	  verb_binding },
	{ "mailq", "mailq  queued mail per domain and binding", verb_showqueue },
	{ "showqueue", "showqueue  queued mail per domain and binding", verb_showqueue },
	{ "flush", "flush domain <d>  attempt the domain's delayed mail now", verb_flush },
	{ "delay", "delay <secs> [--domain d] [--binding b]  move active mail to the delayed queue",
	  verb_delay },
	{ "fail", "fail domain [quiet] <d> [note]  fail (and bounce) the domain's queued mail",
	  verb_fail },
	{ "message", "message details|retry|fail [quiet] <id> [note]  one queued message",
	  verb_message },
	{ "rebind", "rebind <binding|all> [domain] [--to b]  move queued mail to binding b "
	  "(default \"default\")", verb_rebind },
	{ "refresh", "refresh domain <d>  forget the domain's DNS answer and look it up again",
	  verb_refresh },
	{ "config", "config set [scope…] <option> <value> | config get|eval [scope…] <option> | "
	  "config reload   (scope: binding_group g, binding b, domain d)", control_config },
	{ "reopen", "reopen logs  reopen the paniclog and the log files", verb_reopen },
	{ "shutdown", "shutdown [now]  stop the daemon (mail stays in the spool)", verb_shutdown },
	{ "version", "version  the daemon's version", verb_version },
	{ "memory", "memory  the process's memory use", verb_memory },
	{ "help", "help  this list", verb_help },
	{ "history", "history  (impetusctl) the commands of this session", verb_history },
	{ NULL, NULL, NULL },
};

/* Baseline of "summary reset": counters at that time. */
static struct queue_stats summary_base;
static time_t summary_base_time;

/* ------------------------------------------------------------ helpers */

static int
parse_secs(const char *s, int64_t *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || v < 0 || v > INT32_MAX)
		return -1;
	switch (*end) {
	case '\0': case 's': break;
	case 'm': v *= 60; break;
	case 'h': v *= 3600; break;
	case 'd': v *= 86400; break;
	default: return -1;
	}
	if (*end != '\0' && end[1] != '\0')
		return -1;
	*out = v;
	return 0;
}

/* The note of a failure: the words joined; a reply code in front if missing. */
static char *
note_join(int argc, char **argv, const char *def)
{
	struct strbuf sb = STRBUF_INIT;

	if (argc == 0)
		return xstrdup(def);
	if (!(isdigit((unsigned char)argv[0][0]) && isdigit((unsigned char)argv[0][1]) &&
	      isdigit((unsigned char)argv[0][2])))
		strbuf_puts(&sb, "554 5.0.0 ");
	for (int i = 0; i < argc; i++)
		strbuf_printf(&sb, "%s%s", i ? " " : "", argv[i]);
	return strbuf_steal(&sb);
}

static int
binding_slot_of(struct control_cmd *cmd, const char *name)
{
	struct conf *c = conf_current();
	int slot = conf_binding_slot(c, name);

	conf_unref(c);
	if (slot < 0)
		control_cmd_fail(cmd, "unknown binding \"%s\"", name);
	return slot;
}

static void
duration_text(int64_t s, char *buf, size_t len)
{
	snprintf(buf, len, "%lldd %02lld:%02lld:%02lld", (long long)(s / 86400),
	         (long long)(s % 86400 / 3600), (long long)(s % 3600 / 60), (long long)(s % 60));
}

/* ------------------------------------------------------------ summary */

static void
verb_summary(struct control_cmd *cmd, int argc, char **argv)
{
	struct strbuf *o = control_cmd_out(cmd);
	struct queue_stats st, *b = &summary_base;
	time_t now = time(NULL), since;
	int64_t up = now - control_started(), span;
	char text[64];

	queue_stats(&st);
	if (argc >= 2 && strcasecmp(argv[1], "reset") == 0) {
		summary_base = st;
		summary_base_time = now;
		strbuf_puts(o, "summary counters reset\n");
		control_cmd_done(cmd, 0);
		return;
	}
	if (argc >= 2) {
		control_cmd_fail(cmd, "usage: summary [reset]");
		return;
	}
	since = summary_base_time != 0 ? summary_base_time : control_started();
	span = now - since > 0 ? now - since : 1;
	duration_text(up, text, sizeof(text));
	strbuf_printf(o, "Version: impetusd %s\n", IMPETUS_VERSION);
	strbuf_printf(o, "Uptime: %lld s (%s)\n", (long long)up, text);
	{
		struct listener_stats ls;
		listener_stats(&ls);
		strbuf_printf(o, "Inbound connections: %" PRIu64 " (%" PRIu64 " since start)\n",
		              ls.sessions_open, ls.sessions_total);
	}
	strbuf_printf(o, "Outbound connections: %" PRIu64 "\n", st.conns);
	strbuf_printf(o, "Active domains: %" PRIu64 "\n", st.domains);
	strbuf_printf(o, "Active queue: %" PRIu64 "\n", st.active);
	strbuf_printf(o, "Delayed queue: %" PRIu64 "\n", st.delayed);
	strbuf_printf(o, "Total queue: %" PRIu64 "\n", st.active + st.delayed);
	strbuf_printf(o, "Counters since: %lld (%lld s ago)%s\n", (long long)since,
	              (long long)(now - since), summary_base_time != 0 ? " (summary reset)" : "");
#define LINE(label, f) \
	strbuf_printf(o, "%s: %" PRIu64 " (%.2f/s)\n", label, st.f - b->f, \
	              (double)(st.f - b->f) / (double)span)
	LINE("Received", received);
	LINE("Read back from the spool", restored);
	LINE("Delivered", delivered);
	LINE("Transient failures", transient);
	LINE("Permanent failures", failed);
	LINE("Bounces", bounces);
	LINE("Connection attempts", conn_attempts);
	LINE("Connection failures", conn_failures);
	LINE("DNS queries", dns_queries);
	LINE("DNS failures", dns_failures);
#undef LINE
	control_cmd_done(cmd, 0);
}

/* ------------------------------------------------------------ domain */

static void
details_done(const struct queue_op_result *r, void *arg)
{
	struct control_cmd *cmd = arg;

	if (r->domains == 0) {
		control_cmd_fail(cmd, "domain not in the queues: %s",
		                 strbuf_cstr(control_cmd_out(cmd)));
		return;
	}
	strbuf_reset(control_cmd_out(cmd));
	strbuf_puts(control_cmd_out(cmd), r->text);
	control_cmd_done(cmd, 0);
}

static int
row_cmp(const void *x, const void *y)
{
	const struct queue_row *a = x, *b = y;
	int c = strcmp(a->domain, b->domain);

	return c != 0 ? c : (a->slot > b->slot) - (a->slot < b->slot);
}

static void
domain_all_done(const struct queue_row *rows, size_t n, void *arg)
{
	struct control_cmd *cmd = arg;
	struct strbuf *o = control_cmd_out(cmd);
	struct queue_row *v = n ? xmalloc(n * sizeof(*v)) : NULL;

	if (n > 0)
		memcpy(v, rows, n * sizeof(*v));
	qsort(v, n, sizeof(*v), row_cmp);
	strbuf_printf(o, "%-32s %8s %8s %6s %8s %5s %9s %9s %9s\n", "domain", "active", "delayed",
	              "conns", "dns", "hosts", "delivered", "transient", "failed");
	for (size_t i = 0; i < n; i++) {
		size_t active = 0;
		unsigned conns = 0;
		if (v[i].slot != -1)
			continue;
		for (size_t k = 0; k < n; k++)
			if (v[k].slot >= 0 && strcmp(v[k].domain, v[i].domain) == 0) {
				active += v[k].active;
				conns += v[k].conns;
			}
		strbuf_printf(o, "%-32s %8zu %8zu %6u %8s %5u %9" PRIu64 " %9" PRIu64 " %9" PRIu64 "\n",
		              v[i].domain, active, v[i].delayed, conns, v[i].dns, v[i].nhosts,
		              v[i].delivered, v[i].transient, v[i].failed);
	}
	free(v);
	control_cmd_done(cmd, 0);
}

static void
verb_domain(struct control_cmd *cmd, int argc, char **argv)
{
	struct queue_op_request rq = { .kind = QUEUE_OP_DETAILS, .slot = -1 };

	if (argc != 2) {
		control_cmd_fail(cmd, "usage: domain <domain>|all");
		return;
	}
	if (strcasecmp(argv[1], "all") == 0) {
		queue_collect(control_loop(), domain_all_done, cmd);
		return;
	}
	rq.domain = argv[1];
	strbuf_puts(control_cmd_out(cmd), argv[1]);    /* for the error */
	queue_op(control_loop(), &rq, details_done, cmd);
}

/* ------------------------------------------------------------ bindings */

struct bsum {
	struct control_cmd *cmd;
	char *filter;                       /* name, slot number, "group:g" or NULL */
};

static void
binding_summary_done(const struct queue_row *rows, size_t n, void *arg)
{
	struct bsum *bs = arg;
	struct strbuf *o = control_cmd_out(bs->cmd);
	struct conf *c = conf_current();
	int shown = 0;

	strbuf_printf(o, "%-20s %5s %-16s %8s %8s %6s %8s %s\n", "binding", "slot", "group",
	              "domains", "active", "conns", "delayed", "suspended");
	for (size_t s = 0; s < c->nbindings; s++) {
		const struct conf_binding *bd = &c->bindings[s];
		size_t domains = 0, active = 0, delayed = 0;
		unsigned conns = 0;
		char slot_text[24];

		if (!bd->present)
			continue;
		snprintf(slot_text, sizeof(slot_text), "%zu", s);
		if (bs->filter != NULL) {
			if (strncasecmp(bs->filter, "group:", 6) == 0) {
				if (strcmp(bd->group->name, bs->filter + 6) != 0)
					continue;
			} else if (strcmp(bd->name, bs->filter) != 0 && strcmp(slot_text, bs->filter) != 0) {
				continue;
			}
		}
		for (size_t i = 0; i < n; i++) {
			if (rows[i].slot != (int)s)
				continue;
			domains++;
			active += rows[i].active;
			delayed += rows[i].delayed_slot;
			conns += rows[i].conns;
		}
		strbuf_printf(o, "%-20s %5zu %-16s %8zu %8zu %6u %8zu %s\n", bd->name, s, bd->group->name,
		              domains, active, conns, delayed,
		              conf_resolve(c, &conf_opt_suspend_delivery, (int)s, NULL)->i ? "yes" : "no");
		shown++;
	}
	conf_unref(c);
	if (shown == 0 && bs->filter != NULL)
		control_cmd_fail(bs->cmd, "no binding matches \"%s\"", bs->filter);
	else
		control_cmd_done(bs->cmd, 0);
	free(bs->filter);
	free(bs);
}

/* The answer of a verb on one domain: "N messages <what>", or that the
 * domain (left in the output buffer by the verb) has no queue. */
static void
domain_count_reply(const struct queue_op_result *r, struct control_cmd *cmd, const char *what)
{
	struct strbuf *o = control_cmd_out(cmd);

	if (r->domains == 0) {
		control_cmd_fail(cmd, "domain not in the queues: %s", strbuf_cstr(o));
		return;
	}
	strbuf_reset(o);
	strbuf_printf(o, "%" PRIu64 " messages %s\n", r->count, what);
	control_cmd_done(cmd, 0);
}

static void
flush_done(const struct queue_op_result *r, void *arg)
{
	domain_count_reply(r, arg, "due now");
}

static void
flush_start(struct control_cmd *cmd, const char *domain, int slot)
{
	struct queue_op_request rq = { .kind = QUEUE_OP_FLUSH, .domain = domain, .slot = slot };

	strbuf_puts(control_cmd_out(cmd), domain);
	queue_op(control_loop(), &rq, flush_done, cmd);
}

static void
verb_binding(struct control_cmd *cmd, int argc, char **argv)
{
	if (argc >= 2 && strcasecmp(argv[1], "summary") == 0 && argc <= 3) {
		struct bsum *bs = xcalloc(1, sizeof(*bs));
		bs->cmd = cmd;
		bs->filter = argc == 3 ? xstrdup(argv[2]) : NULL;
		queue_collect(control_loop(), binding_summary_done, bs);
		return;
	}
	if (argc == 5 && strcasecmp(argv[1], "flush") == 0 && strcasecmp(argv[2], "domain") == 0) {
		int slot = binding_slot_of(cmd, argv[3]);
		if (slot >= 0)
			flush_start(cmd, argv[4], slot);
		return;
	}
	control_cmd_fail(cmd, "usage: binding summary [name|slot|group:g] | "
	                 "binding flush domain <binding> <domain>");
}

/* ------------------------------------------------------------ queues */

static void
showqueue_done(const struct queue_row *rows, size_t n, void *arg)
{
	struct control_cmd *cmd = arg;
	struct strbuf *o = control_cmd_out(cmd);
	struct queue_row *v = n ? xmalloc(n * sizeof(*v)) : NULL;
	size_t ta = 0, td = 0, lines = 0;

	if (n > 0)
		memcpy(v, rows, n * sizeof(*v));
	qsort(v, n, sizeof(*v), row_cmp);
	strbuf_printf(o, "%-32s %-20s %8s %8s %6s\n", "domain", "binding", "active", "delayed",
	              "conns");
	for (size_t i = 0; i < n; i++) {
		if (v[i].slot < 0 || (v[i].active == 0 && v[i].delayed_slot == 0 && v[i].conns == 0))
			continue;
		strbuf_printf(o, "%-32s %-20s %8zu %8zu %6u\n", v[i].domain, v[i].binding, v[i].active,
		              v[i].delayed_slot, v[i].conns);
		ta += v[i].active;
		td += v[i].delayed_slot;
		lines++;
	}
	strbuf_printf(o, "total: %zu active, %zu delayed in %zu queues\n", ta, td, lines);
	free(v);
	control_cmd_done(cmd, 0);
}

static void
verb_showqueue(struct control_cmd *cmd, int argc, char **argv)
{
	if (argc != 1) {
		control_cmd_fail(cmd, "usage: %s", argv[0]);
		return;
	}
	queue_collect(control_loop(), showqueue_done, cmd);
}

static void
verb_flush(struct control_cmd *cmd, int argc, char **argv)
{
	if (argc != 3 || strcasecmp(argv[1], "domain") != 0) {
		control_cmd_fail(cmd, "usage: flush domain <domain>");
		return;
	}
	flush_start(cmd, argv[2], -1);
}

static void
count_done(const struct queue_op_result *r, void *arg)
{
	struct control_cmd *cmd = arg;
	struct strbuf *o = control_cmd_out(cmd);
	char *what = strbuf_steal(o);

	strbuf_printf(o, "%" PRIu64 " messages %s\n", r->count, what);
	free(what);
	control_cmd_done(cmd, 0);
}

static void
verb_delay(struct control_cmd *cmd, int argc, char **argv)
{
	struct queue_op_request rq = { .kind = QUEUE_OP_DELAY, .slot = -1 };
	const char *binding = NULL;

	if (argc < 2 || parse_secs(argv[1], &rq.secs) < 0) {
		control_cmd_fail(cmd, "usage: delay <secs> [--domain d] [--binding b]");
		return;
	}
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--domain") == 0 && i + 1 < argc) {
			rq.domain = argv[++i];
		} else if (strcmp(argv[i], "--binding") == 0 && i + 1 < argc) {
			binding = argv[++i];
		} else {
			control_cmd_fail(cmd, "delay: unexpected \"%s\"; usage: delay <secs> "
			                 "[--domain d] [--binding b]", argv[i]);
			return;
		}
	}
	if (binding != NULL && (rq.slot = binding_slot_of(cmd, binding)) < 0)
		return;
	strbuf_printf(control_cmd_out(cmd), "delayed by %llds", (long long)rq.secs);
	queue_op(control_loop(), &rq, count_done, cmd);
}

static void
fail_done(const struct queue_op_result *r, void *arg)
{
	domain_count_reply(r, arg, "failed");
}

static void
verb_fail(struct control_cmd *cmd, int argc, char **argv)
{
	struct queue_op_request rq = { .kind = QUEUE_OP_FAIL, .slot = -1 };
	int i = 2;
	char *note;

	if (argc < 3 || strcasecmp(argv[1], "domain") != 0) {
		control_cmd_fail(cmd, "usage: fail domain [quiet] <domain> [note]");
		return;
	}
	if (strcasecmp(argv[i], "quiet") == 0) {
		rq.quiet = 1;
		i++;
	}
	if (i >= argc) {
		control_cmd_fail(cmd, "usage: fail domain [quiet] <domain> [note]");
		return;
	}
	rq.domain = argv[i++];
	note = note_join(argc - i, argv + i, NOTE_FAIL_DOMAIN);
	rq.note = note;
	strbuf_puts(control_cmd_out(cmd), rq.domain);
	queue_op(control_loop(), &rq, fail_done, cmd);
	free(note);
}

static void
message_done(const struct queue_op_result *r, void *arg)
{
	struct control_cmd *cmd = arg;
	struct strbuf *o = control_cmd_out(cmd);

	if (r->count == 0) {
		control_cmd_fail(cmd, "no queued message %s (delivered, failed, in flight or unknown)",
		                 strbuf_cstr(o));
		return;
	}
	strbuf_reset(o);
	strbuf_puts(o, r->text);
	control_cmd_done(cmd, 0);
}

static void
verb_message(struct control_cmd *cmd, int argc, char **argv)
{
	struct queue_op_request rq = { .slot = -1 };
	int i = 2;
	char *note = NULL;

	if (argc < 3)
		goto usage;
	if (strcasecmp(argv[1], "details") == 0)
		rq.kind = QUEUE_OP_MESSAGE_DETAILS;
	else if (strcasecmp(argv[1], "retry") == 0)
		rq.kind = QUEUE_OP_MESSAGE_RETRY;
	else if (strcasecmp(argv[1], "fail") == 0)
		rq.kind = QUEUE_OP_MESSAGE_FAIL;
	else
		goto usage;
	if (rq.kind == QUEUE_OP_MESSAGE_FAIL && strcasecmp(argv[i], "quiet") == 0) {
		rq.quiet = 1;
		i++;
	}
	if (i >= argc)
		goto usage;
	rq.id = argv[i++];
	if (rq.kind != QUEUE_OP_MESSAGE_FAIL && i != argc)
		goto usage;
	note = note_join(argc - i, argv + i, NOTE_FAIL_MESSAGE);
	rq.note = note;
	strbuf_puts(control_cmd_out(cmd), rq.id);
	queue_op(control_loop(), &rq, message_done, cmd);
	free(note);
	return;
usage:
	control_cmd_fail(cmd, "usage: message details|retry <id> | message fail [quiet] <id> [note]");
}

static void
verb_rebind(struct control_cmd *cmd, int argc, char **argv)
{
	const char *from = NULL, *domain = NULL, *to = "default";
	char err[160];

	if (argc < 2)
		goto usage;
	if (strcasecmp(argv[1], "all") != 0)
		from = argv[1];
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--to") == 0 && i + 1 < argc)
			to = argv[++i];
		else if (domain == NULL && argv[i][0] != '-')
			domain = argv[i];
		else
			goto usage;
	}
	/* queue_rebind takes the domain as an address's domain (after the last
	 * '@'; a bare name gives ""): hand it "@domain". */
	char *at_domain = domain != NULL ? xasprintf("@%s", domain) : NULL;
	int rc = queue_rebind(from, at_domain, to, err, sizeof(err));
	free(at_domain);
	if (rc < 0) {
		control_cmd_fail(cmd, "rebind: %s", err);
		return;
	}
	strbuf_printf(control_cmd_out(cmd), "queued mail of %s%s%s%s moves to binding %s\n",
	              from != NULL ? "binding " : "every binding", from != NULL ? from : "",
	              domain != NULL ? " for domain " : "", domain != NULL ? domain : "", to);
	control_cmd_done(cmd, 0);
	return;
usage:
	control_cmd_fail(cmd, "usage: rebind <binding|all> [domain] [--to <binding>]");
}

static void
refresh_done(const struct queue_op_result *r, void *arg)
{
	struct control_cmd *cmd = arg;

	if (r->domains == 0) {
		control_cmd_fail(cmd, "domain not in the queues: %s", strbuf_cstr(control_cmd_out(cmd)));
		return;
	}
	strbuf_reset(control_cmd_out(cmd));
	strbuf_puts(control_cmd_out(cmd), r->text);
	control_cmd_done(cmd, 0);
}

static void
verb_refresh(struct control_cmd *cmd, int argc, char **argv)
{
	struct queue_op_request rq = { .kind = QUEUE_OP_REFRESH, .slot = -1 };

	if (argc != 3 || strcasecmp(argv[1], "domain") != 0) {
		control_cmd_fail(cmd, "usage: refresh domain <domain>");
		return;
	}
	rq.domain = argv[2];
	strbuf_puts(control_cmd_out(cmd), argv[2]);
	queue_op(control_loop(), &rq, refresh_done, cmd);
}

/* ------------------------------------------------------------ process */

static void
verb_reopen(struct control_cmd *cmd, int argc, char **argv)
{
	if (argc != 2 || strcasecmp(argv[1], "logs") != 0) {
		control_cmd_fail(cmd, "usage: reopen logs");
		return;
	}
	if (control_ops_get()->reopen != NULL)
		control_ops_get()->reopen(control_ops_get()->arg);
	strbuf_puts(control_cmd_out(cmd), "logs reopened\n");
	control_cmd_done(cmd, 0);
}

static void
verb_shutdown(struct control_cmd *cmd, int argc, char **argv)
{
	if (argc > 2 || (argc == 2 && strcasecmp(argv[1], "now") != 0)) {
		control_cmd_fail(cmd, "usage: shutdown [now]");
		return;
	}
	strbuf_puts(control_cmd_out(cmd), "shutting down\n");
	control_cmd_shutdown_after(cmd);
	control_cmd_done(cmd, 0);
}

static void
verb_version(struct control_cmd *cmd, int argc, char **argv)
{
	struct conf *c = conf_current();

	strbuf_printf(control_cmd_out(cmd), "impetusd %s (pid %ld, configuration %s, generation %"
	              PRIu64 ")\n", IMPETUS_VERSION, (long)getpid(), c->source, c->generation);
	conf_unref(c);
	control_cmd_done(cmd, 0);
}

static void
verb_memory(struct control_cmd *cmd, int argc, char **argv)
{
	struct strbuf *o = control_cmd_out(cmd);
	struct queue_stats st;
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];

	if (f != NULL) {
		while (fgets(line, sizeof(line), f) != NULL)
			if (strncmp(line, "VmRSS:", 6) == 0 || strncmp(line, "VmHWM:", 6) == 0 ||
			    strncmp(line, "VmSize:", 7) == 0 || strncmp(line, "VmData:", 7) == 0 ||
			    strncmp(line, "Threads:", 8) == 0)
				strbuf_puts(o, line);
		fclose(f);
	}
	queue_stats(&st);
	strbuf_printf(o, "Queued recipient-messages: %" PRIu64 "\n", st.active + st.delayed);
	strbuf_printf(o, "Domain records: %" PRIu64 "\n", st.domains);
	control_cmd_done(cmd, 0);
}

static void
verb_help(struct control_cmd *cmd, int argc, char **argv)
{
	struct strbuf *o = control_cmd_out(cmd);

	for (size_t i = 0; verbs[i].name != NULL; i++)
		strbuf_printf(o, "%s\n", verbs[i].usage);
	strbuf_puts(o, "<module>[:<instance>] <verb> [args]  a module's verb "
	            "(e.g. conn_failure_log counts)\n");
	control_cmd_done(cmd, 0);
}

static void
verb_history(struct control_cmd *cmd, int argc, char **argv)
{
	control_cmd_fail(cmd, "history is kept by impetusctl in interactive mode");
}

/* ------------------------------------------------------------ dispatch */

void
control_dispatch(struct control_cmd *cmd, int argc, char **argv)
{
	struct strbuf *o = control_cmd_out(cmd);
	const struct control_ops *ops = control_ops_get();
	int rc;

	for (size_t i = 0; verbs[i].name != NULL; i++)
		if (strcasecmp(verbs[i].name, argv[0]) == 0) {
			verbs[i].run(cmd, argc, argv);
			return;
		}
	rc = module_console_run(ops->modules != NULL ? ops->modules(ops->arg) : NULL, argc, argv, o);
	if (rc != 0 && strncmp(strbuf_cstr(o), "unknown module", 14) == 0) {
		control_cmd_fail(cmd, "unknown command \"%s\" (\"help\" lists the commands)", argv[0]);
		return;
	}
	if (rc != 0) {
		/* The module's message: keep its first line as the error. */
		char *text = strbuf_steal(o), *nl = strchr(text, '\n');
		if (nl != NULL && nl[1] == '\0')
			*nl = '\0';
		control_cmd_fail(cmd, "%s", text);
		free(text);
		return;
	}
	control_cmd_done(cmd, 0);
}

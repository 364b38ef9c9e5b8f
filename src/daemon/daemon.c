/*
 * daemon.c - the life of the impetusd process.
 *
 * daemon_run (daemon.h) and the signal handlers behind it: reload
 * (SIGHUP: a new generation is built and checked before it replaces the
 * running one; a bad file is refused and the old configuration stays),
 * reopen (SIGUSR1), stop (SIGTERM, SIGINT: loops finish their queued work,
 * the pool drains, the pidfile goes, exit 0). Start-up failures are fatal
 * with a message that says what to fix. daemon_load_conf installs the
 * module loader first, so that a stanza named after a module loads it
 * (also for --check).
 *
 * Modules (src/module/module.h) follow the configuration: at start, after
 * privileges are dropped and before the loops run, the first module
 * generation is initialized and committed (a failure is fatal); a reload
 * checks restart-only options, then starts the new module generation
 * (reload/init inside a hook transaction), then installs the configuration,
 * then commits the hooks and finishes the old instances - any failure
 * refuses the reload and the running configuration and modules stay. A 1 s
 * timer on the main loop reclaims replaced hook arrays (and finis the
 * instances that waited for that); at stop every instance is finished.
 */
#include "daemon/daemon.h"

#include <errno.h>
#include <event2/event.h>
#include <grp.h>
#include <impetus/hook.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/conf.h"
#include "conf/conf_core.h"
#include "control/control.h"
#include "metrics/metrics.h"
#include "dns/dns.h"
#include "queue/queue.h"
#include "daemon/pidfile.h"
#include "event/loop.h"
#include "event/timer.h"
#include "event/tpool.h"
#include "lib/diag.h"
#include "listener/listener.h"
#include "log/log.h"
#include "spool/spool.h"
#include "lib/strbuf.h"
#include "lib/xalloc.h"
#include "module/module.h"

#define DAEMON_RECLAIM_MS 1000      /* period of the hook reclamation timer */

struct daemon {
	const struct daemon_options *opts;
	struct loop *main_loop;         /* signals and control, on the main thread */
	struct loop_group *loops;       /* the event-loop threads */
	struct tpool *io_pool;          /* blocking work: fsync, unlink, reads */
	struct listener_set *listeners; /* ESMTP sockets, bound before the privilege drop */
	struct spool *spool;            /* the durable spool */
	uint64_t spool_batches;         /* read back at start */
	uint64_t spool_rcpts;           /* their recipient-messages not yet done */
	int lock_fd;                    /* spool lock, held for the process's life */
	char *pidfile;                  /* path written at start, owned */
	char *paniclog;                 /* path in use, owned; NULL = stderr only */
	char *created_dirs[2];          /* log and pidfile directories we made, owned */
	struct event *ev_term, *ev_int, *ev_hup, *ev_usr1;
	struct module_generation *modules; /* the running module instances */
	struct timer *reclaim_timer;    /* every DAEMON_RECLAIM_MS: hook arrays, old modules */
};

static struct daemon *daemon_self;      /* for the fatal exit hook */

static void daemon_exit_hook(void);
static void on_stop(evutil_socket_t sig, short what, void *arg);
static void on_reload(evutil_socket_t sig, short what, void *arg);
static void on_reopen(evutil_socket_t sig, short what, void *arg);
static void on_reclaim(struct timer *t, void *arg);
static int daemon_install(struct daemon *d, struct conf *fresh, struct conf_errors *errs);
static int daemon_reload(struct daemon *d, struct conf_errors *errs);
static char *errors_join(struct conf_errors *errs);
static void log_modules(const struct module_generation *g);
static int make_parent_dir(struct daemon *d, const char *path, int slot);
static int open_paniclog(struct daemon *d, const struct conf *c);
static void drop_privileges(const struct conf *c, const struct daemon *d);

struct conf *
daemon_load_conf(const struct daemon_options *opts, void *errs_arg)
{
	struct conf_errors local = { STRBUF_INIT, 0 };
	struct conf_errors *errs = errs_arg ? errs_arg : &local;
	struct conf *c;

	module_loader_install();
	listener_register_checks();
	if (opts->conf_path != NULL)
		c = conf_load_file(opts->conf_path, errs);
	else
		c = conf_load_string(conf_default_text, "<default>", errs);
	if (c == NULL && errs == &local)
		fputs(strbuf_cstr(&local.text), stderr);
	conf_errors_free(&local);
	return c;
}

static void
daemon_exit_hook(void)
{
	if (daemon_self != NULL && daemon_self->pidfile != NULL)
		pidfile_remove(daemon_self->pidfile);
}

/* The paniclog of the configuration's first ec_logger stanza, if any. */
static const char *
conf_paniclog(const struct conf *c)
{
	const struct conf_scope *lg = conf_scope_child(c->global, CONF_SCOPE_EC_LOGGER, 0);
	const struct conf_setting *s = lg ? conf_scope_get(lg, &conf_opt_paniclog) : NULL;

	return s ? s->s : NULL;
}

/*
 * Create the directory of path when missing, and remember it (slot) so that
 * drop_privileges can hand it to the daemon's user: rotation reopens files
 * there, and the pidfile is removed from there at exit.
 */
static int
make_parent_dir(struct daemon *d, const char *path, int slot)
{
	char *dir = xstrdup(path), *slash = strrchr(dir, '/');
	struct stat st;

	if (slash == NULL || slash == dir) {
		free(dir);
		return 0;
	}
	*slash = '\0';
	if (stat(dir, &st) == 0) {
		free(dir);
		return 0;
	}
	if (mkdir_p(dir, 0755) < 0) {
		diag_warn("cannot create directory %s: %m", dir);
		free(dir);
		return -1;
	}
	free(d->created_dirs[slot]);
	d->created_dirs[slot] = dir;
	return 0;
}

static int
open_paniclog(struct daemon *d, const struct conf *c)
{
	const char *path = conf_paniclog(c);

	if (path == NULL) {
		if (d->paniclog != NULL) {
			diag_info("paniclog closed by configuration");
			diag_close();
			free(d->paniclog);
			d->paniclog = NULL;
		}
		return 0;
	}
	if (d->paniclog != NULL && strcmp(d->paniclog, path) == 0)
		return 0;
	if (make_parent_dir(d, path, 0) < 0)
		return -1;
	if (diag_open_paniclog(path) < 0) {
		diag_warn("cannot open paniclog %s: %m", path);
		return -1;
	}
	free(d->paniclog);
	d->paniclog = xstrdup(path);
	return 0;
}

static void
drop_privileges(const struct conf *c, const struct daemon *d)
{
	const struct conf_scope *sec = conf_scope_child(c->global, CONF_SCOPE_SECURITY, 0);
	const struct conf_setting *us = conf_resolve_chain(sec ? sec : c->global, &conf_opt_user);
	const struct conf_setting *gs = conf_resolve_chain(sec ? sec : c->global, &conf_opt_group);
	const char *spool = conf_global(c, &conf_opt_spoolbase)->s;
	struct passwd *pw;
	gid_t gid;

	if (geteuid() != 0) {
		if (us != NULL)
			diag_info("not started as root: User \"%s\" ignored", us->s);
		return;
	}
	if (us == NULL) {
		diag_warn("running as root: set User (and Group) so that impetusd drops its privileges");
		return;
	}
	if ((pw = getpwnam(us->s)) == NULL)
		diag_fatal("User \"%s\" does not exist", us->s);
	gid = pw->pw_gid;
	if (gs != NULL) {
		struct group *gr = getgrnam(gs->s);
		if (gr == NULL)
			diag_fatal("Group \"%s\" does not exist", gs->s);
		gid = gr->gr_gid;
	}
	/* What the daemon must keep writing after the switch. */
	char *lock = xasprintf("%s/lock", spool);
	if (chown(spool, pw->pw_uid, gid) < 0 || chown(lock, pw->pw_uid, gid) < 0)
		diag_fatal("cannot give spool %s to user %s: %m", spool, us->s);
	free(lock);
	if (d->paniclog != NULL && chown(d->paniclog, pw->pw_uid, gid) < 0)
		diag_fatal("cannot give paniclog %s to user %s: %m", d->paniclog, us->s);
	for (size_t i = 0; i < 2; i++)
		if (d->created_dirs[i] != NULL && chown(d->created_dirs[i], pw->pw_uid, gid) < 0)
			diag_fatal("cannot give directory %s to user %s: %m", d->created_dirs[i], us->s);
	char err[256];
	if (listener_set_chown(d->listeners, pw->pw_uid, gid, err, sizeof(err)) < 0)
		diag_fatal("cannot give the submission socket to user %s: %s", us->s, err);
	if (control_chown(pw->pw_uid, gid, err, sizeof(err)) < 0)
		diag_fatal("cannot give the console socket to user %s: %s", us->s, err);
	if (setgroups(1, &gid) < 0 || setgid(gid) < 0 || setuid(pw->pw_uid) < 0)
		diag_fatal("cannot switch to user %s: %m", us->s);
	if (setuid(0) == 0)
		diag_fatal("privileges were not dropped: setuid(0) still works");
	diag_info("running as user %s (uid %ld, gid %ld)", us->s, (long)pw->pw_uid, (long)gid);
}

static void
on_stop(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;

	diag_info("received %s: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	loop_main_break(d->main_loop);
}

/* The errors of errs as one paniclog line (joined with ';'); the caller frees. */
static char *
errors_join(struct conf_errors *errs)
{
	char *text = strbuf_steal(&errs->text);
	size_t len = strlen(text);

	while (len > 0 && text[len - 1] == '\n')
		text[--len] = '\0';
	for (char *p = text; *p; p++)
		if (*p == '\n')
			*p = ';';
	return text;
}

/* One paniclog line per module instance of g. */
static void
log_modules(const struct module_generation *g)
{
	struct strbuf lines = STRBUF_INIT;
	char *line, *next;

	module_generation_describe(g, &lines);
	for (line = lines.data; line != NULL && *line; line = next) {
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		diag_info("%s", line);
	}
	strbuf_free(&lines);
}

/*
 * daemon_install: install fresh (NULL: load the configuration file again)
 * as a reload does: restart-only changes refused, the new module generation
 * started, log writers configured, then the configuration installed, the
 * hooks committed and the queues told. 0, or -1 with the reasons in errs
 * (the running generation and modules stay). Takes fresh over.
 */
static int
daemon_install(struct daemon *d, struct conf *fresh, struct conf_errors *errs)
{
	struct module_generation *g = NULL;
	struct conf *old = conf_current();

	if (fresh == NULL)
		fresh = daemon_load_conf(d->opts, errs);
	/* Restart-only changes first: modules are not reloaded for a refused file. */
	if (fresh != NULL && listener_set_matches(d->listeners, fresh, errs) < 0) {
		conf_unref(fresh);
		fresh = NULL;
	}
	if (fresh != NULL && conf_restart_changes(old, fresh, errs) > 0) {
		conf_unref(fresh);
		fresh = NULL;
	}
	if (fresh != NULL && (g = module_generation_start(fresh, d->modules, errs)) == NULL) {
		conf_unref(fresh);
		fresh = NULL;
	}
	if (fresh != NULL) {
		char err[512];
		if (log_writers_configure(fresh, err, sizeof(err)) < 0) {
			conf_error(errs, NULL, "%s", err);
			module_generation_abort(g);
			log_writers_collect();
			conf_unref(fresh);
			fresh = NULL;
		}
	}
	if (fresh != NULL && conf_try_install(fresh, errs) < 0) {
		module_generation_abort(g);
		log_writers_collect();
		fresh = NULL;
	}
	conf_unref(old);
	if (fresh == NULL)
		return -1;
	module_generation_commit(g);
	log_writers_collect();
	module_generation_finish(d->modules);
	d->modules = g;
	open_paniclog(d, fresh);
	metrics_set_label_cap((int)conf_global(fresh, &conf_opt_metrics_domain_labels)->i);
	queue_reload();
	return 0;
}

static void
on_reload(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;
	struct conf_errors errs = { STRBUF_INIT, 0 };

	daemon_reload(d, &errs);
	conf_errors_free(&errs);
}

/* The SIGHUP path, logged; also "config reload". 0, or -1 with errs. */
static int
daemon_reload(struct daemon *d, struct conf_errors *errs)
{
	const char *name = d->opts->conf_path ? d->opts->conf_path : "<default>";
	struct conf *c;

	if (daemon_install(d, NULL, errs) < 0) {
		struct conf_errors copy = { STRBUF_INIT, 0 };
		char *text;
		strbuf_puts(&copy.text, strbuf_cstr(&errs->text));
		text = errors_join(&copy);
		c = conf_current();
		diag_warn("reload refused, keeping generation %llu: %s",
		          (unsigned long long)c->generation, text);
		conf_unref(c);
		free(text);
		conf_errors_free(&copy);
		return -1;
	}
	c = conf_current();
	diag_info("configuration reloaded from %s (generation %llu)", name,
	          (unsigned long long)c->generation);
	conf_unref(c);
	log_modules(d->modules);
	return 0;
}

/* ------------------------------------------------------------ console */

static int
ctl_reload(void *arg, struct strbuf *out)
{
	struct conf_errors errs = { STRBUF_INIT, 0 };
	int rc = daemon_reload(arg, &errs);

	if (rc < 0) {
		char *text = errors_join(&errs);
		strbuf_puts(out, text);
		free(text);
	}
	conf_errors_free(&errs);
	return rc;
}

static int
ctl_install(void *arg, struct conf *fresh, struct strbuf *out)
{
	struct daemon *d = arg;
	struct conf_errors errs = { STRBUF_INIT, 0 };
	struct conf *c;

	if (daemon_install(d, fresh, &errs) < 0) {
		char *text = errors_join(&errs);
		diag_warn("console: configuration change refused: %s", text);
		strbuf_puts(out, text);
		free(text);
		conf_errors_free(&errs);
		return -1;
	}
	conf_errors_free(&errs);
	c = conf_current();
	diag_info("configuration changed from the console (generation %llu)",
	          (unsigned long long)c->generation);
	conf_unref(c);
	log_modules(d->modules);
	return 0;
}

static void
ctl_reopen(void *arg)
{
	on_reopen(SIGUSR1, 0, arg);
}

static void
ctl_shutdown(void *arg)
{
	struct daemon *d = arg;

	diag_info("console: shutdown requested: stopping");
	loop_main_break(d->main_loop);
}

static const struct module_generation *
ctl_modules(void *arg)
{
	struct daemon *d = arg;

	return d->modules;
}

static void
on_spool_batch(const struct spool_batch_info *info, void *arg)
{
	struct daemon *d = arg;

	d->spool_batches++;
	d->spool_rcpts += info->nrcpt;
	queue_restore(info);
}

static void
on_spool_scanned(const struct spool_scan_result *res, void *arg)
{
	struct daemon *d = arg;

	if (res->err != 0)
		diag_warn("spool: the scan could not read every folder: %s", strerror(res->err));
	diag_info("spool: %llu recipient-messages in %llu batches read back; %llu files "
	          "quarantined, %llu temporary files removed, %llu torn tails cut",
	          (unsigned long long)d->spool_rcpts, (unsigned long long)d->spool_batches,
	          (unsigned long long)res->quarantined, (unsigned long long)res->temp_removed,
	          (unsigned long long)res->repaired);
}

static void
on_reclaim(struct timer *t, void *arg)
{
	module_reclaim();
	log_writers_collect();
}

static void
on_reopen(evutil_socket_t sig, short what, void *arg)
{
	if (diag_reopen() < 0)
		diag_warn("cannot reopen the paniclog: %m");
	log_writers_reopen();
	diag_info("logs reopened");
}

int
daemon_run(const struct daemon_options *opts, struct conf *conf)
{
	struct daemon d;
	char err[512];
	const struct conf_scope *pool;
	int nloops, nio;

	memset(&d, 0, sizeof(d));
	d.opts = opts;
	d.lock_fd = -1;
	daemon_self = &d;
	diag_set_exit_hook(daemon_exit_hook);
	conf_install(conf);

	if (open_paniclog(&d, conf) < 0)
		diag_fatal("cannot start without the configured paniclog");
	const char *spool = conf_global(conf, &conf_opt_spoolbase)->s;
	if ((d.lock_fd = spool_lock_acquire(spool, err, sizeof(err))) < 0)
		diag_fatal("%s", err);
	d.pidfile = xstrdup(conf_global(conf, &conf_opt_pidfile)->s);
	if (make_parent_dir(&d, d.pidfile, 1) < 0 || pidfile_write(d.pidfile, err, sizeof(err)) < 0) {
		free(d.pidfile);
		d.pidfile = NULL;
		diag_fatal("%s", err);
	}
	/* Listening sockets, one per loop and address, while we may still be root. */
	nloops = (int)conf_global(conf, &conf_opt_event_loops)->i;
	if (nloops <= 0)
		nloops = (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (nloops <= 0)
		nloops = 1;
	if ((d.listeners = listener_set_bind(conf, nloops, err, sizeof(err))) == NULL)
		diag_fatal("cannot listen: %s", err);
	if (control_bind(conf, err, sizeof(err)) < 0)
		diag_fatal("cannot listen for the console: %s", err);
	/* Sockets are bound above this line; from here on, no root. */
	drop_privileges(conf, &d);

	/* Modules start as the daemon's user, before any thread can call a hook. */
	struct conf_errors errs = { STRBUF_INIT, 0 };
	if ((d.modules = module_generation_start(conf, NULL, &errs)) == NULL) {
		char *text = errors_join(&errs);
		diag_fatal("cannot start: %s", text);
	}
	conf_errors_free(&errs);
	/* The log writers register in the same transaction as the modules. */
	if (log_writers_configure(conf, err, sizeof(err)) < 0) {
		module_generation_abort(d.modules);
		d.modules = NULL;
		log_writers_collect();
		diag_fatal("cannot start: %s", err);
	}
	module_generation_commit(d.modules);
	log_writers_collect();

	signal(SIGPIPE, SIG_IGN);
	d.main_loop = loop_main_new();
	struct event_base *base = loop_base(d.main_loop);
	d.ev_term = evsignal_new(base, SIGTERM, on_stop, &d);
	d.ev_int = evsignal_new(base, SIGINT, on_stop, &d);
	d.ev_hup = evsignal_new(base, SIGHUP, on_reload, &d);
	d.ev_usr1 = evsignal_new(base, SIGUSR1, on_reopen, &d);
	if (!d.ev_term || !d.ev_int || !d.ev_hup || !d.ev_usr1 ||
	    evsignal_add(d.ev_term, NULL) < 0 || evsignal_add(d.ev_int, NULL) < 0 ||
	    evsignal_add(d.ev_hup, NULL) < 0 || evsignal_add(d.ev_usr1, NULL) < 0)
		diag_fatal("cannot install signal handlers");
	d.reclaim_timer = timer_new(d.main_loop, on_reclaim, &d);
	timer_start_every_ms(d.reclaim_timer, DAEMON_RECLAIM_MS);

	if ((d.loops = loop_group_start(nloops, err, sizeof(err))) == NULL)
		diag_fatal("cannot start event loops: %s", err);
	pool = NULL;
	for (size_t i = 0; (pool = conf_scope_child(conf->global, CONF_SCOPE_THREADPOOL, i)); i++)
		if (strcasecmp(pool->name, "IO") == 0)
			break;
	nio = (int)conf_resolve_chain(pool ? pool : conf->global, &conf_opt_concurrency)->i;
	if ((d.io_pool = tpool_start(nio, err, sizeof(err))) == NULL)
		diag_fatal("cannot start the IO thread pool: %s", err);
	if ((d.spool = spool_open(spool, d.io_pool, err, sizeof(err))) == NULL)
		diag_fatal("cannot open the spool: %s", err);
	{
		const struct conf_setting *srv = conf_global(conf, &conf_opt_dns_servers);
		struct dns_config dc = {
			.servers = srv != NULL ? (const char *const *)srv->list : NULL,
			.nservers = srv != NULL ? srv->nlist : 0,
			.timeout_ms = (unsigned)conf_global(conf, &conf_opt_dns_timeout)->i,
			.tries = 2,
			.ipv6 = (int)conf_global(conf, &conf_opt_use_ipv6)->i,
		};
		if (queue_start(d.loops, d.spool, d.io_pool, &dc, err, sizeof(err)) < 0)
			diag_fatal("cannot start the queues: %s", err);
	}
	/* Read the spool back while new mail is already accepted. */
	spool_scan(d.spool, d.main_loop, on_spool_batch, on_spool_scanned, &d);
	if (listener_set_start(d.listeners, d.loops, d.spool, err, sizeof(err)) < 0)
		diag_fatal("cannot accept: %s", err);
	{
		const struct control_ops ops = {
			.arg = &d, .reload = ctl_reload, .install = ctl_install, .reopen = ctl_reopen,
			.shutdown = ctl_shutdown, .modules = ctl_modules,
		};
		if (control_start(d.main_loop, &ops, err, sizeof(err)) < 0)
			diag_fatal("cannot start the console: %s", err);
	}
	/* HTTP_Listener: /metrics and /health, one server per Listen. */
	metrics_set_label_cap((int)conf_global(conf, &conf_opt_metrics_domain_labels)->i);
	{
		const struct conf_scope *hl, *ln;
		for (size_t i = 0; (hl = conf_scope_child(conf->global, conf_scope_http_listener, i)); i++)
			for (size_t j = 0; (ln = conf_scope_child(hl, CONF_SCOPE_LISTEN, j)); j++)
				if (metrics_start(d.main_loop, ln->name, err, sizeof(err)) < 0)
					diag_fatal("cannot serve metrics on %s: %s", ln->name, err);
	}

	diag_info("impetusd %s started: pid %ld, configuration %s (generation %llu), "
	          "%d event loops, %d IO threads, spool %s",
	          IMPETUS_VERSION, (long)getpid(), conf->source,
	          (unsigned long long)conf->generation, loop_group_count(d.loops), nio, spool);
	log_modules(d.modules);

	loop_main_run(d.main_loop);

	/* The console first: no verb may reach the queues while they stop. */
	control_stop();
	metrics_stop();
	/* Stop accepting and end sessions (each loop does its own, and we wait
	 * for it) before the pool stops: no commit can be submitted after. */
	listener_set_stop(d.listeners);
	queue_stop();
	spool_stop(d.spool);
	tpool_stop(d.io_pool);
	loop_group_stop(d.loops);
	queue_free();
	listener_set_free(d.listeners);
	/* No thread can call a hook any more: withdraw them and fini every instance. */
	module_shutdown(d.modules);
	d.modules = NULL;
	log_writers_shutdown();
	imp_hook_reclaim();
	timer_free(d.reclaim_timer);
	event_free(d.ev_term);
	event_free(d.ev_int);
	event_free(d.ev_hup);
	event_free(d.ev_usr1);
	loop_main_free(d.main_loop);
	/* After the main loop's last posted calls (a scan's chunk) have run. */
	struct spool_stats st;
	spool_stats(d.spool, &st);
	diag_info("spool: %llu batches (%llu recipient-messages, %llu bytes) stored with %llu syncs; "
	          "%llu state records, %llu files removed, %llu failures",
	          (unsigned long long)st.batches, (unsigned long long)st.recipients,
	          (unsigned long long)st.bytes, (unsigned long long)st.syncs,
	          (unsigned long long)st.updates, (unsigned long long)st.removed,
	          (unsigned long long)st.failures);
	spool_close(d.spool);
	pidfile_remove(d.pidfile);
	free(d.pidfile);
	d.pidfile = NULL;
	close(d.lock_fd);
	diag_info("impetusd stopped");
	diag_set_exit_hook(NULL);
	daemon_self = NULL;
	conf_install(NULL);
	diag_close();
	free(d.paniclog);
	free(d.created_dirs[0]);
	free(d.created_dirs[1]);
	return 0;
}

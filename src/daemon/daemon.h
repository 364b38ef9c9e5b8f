/*
 * daemon.h - the life of the impetusd process.
 *
 * daemon_run takes over a loaded configuration and runs until SIGTERM or
 * SIGINT: it opens the paniclog, locks the spool, writes the pidfile, drops
 * privileges when started as root, starts the event loops and the I/O
 * thread pool, and serves signals on the main thread (SIGHUP reload,
 * SIGUSR1 reopen logs). It returns the process exit status.
 */
#ifndef IMPETUS_DAEMON_DAEMON_H
#define IMPETUS_DAEMON_DAEMON_H

struct conf;

struct daemon_options {
	const char *conf_path;      /* file to (re)load; NULL = embedded default */
};

/* daemon_run: conf is the first generation (ownership passes to the daemon). */
int daemon_run(const struct daemon_options *opts, struct conf *conf);

/* daemon_load_conf: load opts' configuration; on errors print them to
 * stderr (or return them in errs) and return NULL. */
struct conf *daemon_load_conf(const struct daemon_options *opts, void *errs);

#endif

/*
 * log.h - the log writers: Momentum's ec_logger (mainlog, rejectlog,
 * jsonlog) and bounce_logger (bouncelog), a core module on the logging
 * hooks.
 *
 * Each ec_logger and bounce_logger stanza of a configuration is a set of
 * files. For every configuration generation the daemon installs (at start
 * and on reload), inside the hook registration transaction of that
 * generation (module_generation_start opens it, module/module.h):
 *
 *     g = module_generation_start(fresh, running, errs);
 *     if (g == NULL || log_writers_configure(fresh, err, sizeof(err)) < 0)
 *             module_generation_abort(g);     (refuse fresh: err says why)
 *     else
 *             module_generation_commit(g);    (the new files get the records)
 *     log_writers_collect();                  (close files no longer configured)
 *
 * and log_writers_collect() again wherever module_reclaim() is called
 * periodically: a replaced generation is freed, and its files closed, only
 * when no hook call can still be running its providers. Every transaction
 * must call log_writers_configure: one that does not drops the writers.
 *
 * SIGUSR1 / "reopen logs": log_writers_reopen(). At exit, after the threads
 * that log have stopped: log_writers_shutdown().
 *
 * A file whose path stays the same across generations stays open (its
 * buffer and descriptor carry over); records never block the calling
 * thread (log/logfile.h). The paniclog is not here: lib/diag.h owns it.
 * All functions: main thread only.
 */
#ifndef IMPETUS_LOG_LOG_H
#define IMPETUS_LOG_LOG_H

#include <stddef.h>

struct conf;

/* log_writers_configure: open (or keep) the files c configures and register
 * the providers for c inside the open hook transaction; once per
 * transaction. -1 with err filled (nothing registered, no file left open
 * for it) when a file cannot be opened or no transaction is open. */
int log_writers_configure(const struct conf *c, char *err, size_t errlen);
/* log_writers_collect: free the state of generations no hook call can
 * reach any more and close the files only they used. */
void log_writers_collect(void);
/* log_writers_reopen: reopen every open file (rotation); failures are
 * reported with diag_warn and leave the old file in use. */
void log_writers_reopen(void);
/* log_writers_flush: wait until everything logged so far was written. */
void log_writers_flush(void);
/* log_writers_shutdown: unregister the providers, flush and close every
 * file, free everything. log_writers_configure may be called again after. */
void log_writers_shutdown(void);

#endif

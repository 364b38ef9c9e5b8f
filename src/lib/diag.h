/*
 * diag.h - the diagnostics ladder.
 *
 * Three rungs with fixed meanings, all written to the paniclog (Momentum's
 * "time: text" layout) and to standard error while it is a terminal or no
 * paniclog is open:
 *   diag_warn   something recoverable went wrong; we carry on.
 *   diag_fatal  the environment is broken (bad configuration, no spool, no
 *               memory): say so clearly and exit(1).
 *   IMP_ASSERT  our own bug: log the expression and location, then abort().
 * diag_info records notable but normal events (start, reload, stop).
 * Bad input from the network is never an assert: it gets a reply and a log.
 *
 * Thread-safe: each record is formatted into one buffer and written with a
 * single write(2) to an O_APPEND descriptor.
 */
#ifndef IMPETUS_LIB_DIAG_H
#define IMPETUS_LIB_DIAG_H

#include <stddef.h>

/* diag_open_paniclog: (re)open the paniclog at path (O_APPEND, 0640).
 * Returns 0, or -1 with errno set; the previous log stays open on failure. */
int diag_open_paniclog(const char *path);
/* diag_reopen: reopen the current paniclog path (log rotation). */
int diag_reopen(void);
/* diag_close: close the paniclog; later records go to standard error only. */
void diag_close(void);
/* diag_set_stderr: also copy records to standard error (1) or not (0). */
void diag_set_stderr(int on);
/* diag_set_program: the prefix used on standard error ("impetusd"). */
void diag_set_program(const char *name);

void diag_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void diag_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void diag_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void diag_fatal_oom(size_t size) __attribute__((noreturn));
void diag_assert_fail(const char *expr, const char *file, int line, const char *func)
	__attribute__((noreturn));

/* diag_set_exit_hook: called by diag_fatal before exit (cleanup of pidfile
 * and lock); must be async-signal careless but re-entrancy safe. */
void diag_set_exit_hook(void (*hook)(void));

#define IMP_ASSERT(expr) \
	((expr) ? (void)0 : diag_assert_fail(#expr, __FILE__, __LINE__, __func__))

#endif

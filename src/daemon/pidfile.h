/*
 * pidfile.h - the spool lock and the pidfile.
 *
 * One spool, one instance: spool_lock_acquire takes an exclusive fcntl lock
 * on <spool>/lock (released by the kernel when the process dies, so a crash
 * never leaves a stale lock) and records our pid in it. The pidfile is for
 * init systems and operators; it is written after the lock is held.
 */
#ifndef IMPETUS_DAEMON_PIDFILE_H
#define IMPETUS_DAEMON_PIDFILE_H

#include <stddef.h>
#include <sys/types.h>

/* mkdir_p: create dir and its parents with mode; 0 or -1 with errno. */
int mkdir_p(const char *dir, mode_t mode);

/* spool_lock_acquire: create spool if needed and lock it. Returns the lock
 * descriptor (keep it open), or -1 with a message in err ("in use by pid N"
 * when another instance holds it). */
int spool_lock_acquire(const char *spool, char *err, size_t errlen);

/* pidfile_write: write our pid to path (atomically, creating parents).
 * Returns 0 or -1 with a message in err. */
int pidfile_write(const char *path, char *err, size_t errlen);
/* pidfile_remove: unlink path if it still names this process. */
void pidfile_remove(const char *path);

#endif

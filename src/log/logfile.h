/*
 * logfile.h - buffered log files that never block their writers.
 *
 * logfile_write appends a record to the file's in-memory buffer under a
 * short mutex and returns; one writer thread, shared by every open log
 * file, moves the buffers to disk when one passes LOGFILE_FLUSH_BYTES,
 * every LOGFILE_FLUSH_MS, on logfile_sync, on reopen and at close. When
 * the disk cannot keep up and a buffer holds LOGFILE_CAP_BYTES, further
 * records are dropped and counted (the writer thread reports the count
 * with diag_warn) instead of blocking the caller or growing without bound.
 *
 * A record is written whole or not at all: concurrent writers never
 * interleave inside one record. A record that does not end in '\n' gets one.
 *
 * Threads: logfile_write and logfile_dropped on any thread; logfile_open,
 * logfile_reopen, logfile_set_heartbeat, logfile_sync and logfile_close on
 * any thread but never concurrently with logfile_close of the same file
 * (in the daemon: the main thread).
 */
#ifndef IMPETUS_LOG_LOGFILE_H
#define IMPETUS_LOG_LOGFILE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define LOGFILE_FLUSH_BYTES (64u * 1024)        /* buffer size that wakes the writer */
#define LOGFILE_FLUSH_MS 100                    /* longest stay of a record in memory */
#define LOGFILE_CAP_BYTES (8u * 1024 * 1024)    /* buffered bytes beyond which records drop */
#define LOGFILE_MODE 0640                       /* permissions of a created file */

struct logfile;

/* Formats a heartbeat record for time t into buf (len bytes, NUL included);
 * returns its length (snprintf-style). Called on the writer thread. */
typedef size_t logfile_heartbeat_fn(char *buf, size_t len, time_t t);

/* logfile_open: open path for appending (created LOGFILE_MODE); starts the
 * writer thread with the first file. NULL with a reason in err on failure.
 * The caller owns the result and releases it with logfile_close. */
struct logfile *logfile_open(const char *path, char *err, size_t errlen);
/* logfile_write: queue one record of len bytes (copied). Never blocks on
 * the disk; drops the record when the buffer is full. */
void logfile_write(struct logfile *f, const char *line, size_t len);
/* logfile_reopen: open the path anew (rotation). Records queued before the
 * call go to the old file, later ones to the new. 0, or -1 with errno set:
 * the old file then stays in use. */
int logfile_reopen(struct logfile *f);
/* logfile_set_heartbeat: write fn's record every interval_s seconds (0 or a
 * NULL fn: none), the first one interval_s from now. */
void logfile_set_heartbeat(struct logfile *f, unsigned interval_s, logfile_heartbeat_fn *fn);
/* logfile_sync: wait until every record queued before the call was written
 * (or failed to be). For tests, the console and shutdown. */
void logfile_sync(struct logfile *f);
/* logfile_dropped: records dropped so far because the buffer was full. */
uint64_t logfile_dropped(struct logfile *f);
/* logfile_path: the path given to logfile_open. */
const char *logfile_path(const struct logfile *f);
/* logfile_close: flush, close and free f; stops the writer thread with the
 * last file. f must not be used by any thread afterwards. */
void logfile_close(struct logfile *f);

#endif

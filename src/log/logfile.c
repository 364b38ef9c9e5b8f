/*
 * logfile.c - buffered, non-blocking log files and their writer thread.
 *
 * Public functions (logfile.h):
 *   logfile_open           open a file for appending, start the writer with the first
 *   logfile_write          queue one record (any thread; never waits for the disk)
 *   logfile_reopen         open the path anew for rotation
 *   logfile_set_heartbeat  periodic marker records written by the writer thread
 *   logfile_sync           wait until what was queued is on its way to the disk
 *   logfile_dropped        records dropped at the buffer cap
 *   logfile_path           the file's path
 *   logfile_close          final flush, close, free; the last one joins the writer
 *
 * Each file has two buffers: callers append to the active one under the
 * file's mutex (held for a memcpy), and the writer thread swaps it with its
 * spare, then writes the full one with no lock held. Callers never touch the
 * descriptor; the writer thread owns it. Rotation opens the new file on the
 * caller's thread (so the error is the caller's) and hands the descriptor
 * over with a mark: bytes queued before the mark go to the old file.
 *
 * Ownership: logfile_open's caller owns the logfile and frees it with
 * logfile_close; the file keeps a copy of its path. Errors: open failures
 * are returned; write failures and drops happen on the writer thread and are
 * reported there with diag_warn (one line per burst, not per record).
 *
 * Locks: admin_lock serializes open and close (thread start and join);
 * writer_lock guards the list of files, the wake flags and each file's
 * written/closing/closed; a file's mu guards its active buffer. Order:
 * admin_lock, then writer_lock; mu is never held with writer_lock.
 */
#include "log/logfile.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "event/loop.h"
#include "lib/diag.h"
#include "lib/xalloc.h"

#define LOGFILE_SPARE_KEEP (4u * LOGFILE_FLUSH_BYTES)  /* larger spares are freed after use */
#define LOGFILE_HEARTBEAT_MAX 256                      /* bytes of a heartbeat record */

struct logfile {
	char *path;                     /* as given to logfile_open, owned */

	/* Writer thread only (and open/close, when the writer cannot see it). */
	int fd;                         /* the file being appended to */
	char *spare;                    /* the buffer not being filled, owned */
	size_t spare_cap;               /* bytes allocated in spare */
	int write_failing;              /* a write error was reported, no success since */

	/* Under mu. */
	pthread_mutex_t mu;
	char *buf;                      /* queued records, owned */
	size_t len;                     /* bytes queued in buf */
	size_t cap;                     /* bytes allocated in buf */
	uint64_t queued;                /* bytes ever queued */
	uint64_t drops;                 /* records dropped at the cap, ever */
	uint64_t drops_unreported;      /* records dropped since the last report */
	int kicked;                     /* the writer was woken for this buffer */
	int reopen_fd;                  /* a new descriptor for the writer, or -1 */
	size_t reopen_mark;             /* bytes of buf that belong to the old file */
	unsigned hb_interval_s;         /* seconds between heartbeats; 0 = none */
	logfile_heartbeat_fn *hb_fn;    /* formats the heartbeat record */
	uint64_t hb_next_ms;            /* monotonic milliseconds of the next one */

	/* Under writer_lock. */
	uint64_t written;               /* bytes the writer has taken and written */
	int closing;                    /* logfile_close waits for the final flush */
	int closed;                     /* the writer flushed and closed it */
	struct logfile *next;           /* writer_files list */
};

static int open_path(const char *path);
static uint64_t monotonic_ms(void);
static void writer_init(void);
static void writer_wake(void);
static void *writer_main(void *arg);
static uint64_t writer_service(struct logfile *f, int closing);
static void writer_heartbeat(struct logfile *f);
static void write_all(struct logfile *f, const char *p, size_t len);

static pthread_mutex_t admin_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t writer_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t writer_cond;      /* wakes the writer; CLOCK_MONOTONIC */
static pthread_cond_t writer_done;      /* a pass finished */
static pthread_once_t writer_once = PTHREAD_ONCE_INIT;
static struct logfile *writer_files;    /* every open file */
static int writer_wake_flag;            /* a pass is wanted now */
static int writer_stop;                 /* the last file closed: exit */
static int writer_running;              /* the thread exists (admin_lock) */
static pthread_t writer_tid;

static int
open_path(const char *path)
{
	int fd;

	do
		fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, LOGFILE_MODE);
	while (fd < 0 && errno == EINTR);
	return fd;
}

static uint64_t
monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void
writer_init(void)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&writer_cond, &attr);
	pthread_condattr_destroy(&attr);
	pthread_cond_init(&writer_done, NULL);
}

static void
writer_wake(void)
{
	pthread_mutex_lock(&writer_lock);
	writer_wake_flag = 1;
	pthread_cond_signal(&writer_cond);
	pthread_mutex_unlock(&writer_lock);
}

struct logfile *
logfile_open(const char *path, char *err, size_t errlen)
{
	struct logfile *f;
	int fd, rc;

	pthread_once(&writer_once, writer_init);
	if ((fd = open_path(path)) < 0) {
		snprintf(err, errlen, "cannot open %s: %m", path);
		return NULL;
	}
	f = xcalloc(1, sizeof(*f));
	f->path = xstrdup(path);
	f->fd = fd;
	f->reopen_fd = -1;
	pthread_mutex_init(&f->mu, NULL);

	pthread_mutex_lock(&admin_lock);
	if (!writer_running) {
		writer_stop = 0;
		if ((rc = loop_thread_spawn(&writer_tid, writer_main, NULL, "imp-logwriter")) != 0) {
			pthread_mutex_unlock(&admin_lock);
			snprintf(err, errlen, "cannot start the log writer thread: %s", strerror(rc));
			close(fd);
			pthread_mutex_destroy(&f->mu);
			free(f->path);
			free(f);
			return NULL;
		}
		writer_running = 1;
	}
	pthread_mutex_lock(&writer_lock);
	f->next = writer_files;
	writer_files = f;
	pthread_mutex_unlock(&writer_lock);
	pthread_mutex_unlock(&admin_lock);
	return f;
}

void
logfile_write(struct logfile *f, const char *line, size_t len)
{
	size_t need;
	int kick = 0;

	if (len == 0)
		return;
	need = len + (line[len - 1] != '\n');
	pthread_mutex_lock(&f->mu);
	if (need > LOGFILE_CAP_BYTES - f->len) {
		f->drops++;
		f->drops_unreported++;
		pthread_mutex_unlock(&f->mu);
		return;
	}
	if (f->len + need > f->cap) {
		size_t cap = f->cap ? f->cap : 4096;
		while (cap < f->len + need)
			cap *= 2;
		if (cap > LOGFILE_CAP_BYTES)
			cap = LOGFILE_CAP_BYTES;
		f->buf = xrealloc(f->buf, cap);
		f->cap = cap;
	}
	memcpy(f->buf + f->len, line, len);
	if (need > len)
		f->buf[f->len + len] = '\n';
	f->len += need;
	f->queued += need;
	if (f->len >= LOGFILE_FLUSH_BYTES && !f->kicked)
		kick = f->kicked = 1;
	pthread_mutex_unlock(&f->mu);
	if (kick)
		writer_wake();
}

int
logfile_reopen(struct logfile *f)
{
	int fd = open_path(f->path);

	if (fd < 0)
		return -1;
	pthread_mutex_lock(&f->mu);
	if (f->reopen_fd >= 0)
		close(f->reopen_fd);            /* never written: the newest wins, the mark stays */
	else
		f->reopen_mark = f->len;
	f->reopen_fd = fd;
	pthread_mutex_unlock(&f->mu);
	writer_wake();
	return 0;
}

void
logfile_set_heartbeat(struct logfile *f, unsigned interval_s, logfile_heartbeat_fn *fn)
{
	pthread_mutex_lock(&f->mu);
	f->hb_interval_s = fn ? interval_s : 0;
	f->hb_fn = fn;
	f->hb_next_ms = monotonic_ms() + (uint64_t)interval_s * 1000u;
	pthread_mutex_unlock(&f->mu);
}

void
logfile_sync(struct logfile *f)
{
	uint64_t target;

	pthread_mutex_lock(&f->mu);
	target = f->queued;
	pthread_mutex_unlock(&f->mu);
	pthread_mutex_lock(&writer_lock);
	writer_wake_flag = 1;
	pthread_cond_signal(&writer_cond);
	while (f->written < target)
		pthread_cond_wait(&writer_done, &writer_lock);
	pthread_mutex_unlock(&writer_lock);
}

uint64_t
logfile_dropped(struct logfile *f)
{
	uint64_t n;

	pthread_mutex_lock(&f->mu);
	n = f->drops;
	pthread_mutex_unlock(&f->mu);
	return n;
}

const char *
logfile_path(const struct logfile *f)
{
	return f->path;
}

void
logfile_close(struct logfile *f)
{
	int last;

	if (f == NULL)
		return;
	pthread_mutex_lock(&admin_lock);
	pthread_mutex_lock(&writer_lock);
	f->closing = 1;
	writer_wake_flag = 1;
	pthread_cond_signal(&writer_cond);
	while (!f->closed)
		pthread_cond_wait(&writer_done, &writer_lock);
	last = writer_files == NULL;
	if (last) {
		writer_stop = 1;
		pthread_cond_signal(&writer_cond);
	}
	pthread_mutex_unlock(&writer_lock);
	if (last) {
		pthread_join(writer_tid, NULL);
		writer_running = 0;
	}
	pthread_mutex_unlock(&admin_lock);

	/* The writer closed fd and let go of the file; nobody else may hold it. */
	if (f->reopen_fd >= 0)
		close(f->reopen_fd);
	pthread_mutex_destroy(&f->mu);
	free(f->buf);
	free(f->spare);
	free(f->path);
	free(f);
}

/*
 * The writer thread: a pass over every file when woken (a buffer passed
 * LOGFILE_FLUSH_BYTES, a sync, a reopen, a close) or LOGFILE_FLUSH_MS
 * after the previous wait began.
 */
static void *
writer_main(void *arg)
{
	struct logfile **files = NULL;      /* this pass's files */
	uint64_t *upto = NULL;              /* bytes each file had queued when taken */
	int *closing = NULL;                /* each file's closing flag at the snapshot */
	size_t nfiles, cap = 0;
	int stopping;

	pthread_mutex_lock(&writer_lock);
	for (;;) {
		if (!writer_wake_flag && !writer_stop) {
			struct timespec until;
			clock_gettime(CLOCK_MONOTONIC, &until);
			until.tv_nsec += LOGFILE_FLUSH_MS * 1000000L;
			if (until.tv_nsec >= 1000000000L) {
				until.tv_sec += until.tv_nsec / 1000000000L;
				until.tv_nsec %= 1000000000L;
			}
			pthread_cond_timedwait(&writer_cond, &writer_lock, &until);
		}
		writer_wake_flag = 0;
		stopping = writer_stop;
		nfiles = 0;
		for (struct logfile *f = writer_files; f != NULL; f = f->next) {
			if (nfiles == cap) {
				cap = cap ? 2 * cap : 16;
				files = xreallocarray(files, cap, sizeof(*files));
				upto = xreallocarray(upto, cap, sizeof(*upto));
				closing = xreallocarray(closing, cap, sizeof(*closing));
			}
			files[nfiles] = f;
			closing[nfiles] = f->closing;
			nfiles++;
		}
		pthread_mutex_unlock(&writer_lock);

		/* No lock held: a slow disk stalls only this thread. */
		for (size_t i = 0; i < nfiles; i++)
			upto[i] = writer_service(files[i], closing[i]);

		pthread_mutex_lock(&writer_lock);
		for (size_t i = 0; i < nfiles; i++) {
			files[i]->written = upto[i];
			if (closing[i]) {
				struct logfile **pp = &writer_files;
				while (*pp != files[i])
					pp = &(*pp)->next;
				*pp = files[i]->next;
				files[i]->closed = 1;
			}
		}
		pthread_cond_broadcast(&writer_done);
		if (stopping && writer_files == NULL)
			break;
	}
	pthread_mutex_unlock(&writer_lock);
	free(files);
	free(upto);
	free(closing);
	return NULL;
}

/* Write out what f has queued; returns the byte count queued up to then. */
static uint64_t
writer_service(struct logfile *f, int closing)
{
	char *out;
	size_t out_len, out_cap, mark = 0;
	uint64_t upto, drops;
	int newfd;

	if (!closing)
		writer_heartbeat(f);
	pthread_mutex_lock(&f->mu);
	out = f->buf;
	out_len = f->len;
	out_cap = f->cap;
	f->buf = f->spare;
	f->cap = f->spare_cap;
	f->len = 0;
	f->kicked = 0;
	newfd = f->reopen_fd;
	if (newfd >= 0)
		mark = f->reopen_mark;
	f->reopen_fd = -1;
	upto = f->queued;
	drops = f->drops_unreported;
	f->drops_unreported = 0;
	pthread_mutex_unlock(&f->mu);

	if (newfd >= 0) {
		write_all(f, out, mark);
		close(f->fd);
		f->fd = newfd;
		if (out_len > mark)
			write_all(f, out + mark, out_len - mark);
	} else {
		write_all(f, out, out_len);
	}
	if (closing) {
		close(f->fd);
		f->fd = -1;
	}
	if (out_cap > LOGFILE_SPARE_KEEP) {
		free(out);
		out = NULL;
		out_cap = 0;
	}
	f->spare = out;
	f->spare_cap = out_cap;
	if (drops > 0)
		diag_warn("log %s: %llu records dropped: the disk is not keeping up "
		          "(more than %u bytes waiting)", f->path, (unsigned long long)drops,
		          LOGFILE_CAP_BYTES);
	return upto;
}

static void
writer_heartbeat(struct logfile *f)
{
	logfile_heartbeat_fn *fn = NULL;
	uint64_t now = monotonic_ms();
	char line[LOGFILE_HEARTBEAT_MAX];
	size_t len;

	pthread_mutex_lock(&f->mu);
	if (f->hb_interval_s > 0 && f->hb_fn != NULL && now >= f->hb_next_ms) {
		fn = f->hb_fn;
		f->hb_next_ms += (uint64_t)f->hb_interval_s * 1000u;
		if (f->hb_next_ms <= now)       /* we were late: no burst to catch up */
			f->hb_next_ms = now + (uint64_t)f->hb_interval_s * 1000u;
	}
	pthread_mutex_unlock(&f->mu);
	if (fn == NULL)
		return;
	len = fn(line, sizeof(line), time(NULL));
	if (len < sizeof(line))
		logfile_write(f, line, len);
}

static void
write_all(struct logfile *f, const char *p, size_t len)
{
	if (len == 0)
		return;
	while (len > 0) {
		ssize_t n = write(f->fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			if (!f->write_failing)
				diag_warn("log %s: write failed: %m; records are being lost", f->path);
			f->write_failing = 1;
			return;
		}
		p += n;
		len -= (size_t)n;
	}
	if (f->write_failing) {
		diag_info("log %s: writing again", f->path);
		f->write_failing = 0;
	}
}

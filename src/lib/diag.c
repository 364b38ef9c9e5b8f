/*
 * diag.c - the diagnostics ladder: info, warn, fatal, assert.
 *
 * diag_open_paniclog / diag_reopen / diag_close manage the paniclog file;
 * diag_info, diag_warn, diag_fatal, diag_fatal_oom, diag_assert_fail write one
 * record each. A record is "unixtime: [level] text\n", written with one
 * write(2) so concurrent threads never interleave inside a line. diag_fatal
 * exits(1) after running the exit hook; diag_assert_fail aborts for a core.
 * This file owns the paniclog descriptor and its path string.
 */
#include "lib/diag.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#define DIAG_LINE_MAX 2048

static void diag_write(const char *level, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
static void diag_record(const char *level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static pthread_mutex_t diag_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int diag_fd = -1;          /* paniclog descriptor, -1 when closed */
static char *diag_path;                  /* paniclog path, owned */
static atomic_int diag_to_stderr = 1;    /* copy records to stderr */
static const char *diag_program = "impetus";
static void (*diag_exit_hook)(void);

int
diag_open_paniclog(const char *path)
{
	int fd, old;
	char *copy;

	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return -1;
	copy = strdup(path);
	if (copy == NULL) {
		close(fd);
		errno = ENOMEM;
		return -1;
	}
	pthread_mutex_lock(&diag_lock);
	old = atomic_exchange(&diag_fd, fd);
	free(diag_path);
	diag_path = copy;
	pthread_mutex_unlock(&diag_lock);
	if (old >= 0)
		close(old);
	return 0;
}

int
diag_reopen(void)
{
	char *path;
	int rc;

	pthread_mutex_lock(&diag_lock);
	path = diag_path ? strdup(diag_path) : NULL;
	pthread_mutex_unlock(&diag_lock);
	if (path == NULL)
		return 0;
	rc = diag_open_paniclog(path);
	free(path);
	return rc;
}

void
diag_close(void)
{
	int old;

	pthread_mutex_lock(&diag_lock);
	old = atomic_exchange(&diag_fd, -1);
	free(diag_path);
	diag_path = NULL;
	pthread_mutex_unlock(&diag_lock);
	if (old >= 0)
		close(old);
}

void
diag_set_stderr(int on)
{
	atomic_store(&diag_to_stderr, on);
}

void
diag_set_program(const char *name)
{
	diag_program = name;
}

void
diag_set_exit_hook(void (*hook)(void))
{
	diag_exit_hook = hook;
}

static void
diag_write(const char *level, const char *fmt, va_list ap)
{
	char line[DIAG_LINE_MAX];
	struct timeval tv;
	size_t ts_len, off, len;
	int n, fd, saved = errno;

	gettimeofday(&tv, NULL);
	n = snprintf(line, sizeof(line), "%lld: ", (long long)tv.tv_sec);
	ts_len = n > 0 ? (size_t)n : 0;
	n = snprintf(line + ts_len, sizeof(line) - ts_len, "[%s] ", level);
	off = ts_len + (n > 0 ? (size_t)n : 0);
	errno = saved;                  /* allow %m in fmt */
	n = vsnprintf(line + off, sizeof(line) - off, fmt, ap);
	if (n < 0)
		n = 0;
	len = off + (size_t)n;
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	/* One record, one line: fold embedded newlines. */
	for (size_t i = off; i < len; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	line[len++] = '\n';

	fd = atomic_load(&diag_fd);
	if (fd >= 0 && write(fd, line, len) < 0)
		fd = -1;        /* nowhere better to report it: use stderr */
	if (fd < 0 || atomic_load(&diag_to_stderr)) {
		char out[DIAG_LINE_MAX + 64];
		int pn = snprintf(out, sizeof(out), "%s: %.*s", diag_program,
		                  (int)(len - ts_len), line + ts_len);
		if (pn > 0 && write(STDERR_FILENO, out, (size_t)pn) < 0)
			(void)0;
	}
	errno = saved;
}

void
diag_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	diag_write("info", fmt, ap);
	va_end(ap);
}

void
diag_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	diag_write("warn", fmt, ap);
	va_end(ap);
}

void
diag_fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	diag_write("fatal", fmt, ap);
	va_end(ap);
	if (diag_exit_hook != NULL) {
		void (*hook)(void) = diag_exit_hook;
		diag_exit_hook = NULL;
		hook();
	}
	exit(1);
}

static void
diag_record(const char *level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	diag_write(level, fmt, ap);
	va_end(ap);
}

void
diag_fatal_oom(size_t size)
{
	char msg[96];

	snprintf(msg, sizeof(msg), "out of memory allocating %zu bytes", size);
	diag_record("fatal", "%s", msg);
	abort();
}

void
diag_assert_fail(const char *expr, const char *file, int line, const char *func)
{
	diag_record("assert", "assertion failed: %s (%s:%d in %s)", expr, file, line, func);
	abort();
}

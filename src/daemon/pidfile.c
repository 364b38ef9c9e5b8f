/*
 * pidfile.c - the spool lock and the pidfile.
 *
 * mkdir_p, spool_lock_acquire, pidfile_write, pidfile_remove (pidfile.h).
 * Errors are reported as text in the caller's buffer; nothing here logs.
 */
#include "daemon/pidfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int
mkdir_p(const char *dir, mode_t mode)
{
	char path[PATH_MAX];
	size_t len = strlen(dir);

	if (len == 0 || len >= sizeof(path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(path, dir, len + 1);
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, mode) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(path, mode) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

static int
mkdir_parent(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');

	if (slash == NULL || slash == path)
		return 0;
	if ((size_t)(slash - path) >= sizeof(dir)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(dir, path, (size_t)(slash - path));
	dir[slash - path] = '\0';
	return mkdir_p(dir, 0755);
}

int
spool_lock_acquire(const char *spool, char *err, size_t errlen)
{
	char path[PATH_MAX], buf[32];
	struct flock fl;
	int fd, n;

	if (mkdir_p(spool, 0750) < 0) {
		snprintf(err, errlen, "cannot create spool directory %s: %s", spool, strerror(errno));
		return -1;
	}
	n = snprintf(path, sizeof(path), "%s/lock", spool);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		snprintf(err, errlen, "spool path %s is too long", spool);
		return -1;
	}
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open spool lock %s: %s", path, strerror(errno));
		return -1;
	}
	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	if (fcntl(fd, F_SETLK, &fl) < 0) {
		int saved = errno;
		memset(&fl, 0, sizeof(fl));
		fl.l_type = F_WRLCK;
		fl.l_whence = SEEK_SET;
		if ((saved == EACCES || saved == EAGAIN) && fcntl(fd, F_GETLK, &fl) == 0 &&
		    fl.l_type != F_UNLCK)
			snprintf(err, errlen, "spool %s is in use by another impetusd (pid %ld)",
			         spool, (long)fl.l_pid);
		else
			snprintf(err, errlen, "cannot lock spool %s: %s", spool, strerror(saved));
		close(fd);
		return -1;
	}
	n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
		snprintf(err, errlen, "cannot write spool lock %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int
pidfile_write(const char *path, char *err, size_t errlen)
{
	char tmp[PATH_MAX], buf[32];
	int fd, n;

	if (mkdir_parent(path) < 0) {
		snprintf(err, errlen, "cannot create the directory of pidfile %s: %s", path,
		         strerror(errno));
		return -1;
	}
	n = snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		snprintf(err, errlen, "pidfile path %s is too long", path);
		return -1;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		snprintf(err, errlen, "cannot write pidfile %s: %s", tmp, strerror(errno));
		return -1;
	}
	n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (write(fd, buf, (size_t)n) != n || close(fd) < 0 || rename(tmp, path) < 0) {
		snprintf(err, errlen, "cannot write pidfile %s: %s", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

void
pidfile_remove(const char *path)
{
	char buf[32];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	if (strtol(buf, NULL, 10) == (long)getpid())
		unlink(path);
}

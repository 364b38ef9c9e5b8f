/*
 * log_file_test.c - the buffered log file: records written whole and in
 * order, a newline added when missing, many threads writing at once (no
 * record lost, none interleaved), rotation by rename and reopen (before and
 * after a flush), the drop cap against a reader that does not read (a
 * FIFO), heartbeats, open errors, and several files on one writer thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log/logfile.h"
#include "test.h"

#define THREADS 8
#define LINES_PER_THREAD 20000

static char tmpdir[256];

static void
path_in(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", tmpdir, name);
}

/* The whole file as a NUL-terminated string the caller frees. */
static char *
slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	char *data;
	long n;

	*len = 0;
	if (fp == NULL)
		return calloc(1, 1);
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	data = malloc((size_t)n + 1);
	*len = fread(data, 1, (size_t)n, fp);
	data[*len] = '\0';
	fclose(fp);
	return data;
}

static void
test_write_and_newline(void)
{
	char path[512], err[256];
	struct logfile *f;
	size_t len;
	char *data;

	path_in(path, sizeof(path), "basic.log");
	f = logfile_open(path, err, sizeof(err));
	CHECK(f != NULL, "open: %s", err);
	if (f == NULL)
		return;
	CHECK_STR(logfile_path(f), path, "path");
	logfile_write(f, "one\n", 4);
	logfile_write(f, "two", 3);          /* newline added */
	logfile_write(f, "", 0);             /* nothing */
	logfile_sync(f);
	data = slurp(path, &len);
	CHECK_STR(data, "one\ntwo\n", "after sync");
	free(data);
	logfile_write(f, "three\n", 6);
	logfile_close(f);
	data = slurp(path, &len);
	CHECK_STR(data, "one\ntwo\nthree\n", "after close");
	free(data);
	CHECK(access(path, F_OK) == 0, "file stays");
}

static void
test_open_error(void)
{
	char err[256] = "";
	struct logfile *f = logfile_open("/nonexistent-dir/x/y.log", err, sizeof(err));

	CHECK(f == NULL, "open in a missing directory fails");
	CHECK(strstr(err, "/nonexistent-dir/x/y.log") != NULL, "err names the path: %s", err);
	CHECK(strstr(err, "No such file") != NULL, "err says why: %s", err);
}

struct writer_arg {
	struct logfile *f;
	int id;
};

static void *
writer_thread(void *p)
{
	struct writer_arg *a = p;
	char line[256];

	for (int i = 0; i < LINES_PER_THREAD; i++) {
		/* Lengths vary from 20 to ~150 bytes; the tail lets the reader check the record. */
		int pad = 1 + (i * 7 + a->id * 13) % 120;
		int n = snprintf(line, sizeof(line), "t%d n%d p%d ", a->id, i, pad);
		memset(line + n, 'a' + a->id, (size_t)pad);
		n += pad;
		n += snprintf(line + n, sizeof(line) - (size_t)n, " end%d\n", i);
		logfile_write(a->f, line, (size_t)n);
	}
	return NULL;
}

static void
test_concurrent_writers(void)
{
	char path[512], err[256];
	pthread_t tids[THREADS];
	struct writer_arg args[THREADS];
	int next[THREADS] = { 0 };
	struct logfile *f;
	size_t len, lines = 0, bad = 0;
	char *data, *line, *save = NULL;

	path_in(path, sizeof(path), "concurrent.log");
	f = logfile_open(path, err, sizeof(err));
	CHECK(f != NULL, "open: %s", err);
	if (f == NULL)
		return;
	for (int t = 0; t < THREADS; t++) {
		args[t].f = f;
		args[t].id = t;
		pthread_create(&tids[t], NULL, writer_thread, &args[t]);
	}
	for (int t = 0; t < THREADS; t++)
		pthread_join(tids[t], NULL);
	CHECK_INT(logfile_dropped(f), 0, "nothing dropped");
	logfile_close(f);

	data = slurp(path, &len);
	for (line = strtok_r(data, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		int t, n, pad, consumed = 0, end;
		lines++;
		if (sscanf(line, "t%d n%d p%d %n", &t, &n, &pad, &consumed) != 3 || t < 0 ||
		    t >= THREADS || consumed == 0) {
			bad++;
			continue;
		}
		const char *p = line + consumed;
		int ok = 1;
		for (int i = 0; i < pad; i++)
			if (p[i] != 'a' + t)
				ok = 0;
		if (!ok || sscanf(p + pad, " end%d", &end) != 1 || end != n ||
		    strlen(p + pad) != (size_t)snprintf(NULL, 0, " end%d", n)) {
			bad++;
			continue;
		}
		/* Each thread's records arrive in the order it wrote them. */
		if (n != next[t])
			bad++;
		next[t] = n + 1;
	}
	free(data);
	CHECK_INT(lines, THREADS * LINES_PER_THREAD, "records in the file");
	CHECK_INT(bad, 0, "records damaged, interleaved or out of order");
	for (int t = 0; t < THREADS; t++)
		CHECK_INT(next[t], LINES_PER_THREAD, "last record of a thread");
}

static void
test_reopen_after_rename(void)
{
	char path[512], rotated[512], err[256];
	struct logfile *f;
	size_t len;
	char *data;

	path_in(path, sizeof(path), "rotate.log");
	path_in(rotated, sizeof(rotated), "rotate.log.1");
	f = logfile_open(path, err, sizeof(err));
	CHECK(f != NULL, "open: %s", err);
	if (f == NULL)
		return;

	/* Flushed before the rename. */
	logfile_write(f, "old 1\n", 6);
	logfile_sync(f);
	CHECK(rename(path, rotated) == 0, "rename: %s", strerror(errno));
	/* Still queued at the rename: belongs to the old file too. */
	logfile_write(f, "old 2\n", 6);
	CHECK_INT(logfile_reopen(f), 0, "reopen");
	logfile_write(f, "new 1\n", 6);
	logfile_sync(f);
	data = slurp(rotated, &len);
	CHECK_STR(data, "old 1\nold 2\n", "rotated file");
	free(data);
	data = slurp(path, &len);
	CHECK_STR(data, "new 1\n", "new file");
	free(data);

	/* Two reopens before the writer runs: the newest file wins. */
	CHECK(rename(path, rotated) == 0, "rename: %s", strerror(errno));
	logfile_write(f, "new 2\n", 6);
	CHECK_INT(logfile_reopen(f), 0, "reopen 2");
	CHECK_INT(logfile_reopen(f), 0, "reopen 3");
	logfile_write(f, "newest\n", 7);
	logfile_close(f);
	data = slurp(rotated, &len);
	CHECK_STR(data, "new 1\nnew 2\n", "rotated again");
	free(data);
	data = slurp(path, &len);
	CHECK_STR(data, "newest\n", "newest file");
	free(data);
}

static void
test_reopen_failure(void)
{
	char dir[512], path[600], moved[512], err[256];
	struct logfile *f;
	size_t len;
	char *data;

	path_in(dir, sizeof(dir), "gone");
	mkdir(dir, 0700);
	snprintf(path, sizeof(path), "%s/x.log", dir);
	f = logfile_open(path, err, sizeof(err));
	CHECK(f != NULL, "open: %s", err);
	if (f == NULL)
		return;
	logfile_write(f, "a\n", 2);
	logfile_sync(f);
	/* The directory disappears: reopen fails, the old descriptor stays in use. */
	path_in(moved, sizeof(moved), "gone.moved");
	CHECK(rename(dir, moved) == 0, "rename dir: %s", strerror(errno));
	CHECK_INT(logfile_reopen(f), -1, "reopen fails");
	logfile_write(f, "b\n", 2);
	logfile_close(f);
	snprintf(path, sizeof(path), "%s/x.log", moved);
	data = slurp(path, &len);
	CHECK_STR(data, "a\nb\n", "old file kept");
	free(data);
}

struct fifo_reader {
	int fd;
	size_t lines;               /* complete records read */
	size_t bad;                 /* records not as written */
};

static void *
fifo_read_thread(void *p)
{
	struct fifo_reader *r = p;
	char buf[65536], rec[256];
	size_t have = 0;
	ssize_t n;

	while ((n = read(r->fd, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] != '\n') {
				if (have < sizeof(rec) - 1)
					rec[have++] = buf[i];
				continue;
			}
			rec[have] = '\0';
			int k, consumed = 0;
			if (sscanf(rec, "record %d %n", &k, &consumed) != 1 || have != 100 - 1)
				r->bad++;
			r->lines++;
			have = 0;
		}
	}
	if (have != 0)
		r->bad++;
	return NULL;
}

static void
test_drop_cap(void)
{
	char path[512], err[256], line[100];
	struct fifo_reader reader = { -1, 0, 0 };
	struct logfile *f;
	pthread_t tid;
	const size_t total = (LOGFILE_CAP_BYTES / sizeof(line)) * 2;
	uint64_t dropped;

	path_in(path, sizeof(path), "slow.fifo");
	CHECK(mkfifo(path, 0600) == 0, "mkfifo: %s", strerror(errno));
	/* A reader that exists but does not read yet: the disk that does not keep up. */
	reader.fd = open(path, O_RDONLY | O_NONBLOCK);
	CHECK(reader.fd >= 0, "open fifo: %s", strerror(errno));
	fcntl(reader.fd, F_SETFL, 0);
	f = logfile_open(path, err, sizeof(err));
	CHECK(f != NULL, "open: %s", err);
	if (f == NULL || reader.fd < 0)
		return;
	for (size_t i = 0; i < total; i++) {
		int n = snprintf(line, sizeof(line), "record %zu ", i);
		memset(line + n, 'x', sizeof(line) - (size_t)n - 1);
		line[sizeof(line) - 1] = '\n';
		logfile_write(f, line, sizeof(line));      /* never blocks */
	}
	dropped = logfile_dropped(f);
	CHECK(dropped > 0, "records dropped at the cap: %llu", (unsigned long long)dropped);
	CHECK(dropped < total, "records kept: %llu dropped of %zu", (unsigned long long)dropped,
	      total);
	/* Now read: everything accepted arrives, whole. */
	pthread_create(&tid, NULL, fifo_read_thread, &reader);
	logfile_close(f);
	pthread_join(tid, NULL);
	close(reader.fd);
	CHECK_INT(reader.bad, 0, "damaged records");
	CHECK_INT(reader.lines + dropped, total, "records read + dropped");
	/* At most the full buffer plus the one the writer is stuck writing. */
	CHECK(reader.lines * sizeof(line) <= 2 * (size_t)LOGFILE_CAP_BYTES,
	      "memory bounded: %zu records accepted", reader.lines);
	unlink(path);
}

static size_t
heartbeat_fmt(char *buf, size_t len, time_t t)
{
	return (size_t)snprintf(buf, len, "%lld@@@@M\n", (long long)t);
}

static void
test_heartbeat(void)
{
	char path[512], err[256];
	struct logfile *f;
	size_t len;
	char *data;
	long long t = 0;
	time_t before = time(NULL);

	path_in(path, sizeof(path), "heartbeat.log");
	f = logfile_open(path, err, sizeof(err));
	CHECK(f != NULL, "open: %s", err);
	if (f == NULL)
		return;
	logfile_set_heartbeat(f, 1, heartbeat_fmt);
	usleep(1300 * 1000);
	logfile_sync(f);
	logfile_set_heartbeat(f, 0, NULL);
	logfile_close(f);
	data = slurp(path, &len);
	CHECK(sscanf(data, "%lld@@@@M\n", &t) == 1, "a heartbeat: \"%s\"", data);
	CHECK(t >= (long long)before && t <= (long long)time(NULL), "its time %lld", t);
	CHECK(strstr(data, "@@@@M\n") != NULL, "layout: %s", data);
	free(data);
}

static void
test_many_files(void)
{
	char path[4][512], err[256];
	struct logfile *f[4];
	size_t len;
	char *data;

	for (int i = 0; i < 4; i++) {
		char name[32];
		snprintf(name, sizeof(name), "many%d.log", i);
		path_in(path[i], sizeof(path[i]), name);
		f[i] = logfile_open(path[i], err, sizeof(err));
		CHECK(f[i] != NULL, "open %d: %s", i, err);
		if (f[i] == NULL)
			return;
	}
	for (int k = 0; k < 3; k++)
		for (int i = 0; i < 4; i++) {
			char line[32];
			int n = snprintf(line, sizeof(line), "file %d line %d\n", i, k);
			logfile_write(f[i], line, (size_t)n);
		}
	/* Closing one leaves the others (and the writer thread) running. */
	logfile_close(f[1]);
	logfile_write(f[2], "after\n", 6);
	logfile_sync(f[2]);
	data = slurp(path[2], &len);
	CHECK_STR(data, "file 2 line 0\nfile 2 line 1\nfile 2 line 2\nafter\n", "file 2");
	free(data);
	logfile_close(f[0]);
	logfile_close(f[2]);
	logfile_close(f[3]);
	data = slurp(path[1], &len);
	CHECK_STR(data, "file 1 line 0\nfile 1 line 1\nfile 1 line 2\n", "file 1");
	free(data);
	/* The writer stopped with the last file; a new open starts it again. */
	f[0] = logfile_open(path[0], err, sizeof(err));
	CHECK(f[0] != NULL, "reopen after stop: %s", err);
	logfile_write(f[0], "again\n", 6);
	logfile_close(f[0]);
	data = slurp(path[0], &len);
	CHECK(len > 6 && strcmp(data + len - 6, "again\n") == 0, "written after restart: %s", data);
	free(data);
}

static void
cleanup(void)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tmpdir);
}

int
main(void)
{
	static const struct test_case cases[] = {
		TEST(test_write_and_newline),
		TEST(test_open_error),
		TEST(test_concurrent_writers),
		TEST(test_reopen_after_rename),
		TEST(test_reopen_failure),
		TEST(test_drop_cap),
		TEST(test_heartbeat),
		TEST(test_many_files),
	};
	const char *base = getenv("TMPDIR");
	int rc;

	snprintf(tmpdir, sizeof(tmpdir), "%s/log_file_test.XXXXXX", base ? base : "/tmp");
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	rc = test_run("log_file", cases, sizeof(cases) / sizeof(cases[0]));
	cleanup();
	return rc;
}

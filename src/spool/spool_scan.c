/*
 * spool_scan.c - reading the spool back: the file loader, the recovery scan
 * and the read-only walk used by tools.
 *
 * Public functions:
 *   spool_file_load   read and parse one open batch file (internal)
 *   spool_scan        recovery at start, on the io pool, results on a loop
 *   spool_walk        read-only, blocking walk for impetus-spool
 *
 * The scan is a chain of pool jobs: each lists or reads files of the
 * hashed folders until it holds SCAN_CHUNK batches (or has looked at
 * SCAN_FILES_PER_JOB files), then its done callback hands them to each_cb
 * on the origin loop and submits the next job. So the loop only ever runs
 * a few hundred short callbacks per turn, and the reading never outruns the
 * consumer by more than one chunk.
 *
 * What a scan does to what it finds (the files of this spool_open are live
 * and left alone; they are recognised by the nonce in their ids):
 *   <id>.tmp of an earlier run   deleted (a commit that never finished)
 *   <id> that parses             handed out; a torn tail is cut off first
 *   <id> with every rcpt done    deleted (the process died before removing it)
 *   <id> in the wrong folder     moved to its folder
 *   anything else                moved to quarantine/ with a paniclog line
 *
 * Ownership: the scan state is owned by the job chain and freed after
 * done_cb; infos are freed right after each_cb returns. Errors: paniclog
 * lines (diag_warn) for every file quarantined, repaired or unreadable.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "event/tpool.h"
#include "lib/diag.h"
#include "lib/xalloc.h"
#include "spool/spool_internal.h"
#include "spool/spool_record.h"

#define SCAN_CHUNK          256     /* batches handed to each_cb per loop turn */
#define SCAN_FILES_PER_JOB  1024    /* files looked at per pool job */

struct spool_scan {
	struct spool *sp;               /* the spool */
	struct loop *origin;            /* where each_cb and done_cb run */
	spool_scan_each_fn each_cb;     /* per batch */
	spool_scan_done_fn done_cb;     /* at the end */
	void *arg;                      /* for both */
	unsigned folder;                /* folder being read; SPOOL_FOLDERS at the end */
	int listed;                     /* names holds folder's listing */
	char **names;                   /* file names of folder, owned */
	size_t nnames;                  /* entries in names */
	size_t pos;                     /* next name to look at */
	struct spool_batch_info **chunk;/* batches for the next each_cb turn, owned */
	size_t nchunk;                  /* entries in chunk */
	struct spool_scan_result res;   /* counters */
};

static int read_at(int fd, void *buf, size_t len, uint64_t off, size_t *got);
static int list_folder(int dirfd, char ***names, size_t *n);
static void free_names(char **names, size_t n);
static int name_cmp(const void *a, const void *b);
static void scan_work(void *arg);
static void scan_deliver(void *arg);
static void scan_one(struct spool_scan *s, int dirfd, const char *name);
static void scan_quarantine(struct spool_scan *s, int dirfd, const char *name, const char *reason);
static int move_noreplace(int from_dir, const char *from, int to_dir, const char *to);

/* read_at: pread until len bytes or the end of file; *got says how many. */
static int
read_at(int fd, void *buf, size_t len, uint64_t off, size_t *got)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	*got = done;
	return 0;
}

int
spool_file_load(int fd, int with_body, struct spool_batch_info **out, char *err, size_t errlen)
{
	uint8_t head[SPOOL_BODY_OFF];
	struct stat st;
	uint64_t size, body_len, meta_off;
	uint32_t body_crc;
	size_t got;
	void *buf;
	int rc;

	*out = NULL;
	if (fstat(fd, &st) < 0)
		return SPOOL_LOAD_IOERR;
	size = (uint64_t)st.st_size;
	if (size > SPOOL_FILE_MAX) {
		snprintf(err, errlen, "file too large (%llu bytes)", (unsigned long long)size);
		return SPOOL_PARSE_BAD;
	}
	if (with_body) {
		buf = xmalloc(size ? (size_t)size : 1);
		if (read_at(fd, buf, (size_t)size, 0, &got) < 0) {
			int saved = errno;

			free(buf);
			errno = saved;
			return SPOOL_LOAD_IOERR;
		}
		rc = spool_record_parse(buf, got, out, err, errlen);
		free(buf);
		return rc;
	}
	if (read_at(fd, head, sizeof(head), 0, &got) < 0)
		return SPOOL_LOAD_IOERR;
	if (spool_head_parse(head, got, &body_len, &body_crc, err, errlen) < 0)
		return SPOOL_PARSE_BAD;
	if (body_len > size - SPOOL_BODY_OFF) {
		snprintf(err, errlen, "body cut short");
		return SPOOL_PARSE_BAD;
	}
	meta_off = SPOOL_BODY_OFF + body_len;
	if (size - meta_off > SPOOL_META_MAX) {
		snprintf(err, errlen, "metadata too large");
		return SPOOL_PARSE_BAD;
	}
	buf = xmalloc(size - meta_off + 1);
	if (read_at(fd, buf, (size_t)(size - meta_off), meta_off, &got) < 0) {
		int saved = errno;

		free(buf);
		errno = saved;
		return SPOOL_LOAD_IOERR;
	}
	rc = spool_meta_parse(buf, got, body_len, body_crc, out, err, errlen);
	free(buf);
	return rc;
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* list_folder: the names of the regular entries of dirfd (not . and ..), sorted. */
static int
list_folder(int dirfd, char ***names, size_t *n)
{
	struct dirent *de;
	size_t cap = 0;
	DIR *d;
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	*names = NULL;
	*n = 0;
	if (fd < 0)
		return -1;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_type == DT_DIR || strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 64;
			*names = xreallocarray(*names, cap, sizeof(**names));
		}
		(*names)[(*n)++] = xstrdup(de->d_name);
	}
	closedir(d);
	if (*n > 1)
		qsort(*names, *n, sizeof(**names), name_cmp);
	return 0;
}

static void
free_names(char **names, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* move_noreplace: rename across folders without replacing an existing name. */
static int
move_noreplace(int from_dir, const char *from, int to_dir, const char *to)
{
	if (renameat2(from_dir, from, to_dir, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
	if (linkat(from_dir, from, to_dir, to, 0) < 0)
		return -1;
	unlinkat(from_dir, from, 0);
	return 0;
}

static void
scan_quarantine(struct spool_scan *s, int dirfd, const char *name, const char *reason)
{
	struct spool *sp = s->sp;
	char qname[256];
	int i;

	for (i = 0; i < 1000; i++) {
		if (i == 0)
			snprintf(qname, sizeof(qname), "%.200s", name);
		else
			snprintf(qname, sizeof(qname), "%.200s.%d", name, i);
		if (move_noreplace(dirfd, name, sp->quarantine_fd, qname) == 0) {
			s->res.quarantined++;
			diag_warn("spool: quarantined %s/%02x/%s as %s/%s/%s: %s", sp->base,
			    s->folder, name, sp->base, SPOOL_QUARANTINE, qname, reason);
			return;
		}
		if (errno != EEXIST)
			break;
	}
	diag_warn("spool: cannot quarantine %s/%02x/%s (%s): %s; left in place", sp->base,
	    s->folder, name, reason, strerror(errno));
}

/* scan_one (pool): deal with one entry of folder s->folder. */
static void
scan_one(struct spool_scan *s, int dirfd, const char *name)
{
	struct spool *sp = s->sp;
	struct spool_batch_info *info = NULL;
	size_t len = strlen(name), i, keep;
	char id[SPOOL_ID_LEN], why[160];
	int fd, st;

	if (len == SPOOL_ID_CHARS + strlen(SPOOL_TMP_SUFFIX) &&
	    strcmp(name + SPOOL_ID_CHARS, SPOOL_TMP_SUFFIX) == 0) {
		memcpy(id, name, SPOOL_ID_CHARS);
		id[SPOOL_ID_CHARS] = '\0';
		if (spool_id_valid(id)) {
			if (spool_id_nonce(id) == sp->nonce)
				return;         /* a commit of ours in progress */
			if (unlinkat(dirfd, name, 0) == 0)
				s->res.temp_removed++;
			return;
		}
	}
	if (!spool_id_valid(name)) {
		scan_quarantine(s, dirfd, name, "not a spool file name");
		return;
	}
	if (spool_id_nonce(name) == sp->nonce)
		return;                 /* committed since this spool_open: live */
	if ((fd = openat(dirfd, name, O_RDWR | O_CLOEXEC | O_NOFOLLOW)) < 0) {
		if (errno == ELOOP)
			scan_quarantine(s, dirfd, name, "not a regular file");
		else if (errno != ENOENT)
			diag_warn("spool: cannot open %s/%02x/%s: %s", sp->base, s->folder, name,
			    strerror(errno));
		return;
	}
	st = spool_file_load(fd, 1, &info, why, sizeof(why));
	if (st == SPOOL_LOAD_IOERR) {
		diag_warn("spool: cannot read %s/%02x/%s: %s", sp->base, s->folder, name,
		    strerror(errno));
		s->res.err = errno;
		close(fd);
		return;
	}
	if (st == SPOOL_PARSE_BAD) {
		close(fd);
		scan_quarantine(s, dirfd, name, why);
		return;
	}
	if (strcmp(info->batch_id, name) != 0) {
		close(fd);
		spool_batch_info_free(info);
		scan_quarantine(s, dirfd, name, "batch id does not match the file name");
		return;
	}
	if (st == SPOOL_PARSE_TORN) {
		if (ftruncate(fd, (off_t)info->valid_len) == 0 && fdatasync(fd) == 0) {
			s->res.repaired++;
			diag_warn("spool: %s/%02x/%s: cut a torn state record at offset %llu",
			    sp->base, s->folder, name, (unsigned long long)info->valid_len);
		} else
			diag_warn("spool: %s/%02x/%s: cannot cut a torn state record: %s",
			    sp->base, s->folder, name, strerror(errno));
	}
	close(fd);
	if (spool_folder_of(name) != s->folder) {
		int to = sp->folder_fd[spool_folder_of(name)];

		if (move_noreplace(dirfd, name, to, name) < 0) {
			spool_batch_info_free(info);
			scan_quarantine(s, dirfd, name, "in the wrong folder");
			return;
		}
		diag_warn("spool: moved %s/%02x/%s to its folder %02x", sp->base, s->folder, name,
		    spool_folder_of(name));
	}
	for (i = 0, keep = 0; i < info->nrcpt; i++)
		if (!(info->rcpts[i].state.flags & SPOOL_STATE_DONE))
			info->rcpts[keep++] = info->rcpts[i];
	info->nrcpt = keep;
	if (keep == 0) {
		/* Every recipient done: the process died before removing it. */
		if (unlinkat(sp->folder_fd[spool_folder_of(name)], name, 0) == 0)
			s->res.finished++;
		spool_batch_info_free(info);
		return;
	}
	s->res.batches++;
	s->res.recipients += keep;
	s->chunk[s->nchunk++] = info;
}

/* scan_work (pool): fill the next chunk. */
static void
scan_work(void *arg)
{
	struct spool_scan *s = arg;
	int examined = 0;

	while (s->nchunk < SCAN_CHUNK && examined < SCAN_FILES_PER_JOB &&
	    s->folder < SPOOL_FOLDERS) {
		int dirfd = s->sp->folder_fd[s->folder];

		if (!s->listed) {
			if (list_folder(dirfd, &s->names, &s->nnames) < 0) {
				s->res.err = errno;
				diag_warn("spool: cannot read %s/%02x: %s", s->sp->base, s->folder,
				    strerror(errno));
			}
			s->listed = 1;
			s->pos = 0;
		}
		if (s->pos == s->nnames) {
			free_names(s->names, s->nnames);
			s->names = NULL;
			s->nnames = 0;
			s->listed = 0;
			s->folder++;
			continue;
		}
		scan_one(s, dirfd, s->names[s->pos++]);
		examined++;
	}
}

/* scan_deliver (origin): hand the chunk out, then read on or finish. */
static void
scan_deliver(void *arg)
{
	struct spool_scan *s = arg;
	size_t i;

	for (i = 0; i < s->nchunk; i++) {
		s->each_cb(s->chunk[i], s->arg);
		spool_batch_info_free(s->chunk[i]);
	}
	s->nchunk = 0;
	if (s->folder < SPOOL_FOLDERS && atomic_load(&s->sp->stopping)) {
		/* The daemon stops mid-scan: the pool takes no more work, and the
		 * rest of the spool is read at the next start. */
		free_names(s->names, s->nnames);
		free(s->chunk);
		free(s);
		return;
	}
	if (s->folder < SPOOL_FOLDERS) {
		tpool_submit(s->sp->io, scan_work, scan_deliver, s, s->origin);
		return;
	}
	if (s->done_cb != NULL)
		s->done_cb(&s->res, s->arg);
	free(s->chunk);
	free(s);
}

void
spool_scan(struct spool *sp, struct loop *origin, spool_scan_each_fn each_cb,
    spool_scan_done_fn done_cb, void *arg)
{
	struct spool_scan *s = xcalloc(1, sizeof(*s));

	s->sp = sp;
	s->origin = origin;
	s->each_cb = each_cb;
	s->done_cb = done_cb;
	s->arg = arg;
	s->chunk = xcalloc(SCAN_CHUNK, sizeof(*s->chunk));
	tpool_submit(sp->io, scan_work, scan_deliver, s, origin);
}

int
spool_walk(const char *base, spool_walk_fn fn, void *arg)
{
	char path[PATH_MAX], why[160];
	unsigned folder;

	for (folder = 0; folder < SPOOL_FOLDERS; folder++) {
		char **names;
		size_t n, i;
		int dirfd;

		snprintf(path, sizeof(path), "%s/%02x", base, folder);
		if ((dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
			if (errno == ENOENT)
				continue;
			return -1;
		}
		if (list_folder(dirfd, &names, &n) < 0) {
			int saved = errno;

			close(dirfd);
			errno = saved;
			return -1;
		}
		for (i = 0; i < n; i++) {
			const char *name = names[i];
			size_t len = strlen(name);
			struct spool_batch_info *info = NULL;
			int fd, st;

			snprintf(path, sizeof(path), "%s/%02x/%s", base, folder, name);
			if (len > strlen(SPOOL_TMP_SUFFIX) &&
			    strcmp(name + len - strlen(SPOOL_TMP_SUFFIX), SPOOL_TMP_SUFFIX) == 0) {
				fn(path, 2, NULL, "temp file", arg);
				continue;
			}
			if (!spool_id_valid(name)) {
				fn(path, 3, NULL, "not a spool file name", arg);
				continue;
			}
			if ((fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
				snprintf(why, sizeof(why), "cannot open: %s", strerror(errno));
				fn(path, -1, NULL, why, arg);
				continue;
			}
			st = spool_file_load(fd, 1, &info, why, sizeof(why));
			close(fd);
			if (st == SPOOL_LOAD_IOERR) {
				snprintf(why, sizeof(why), "cannot read: %s", strerror(errno));
				st = SPOOL_PARSE_BAD;
			} else if (st != SPOOL_PARSE_BAD && strcmp(info->batch_id, name) != 0) {
				snprintf(why, sizeof(why), "batch id does not match the file name");
				st = SPOOL_PARSE_BAD;
			} else if (st != SPOOL_PARSE_BAD && spool_folder_of(name) != folder) {
				snprintf(why, sizeof(why), "in the wrong folder");
				st = SPOOL_PARSE_BAD;
			}
			if (st == SPOOL_PARSE_BAD) {
				spool_batch_info_free(info);
				info = NULL;
			}
			fn(path, st, info, st == SPOOL_PARSE_BAD ? why : NULL, arg);
			spool_batch_info_free(info);
		}
		free_names(names, n);
		close(dirfd);
	}
	return 0;
}

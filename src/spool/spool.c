/*
 * spool.c - the durable spool: ids, batches, group commit, state records.
 *
 * Public functions (spool.h):
 *   spool_open / spool_close     create or open the folders; free
 *   spool_id_new                 a unique id (time, per-open nonce, counter)
 *   spool_stats / spool_set_fault  counters; test hook for failures
 *   spool_sync_histogram / _observe  the group commit's sync latency (process-wide, atomic)
 *   spool_batch_new / _free      a submission being built
 *   spool_batch_set_* / _add_rcpt / _append   envelope, recipients, body
 *   spool_batch_commit           write + group commit, callback on the origin loop
 *   spool_batch_id / ...         accessors
 *   spool_rcpt_update / _done    append a state record, durable; remove when all done
 *   spool_body_read              read a batch's body (blocking)
 *   spool_id_valid               check an id's syntax
 *
 * Writing a batch: a pool job writes <folder>/<id>.tmp (magic, head, body,
 * envelope, recipients, end) and closes it, then joins the group: a list of
 * operations waiting for a sync. The first joiner that finds no leader
 * becomes the leader and runs the group commit on its pool thread:
 *
 *   loop: wait while other writes in flight keep joining (at most 5 ms);
 *         take every waiting operation (cur);
 *         syncfs()       -> cur's data durable, and prev's renames durable;
 *         complete prev  (their callbacks get 0);
 *         rename cur's temp files into place; prev = cur;
 *   until nothing is waiting and prev is empty.
 *
 * So a batch's name appears only once its data is durable (a crash leaves a
 * whole file or a temp file), its callback fires only once the name is
 * durable too, and under load each syncfs serves two groups at once: about
 * one sync per group, not per message. State records (update, done) are
 * appended with O_APPEND and join the same group; they complete after one
 * sync. A failed write or sync removes the batch's files and reports the
 * errno; nothing of a failed batch stays on disk.
 *
 * Ownership: the caller owns batches; the spool owns operations in flight
 * and frees them after their callback. Errors: errno values to callbacks;
 * no logging here (spool_scan.c logs what it quarantines).
 */
#include "spool/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "event/loop.h"
#include "event/tpool.h"
#include "lib/diag.h"
#include "lib/strbuf.h"
#include "lib/xalloc.h"
#include "spool/spool_internal.h"
#include "spool/spool_record.h"

#define SPOOL_GROUP_WAIT_US     1000    /* wait for the next join of a write in flight */
#define SPOOL_GROUP_WAIT_MAX_US 5000    /* longest wait for writes in flight before a sync */

enum spool_op_kind {
	SPOOL_OP_COMMIT,                /* a new batch file */
	SPOOL_OP_UPDATE,                /* a state record */
	SPOOL_OP_DONE,                  /* a done record, or the file's removal */
};

/* spool_op: one disk operation from submission to its callback. */
struct spool_op {
	enum spool_op_kind kind;        /* what it does */
	struct spool *sp;               /* the spool */
	struct loop *origin;            /* where the callback runs */
	int err;                        /* 0 or the errno reported */
	char id[SPOOL_ID_LEN];          /* the batch id */
	unsigned index;                 /* update / done: the recipient */
	struct spool_rcpt_state st;     /* update: the state (binding owned) */
	int removed;                    /* done: the batch file was removed */
	unsigned done_flags;            /* done: SPOOL_DONE_* */
	uint64_t bytes;                 /* bytes written */
	struct spool_batch *batch;      /* commit: the batch */
	spool_commit_fn commit_cb;      /* commit: callback */
	spool_done_fn done_cb;          /* update / done: callback */
	void *arg;                      /* callback argument */
	struct spool_op *next;          /* group list link */
};

struct spool_batch_rcpt {
	char id[SPOOL_ID_LEN];          /* recipient-message id */
	char *rcpt;                     /* address, owned */
	char *orcpt;                    /* DSN ORCPT, owned, NULL when not given */
	unsigned notify;                /* SPOOL_NOTIFY_* */
	char *binding;                  /* binding name, owned, NULL = unbound */
};

struct spool_batch {
	struct spool *sp;               /* the spool it goes to */
	char id[SPOOL_ID_LEN];          /* batch id */
	char *mail_from;                /* reverse path, owned, "" = null */
	char *envid;                    /* DSN ENVID, owned, NULL when not given */
	int ret;                        /* enum spool_ret */
	unsigned flags;                 /* SPOOL_F_* */
	uint64_t conn_id;               /* inbound connection, 0 = local */
	struct sockaddr_storage peer;   /* family 0 = local */
	char *helo;                     /* owned, NULL = none */
	char *protocol;                 /* owned, NULL = "esmtp" */
	struct timeval received;        /* reception time */
	struct spool_batch_rcpt *rcpts; /* recipients, owned */
	size_t nrcpt;                   /* entries used in rcpts */
	size_t cap;                     /* entries allocated */
	struct strbuf body;             /* the message */
	struct spool_op op;             /* the commit */
	int committing;                 /* commit in flight */
};

const uint64_t spool_sync_bucket_us[SPOOL_SYNC_BUCKETS] = {
	50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000,
	500000, 1000000, 2500000, 10000000,
};
static _Atomic uint64_t sync_bucket[SPOOL_SYNC_BUCKETS + 1]; /* syncs per bucket, process-wide */
static _Atomic uint64_t sync_sum_us;                         /* µs spent in those syncs */

static uint64_t elapsed_us(const struct timespec *from, const struct timespec *to);
static int spool_mkdirs(const char *dir);
static void spool_close_fds(struct spool *sp);
static int copy_opt(char **dst, const char *src, int allow_empty);
static int write_all(int fd, struct iovec *iov, int iovcnt, uint64_t *written);
static void batch_encode_meta(const struct spool_batch *b, struct strbuf *meta);
static void commit_work(void *arg);
static void update_work(void *arg);
static void done_work(void *arg);
static void op_fail_early(struct spool_op *op, int err);
static void group_join(struct spool_op *op);
static void group_lead(struct spool *sp);
static void group_wait_writers(struct spool *sp);
static struct timespec ts_after_us(long us);
static int ts_before(const struct timespec *a, const struct timespec *b);
static void op_finish(struct spool_op *op, int err);
static void op_callback(void *arg);
static int rename_noreplace(int dirfd, const char *from, const char *to);
static void free_pool_clear(struct spool *sp);
static int spool_file_remove(struct spool *sp, int dirfd, const char *id);
static int spool_file_create(struct spool *sp, int dirfd, const char *name, int *reused);
static int fault_of(struct spool *sp, enum spool_fault kind);
static void op_submit(struct spool_op *op, tpool_fn work);
static struct spool_op *state_op_new(struct spool *sp, enum spool_op_kind kind,
    const char *batch_id, unsigned index, struct loop *origin, spool_done_fn cb, void *arg);
static int state_append(struct spool_op *op, int fd);

/* spool_mkdirs: mkdir -p dir (0750). */
static int
spool_mkdirs(const char *dir)
{
	char path[PATH_MAX];
	size_t i, n = strlen(dir);

	if (n == 0 || n >= sizeof(path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(path, dir, n + 1);
	for (i = 1; i <= n; i++) {
		if (path[i] != '/' && path[i] != '\0')
			continue;
		path[i] = '\0';
		if (mkdir(path, 0750) < 0 && errno != EEXIST)
			return -1;
		path[i] = i < n ? '/' : '\0';
	}
	return 0;
}

struct spool *
spool_open(const char *base, struct tpool *io, char *err, size_t errlen)
{
	struct spool *sp;
	char name[16];
	int i;

	if (strlen(base) > PATH_MAX - 64) {
		snprintf(err, errlen, "spool path too long");
		return NULL;
	}
	if (spool_mkdirs(base) < 0) {
		snprintf(err, errlen, "cannot create spool %s: %s", base, strerror(errno));
		return NULL;
	}
	sp = xcalloc(1, sizeof(*sp));
	sp->base = xstrdup(base);
	sp->io = io;
	sp->quarantine_fd = -1;
	sp->free_fd = -1;
	for (i = 0; i < SPOOL_FOLDERS; i++)
		sp->folder_fd[i] = -1;
	sp->base_fd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sp->base_fd < 0) {
		snprintf(err, errlen, "cannot open spool %s: %s", base, strerror(errno));
		goto fail;
	}
	for (i = 0; i <= SPOOL_FOLDERS; i++) {
		int fd;

		if (i < SPOOL_FOLDERS)
			snprintf(name, sizeof(name), "%02x", i);
		else
			snprintf(name, sizeof(name), "%s", SPOOL_QUARANTINE);
		if (mkdirat(sp->base_fd, name, 0750) < 0 && errno != EEXIST) {
			snprintf(err, errlen, "cannot create %s/%s: %s", base, name, strerror(errno));
			goto fail;
		}
		fd = openat(sp->base_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0) {
			snprintf(err, errlen, "cannot open %s/%s: %s", base, name, strerror(errno));
			goto fail;
		}
		if (i < SPOOL_FOLDERS)
			sp->folder_fd[i] = fd;
		else
			sp->quarantine_fd = fd;
	}
	if ((mkdirat(sp->base_fd, SPOOL_FREE, 0750) < 0 && errno != EEXIST) ||
	    (sp->free_fd = openat(sp->base_fd, SPOOL_FREE, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		snprintf(err, errlen, "cannot open %s/%s: %s", base, SPOOL_FREE, strerror(errno));
		goto fail;
	}
	free_pool_clear(sp);
	if (access(base, W_OK) < 0) {
		snprintf(err, errlen, "spool %s is not writable: %s", base, strerror(errno));
		goto fail;
	}
	/* The folders themselves must survive a crash. */
	if (syncfs(sp->base_fd) < 0) {
		snprintf(err, errlen, "cannot sync spool %s: %s", base, strerror(errno));
		goto fail;
	}
	if (getrandom(&sp->nonce, sizeof(sp->nonce), 0) != (ssize_t)sizeof(sp->nonce)) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		sp->nonce = (uint32_t)ts.tv_nsec ^ (uint32_t)getpid() << 12 ^ (uint32_t)(uintptr_t)sp;
	}
	atomic_init(&sp->counter, 0);
	for (i = 0; i < SPOOL_FAULT_COUNT; i++)
		atomic_init(&sp->fault[i], 0);
	pthread_mutex_init(&sp->lock, NULL);
	pthread_mutex_init(&sp->free_lock, NULL);
	sp->free_names = xcalloc(SPOOL_FREE_MAX, sizeof(*sp->free_names));
	pthread_cond_init(&sp->joined, NULL);
	sp->waiting_tail = &sp->waiting;
	return sp;
fail:
	spool_close_fds(sp);
	free(sp->base);
	free(sp);
	return NULL;
}

static void
spool_close_fds(struct spool *sp)
{
	int i;

	for (i = 0; i < SPOOL_FOLDERS; i++)
		if (sp->folder_fd[i] >= 0)
			close(sp->folder_fd[i]);
	if (sp->quarantine_fd >= 0)
		close(sp->quarantine_fd);
	if (sp->free_fd >= 0)
		close(sp->free_fd);
	if (sp->base_fd >= 0)
		close(sp->base_fd);
}

void
spool_stop(struct spool *sp)
{
	atomic_store(&sp->stopping, 1);
}

void
spool_close(struct spool *sp)
{
	if (sp == NULL)
		return;
	/* The last callbacks may run before the leader has left its loop. */
	pthread_mutex_lock(&sp->lock);
	IMP_ASSERT(sp->inflight == 0);
	while (sp->syncing)
		pthread_cond_wait(&sp->joined, &sp->lock);
	IMP_ASSERT(sp->waiting == NULL);
	pthread_mutex_unlock(&sp->lock);
	spool_close_fds(sp);
	pthread_cond_destroy(&sp->joined);
	pthread_mutex_destroy(&sp->lock);
	pthread_mutex_destroy(&sp->free_lock);
	free(sp->free_names);
	free(sp->base);
	free(sp);
}

/*
 * The free pool. Creating a file and removing another for every message
 * makes the file system allocate and free an inode each time, which on
 * ext4 is the largest cost of the spool (inode bitmap scans that skip
 * recently freed inodes). A removed batch file is instead renamed into
 * free/ and a new batch takes one from there and overwrites it. Files in
 * free/ mean nothing: they are removed at spool_open, and a crash between
 * the moves leaves at worst a temp file, which the scan removes.
 */
static void
free_pool_clear(struct spool *sp)
{
	int fd = dup(sp->free_fd);
	DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;

	if (dir == NULL) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((de = readdir(dir)) != NULL)
		if (de->d_name[0] != '.')
			unlinkat(sp->free_fd, de->d_name, 0);
	closedir(dir);
}

/* spool_file_remove: remove batch file id of dirfd (into the free pool when it has room). */
static int
spool_file_remove(struct spool *sp, int dirfd, const char *id)
{
	char fname[16];
	uint32_t n = 0;
	int pooled = 0;

	pthread_mutex_lock(&sp->free_lock);
	if (sp->nfree < SPOOL_FREE_MAX) {
		n = sp->free_next++;
		pooled = 1;
	}
	pthread_mutex_unlock(&sp->free_lock);
	if (pooled) {
		snprintf(fname, sizeof(fname), "f%08x", (unsigned)n);
		if (renameat(dirfd, id, sp->free_fd, fname) == 0) {
			pthread_mutex_lock(&sp->free_lock);
			if (sp->nfree < SPOOL_FREE_MAX) {
				sp->free_names[sp->nfree++] = n;
				n = UINT32_MAX;
			}
			pthread_mutex_unlock(&sp->free_lock);
			if (n != UINT32_MAX)
				unlinkat(sp->free_fd, fname, 0);  /* the pool filled meanwhile */
			return 0;
		}
		if (errno == ENOENT)
			return -1;
	}
	return unlinkat(dirfd, id, 0);
}

/* spool_file_create: open a new file name of dirfd for writing: a file of
 * the free pool renamed there, else a fresh one. *reused says which. */
static int
spool_file_create(struct spool *sp, int dirfd, const char *name, int *reused)
{
	char fname[16];
	uint32_t n = 0;
	int have = 0, fd;

	*reused = 0;
	pthread_mutex_lock(&sp->free_lock);
	if (sp->nfree > 0) {
		n = sp->free_names[--sp->nfree];
		have = 1;
	}
	pthread_mutex_unlock(&sp->free_lock);
	if (have) {
		snprintf(fname, sizeof(fname), "f%08x", (unsigned)n);
		if (renameat2(sp->free_fd, fname, dirfd, name, RENAME_NOREPLACE) == 0) {
			fd = openat(dirfd, name, O_WRONLY | O_CLOEXEC);
			if (fd >= 0) {
				*reused = 1;
				return fd;
			}
			unlinkat(dirfd, name, 0);
		} else {
			unlinkat(sp->free_fd, fname, 0);
		}
	}
	return openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
}

const char *
spool_base(const struct spool *sp)
{
	return sp->base;
}

void
spool_id_new(struct spool *sp, char *out)
{
	unsigned c = atomic_fetch_add(&sp->counter, 1) & 0xffffffu;

	snprintf(out, SPOOL_ID_LEN, "%08x%08x%06x", (unsigned)(uint32_t)time(NULL),
	    (unsigned)sp->nonce, c);
}

int
spool_id_valid(const char *s)
{
	int i;

	for (i = 0; i < SPOOL_ID_CHARS; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return s[SPOOL_ID_CHARS] == '\0';
}

unsigned
spool_folder_of(const char *id)
{
	return spool_crc32c(0, id, SPOOL_ID_CHARS) & (SPOOL_FOLDERS - 1);
}

uint32_t
spool_id_nonce(const char *id)
{
	uint32_t v = 0;
	int i;

	for (i = 8; i < 16; i++)
		v = v << 4 | (uint32_t)(id[i] <= '9' ? id[i] - '0' : id[i] - 'a' + 10);
	return v;
}

void
spool_stats(struct spool *sp, struct spool_stats *out)
{
	pthread_mutex_lock(&sp->lock);
	*out = sp->stats;
	pthread_mutex_unlock(&sp->lock);
}

void
spool_sync_observe(uint64_t us)
{
	size_t i = 0;

	while (i < SPOOL_SYNC_BUCKETS && us > spool_sync_bucket_us[i])
		i++;
	atomic_fetch_add_explicit(&sync_bucket[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&sync_sum_us, us, memory_order_relaxed);
}

void
spool_sync_histogram(struct spool_sync_histogram *out)
{
	for (size_t i = 0; i <= SPOOL_SYNC_BUCKETS; i++)
		out->bucket[i] = atomic_load_explicit(&sync_bucket[i], memory_order_relaxed);
	out->sum_us = atomic_load_explicit(&sync_sum_us, memory_order_relaxed);
}

static uint64_t
elapsed_us(const struct timespec *from, const struct timespec *to)
{
	int64_t ns = (int64_t)(to->tv_sec - from->tv_sec) * 1000000000 + (to->tv_nsec - from->tv_nsec);

	return ns > 0 ? (uint64_t)ns / 1000 : 0;
}

void
spool_set_fault(struct spool *sp, enum spool_fault kind, int err)
{
	IMP_ASSERT(kind >= 0 && kind < SPOOL_FAULT_COUNT);
	atomic_store(&sp->fault[kind], err);
}

static int
fault_of(struct spool *sp, enum spool_fault kind)
{
	return atomic_load(&sp->fault[kind]);
}

/* --- building a batch --- */

struct spool_batch *
spool_batch_new(struct spool *sp)
{
	struct spool_batch *b = xcalloc(1, sizeof(*b));

	b->sp = sp;
	spool_id_new(sp, b->id);
	b->mail_from = xstrdup("");
	gettimeofday(&b->received, NULL);
	return b;
}

void
spool_batch_free(struct spool_batch *b)
{
	size_t i;

	if (b == NULL)
		return;
	IMP_ASSERT(!b->committing);
	for (i = 0; i < b->nrcpt; i++) {
		free(b->rcpts[i].rcpt);
		free(b->rcpts[i].orcpt);
		free(b->rcpts[i].binding);
	}
	free(b->rcpts);
	free(b->mail_from);
	free(b->envid);
	free(b->helo);
	free(b->protocol);
	strbuf_free(&b->body);
	free(b);
}

/* copy_opt: replace *dst with a copy of src (NULL or, unless allow_empty, "" clears). */
static int
copy_opt(char **dst, const char *src, int allow_empty)
{
	if (src != NULL && strlen(src) > SPOOL_STRING_MAX) {
		errno = EINVAL;
		return -1;
	}
	free(*dst);
	*dst = src != NULL && (allow_empty || *src != '\0') ? xstrdup(src) : NULL;
	return 0;
}

int
spool_batch_set_mail_from(struct spool_batch *b, const char *reverse_path)
{
	if (copy_opt(&b->mail_from, reverse_path ? reverse_path : "", 1) < 0)
		return -1;
	return 0;
}

int
spool_batch_set_dsn(struct spool_batch *b, enum spool_ret ret, const char *envid)
{
	if (copy_opt(&b->envid, envid, 0) < 0)
		return -1;
	b->ret = ret;
	return 0;
}

void
spool_batch_set_flags(struct spool_batch *b, unsigned flags)
{
	b->flags = flags;
}

int
spool_batch_set_reception(struct spool_batch *b, uint64_t conn_id, const struct sockaddr *peer,
    const char *helo, const char *protocol, const struct timeval *when)
{
	if ((helo != NULL && strlen(helo) > SPOOL_STRING_MAX) ||
	    (protocol != NULL && strlen(protocol) > SPOOL_STRING_MAX)) {
		errno = EINVAL;
		return -1;
	}
	copy_opt(&b->helo, helo, 0);
	copy_opt(&b->protocol, protocol, 0);
	b->conn_id = conn_id;
	memset(&b->peer, 0, sizeof(b->peer));
	if (peer != NULL && peer->sa_family == AF_INET)
		memcpy(&b->peer, peer, sizeof(struct sockaddr_in));
	else if (peer != NULL && peer->sa_family == AF_INET6)
		memcpy(&b->peer, peer, sizeof(struct sockaddr_in6));
	if (when != NULL)
		b->received = *when;
	else
		gettimeofday(&b->received, NULL);
	return 0;
}

int
spool_batch_add_rcpt(struct spool_batch *b, const char *rcpt, const char *orcpt,
    unsigned notify_flags, const char *binding_name)
{
	struct spool_batch_rcpt *r;

	IMP_ASSERT(!b->committing);
	if (rcpt == NULL || *rcpt == '\0' || strlen(rcpt) > SPOOL_STRING_MAX ||
	    (orcpt != NULL && strlen(orcpt) > SPOOL_STRING_MAX) ||
	    (binding_name != NULL && strlen(binding_name) > SPOOL_STRING_MAX)) {
		errno = EINVAL;
		return -1;
	}
	if (b->nrcpt == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 4;
		b->rcpts = xreallocarray(b->rcpts, b->cap, sizeof(*b->rcpts));
	}
	r = &b->rcpts[b->nrcpt];
	memset(r, 0, sizeof(*r));
	spool_id_new(b->sp, r->id);
	r->rcpt = xstrdup(rcpt);
	r->orcpt = orcpt != NULL ? xstrdup(orcpt) : NULL;
	r->notify = notify_flags;
	r->binding = binding_name != NULL && *binding_name != '\0' ? xstrdup(binding_name) : NULL;
	return (int)b->nrcpt++;
}

void
spool_batch_append(struct spool_batch *b, const void *data, size_t len)
{
	IMP_ASSERT(!b->committing);
	strbuf_append(&b->body, data, len);
}

const char *
spool_batch_id(const struct spool_batch *b)
{
	return b->id;
}

size_t
spool_batch_rcpt_count(const struct spool_batch *b)
{
	return b->nrcpt;
}

const char *
spool_batch_rcpt_id(const struct spool_batch *b, size_t i)
{
	return i < b->nrcpt ? b->rcpts[i].id : NULL;
}

const char *
spool_batch_rcpt(const struct spool_batch *b, size_t i)
{
	return i < b->nrcpt ? b->rcpts[i].rcpt : NULL;
}

void
spool_batch_envelope(const struct spool_batch *b, const char **mail_from, const char **envid,
    int *ret, unsigned *flags, uint64_t *conn_id, struct sockaddr_storage *peer,
    struct timeval *received)
{
	*mail_from = b->mail_from != NULL ? b->mail_from : "";
	*envid = b->envid;
	*ret = b->ret;
	*flags = b->flags;
	*conn_id = b->conn_id;
	memcpy(peer, &b->peer, sizeof(*peer));
	*received = b->received;
}

const char *
spool_batch_rcpt_orcpt(const struct spool_batch *b, size_t i)
{
	return i < b->nrcpt ? b->rcpts[i].orcpt : NULL;
}

unsigned
spool_batch_rcpt_notify(const struct spool_batch *b, size_t i)
{
	return i < b->nrcpt ? b->rcpts[i].notify : 0;
}

const char *
spool_batch_rcpt_binding(const struct spool_batch *b, size_t i)
{
	return i < b->nrcpt ? b->rcpts[i].binding : NULL;
}

int
spool_batch_set_rcpt_binding(struct spool_batch *b, size_t i, const char *binding_name)
{
	if (i >= b->nrcpt || (binding_name != NULL && strlen(binding_name) > SPOOL_STRING_MAX)) {
		errno = EINVAL;
		return -1;
	}
	free(b->rcpts[i].binding);
	b->rcpts[i].binding = binding_name != NULL && *binding_name != '\0' ?
	                      xstrdup(binding_name) : NULL;
	return 0;
}

char *
spool_batch_take_body(struct spool_batch *b, size_t *len)
{
	*len = b->body.len;
	return strbuf_steal(&b->body);
}

const char *
spool_batch_body(const struct spool_batch *b, size_t *len)
{
	*len = b->body.len;
	return b->body.data != NULL ? b->body.data : "";
}

void
spool_batch_body_cut(struct spool_batch *b, size_t off, size_t len)
{
	if (off >= b->body.len)
		return;
	if (len > b->body.len - off)
		len = b->body.len - off;
	memmove(b->body.data + off, b->body.data + off + len, b->body.len - off - len);
	b->body.len -= len;
	b->body.data[b->body.len] = '\0';
}

size_t
spool_batch_body_len(const struct spool_batch *b)
{
	return b->body.len;
}

const char *
spool_batch_mail_from(const struct spool_batch *b)
{
	return b->mail_from;
}

/* --- committing --- */

/* batch_encode_meta: the ENV, RCPT and END records of b. */
static void
batch_encode_meta(const struct spool_batch *b, struct strbuf *meta)
{
	size_t off, i;

	off = spool_record_begin(meta, SPOOL_REC_ENV);
	spool_field_str(meta, SPOOL_ENV_BATCH_ID, b->id);
	spool_field_str(meta, SPOOL_ENV_MAIL_FROM, b->mail_from);
	if (b->envid != NULL)
		spool_field_str(meta, SPOOL_ENV_ENVID, b->envid);
	spool_field_u64(meta, SPOOL_ENV_RET, (uint64_t)b->ret);
	spool_field_u64(meta, SPOOL_ENV_FLAGS, b->flags);
	spool_field_u64(meta, SPOOL_ENV_CONN_ID, b->conn_id);
	spool_field_peer(meta, SPOOL_ENV_PEER, (const struct sockaddr *)&b->peer);
	spool_field_str(meta, SPOOL_ENV_HELO, b->helo ? b->helo : "");
	spool_field_str(meta, SPOOL_ENV_PROTOCOL, b->protocol ? b->protocol : "esmtp");
	spool_field_u64(meta, SPOOL_ENV_RECV_SEC, (uint64_t)(int64_t)b->received.tv_sec);
	spool_field_u64(meta, SPOOL_ENV_RECV_USEC, (uint64_t)(int64_t)b->received.tv_usec);
	spool_record_end(meta, off);
	for (i = 0; i < b->nrcpt; i++) {
		const struct spool_batch_rcpt *r = &b->rcpts[i];

		off = spool_record_begin(meta, SPOOL_REC_RCPT);
		spool_field_u64(meta, SPOOL_RCPT_INDEX, i);
		spool_field_str(meta, SPOOL_RCPT_ID, r->id);
		spool_field_str(meta, SPOOL_RCPT_ADDR, r->rcpt);
		if (r->orcpt != NULL)
			spool_field_str(meta, SPOOL_RCPT_ORCPT, r->orcpt);
		spool_field_u64(meta, SPOOL_RCPT_NOTIFY, r->notify);
		if (r->binding != NULL)
			spool_field_str(meta, SPOOL_RCPT_BINDING, r->binding);
		spool_record_end(meta, off);
	}
	off = spool_record_begin(meta, SPOOL_REC_END);
	spool_field_u64(meta, SPOOL_END_NRCPT, b->nrcpt);
	spool_record_end(meta, off);
}

/* write_all: write every iovec, resuming after short writes. */
static int
write_all(int fd, struct iovec *iov, int iovcnt, uint64_t *written)
{
	while (iovcnt > 0) {
		ssize_t n = writev(fd, iov, iovcnt);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0) {
			errno = EIO;
			return -1;
		}
		*written += (uint64_t)n;
		while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

static void
op_submit(struct spool_op *op, tpool_fn work)
{
	pthread_mutex_lock(&op->sp->lock);
	op->sp->inflight++;
	pthread_mutex_unlock(&op->sp->lock);
	tpool_submit(op->sp->io, work, NULL, op, NULL);
}

void
spool_batch_commit(struct spool_batch *b, struct loop *origin, spool_commit_fn cb, void *arg)
{
	struct spool_op *op = &b->op;

	IMP_ASSERT(!b->committing && origin != NULL);
	memset(op, 0, sizeof(*op));
	op->kind = SPOOL_OP_COMMIT;
	op->sp = b->sp;
	op->origin = origin;
	op->batch = b;
	op->commit_cb = cb;
	op->arg = arg;
	memcpy(op->id, b->id, SPOOL_ID_LEN);
	b->committing = 1;
	if (b->nrcpt == 0) {
		pthread_mutex_lock(&b->sp->lock);
		b->sp->stats.failures++;
		pthread_mutex_unlock(&b->sp->lock);
		op->err = EINVAL;
		loop_post(origin, op_callback, op);
		return;
	}
	op_submit(op, commit_work);
}

/* commit_work (pool): write <id>.tmp completely, then join the group. */
static void
commit_work(void *arg)
{
	struct spool_op *op = arg;
	struct spool_batch *b = op->batch;
	struct spool *sp = op->sp;
	int dirfd = sp->folder_fd[spool_folder_of(b->id)];
	struct strbuf meta = STRBUF_INIT;
	uint8_t head[SPOOL_BODY_OFF];
	char tmp[SPOOL_ID_LEN + sizeof(SPOOL_TMP_SUFFIX)];
	struct iovec iov[3];
	int fd, err = 0, reused, fault = fault_of(sp, SPOOL_FAULT_WRITE);

	batch_encode_meta(b, &meta);
	spool_record_head(head, b->body.len, spool_crc32c(0, b->body.data, b->body.len));
	iov[0].iov_base = head;
	iov[0].iov_len = sizeof(head);
	iov[1].iov_base = b->body.data;
	iov[1].iov_len = b->body.len;
	iov[2].iov_base = meta.data;
	iov[2].iov_len = meta.len;
	snprintf(tmp, sizeof(tmp), "%s%s", b->id, SPOOL_TMP_SUFFIX);
	fd = spool_file_create(sp, dirfd, tmp, &reused);
	if (fd < 0) {
		err = errno;
		goto out;
	}
	if (fault != 0) {
		/* Injected: a partial write, then the error. */
		iov[0].iov_len = sizeof(head) / 2;
		write_all(fd, iov, 1, &op->bytes);
		err = fault;
	} else if (write_all(fd, iov, 3, &op->bytes) < 0)
		err = errno;
	else if (reused && ftruncate(fd, (off_t)op->bytes) < 0)
		err = errno;        /* a reused file: drop what the old batch left past ours */
	if (close(fd) < 0 && err == 0)
		err = errno;
	if (err != 0)
		unlinkat(dirfd, tmp, 0);
out:
	strbuf_free(&meta);
	if (err != 0)
		op_fail_early(op, err);
	else
		group_join(op);
}

/* op_fail_early: an operation failed before joining the group. */
static void
op_fail_early(struct spool_op *op, int err)
{
	struct spool *sp = op->sp;

	pthread_mutex_lock(&sp->lock);
	sp->inflight--;
	sp->stats.failures++;
	pthread_cond_broadcast(&sp->joined);
	pthread_mutex_unlock(&sp->lock);
	op->err = err;
	loop_post(op->origin, op_callback, op);
}

/* group_join: queue a written operation for the next sync; lead if nobody does. */
static void
group_join(struct spool_op *op)
{
	struct spool *sp = op->sp;
	int lead;

	op->next = NULL;
	pthread_mutex_lock(&sp->lock);
	*sp->waiting_tail = op;
	sp->waiting_tail = &op->next;
	sp->inflight--;
	sp->joins++;
	lead = !sp->syncing;
	sp->syncing = 1;
	pthread_cond_broadcast(&sp->joined);
	pthread_mutex_unlock(&sp->lock);
	if (lead)
		group_lead(sp);
}

/* ts_after_us: the realtime clock us microseconds from now. */
static struct timespec
ts_after_us(long us)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += us * 1000L;
	while (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

static int
ts_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/*
 * group_wait_writers: with sp->lock held, let writes in flight join the
 * group: wait while they keep joining (each join grants SPOOL_GROUP_WAIT_US
 * more), at most SPOOL_GROUP_WAIT_MAX_US in all; never when none is in flight.
 */
static void
group_wait_writers(struct spool *sp)
{
	struct timespec cap, step, now;
	uint64_t seen;

	if (sp->inflight == 0)
		return;
	cap = ts_after_us(SPOOL_GROUP_WAIT_MAX_US);
	for (;;) {
		seen = sp->joins;
		step = ts_after_us(SPOOL_GROUP_WAIT_US);
		if (ts_before(&cap, &step))
			step = cap;
		while (sp->inflight > 0 && sp->joins == seen)
			if (pthread_cond_timedwait(&sp->joined, &sp->lock, &step) == ETIMEDOUT)
				break;
		clock_gettime(CLOCK_REALTIME, &now);
		if (sp->inflight == 0 || sp->joins == seen || !ts_before(&now, &cap))
			return;
	}
}

/* group_lead: the group commit loop (see the file comment). */
static void
group_lead(struct spool *sp)
{
	struct spool_op *cur, *prev = NULL, **prev_tail, *op, *next;
	char tmp[SPOOL_ID_LEN + sizeof(SPOOL_TMP_SUFFIX)];
	int err;

	for (;;) {
		pthread_mutex_lock(&sp->lock);
		group_wait_writers(sp);
		cur = sp->waiting;
		sp->waiting = NULL;
		sp->waiting_tail = &sp->waiting;
		if (cur == NULL && prev == NULL) {
			sp->syncing = 0;
			pthread_cond_broadcast(&sp->joined);  /* under the lock: spool_close waits */
			pthread_mutex_unlock(&sp->lock);
			return;
		}
		sp->stats.syncs++;
		pthread_mutex_unlock(&sp->lock);

		err = fault_of(sp, SPOOL_FAULT_SYNC);
		if (err == 0) {
			struct timespec t0, t1;

			clock_gettime(CLOCK_MONOTONIC, &t0);
			if (syncfs(sp->base_fd) < 0)
				err = errno;
			clock_gettime(CLOCK_MONOTONIC, &t1);
			spool_sync_observe(elapsed_us(&t0, &t1));
		}

		/* prev: renamed after the last sync; this one made the names durable. */
		for (op = prev; op != NULL; op = next) {
			next = op->next;
			if (err != 0)
				unlinkat(sp->folder_fd[spool_folder_of(op->id)], op->id, 0);
			op_finish(op, err);
		}
		prev = NULL;
		prev_tail = &prev;
		/* cur: data durable; commits now get their names. */
		for (op = cur; op != NULL; op = next) {
			int dirfd = sp->folder_fd[spool_folder_of(op->id)], e = err;

			next = op->next;
			if (op->kind != SPOOL_OP_COMMIT) {
				op_finish(op, e);
				continue;
			}
			snprintf(tmp, sizeof(tmp), "%s%s", op->id, SPOOL_TMP_SUFFIX);
			if (e == 0 && rename_noreplace(dirfd, tmp, op->id) < 0)
				e = errno;
			if (e != 0) {
				unlinkat(dirfd, tmp, 0);
				op_finish(op, e);
				continue;
			}
			op->next = NULL;
			*prev_tail = op;
			prev_tail = &op->next;
		}
	}
}

/* rename_noreplace: rename within dirfd, failing with EEXIST rather than replacing. */
static int
rename_noreplace(int dirfd, const char *from, const char *to)
{
	if (renameat2(dirfd, from, dirfd, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
	/* File systems without RENAME_NOREPLACE: link refuses to replace. */
	if (linkat(dirfd, from, dirfd, to, 0) < 0)
		return -1;
	unlinkat(dirfd, from, 0);
	return 0;
}

/* op_finish (pool): account for a finished operation and post its callback. */
static void
op_finish(struct spool_op *op, int err)
{
	struct spool *sp = op->sp;

	op->err = err;
	pthread_mutex_lock(&sp->lock);
	if (err != 0)
		sp->stats.failures++;
	else if (op->kind == SPOOL_OP_COMMIT) {
		sp->stats.batches++;
		sp->stats.recipients += op->batch->nrcpt;
		sp->stats.bytes += op->bytes;
	} else {
		sp->stats.updates++;
		sp->stats.bytes += op->bytes;
		if (op->removed)
			sp->stats.removed++;
	}
	pthread_mutex_unlock(&sp->lock);
	loop_post(op->origin, op_callback, op);
}

/* op_callback (origin loop): report and release. */
static void
op_callback(void *arg)
{
	struct spool_op *op = arg;

	if (op->kind == SPOOL_OP_COMMIT) {
		struct spool_batch *b = op->batch;

		b->committing = 0;
		if (op->commit_cb != NULL)
			op->commit_cb(b, op->err, op->arg);  /* may free b, and op with it */
		return;
	}
	if (op->done_cb != NULL)
		op->done_cb(op->err, op->arg);
	free((char *)op->st.binding);
	free(op);
}

/* --- state records --- */

static struct spool_op *
state_op_new(struct spool *sp, enum spool_op_kind kind, const char *batch_id, unsigned index,
    struct loop *origin, spool_done_fn cb, void *arg)
{
	struct spool_op *op = xcalloc(1, sizeof(*op));

	op->kind = kind;
	op->sp = sp;
	op->origin = origin;
	op->index = index;
	op->done_cb = cb;
	op->arg = arg;
	snprintf(op->id, sizeof(op->id), "%s", batch_id);
	return op;
}

void
spool_rcpt_update(struct spool *sp, const char *batch_id, unsigned rcpt_index,
    const struct spool_rcpt_state *st, struct loop *origin, spool_done_fn cb, void *arg)
{
	struct spool_op *op = state_op_new(sp, SPOOL_OP_UPDATE, batch_id, rcpt_index, origin, cb, arg);

	IMP_ASSERT(origin != NULL);
	op->st = *st;
	op->st.flags &= ~SPOOL_STATE_DONE;
	op->st.binding = xstrdup(st->binding ? st->binding : "");
	if (!spool_id_valid(batch_id) || strlen(op->st.binding) > SPOOL_STRING_MAX) {
		pthread_mutex_lock(&sp->lock);
		sp->stats.failures++;
		pthread_mutex_unlock(&sp->lock);
		op->err = EINVAL;
		loop_post(origin, op_callback, op);
		return;
	}
	op_submit(op, update_work);
}

void
spool_rcpt_done(struct spool *sp, const char *batch_id, unsigned rcpt_index,
    struct loop *origin, spool_done_fn cb, void *arg)
{
	spool_rcpt_done_ex(sp, batch_id, rcpt_index, 0, origin, cb, arg);
}

void
spool_rcpt_done_ex(struct spool *sp, const char *batch_id, unsigned rcpt_index, unsigned flags,
    struct loop *origin, spool_done_fn cb, void *arg)
{
	struct spool_op *op = state_op_new(sp, SPOOL_OP_DONE, batch_id, rcpt_index, origin, cb, arg);

	IMP_ASSERT(origin != NULL);
	op->done_flags = flags;
	op->st.flags = SPOOL_STATE_DONE;
	if (!spool_id_valid(batch_id)) {
		pthread_mutex_lock(&sp->lock);
		sp->stats.failures++;
		pthread_mutex_unlock(&sp->lock);
		op->err = EINVAL;
		loop_post(origin, op_callback, op);
		return;
	}
	op_submit(op, done_work);
}

/* state_append: append op's STATE record to the open batch file. */
static int
state_append(struct spool_op *op, int fd)
{
	struct strbuf rec = STRBUF_INIT;
	struct iovec iov;
	int fault = fault_of(op->sp, SPOOL_FAULT_WRITE), rc = 0;

	spool_record_state(&rec, op->index, &op->st);
	iov.iov_base = rec.data;
	iov.iov_len = rec.len;
	if (fault != 0) {
		errno = fault;
		rc = -1;
	} else if (write_all(fd, &iov, 1, &op->bytes) < 0)
		rc = -1;
	strbuf_free(&rec);
	return rc;
}

/* update_work (pool): check the recipient exists, append, join the group. */
static void
update_work(void *arg)
{
	struct spool_op *op = arg;
	struct spool_batch_info *info = NULL;
	char why[128];
	int fd, err = 0, st;

	fd = openat(op->sp->folder_fd[spool_folder_of(op->id)], op->id,
	    O_RDWR | O_APPEND | O_CLOEXEC);
	if (fd < 0) {
		op_fail_early(op, errno);
		return;
	}
	st = spool_file_load(fd, 0, &info, why, sizeof(why));
	if (st == SPOOL_LOAD_IOERR)
		err = errno;
	else if (st == SPOOL_PARSE_BAD)
		err = EIO;
	else if (op->index >= info->nrcpt_total)
		err = EINVAL;
	else if (state_append(op, fd) < 0)
		err = errno;
	spool_batch_info_free(info);
	close(fd);
	if (err != 0)
		op_fail_early(op, err);
	else
		group_join(op);
}

/*
 * done_work (pool): append the done record, then read the states back: when
 * every recipient is done, remove the file. Appending before looking makes
 * concurrent dones safe: the last one to append sees every record.
 */
static void
done_work(void *arg)
{
	struct spool_op *op = arg;
	struct spool_batch_info *info = NULL;
	int dirfd = op->sp->folder_fd[spool_folder_of(op->id)];
	char why[128];
	int fd, err = 0, st;
	size_t i, ndone = 0;

	if (op->done_flags & SPOOL_DONE_LAST) {
		/* The caller knows every other recipient is done: remove, no parse. */
		if (spool_file_remove(op->sp, dirfd, op->id) == 0)
			op->removed = 1;
		else if (errno != ENOENT) {
			op_fail_early(op, errno);
			return;
		}
		group_join(op);
		return;
	}
	fd = openat(dirfd, op->id, O_RDWR | O_APPEND | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT && (op->done_flags & SPOOL_DONE_NOCHECK)) {
			group_join(op);     /* removed by the last recipient already */
			return;
		}
		op_fail_early(op, errno);
		return;
	}
	if (state_append(op, fd) < 0)
		err = errno;
	else if (op->done_flags & SPOOL_DONE_NOCHECK) {
		/* not the last: nothing to count */
	} else if ((st = spool_file_load(fd, 0, &info, why, sizeof(why))) == SPOOL_LOAD_IOERR)
		err = errno;
	else if (st == SPOOL_PARSE_BAD)
		err = EIO;
	else if (op->index >= info->nrcpt_total)
		err = EINVAL;
	else {
		for (i = 0; i < info->nrcpt_total; i++)
			ndone += (info->rcpts[i].state.flags & SPOOL_STATE_DONE) != 0;
		if (ndone == info->nrcpt_total) {
			if (spool_file_remove(op->sp, dirfd, op->id) == 0)
				op->removed = 1;
			else if (errno != ENOENT)
				err = errno;
		}
	}
	spool_batch_info_free(info);
	close(fd);
	if (err != 0)
		op_fail_early(op, err);
	else
		group_join(op);
}

/* --- reading a body --- */

int
spool_body_read(const char *base, const char *batch_id, struct strbuf *out, char *err, size_t errlen)
{
	struct spool_batch_info *info = NULL;
	char path[PATH_MAX];
	int fd, st, saved;
	ssize_t n;
	uint64_t off, end;
	char buf[65536];

	if (!spool_id_valid(batch_id)) {
		snprintf(err, errlen, "bad batch id");
		errno = EINVAL;
		return -1;
	}
	snprintf(path, sizeof(path), "%s/%02x/%s", base, spool_folder_of(batch_id), batch_id);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		saved = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(saved));
		errno = saved;
		return -1;
	}
	st = spool_file_load(fd, 1, &info, err, errlen);
	if (st == SPOOL_LOAD_IOERR || st == SPOOL_PARSE_BAD) {
		saved = st == SPOOL_LOAD_IOERR ? errno : EIO;
		if (st == SPOOL_LOAD_IOERR)
			snprintf(err, errlen, "%s: %s", path, strerror(saved));
		close(fd);
		errno = saved;
		return -1;
	}
	/* The load checked the body CRC; read it again into out. */
	off = info->body_off;
	end = info->body_off + info->body_len;
	spool_batch_info_free(info);
	while (off < end) {
		size_t want = end - off < sizeof(buf) ? (size_t)(end - off) : sizeof(buf);

		n = pread(fd, buf, want, (off_t)off);
		if (n <= 0) {
			saved = n < 0 ? errno : EIO;
			snprintf(err, errlen, "%s: %s", path, strerror(saved));
			close(fd);
			errno = saved;
			return -1;
		}
		strbuf_append(out, buf, (size_t)n);
		off += (uint64_t)n;
	}
	close(fd);
	return 0;
}

/*
 * spool.h - the durable spool: batches of recipient-messages on disk.
 *
 * A batch is one submission: one body shared by N recipient-messages, each
 * with its own message id, all tied by the batch id. The listener builds a
 * batch (spool_batch_new, setters, spool_batch_add_rcpt, spool_batch_append)
 * and commits it; the commit callback with err 0 means the whole batch is on
 * stable storage and the session may answer 250. Concurrent commits share
 * file-system syncs (group commit, see docs/spool.md).
 *
 * Later, the queue records per-recipient state (spool_rcpt_update) and final
 * disposition (spool_rcpt_done; the file goes when every recipient is done).
 * At start, spool_scan reads the spool back on the I/O pool and hands every
 * batch with work left to a callback on the origin loop.
 *
 * Threads: spool_open / spool_close on the controlling thread (may block).
 * Everything else is for event-loop threads and never blocks: the disk work
 * runs on the struct tpool given to spool_open and callbacks come back on
 * the loop named by the caller. A batch belongs to one loop at a time.
 * spool_stats, spool_sync_histogram and spool_set_fault may be called from
 * any thread.
 * spool_body_read and spool_walk block: pool threads and tools only.
 *
 * Ownership: the caller owns a batch and frees it with spool_batch_free,
 * never while its commit is in flight (the commit callback may free it).
 * Strings passed in are copied. Info structs handed to callbacks are valid
 * for the duration of the callback only.
 *
 * Errors: calls return 0 / -1 (errno set) or report an errno value to
 * their callback; nothing here logs except the scan, which writes a
 * paniclog line (diag_warn) for every file it quarantines or repairs.
 */
#ifndef IMPETUS_SPOOL_SPOOL_H
#define IMPETUS_SPOOL_SPOOL_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "lib/arena.h"

struct loop;
struct tpool;
struct spool;
struct spool_batch;

/*
 * Ids: 22 lowercase hex digits, TTTTTTTTNNNNNNNNCCCCCC: seconds since the
 * epoch (8), a random per-spool_open nonce (8), a per-open counter (6, mod
 * 2^24). Safe in file names; SPOOL_ID_LEN includes the NUL and fits
 * MESSAGE_ID_LEN (message/message.h).
 */
#define SPOOL_ID_CHARS 22
#define SPOOL_ID_LEN   (SPOOL_ID_CHARS + 1)
#define SPOOL_STRING_MAX 4096   /* longest address, HELO, ENVID or binding name */

/* DSN RET (RFC 3461). */
enum spool_ret {
	SPOOL_RET_UNSET = 0,
	SPOOL_RET_FULL = 1,
	SPOOL_RET_HDRS = 2,
};

/* Envelope flags (spool_batch_set_flags). */
#define SPOOL_F_SMTPUTF8   0x01u   /* MAIL FROM ... SMTPUTF8 */
#define SPOOL_F_8BITMIME   0x02u   /* BODY=8BITMIME */
#define SPOOL_F_BINARYMIME 0x04u   /* BODY=BINARYMIME */

/* DSN NOTIFY flags (spool_batch_add_rcpt); 0 = not given. */
#define SPOOL_NOTIFY_NEVER   0x01u
#define SPOOL_NOTIFY_SUCCESS 0x02u
#define SPOOL_NOTIFY_FAILURE 0x04u
#define SPOOL_NOTIFY_DELAY   0x08u

/* Recipient state flags. */
#define SPOOL_STATE_DONE 0x01u      /* final disposition reached */

/* spool_rcpt_state: what the queue records about one recipient. */
struct spool_rcpt_state {
	const char *binding;            /* binding name, NULL or "" = unbound */
	unsigned retries;               /* transient failures so far */
	struct timeval next_attempt;    /* wall clock of the next attempt, 0 = now */
	unsigned flags;                 /* SPOOL_STATE_* */
};

/* spool_rcpt_info: one recipient-message as read back from disk. */
struct spool_rcpt_info {
	unsigned index;                 /* position in the batch, from 0 */
	char id[SPOOL_ID_LEN];          /* recipient-message id */
	const char *rcpt;               /* recipient address */
	const char *orcpt;              /* DSN ORCPT, NULL when not given */
	unsigned notify;                /* SPOOL_NOTIFY_* */
	struct spool_rcpt_state state;  /* latest recorded state */
};

/* spool_batch_info: one batch file as read back from disk. */
struct spool_batch_info {
	char batch_id[SPOOL_ID_LEN];    /* the batch id (also the file name) */
	const char *mail_from;          /* reverse path, "" = null */
	const char *envid;              /* DSN ENVID, NULL when not given */
	int ret;                        /* enum spool_ret */
	unsigned flags;                 /* SPOOL_F_* */
	uint64_t conn_id;               /* inbound connection, 0 = local */
	struct sockaddr_storage peer;   /* injecting peer, family 0 = local */
	const char *helo;               /* HELO/EHLO name, "" when none */
	const char *protocol;           /* "esmtp", "esmtps", "local", ... */
	struct timeval received;        /* reception time */
	uint64_t body_off;              /* offset of the body bytes in the file */
	uint64_t body_len;              /* bytes of body */
	uint32_t body_crc;              /* CRC32C of the body */
	size_t nrcpt_total;             /* recipients in the batch, done included */
	size_t nrcpt;                   /* entries in rcpts */
	struct spool_rcpt_info *rcpts;  /* recipients (a scan lists only those not done) */
	uint64_t valid_len;             /* bytes of the file that parsed (a torn tail excluded) */
	struct arena mem;               /* owns the strings and the rcpts array */
};

/* spool_stats: counters since spool_open. */
struct spool_stats {
	uint64_t batches;               /* batches committed successfully */
	uint64_t recipients;            /* recipient-messages in those batches */
	uint64_t syncs;                 /* sync system calls (syncfs) issued */
	uint64_t bytes;                 /* bytes written to batch files */
	uint64_t failures;              /* commits, updates and dones that failed */
	uint64_t updates;               /* state records made durable (updates and dones) */
	uint64_t removed;               /* batch files removed (all recipients done) */
};

/*
 * The group commit's sync latency, process-wide (every spool of the
 * process): one count per syncfs issued by a group commit (the syncs of
 * struct spool_stats, less those an injected SPOOL_FAULT_SYNC replaced), in
 * the first bucket whose bound it does not exceed.
 */
#define SPOOL_SYNC_BUCKETS 16
/* spool_sync_bucket_us[i]: the upper bound of bucket i, in microseconds (ascending). */
extern const uint64_t spool_sync_bucket_us[SPOOL_SYNC_BUCKETS];
struct spool_sync_histogram {
	/* syncs per bucket, not cumulative; [SPOOL_SYNC_BUCKETS]: over the last bound */
	uint64_t bucket[SPOOL_SYNC_BUCKETS + 1];
	uint64_t sum_us;                /* total time spent in those syncs, microseconds */
};

/* spool_scan_result: what a scan found. */
struct spool_scan_result {
	uint64_t batches;               /* batches handed to each_cb */
	uint64_t recipients;            /* recipients handed to each_cb */
	uint64_t temp_removed;          /* leftover temp files deleted */
	uint64_t quarantined;           /* files moved to quarantine/ */
	uint64_t repaired;              /* files whose torn tail was cut */
	uint64_t finished;              /* files with every recipient done, deleted */
	int err;                        /* 0, or the errno of a folder that could not be read */
};

/* Fault injection for tests (spool_set_fault). */
enum spool_fault {
	SPOOL_FAULT_WRITE = 0,          /* writes of batch files and state records fail */
	SPOOL_FAULT_SYNC = 1,           /* the sync fails */
	SPOOL_FAULT_COUNT
};

/* spool_commit_fn: a commit finished; err 0 = durable, else an errno. */
typedef void (*spool_commit_fn)(struct spool_batch *b, int err, void *arg);
/* spool_done_fn: an update or done finished; err 0 = durable, else an errno. */
typedef void (*spool_done_fn)(int err, void *arg);
/* spool_scan_each_fn: one batch with work left (valid during the call only). */
typedef void (*spool_scan_each_fn)(const struct spool_batch_info *info, void *arg);
/* spool_scan_done_fn: the scan is over. */
typedef void (*spool_scan_done_fn)(const struct spool_scan_result *res, void *arg);

/*
 * spool_open: open (creating if needed) the spool at base: base/00 .. base/ff
 * and base/quarantine/. io runs every disk operation; it must outlive the
 * spool. Blocks (controlling thread, at start). Returns NULL with a reason
 * in err.
 */
struct spool *spool_open(const char *base, struct tpool *io, char *err, size_t errlen);
/* spool_close: free sp. Every commit, update, done and scan must have had
 * its callback (it waits for the pool thread finishing a sync). */
/* spool_stop: before the pool stops: a running scan stops handing out work
 * (its callbacks still run; the done callback does not). */
void spool_stop(struct spool *sp);
void spool_close(struct spool *sp);
/* spool_base: the base directory given to spool_open. */
const char *spool_base(const struct spool *sp);
/* spool_id_new: a fresh id (thread-safe); out holds SPOOL_ID_LEN bytes. */
void spool_id_new(struct spool *sp, char *out);
/* spool_stats: copy the counters (thread-safe). */
void spool_stats(struct spool *sp, struct spool_stats *out);
/* spool_sync_histogram: copy the sync latency histogram (thread-safe, relaxed:
 * sum_us may lag the buckets by a sync in progress). */
void spool_sync_histogram(struct spool_sync_histogram *out);
/* spool_sync_observe: count one sync of us microseconds (the group commit; tests). */
void spool_sync_observe(uint64_t us);
/* spool_set_fault: make operations of kind fail with err (0 clears). */
void spool_set_fault(struct spool *sp, enum spool_fault kind, int err);

/* spool_batch_new: an empty batch with a fresh batch id. */
struct spool_batch *spool_batch_new(struct spool *sp);
/* spool_batch_free: free b (NULL allowed); never while its commit is in flight. */
void spool_batch_free(struct spool_batch *b);
/*
 * Envelope setters, all copying; each returns 0, or -1 with errno EINVAL when
 * a string is longer than SPOOL_STRING_MAX. NULL clears optional values.
 */
int spool_batch_set_mail_from(struct spool_batch *b, const char *reverse_path);
int spool_batch_set_dsn(struct spool_batch *b, enum spool_ret ret, const char *envid);
void spool_batch_set_flags(struct spool_batch *b, unsigned flags);
/* peer NULL = local injection; when NULL = now. */
int spool_batch_set_reception(struct spool_batch *b, uint64_t conn_id,
    const struct sockaddr *peer, const char *helo, const char *protocol,
    const struct timeval *when);
/*
 * spool_batch_add_rcpt: add a recipient-message with a fresh message id.
 * orcpt NULL when not given; notify SPOOL_NOTIFY_*; binding_name NULL or ""
 * when not yet bound. Returns the recipient's index, or -1 with errno EINVAL
 * (empty or over-long string).
 */
int spool_batch_add_rcpt(struct spool_batch *b, const char *rcpt, const char *orcpt,
    unsigned notify_flags, const char *binding_name);
/* spool_batch_append: add body bytes (dot-unstuffed CRLF lines), kept in memory. */
void spool_batch_append(struct spool_batch *b, const void *data, size_t len);
/*
 * spool_batch_commit: write b and make it durable on the io pool, then call
 * cb(b, err, arg) on origin. err 0: the batch file and its directory entry
 * are on stable storage. Otherwise an errno (ENOSPC, EIO, EROFS, EINVAL for
 * a batch without recipients, ...) and nothing of the batch is left on disk.
 * b must not be touched until cb; cb may free it. origin must be a running
 * loop (normally the caller's: loop_current()).
 */
void spool_batch_commit(struct spool_batch *b, struct loop *origin, spool_commit_fn cb, void *arg);

/* Accessors. Ids are stable from creation (batch) or spool_batch_add_rcpt. */
const char *spool_batch_id(const struct spool_batch *b);
size_t spool_batch_rcpt_count(const struct spool_batch *b);
/* spool_batch_rcpt_id: message id of recipient i (NULL when out of range). */
const char *spool_batch_rcpt_id(const struct spool_batch *b, size_t i);
const char *spool_batch_rcpt(const struct spool_batch *b, size_t i);
size_t spool_batch_body_len(const struct spool_batch *b);
const char *spool_batch_mail_from(const struct spool_batch *b);

/* After the commit, for the queue: the envelope (strings borrowed from b),
 * the recipients' DSN values and bindings, and the body, handed over. */
void spool_batch_envelope(const struct spool_batch *b, const char **mail_from, const char **envid,
    int *ret, unsigned *flags, uint64_t *conn_id, struct sockaddr_storage *peer,
    struct timeval *received);
const char *spool_batch_rcpt_orcpt(const struct spool_batch *b, size_t i);
unsigned spool_batch_rcpt_notify(const struct spool_batch *b, size_t i);
const char *spool_batch_rcpt_binding(const struct spool_batch *b, size_t i);
/* spool_batch_set_rcpt_binding: set recipient i's binding before the commit (copied). */
int spool_batch_set_rcpt_binding(struct spool_batch *b, size_t i, const char *binding_name);
/* spool_batch_take_body: the body bytes, NUL-terminated (the caller frees
 * them; NULL for an empty body); *len their count. b keeps none. */
char *spool_batch_take_body(struct spool_batch *b, size_t *len);
/* spool_batch_body: the body so far (before the commit), len bytes. */
const char *spool_batch_body(const struct spool_batch *b, size_t *len);
/* spool_batch_body_cut: remove len bytes at off from the body (a header the
 * queue consumes, e.g. X-Binding). */
void spool_batch_body_cut(struct spool_batch *b, size_t off, size_t len);

/*
 * spool_rcpt_update: record st for recipient rcpt_index of batch_id
 * (appended to the batch file, made durable, group-committed), then
 * cb(err, arg) on origin. st->flags DONE is not allowed here (use
 * spool_rcpt_done). ENOENT when the batch does not exist, EINVAL for a bad id.
 */
void spool_rcpt_update(struct spool *sp, const char *batch_id, unsigned rcpt_index,
    const struct spool_rcpt_state *st, struct loop *origin, spool_done_fn cb, void *arg);
/*
 * spool_rcpt_done: recipient rcpt_index is finished. When every recipient of
 * the batch is done the file is removed. Durable before cb(err, arg) on origin.
 */
void spool_rcpt_done(struct spool *sp, const char *batch_id, unsigned rcpt_index,
    struct loop *origin, spool_done_fn cb, void *arg);

/*
 * spool_rcpt_done_ex: spool_rcpt_done with hints from a caller that tracks
 * its batches: SPOOL_DONE_LAST says every other recipient is already done
 * (the file is removed, nothing appended or read); SPOOL_DONE_NOCHECK says
 * some other recipient is not (the record is appended, the file not read
 * back; a file already removed counts as done).
 */
#define SPOOL_DONE_LAST    0x01u
#define SPOOL_DONE_NOCHECK 0x02u
void spool_rcpt_done_ex(struct spool *sp, const char *batch_id, unsigned rcpt_index,
    unsigned flags, struct loop *origin, spool_done_fn cb, void *arg);

/*
 * spool_scan: read the spool back on the io pool (without blocking origin):
 * each batch with a recipient not done goes to each_cb on origin (its rcpts
 * list only the recipients not done, with their states), in chunks of a few
 * hundred per loop turn; leftover temp files of earlier runs are removed;
 * files that fail to parse or checksum go to quarantine/ with a paniclog
 * line; a torn state record at a file's tail is cut off (paniclog line);
 * files whose recipients are all done are deleted. Batches written by this
 * spool_open are skipped (they are live). done_cb(result, arg) ends it.
 */
void spool_scan(struct spool *sp, struct loop *origin, spool_scan_each_fn each_cb,
    spool_scan_done_fn done_cb, void *arg);

/*
 * spool_body_read: append the body of batch batch_id of the spool at base to
 * out, after checking the file's checksums. Blocking: pool threads and
 * tools. Returns 0, or -1 with errno set and a reason in err.
 */
struct strbuf;
int spool_body_read(const char *base, const char *batch_id, struct strbuf *out,
    char *err, size_t errlen);

/*
 * spool_walk: read-only walk of the spool at base, for tools: fn is called
 * for every file of the hashed folders with its path, the parse status
 * (0 ok, 1 ok with a torn tail, -1 corrupt, 2 temp file, 3 unknown name),
 * the parsed info (all recipients, NULL unless status is 0 or 1) and a
 * reason (for -1 and 3). Blocking. Returns 0, or -1 with errno when a
 * folder cannot be read.
 */
typedef void (*spool_walk_fn)(const char *path, int status, const struct spool_batch_info *info,
    const char *reason, void *arg);
int spool_walk(const char *base, spool_walk_fn fn, void *arg);

/* spool_batch_info_free: free an info returned by spool_record_parse. */
void spool_batch_info_free(struct spool_batch_info *info);

/* spool_id_valid: 1 if s is a well-formed id. */
int spool_id_valid(const char *s);

#endif

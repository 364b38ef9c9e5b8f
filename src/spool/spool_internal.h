/*
 * spool_internal.h - what spool.c and spool_scan.c share: the spool
 * object, path helpers and the file loader. Not for other modules.
 */
#ifndef IMPETUS_SPOOL_SPOOL_INTERNAL_H
#define IMPETUS_SPOOL_SPOOL_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "spool/spool.h"

#define SPOOL_FOLDERS     256           /* hashed folders 00 .. ff */
#define SPOOL_TMP_SUFFIX  ".tmp"        /* a batch file being written */
#define SPOOL_QUARANTINE  "quarantine"
#define SPOOL_FREE        "free"        /* removed batch files kept for reuse */
#define SPOOL_FREE_MAX    1024          /* files kept there at most */
#define SPOOL_LOAD_IOERR  (-2)          /* spool_file_load: read failed, errno set */
#define SPOOL_FILE_MAX    ((uint64_t)1 << 32)  /* largest batch file read back */

struct spool_op;

struct spool {
	char *base;                     /* base directory, owned */
	int base_fd;                    /* open base directory: syncfs target */
	int folder_fd[SPOOL_FOLDERS];   /* open hashed folders */
	int quarantine_fd;              /* open quarantine/ folder */
	int free_fd;                    /* open free/ folder */
	pthread_mutex_t free_lock;      /* guards the free pool */
	uint32_t *free_names;           /* numbers of the files in free/ ("f%08x") */
	size_t nfree;                   /* entries in free_names */
	uint32_t free_next;             /* the next number to give a file */
	struct tpool *io;               /* runs every disk operation, not owned */
	atomic_int stopping;            /* spool_stop: no new pool work is started */
	uint32_t nonce;                 /* random, per spool_open: ids' middle part */
	atomic_uint counter;            /* ids handed out (mod 2^24 in ids) */
	atomic_int fault[SPOOL_FAULT_COUNT];  /* injected errno per enum spool_fault */

	pthread_mutex_t lock;           /* guards every field below */
	pthread_cond_t joined;          /* an operation joined the group or failed */
	struct spool_op *waiting;       /* written, waiting for the next sync (FIFO) */
	struct spool_op **waiting_tail; /* where the next one goes */
	int syncing;                    /* a pool thread leads the group commit */
	int inflight;                   /* submitted, not yet joined or failed */
	uint64_t joins;                 /* operations that joined a group, ever */
	struct spool_stats stats;       /* counters */
};

/* spool_folder_of: the hashed folder (0 .. 255) of an id. */
unsigned spool_folder_of(const char *id);
/* spool_id_nonce: the nonce part of a valid id. */
uint32_t spool_id_nonce(const char *id);
/*
 * spool_file_load: read the batch file open on fd. with_body: the whole file,
 * body checksum included; else only the head and the records after the body.
 * Returns a SPOOL_PARSE_* status with *out set for OK / TORN, or
 * SPOOL_LOAD_IOERR with errno set.
 */
int spool_file_load(int fd, int with_body, struct spool_batch_info **out, char *err, size_t errlen);

#endif

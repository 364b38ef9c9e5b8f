/*
 * impetus-spool.c - look inside a spool without changing it.
 *
 *   impetus-spool list SPOOLDIR      one line per recipient-message not done:
 *                                    msgid batchid index size retries next binding from rcpt
 *   impetus-spool show ID SPOOLDIR   the envelope, recipients and body of a batch
 *                                    (ID: a batch id or a recipient-message id)
 *   impetus-spool check SPOOLDIR     every file checked; problems on stdout
 *   (-s SPOOLDIR before the command works too)
 *
 * Read-only: it never quarantines, truncates or deletes (the daemon's scan
 * does). Exit status: 0 fine, 1 corrupt files found (check) or ID not
 * found (show), 2 usage or I/O error. Empty values print as "-", the null
 * reverse path as "<>".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/strbuf.h"
#include "spool/spool.h"

struct tool_ctx {
	const char *want;               /* show: the id looked for */
	char path[4096];                /* show: the batch file found */
	int found;                      /* show: found it */
	unsigned long batches;          /* files that parsed */
	unsigned long recipients;       /* recipients not done */
	unsigned long corrupt;          /* files that failed */
	unsigned long torn;             /* files with a torn tail */
	unsigned long temps;            /* temp files */
	unsigned long unknown;          /* files with other names */
};

static void usage(void);
static const char *dash(const char *s);
static void print_peer(const struct sockaddr_storage *ss);
static void list_one(const char *path, int status, const struct spool_batch_info *info,
    const char *reason, void *arg);
static void check_one(const char *path, int status, const struct spool_batch_info *info,
    const char *reason, void *arg);
static void show_find(const char *path, int status, const struct spool_batch_info *info,
    const char *reason, void *arg);
static void show_print(const struct spool_batch_info *info);

static void
usage(void)
{
	fprintf(stderr, "usage: impetus-spool list SPOOLDIR\n"
	    "       impetus-spool show ID SPOOLDIR\n"
	    "       impetus-spool check SPOOLDIR\n"
	    "       (or impetus-spool -s SPOOLDIR list|show ID|check)\n");
	exit(2);
}

static const char *
dash(const char *s)
{
	return s == NULL || *s == '\0' ? "-" : s;
}

static void
print_peer(const struct sockaddr_storage *ss)
{
	char buf[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &in->sin_addr, buf, sizeof(buf));
		printf("%s:%u", buf, ntohs(in->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof(buf));
		printf("[%s]:%u", buf, ntohs(in6->sin6_port));
	} else
		printf("local");
}

static void
list_one(const char *path, int status, const struct spool_batch_info *info,
    const char *reason, void *arg)
{
	struct tool_ctx *t = arg;
	size_t i;

	if (info == NULL) {
		if (status == -1) {
			t->corrupt++;
			fprintf(stderr, "impetus-spool: corrupt %s: %s\n", path, reason);
		}
		return;
	}
	t->batches++;
	for (i = 0; i < info->nrcpt; i++) {
		const struct spool_rcpt_info *r = &info->rcpts[i];

		if (r->state.flags & SPOOL_STATE_DONE)
			continue;
		t->recipients++;
		printf("%s %s %u %llu %u %lld %s %s %s\n", r->id, info->batch_id, r->index,
		    (unsigned long long)info->body_len, r->state.retries,
		    (long long)r->state.next_attempt.tv_sec, dash(r->state.binding),
		    *info->mail_from ? info->mail_from : "<>", r->rcpt);
	}
}

static void
check_one(const char *path, int status, const struct spool_batch_info *info,
    const char *reason, void *arg)
{
	struct tool_ctx *t = arg;
	size_t i;

	switch (status) {
	case 0:
	case 1:
		t->batches++;
		for (i = 0; i < info->nrcpt; i++)
			t->recipients += !(info->rcpts[i].state.flags & SPOOL_STATE_DONE);
		if (status == 1) {
			t->torn++;
			printf("torn %s: state records after offset %llu are cut short\n", path,
			    (unsigned long long)info->valid_len);
		}
		break;
	case 2:
		t->temps++;
		printf("temp %s\n", path);
		break;
	case 3:
		t->unknown++;
		printf("unknown %s: %s\n", path, reason);
		break;
	default:
		t->corrupt++;
		printf("corrupt %s: %s\n", path, reason);
		break;
	}
}

static void
show_find(const char *path, int status, const struct spool_batch_info *info,
    const char *reason, void *arg)
{
	struct tool_ctx *t = arg;
	size_t i;

	if (info == NULL || t->found)
		return;
	if (strcmp(info->batch_id, t->want) == 0)
		t->found = 1;
	for (i = 0; i < info->nrcpt && !t->found; i++)
		t->found = strcmp(info->rcpts[i].id, t->want) == 0;
	if (t->found) {
		snprintf(t->path, sizeof(t->path), "%s", path);
		show_print(info);
	}
}

static void
show_print(const struct spool_batch_info *info)
{
	size_t i;

	printf("batch: %s\n", info->batch_id);
	printf("mail-from: %s\n", *info->mail_from ? info->mail_from : "<>");
	printf("envid: %s\n", dash(info->envid));
	printf("ret: %s\n", info->ret == SPOOL_RET_FULL ? "FULL" :
	    info->ret == SPOOL_RET_HDRS ? "HDRS" : "-");
	printf("flags:%s%s%s\n", info->flags & SPOOL_F_SMTPUTF8 ? " SMTPUTF8" : "",
	    info->flags & SPOOL_F_8BITMIME ? " 8BITMIME" : "",
	    info->flags & SPOOL_F_BINARYMIME ? " BINARYMIME" : "");
	printf("conn: %llu\npeer: ", (unsigned long long)info->conn_id);
	print_peer(&info->peer);
	printf("\nhelo: %s\nprotocol: %s\n", dash(info->helo), dash(info->protocol));
	printf("received: %lld.%06ld\n", (long long)info->received.tv_sec,
	    (long)info->received.tv_usec);
	printf("body: %llu bytes at offset %llu, crc32c %08x\n",
	    (unsigned long long)info->body_len, (unsigned long long)info->body_off,
	    (unsigned)info->body_crc);
	for (i = 0; i < info->nrcpt; i++) {
		const struct spool_rcpt_info *r = &info->rcpts[i];

		printf("rcpt %u: %s %s orcpt=%s notify=%#x binding=%s retries=%u next=%lld%s\n",
		    r->index, r->id, r->rcpt, dash(r->orcpt), r->notify, dash(r->state.binding),
		    r->state.retries, (long long)r->state.next_attempt.tv_sec,
		    r->state.flags & SPOOL_STATE_DONE ? " done" : "");
	}
}

int
main(int argc, char **argv)
{
	struct tool_ctx t;
	const char *dir = NULL, *cmd;
	int i = 1;

	memset(&t, 0, sizeof(t));
	if (argc > 2 && strcmp(argv[1], "-s") == 0) {
		dir = argv[2];
		i = 3;
	}
	if (i >= argc)
		usage();
	cmd = argv[i++];
	if (strcmp(cmd, "show") == 0) {
		if (i >= argc)
			usage();
		t.want = argv[i++];
	} else if (strcmp(cmd, "list") != 0 && strcmp(cmd, "check") != 0)
		usage();
	if (dir == NULL) {
		if (i >= argc)
			usage();
		dir = argv[i++];
	}
	if (i != argc)
		usage();

	if (strcmp(cmd, "list") == 0) {
		if (spool_walk(dir, list_one, &t) < 0) {
			fprintf(stderr, "impetus-spool: %s: %s\n", dir, strerror(errno));
			return 2;
		}
		return 0;
	}
	if (strcmp(cmd, "check") == 0) {
		if (spool_walk(dir, check_one, &t) < 0) {
			fprintf(stderr, "impetus-spool: %s: %s\n", dir, strerror(errno));
			return 2;
		}
		printf("%lu batches, %lu recipients to deliver, %lu corrupt, %lu torn, "
		    "%lu temp, %lu unknown\n", t.batches, t.recipients, t.corrupt, t.torn,
		    t.temps, t.unknown);
		return t.corrupt || t.unknown ? 1 : 0;
	}
	if (spool_walk(dir, show_find, &t) < 0) {
		fprintf(stderr, "impetus-spool: %s: %s\n", dir, strerror(errno));
		return 2;
	}
	if (!t.found) {
		fprintf(stderr, "impetus-spool: %s: no such batch or message\n", t.want);
		return 1;
	}
	{
		struct strbuf body = STRBUF_INIT;
		char err[256];
		const char *base = strrchr(t.path, '/');

		/* The batch id is the file name. */
		printf("\n");
		fflush(stdout);
		if (spool_body_read(dir, base + 1, &body, err, sizeof(err)) < 0) {
			fprintf(stderr, "impetus-spool: %s\n", err);
			strbuf_free(&body);
			return 2;
		}
		fwrite(body.data ? body.data : "", 1, body.len, stdout);
		strbuf_free(&body);
	}
	return 0;
}

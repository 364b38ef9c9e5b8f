/*
 * spool_test.c - unit tests for src/spool/ (spool.c, spool_record.c,
 * spool_scan.c).
 *
 * Ids are unique over 100,000 allocations and across two spool_open of one
 * folder; a committed batch reads back with the same envelope, body,
 * recipients and states; 200 concurrent commits from 4 loops share syncs
 * and each callback fires once, on its loop; updates and dones are durable
 * and the last done removes the file; a scan removes leftover temp files
 * but not live ones, quarantines corrupt, truncated, bit-flipped and
 * unknown files while loading the rest, and cuts a torn state record; a
 * scan of 10,000 batches finishes without stalling its loop; injected write
 * and sync failures give the errno and leave nothing on disk.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "event/loop.h"
#include "event/timer.h"
#include "event/tpool.h"
#include "lib/strbuf.h"
#include "lib/xalloc.h"
#include "message/message.h"
#include "spool/spool.h"
#include "spool/spool_internal.h"
#include "spool/spool_record.h"
#include "test.h"

static struct loop *main_loop;          /* the test thread's loop */
static struct tpool *pool;              /* the spool's io pool */
static char base[64];                   /* the spool folder of the current test */

struct waiter {
	atomic_int *counter;            /* watched */
	int want;                       /* value to reach */
	uint64_t deadline_ms;           /* give up after this */
	int timed_out;                  /* gave up */
};

static void env_setup(const char *name);
static void env_teardown(void);
static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw);
static void waiter_tick(struct timer *t, void *arg);
static int wait_count(atomic_int *counter, int want, int timeout_ms);
static void count_file(const char *path, int status, const struct spool_batch_info *info,
    const char *reason, void *arg);
static int count_files(void);
static int count_quarantine(void);
static void batch_path(const char *id, char *out, size_t len);
static void commit_cb(struct spool_batch *b, int err, void *arg);
static int commit_one(struct spool *sp, struct spool_batch *b);
static struct spool_batch *simple_batch(struct spool *sp, int nrcpt, size_t body_len);
static void state_cb(int err, void *arg);
static int state_wait(void);
static void scan_collect(const struct spool_batch_info *info, void *arg);
static void scan_finished(const struct spool_scan_result *res, void *arg);
static int scan_run(struct spool *sp, int timeout_ms);

static void
env_setup(const char *name)
{
	char err[256];

	snprintf(base, sizeof(base), "/tmp/spool_test.%s.XXXXXX", name);
	CHECK(mkdtemp(base) != NULL, "mkdtemp: %s", strerror(errno));
	main_loop = loop_main_new();
	pool = tpool_start(4, err, sizeof(err));
	CHECK(main_loop != NULL && pool != NULL, "loop or pool: %s", err);
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	remove(path);
	return 0;
}

static void
env_teardown(void)
{
	tpool_stop(pool);
	loop_main_free(main_loop);
	pool = NULL;
	main_loop = NULL;
	nftw(base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void
waiter_tick(struct timer *t, void *arg)
{
	struct waiter *w = arg;

	if (atomic_load(w->counter) >= w->want) {
		loop_main_break(main_loop);
	} else if (loop_now_ms(main_loop) > w->deadline_ms) {
		w->timed_out = 1;
		loop_main_break(main_loop);
	}
}

/* wait_count: run the main loop until *counter >= want; 1, or 0 on timeout. */
static int
wait_count(atomic_int *counter, int want, int timeout_ms)
{
	struct waiter w = { counter, want, loop_now_ms(main_loop) + (uint64_t)timeout_ms, 0 };
	struct timer *t = timer_new(main_loop, waiter_tick, &w);

	timer_start_every_ms(t, 1);
	loop_main_run(main_loop);
	timer_free(t);
	return !w.timed_out;
}

static void
count_file(const char *path, int status, const struct spool_batch_info *info,
    const char *reason, void *arg)
{
	(*(int *)arg)++;
}

/* count_files: entries of every kind in the hashed folders. */
static int
count_files(void)
{
	int n = 0;

	spool_walk(base, count_file, &n);
	return n;
}

static int
count_quarantine(void)
{
	char path[256];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "%s/quarantine", base);
	if ((d = opendir(path)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

static void
batch_path(const char *id, char *out, size_t len)
{
	snprintf(out, len, "%s/%02x/%s", base, spool_folder_of(id), id);
}

/* --- commits on the main loop --- */

static atomic_int commits_done;         /* commit callbacks run */
static int commit_err;                  /* err of the latest */

static void
commit_cb(struct spool_batch *b, int err, void *arg)
{
	commit_err = err;
	atomic_fetch_add(&commits_done, 1);
}

/* commit_one: commit b from the main loop and wait; the callback's err. */
static int
commit_one(struct spool *sp, struct spool_batch *b)
{
	int before = atomic_load(&commits_done);

	spool_batch_commit(b, main_loop, commit_cb, NULL);
	if (!wait_count(&commits_done, before + 1, 20000))
		return ETIMEDOUT;
	return commit_err;
}

static struct spool_batch *
simple_batch(struct spool *sp, int nrcpt, size_t body_len)
{
	struct spool_batch *b = spool_batch_new(sp);
	char rcpt[64];
	size_t i;
	int r;

	spool_batch_set_mail_from(b, "sender@example.org");
	for (r = 0; r < nrcpt; r++) {
		snprintf(rcpt, sizeof(rcpt), "user%d@example.net", r);
		spool_batch_add_rcpt(b, rcpt, NULL, 0, NULL);
	}
	spool_batch_append(b, "Subject: test\r\n\r\n", 17);
	for (i = 17; i < body_len; i++)
		spool_batch_append(b, i % 80 == 79 ? "\n" : "x", 1);
	return b;
}

static atomic_int states_done;          /* update / done callbacks run */
static int state_err;                   /* err of the latest */
static int state_err_any;               /* the latest err that was not 0 */

static void
state_cb(int err, void *arg)
{
	state_err = err;
	if (err != 0)
		state_err_any = err;
	atomic_fetch_add(&states_done, 1);
}

static int states_expected;             /* callbacks asked for so far */

/* state_wait: wait for the callback of the one update or done just submitted. */
static int
state_wait(void)
{
	if (!wait_count(&states_done, ++states_expected, 20000))
		return ETIMEDOUT;
	return state_err;
}

/* --- scans --- */

#define SEEN_MAX 16
static struct {
	char id[SPOOL_ID_LEN];
	struct spool_batch_info copy;   /* scalars only; strings checked in the callback */
	size_t nrcpt;
} seen[SEEN_MAX];
static int nseen;                       /* batches handed to each_cb */
static atomic_int scans_done;
static struct spool_scan_result scan_res;
static void (*scan_check)(const struct spool_batch_info *info);  /* per-batch checks */

static void
scan_collect(const struct spool_batch_info *info, void *arg)
{
	if (nseen < SEEN_MAX) {
		memcpy(seen[nseen].id, info->batch_id, SPOOL_ID_LEN);
		seen[nseen].nrcpt = info->nrcpt;
	}
	nseen++;
	if (scan_check != NULL)
		scan_check(info);
}

static void
scan_finished(const struct spool_scan_result *res, void *arg)
{
	scan_res = *res;
	atomic_fetch_add(&scans_done, 1);
}

static int
scan_run(struct spool *sp, int timeout_ms)
{
	int before = atomic_load(&scans_done);

	nseen = 0;
	memset(&scan_res, 0, sizeof(scan_res));
	spool_scan(sp, main_loop, scan_collect, scan_finished, NULL);
	return wait_count(&scans_done, before + 1, timeout_ms);
}

static int
seen_has(const char *id)
{
	int i;

	for (i = 0; i < nseen && i < SEEN_MAX; i++)
		if (strcmp(seen[i].id, id) == 0)
			return 1;
	return 0;
}

/* --- ids --- */

static int
id_cmp(const void *a, const void *b)
{
	return memcmp(a, b, SPOOL_ID_LEN);
}

static void
test_ids_unique(void)
{
	enum { N = 100000, M = 10000 };
	char (*ids)[SPOOL_ID_LEN] = malloc((size_t)(N + 2 * M) * SPOOL_ID_LEN);
	struct spool *a, *b;
	char err[256];
	int i, dups = 0, bad = 0;

	env_setup("ids");
	a = spool_open(base, pool, err, sizeof(err));
	b = spool_open(base, pool, err, sizeof(err));
	CHECK(a != NULL && b != NULL, "spool_open: %s", err);
	if (a == NULL || b == NULL)
		goto out;
	CHECK(SPOOL_ID_LEN <= MESSAGE_ID_LEN, "SPOOL_ID_LEN %d, MESSAGE_ID_LEN %d",
	    SPOOL_ID_LEN, MESSAGE_ID_LEN);
	for (i = 0; i < N; i++)
		spool_id_new(a, ids[i]);
	for (i = 0; i < M; i++) {
		spool_id_new(a, ids[N + 2 * i]);
		spool_id_new(b, ids[N + 2 * i + 1]);
	}
	for (i = 0; i < N + 2 * M; i++)
		bad += !spool_id_valid(ids[i]) || strlen(ids[i]) != SPOOL_ID_CHARS;
	CHECK_INT(bad, 0, "malformed ids");
	qsort(ids, N + 2 * M, SPOOL_ID_LEN, id_cmp);
	for (i = 1; i < N + 2 * M; i++)
		dups += memcmp(ids[i - 1], ids[i], SPOOL_ID_LEN) == 0;
	CHECK_INT(dups, 0, "duplicate ids over 120,000 (two spool_open)");
	CHECK(a->nonce != b->nonce, "two opens share nonce %08x", a->nonce);
	CHECK_INT(spool_id_valid("0123456789abcdef012345"), 1, "valid id");
	CHECK_INT(spool_id_valid("0123456789abcdef01234G"), 0, "upper-case id");
	CHECK_INT(spool_id_valid("0123456789abcdef01234"), 0, "short id");
	CHECK_INT(spool_id_valid("../../etc/passwd/aaaaa"), 0, "path id");
out:
	spool_close(a);
	spool_close(b);
	env_teardown();
	free(ids);
}

/* --- round trip --- */

static const char rt_body[] = "Received: from x\r\nSubject: round trip\r\n\r\nline one\r\n"
    ".dot line kept\r\n\r\nlast\r\n";
static struct sockaddr_in6 rt_peer;
static const char *rt_rcpt_ids[3];

static void
rt_check(const struct spool_batch_info *info)
{
	const struct sockaddr_in6 *p = (const struct sockaddr_in6 *)&info->peer;

	CHECK_STR(info->mail_from, "bounces+x@example.org", "mail_from");
	CHECK_STR(info->envid, "ENV-42", "envid");
	CHECK_INT(info->ret, SPOOL_RET_HDRS, "ret");
	CHECK_INT(info->flags, SPOOL_F_SMTPUTF8 | SPOOL_F_8BITMIME, "flags");
	CHECK_INT(info->conn_id, 987654321, "conn_id");
	CHECK_INT(info->peer.ss_family, AF_INET6, "peer family");
	CHECK(memcmp(&p->sin6_addr, &rt_peer.sin6_addr, 16) == 0, "peer address differs");
	CHECK_INT(ntohs(p->sin6_port), 40001, "peer port");
	CHECK_STR(info->helo, "client.example.net", "helo");
	CHECK_STR(info->protocol, "esmtpsa", "protocol");
	CHECK_INT(info->received.tv_sec, 1700000000, "received s");
	CHECK_INT(info->received.tv_usec, 123456, "received us");
	CHECK_INT(info->body_len, sizeof(rt_body) - 1, "body_len");
	CHECK_INT(info->nrcpt, 3, "nrcpt");
	CHECK_INT(info->nrcpt_total, 3, "nrcpt_total");
	if (info->nrcpt != 3)
		return;
	CHECK_STR(info->rcpts[0].rcpt, "a@example.com", "rcpt 0");
	CHECK_STR(info->rcpts[0].orcpt, "rfc822;A@example.com", "orcpt 0");
	CHECK_INT(info->rcpts[0].notify, SPOOL_NOTIFY_FAILURE | SPOOL_NOTIFY_DELAY, "notify 0");
	CHECK_STR(info->rcpts[0].state.binding, "outbound1", "binding 0");
	CHECK_STR(info->rcpts[1].rcpt, "b@example.com", "rcpt 1");
	CHECK(info->rcpts[1].orcpt == NULL, "orcpt 1: got %s, want NULL", info->rcpts[1].orcpt);
	CHECK_STR(info->rcpts[1].state.binding, "", "binding 1");
	CHECK_STR(info->rcpts[2].rcpt, "δοκιμή@例え.jp", "rcpt 2 (UTF-8)");
	for (int i = 0; i < 3; i++) {
		CHECK_STR(info->rcpts[i].id, rt_rcpt_ids[i], "rcpt id");
		CHECK_INT(info->rcpts[i].index, i, "rcpt index");
		CHECK_INT(info->rcpts[i].state.retries, 0, "retries");
		CHECK_INT(info->rcpts[i].state.flags, 0, "state flags");
	}
}

static void
test_round_trip(void)
{
	struct spool *sp, *sp2;
	struct spool_batch *b;
	struct timeval when = { 1700000000, 123456 };
	struct strbuf body = STRBUF_INIT;
	char err[256], id[SPOOL_ID_LEN], path[256];
	struct stat st;

	env_setup("roundtrip");
	sp = spool_open(base, pool, err, sizeof(err));
	CHECK(sp != NULL, "spool_open: %s", err);
	if (sp == NULL) {
		env_teardown();
		return;
	}
	b = spool_batch_new(sp);
	rt_peer.sin6_family = AF_INET6;
	rt_peer.sin6_port = htons(40001);
	inet_pton(AF_INET6, "2001:db8::25", &rt_peer.sin6_addr);
	CHECK_INT(spool_batch_set_mail_from(b, "bounces+x@example.org"), 0, "set mail_from");
	CHECK_INT(spool_batch_set_dsn(b, SPOOL_RET_HDRS, "ENV-42"), 0, "set dsn");
	spool_batch_set_flags(b, SPOOL_F_SMTPUTF8 | SPOOL_F_8BITMIME);
	CHECK_INT(spool_batch_set_reception(b, 987654321, (struct sockaddr *)&rt_peer,
	    "client.example.net", "esmtpsa", &when), 0, "set reception");
	CHECK_INT(spool_batch_add_rcpt(b, "a@example.com", "rfc822;A@example.com",
	    SPOOL_NOTIFY_FAILURE | SPOOL_NOTIFY_DELAY, "outbound1"), 0, "add rcpt 0");
	CHECK_INT(spool_batch_add_rcpt(b, "b@example.com", NULL, 0, NULL), 1, "add rcpt 1");
	CHECK_INT(spool_batch_add_rcpt(b, "δοκιμή@例え.jp", NULL, 0, ""), 2, "add rcpt 2");
	CHECK_INT(spool_batch_add_rcpt(b, "", NULL, 0, NULL), -1, "empty rcpt refused");
	spool_batch_append(b, rt_body, 20);
	spool_batch_append(b, rt_body + 20, sizeof(rt_body) - 1 - 20);
	CHECK_INT(spool_batch_rcpt_count(b), 3, "rcpt count");
	CHECK_INT(spool_batch_body_len(b), sizeof(rt_body) - 1, "body len");
	snprintf(id, sizeof(id), "%s", spool_batch_id(b));
	for (int i = 0; i < 3; i++)
		rt_rcpt_ids[i] = xstrdup(spool_batch_rcpt_id(b, (size_t)i));
	CHECK(strcmp(rt_rcpt_ids[0], id) != 0 && strcmp(rt_rcpt_ids[0], rt_rcpt_ids[1]) != 0,
	    "ids not distinct: %s %s", id, rt_rcpt_ids[0]);
	CHECK_INT(commit_one(sp, b), 0, "commit");
	spool_batch_free(b);
	batch_path(id, path, sizeof(path));
	CHECK(stat(path, &st) == 0, "%s missing after commit", path);

	/* The same spool_open skips its own (live) batches. */
	CHECK(scan_run(sp, 20000), "scan timed out");
	CHECK_INT(nseen, 0, "own batches handed out");

	/* A new spool_open (a restart) reads it back. */
	sp2 = spool_open(base, pool, err, sizeof(err));
	scan_check = rt_check;
	CHECK(scan_run(sp2, 20000), "scan timed out");
	scan_check = NULL;
	CHECK_INT(nseen, 1, "batches after restart");
	CHECK(nseen < 1 || strcmp(seen[0].id, id) == 0, "batch id: got %s, want %s", seen[0].id, id);
	CHECK_INT(scan_res.batches, 1, "result batches");
	CHECK_INT(scan_res.recipients, 3, "result recipients");
	CHECK(spool_body_read(base, id, &body, err, sizeof(err)) == 0, "spool_body_read: %s", err);
	CHECK(body.len == sizeof(rt_body) - 1 && memcmp(body.data, rt_body, body.len) == 0,
	    "body: got %zu bytes \"%s\"", body.len, strbuf_cstr(&body));
	strbuf_free(&body);
	for (int i = 0; i < 3; i++)
		free((char *)rt_rcpt_ids[i]);
	spool_close(sp);
	spool_close(sp2);
	env_teardown();
}

/* --- group commit from four loops --- */

#define GC_LOOPS   4
#define GC_PER     50
#define GC_TOTAL   (GC_LOOPS * GC_PER)

static struct spool *gc_spool;
static atomic_int gc_cb_runs[GC_TOTAL];     /* callbacks per batch */
static atomic_int gc_done;                  /* callbacks in all */
static atomic_int gc_bad;                   /* wrong thread or error */
static struct loop *gc_loops[GC_LOOPS];

static void
gc_cb(struct spool_batch *b, int err, void *arg)
{
	intptr_t i = (intptr_t)arg;

	if (err != 0 || loop_current() != gc_loops[i / GC_PER])
		atomic_fetch_add(&gc_bad, 1);
	atomic_fetch_add(&gc_cb_runs[i], 1);
	spool_batch_free(b);
	atomic_fetch_add(&gc_done, 1);
}

static void
gc_submit(void *arg)
{
	intptr_t l = (intptr_t)arg, i;

	for (i = 0; i < GC_PER; i++) {
		struct spool_batch *b = simple_batch(gc_spool, 2, 2000);

		spool_batch_commit(b, loop_current(), gc_cb, (void *)(l * GC_PER + i));
	}
}

static void
test_group_commit(void)
{
	struct loop_group *g;
	struct spool_stats st;
	char err[256];
	int i, once = 0;

	env_setup("group");
	gc_spool = spool_open(base, pool, err, sizeof(err));
	g = loop_group_start(GC_LOOPS, err, sizeof(err));
	CHECK(gc_spool != NULL && g != NULL, "setup: %s", err);
	if (gc_spool == NULL || g == NULL)
		goto out;
	for (i = 0; i < GC_LOOPS; i++)
		gc_loops[i] = loop_group_get(g, i);
	for (i = 0; i < GC_LOOPS; i++)
		loop_post(gc_loops[i], gc_submit, (void *)(intptr_t)i);
	CHECK(wait_count(&gc_done, GC_TOTAL, 60000), "only %d of %d callbacks",
	    atomic_load(&gc_done), GC_TOTAL);
	loop_group_stop(g);
	g = NULL;
	for (i = 0; i < GC_TOTAL; i++)
		once += atomic_load(&gc_cb_runs[i]) == 1;
	CHECK_INT(once, GC_TOTAL, "batches whose callback ran exactly once");
	CHECK_INT(atomic_load(&gc_bad), 0, "callbacks with an error or on the wrong loop");
	spool_stats(gc_spool, &st);
	printf("group commit: %llu batches, %llu recipients, %llu syncs (%.3f per batch)\n",
	    (unsigned long long)st.batches, (unsigned long long)st.recipients,
	    (unsigned long long)st.syncs, st.batches ? (double)st.syncs / (double)st.batches : 0.0);
	CHECK_INT(st.batches, GC_TOTAL, "stats batches");
	CHECK_INT(st.recipients, 2 * GC_TOTAL, "stats recipients");
	CHECK(st.syncs < st.batches / 4, "syncs %llu, want < %llu",
	    (unsigned long long)st.syncs, (unsigned long long)st.batches / 4);
	CHECK_INT(count_files(), GC_TOTAL, "files on disk");
out:
	if (g != NULL)
		loop_group_stop(g);
	spool_close(gc_spool);
	env_teardown();
}

/* --- updates, dones, removal --- */

static int ud_phase;

static void
ud_check(const struct spool_batch_info *info)
{
	if (ud_phase != 1)
		return;
	CHECK_INT(info->nrcpt_total, 3, "total recipients");
	CHECK_INT(info->nrcpt, 2, "recipients not done");
	if (info->nrcpt != 2)
		return;
	CHECK_INT(info->rcpts[0].index, 1, "first not done");
	CHECK_INT(info->rcpts[0].state.retries, 3, "retries");
	CHECK_INT(info->rcpts[0].state.next_attempt.tv_sec, 1800000000, "next attempt");
	CHECK_INT(info->rcpts[0].state.next_attempt.tv_usec, 5, "next attempt us");
	CHECK_STR(info->rcpts[0].state.binding, "pool-b", "binding");
	CHECK_INT(info->rcpts[1].index, 2, "second not done");
	CHECK_INT(info->rcpts[1].state.retries, 1, "retries 2");
	CHECK_STR(info->rcpts[1].state.binding, "", "binding 2");
}

static void
test_update_done(void)
{
	struct spool *sp, *sp2;
	struct spool_batch *b;
	struct spool_rcpt_state st = { "pool-a", 1, { 1700000100, 0 }, 0 };
	struct spool_stats stats;
	char err[256], id[SPOOL_ID_LEN], path[256];
	struct stat sb;

	env_setup("update");
	sp = spool_open(base, pool, err, sizeof(err));
	CHECK(sp != NULL, "spool_open: %s", err);
	if (sp == NULL) {
		env_teardown();
		return;
	}
	b = simple_batch(sp, 3, 500);
	snprintf(id, sizeof(id), "%s", spool_batch_id(b));
	CHECK_INT(commit_one(sp, b), 0, "commit");
	spool_batch_free(b);
	batch_path(id, path, sizeof(path));

	spool_rcpt_update(sp, id, 1, &st, main_loop, state_cb, NULL);
	CHECK_INT(state_wait(), 0, "update 1");
	st.binding = "pool-b";
	st.retries = 3;
	st.next_attempt.tv_sec = 1800000000;
	st.next_attempt.tv_usec = 5;
	spool_rcpt_update(sp, id, 1, &st, main_loop, state_cb, NULL);
	CHECK_INT(state_wait(), 0, "update 1 again");
	st.binding = NULL;
	st.retries = 1;
	spool_rcpt_update(sp, id, 2, &st, main_loop, state_cb, NULL);
	CHECK_INT(state_wait(), 0, "update 2");
	spool_rcpt_done(sp, id, 0, main_loop, state_cb, NULL);
	CHECK_INT(state_wait(), 0, "done 0");
	spool_rcpt_update(sp, id, 7, &st, main_loop, state_cb, NULL);
	CHECK_INT(state_wait(), EINVAL, "update of a recipient out of range");
	spool_rcpt_update(sp, "0000000000000000000000", 0, &st, main_loop, state_cb, NULL);
	CHECK_INT(state_wait(), ENOENT, "update of a missing batch");
	spool_rcpt_done(sp, "../etc", 0, main_loop, state_cb, NULL);
	CHECK_INT(state_wait(), EINVAL, "done with a bad id");

	/* A restart sees the states. */
	sp2 = spool_open(base, pool, err, sizeof(err));
	ud_phase = 1;
	scan_check = ud_check;
	CHECK(scan_run(sp2, 20000), "scan timed out");
	scan_check = NULL;
	ud_phase = 0;
	CHECK_INT(nseen, 1, "batches after restart");

	/* The last done removes the file. */
	spool_rcpt_done(sp2, id, 2, main_loop, state_cb, NULL);
	CHECK_INT(state_wait(), 0, "done 2");
	CHECK(stat(path, &sb) == 0, "%s removed too early", path);
	spool_rcpt_done(sp2, id, 1, main_loop, state_cb, NULL);
	CHECK_INT(state_wait(), 0, "done 1");
	CHECK(stat(path, &sb) < 0 && errno == ENOENT, "%s still there after the last done", path);
	spool_stats(sp2, &stats);
	CHECK_INT(stats.removed, 1, "stats removed");
	CHECK_INT(stats.updates, 2, "stats updates (sp2)");
	spool_stats(sp, &stats);
	CHECK_INT(stats.updates, 4, "stats updates (sp)");
	CHECK_INT(stats.failures, 3, "stats failures (sp)");

	/* Concurrent dones of every recipient: exactly one removal, all succeed. */
	b = simple_batch(sp, 8, 100);
	snprintf(id, sizeof(id), "%s", spool_batch_id(b));
	CHECK_INT(commit_one(sp, b), 0, "commit 8");
	spool_batch_free(b);
	batch_path(id, path, sizeof(path));
	{
		state_err_any = 0;
		for (unsigned i = 0; i < 8; i++)
			spool_rcpt_done(sp, id, i, main_loop, state_cb, NULL);
		states_expected += 8;
		CHECK(wait_count(&states_done, states_expected, 20000), "concurrent dones timed out");
		CHECK_INT(state_err_any, 0, "concurrent dones");
	}
	CHECK(stat(path, &sb) < 0 && errno == ENOENT, "%s still there after 8 dones", path);
	CHECK_INT(count_files(), 0, "files left");

	/* Hints from the queue: NOCHECK appends only, LAST removes without reading,
	 * and a NOCHECK done that comes after the removal still succeeds. */
	b = simple_batch(sp, 3, 100);
	snprintf(id, sizeof(id), "%s", spool_batch_id(b));
	CHECK_INT(commit_one(sp, b), 0, "commit for the hinted dones");
	spool_batch_free(b);
	batch_path(id, path, sizeof(path));
	spool_rcpt_done_ex(sp, id, 0, SPOOL_DONE_NOCHECK, main_loop, state_cb, NULL);
	CHECK_INT(state_wait(), 0, "done 0 (NOCHECK)");
	CHECK(stat(path, &sb) == 0, "%s removed by a NOCHECK done", path);
	spool_rcpt_done_ex(sp, id, 2, SPOOL_DONE_LAST, main_loop, state_cb, NULL);
	CHECK_INT(state_wait(), 0, "done 2 (LAST)");
	CHECK(stat(path, &sb) < 0 && errno == ENOENT, "%s still there after a LAST done", path);
	spool_rcpt_done_ex(sp, id, 1, SPOOL_DONE_NOCHECK, main_loop, state_cb, NULL);
	CHECK_INT(state_wait(), 0, "a NOCHECK done after the removal");
	spool_rcpt_done_ex(sp, id, 1, SPOOL_DONE_LAST, main_loop, state_cb, NULL);
	CHECK_INT(state_wait(), 0, "a LAST done of a removed batch");
	spool_close(sp);
	spool_close(sp2);
	env_teardown();
}

/* --- temp files --- */

static void
touch_at(const char *id, const char *suffix)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/%02x/%s%s", base, spool_folder_of(id), id, suffix);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);
	CHECK(fd >= 0, "create %s: %s", path, strerror(errno));
	if (fd >= 0) {
		if (write(fd, "IMPSPOOL partial", 16) != 16)
			CHECK(0, "write %s", path);
		close(fd);
	}
}

static void
test_temp_removed(void)
{
	struct spool *old, *sp;
	char err[256], old_id[3][SPOOL_ID_LEN], own_id[SPOOL_ID_LEN];
	int i;

	env_setup("temp");
	old = spool_open(base, pool, err, sizeof(err));
	sp = spool_open(base, pool, err, sizeof(err));
	CHECK(old != NULL && sp != NULL, "spool_open: %s", err);
	if (old == NULL || sp == NULL)
		goto out;
	for (i = 0; i < 3; i++) {
		spool_id_new(old, old_id[i]);
		touch_at(old_id[i], SPOOL_TMP_SUFFIX);
	}
	spool_id_new(sp, own_id);
	touch_at(own_id, SPOOL_TMP_SUFFIX);
	CHECK_INT(count_files(), 4, "files before the scan");
	CHECK(scan_run(sp, 20000), "scan timed out");
	CHECK_INT(scan_res.temp_removed, 3, "temp files removed");
	CHECK_INT(scan_res.quarantined, 0, "quarantined");
	CHECK_INT(count_files(), 1, "files after the scan (the live temp file stays)");
out:
	spool_close(old);
	spool_close(sp);
	env_teardown();
}

/* --- corrupt files --- */

static void
file_edit(const char *id, const char *how)
{
	char path[256];
	struct stat st;
	int fd;

	batch_path(id, path, sizeof(path));
	fd = open(path, O_RDWR);
	CHECK(fd >= 0 && fstat(fd, &st) == 0, "open %s: %s", path, strerror(errno));
	if (fd < 0)
		return;
	if (strcmp(how, "garbage") == 0) {
		CHECK(ftruncate(fd, 0) == 0 && pwrite(fd, "hello, world\n", 13, 0) == 13, "garbage");
	} else if (strcmp(how, "truncate") == 0) {
		CHECK(ftruncate(fd, st.st_size / 2) == 0, "truncate");
	} else if (strcmp(how, "empty") == 0) {
		CHECK(ftruncate(fd, 0) == 0, "empty");
	} else if (strcmp(how, "flip-body") == 0 || strcmp(how, "flip-meta") == 0) {
		off_t off = strcmp(how, "flip-body") == 0 ? SPOOL_BODY_OFF + 10 : st.st_size - 30;
		unsigned char c;

		CHECK(pread(fd, &c, 1, off) == 1, "read byte");
		c ^= 0x10;
		CHECK(pwrite(fd, &c, 1, off) == 1, "write byte");
	} else if (strcmp(how, "torn-tail") == 0) {
		struct spool_rcpt_state s = { "x", 9, { 0, 0 }, 0 };
		struct strbuf rec = STRBUF_INIT;

		spool_record_state(&rec, 0, &s);
		CHECK(pwrite(fd, rec.data, 7, st.st_size) == 7, "torn append");
		strbuf_free(&rec);
	}
	close(fd);
}

static void
test_quarantine(void)
{
	static const char *edits[] = {
		"garbage", "truncate", "flip-body", "flip-meta", "empty", "torn-tail", "none",
	};
	enum { NEDITS = sizeof(edits) / sizeof(edits[0]) };
	struct spool *old, *sp;
	char err[256], ids[NEDITS][SPOOL_ID_LEN], path[256];
	struct stat before, after;
	int i, fd;

	env_setup("quarantine");
	old = spool_open(base, pool, err, sizeof(err));
	CHECK(old != NULL, "spool_open: %s", err);
	if (old == NULL) {
		env_teardown();
		return;
	}
	for (i = 0; i < NEDITS; i++) {
		struct spool_batch *b = simple_batch(old, 2, 3000);

		snprintf(ids[i], SPOOL_ID_LEN, "%s", spool_batch_id(b));
		CHECK_INT(commit_one(old, b), 0, "commit");
		spool_batch_free(b);
	}
	batch_path(ids[NEDITS - 2], path, sizeof(path));
	stat(path, &before);
	for (i = 0; i < NEDITS; i++)
		file_edit(ids[i], edits[i]);
	snprintf(path, sizeof(path), "%s/00/junk", base);
	fd = open(path, O_WRONLY | O_CREAT, 0640);
	close(fd);

	sp = spool_open(base, pool, err, sizeof(err));
	CHECK(scan_run(sp, 20000), "scan timed out");
	CHECK_INT(nseen, 2, "batches loaded");
	CHECK(seen_has(ids[NEDITS - 1]), "untouched batch %s not loaded", ids[NEDITS - 1]);
	CHECK(seen_has(ids[NEDITS - 2]), "torn-tail batch %s not loaded", ids[NEDITS - 2]);
	CHECK_INT(scan_res.quarantined, NEDITS - 2 + 1, "quarantined");
	CHECK_INT(scan_res.repaired, 1, "repaired");
	CHECK_INT(count_quarantine(), NEDITS - 2 + 1, "files in quarantine/");
	CHECK_INT(count_files(), 2, "files left in the folders");
	batch_path(ids[NEDITS - 2], path, sizeof(path));
	CHECK(stat(path, &after) == 0 && after.st_size == before.st_size,
	    "torn tail not cut: size %lld, want %lld", (long long)after.st_size,
	    (long long)before.st_size);
	/* A second scan finds nothing more to do. */
	spool_close(sp);
	sp = spool_open(base, pool, err, sizeof(err));
	CHECK(scan_run(sp, 20000), "scan timed out");
	CHECK_INT(nseen, 2, "batches loaded again");
	CHECK_INT(scan_res.quarantined + scan_res.repaired, 0, "second scan changes");
	spool_close(old);
	spool_close(sp);
	env_teardown();
}

/* --- a big scan does not stall its loop --- */

#define BIG_N 10000

static atomic_int big_committed;
static int big_ticks;                   /* timer callbacks during the scan */
static uint64_t big_last_ms, big_max_gap_ms;

static void
big_cb(struct spool_batch *b, int err, void *arg)
{
	if (err != 0)
		CHECK(0, "commit: %s", strerror(err));
	spool_batch_free(b);
	atomic_fetch_add(&big_committed, 1);
}

static void
big_tick(struct timer *t, void *arg)
{
	uint64_t now = loop_now_ms(main_loop);

	if (big_ticks > 0 && now - big_last_ms > big_max_gap_ms)
		big_max_gap_ms = now - big_last_ms;
	big_last_ms = now;
	big_ticks++;
}

static void
big_count(const struct spool_batch_info *info, void *arg)
{
	nseen++;
}

static void
test_big_scan(void)
{
	struct spool *old, *sp;
	struct spool_stats st;
	struct timer *t;
	char err[256];
	uint64_t t0, t1;
	int i, before;

	env_setup("big");
	old = spool_open(base, pool, err, sizeof(err));
	CHECK(old != NULL, "spool_open: %s", err);
	if (old == NULL) {
		env_teardown();
		return;
	}
	t0 = loop_now_ms(main_loop);
	for (i = 0; i < BIG_N; i++)
		spool_batch_commit(simple_batch(old, 1 + i % 3, 200 + (size_t)i % 1000), main_loop,
		    big_cb, NULL);
	CHECK(wait_count(&big_committed, BIG_N, 120000), "only %d of %d commits",
	    atomic_load(&big_committed), BIG_N);
	t1 = loop_now_ms(main_loop);
	spool_stats(old, &st);
	printf("big: %d commits in %llu ms, %llu syncs\n", BIG_N, (unsigned long long)(t1 - t0),
	    (unsigned long long)st.syncs);

	sp = spool_open(base, pool, err, sizeof(err));
	t = timer_new(main_loop, big_tick, NULL);
	timer_start_every_ms(t, 2);
	before = atomic_load(&scans_done);
	nseen = 0;
	t0 = loop_now_ms(main_loop);
	spool_scan(sp, main_loop, big_count, scan_finished, NULL);
	CHECK(wait_count(&scans_done, before + 1, 120000), "scan timed out");
	t1 = loop_now_ms(main_loop);
	timer_free(t);
	printf("big: scan of %d batches in %llu ms, %d ticks, longest gap %llu ms\n", nseen,
	    (unsigned long long)(t1 - t0), big_ticks, (unsigned long long)big_max_gap_ms);
	CHECK_INT(nseen, BIG_N, "batches scanned");
	CHECK_INT(scan_res.batches, BIG_N, "result batches");
	CHECK(big_ticks >= 2 || t1 - t0 < 10, "the timer fired %d times in %llu ms", big_ticks,
	    (unsigned long long)(t1 - t0));
	CHECK(big_max_gap_ms < 500, "the loop stalled for %llu ms", (unsigned long long)big_max_gap_ms);
	spool_close(old);
	spool_close(sp);
	env_teardown();
}

/* --- injected failures --- */

static void
test_faults(void)
{
	static const struct {
		const char *name;
		enum spool_fault kind;
		int err;
	} cases[] = {
		{ "write-enospc", SPOOL_FAULT_WRITE, ENOSPC },
		{ "write-eio", SPOOL_FAULT_WRITE, EIO },
		{ "sync-eio", SPOOL_FAULT_SYNC, EIO },
		{ "sync-erofs", SPOOL_FAULT_SYNC, EROFS },
	};
	struct spool *sp;
	struct spool_stats st;
	char err[256], ctx[96];
	size_t c;

	env_setup("faults");
	sp = spool_open(base, pool, err, sizeof(err));
	CHECK(sp != NULL, "spool_open: %s", err);
	if (sp == NULL) {
		env_teardown();
		return;
	}
	for (c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct spool_batch *b = simple_batch(sp, 2, 5000);

		spool_set_fault(sp, cases[c].kind, cases[c].err);
		snprintf(ctx, sizeof(ctx), "%s: commit", cases[c].name);
		CHECK_INT(commit_one(sp, b), cases[c].err, ctx);
		spool_batch_free(b);
		snprintf(ctx, sizeof(ctx), "%s: files left", cases[c].name);
		CHECK_INT(count_files(), 0, ctx);
		spool_set_fault(sp, cases[c].kind, 0);
	}
	{
		struct spool_batch *b = simple_batch(sp, 1, 100);
		struct spool_rcpt_state s = { NULL, 1, { 0, 0 }, 0 };
		char id[SPOOL_ID_LEN];

		snprintf(id, sizeof(id), "%s", spool_batch_id(b));
		CHECK_INT(commit_one(sp, b), 0, "commit after the faults");
		spool_batch_free(b);
		CHECK_INT(count_files(), 1, "files after a good commit");
		spool_set_fault(sp, SPOOL_FAULT_WRITE, ENOSPC);
		spool_rcpt_update(sp, id, 0, &s, main_loop, state_cb, NULL);
		CHECK_INT(state_wait(), ENOSPC, "update with a write fault");
		spool_set_fault(sp, SPOOL_FAULT_WRITE, 0);
		spool_set_fault(sp, SPOOL_FAULT_SYNC, EIO);
		spool_rcpt_update(sp, id, 0, &s, main_loop, state_cb, NULL);
		CHECK_INT(state_wait(), EIO, "update with a sync fault");
		spool_set_fault(sp, SPOOL_FAULT_SYNC, 0);
	}
	{
		struct spool_batch *b = spool_batch_new(sp);

		CHECK_INT(commit_one(sp, b), EINVAL, "batch without recipients");
		spool_batch_free(b);
	}
	spool_stats(sp, &st);
	CHECK_INT(st.batches, 1, "stats batches");
	CHECK_INT(st.failures, 4 + 2 + 1, "stats failures");
	spool_close(sp);
	env_teardown();
}

/* --- the record parser on its own --- */

static void
test_parse_edges(void)
{
	static const struct {
		const char *name;
		const char *data;
		size_t len;
	} cases[] = {
		{ "empty", "", 0 },
		{ "magic-only", "IMPSPOOL", 8 },
		{ "bad-magic", "IMPSPOOX\x18\0\0\0H", 13 },
		{ "zeros", "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
		    "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 50 },
	};
	struct spool_batch_info *info;
	uint8_t head[SPOOL_BODY_OFF + 4];
	char err[128];
	size_t c;

	for (c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		int st = spool_record_parse(cases[c].data, cases[c].len, &info, err, sizeof(err));

		CHECK_INT(st, SPOOL_PARSE_BAD, cases[c].name);
		CHECK(info == NULL, "%s: info not NULL", cases[c].name);
	}
	/* A head with a body and nothing after it: no envelope. */
	spool_record_head(head, 4, spool_crc32c(0, "abcd", 4));
	memcpy(head + SPOOL_BODY_OFF, "abcd", 4);
	CHECK_INT(spool_record_parse(head, sizeof(head), &info, err, sizeof(err)), SPOOL_PARSE_BAD,
	    "head and body only");
	/* CRC32C check value. */
	CHECK_INT(spool_crc32c(0, "123456789", 9), 0xe3069283u, "crc32c check value");
	CHECK_INT(spool_crc32c(spool_crc32c(0, "1234", 4), "56789", 5), 0xe3069283u,
	    "crc32c continued");
}

TEST_MAIN("spool",
    TEST(test_parse_edges),
    TEST(test_ids_unique),
    TEST(test_round_trip),
    TEST(test_group_commit),
    TEST(test_update_done),
    TEST(test_temp_removed),
    TEST(test_quarantine),
    TEST(test_faults),
    TEST(test_big_scan))

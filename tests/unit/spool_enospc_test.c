/*
 * spool_enospc_test.c - the spool on a real full file system.
 *
 * Mounts a 1 MiB tmpfs on a temporary folder (root only; prints SKIP and
 * passes when the mount is refused), commits 64 KiB batches until the file
 * system is full, and checks: the failing commit reports ENOSPC, nothing of
 * it is left (no temp file, no partial batch file), every batch that was
 * acknowledged reads back intact, and once spool_rcpt_done has removed a
 * few batches a new commit succeeds.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "event/loop.h"
#include "event/timer.h"
#include "event/tpool.h"
#include "spool/spool.h"
#include "test.h"

#define BODY_LEN  (64 * 1024)
#define MAX_TRIES 64                    /* 1 MiB cannot hold this many */

static struct loop *main_loop;          /* the test thread's loop */
static atomic_int cbs;                  /* callbacks run */
static int last_err;                    /* err of the latest callback */
static uint64_t deadline_ms;            /* wait_one gives up after this */
static int timed_out;                   /* wait_one gave up */

struct walk_count {
	int ok;                         /* files that parse */
	int other;                      /* temp, corrupt or unknown files */
};

static void commit_cb(struct spool_batch *b, int err, void *arg);
static void done_cb(int err, void *arg);
static void tick(struct timer *t, void *arg);
static int wait_one(void);
static void walk_count_cb(const char *path, int status, const struct spool_batch_info *info,
    const char *reason, void *arg);
static struct spool_batch *big_batch(struct spool *sp);
static void test_enospc(void);

static void
commit_cb(struct spool_batch *b, int err, void *arg)
{
	last_err = err;
	atomic_fetch_add(&cbs, 1);
}

static void
done_cb(int err, void *arg)
{
	last_err = err;
	atomic_fetch_add(&cbs, 1);
}

static void
tick(struct timer *t, void *arg)
{
	int *want = arg;

	if (atomic_load(&cbs) >= *want)
		loop_main_break(main_loop);
	else if (loop_now_ms(main_loop) > deadline_ms) {
		timed_out = 1;
		loop_main_break(main_loop);
	}
}

/* wait_one: run the main loop until one more callback ran; its err. */
static int
wait_one(void)
{
	int want = atomic_load(&cbs) + 1;
	struct timer *t = timer_new(main_loop, tick, &want);

	timed_out = 0;
	deadline_ms = loop_now_ms(main_loop) + 20000;
	timer_start_every_ms(t, 1);
	loop_main_run(main_loop);
	timer_free(t);
	return timed_out ? ETIMEDOUT : last_err;
}

static void
walk_count_cb(const char *path, int status, const struct spool_batch_info *info,
    const char *reason, void *arg)
{
	struct walk_count *wc = arg;

	if (status == 0)
		wc->ok++;
	else {
		wc->other++;
		fprintf(stderr, "unexpected file %s (status %d): %s\n", path, status,
		    reason ? reason : "");
	}
}

static struct spool_batch *
big_batch(struct spool *sp)
{
	struct spool_batch *b = spool_batch_new(sp);
	static char body[BODY_LEN];

	memset(body, 'x', sizeof(body));
	spool_batch_set_mail_from(b, "a@example.org");
	spool_batch_add_rcpt(b, "b@example.net", NULL, 0, NULL);
	spool_batch_append(b, body, sizeof(body));
	return b;
}

static void
test_enospc(void)
{
	char dir[] = "/tmp/spool_enospc.XXXXXX", spooldir[64], err[256];
	char ids[MAX_TRIES][SPOOL_ID_LEN];
	struct walk_count wc = { 0, 0 };
	struct tpool *pool;
	struct spool *sp;
	int n, e = 0, i;

	if (geteuid() != 0) {
		printf("SKIP: not root, cannot mount a tmpfs\n");
		return;
	}
	if (mkdtemp(dir) == NULL) {
		printf("SKIP: mkdtemp: %s\n", strerror(errno));
		return;
	}
	if (mount("tmpfs", dir, "tmpfs", 0, "size=1m,mode=0700") < 0) {
		printf("SKIP: cannot mount a tmpfs on %s: %s\n", dir, strerror(errno));
		rmdir(dir);
		return;
	}
	snprintf(spooldir, sizeof(spooldir), "%s/spool", dir);
	main_loop = loop_main_new();
	pool = tpool_start(2, err, sizeof(err));
	sp = spool_open(spooldir, pool, err, sizeof(err));
	CHECK(sp != NULL, "spool_open: %s", err);
	if (sp == NULL)
		goto out;

	for (n = 0; n < MAX_TRIES; n++) {
		struct spool_batch *b = big_batch(sp);

		snprintf(ids[n], SPOOL_ID_LEN, "%s", spool_batch_id(b));
		spool_batch_commit(b, main_loop, commit_cb, NULL);
		e = wait_one();
		spool_batch_free(b);
		if (e != 0)
			break;
	}
	printf("enospc: %d commits fitted in 1 MiB, then err %d (%s)\n", n, e, strerror(e));
	CHECK(n > 0 && n < MAX_TRIES, "commits before the file system filled: %d", n);
	CHECK_INT(e, ENOSPC, "err of the commit that did not fit");
	spool_walk(spooldir, walk_count_cb, &wc);
	CHECK_INT(wc.ok, n, "intact batch files");
	CHECK_INT(wc.other, 0, "temp, partial or corrupt files");

	/* Still full: fails again, and again leaves nothing. */
	{
		struct spool_batch *b = big_batch(sp);

		spool_batch_commit(b, main_loop, commit_cb, NULL);
		CHECK_INT(wait_one(), ENOSPC, "second commit on a full spool");
		spool_batch_free(b);
	}
	/* Deliver (remove) two batches: a new commit fits. */
	for (i = 0; i < 2 && i < n; i++) {
		spool_rcpt_done(sp, ids[i], 0, main_loop, done_cb, NULL);
		CHECK_INT(wait_one(), 0, "done");
	}
	{
		struct spool_batch *b = big_batch(sp);

		spool_batch_commit(b, main_loop, commit_cb, NULL);
		CHECK_INT(wait_one(), 0, "commit after space was freed");
		spool_batch_free(b);
	}
	wc.ok = wc.other = 0;
	spool_walk(spooldir, walk_count_cb, &wc);
	CHECK_INT(wc.ok, n - 2 + 1, "intact batch files at the end");
	CHECK_INT(wc.other, 0, "other files at the end");
out:
	tpool_stop(pool);
	spool_close(sp);
	loop_main_free(main_loop);
	if (umount2(dir, MNT_DETACH) < 0)
		fprintf(stderr, "umount %s: %s\n", dir, strerror(errno));
	rmdir(dir);
}

TEST_MAIN("spool_enospc", TEST(test_enospc))

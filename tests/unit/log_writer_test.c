/*
 * log_writer_test.c - the log writers end to end: a configuration with
 * ec_logger and bounce_logger stanzas, log_writers_configure inside a hook
 * transaction, the logging hooks called as the core will call them, and
 * the records found in the files of a temporary directory. Also: the
 * Log_* switches, smtp_error_classify providers in the bouncelog, files
 * kept open across reloads, files closed when no generation uses them,
 * aborted transactions, configuration errors, rotation, heartbeats,
 * shutdown, and hook calls from many threads while reloads swap
 * generations (run under ThreadSanitizer by the sanitizer builds).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <impetus/hook.h>
#include <impetus/hooks/core/log_delivery_v1.h>
#include <impetus/hooks/core/log_permanent_failure_v1.h>
#include <impetus/hooks/core/log_reception_v1.h>
#include <impetus/hooks/core/log_rejection.h>
#include <impetus/hooks/core/log_transient_failure_v1.h>
#include <impetus/hooks/core/smtp_error_classify.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf.h"
#include "lib/strbuf.h"
#include "log/log.h"
#include "message/message.h"
#include "test.h"

#define NOW 1700000000

static char tmpdir[256];

static void
path_in(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", tmpdir, name);
}

static char *
slurp(const char *name)
{
	char path[512];
	FILE *fp;
	char *data;
	long n;
	size_t got;

	path_in(path, sizeof(path), name);
	if ((fp = fopen(path, "rb")) == NULL)
		return calloc(1, 1);
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	data = malloc((size_t)n + 1);
	got = fread(data, 1, (size_t)n, fp);
	data[got] = '\0';
	fclose(fp);
	return data;
}

static size_t
count_lines(const char *data, const char *needle)
{
	size_t n = 0;

	for (const char *p = data; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

/* Descriptors of this process open on name. */
static int
open_count(const char *name)
{
	char path[512], link[300], target[PATH_MAX];
	struct dirent *de;
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	path_in(path, sizeof(path), name);
	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		ssize_t len;
		snprintf(link, sizeof(link), "/proc/self/fd/%s", de->d_name);
		if ((len = readlink(link, target, sizeof(target) - 1)) < 0)
			continue;
		target[len] = '\0';
		if (strcmp(target, path) == 0)
			n++;
	}
	closedir(d);
	return n;
}

/* A configuration from text with every "@D@" replaced by the temp dir. */
static struct conf *
load(const char *text)
{
	struct conf_errors errs = { STRBUF_INIT, 0 };
	struct strbuf sb = STRBUF_INIT;
	struct conf *c;
	const char *p, *q;

	for (p = text; (q = strstr(p, "@D@")) != NULL; p = q + 3) {
		strbuf_append(&sb, p, (size_t)(q - p));
		strbuf_puts(&sb, tmpdir);
	}
	strbuf_puts(&sb, p);
	c = conf_load_string(strbuf_cstr(&sb), "log.conf", &errs);
	CHECK(c != NULL, "config rejected: %s", strbuf_cstr(&errs.text));
	conf_errors_free(&errs);
	strbuf_free(&sb);
	return c;
}

/* One configuration generation, installed the way the daemon does it. */
static int
install(const char *text, char *err, size_t errlen)
{
	struct conf *c = load(text);
	int rc;

	if (c == NULL)
		return -1;
	imp_hook_txn_begin();
	rc = log_writers_configure(c, err, errlen);
	if (rc < 0)
		imp_hook_txn_abort();
	else
		imp_hook_txn_commit();
	log_writers_collect();
	conf_unref(c);
	return rc;
}

static void
set_ip(struct sockaddr_storage *ss, const char *ip, unsigned port)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(ip, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		inet_pton(AF_INET6, ip, &s6->sin6_addr);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		inet_pton(AF_INET, ip, &s4->sin_addr);
	}
}

static struct ec_message *
sample_message(const char *from, const char *rcpt)
{
	struct ec_message *m = message_new("msg-1", "batch-1", from, rcpt);

	m->conn_id = 42;
	m->size = 1234;
	m->reception.tv_sec = NOW - 5;
	m->binding_slot = 0;
	set_ip(&m->recv_from, "192.0.2.7", 40000);
	set_ip(&m->remote, "2001:db8::25", 25);
	return m;
}

static void
reject(struct timeval *now, accept_construct *ac, int phase, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	call_core_log_rejection_hook(now, ac, NULL, phase, fmt, ap);
	va_end(ap);
}

/* Every kind of event once. */
static void
log_all_events(struct ec_message *m)
{
	struct domain_record dr = { "example.com" };
	struct accept_construct ac;
	struct timeval now = { NOW, 0 };
	static const char bounce[] = "550 5.1.1 <bob@example.com>: user unknown\r\n";

	memset(&ac, 0, sizeof(ac));
	ac.conn_id = 42;
	set_ip(&ac.remote, "192.0.2.7", 40000);
	set_ip(&ac.local, "198.51.100.1", 25);
	call_core_log_reception_v1_hook(&ac, m, &now, "esmtp", 5);
	m->stage = 5;
	call_core_log_transient_failure_v1_hook(m, &dr, &now, "451 4.3.0 try again later", 25);
	m->num_retries = 1;
	m->stage = 4;
	call_core_log_permanent_failure_v1_hook(m, &dr, &now, bounce, (int)strlen(bounce));
	call_core_log_delivery_v1_hook(m, &dr, &now, "250 2.0.0 ok", 12);
	reject(&now, &ac, VALIDATE_PHASE_RCPTTO, "%d 5.7.1 %s", 550, "relaying denied");
}

static const char full_conf[] =
	"ec_logger {\n"
	"  Mainlog = \"@D@/mainlog.ec\"\n"
	"  Rejectlog = \"@D@/rejectlog.ec\"\n"
	"  Jsonlog = \"@D@/events.json\"\n"
	"  Heartbeat = 0\n"
	"}\n"
	"bounce_logger {\n"
	"  Bouncelog = \"@D@/bouncelog.ec\"\n"
	"  Heartbeat = 0\n"
	"}\n";

static void
test_every_log(void)
{
	char err[256];
	struct ec_message *m = sample_message("", "bob@example.com");
	char *data;

	CHECK_INT(install(full_conf, err, sizeof(err)), 0, err);
	log_all_events(m);
	log_writers_flush();

	data = slurp("mainlog.ec");
	CHECK_STR(data,
	          "1700000000@msg-1@batch-1@42@R@bob@example.com@@@192.0.2.7@1234@esmtp@default@default\n"
	          "1700000000@msg-1@batch-1@42@T@example.com@0@default@default@5@0@5@2001:db8::25@"
	          "451 4.3.0 try again later\n"
	          "1700000000@msg-1@batch-1@42@P@example.com@0@default@default@4@1@5@2001:db8::25@"
	          "550 5.1.1 <bob@example.com>: user unknown\n"
	          "1700000000@msg-1@batch-1@42@D@example.com@1234@default@default@1@5@2001:db8::25\n",
	          "mainlog");
	free(data);

	data = slurp("bouncelog.ec");
	CHECK_STR(data,
	          "1700000000@msg-1@batch-1@42@T@bob@example.com@@@default@default@5@70@1234@"
	          "2001:db8::25@451 4.3.0 try again later\n"
	          "1700000000@msg-1@batch-1@42@B@bob@example.com@@@default@default@4@10@1234@"
	          "2001:db8::25@550 5.1.1 <bob@example.com>: user unknown\n",
	          "bouncelog");
	free(data);

	data = slurp("rejectlog.ec");
	CHECK_STR(data,
	          "1700000000: R=\"192.0.2.7:40000\" L=\"198.51.100.1:25\" C=\"42\" P=\"rcptto\" "
	          "E=550 M=core 550 5.7.1 relaying denied\n",
	          "rejectlog");
	free(data);

	data = slurp("events.json");
	CHECK_INT(count_lines(data, "\n"), 5, "json records");
	CHECK(strstr(data, "{\"type\":\"reception\",\"time\":1700000000,\"msg_id\":\"msg-1\"") == data,
	      "json starts with the reception: %s", data);
	CHECK(strstr(data, "{\"type\":\"transient_failure\"") != NULL, "json T");
	CHECK(strstr(data, "{\"type\":\"permanent_failure\"") != NULL, "json P");
	CHECK(strstr(data, "\"bounce_class\":10,\"response\":\"550 5.1.1 <bob@example.com>: "
	                   "user unknown\"}\n") != NULL, "json P class and response: %s", data);
	CHECK(strstr(data, "{\"type\":\"delivery\"") != NULL, "json D");
	CHECK(strstr(data, "{\"type\":\"rejection\",\"time\":1700000000,\"remote\":\"192.0.2.7:40000\"")
	      != NULL, "json rejection");
	free(data);
	message_unref(m);
	log_writers_shutdown();
}

static void
test_switches(void)
{
	static const char conf_text[] =
		"ec_logger {\n"
		"  Mainlog = \"@D@/sw-main.ec\"\n"
		"  Log_Receptions = false\n"
		"  Log_Transient_Failures = false\n"
		"  Heartbeat = 0\n"
		"}\n"
		"bounce_logger \"bl\" {\n"
		"  Bouncelog = \"@D@/sw-bounce.ec\"\n"
		"  Log_Transient_Failures = no\n"
		"  Heartbeat = 0\n"
		"}\n";
	char err[256];
	struct ec_message *m = sample_message("a@b.example", "bob@example.com");
	char *data;

	CHECK_INT(install(conf_text, err, sizeof(err)), 0, err);
	CHECK(!has_core_log_reception_v1_hook(), "no reception provider");
	CHECK(!has_core_log_rejection_hook(), "no rejection provider (no rejectlog)");
	CHECK(!has_core_log_transient_failure_v1_hook(), "no transient provider");
	log_all_events(m);
	log_writers_flush();
	data = slurp("sw-main.ec");
	CHECK_INT(count_lines(data, "\n"), 2, "P and D only");
	CHECK(strstr(data, "@P@") != NULL && strstr(data, "@D@") != NULL, "mainlog: %s", data);
	free(data);
	data = slurp("sw-bounce.ec");
	CHECK_INT(count_lines(data, "\n"), 1, "B only");
	CHECK(strstr(data, "@B@bob@example.com@a@b.example@") != NULL, "bouncelog: %s", data);
	free(data);
	message_unref(m);
	log_writers_shutdown();
}

static int
custom_classifier(void *closure, const char *response, const char *domain)
{
	return strcmp(domain, "example.com") == 0 ? 77 : 0;
}

static void
test_classifier_hook(void)
{
	static const char conf_text[] =
		"bounce_logger { Bouncelog = \"@D@/cls-bounce.ec\" Heartbeat = 0 }\n";
	char err[256];
	struct ec_message *m = sample_message("", "bob@example.com");
	struct timeval now = { NOW, 0 };
	char *data;

	register_core_smtp_error_classify_hook_first(custom_classifier, NULL);
	CHECK_INT(install(conf_text, err, sizeof(err)), 0, err);
	call_core_log_permanent_failure_v1_hook(m, NULL, &now, "550 5.1.1 user unknown", -1);
	log_writers_flush();
	data = slurp("cls-bounce.ec");
	CHECK(strstr(data, "@77@1234@") != NULL, "provider's class: %s", data);
	free(data);
	imp_hook_unregister(&IMP_HOOK_HEAD(core, smtp_error_classify),
	                    (void (*)(void))custom_classifier, NULL);
	message_unref(m);
	log_writers_shutdown();
}

static void
test_reload_keeps_and_closes(void)
{
	static const char gen1[] =
		"ec_logger { Mainlog = \"@D@/keep.ec\" Rejectlog = \"@D@/old-reject.ec\" Heartbeat = 0 }\n";
	static const char gen2[] =
		"ec_logger { Mainlog = \"@D@/keep.ec\" Rejectlog = \"@D@/new-reject.ec\" Heartbeat = 0 }\n";
	static const char gen3[] =
		"ec_logger { Mainlog = \"@D@/aborted.ec\" Heartbeat = 0 }\n";
	char err[256], from[512], to[512];
	struct ec_message *m = sample_message("", "bob@example.com");
	struct timeval now = { NOW, 0 };
	struct conf *c;
	char *data;

	CHECK_INT(install(gen1, err, sizeof(err)), 0, err);
	CHECK_INT(open_count("keep.ec"), 1, "keep.ec open");
	CHECK_INT(open_count("old-reject.ec"), 1, "old-reject.ec open");
	call_core_log_delivery_v1_hook(m, NULL, &now, "250 ok", 6);
	log_writers_flush();
	/* Moved away without a reopen: a kept file goes on writing to it. */
	path_in(from, sizeof(from), "keep.ec");
	path_in(to, sizeof(to), "keep.ec.moved");
	CHECK(rename(from, to) == 0, "rename");

	CHECK_INT(install(gen2, err, sizeof(err)), 0, err);
	CHECK_INT(open_count("keep.ec.moved"), 1, "the same descriptor, not a new one");
	CHECK_INT(open_count("old-reject.ec"), 0, "old-reject.ec closed after the reload");
	CHECK_INT(open_count("new-reject.ec"), 1, "new-reject.ec open");
	call_core_log_delivery_v1_hook(m, NULL, &now, "250 ok", 6);
	log_writers_flush();
	data = slurp("keep.ec.moved");
	CHECK_INT(count_lines(data, "@D@"), 2, "both records in the kept file");
	free(data);

	/* SIGUSR1: the path is opened anew. */
	log_writers_reopen();
	call_core_log_delivery_v1_hook(m, NULL, &now, "250 ok", 6);
	log_writers_flush();
	data = slurp("keep.ec");
	CHECK_INT(count_lines(data, "@D@"), 1, "after reopen: the new file");
	free(data);
	CHECK_INT(open_count("keep.ec.moved"), 0, "the rotated file is closed");

	/* A generation whose transaction is aborted: the running one keeps logging. */
	c = load(gen3);
	imp_hook_txn_begin();
	CHECK_INT(log_writers_configure(c, err, sizeof(err)), 0, err);
	CHECK_INT(open_count("aborted.ec"), 1, "opened while pending");
	imp_hook_txn_abort();
	conf_unref(c);
	call_core_log_delivery_v1_hook(m, NULL, &now, "250 ok", 6);
	log_writers_collect();
	CHECK_INT(open_count("aborted.ec"), 0, "closed once known aborted");
	log_writers_flush();
	data = slurp("keep.ec");
	CHECK_INT(count_lines(data, "@D@"), 2, "the running generation still logs");
	free(data);
	data = slurp("aborted.ec");
	CHECK_STR(data, "", "the aborted generation never logged");
	free(data);

	message_unref(m);
	log_writers_shutdown();
	CHECK(!has_core_log_delivery_v1_hook(), "shutdown unregisters");
	CHECK_INT(open_count("keep.ec"), 0, "shutdown closes");
	CHECK_INT(open_count("new-reject.ec"), 0, "shutdown closes");
}

static void
test_configure_errors(void)
{
	static const char bad[] =
		"ec_logger { Mainlog = \"@D@/fine.ec\" Rejectlog = \"@D@/missing/dir/r.ec\" }\n";
	char err[256] = "";
	struct conf *c = load(full_conf);

	CHECK_INT(log_writers_configure(c, err, sizeof(err)), -1, "outside a transaction");
	CHECK(strstr(err, "transaction") != NULL, "err: %s", err);
	conf_unref(c);

	CHECK_INT(install(bad, err, sizeof(err)), -1, "unopenable file");
	CHECK(strstr(err, "Rejectlog") != NULL && strstr(err, "missing/dir/r.ec") != NULL &&
	      strstr(err, "log.conf:1") != NULL, "err names option, path, place: %s", err);
	CHECK_INT(open_count("fine.ec"), 0, "nothing left open by the failed configure");
	CHECK(!has_core_log_delivery_v1_hook(), "nothing registered");
	log_writers_shutdown();
}

static void
test_heartbeat(void)
{
	static const char conf_text[] =
		"ec_logger { Mainlog = \"@D@/hb-main.ec\" Rejectlog = \"@D@/hb-reject.ec\" "
		"Jsonlog = \"@D@/hb.json\" Heartbeat = 1 }\n"
		"bounce_logger { Bouncelog = \"@D@/hb-bounce.ec\" Heartbeat = 1 }\n";
	char err[256], *data;
	long long t;

	CHECK_INT(install(conf_text, err, sizeof(err)), 0, err);
	usleep(1300 * 1000);
	log_writers_flush();
	data = slurp("hb-main.ec");
	CHECK(sscanf(data, "%lld@@@@M\n", &t) == 1 && strstr(data, "@@@@M\n"), "mainlog: %s", data);
	free(data);
	data = slurp("hb-bounce.ec");
	CHECK(strstr(data, "@@@@M1\n") != NULL, "bouncelog: %s", data);
	free(data);
	data = slurp("hb-reject.ec");
	CHECK(strstr(data, ": Marker 1\n") != NULL, "rejectlog: %s", data);
	free(data);
	data = slurp("hb.json");
	CHECK_STR(data, "", "no heartbeat in the jsonlog");
	free(data);
	log_writers_shutdown();
}

/* Hook calls on many threads while the main thread reloads. */
#define CALLERS 4
#define CALLS 3000

static atomic_int callers_done;

static void *
caller_thread(void *arg)
{
	struct ec_message *m = arg;
	struct timeval now = { NOW, 0 };

	for (int i = 0; i < CALLS; i++)
		call_core_log_delivery_v1_hook(m, NULL, &now, "250 ok", 6);
	atomic_fetch_add(&callers_done, 1);
	return NULL;
}

static void
test_calls_during_reloads(void)
{
	static const char *const gens[] = {
		"ec_logger { Mainlog = \"@D@/race-a.ec\" Heartbeat = 0 }\n",
		"ec_logger { Mainlog = \"@D@/race-b.ec\" Heartbeat = 0 }\n",
		"ec_logger { Mainlog = \"@D@/race-a.ec\" Jsonlog = \"@D@/race.json\" Heartbeat = 0 }\n",
	};
	struct ec_message *m = sample_message("", "bob@example.com");
	pthread_t tids[CALLERS];
	char err[256], *a, *b;
	int reloads = 0;

	CHECK_INT(install(gens[0], err, sizeof(err)), 0, err);
	atomic_store(&callers_done, 0);
	for (int i = 0; i < CALLERS; i++)
		pthread_create(&tids[i], NULL, caller_thread, m);
	while (atomic_load(&callers_done) < CALLERS) {
		CHECK_INT(install(gens[reloads % 3], err, sizeof(err)), 0, err);
		reloads++;
		usleep(2000);
	}
	for (int i = 0; i < CALLERS; i++)
		pthread_join(tids[i], NULL);
	log_writers_flush();
	a = slurp("race-a.ec");
	b = slurp("race-b.ec");
	/* Every call saw exactly one generation: one mainlog record each. */
	CHECK_INT(count_lines(a, "\n") + count_lines(b, "\n"), CALLERS * CALLS, "records");
	CHECK(reloads > 1, "reloads happened: %d", reloads);
	free(a);
	free(b);
	message_unref(m);
	log_writers_shutdown();
	CHECK_INT(open_count("race-a.ec") + open_count("race-b.ec") + open_count("race.json"), 0,
	          "all closed");
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
		TEST(test_every_log),
		TEST(test_switches),
		TEST(test_classifier_hook),
		TEST(test_reload_keeps_and_closes),
		TEST(test_configure_errors),
		TEST(test_heartbeat),
		TEST(test_calls_during_reloads),
	};
	const char *base = getenv("TMPDIR");
	int rc;

	snprintf(tmpdir, sizeof(tmpdir), "%s/log_writer_test.XXXXXX", base ? base : "/tmp");
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	/* /proc/self/fd shows resolved paths. */
	char real[PATH_MAX];
	if (realpath(tmpdir, real) != NULL && strlen(real) < sizeof(tmpdir))
		memcpy(tmpdir, real, strlen(real) + 1);
	conf_registry_init();
	rc = test_run("log_writer", cases, sizeof(cases) / sizeof(cases[0]));
	cleanup();
	return rc;
}

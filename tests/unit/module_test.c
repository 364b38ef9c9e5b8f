/*
 * module_test.c - the module loader: load errors, loading once, built-in
 * modules, first/last ordering across modules, refused generations that
 * keep the running hooks, reload carrying state, fini deferred while a
 * hook call runs, console dispatch, and the in-tree modules
 * conn_failure_log and example.
 *
 * The test modules (tests/unit/modules/, built into TEST_MODULE_DIR)
 * report every life-cycle step and hook call to module_test_trace(), which
 * this executable exports (ENABLE_EXPORTS) like impetusd exports its API.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <impetus/hooks/core/log_client_connection_failure.h>
#include <impetus/hooks/core/log_client_connection_success.h>
#include <impetus/hooks/core/log_delivery_v1.h>
#include <impetus/module.h>

#include "conf/conf.h"
#include "lib/strbuf.h"
#include "module/module.h"
#include "test.h"

#define SEARCH "Module_Search_Path = ( \"" TEST_MODULE_DIR "\" \"" BUILD_MODULE_DIR "\" )\n"

void module_test_trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static pthread_mutex_t trace_lock = PTHREAD_MUTEX_INITIALIZER;
static struct strbuf trace_text = STRBUF_INIT;     /* "event\n" each */
static char tmpdir[64];

/* Called by the test modules (and the built-in ones below). */
void
module_test_trace(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&trace_lock);
	va_start(ap, fmt);
	strbuf_vprintf(&trace_text, fmt, ap);
	va_end(ap);
	strbuf_putc(&trace_text, '\n');
	pthread_mutex_unlock(&trace_lock);
}

/* The trace so far, and a fresh one from now on; the caller frees. */
static char *
trace_take(void)
{
	char *t;

	pthread_mutex_lock(&trace_lock);
	t = strbuf_steal(&trace_text);
	pthread_mutex_unlock(&trace_lock);
	return t;
}

/* Forget the trace so far. */
static void
trace_clear(void)
{
	free(trace_take());
}

static void
check_trace(const char *want, const char *ctx)
{
	char *got = trace_take();

	CHECK_STR(got, want, ctx);
	free(got);
}

static struct conf *
load(const char *text, struct conf_errors *errs)
{
	return conf_load_string(text, "t.conf", errs);
}

static struct conf *
load_ok(const char *text)
{
	struct conf_errors errs = { STRBUF_INIT, 0 };
	struct conf *c = load(text, &errs);

	CHECK(c != NULL, "config rejected: %s\n%s", strbuf_cstr(&errs.text), text);
	conf_errors_free(&errs);
	return c;
}

/* Load text and start its module generation; NULL (checked) on failure. */
static struct module_generation *
start_ok(const char *text, const struct module_generation *prev)
{
	struct conf_errors errs = { STRBUF_INIT, 0 };
	struct conf *c = load_ok(text);
	struct module_generation *g = NULL;

	if (c != NULL) {
		g = module_generation_start(c, prev, &errs);
		CHECK(g != NULL, "generation refused: %s\n%s", strbuf_cstr(&errs.text), text);
		conf_unref(c);
	}
	conf_errors_free(&errs);
	return g;
}

/* Run a console command given as words; returns the status, output in out. */
static int
console(const struct module_generation *g, struct strbuf *out, const char *words)
{
	char *copy = strdup(words), *argv[16], *save = NULL;
	int argc = 0, rc;

	strbuf_reset(out);
	for (char *w = strtok_r(copy, " ", &save); w != NULL && argc < 16;
	     w = strtok_r(NULL, " ", &save))
		argv[argc++] = w;
	rc = module_console_run(g, argc, argv, out);
	free(copy);
	return rc;
}

static void
fire_failure(const char *domain, int err)
{
	domain_record dr = { (char *)domain };

	call_core_log_client_connection_failure_hook(NULL, err, &dr, 0, NULL);
}

static void
test_load_errors(void)
{
	static const struct {
		const char *text;
		const char *want;       /* substrings, '|'-separated */
	} cases[] = {
		{ "Module_Search_Path = ( \"/nonexistent/a\" \"/nonexistent/b/\" )\nnosuch { }\n",
		  "t.conf:2:1: error: module nosuch: no nosuch.so in /nonexistent/a, /nonexistent/b/\n" },
		{ "Module_Search_Path = ( )\nnosuch \"x\" { }\n",
		  "t.conf:2:1: error: module nosuch: no nosuch.so in Module_Search_Path (it is empty)\n" },
		{ SEARCH "tmod_nosym { }\n",
		  "t.conf:2:1: error: module tmod_nosym: " TEST_MODULE_DIR
		  "/tmod_nosym.so has no imp_module_descriptor symbol\n" },
		{ SEARCH "tmod_badabi { }\n",
		  "t.conf:2:1: error: module tmod_badabi: ABI version 7, impetusd supports 1\n" },
		{ SEARCH "tmod_wrongname { }\n",
		  "t.conf:2:1: error: module tmod_wrongname: " TEST_MODULE_DIR
		  "/tmod_wrongname.so says it is \"someone_else\"\n" },
		{ SEARCH "tmod_unresolved { }\n",
		  "t.conf:2:1: error: module tmod_unresolved: |tmod_unresolved.so|"
		  "undefined symbol: tmod_no_such_function" },
		{ SEARCH "../tmod_a { }\n", "t.conf:2:1: error: unknown stanza \"../tmod_a\"\n" },
		{ SEARCH "Spoolbase { }\n", "t.conf:2:1: error: unknown stanza \"Spoolbase\"\n" },
		/* A module's stanza is global only; it is not looked up elsewhere. */
		{ SEARCH "Domain \"d.test\" { tmod_nosym { } }\n",
		  "t.conf:2:19: error: unknown stanza \"tmod_nosym\"\n" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct conf_errors errs = { STRBUF_INIT, 0 };
		struct conf *c = load(cases[i].text, &errs);
		char *want = strdup(cases[i].want), *save = NULL;

		CHECK(c == NULL, "case %zu: accepted:\n%s", i, cases[i].text);
		conf_unref(c);
		for (char *w = strtok_r(want, "|", &save); w != NULL; w = strtok_r(NULL, "|", &save))
			CHECK(strstr(strbuf_cstr(&errs.text), w) != NULL, "case %zu: got \"%s\", want \"%s\"",
			      i, strbuf_cstr(&errs.text), w);
		free(want);
		conf_errors_free(&errs);
	}

	/* A file that is not a shared object: the dynamic loader's words. */
	char dir[128], path[160], text[512];
	snprintf(dir, sizeof(dir), "%s/garbage", tmpdir);
	mkdir(dir, 0755);
	snprintf(path, sizeof(path), "%s/tmod_garbage.so", dir);
	FILE *f = fopen(path, "w");
	CHECK(f != NULL, "cannot create %s", path);
	if (f != NULL) {
		fputs("this is not an ELF file, but it is long enough to have a header\n", f);
		fclose(f);
	}
	snprintf(text, sizeof(text), "Module_Search_Path = \"%s\"\ntmod_garbage { }\n", dir);
	struct conf_errors errs = { STRBUF_INIT, 0 };
	struct conf *c = load(text, &errs);
	CHECK(c == NULL, "garbage module accepted");
	conf_unref(c);
	CHECK(strstr(strbuf_cstr(&errs.text), "t.conf:2:1: error: module tmod_garbage: ") != NULL &&
	      strstr(strbuf_cstr(&errs.text), path) != NULL,
	      "got \"%s\", want the module name, the path and dlerror's text",
	      strbuf_cstr(&errs.text));
	conf_errors_free(&errs);
	unlink(path);
	rmdir(dir);
}

static void
test_load_once(void)
{
	struct conf *c1 = load_ok(SEARCH "tmod_a { }\n");
	const struct conf_stanza_def *def = conf_stanza_find("tmod_a");
	/* Case-insensitive keyword; the definition is reused, not reloaded. */
	struct conf *c2 = load_ok(SEARCH "TMOD_A \"x\" { position = first }\n");
	struct conf_errors errs = { STRBUF_INIT, 0 };

	CHECK(def != NULL, "tmod_a's stanza is not registered");
	CHECK(conf_stanza_find("TMod_A") == def, "a second definition of tmod_a");
	if (c2 != NULL) {
		const struct conf_scope *s = c2->global->children[c2->global->nchildren - 1];
		CHECK(s->def == def, "the second generation uses another definition");
		CHECK_STR(s->name, "x", "instance name");
	}
	conf_unref(c1);
	conf_unref(c2);

	/* Now known, the stanza is refused where it does not belong, and its
	 * options are known only inside it. */
	static const struct {
		const char *text, *want;
	} cases[] = {
		{ SEARCH "Domain \"d.test\" { tmod_a { } }\n",
		  "t.conf:2:19: error: tmod_a cannot appear in Domain (it belongs in: global)\n" },
		{ SEARCH "position = first\n", "t.conf:2:1: error: unknown option \"position\"\n" },
		{ SEARCH "tmod_a { nope = 1 }\n", "t.conf:2:10: error: unknown option \"nope\"\n" },
		{ SEARCH "tmod_a { position = middle }\n", "t.conf:2:21: error: " },
		{ SEARCH "tmod_a { }\ntmod_a { }\n", "t.conf:3:1: error: tmod_a is already defined" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct conf *c = load(cases[i].text, &errs);
		CHECK(c == NULL, "case %zu accepted", i);
		conf_unref(c);
		CHECK(strstr(strbuf_cstr(&errs.text), cases[i].want) != NULL,
		      "case %zu: got \"%s\", want \"%s\"", i, strbuf_cstr(&errs.text), cases[i].want);
		strbuf_reset(&errs.text);
		errs.count = 0;
	}
	conf_errors_free(&errs);
}

/* A built-in module: linked into the executable, no dlopen. */
static struct conf_option builtin_opt_word = {
	.name = "word", .type = CONF_T_STRING, .def = "hello",
};
static struct conf_option builtin_opt_unregistered = {
	.name = "unregistered", .type = CONF_T_STRING, .def = "x",
};
static struct conf_option *const builtin_options[] = { &builtin_opt_word, NULL };

static int
builtin_init(struct imp_module_instance *inst, char *err, size_t errlen)
{
	const struct conf_setting *w = imp_module_setting(inst, &builtin_opt_word);

	module_test_trace("init tbuiltin/%s word=%s unregistered=%s", imp_module_instance_name(inst),
	                  w ? w->s : "(null)",
	                  imp_module_setting(inst, &builtin_opt_unregistered) ? "set" : "NULL");
	imp_module_log_info(inst, "a paniclog line from the built-in module");
	return 0;
}

static void
builtin_fini(struct imp_module_instance *inst)
{
	module_test_trace("fini tbuiltin/%s", imp_module_instance_name(inst));
}

static const struct imp_module_desc builtin_desc = {
	.abi_version = IMP_MODULE_ABI_VERSION,
	.name = "tbuiltin",
	.options = builtin_options,
	.init = builtin_init,
	.fini = builtin_fini,
};

static void
test_builtin(void)
{
	static const struct imp_module_desc bad_abi = { .abi_version = 2, .name = "tbad" };
	static const struct imp_module_desc bad_name = { .abi_version = IMP_MODULE_ABI_VERSION,
		                                         .name = "../x" };
	struct strbuf out = STRBUF_INIT;

	CHECK_INT(module_builtin_add(&builtin_desc), 0, "first add");
	CHECK_INT(module_builtin_add(&builtin_desc), -1, "second add");
	CHECK_INT(module_builtin_add(&bad_abi), -1, "wrong ABI");
	CHECK_INT(module_builtin_add(&bad_name), -1, "bad name");
	CHECK_INT(module_builtin_add(NULL), -1, "NULL");

	trace_clear();
	struct module_generation *g = start_ok(SEARCH "tbuiltin { }\ntbuiltin \"two\" { word = bye }\n",
	                                       NULL);
	if (g == NULL)
		return;
	module_generation_commit(g);
	check_trace("init tbuiltin/tbuiltin word=hello unregistered=NULL\n"
	            "init tbuiltin/two word=bye unregistered=NULL\n", "built-in init");
	module_generation_describe(g, &out);
	CHECK_STR(strbuf_cstr(&out),
	          "module tbuiltin instance tbuiltin: initialized (built-in)\n"
	          "module tbuiltin instance two: initialized (built-in)\n", "describe");
	CHECK_INT(module_generation_count(g), 2, "instances");
	CHECK_STR(imp_module_instance_name(module_generation_instance(g, 1)), "two", "instance 1");
	CHECK(module_generation_instance(g, 2) == NULL, "instance past the end");
	module_shutdown(g);
	check_trace("fini tbuiltin/two\nfini tbuiltin/tbuiltin\n", "fini in reverse order");
	strbuf_free(&out);
}

/* A permanent provider, registered outside any transaction by the core. */
static void
permanent_provider(void *closure, struct sockaddr *addr, int err, domain_record *dr,
                   int binding_slot, struct timeval *now)
{
	module_test_trace("call permanent");
}

static void
test_hook_order(void)
{
	register_core_log_client_connection_failure_hook_last(permanent_provider, NULL);
	trace_clear();
	/* File order a, b, a/x: a appends, b prepends, a/x appends. */
	struct module_generation *g = start_ok(SEARCH "tmod_a { position = last }\n"
	                                       "tmod_b { position = first }\n"
	                                       "tmod_a \"x\" { }\n", NULL);
	if (g == NULL)
		return;
	check_trace("init tmod_a/tmod_a\ninit tmod_b/tmod_b\ninit tmod_a/x\n", "init in file order");
	/* Nothing is visible before the commit. */
	fire_failure("d.test", CONN_ERROR_CONNECT);
	check_trace("call permanent\n", "before commit");
	module_generation_commit(g);
	fire_failure("d.test", CONN_ERROR_CONNECT);
	check_trace("call tmod_b/tmod_b\ncall permanent\ncall tmod_a/tmod_a\ncall tmod_a/x\n",
	            "first/last across modules");
	CHECK_INT(imp_hook_count(&IMP_HOOK_HEAD(core, log_client_connection_failure)), 4, "providers");
	module_shutdown(g);
	check_trace("fini tmod_a/x\nfini tmod_b/tmod_b\nfini tmod_a/tmod_a\n", "fini");
	fire_failure("d.test", CONN_ERROR_CONNECT);
	check_trace("call permanent\n", "after shutdown only the permanent provider");
	imp_hook_unregister(&IMP_HOOK_HEAD(core, log_client_connection_failure),
	                    (void (*)(void))permanent_provider, NULL);
}

static void
test_init_failure_keeps_previous(void)
{
	struct conf_errors errs = { STRBUF_INIT, 0 };
	struct strbuf out = STRBUF_INIT;

	trace_clear();
	struct module_generation *g1 = start_ok(SEARCH "tmod_a { }\n", NULL);
	if (g1 == NULL)
		return;
	module_generation_commit(g1);
	fire_failure("d.test", CONN_ERROR_CONNECT);
	trace_clear();

	struct conf *c = load_ok(SEARCH "tmod_a { position = first }\ntmod_a \"new\" { }\n"
	                         "tmod_b { fail = true }\ntmod_a \"never\" { }\n");
	struct module_generation *g2 = c ? module_generation_start(c, g1, &errs) : NULL;
	CHECK(g2 == NULL, "a generation with a failing init was started");
	CHECK_STR(strbuf_cstr(&errs.text),
	          "t.conf:4:1: error: module tmod_b instance tmod_b: asked to fail\n", "error");
	/* Created in order, stopped at the failure, finished in reverse. */
	check_trace("reload tmod_a/tmod_a\ninit tmod_a/new\ninit tmod_b/tmod_b\n"
	            "fini tmod_a/new\nfini tmod_a/tmod_a\n", "refused generation");
	conf_unref(c);
	CHECK(!imp_hook_txn_open(), "the transaction is still open");

	/* The running registrations are intact: g1's instance, with its state. */
	CHECK_INT(imp_hook_count(&IMP_HOOK_HEAD(core, log_client_connection_failure)), 1, "providers");
	fire_failure("d.test", CONN_ERROR_CONNECT);
	check_trace("call tmod_a/tmod_a\n", "the old instance still runs");
	CHECK_INT(console(g1, &out, "tmod_a calls"), 0, "calls");
	CHECK_STR(strbuf_cstr(&out), "2\n", "calls of the running instance");

	/* A generation refused after it started (conf_try_install said no). */
	struct module_generation *g3 = start_ok(SEARCH "tmod_b { }\n", g1);
	module_generation_abort(g3);
	check_trace("init tmod_b/tmod_b\nfini tmod_b/tmod_b\n", "aborted generation");
	fire_failure("d.test", CONN_ERROR_CONNECT);
	check_trace("call tmod_a/tmod_a\n", "after abort");

	module_shutdown(g1);
	check_trace("fini tmod_a/tmod_a\n", "shutdown");
	conf_errors_free(&errs);
	strbuf_free(&out);
}

static void
test_reload_carries_state(void)
{
	struct strbuf out = STRBUF_INIT;

	trace_clear();
	struct module_generation *g1 = start_ok(SEARCH "tmod_a { }\ntmod_b { }\n", NULL);
	if (g1 == NULL)
		return;
	module_generation_commit(g1);
	fire_failure("d.test", CONN_ERROR_CONNECT);
	fire_failure("d.test", CONN_ERROR_CONNECT);
	trace_clear();

	/* tmod_a has reload, tmod_b has not; "extra" is new. */
	struct module_generation *g2 = start_ok(SEARCH "tmod_a { }\ntmod_b { }\ntmod_a \"extra\" { }\n",
	                                        g1);
	if (g2 == NULL)
		return;
	check_trace("reload tmod_a/tmod_a\ninit tmod_b/tmod_b\ninit tmod_a/extra\n", "reload or init");
	module_generation_commit(g2);
	module_generation_finish(g1);
	check_trace("fini tmod_b/tmod_b\nfini tmod_a/tmod_a\n", "old generation finished");
	fire_failure("d.test", CONN_ERROR_CONNECT);
	trace_clear();
	CHECK_INT(console(g2, &out, "tmod_a calls"), 0, "calls");
	CHECK_STR(strbuf_cstr(&out), "3\n", "tmod_a's count carried over by reload");
	CHECK_INT(console(g2, &out, "tmod_b calls"), 0, "calls");
	CHECK_STR(strbuf_cstr(&out), "1\n", "tmod_b has no reload: init starts afresh");
	CHECK_INT(console(g2, &out, "tmod_a:extra calls"), 0, "calls");
	CHECK_STR(strbuf_cstr(&out), "1\n", "a new instance starts afresh");
	module_generation_describe(g2, &out);
	CHECK(strstr(strbuf_cstr(&out), "module tmod_a instance tmod_a: reloaded (" TEST_MODULE_DIR
	             "/tmod_a.so)\n") != NULL, "describe: %s", strbuf_cstr(&out));
	module_shutdown(g2);
	trace_clear();
	strbuf_free(&out);
}

/* A built-in module whose provider blocks until released. */
static atomic_int blocker_entered, blocker_release;

static void
blocker_provider(void *closure, struct sockaddr *addr, domain_record *dr, int binding_slot,
                 struct timeval *now)
{
	atomic_store(&blocker_entered, 1);
	while (!atomic_load(&blocker_release))
		usleep(1000);
}

static int
blocker_init(struct imp_module_instance *inst, char *err, size_t errlen)
{
	register_core_log_client_connection_success_hook_last(blocker_provider, inst);
	return 0;
}

static void
blocker_fini(struct imp_module_instance *inst)
{
	module_test_trace("fini tblocker");
}

static const struct imp_module_desc blocker_desc = {
	.abi_version = IMP_MODULE_ABI_VERSION,
	.name = "tblocker",
	.init = blocker_init,
	.fini = blocker_fini,
};

static void *
blocker_caller(void *arg)
{
	domain_record dr = { "d.test" };

	call_core_log_client_connection_success_hook(NULL, &dr, 0, NULL);
	return NULL;
}

static void
test_finish_waits_for_calls(void)
{
	pthread_t tid;

	CHECK_INT(module_builtin_add(&blocker_desc), 0, "add tblocker");
	struct module_generation *g1 = start_ok(SEARCH "tblocker { }\n", NULL);
	if (g1 == NULL)
		return;
	module_generation_commit(g1);
	trace_clear();
	pthread_create(&tid, NULL, blocker_caller, NULL);
	while (!atomic_load(&blocker_entered))
		usleep(1000);

	/* The provider is running on another thread when its generation goes. */
	struct module_generation *g2 = start_ok(SEARCH, g1);
	module_generation_commit(g2);
	module_generation_finish(g1);
	check_trace("", "fini while a call still runs the provider");
	CHECK_INT(module_reclaim(), 1, "generations waiting");
	atomic_store(&blocker_release, 1);
	pthread_join(tid, NULL);
	CHECK_INT(module_reclaim(), 0, "generations waiting after the call returned");
	check_trace("fini tblocker\n", "fini once the call returned");
	module_shutdown(g2);
}

static void
test_console(void)
{
	static const struct {
		const char *words;
		int rc;
		const char *want;       /* exact output */
	} cases[] = {
		{ "tmod_a echo x y", 0, "tmod_a: echo x y\n" },
		{ "TMOD_A echo", 0, "tmod_a: echo\n" },
		{ "tmod_a:second echo z", 0, "second: echo z\n" },
		{ "tmod_b ECHO", 0, "tmod_b: ECHO\n" },
		{ "tmod_a fail", 2, "failing\n" },
		{ "tmod_a:third echo", 1, "module tmod_a has no instance \"third\"; instances: tmod_a second\n" },
		{ "nope x", 1, "unknown module \"nope\"; modules: tmod_a, tmod_b\n" },
		{ "tmod_a nope", 1, "module tmod_a: unknown verb \"nope\"; verbs:\n"
		                    "  tmod_a calls  hook calls seen\n"
		                    "  tmod_a echo  print the arguments\n"
		                    "  tmod_a fail  fail with status 2\n" },
		{ "tmod_a", 1, "module tmod_a: which verb? verbs:\n"
		               "  tmod_a calls  hook calls seen\n"
		               "  tmod_a echo  print the arguments\n"
		               "  tmod_a fail  fail with status 2\n" },
		{ "", 1, "usage: <module>[:<instance>] <verb> [args…]; modules: tmod_a, tmod_b\n" },
	};
	struct strbuf out = STRBUF_INIT;

	struct module_generation *g = start_ok(SEARCH "tmod_a { }\ntmod_b { }\ntmod_a \"second\" { }\n",
	                                       NULL);
	if (g == NULL)
		return;
	module_generation_commit(g);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = console(g, &out, cases[i].words);
		CHECK_INT(rc, cases[i].rc, cases[i].words);
		CHECK_STR(strbuf_cstr(&out), cases[i].want, cases[i].words);
	}
	CHECK_INT(console(NULL, &out, "tmod_a echo"), 1, "no generation");
	CHECK_STR(strbuf_cstr(&out), "unknown module \"tmod_a\"; modules: none are configured\n",
	          "no generation");
	module_shutdown(g);
	trace_clear();
	strbuf_free(&out);
}

static char *
read_file(const char *path)
{
	struct strbuf sb = STRBUF_INIT;
	char buf[4096];
	size_t n;
	FILE *f = fopen(path, "r");

	if (f == NULL)
		return strbuf_steal(&sb);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		strbuf_append(&sb, buf, n);
	fclose(f);
	return strbuf_steal(&sb);
}

static void *
cfl_hammer(void *arg)
{
	domain_record dr = { (char *)arg };
	struct timeval tv = { 1764070000, 0 };

	for (int i = 0; i < 1000; i++)
		call_core_log_client_connection_failure_hook(NULL, CONN_ERROR_CONNECT_TIMEOUT, &dr, 0, &tv);
	return NULL;
}

static void
test_conn_failure_log(void)
{
	char path[128], conf[512];
	struct strbuf out = STRBUF_INIT;
	struct conf_errors errs = { STRBUF_INIT, 0 };
	struct sockaddr_in sin = { 0 };
	struct sockaddr_in6 sin6 = { 0 };
	struct timeval tv = { 1764070000, 0 };
	domain_record d1 = { "d1.test" }, d2 = { "d2.test" };
	time_t before = time(NULL);

	snprintf(path, sizeof(path), "%s/connfail.log", tmpdir);
	snprintf(conf, sizeof(conf), SEARCH "conn_failure_log { path = \"%s\" }\n", path);
	struct module_generation *g1 = start_ok(conf, NULL);
	if (g1 == NULL)
		return;
	module_generation_commit(g1);

	sin.sin_family = AF_INET;
	sin.sin_port = htons(25);
	inet_pton(AF_INET, "127.0.0.2", &sin.sin_addr);
	sin6.sin6_family = AF_INET6;
	sin6.sin6_port = htons(2525);
	inet_pton(AF_INET6, "::1", &sin6.sin6_addr);
	call_core_log_client_connection_failure_hook((struct sockaddr *)&sin,
	                                             CONN_ERROR_CONNECT | CONN_ACTION_REQUEUE1, &d1, 0, &tv);
	call_core_log_client_connection_failure_hook(NULL, CONN_ERROR_MX_LOOKUP_PENDING, &d2, 0, &tv);
	call_core_log_client_connection_failure_hook((struct sockaddr *)&sin6,
	                                             CONN_ERROR_SMTP_NULL_MX | CONN_ACTION_PURGE_DOMAIN,
	                                             &d1, 9999, &tv);
	call_core_log_client_connection_failure_hook(NULL, CONN_ERROR_MX_LOOKUP_FAILED, &d2, 0, NULL);

	char *text = read_file(path);
	char want[1024];
	snprintf(want, sizeof(want),
	         "1764070000@d1.test@default@127.0.0.2:25@CONN_ERROR_CONNECT|CONN_ACTION_REQUEUE1\n"
	         "1764070000@d2.test@default@@CONN_ERROR_MX_LOOKUP_PENDING\n"
	         "1764070000@d1.test@@[::1]:2525@CONN_ERROR_SMTP_NULL_MX|CONN_ACTION_PURGE_DOMAIN\n");
	CHECK(strncmp(text, want, strlen(want)) == 0, "log lines: got \"%s\", want \"%s…\"", text, want);
	long long t = 0;
	const char *last = text + strlen(want);
	CHECK(strlen(text) > strlen(want) && sscanf(last, "%lld@", &t) == 1 && t >= before &&
	      t <= time(NULL) + 1 && strstr(last, "@d2.test@default@@CONN_ERROR_MX_LOOKUP_FAILED\n") != NULL,
	      "line without now: got \"%s\"", last);
	free(text);

	CHECK_INT(console(g1, &out, "conn_failure_log counts"), 0, "counts");
	CHECK_STR(strbuf_cstr(&out), "d1.test 2\nd2.test 2\n", "counts");

	/* Reload: a new file, the same counts. */
	snprintf(path, sizeof(path), "%s/connfail2.log", tmpdir);
	snprintf(conf, sizeof(conf), SEARCH "conn_failure_log { path = \"%s\" }\n", path);
	struct module_generation *g2 = start_ok(conf, g1);
	if (g2 == NULL)
		return;
	module_generation_commit(g2);
	module_generation_finish(g1);
	call_core_log_client_connection_failure_hook(NULL, CONN_ERROR_BIND | CONN_ACTION_REQUEUE1, &d1,
	                                             0, &tv);
	CHECK_INT(console(g2, &out, "conn_failure_log counts"), 0, "counts");
	CHECK_STR(strbuf_cstr(&out), "d1.test 3\nd2.test 2\n", "counts carried over by reload");
	text = read_file(path);
	CHECK_STR(text, "1764070000@d1.test@default@@CONN_ERROR_BIND|CONN_ACTION_REQUEUE1\n",
	          "the new file");
	free(text);

	/* Threads: every line whole, every event counted. */
	pthread_t tids[4];
	char *domains[4] = { "t0.test", "t1.test", "t2.test", "t0.test" };
	for (int i = 0; i < 4; i++)
		pthread_create(&tids[i], NULL, cfl_hammer, domains[i]);
	for (int i = 0; i < 4; i++)
		pthread_join(tids[i], NULL);
	text = read_file(path);
	size_t lines = 0, bad = 0;
	const char *suffix = ".test@default@@CONN_ERROR_CONNECT_TIMEOUT";
	size_t slen = strlen(suffix);
	for (char *p = text, *nl; (nl = strchr(p, '\n')) != NULL; p = nl + 1) {
		if (lines++ == 0)
			continue;       /* the line from before */
		if ((size_t)(nl - p) != 12 + 1 + slen || strncmp(p, "1764070000@t", 12) != 0 ||
		    strncmp(nl - slen, suffix, slen) != 0)
			bad++;
	}
	CHECK_INT(lines, 4001, "lines after 4 threads x 1000 events");
	CHECK_INT(bad, 0, "malformed lines");
	free(text);
	CHECK_INT(console(g2, &out, "conn_failure_log counts"), 0, "counts");
	CHECK_STR(strbuf_cstr(&out), "d1.test 3\nd2.test 2\nt0.test 2000\nt1.test 1000\nt2.test 1000\n",
	          "counts from threads");
	CHECK_INT(console(g2, &out, "conn_failure_log reset"), 0, "reset");
	CHECK_STR(strbuf_cstr(&out), "counts reset\n", "reset");
	CHECK_INT(console(g2, &out, "conn_failure_log counts"), 0, "counts");
	CHECK_STR(strbuf_cstr(&out), "", "counts after reset");

	/* Errors refuse the generation and keep g2. */
	static const struct {
		const char *stanza, *want;
	} bad_cases[] = {
		{ "conn_failure_log \"x\" { }\n",
		  "t.conf:2:1: error: module conn_failure_log instance x: path is not set" },
		{ "conn_failure_log { path = \"/nonexistent/dir/f.log\" }\n",
		  "t.conf:2:1: error: module conn_failure_log instance conn_failure_log: "
		  "cannot open /nonexistent/dir/f.log: No such file or directory\n" },
	};
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		snprintf(conf, sizeof(conf), SEARCH "%s", bad_cases[i].stanza);
		struct conf *c = load_ok(conf);
		struct module_generation *g = c ? module_generation_start(c, g2, &errs) : NULL;
		CHECK(g == NULL, "case %zu started", i);
		CHECK(strstr(strbuf_cstr(&errs.text), bad_cases[i].want) != NULL,
		      "case %zu: got \"%s\", want \"%s\"", i, strbuf_cstr(&errs.text), bad_cases[i].want);
		strbuf_reset(&errs.text);
		conf_unref(c);
	}
	call_core_log_client_connection_failure_hook(NULL, CONN_ERROR_SOCKET, &d2, 0, &tv);
	CHECK_INT(console(g2, &out, "conn_failure_log counts"), 0, "counts");
	CHECK_STR(strbuf_cstr(&out), "d2.test 1\n", "the running instance still counts");
	module_shutdown(g2);
	conf_errors_free(&errs);
	strbuf_free(&out);
}

static void
test_example(void)
{
	struct strbuf out = STRBUF_INIT;
	domain_record dr = { "d.test" };

	struct module_generation *g1 = start_ok(SEARCH "example { }\n", NULL);
	if (g1 == NULL)
		return;
	module_generation_commit(g1);
	call_core_log_client_connection_success_hook(NULL, &dr, 0, NULL);
	call_core_log_client_connection_success_hook(NULL, &dr, 0, NULL);
	call_core_log_delivery_v1_hook(NULL, &dr, NULL, "250 ok", 6);
	CHECK_INT(console(g1, &out, "example stats"), 0, "stats");
	CHECK_STR(strbuf_cstr(&out), "instance example: 2 connections, 1 deliveries\n", "stats");

	struct module_generation *g2 = start_ok(SEARCH "example { log_deliveries = false }\n", g1);
	if (g2 == NULL)
		return;
	module_generation_commit(g2);
	module_generation_finish(g1);
	call_core_log_client_connection_success_hook(NULL, &dr, 0, NULL);
	CHECK_INT(console(g2, &out, "example stats"), 0, "stats");
	CHECK_STR(strbuf_cstr(&out), "instance example: 3 connections, 1 deliveries\n",
	          "stats carried over by reload");
	module_shutdown(g2);
	strbuf_free(&out);
}

static const struct test_case cases[] = {
	TEST(test_load_errors),
	TEST(test_load_once),
	TEST(test_builtin),
	TEST(test_hook_order),
	TEST(test_init_failure_keeps_previous),
	TEST(test_reload_carries_state),
	TEST(test_finish_waits_for_calls),
	TEST(test_console),
	TEST(test_conn_failure_log),
	TEST(test_example),
};

int
main(void)
{
	int rc;
	char cmd[128];

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/module_test.XXXXXX");
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	module_loader_install();
	rc = test_run("module", cases, sizeof(cases) / sizeof(cases[0]));
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
	strbuf_free(&trace_text);
	return rc;
}

/*
 * hook_test.c - the hook machinery: generated functions, first/last order,
 * chain rules, closures, registration transactions, permanent providers,
 * reclamation, and calls from many threads while reloads swap provider
 * arrays (run under ThreadSanitizer by the test script). Also the CONN_*
 * flag renderer and the core hook heads.
 */
#include <impetus/conn_errors.h>
#include <impetus/hook.h>
#include <impetus/hooks/core/binding_group_choose_binding.h>
#include <impetus/hooks/core/generate_bounces.h>
#include <impetus/hooks/core/log_client_connection_failure.h>
#include <impetus/hooks/core/log_rejection.h>
#include <impetus/hooks/core/smtp_error_classify.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "test.h"

/* Hooks of a private scope, one per chain rule. */
IMP_DECLARE_VOID_HOOK(test, trace,
	(void *closure, char *buf, size_t len),
	(char *buf, size_t len),
	(IMP_HOOK_CLOSURE, buf, len))
IMP_DECLARE_HOOK(test, int, first_nonzero,
	(void *closure, int x),
	(int x),
	(IMP_HOOK_CLOSURE, x),
	if (IMP_HOOK_RETVAL != 0) IMP_HOOK_RETURN(IMP_HOOK_RETVAL))
IMP_DECLARE_HOOK(test, const char *, first_nonnull,
	(void *closure),
	(void),
	(IMP_HOOK_CLOSURE),
	if (IMP_HOOK_RETVAL != NULL) IMP_HOOK_RETURN(IMP_HOOK_RETVAL))
IMP_DECLARE_HOOK(test, int, last_writer,
	(void *closure, int *value),
	(int *value),
	(IMP_HOOK_CLOSURE, value),
	(void)0)
/* Momentum's spelling must work unchanged. */
EC_DECLARE_HOOK(test, int, momentum_style,
	(void *closure, int x),
	(int x),
	(EC_HOOK_CLOSURE, x),
	if (EC_HOOK_RETVAL > 10) EC_HOOK_RETURN(EC_HOOK_RETVAL))

IMP_DEFINE_HOOK(test, trace);
IMP_DEFINE_HOOK(test, first_nonzero);
IMP_DEFINE_HOOK(test, first_nonnull);
IMP_DEFINE_HOOK(test, last_writer);
IMP_DEFINE_HOOK(test, momentum_style);

static void
trace_provider(void *closure, char *buf, size_t len)
{
	size_t used = strlen(buf);
	snprintf(buf + used, len - used, "%s", (const char *)closure);
}

static void
test_first_last_order(void)
{
	char buf[64] = "";

	CHECK(!has_test_trace_hook(), "no provider yet");
	call_test_trace_hook(buf, sizeof(buf));         /* no providers: a no-op */
	CHECK_STR(buf, "", "empty chain");
	register_test_trace_hook_last(trace_provider, "B");
	register_test_trace_hook_last(trace_provider, "C");
	register_test_trace_hook_first(trace_provider, "A");
	register_test_trace_hook_first(trace_provider, "0");
	CHECK(has_test_trace_hook(), "has providers");
	call_test_trace_hook(buf, sizeof(buf));
	CHECK_STR(buf, "0ABC", "first prepends, last appends; closures come back");
	CHECK_INT(imp_hook_unregister(&IMP_HOOK_HEAD(test, trace), (void (*)(void))trace_provider, "A"), 1,
	          "unregister one");
	buf[0] = '\0';
	call_test_trace_hook(buf, sizeof(buf));
	CHECK_STR(buf, "0BC", "after unregister");
	imp_hook_unregister(&IMP_HOOK_HEAD(test, trace), (void (*)(void))trace_provider, "0");
	imp_hook_unregister(&IMP_HOOK_HEAD(test, trace), (void (*)(void))trace_provider, "B");
	imp_hook_unregister(&IMP_HOOK_HEAD(test, trace), (void (*)(void))trace_provider, "C");
	CHECK(!has_test_trace_hook(), "empty again");
	imp_hook_reclaim();
}

static int calls_seen;

static int
ret_closure_int(void *closure, int x)
{
	calls_seen++;
	return *(const int *)closure ? *(const int *)closure + x : 0;
}

static const char *
ret_closure_str(void *closure)
{
	calls_seen++;
	return closure;
}

static int
write_value(void *closure, int *value)
{
	*value = *(const int *)closure;
	return *(const int *)closure;
}

static void
test_chain_rules(void)
{
	static const int zero = 0, five = 5, seven = 7, twenty = 20;

	/* first non-zero wins, later providers do not run */
	CHECK_INT(call_test_first_nonzero_hook(1), 0, "no provider: zero");
	register_test_first_nonzero_hook_last(ret_closure_int, (void *)&zero);
	register_test_first_nonzero_hook_last(ret_closure_int, (void *)&five);
	register_test_first_nonzero_hook_last(ret_closure_int, (void *)&seven);
	calls_seen = 0;
	CHECK_INT(call_test_first_nonzero_hook(100), 105, "first non-zero");
	CHECK_INT(calls_seen, 2, "chain stopped after the winner");

	/* first non-NULL wins */
	register_test_first_nonnull_hook_last(ret_closure_str, NULL);
	register_test_first_nonnull_hook_last(ret_closure_str, "winner");
	register_test_first_nonnull_hook_last(ret_closure_str, "late");
	calls_seen = 0;
	CHECK_STR(call_test_first_nonnull_hook(), "winner", "first non-NULL");
	CHECK_INT(calls_seen, 2, "chain stopped");

	/* last writer wins: every provider runs */
	int v = 0;
	register_test_last_writer_hook_last(write_value, (void *)&five);
	register_test_last_writer_hook_last(write_value, (void *)&seven);
	CHECK_INT(call_test_last_writer_hook(&v), 7, "last provider's return");
	CHECK_INT(v, 7, "last writer wins");

	/* EC_ spellings */
	register_test_momentum_style_hook_first(ret_closure_int, (void *)&twenty);
	register_test_momentum_style_hook_last(ret_closure_int, (void *)&five);
	calls_seen = 0;
	CHECK_INT(call_test_momentum_style_hook(1), 21, "EC_HOOK_RETURN");
	CHECK_INT(calls_seen, 1, "EC chain stopped");
	CHECK_INT(call_test_momentum_style_hook(-20), 5 - 20, "no stop: last value");
}

static int
choose_none(void *closure, ec_message *msg, const char *group)
{
	return EC_BINDING_SLOT_UNBOUND;
}

static int
choose_three(void *closure, ec_message *msg, const char *group)
{
	return 3;
}

static int
bounce_off(void *closure, ec_message *m, int *enabled)
{
	*enabled = 0;
	return GENERATE_BOUNCES_HOOK_OK;
}

static int
bounce_never_reached(void *closure, ec_message *m, int *enabled)
{
	*enabled = 1;
	return GENERATE_BOUNCES_HOOK_OK;
}

static int
classify_block(void *closure, const char *response, const char *domain)
{
	return strstr(response, "blocked") ? 50 : 0;
}

static char rejection_seen[2][128];

static void
rejection_provider(void *closure, struct timeval *now, accept_construct *ac, validate_context *ctx,
                   int phase, const char *fmt, va_list ap)
{
	vsnprintf(rejection_seen[(intptr_t)closure], sizeof(rejection_seen[0]), fmt, ap);
}

static void
call_rejection(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	call_core_log_rejection_hook(NULL, NULL, NULL, VALIDATE_PHASE_RCPTTO, fmt, ap);
	va_end(ap);
}

/* The core hooks' declared rules, through their generated calls. */
static void
test_core_hook_rules(void)
{
	int enabled = 1;

	imp_hook_txn_begin();
	register_core_binding_group_choose_binding_hook_last(choose_none, NULL);
	register_core_binding_group_choose_binding_hook_last(choose_three, NULL);
	register_core_generate_bounces_hook_last(bounce_off, NULL);
	register_core_generate_bounces_hook_last(bounce_never_reached, NULL);
	register_core_smtp_error_classify_hook_last(classify_block, NULL);
	register_core_log_rejection_hook_last(rejection_provider, (void *)0);
	register_core_log_rejection_hook_last(rejection_provider, (void *)1);
	imp_hook_txn_commit();

	CHECK_INT(call_core_binding_group_choose_binding_hook(NULL, "g"), 3,
	          "UNBOUND passes on, a slot wins");
	CHECK_INT(call_core_generate_bounces_hook(NULL, &enabled), GENERATE_BOUNCES_HOOK_OK, "OK stops");
	CHECK_INT(enabled, 0, "the first OK decides");
	CHECK_INT(call_core_smtp_error_classify_hook("550 blocked", "d.test"), 50, "classified");
	CHECK_INT(call_core_smtp_error_classify_hook("550 unknown", "d.test"), 0, "left to the core");
	call_rejection("550 5.7.1 %s denied for <%s>", "relaying", "x@y.test");
	CHECK_STR(rejection_seen[0], "550 5.7.1 relaying denied for <x@y.test>", "first provider's va_list");
	CHECK_STR(rejection_seen[1], "550 5.7.1 relaying denied for <x@y.test>", "second provider's copy");
	CHECK(imp_hook_find("core", "log_client_connection_failure") != NULL, "core heads are linked");
	CHECK(imp_hook_find("core", "no_such_hook") == NULL, "unknown head");

	imp_hook_txn_begin();
	imp_hook_txn_commit();          /* a generation without modules: all gone */
	CHECK(!has_core_generate_bounces_hook(), "transaction registrations end with their generation");
	CHECK(!has_core_log_rejection_hook(), "log_rejection emptied");
	imp_hook_reclaim();
}

/* Transactions: staged aside, published together; permanent ones survive. */
static void
test_transactions(void)
{
	char buf[64] = "";

	register_test_trace_hook_last(trace_provider, "P");        /* permanent */
	imp_hook_txn_begin();
	CHECK(imp_hook_txn_open(), "open");
	register_test_trace_hook_last(trace_provider, "1");
	register_test_trace_hook_first(trace_provider, "0");
	call_test_trace_hook(buf, sizeof(buf));
	CHECK_STR(buf, "P", "staged providers are invisible until commit");
	imp_hook_txn_commit();
	buf[0] = '\0';
	call_test_trace_hook(buf, sizeof(buf));
	CHECK_STR(buf, "0P1", "committed: permanent kept in place");

	imp_hook_txn_begin();
	register_test_trace_hook_last(trace_provider, "X");
	imp_hook_txn_abort();
	buf[0] = '\0';
	call_test_trace_hook(buf, sizeof(buf));
	CHECK_STR(buf, "0P1", "abort leaves the published set");

	imp_hook_txn_begin();
	register_test_trace_hook_last(trace_provider, "2");
	imp_hook_txn_commit();
	buf[0] = '\0';
	call_test_trace_hook(buf, sizeof(buf));
	CHECK_STR(buf, "P2", "a new generation replaces the old one's providers");

	imp_hook_txn_begin();
	imp_hook_txn_commit();
	buf[0] = '\0';
	call_test_trace_hook(buf, sizeof(buf));
	CHECK_STR(buf, "P", "an empty generation keeps only the permanent");
	imp_hook_unregister(&IMP_HOOK_HEAD(test, trace), (void (*)(void))trace_provider, "P");
	CHECK_INT(imp_hook_reclaim(), 0, "every retired array freed when no call runs");
}

/* A call in progress pins the array it read; reclaim waits for it. */
static void
nested_reader(void *closure, char *buf, size_t len)
{
	/* While this call runs, a swap retires the array we were called from. */
	imp_hook_txn_begin();
	imp_hook_txn_commit();
	CHECK(imp_hook_reclaim() >= 1, "array in use must not be freed");
}

static void
test_reclaim_waits_for_readers(void)
{
	char buf[8] = "";

	imp_hook_txn_begin();
	register_test_trace_hook_last(nested_reader, NULL);
	imp_hook_txn_commit();
	call_test_trace_hook(buf, sizeof(buf));
	CHECK_INT(imp_hook_reclaim(), 0, "freed once the call returned");
}

/* Many threads call while the main thread swaps generations. */
struct stress_state {
	atomic_int stop;
	atomic_long calls;      /* calls that ran a provider */
};

/* Reads the provider array it was called from: ASan/TSan flag any array
 * freed under a running call. */
static void
stress_provider(void *closure, char *buf, size_t len)
{
	const int *gen = closure;
	buf[0] = (char)('a' + *gen % 26);
}

static void *
stress_caller(void *arg)
{
	struct stress_state *st = arg;
	char buf[4];

	while (!atomic_load(&st->stop)) {
		buf[0] = '\0';
		call_test_trace_hook(buf, sizeof(buf));
		if (buf[0] != '\0')
			atomic_fetch_add(&st->calls, 1);
	}
	return NULL;
}

static void
test_threads_and_reloads(void)
{
	enum { NTHREADS = 4, NRELOADS = 2000 };
	static int gens[NRELOADS];
	struct stress_state st;
	pthread_t th[NTHREADS];

	atomic_init(&st.stop, 0);
	atomic_init(&st.calls, 0);
	/* A first generation, and every caller running before the swaps begin. */
	gens[0] = 0;
	imp_hook_txn_begin();
	register_test_trace_hook_last(stress_provider, &gens[0]);
	imp_hook_txn_commit();
	for (int i = 0; i < NTHREADS; i++)
		pthread_create(&th[i], NULL, stress_caller, &st);
	while (atomic_load(&st.calls) < NTHREADS * 100)
		sched_yield();
	for (int g = 1; g < NRELOADS; g++) {  /* gens[0] is live already */
		gens[g] = g;
		imp_hook_txn_begin();
		for (int k = 0; k < 1 + g % 5; k++)
			register_test_trace_hook_last(stress_provider, &gens[g]);
		imp_hook_txn_commit();
		imp_hook_reclaim();
		if (g % 50 == 0)
			sched_yield();  /* let the callers run between swaps */
	}
	atomic_store(&st.stop, 1);
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	CHECK(atomic_load(&st.calls) > 0, "calls ran providers");
	imp_hook_txn_begin();
	imp_hook_txn_commit();
	CHECK_INT(imp_hook_reclaim(), 0, "all retired arrays freed");
	printf("  %ld calls across %d reloads\n", (long)atomic_load(&st.calls), NRELOADS);
}

static void
test_conn_error_render(void)
{
	static const struct {
		int err;
		const char *want;
	} cases[] = {
		{ 0, "0" },
		{ CONN_ERROR_CONNECT_TIMEOUT | CONN_ACTION_REQUEUE1,
		  "CONN_ERROR_CONNECT_TIMEOUT|CONN_ACTION_REQUEUE1" },
		{ CONN_ACTION_PURGE_DOMAIN | CONN_ERROR_SMTP_NULL_MX,
		  "CONN_ERROR_SMTP_NULL_MX|CONN_ACTION_PURGE_DOMAIN" },
		{ CONN_ERROR_MX_LOOKUP_PENDING, "CONN_ERROR_MX_LOOKUP_PENDING" },
		{ CONN_ERROR_MX_LOOKUP_FAILED, "CONN_ERROR_MX_LOOKUP_FAILED" },
		{ CONN_ERROR_NO_MXS_REACHABLE, "CONN_ERROR_NO_MXS_REACHABLE" },
		{ CONN_ERROR_PROHIBITED_IP, "CONN_ERROR_PROHIBITED_IP" },
		{ CONN_ERROR_HOST_MAX_REACHED, "CONN_ERROR_HOST_MAX_REACHED" },
		{ CONN_ERROR_SOCKET, "CONN_ERROR_SOCKET" },
		{ CONN_ERROR_IOCTL, "CONN_ERROR_IOCTL" },
		{ CONN_ERROR_BIND, "CONN_ERROR_BIND" },
		{ CONN_ERROR_CONNECT, "CONN_ERROR_CONNECT" },
		{ CONN_ERROR_CONNECT_NETWORK, "CONN_ERROR_CONNECT_NETWORK" },
		{ CONN_ERROR_CONNECT | 0x4000 | 0x40000000, "CONN_ERROR_CONNECT|0x4000|0x40000000" },
	};
	char buf[256], small[12];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = conn_error_render(cases[i].err, buf, sizeof(buf));
		CHECK_STR(buf, cases[i].want, cases[i].want);
		CHECK_INT(n, strlen(cases[i].want), "returned length");
	}
	size_t need = conn_error_render(CONN_ERROR_CONNECT | CONN_ACTION_REQUEUE1, small, sizeof(small));
	CHECK_INT(need, strlen("CONN_ERROR_CONNECT|CONN_ACTION_REQUEUE1"), "needed length when truncated");
	CHECK_STR(small, "CONN_ERROR_", "truncated, NUL-terminated");
	CHECK_STR(conn_error_name(CONN_ACTION_REQUEUE1), "CONN_ACTION_REQUEUE1", "name");
	CHECK(conn_error_name(3) == NULL, "not a single flag");
	/* The published numbers never change. */
	CHECK_INT(CONN_ERROR_MX_LOOKUP_PENDING, 0x1, "ABI");
	CHECK_INT(CONN_ERROR_CONNECT_TIMEOUT, 0x800, "ABI");
	CHECK_INT(CONN_ACTION_REQUEUE1, 0x10000, "ABI");
	CHECK_INT(CONN_ACTION_PURGE_DOMAIN, 0x20000, "ABI");
}

TEST_MAIN("hook",
	TEST(test_first_last_order),
	TEST(test_chain_rules),
	TEST(test_core_hook_rules),
	TEST(test_transactions),
	TEST(test_reclaim_waits_for_readers),
	TEST(test_threads_and_reloads),
	TEST(test_conn_error_render))

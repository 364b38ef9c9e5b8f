/*
 * queue_policy_test.c - the scheduler's pure arithmetic (queue_policy.c)
 * and the binding of a recipient (queue_binding.c).
 *
 * queue_retry_delay_s doubles Retry_Interval per retry up to
 * Max_Retry_Interval (n = 0 counts as the first retry, odd values, no
 * overflow for huge n); queue_max_retries_parse reads "auto", "none" and
 * numbers; queue_expired applies Message_Expiration (0 = never) and
 * Max_Retries (-1 = no limit) and names the note; queue_conn_goal grows with
 * the queue and stops at Max_Outbound_Connections (-1 = no limit).
 * queue_assign_binding: X-Binding, X-Binding-Group, the
 * binding_group_choose_binding hook (registered in a transaction) ahead of
 * both, and Default_Binding normal / suspended / none.
 */
#include <stdio.h>
#include <string.h>

#include <impetus/binding.h>
#include <impetus/hook.h>
#include <impetus/hooks/core/binding_group_choose_binding.h>

#include "conf/conf.h"
#include "conf/conf_core.h"
#include "lib/strbuf.h"
#include "queue/domain.h"
#include "queue/queue.h"
#include "test.h"

static struct conf *
load_ok(const char *text)
{
	struct conf_errors errs = { STRBUF_INIT, 0 };
	struct conf *c = conf_load_string(text, "t.conf", &errs);

	CHECK(c != NULL, "config rejected: %s\n%s", strbuf_cstr(&errs.text), text);
	conf_errors_free(&errs);
	return c;
}

/* ---------------------------------------------------- retry delays */

static void
test_retry_delay(void)
{
	static const struct {
		unsigned n;                     /* transient failures so far */
		int64_t retry_s, max_s;         /* Retry_Interval, Max_Retry_Interval */
		int64_t want_s;
	} cases[] = {
		{ 0, 1200, 43200, 1200 },       /* n = 0 is treated as the first */
		{ 1, 1200, 43200, 1200 },
		{ 2, 1200, 43200, 2400 },
		{ 3, 1200, 43200, 4800 },
		{ 4, 1200, 43200, 9600 },
		{ 5, 1200, 43200, 19200 },
		{ 6, 1200, 43200, 38400 },
		{ 7, 1200, 43200, 43200 },      /* 76800 capped */
		{ 8, 1200, 43200, 43200 },
		{ 1000, 1200, 43200, 43200 },   /* no overflow */
		{ 65535, 1, 2147483647, 2147483647 },
		{ 1, 1000, 3000, 1000 },        /* odd values */
		{ 2, 1000, 3000, 2000 },
		{ 3, 1000, 3000, 3000 },        /* 4000 capped */
		{ 3, 7, 100, 28 },
		{ 5, 7, 100, 100 },             /* 112 capped */
		{ 1, 5000, 3000, 3000 },        /* Retry_Interval above the cap */
		{ 1, 1, 1, 1 },
		{ 9, 1, 1, 1 },
		{ 1, 0, 100, 1 },               /* a zero interval never means "now" */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int64_t got = queue_retry_delay_s(cases[i].n, cases[i].retry_s, cases[i].max_s);
		CHECK(got == cases[i].want_s, "n=%u retry=%lld max=%lld: got %lld, want %lld",
		      cases[i].n, (long long)cases[i].retry_s, (long long)cases[i].max_s,
		      (long long)got, (long long)cases[i].want_s);
	}
	/* Never shorter than the previous retry. */
	for (unsigned n = 1; n < 40; n++) {
		int64_t a = queue_retry_delay_s(n, 1200, 43200), b = queue_retry_delay_s(n + 1, 1200, 43200);
		CHECK(b >= a, "n=%u: got %lld then %lld, want non-decreasing", n, (long long)a,
		      (long long)b);
	}
}

static void
test_max_retries_parse(void)
{
	static const struct {
		const char *text;
		int want;
	} cases[] = {
		{ "auto", -1 }, { "AUTO", -1 }, { "none", -1 }, { "None", -1 }, { NULL, -1 },
		{ "0", 0 }, { "7", 7 }, { "120", 120 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = queue_max_retries_parse(cases[i].text);
		CHECK(got == cases[i].want, "\"%s\": got %d, want %d",
		      cases[i].text ? cases[i].text : "(null)", got, cases[i].want);
	}
}

static void
test_expired(void)
{
	static const struct {
		const char *name;
		int64_t age_s, expiration_s;
		unsigned retries;
		int max_retries;
		int want;
		const char *want_why;           /* when want is 1 */
	} cases[] = {
		{ "fresh", 0, 86400, 0, -1, 0, NULL },
		{ "one second short", 86399, 86400, 5, -1, 0, NULL },
		{ "exactly the expiration", 86400, 86400, 5, -1, 1, QUEUE_NOTE_EXPIRED },
		{ "past the expiration", 90000, 86400, 0, -1, 1, QUEUE_NOTE_EXPIRED },
		{ "0 = never expires", 1000000000, 0, 1000, -1, 0, NULL },
		{ "-1 = unlimited retries", 10, 100, 65535, -1, 0, NULL },
		{ "retries at the limit", 10, 100, 3, 3, 0, NULL },
		{ "one retry over", 10, 100, 4, 3, 1, QUEUE_NOTE_RETRIES },
		{ "max 0: the first failure", 10, 100, 1, 0, 1, QUEUE_NOTE_RETRIES },
		{ "max 0, no failure yet", 10, 100, 0, 0, 0, NULL },
		{ "both: expiry named first", 500, 100, 9, 1, 1, QUEUE_NOTE_EXPIRED },
		{ "never expires, retries over", 500, 0, 9, 1, 1, QUEUE_NOTE_RETRIES },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *why = NULL;
		int got = queue_expired(cases[i].age_s, cases[i].expiration_s, cases[i].retries,
		                        cases[i].max_retries, &why);
		CHECK(got == cases[i].want, "%s: got %d, want %d", cases[i].name, got, cases[i].want);
		if (got && cases[i].want)
			CHECK_STR(why, cases[i].want_why, cases[i].name);
	}
}

static void
test_conn_goal(void)
{
	static const struct {
		size_t nactive;
		int max_conns;
		unsigned want;
	} cases[] = {
		{ 0, 32, 0 }, { 0, -1, 0 },     /* nothing to do: no session */
		{ 1, 32, 1 }, { 16, 32, 1 }, { 17, 32, 2 }, { 32, 32, 2 }, { 33, 32, 3 },
		{ 160, 32, 10 }, { 10000, 32, 32 },
		{ 10000, -1, 625 },             /* no limit */
		{ 17, 1, 1 }, { 1000, 2, 2 },
		{ 100, 0, 0 },                  /* 0 sessions allowed */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unsigned got = queue_conn_goal(cases[i].nactive, cases[i].max_conns);
		CHECK(got == cases[i].want, "nactive=%zu max=%d: got %u, want %u", cases[i].nactive,
		      cases[i].max_conns, got, cases[i].want);
	}
	/* Grows with the queue, never past the limit. */
	unsigned prev = 0;
	for (size_t n = 1; n <= 2000; n++) {
		unsigned g = queue_conn_goal(n, 20);
		CHECK(g >= prev && g >= 1 && g <= 20, "n=%zu: got %u after %u, want %u..20", n, g, prev,
		      prev > 1 ? prev : 1);
		prev = g;
	}
	CHECK_INT(prev, 20, "goal for 2000 messages, max 20");
}

/* ---------------------------------------------------------- bindings */

#define BINDINGS_CONF                                                         \
	"Binding \"b1\" { }\n"                                                \
	"Binding_Group \"g\" { Binding \"b2\" { } Binding \"b3\" { } }\n"

struct chooser {
	int slot;                           /* what the provider answers */
	int calls;
	char group[64];                     /* the group it was asked about */
};

static int
choose_binding(void *closure, ec_message *msg, const char *group)
{
	struct chooser *ch = closure;

	(void)msg;
	ch->calls++;
	snprintf(ch->group, sizeof(ch->group), "%s", group != NULL ? group : "(null)");
	return ch->slot;
}

static void
test_assign_binding(void)
{
	struct conf *c = load_ok(BINDINGS_CONF);
	int b1, b2, b3;
	static const struct {
		const char *name;
		const char *hdr_binding, *hdr_group;
		const char *want;               /* binding name; "g" = any member of g */
		int want_default;
	} cases[] = {
		{ "no header", NULL, NULL, "default", 1 },
		{ "X-Binding b1", "b1", NULL, "b1", 0 },
		{ "X-Binding b3 (in a group)", "b3", NULL, "b3", 0 },
		{ "unknown X-Binding", "nosuch", NULL, "default", 1 },
		{ "X-Binding-Group g", NULL, "g", "g", 0 },
		{ "unknown X-Binding-Group", NULL, "nosuch", "default", 1 },
		{ "X-Binding wins over the group", "b1", "g", "b1", 0 },
		{ "unknown X-Binding, then the group", "nosuch", "g", "g", 0 },
	};

	if (c == NULL)
		return;
	b1 = conf_binding_slot(c, "b1");
	b2 = conf_binding_slot(c, "b2");
	b3 = conf_binding_slot(c, "b3");
	CHECK(b1 > 0 && b2 > 0 && b3 > 0, "slots: got %d %d %d, want > 0", b1, b2, b3);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct queue_binding_request rq = {
			.mailfrom = "s@x.test", .rcpt = "r@y.test", .msg_id = "00000000000000000000a1",
			.batch_id = "00000000000000000000a0", .header_binding = cases[i].hdr_binding,
			.header_group = cases[i].hdr_group,
		};
		int is_default = -1;
		int got = queue_assign_binding(c, &rq, &is_default);
		if (strcmp(cases[i].want, "g") == 0)
			CHECK(got == b2 || got == b3, "%s: got slot %d, want %d or %d", cases[i].name, got,
			      b2, b3);
		else
			CHECK(got == conf_binding_slot(c, cases[i].want), "%s: got slot %d (%s), want %d (%s)",
			      cases[i].name, got, conf_binding_name(c, got) ? conf_binding_name(c, got) : "?",
			      conf_binding_slot(c, cases[i].want), cases[i].want);
		CHECK(is_default == cases[i].want_default, "%s: is_default got %d, want %d",
		      cases[i].name, is_default, cases[i].want_default);
	}

	/* The group spreads recipients over its members (by message id). */
	{
		int seen2 = 0, seen3 = 0;
		for (int i = 0; i < 64; i++) {
			char id[32];
			struct queue_binding_request rq = { .mailfrom = "", .rcpt = "r@y.test",
			                                    .msg_id = id, .batch_id = "b",
			                                    .header_group = "g" };
			int is_default;
			snprintf(id, sizeof(id), "%022d", i);
			int got = queue_assign_binding(c, &rq, &is_default);
			seen2 += got == b2;
			seen3 += got == b3;
		}
		CHECK(seen2 > 0 && seen3 > 0 && seen2 + seen3 == 64,
		      "64 ids over g: got b2 %d, b3 %d; want both used, nothing else", seen2, seen3);
	}

	/* A binding_group_choose_binding provider decides before the headers. */
	{
		struct chooser ch = { .slot = b3 };
		static const struct {
			const char *name;
			int answer;                 /* -2: b3 */
			const char *hdr_binding, *hdr_group;
			const char *want;
			const char *want_group;     /* the group the hook is asked about */
		} hcases[] = {
			{ "hook over X-Binding", -2, "b1", NULL, "b3", "default" },
			{ "hook over X-Binding-Group", -2, NULL, "g", "b3", "g" },
			{ "hook with no header", -2, NULL, NULL, "b3", "default" },
			{ "hook unbound: X-Binding", EC_BINDING_SLOT_UNBOUND, "b1", NULL, "b1", "default" },
			{ "hook unbound: default", EC_BINDING_SLOT_UNBOUND, NULL, NULL, "default", "default" },
			{ "hook unknown slot: X-Binding", 9999, "b1", NULL, "b1", "default" },
		};

		imp_hook_txn_begin();
		register_core_binding_group_choose_binding_hook_last(choose_binding, &ch);
		imp_hook_txn_commit();
		for (size_t i = 0; i < sizeof(hcases) / sizeof(hcases[0]); i++) {
			struct queue_binding_request rq = {
				.mailfrom = "s@x.test", .rcpt = "r@y.test", .msg_id = "00000000000000000000b1",
				.batch_id = "00000000000000000000b0", .header_binding = hcases[i].hdr_binding,
				.header_group = hcases[i].hdr_group,
			};
			int is_default = -1, want = conf_binding_slot(c, hcases[i].want);
			ch.slot = hcases[i].answer == -2 ? b3 : hcases[i].answer;
			ch.calls = 0;
			ch.group[0] = '\0';
			int got = queue_assign_binding(c, &rq, &is_default);
			CHECK(got == want, "%s: got slot %d, want %d (%s)", hcases[i].name, got, want,
			      hcases[i].want);
			CHECK(ch.calls == 1, "%s: hook calls got %d, want 1", hcases[i].name, ch.calls);
			CHECK_STR(ch.group, hcases[i].want_group, hcases[i].name);
		}
		imp_hook_txn_begin();           /* a generation without the provider */
		imp_hook_txn_commit();
		imp_hook_reclaim();
		CHECK(!has_core_binding_group_choose_binding_hook(), "provider withdrawn");
	}
	conf_unref(c);
}

static void
test_default_binding_modes(void)
{
	static const struct {
		const char *mode;
		int want_slot;
	} cases[] = {
		{ "normal", 0 },
		{ "suspended", 0 },             /* held on "default", still slot 0 */
		{ "none", -1 },                 /* the injector gets a 451 */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char text[512];
		snprintf(text, sizeof(text), "Default_Binding = %s\n" BINDINGS_CONF, cases[i].mode);
		struct conf *c = load_ok(text);
		if (c == NULL)
			continue;
		struct queue_binding_request rq = { .mailfrom = "s@x.test", .rcpt = "r@y.test",
		                                    .msg_id = "00000000000000000000c1",
		                                    .batch_id = "00000000000000000000c0" };
		int is_default = -1;
		int got = queue_assign_binding(c, &rq, &is_default);
		CHECK(got == cases[i].want_slot, "Default_Binding = %s: got slot %d, want %d",
		      cases[i].mode, got, cases[i].want_slot);
		CHECK(is_default == 1, "Default_Binding = %s: is_default got %d, want 1", cases[i].mode,
		      is_default);
		/* An explicit binding is unaffected by the mode. */
		rq.header_binding = "b1";
		got = queue_assign_binding(c, &rq, &is_default);
		CHECK(got == conf_binding_slot(c, "b1") && is_default == 0,
		      "Default_Binding = %s with X-Binding b1: got slot %d default %d, want %d default 0",
		      cases[i].mode, got, is_default, conf_binding_slot(c, "b1"));
		conf_unref(c);
	}
}

TEST_MAIN("queue_policy",
          TEST(test_retry_delay), TEST(test_max_retries_parse), TEST(test_expired),
          TEST(test_conn_goal), TEST(test_assign_binding), TEST(test_default_binding_modes))

/*
 * conf_test.c - the typed configuration: the six-step fallback, regex
 * domains, host scopes, throttle sharing, types, errors, bindings, the
 * registry and reloads that keep the running configuration.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <impetus/binding.h>

#include "conf/binding_table.h"
#include "conf/conf.h"
#include "conf/conf_core.h"
#include "conf/throttle.h"
#include "lib/strbuf.h"
#include "test.h"

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

/*
 * Every combination of the eight places a value can be set for binding "b"
 * (in group "g") and domain "d.test"; the value found must come from the
 * first place present in precedence order.
 */
static void
test_fallback_order(void)
{
	enum { L_DOM_BIND_GRP, L_DOM_BIND_TOP, L_DOM_GRP, L_BIND_GRP, L_BIND_TOP, L_GRP,
	       L_DOM_GLOBAL, L_GLOBAL, NLAYERS };
	static const char *const names[NLAYERS] = {
		"1 domain in binding in group", "2 domain in top-level binding",
		"3 domain in group", "4a binding in group", "4b top-level binding",
		"4c group", "5 global domain", "6 global",
	};

	for (unsigned mask = 0; mask < (1u << NLAYERS); mask++) {
		struct strbuf t = STRBUF_INIT;
#define ON(l) ((mask & (1u << (l))) != 0)
#define VAL(l) (100 + (l))
		if (ON(L_GLOBAL))
			strbuf_printf(&t, "Max_Outbound_Connections = %d\n", VAL(L_GLOBAL));
		if (ON(L_DOM_GLOBAL))
			strbuf_printf(&t, "Domain \"d.test\" { Max_Outbound_Connections = %d }\n",
			              VAL(L_DOM_GLOBAL));
		strbuf_puts(&t, "Binding_Group \"g\" {\n");
		if (ON(L_GRP))
			strbuf_printf(&t, "  Max_Outbound_Connections = %d\n", VAL(L_GRP));
		if (ON(L_DOM_GRP))
			strbuf_printf(&t, "  Domain \"d.test\" { Max_Outbound_Connections = %d }\n",
			              VAL(L_DOM_GRP));
		strbuf_puts(&t, "  Binding \"b\" {\n");
		if (ON(L_BIND_GRP))
			strbuf_printf(&t, "    Max_Outbound_Connections = %d\n", VAL(L_BIND_GRP));
		if (ON(L_DOM_BIND_GRP))
			strbuf_printf(&t, "    Domain \"d.test\" { Max_Outbound_Connections = %d }\n",
			              VAL(L_DOM_BIND_GRP));
		strbuf_puts(&t, "  }\n  Binding \"other\" { }\n}\nBinding \"b\" {\n");
		if (ON(L_BIND_TOP))
			strbuf_printf(&t, "  Max_Outbound_Connections = %d\n", VAL(L_BIND_TOP));
		if (ON(L_DOM_BIND_TOP))
			strbuf_printf(&t, "  Domain \"d.test\" { Max_Outbound_Connections = %d }\n",
			              VAL(L_DOM_BIND_TOP));
		strbuf_puts(&t, "}\n");

		struct conf *c = load_ok(strbuf_cstr(&t));
		if (c != NULL) {
			int slot = conf_binding_slot(c, "b");
			int want = 32, wantl = -1;
			for (int l = 0; l < NLAYERS; l++) {
				if (ON(l)) {
					want = VAL(l);
					wantl = l;
					break;
				}
			}
			const struct conf_setting *s =
				conf_resolve(c, &conf_opt_max_outbound_connections, slot, "D.Test.");
			CHECK(s != NULL && s->i == want, "mask 0x%02x: got %lld, want %d (%s)", mask,
			      s ? (long long)s->i : -1LL, want, wantl >= 0 ? names[wantl] : "default");
			/* Another domain skips the domain layers. */
			int want_other = 32;
			static const int nondomain[] = { L_BIND_GRP, L_BIND_TOP, L_GRP, L_GLOBAL };
			for (size_t k = 0; k < 4; k++) {
				if (ON(nondomain[k])) {
					want_other = VAL(nondomain[k]);
					break;
				}
			}
			s = conf_resolve(c, &conf_opt_max_outbound_connections, slot, "other.test");
			CHECK(s != NULL && s->i == want_other, "mask 0x%02x other domain: got %lld, want %d",
			      mask, s ? (long long)s->i : -1LL, want_other);
			conf_unref(c);
		}
		strbuf_free(&t);
#undef ON
#undef VAL
	}
}

/* The Momentum documentation's examples of fallback, verbatim in spirit. */
static void
test_fallback_documented(void)
{
	struct conf *c = load_ok(
		"message_expiration = 86400\n"
		"binding \"example\" { message_expiration = 3600 }\n"
		"domain \"example.com\" { message_expiration = 120 }\n"
		"binding \"example2\" {\n"
		"  message_expiration = 7200\n"
		"  domain example.com { message_expiration = 86400 }\n"
		"  domain \"anotherexample.com\" { max_outbound_connections = 5 }\n"
		"}\n"
		"binding \"example3\" {\n"
		"  domain \"example.com\" { max_outbound_connections = 5 }\n"
		"  domain \"anotherexample.com\" { message_expiration = 86400 }\n"
		"}\n");
	static const struct {
		const char *binding, *domain;
		long long want;
	} cases[] = {
		{ "example", "x.com", 3600 },
		{ "example", "example.com", 3600 },
		{ "example2", "example.com", 86400 },
		{ "example2", "anotherexample.com", 7200 },
		{ "example2", "x.com", 7200 },
		{ "example3", "anotherexample.com", 86400 },
		{ "example3", "example.com", 120 },
		{ "example3", "x.com", 86400 },
		{ "default", "example.com", 120 },
		{ "default", "x.com", 86400 },
	};

	if (c == NULL)
		return;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int slot = conf_binding_slot(c, cases[i].binding);
		const struct conf_setting *s =
			conf_resolve(c, &conf_opt_message_expiration, slot, cases[i].domain);
		CHECK(s != NULL && s->i == cases[i].want, "%s/%s: got %lld, want %lld",
		      cases[i].binding, cases[i].domain, s ? (long long)s->i : -1LL, cases[i].want);
	}
	conf_unref(c);

	c = load_ok("max_outbound_connections = 30\n"
	            "binding_group \"group1\" {\n"
	            "  max_outbound_connections = 5\n"
	            "  binding \"example\" { bind_address = 10.10.10.10\n"
	            "    domain \"example.com\" { message_expiration = 1 } }\n"
	            "}\n");
	if (c == NULL)
		return;
	const struct conf_setting *s = conf_resolve(c, &conf_opt_max_outbound_connections,
	                                            conf_binding_slot(c, "example"), "example.com");
	CHECK(s != NULL && s->i == 5, "group value: got %lld, want 5", s ? (long long)s->i : -1LL);
	conf_unref(c);
}

static void
test_regex_domains(void)
{
	struct conf *c = load_ok(
		"Domain \"/^mx\\.example\\.test$/\" { Max_Outbound_Connections = 1 }\n"
		"Domain \"/\\.example\\.test$/\" { Max_Outbound_Connections = 2 }\n"
		"Domain \"/example/\" { Max_Outbound_Connections = 3 }\n"
		"Domain \"lit.example.test\" { Max_Outbound_Connections = 4 }\n"
		"Binding \"b\" { Domain \"/^b\\./\" { Max_Outbound_Connections = 5 } }\n");
	static const struct {
		const char *binding, *domain;
		long long want;
	} cases[] = {
		{ "default", "mx.example.test", 1 },         /* first regex in file order */
		{ "default", "a.example.test", 2 },
		{ "default", "EXAMPLE.org", 3 },              /* case-insensitive */
		{ "default", "lit.example.test", 4 },         /* literal beats regexes */
		{ "default", "LIT.example.test.", 4 },        /* case, trailing dot */
		{ "default", "nomatch.test", 32 },
		{ "b", "b.example.test", 5 },                 /* binding scope before global */
		{ "b", "mx.example.test", 1 },
		{ "default", "b.example.test", 2 },
	};

	if (c == NULL)
		return;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct conf_setting *s = conf_resolve(c, &conf_opt_max_outbound_connections,
		                                            conf_binding_slot(c, cases[i].binding),
		                                            cases[i].domain);
		CHECK(s != NULL && s->i == cases[i].want, "%s/%s: got %lld, want %lld",
		      cases[i].binding, cases[i].domain, s ? (long long)s->i : -1LL, cases[i].want);
	}
	conf_unref(c);
}

static void
test_host_chain(void)
{
	struct conf *c = load_ok(
		"Host \"mx.test\" { Max_Outbound_Connections = 4 }\n"
		"Host \"/^mx[0-9]\\.test$/\" { Max_Outbound_Connections = 9 }\n"
		"Binding_Group \"g\" {\n"
		"  Host \"mx.test\" { Max_Outbound_Connections = 2 }\n"
		"  Binding \"b\" { Host \"mx.test\" { Max_Outbound_Connections = 1 } }\n"
		"  Binding \"c\" { }\n"
		"}\n"
		"Binding \"d\" { Host \"mx.test\" { Max_Outbound_Connections = 3 } }\n"
		"Max_Outbound_Connections = 50\n");
	static const struct {
		const char *binding, *host;
		long long want;     /* -1: no host setting (caller's host default) */
	} cases[] = {
		{ "b", "mx.test", 1 },
		{ "c", "mx.test", 2 },
		{ "d", "mx.test", 3 },
		{ "default", "mx.test", 4 },
		{ "default", "mx7.test", 9 },
		{ "default", "other.test", -1 },  /* no fallback to domain or global */
	};

	if (c == NULL)
		return;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct conf_setting *s = conf_resolve_host(c, &conf_opt_max_outbound_connections,
		                                                 conf_binding_slot(c, cases[i].binding),
		                                                 cases[i].host);
		long long got = s ? (long long)s->i : -1;
		CHECK(got == cases[i].want, "%s/%s: got %lld, want %lld", cases[i].binding,
		      cases[i].host, got, cases[i].want);
	}
	conf_unref(c);
}

static void
test_throttle_sharing(void)
{
	struct conf *c = load_ok(
		"Binding_Group \"g\" {\n"
		"  Outbound_Throttle_Messages = \"2/60\"\n"
		"  Binding \"b1\" { }\n"
		"  Binding \"b2\" { }\n"
		"  Binding \"b3\" { Outbound_Throttle_Messages = \"2/60\" }\n"
		"}\n"
		"Domain \"d.test\" { Outbound_Throttle_Messages = 1 }\n");
	uint64_t wait = 0, now = 1000000;

	if (c == NULL)
		return;
	int b1 = conf_binding_slot(c, "b1"), b2 = conf_binding_slot(c, "b2"),
	    b3 = conf_binding_slot(c, "b3");
	const struct conf_setting *s1 = conf_resolve(c, &conf_opt_outbound_throttle_messages, b1, "x.test");
	const struct conf_setting *s2 = conf_resolve(c, &conf_opt_outbound_throttle_messages, b2, "y.test");
	const struct conf_setting *s3 = conf_resolve(c, &conf_opt_outbound_throttle_messages, b3, "x.test");
	CHECK(s1 && s2 && s1 == s2 && s1->throttle == s2->throttle,
	      "bindings of one group must share the group's bucket");
	CHECK(s3 && s3 != s1 && s3->throttle != s1->throttle,
	      "a binding's own declaration must have its own bucket");
	CHECK(s1 && s1->thr_count == 2 && s1->thr_period_s == 60, "got %lld/%lld, want 2/60",
	      s1 ? (long long)s1->thr_count : 0LL, s1 ? (long long)s1->thr_period_s : 0LL);
	if (s1 && s2 && s3) {
		CHECK_INT(throttle_take(s1->throttle, now, &wait), 1, "b1 first token");
		CHECK_INT(throttle_take(s2->throttle, now, &wait), 1, "b2 second token");
		CHECK_INT(throttle_take(s1->throttle, now, &wait), 0, "shared bucket empty");
		CHECK_INT(wait, 30000000, "wait for the next token (µs)");
		CHECK_INT(throttle_take(s3->throttle, now, &wait), 1, "b3's own bucket");
		CHECK_INT(throttle_take(s2->throttle, now + 30000000, &wait), 1, "refilled after 30 s");
	}
	/* A global domain throttle is one bucket for every binding. */
	const struct conf_setting *d1 = conf_resolve(c, &conf_opt_outbound_throttle_messages, 0, "d.test");
	const struct conf_setting *d2 = conf_resolve(c, &conf_opt_outbound_throttle_messages, b3, "d.test");
	CHECK(d1 != NULL && d1->thr_count == 1, "default binding gets the domain throttle");
	CHECK(d2 == s3, "b3's own declaration (step 4) precedes the global domain (step 5)");
	conf_unref(c);
}

static void
test_types(void)
{
	static const struct {
		const char *text;
		const struct conf_option *opt;
		long long want;
	} cases[] = {
		{ "Message_Expiration = 90", &conf_opt_message_expiration, 90 },
		{ "Message_Expiration = 2h", &conf_opt_message_expiration, 7200 },
		{ "Message_Expiration = 3d", &conf_opt_message_expiration, 259200 },
		{ "Message_Expiration = \"15m\"", &conf_opt_message_expiration, 900 },
		{ "Suspend_Delivery = true", &conf_opt_suspend_delivery, 1 },
		{ "Suspend_Delivery = Yes", &conf_opt_suspend_delivery, 1 },
		{ "Suspend_Delivery = off", &conf_opt_suspend_delivery, 0 },
		{ "Max_Outbound_Connections = -1", &conf_opt_max_outbound_connections, -1 },
		{ "max_outbound_connections = 7", &conf_opt_max_outbound_connections, 7 },
		{ "MAX_OUTBOUND_CONNECTIONS = 8", &conf_opt_max_outbound_connections, 8 },
		{ "Event_Loops = 3", &conf_opt_event_loops, 3 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct conf *c = load_ok(cases[i].text);
		if (c == NULL)
			continue;
		const struct conf_setting *s = conf_global(c, cases[i].opt);
		CHECK(s != NULL && s->i == cases[i].want, "%s: got %lld, want %lld", cases[i].text,
		      s ? (long long)s->i : -1LL, cases[i].want);
		conf_unref(c);
	}
	struct conf *c = load_ok("Spoolbase = \"/x y/z\"\n");
	if (c != NULL) {
		CHECK_STR(conf_global(c, &conf_opt_spoolbase)->s, "/x y/z", "string");
		conf_unref(c);
	}
	c = load_ok("");
	if (c != NULL) {
		CHECK_STR(conf_global(c, &conf_opt_spoolbase)->s, "/var/spool/impetus", "default");
		CHECK(conf_global(c, &conf_opt_user) == NULL, "User has no default");
		conf_unref(c);
	}
}

static void
test_errors(void)
{
	static const struct {
		const char *text;
		const char *want;
	} cases[] = {
		{ "\n  No_Such_Option = 1", "t.conf:2:3: error: unknown option \"No_Such_Option\"" },
		{ "Nope { }", "t.conf:1:1: error: unknown stanza \"Nope\"" },
		{ "Binding { }", "t.conf:1:1: error: Binding needs a name" },
		{ "Security \"x\" { }", "t.conf:1:10: error: Security takes no name" },
		{ "Domain \"a\" { Binding \"b\" { } }", "t.conf:1:14: error: Binding cannot appear in Domain" },
		{ "Binding \"b\" { Spoolbase = x }", "t.conf:1:15: error: Spoolbase is not allowed in Binding" },
		{ "Bind_Address = 1.2.3.4", "t.conf:1:1: error: Bind_Address is not allowed in global scope" },
		{ "Retry_Interval = 1\nRetry_Interval = 2", "t.conf:2:1: error: Retry_Interval is already set in this scope at t.conf:1:1" },
		{ "Binding \"b\" { }\nBinding \"b\" { }", "t.conf:2:1: error: Binding \"b\" is already defined in this scope at t.conf:1:1" },
		{ "Domain \"A.test\" { }\nDomain \"a.TEST\" { }", "t.conf:2:1: error: Domain \"a.test\" is already defined" },
		{ "Binding_Group \"g\" { Binding \"b\" { } }\nBinding_Group \"h\" { Binding \"b\" { } }",
		  "t.conf:2:21: error: Binding \"b\" is already a member of Binding_Group \"g\"" },
		{ "Binding \"a b\" { }", "t.conf:1:9: error: Binding name \"a b\" may not contain spaces or colons" },
		{ "Max_Outbound_Connections = many", "t.conf:1:28: error: Max_Outbound_Connections: expected an integer, found many" },
		{ "Max_Outbound_Connections = -2", "t.conf:1:28: error: Max_Outbound_Connections: -2 is out of range" },
		{ "Event_Loops = 100000", "t.conf:1:15: error: Event_Loops: 100000 is out of range (0 to 256)" },
		{ "Suspend_Delivery = maybe", "t.conf:1:20: error: Suspend_Delivery: expected a boolean" },
		{ "Message_Expiration = 5x", "t.conf:1:22: error: Message_Expiration: expected a duration" },
		{ "Spoolbase = ( a b )", "t.conf:1:13: error: Spoolbase: expected a string, found ( a b )" },
		{ "Outbound_Throttle_Messages = \"0/5\"", "t.conf:1:30: error: Outbound_Throttle_Messages: expected \"N\"" },
		{ "Outbound_Throttle_Messages = \"5/x\"", "t.conf:1:30: error: Outbound_Throttle_Messages: expected \"N\"" },
		{ "Domain \"/(/\" { }", "t.conf:1:8: error: Domain /(/: bad regular expression" },
		{ "Domain \"/a++/\" { }", "t.conf:1:8: error: Domain /a++/: regular expression refused: stacked repetition" },
		{ "Domain \"/(a{40}){40}/\" { }", "t.conf:1:8: error: Domain /(a{40}){40}/: regular expression refused: counted repetitions" },
		{ "ec_logger = 1", "t.conf:1:1: error: ec_logger is a stanza, not an option" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct conf_errors errs = { STRBUF_INIT, 0 };
		struct conf *c = load(cases[i].text, &errs);
		const char *got = strbuf_cstr(&errs.text);
		CHECK(c == NULL, "case %zu (%s): accepted, want an error", i, cases[i].text);
		CHECK(strncmp(got, cases[i].want, strlen(cases[i].want)) == 0,
		      "case %zu: got \"%s\", want prefix \"%s\"", i, got, cases[i].want);
		conf_unref(c);
		conf_errors_free(&errs);
	}

	/* Every error is reported, not only the first. */
	struct conf_errors errs = { STRBUF_INIT, 0 };
	struct conf *c = load("A = 1\nB = 2\nBinding \"x\" { C = 3 }\n", &errs);
	CHECK(c == NULL && errs.count == 3, "got %d errors, want 3: %s", errs.count,
	      strbuf_cstr(&errs.text));
	conf_errors_free(&errs);
}

static void
test_bindings(void)
{
	struct conf *c = load_ok(
		"Binding_Group \"g\" { Binding \"b1\" { } Binding \"b2\" { } }\n"
		"Binding \"b3\" { }\n"
		"Binding \"b1\" { EHLO_Hostname = top.test }\n");

	if (c == NULL)
		return;
	size_t present = 0;
	for (size_t i = 0; i < c->nbindings; i++)
		present += c->bindings[i].present;
	CHECK_INT(present, 4, "default + 3");
	CHECK_INT(conf_binding_slot(c, "default"), 0, "default slot");
	CHECK_STR(conf_binding_name(c, 0), "default", "slot 0");
	for (int slot = 0; slot < (int)c->nbindings; slot++)
		if (c->bindings[slot].present)
			CHECK_INT(conf_binding_slot(c, conf_binding_name(c, slot)), slot, "round trip");
	CHECK_INT(conf_binding_slot(c, "nope"), -1, "unknown name");
	CHECK(conf_binding_name(c, 99) == NULL && conf_binding_name(c, -1) == NULL, "unknown slot");
	const struct conf_binding_group *g = conf_binding_group_find(c, "g");
	CHECK(g != NULL && g->nslots == 2, "group g has 2 bindings");
	const struct conf_binding_group *dg = conf_binding_group_find(c, "default");
	CHECK(dg != NULL && dg->nslots == 2, "default group: default and b3, got %zu",
	      dg ? dg->nslots : 0);
	int b1 = conf_binding_slot(c, "b1");
	CHECK(c->bindings[b1].group == g && c->bindings[b1].top != NULL &&
	      c->bindings[b1].in_group != NULL, "b1 is in g with two stanzas");
	const struct conf_setting *s = conf_resolve(c, &conf_opt_ehlo_hostname, b1, "x.test");
	CHECK(s != NULL && strcmp(s->s, "top.test") == 0, "top-level stanza of b1 applies");
	conf_unref(c);
}

/* Slots are process-wide: stable across generations, never reused. */
static void
test_binding_slots_stable(void)
{
	struct conf *a = load_ok("Binding \"s1\" { }\nBinding \"s2\" { }\n");
	struct conf *b = load_ok("Binding_Group \"grp\" { Binding \"s3\" { } Binding \"s2\" { } }\n");

	if (a == NULL || b == NULL)
		return;
	int s2a = conf_binding_slot(a, "s2"), s2b = conf_binding_slot(b, "s2");
	CHECK(s2a > 0 && s2a == s2b, "s2 keeps its slot: %d then %d", s2a, s2b);
	CHECK_INT(conf_binding_slot(b, "s1"), -1, "s1 is not configured in b");
	CHECK(conf_binding_slot(b, "s3") != conf_binding_slot(a, "s1"), "slots are not reused");
	CHECK_INT(config_get_binding_id_from_name("s2"), s2a, "public name -> slot");
	CHECK_STR(config_get_binding_name_from_id(s2a), "s2", "public slot -> name");
	CHECK_STR(config_get_binding_name_from_id(0), "default", "slot 0");
	CHECK(config_get_binding_name_from_id(-1) == NULL, "slot -1");
	CHECK(config_get_binding_name_from_id(BINDING_SLOTS_MAX + 5) == NULL, "slot past the end");
	CHECK_INT(config_get_binding_id_from_name("never-configured"), EC_BINDING_SLOT_UNBOUND, "unknown");
	/* Groups follow the installed generation. */
	conf_install(conf_ref(a));
	CHECK_STR(config_get_binding_group_name_from_id(s2a), "default", "s2 in default group");
	conf_install(conf_ref(b));
	CHECK_STR(config_get_binding_group_name_from_id(s2a), "grp", "s2 moved to grp");
	conf_install(NULL);
	conf_unref(a);
	conf_unref(b);
}

static void
test_registry(void)
{
	static struct conf_option mod_opt = {
		.name = "Example_Count", .type = CONF_T_INT, .def = "3", .min = 0, .max = 10,
	};
	static const char *const modes[] = { "fast", "safe", NULL };
	static struct conf_option mod_enum = {
		.name = "Example_Mode", .type = CONF_T_ENUM, .def = "safe", .enum_values = modes,
	};
	static struct conf_stanza_def mod_stanza = {
		.keyword = "example_module", .naming = CONF_NAME_OPTIONAL, .parents = CONF_SCOPE_GLOBAL,
	};
	static struct conf_option bad_default = {
		.name = "Bad_Default", .type = CONF_T_INT, .def = "ten", .scopes = CONF_SCOPE_GLOBAL,
	};
	char err[256];

	conf_registry_init();
	uint32_t bit = conf_scope_allocate();
	CHECK(bit >= CONF_SCOPE_FIRST_DYNAMIC, "dynamic scope bit");
	mod_stanza.scope = bit;
	mod_opt.scopes = bit;
	mod_enum.scopes = bit;
	CHECK_INT(conf_stanza_register(&mod_stanza, err, sizeof(err)), 0, err);
	CHECK_INT(conf_option_register(&mod_opt, err, sizeof(err)), 0, err);
	CHECK_INT(conf_option_register(&mod_enum, err, sizeof(err)), 0, err);
	CHECK_INT(conf_option_register(&mod_opt, err, sizeof(err)), -1, "duplicate option");
	CHECK_INT(conf_stanza_register(&mod_stanza, err, sizeof(err)), -1, "duplicate stanza");
	CHECK_INT(conf_option_register(&bad_default, err, sizeof(err)), -1, "bad default");
	CHECK(strstr(err, "bad default") != NULL, "got \"%s\"", err);
	CHECK(conf_option_find("example_count") == &mod_opt, "case-insensitive find");

	struct conf *c = load_ok("example_module \"one\" { Example_Count = 7 Example_Mode = FAST }\n"
	                         "example_module \"two\" { }\n");
	if (c != NULL) {
		const struct conf_scope *one = conf_scope_child(c->global, bit, 0);
		const struct conf_scope *two = conf_scope_child(c->global, bit, 1);
		CHECK(one && two && strcmp(one->name, "one") == 0, "instances in order");
		CHECK_INT(conf_resolve_chain(one, &mod_opt)->i, 7, "module option set");
		CHECK_INT(conf_resolve_chain(two, &mod_opt)->i, 3, "module option default");
		CHECK_STR(conf_resolve_chain(one, &mod_enum)->s, "fast", "enum canonical");
		CHECK_INT(conf_resolve_chain(two, &mod_enum)->i, 1, "enum default index");
		conf_unref(c);
	}
	struct conf_errors errs = { STRBUF_INIT, 0 };
	c = load("example_module { Example_Mode = slow }\nExample_Count = 1\n", &errs);
	CHECK(c == NULL, "bad module values accepted");
	CHECK(strstr(strbuf_cstr(&errs.text),
	             "t.conf:1:33: error: Example_Mode: \"slow\" is not one of: fast, safe") != NULL,
	      "got \"%s\"", strbuf_cstr(&errs.text));
	CHECK(strstr(strbuf_cstr(&errs.text), "t.conf:2:1: error: Example_Count is not allowed in global scope") != NULL,
	      "got \"%s\"", strbuf_cstr(&errs.text));
	conf_errors_free(&errs);
}

static void
test_reload_keeps_running_conf(void)
{
	struct conf_errors errs = { STRBUF_INIT, 0 };
	struct conf *first = load_ok("Spoolbase = /s1\nRetry_Interval = 100\n"), *cur, *next;

	if (first == NULL)
		return;
	conf_install(first);

	/* A file with errors never becomes a generation. */
	next = load("Spoolbase = /s1\nRetry_Interval = oops\n", &errs);
	CHECK(next == NULL, "bad file loaded");
	cur = conf_current();
	CHECK(cur == first, "running generation replaced by a bad file");
	conf_unref(cur);
	conf_errors_free(&errs);

	/* A restart-only option may not change on reload. */
	next = load_ok("Spoolbase = /s2\nRetry_Interval = 200\n");
	if (next != NULL) {
		CHECK_INT(conf_try_install(next, &errs), -1, "restart-only change installed");
		CHECK(strstr(strbuf_cstr(&errs.text), "Spoolbase cannot change while impetusd runs") != NULL,
		      "got \"%s\"", strbuf_cstr(&errs.text));
	}
	cur = conf_current();
	CHECK(cur == first, "running generation replaced despite a restart-only change");
	CHECK_INT(conf_global(cur, &conf_opt_retry_interval)->i, 100, "old value kept");
	conf_unref(cur);
	conf_errors_free(&errs);

	/* A good file replaces it; readers holding the old one keep it alive. */
	struct conf *held = conf_current();
	next = load_ok("Spoolbase = /s1\nRetry_Interval = 300\n");
	if (next != NULL) {
		CHECK_INT(conf_try_install(next, &errs), 0, strbuf_cstr(&errs.text));
		cur = conf_current();
		CHECK(cur == next && cur->generation > held->generation, "new generation installed");
		CHECK_INT(conf_global(cur, &conf_opt_retry_interval)->i, 300, "new value");
		conf_unref(cur);
	}
	CHECK_INT(conf_global(held, &conf_opt_retry_interval)->i, 100, "held generation intact");
	conf_unref(held);
	conf_install(NULL);
	conf_errors_free(&errs);
}

static void
test_default_config(void)
{
	struct conf *c = load_ok(conf_default_text);

	if (c != NULL) {
		CHECK_STR(conf_global(c, &conf_opt_spoolbase)->s, "var/spool", "default spool");
		conf_unref(c);
	}
}

TEST_MAIN("conf",
	TEST(test_fallback_order),
	TEST(test_fallback_documented),
	TEST(test_regex_domains),
	TEST(test_host_chain),
	TEST(test_throttle_sharing),
	TEST(test_types),
	TEST(test_errors),
	TEST(test_bindings),
	TEST(test_binding_slots_stable),
	TEST(test_registry),
	TEST(test_reload_keeps_running_conf),
	TEST(test_default_config))

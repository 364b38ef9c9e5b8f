/*
 * sendmail_args_test.c - impetus-sendmail's command line parser, the
 * recipient list and the address-list reader for -t.
 */
#include "tools/sendmail_args.h"
#include "test.h"

static void test_options(void);
static void test_usage_errors(void);
static void test_rcpts_add(void);
static void test_addr_list(void);

#define MAX_ARGS 16

/* argv from a NULL-terminated list of words; argv[0] is the program. */
static int
make_argv(const char *const *words, char **argv)
{
	int n = 0;

	argv[n++] = (char *)"sendmail";
	for (; words[n - 1] != NULL && n < MAX_ARGS; n++)
		argv[n] = (char *)words[n - 1];
	argv[n] = NULL;
	return n;
}

static void
test_options(void)
{
	static const struct {
		const char *args[MAX_ARGS];
		int t, i, v, bs;
		const char *sender, *name, *socket, *ret, *envid;
		unsigned notify;
		const char *rcpts;              /* the recipient arguments, joined by ' ' */
	} cases[] = {
		{ { "a@x.test", NULL }, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, 0, "a@x.test" },
		{ { "-t", NULL }, 1, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, 0, "" },
		{ { "-t", "-i", "b@x.test", NULL }, 1, 1, 0, 0, NULL, NULL, NULL, NULL, NULL, 0, "b@x.test" },
		{ { "-ti", NULL }, 1, 1, 0, 0, NULL, NULL, NULL, NULL, NULL, 0, "" },
		{ { "-oi", "-t", NULL }, 1, 1, 0, 0, NULL, NULL, NULL, NULL, NULL, 0, "" },
		{ { "-o", "i", "a@x.test", NULL }, 0, 1, 0, 0, NULL, NULL, NULL, NULL, NULL, 0, "a@x.test" },
		{ { "-f", "me@x.test", "a@x.test", NULL }, 0, 0, 0, 0, "me@x.test", NULL, NULL, NULL,
		  NULL, 0, "a@x.test" },
		{ { "-fme@x.test", "a@x.test", NULL }, 0, 0, 0, 0, "me@x.test", NULL, NULL, NULL,
		  NULL, 0, "a@x.test" },
		{ { "-r", "<>", "a@x.test", NULL }, 0, 0, 0, 0, "<>", NULL, NULL, NULL, NULL, 0,
		  "a@x.test" },
		{ { "-F", "Jo Smith", "-S", "/tmp/s.sock", "a@x.test", "b@x.test", NULL }, 0, 0, 0, 0,
		  NULL, "Jo Smith", "/tmp/s.sock", NULL, NULL, 0, "a@x.test b@x.test" },
		{ { "-v", "-odi", "-oem", "-oep", "-odb", "-om", "-em", "-U", "-n", "-m", "-G",
		    "a@x.test", NULL }, 0, 0, 1, 0, NULL, NULL, NULL, NULL, NULL, 0, "a@x.test" },
		{ { "-bm", "-B", "8BITMIME", "-h", "3", "-L", "tag", "a@x.test", NULL }, 0, 0, 0, 0,
		  NULL, NULL, NULL, NULL, NULL, 0, "a@x.test" },
		{ { "-bs", NULL }, 0, 0, 0, 1, NULL, NULL, NULL, NULL, NULL, 0, "" },
		{ { "-N", "success,delay", "-R", "hdrs", "-V", "env-1", "a@x.test", NULL }, 0, 0, 0, 0,
		  NULL, NULL, NULL, "HDRS", "env-1", SENDMAIL_NOTIFY_SUCCESS | SENDMAIL_NOTIFY_DELAY,
		  "a@x.test" },
		{ { "-Nnever", "a@x.test", NULL }, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL,
		  SENDMAIL_NOTIFY_NEVER, "a@x.test" },
		/* "--" ends the options; so does the first recipient. */
		{ { "--", "-a@x.test", NULL }, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, 0, "-a@x.test" },
		{ { "a@x.test", "-t", NULL }, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, 0, "a@x.test -t" },
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		char *argv[MAX_ARGS + 2], err[256] = "", ctx[64], got[512] = "";
		struct sendmail_args a;
		int argc = make_argv(cases[k].args, argv);

		snprintf(ctx, sizeof(ctx), "case %zu", k);
		int rc = sendmail_args_parse(argc, argv, &a, err, sizeof(err));
		CHECK(rc == 0, "%s: got %d (%s), want 0", ctx, rc, err);
		if (rc != 0)
			continue;
		CHECK_INT(a.from_headers, cases[k].t, ctx);
		CHECK_INT(a.ignore_dots, cases[k].i, ctx);
		CHECK_INT(a.verbose, cases[k].v, ctx);
		CHECK_INT(a.mode == SENDMAIL_MODE_SMTP, cases[k].bs, ctx);
		CHECK_STR(a.sender, cases[k].sender, ctx);
		CHECK_STR(a.full_name, cases[k].name, ctx);
		CHECK_STR(a.socket_path, cases[k].socket, ctx);
		CHECK_STR(a.ret, cases[k].ret, ctx);
		CHECK_STR(a.envid, cases[k].envid, ctx);
		CHECK_INT(a.notify, cases[k].notify, ctx);
		for (int i = 0; i < a.nrcpts; i++)
			snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", i ? " " : "",
			         a.rcpts[i]);
		CHECK_STR(got, cases[k].rcpts, ctx);
	}
}

static void
test_usage_errors(void)
{
	static const struct {
		const char *args[MAX_ARGS];
		const char *want;               /* a part of the message */
	} cases[] = {
		{ { NULL }, "no recipients" },
		{ { "-i", NULL }, "no recipients" },
		{ { "-x", "a@x.test", NULL }, "unknown option -x" },
		{ { "-tq", "a@x.test", NULL }, "unknown option -q" },
		{ { "-f", NULL }, "needs a value" },
		{ { "-bp", NULL }, "-bp is not supported" },
		{ { "-bd", NULL }, "-bd is not supported" },
		{ { "-oX", "a@x.test", NULL }, "-oX is not supported" },
		{ { "-odz", "a@x.test", NULL }, "-odz is not supported" },
		{ { "-ez", "a@x.test", NULL }, "error mode" },
		{ { "-Bbinary", "a@x.test", NULL }, "body type" },
		{ { "-h", "many", "a@x.test", NULL }, "hop count" },
		{ { "-N", "never,success", "a@x.test", NULL }, "-Nnever,success" },
		{ { "-N", "sometimes", "a@x.test", NULL }, "-Nsometimes" },
		{ { "-R", "body", "a@x.test", NULL }, "full or hdrs" },
		{ { "-V", "a b", "a@x.test", NULL }, "printable" },
		{ { "-bs", "a@x.test", NULL }, "no recipients" },
		{ { "-f", "a@x.test>\r\nRCPT TO:<b@x.test", "c@x.test", NULL }, "not a usable address" },
		{ { "a@x.test>\r\nDATA", NULL }, "not a usable address" },
		{ { "-F", "Jo\r\nBcc: b@x.test", "a@x.test", NULL }, "one line" },
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		char *argv[MAX_ARGS + 2], err[256] = "", ctx[64];
		struct sendmail_args a;
		int argc = make_argv(cases[k].args, argv);

		snprintf(ctx, sizeof(ctx), "case %zu", k);
		int rc = sendmail_args_parse(argc, argv, &a, err, sizeof(err));
		CHECK(rc == -1, "%s: got %d, want -1", ctx, rc);
		CHECK(strstr(err, cases[k].want) != NULL, "%s: got \"%s\", want \"%s\" in it", ctx,
		      err, cases[k].want);
	}
}

static void
test_rcpts_add(void)
{
	struct sendmail_rcpts r = { NULL, 0, 0 };

	sendmail_rcpts_add(&r, "a@x.test", 8, "host.test");
	sendmail_rcpts_add(&r, "A@X.TEST", 8, "host.test");       /* a duplicate */
	sendmail_rcpts_add(&r, "root", 4, "host.test");
	sendmail_rcpts_add(&r, "root@host.test", 14, "host.test"); /* the same once qualified */
	sendmail_rcpts_add(&r, "bob", 3, NULL);
	for (int i = 0; i < 20; i++) {
		char a[32];
		snprintf(a, sizeof(a), "u%d@x.test", i);
		sendmail_rcpts_add(&r, a, strlen(a), NULL);
	}
	CHECK_INT(r.n, 23, "count");
	if (r.n == 23) {
		CHECK_STR(r.v[0], "a@x.test", "first");
		CHECK_STR(r.v[1], "root@host.test", "qualified");
		CHECK_STR(r.v[2], "bob", "no domain given");
		CHECK_STR(r.v[22], "u19@x.test", "last");
	}
	sendmail_rcpts_free(&r);
	CHECK_INT(r.n, 0, "freed");
}

static void
test_addr_list(void)
{
	static const struct {
		const char *value;
		int rc;
		const char *want;               /* the addresses, joined by ' ' */
	} cases[] = {
		{ " a@x.test", 0, "a@x.test" },
		{ " a@x.test, b@x.test ,c@x.test", 0, "a@x.test b@x.test c@x.test" },
		{ " Jo Smith <jo@x.test>", 0, "jo@x.test" },
		{ " \"Smith, Jo\" <jo@x.test>, \"Q\\\"uote\" <q@x.test>", 0, "jo@x.test q@x.test" },
		{ " jo@x.test (Jo Smith, the boss)", 0, "jo@x.test" },
		{ " (comment (nested)) <jo@x.test>", 0, "jo@x.test" },
		{ " friends: a@x.test, b@x.test;, c@x.test", 0, "a@x.test b@x.test c@x.test" },
		{ " undisclosed-recipients:;", 0, "" },
		{ " <>", 0, "" },
		{ "", 0, "" },
		{ " ,, ,", 0, "" },
		{ " \"jo smith\"@x.test", 0, "\"jo smith\"@x.test" },
		{ " <@relay.test,@r2.test:jo@x.test>", 0, "jo@x.test" },
		{ " root", 0, "root@host.test" },
		{ " a@x.test,\r\n\tb@x.test", 0, "a@x.test b@x.test" },
		{ " a@x.test, A@x.test", 0, "a@x.test" },
		{ " \"unclosed <a@x.test>", -1, "" },
		{ " (unclosed a@x.test", -1, "" },
		{ " <a@x.test", -1, "" },
		{ " a@x.test>", -1, "" },
		{ " <<a@x.test>>", -1, "" },
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		struct sendmail_rcpts r = { NULL, 0, 0 };
		char ctx[64], got[512] = "";

		snprintf(ctx, sizeof(ctx), "case %zu \"%s\"", k, cases[k].value);
		int rc = sendmail_addr_list(cases[k].value, strlen(cases[k].value), &r, "host.test");
		CHECK_INT(rc, cases[k].rc, ctx);
		if (rc == 0) {
			for (size_t i = 0; i < r.n; i++)
				snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", i ? " " : "",
				         r.v[i]);
			CHECK_STR(got, cases[k].want, ctx);
		}
		sendmail_rcpts_free(&r);
	}
	CHECK_INT(sendmail_addr_ok("a@x.test"), 1, "plain address");
	CHECK_INT(sendmail_addr_ok(""), 1, "null sender");
	CHECK_INT(sendmail_addr_ok("a@x.test\r\n"), 0, "CRLF");
	CHECK_INT(sendmail_addr_ok("a>@x.test"), 0, "angle bracket");
}

TEST_MAIN("sendmail_args",
          TEST(test_options),
          TEST(test_usage_errors),
          TEST(test_rcpts_add),
          TEST(test_addr_list))

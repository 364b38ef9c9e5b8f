/*
 * smtp_auth_test.c - AUTH payload decoding (mechanism line, base64, PLAIN
 * fields, LOGIN) and the users-file parser and verifier (smtp_auth.h).
 */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "listener/smtp_auth.h"
#include "test.h"

/* openssl passwd -6 -salt testsalt secret */
#define SECRET_HASH "$6$testsalt$51yaaBMXXXt5vK522YOlIMZ267vqHtMIzc2klcsu3EEv/bkRDU9g3UmkypXf.NvlpPpIPK1nX5zdbCeJBiQbB/"

static void
test_mech_parse(void)
{
	static const struct {
		const char *arg;
		int rc;
		enum smtp_auth_mech mech;
		const char *ir;
	} cases[] = {
		{ "PLAIN", 0, SMTP_AUTH_MECH_PLAIN, NULL },
		{ "plain AGEAYg==", 0, SMTP_AUTH_MECH_PLAIN, "AGEAYg==" },
		{ "LOGIN =", 0, SMTP_AUTH_MECH_LOGIN, "=" },
		{ "Login YQ==", 0, SMTP_AUTH_MECH_LOGIN, "YQ==" },
		{ "CRAM-MD5", 0, SMTP_AUTH_MECH_UNKNOWN, NULL },
		{ "PLAINX", 0, SMTP_AUTH_MECH_UNKNOWN, NULL },
		{ "PLAIN a b", -1, SMTP_AUTH_MECH_PLAIN, NULL },
		{ "PLAIN ", -1, SMTP_AUTH_MECH_PLAIN, NULL },
		{ "", -1, SMTP_AUTH_MECH_UNKNOWN, NULL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum smtp_auth_mech mech;
		const char *ir;
		size_t irlen;
		int rc = smtp_auth_mech_parse(cases[i].arg, strlen(cases[i].arg), &mech, &ir, &irlen);
		CHECK_INT(rc, cases[i].rc, cases[i].arg);
		if (rc != 0)
			continue;
		CHECK_INT(mech, cases[i].mech, cases[i].arg);
		char got[64] = "";
		if (ir != NULL)
			snprintf(got, sizeof(got), "%.*s", (int)irlen, ir);
		CHECK_STR(ir ? got : NULL, cases[i].ir, cases[i].arg);
	}
}

static void
test_b64(void)
{
	static const struct {
		const char *in;
		int rc;
		const char *out;
		size_t outlen;
	} cases[] = {
		{ "", 0, "", 0 },
		{ "YQ==", 0, "a", 1 },
		{ "YWI=", 0, "ab", 2 },
		{ "YWJj", 0, "abc", 3 },
		{ "AGFsaWNlAHNlY3JldA==", 0, "\0alice\0secret", 13 },
		{ "YQ=", -1, NULL, 0 },         /* not a multiple of 4 */
		{ "Y===", -1, NULL, 0 },        /* too much padding */
		{ "YQ==YQ==", -1, NULL, 0 },    /* padding in the middle */
		{ "Y=Q=", -1, NULL, 0 },
		{ "YW J", -1, NULL, 0 },        /* white space */
		{ "YW*j", -1, NULL, 0 },
		{ "*", -1, NULL, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unsigned char out[64];
		size_t n = 99;
		int rc = smtp_auth_b64_decode(cases[i].in, strlen(cases[i].in), out, sizeof(out), &n);
		CHECK_INT(rc, cases[i].rc, cases[i].in);
		if (rc == 0) {
			CHECK_INT(n, cases[i].outlen, cases[i].in);
			CHECK(memcmp(out, cases[i].out, n) == 0, "%s: content differs", cases[i].in);
		}
	}
	unsigned char small[2];
	size_t n;
	CHECK_INT(smtp_auth_b64_decode("YWJj", 4, small, sizeof(small), &n), -1, "no room");
}

static void
test_plain(void)
{
	static const struct {
		const char *name;
		const char *msg;
		size_t len;
		int rc;
		const char *authzid, *user, *pass;
	} cases[] = {
		{ "no authzid", "\0alice\0secret", 13, 0, "", "alice", "secret" },
		{ "authzid", "bob\0alice\0secret", 16, 0, "bob", "alice", "secret" },
		{ "one NUL", "alice\0secret", 12, -1, NULL, NULL, NULL },
		{ "no NUL", "alicesecret", 11, -1, NULL, NULL, NULL },
		{ "empty user", "\0\0secret", 8, -1, NULL, NULL, NULL },
		{ "empty password", "\0alice\0", 7, -1, NULL, NULL, NULL },
		{ "third NUL", "\0alice\0sec\0ret", 14, -1, NULL, NULL, NULL },
		{ "empty", "", 0, -1, NULL, NULL, NULL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtp_auth_creds c;
		int rc = smtp_auth_plain_decode((const unsigned char *)cases[i].msg, cases[i].len, &c);
		CHECK_INT(rc, cases[i].rc, cases[i].name);
		if (rc == 0) {
			CHECK_STR(c.authzid, cases[i].authzid, cases[i].name);
			CHECK_STR(c.user, cases[i].user, cases[i].name);
			CHECK_STR(c.pass, cases[i].pass, cases[i].name);
		}
		smtp_auth_creds_wipe(&c);
		CHECK_INT(c.pass[0], 0, "wiped");
	}
	/* Fields over 255 octets. */
	unsigned char big[600];
	memset(big, 'a', sizeof(big));
	big[0] = '\0';
	big[300] = '\0';
	struct smtp_auth_creds c;
	CHECK_INT(smtp_auth_plain_decode(big, sizeof(big), &c), -1, "user over 255");
}

static void
test_users_parse(void)
{
	static const struct {
		const char *name;
		const char *text;
		int ok;
		size_t n;
		const char *err;
	} cases[] = {
		{ "two users", "alice:" SECRET_HASH "\nbob:" SECRET_HASH "\n", 1, 2, NULL },
		{ "comments, blanks, CRLF", "# x\r\n\r\nalice:" SECRET_HASH "\r\n", 1, 1, NULL },
		{ "no final newline", "alice:" SECRET_HASH, 1, 1, NULL },
		{ "empty file", "", 1, 0, NULL },
		{ "no colon", "alice\n", 0, 0, "line 1" },
		{ "empty user", ":" SECRET_HASH "\n", 0, 0, "line 1" },
		{ "no hash", "# c\nalice:\n", 0, 0, "line 2" },
		{ "plain password", "alice:secret\n", 0, 0, "crypt" },
		{ "unknown method", "alice:$99$abc$def\n", 0, 0, "crypt" },
		{ "space", "alice :" SECRET_HASH "\n", 0, 0, "white space" },
		{ "second colon", "alice:" SECRET_HASH ":x\n", 0, 0, "second ':'" },
		{ "duplicate", "alice:" SECRET_HASH "\nalice:" SECRET_HASH "\n", 0, 0, "twice" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[256] = "";
		struct smtp_auth_users *u = smtp_auth_users_parse(cases[i].text, strlen(cases[i].text),
		                                                  err, sizeof(err));
		CHECK_INT(u != NULL, cases[i].ok, cases[i].name);
		if (u != NULL) {
			CHECK_INT(smtp_auth_users_count(u), cases[i].n, cases[i].name);
			smtp_auth_users_unref(u);
		} else {
			CHECK(strstr(err, cases[i].err) != NULL, "%s: got \"%s\", want \"%s\" in it",
			      cases[i].name, err, cases[i].err);
		}
	}
}

static void
test_users_verify(void)
{
	static const char text[] = "alice:" SECRET_HASH "\nbob:" SECRET_HASH "\n";
	char err[256];
	struct smtp_auth_users *u = smtp_auth_users_parse(text, sizeof(text) - 1, err, sizeof(err));
	static const struct {
		const char *user, *pass;
		int ok;
	} cases[] = {
		{ "alice", "secret", 1 },
		{ "bob", "secret", 1 },
		{ "alice", "Secret", 0 },
		{ "alice", "secre", 0 },
		{ "alice", "", 0 },
		{ "carol", "secret", 0 },
		{ "Alice", "secret", 0 },
	};

	CHECK(u != NULL, "parse: %s", err);
	if (u == NULL)
		return;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char ctx[64];
		snprintf(ctx, sizeof(ctx), "%s/%s", cases[i].user, cases[i].pass);
		CHECK_INT(smtp_auth_users_verify(u, cases[i].user, cases[i].pass), cases[i].ok, ctx);
	}
	smtp_auth_users_unref(u);
}

static void
test_users_load(void)
{
	char err[512];

	CHECK(smtp_auth_users_load("/nonexistent/users", err, sizeof(err)) == NULL, "missing file");
	CHECK(strstr(err, "/nonexistent/users") != NULL, "got \"%s\"", err);
	CHECK_INT(smtp_auth_users_check_file("/nonexistent/users", err, sizeof(err)), -1, "check");
}

static void
test_peer_failures(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0xC0000201) };
	struct sockaddr_in b = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0xC0000202) };
	const struct sockaddr *sa = (const struct sockaddr *)&a, *sb = (const struct sockaddr *)&b;

	CHECK_INT(smtp_auth_peer_failures(sa, 60, 1000), 0, "fresh");
	smtp_auth_peer_fail(sa, 60, 1000);
	smtp_auth_peer_fail(sa, 60, 1010);
	CHECK_INT(smtp_auth_peer_failures(sa, 60, 1020), 2, "two in the window");
	CHECK_INT(smtp_auth_peer_failures(sb, 60, 1020), 0, "another address");
	CHECK_INT(smtp_auth_peer_failures(sa, 60, 1060), 0, "window over");
	smtp_auth_peer_fail(sa, 60, 1061);
	CHECK_INT(smtp_auth_peer_failures(sa, 60, 1062), 1, "new window");
}

TEST_MAIN("smtp_auth", TEST(test_mech_parse), TEST(test_b64), TEST(test_plain),
          TEST(test_users_parse), TEST(test_users_verify), TEST(test_users_load),
          TEST(test_peer_failures))

/*
 * netaddr_test.c - CIDR parsing and matching, listen names, address keys.
 */
#include <arpa/inet.h>
#include <string.h>
#include <sys/un.h>

#include "lib/netaddr.h"
#include "test.h"

static struct sockaddr_storage
addr(const char *ip)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(ip, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		inet_pton(AF_INET6, ip, &s6->sin6_addr);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		inet_pton(AF_INET, ip, &s4->sin_addr);
	}
	return ss;
}

static void
test_cidr(void)
{
	static const struct {
		const char *cidr, *ip;
		int want;
	} cases[] = {
		{ "10.0.0.0/8", "10.1.2.3", 1 },
		{ "10.0.0.0/8", "11.0.0.1", 0 },
		{ "10.0.0.0/8", "::ffff:10.9.9.9", 1 },     /* IPv4-mapped counts as IPv4 */
		{ "127.0.0.1", "127.0.0.1", 1 },
		{ "127.0.0.1", "127.0.0.2", 0 },
		{ "192.168.4.0/22", "192.168.7.255", 1 },
		{ "192.168.4.0/22", "192.168.8.0", 0 },
		{ "0.0.0.0/0", "203.0.113.9", 1 },
		{ "0.0.0.0/0", "::1", 0 },                  /* families do not mix */
		{ "::1", "::1", 1 },
		{ "2001:db8::/32", "2001:db8:ffff::1", 1 },
		{ "2001:db8::/32", "2001:db9::1", 0 },
		{ "2001:db8::/33", "2001:db8:8000::1", 0 },
		{ "::/0", "fe80::1", 1 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cidr c;
		char err[128];
		struct sockaddr_storage ss = addr(cases[i].ip);
		CHECK_INT(cidr_parse(cases[i].cidr, &c, err, sizeof(err)), 0, cases[i].cidr);
		CHECK(cidr_match(&c, (struct sockaddr *)&ss) == cases[i].want, "%s ~ %s: got %d, want %d",
		      cases[i].cidr, cases[i].ip, !cases[i].want, cases[i].want);
	}
	static const char *const bad[] = { "", "10.0.0.0/33", "10.1.0.0/8", "x", "::1/129",
		                           "10.0.0.0/", "10.0.0.0/8x", "1.2.3.4.5" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct cidr c;
		char err[128] = "";
		CHECK_INT(cidr_parse(bad[i], &c, err, sizeof(err)), -1, bad[i]);
		CHECK(err[0] != '\0', "%s: no reason given", bad[i]);
	}
}

static void
test_listen_names(void)
{
	static const struct {
		const char *name;
		int ok, family, port;
	} cases[] = {
		{ "127.0.0.1:2525", 1, AF_INET, 2525 },
		{ "[::1]:25", 1, AF_INET6, 25 },
		{ ":25", 1, AF_INET6, 25 },                 /* every address, dual stack */
		{ "127.0.0.1:0", 0, 0, 0 },
		{ "127.0.0.1:65536", 0, 0, 0 },
		{ "127.0.0.1", 0, 0, 0 },
		{ "mx.example.test:25", 0, 0, 0 },          /* names are not resolved */
		{ "[::1:25", 0, 0, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_storage ss;
		socklen_t len;
		char err[128];
		int rc = listen_addr_parse(cases[i].name, &ss, &len, err, sizeof(err));
		CHECK_INT(rc, cases[i].ok ? 0 : -1, cases[i].name);
		if (rc == 0 && cases[i].ok) {
			CHECK_INT(ss.ss_family, cases[i].family, cases[i].name);
			int port = ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
			                                  : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
			CHECK_INT(port, cases[i].port, cases[i].name);
		}
	}
	struct sockaddr_storage ss;
	socklen_t len;
	char err[128];
	CHECK_INT(listen_addr_parse("var/run/submit.sock", &ss, &len, err, sizeof(err)), 0, "socket path");
	CHECK_INT(ss.ss_family, AF_UNIX, "socket path family");
}

static void
test_ip_key(void)
{
	struct sockaddr_storage a = addr("10.1.2.3"), b = addr("::ffff:10.1.2.3"), c = addr("::1");
	unsigned char ka[16], kb[16], kc[16];
	int fa, fb, fc;
	struct sockaddr_un un = { .sun_family = AF_UNIX };

	CHECK_INT(sockaddr_ip_key((struct sockaddr *)&a, ka, &fa), 0, "v4");
	CHECK_INT(sockaddr_ip_key((struct sockaddr *)&b, kb, &fb), 0, "mapped");
	CHECK_INT(sockaddr_ip_key((struct sockaddr *)&c, kc, &fc), 0, "v6");
	CHECK(fa == fb && memcmp(ka, kb, 16) == 0, "a mapped address keys like its IPv4 address");
	CHECK(fc == AF_INET6 && memcmp(ka, kc, 16) != 0, "v6 differs");
	CHECK_INT(sockaddr_ip_key((struct sockaddr *)&un, kc, &fc), -1, "unix has no IP key");
}

TEST_MAIN("netaddr",
	TEST(test_cidr),
	TEST(test_listen_names),
	TEST(test_ip_key))

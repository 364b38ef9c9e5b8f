/*
 * netaddr.c - IP addresses, CIDR blocks and listen names (netaddr.h):
 * IP "address:port" names and Unix socket paths.
 */
#include "lib/netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

int
cidr_parse(const char *text, struct cidr *out, char *err, size_t errlen)
{
	char buf[64];
	const char *slash = strchr(text, '/');
	size_t alen = slash ? (size_t)(slash - text) : strlen(text);
	unsigned max;

	memset(out, 0, sizeof(*out));
	if (alen == 0 || alen >= sizeof(buf)) {
		snprintf(err, errlen, "\"%s\" is not an address or CIDR block", text);
		return -1;
	}
	memcpy(buf, text, alen);
	buf[alen] = '\0';
	if (inet_pton(AF_INET, buf, out->addr) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else {
		snprintf(err, errlen, "\"%s\" is not an IPv4 or IPv6 address", buf);
		return -1;
	}
	out->prefix = max;
	if (slash != NULL) {
		char *end;
		errno = 0;
		unsigned long p = strtoul(slash + 1, &end, 10);
		if (slash[1] == '\0' || *end != '\0' || errno != 0 || p > max) {
			snprintf(err, errlen, "\"%s\": the prefix length must be 0 to %u", text, max);
			return -1;
		}
		out->prefix = (unsigned)p;
	}
	/* Host bits set is almost always a typo for a different network. */
	for (unsigned bit = out->prefix; bit < max; bit++) {
		if (out->addr[bit / 8] & (0x80 >> (bit % 8))) {
			snprintf(err, errlen, "\"%s\" has host bits set beyond /%u", text, out->prefix);
			return -1;
		}
	}
	return 0;
}

int
cidr_match(const struct cidr *c, const struct sockaddr *sa)
{
	static const unsigned char v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	const unsigned char *a;
	int family;

	if (sa == NULL)
		return 0;
	if (sa->sa_family == AF_INET) {
		a = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
		family = AF_INET;
	} else if (sa->sa_family == AF_INET6) {
		a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
		family = AF_INET6;
		if (c->family == AF_INET && memcmp(a, v4mapped, 12) == 0) {
			a += 12;
			family = AF_INET;
		}
	} else {
		return 0;
	}
	if (family != c->family)
		return 0;
	unsigned full = c->prefix / 8, rest = c->prefix % 8;
	if (memcmp(a, c->addr, full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (a[full] & mask) == (c->addr[full] & mask);
}

int
listen_addr_is_unix(const char *text)
{
	/* An IP name always has a ':' ("a.b.c.d:port", "[v6]:port", ":port"). */
	return text[0] == '/' || strncmp(text, "./", 2) == 0 || strncmp(text, "../", 3) == 0 ||
	       (strchr(text, '/') != NULL && strchr(text, ':') == NULL);
}

int
listen_addr_parse(const char *text, struct sockaddr_storage *ss, socklen_t *len, char *err,
                  size_t errlen)
{
	char host[64];
	const char *colon, *port_text;
	size_t hlen;

	memset(ss, 0, sizeof(*ss));
	if (listen_addr_is_unix(text)) {
		struct sockaddr_un *su = (struct sockaddr_un *)ss;
		size_t plen = strlen(text);
		if (plen >= sizeof(su->sun_path)) {
			snprintf(err, errlen, "\"%s\": a Unix socket path must be shorter than %zu bytes",
			         text, sizeof(su->sun_path));
			return -1;
		}
		if (text[plen - 1] == '/') {
			snprintf(err, errlen, "\"%s\": a Unix socket path must name a file", text);
			return -1;
		}
		su->sun_family = AF_UNIX;
		memcpy(su->sun_path, text, plen + 1);
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + 1);
		return 0;
	}
	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (close == NULL || close[1] != ':') {
			snprintf(err, errlen, "\"%s\": expected \"[IPv6]:port\"", text);
			return -1;
		}
		hlen = (size_t)(close - text - 1);
		if (hlen >= sizeof(host))
			goto bad;
		memcpy(host, text + 1, hlen);
		host[hlen] = '\0';
		port_text = close + 2;
	} else {
		colon = strrchr(text, ':');
		if (colon == NULL) {
			snprintf(err, errlen, "\"%s\": expected \"address:port\" or \":port\"", text);
			return -1;
		}
		hlen = (size_t)(colon - text);
		if (hlen >= sizeof(host))
			goto bad;
		memcpy(host, text, hlen);
		host[hlen] = '\0';
		port_text = colon + 1;
	}
	char *end;
	errno = 0;
	unsigned long port = strtoul(port_text, &end, 10);
	if (port_text[0] == '\0' || *end != '\0' || errno != 0 || port == 0 || port > 65535) {
		snprintf(err, errlen, "\"%s\": the port must be 1 to 65535", text);
		return -1;
	}
	if (host[0] == '\0') {
		/* ":25": every address; a dual-stack IPv6 socket also takes IPv4. */
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_addr = in6addr_any;
		s6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*s6);
		return 0;
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		*len = sizeof(*s4);
		return 0;
	}
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*s6);
		return 0;
	}
bad:
	snprintf(err, errlen, "\"%s\": not an IP address and port (names are not resolved)", text);
	return -1;
}

int
sockaddr_ip_key(const struct sockaddr *sa, unsigned char out[16], int *family)
{
	static const unsigned char v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	memset(out, 0, 16);
	if (sa->sa_family == AF_INET) {
		memcpy(out, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		*family = AF_INET;
	} else if (sa->sa_family == AF_INET6) {
		const unsigned char *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
		if (memcmp(a, v4mapped, 12) == 0) {
			memcpy(out, a + 12, 4);
			*family = AF_INET;
		} else {
			memcpy(out, a, 16);
			*family = AF_INET6;
		}
	} else {
		return -1;
	}
	return 0;
}

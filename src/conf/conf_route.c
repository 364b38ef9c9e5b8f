/*
 * conf_route.c - the next-hop syntax of Routes and Gateway, and host:port.
 *
 *   conf_route_parse     "smtp://host[:port][?port=P&pref=N&ttl=T&type=mx|a]", "host[:port]"
 *   conf_hostport_parse  "ip", "ip:port", "[ip6]", "[ip6]:port" into a sockaddr
 *
 * Pure functions, any thread; errors are a reason in err, never a log line.
 */
#include "conf/conf_core.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int route_number(const char *s, size_t len, int min, int max, int *out);

static int
route_number(const char *s, size_t len, int min, int max, int *out)
{
	long v = 0;
	size_t i;

	if (len == 0 || len > 9)
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	if (v < min || v > max)
		return -1;
	*out = (int)v;
	return 0;
}

int
conf_route_parse(const char *text, struct conf_route *out, char *err, size_t errlen)
{
	const char *p = text, *host, *hend, *q;
	size_t hlen;

	memset(out, 0, sizeof(*out));
	if (strncasecmp(p, "smtp://", 7) == 0)
		p += 7;
	else if (strstr(p, "://") != NULL) {
		snprintf(err, errlen, "route \"%s\": only smtp:// routes are supported", text);
		return -1;
	}
	if (*p == '[') {
		host = p + 1;
		hend = strchr(host, ']');
		if (hend == NULL) {
			snprintf(err, errlen, "route \"%s\": missing ']'", text);
			return -1;
		}
		q = hend + 1;
	} else {
		host = p;
		hend = host + strcspn(host, ":?/");
		q = hend;
	}
	hlen = (size_t)(hend - host);
	if (hlen == 0 || hlen >= sizeof(out->host)) {
		snprintf(err, errlen, "route \"%s\": bad host", text);
		return -1;
	}
	memcpy(out->host, host, hlen);
	out->host[hlen] = '\0';
	for (size_t i = 0; i < hlen; i++) {
		unsigned char c = (unsigned char)out->host[i];
		if (c <= ' ' || c == '@' || c == '"' || c >= 0x7f) {
			snprintf(err, errlen, "route \"%s\": bad host", text);
			return -1;
		}
		if (c >= 'A' && c <= 'Z')
			out->host[i] = (char)(c + 32);
	}
	if (*q == ':') {
		size_t n = strcspn(q + 1, "?/");
		if (route_number(q + 1, n, 1, 65535, &out->port) < 0) {
			snprintf(err, errlen, "route \"%s\": bad port", text);
			return -1;
		}
		q += 1 + n;
	}
	if (*q == '/')
		q++;
	if (*q == '?') {
		q++;
		while (*q != '\0') {
			size_t n = strcspn(q, "&");
			const char *eq = memchr(q, '=', n);
			size_t klen = eq != NULL ? (size_t)(eq - q) : n;
			const char *v = eq != NULL ? eq + 1 : q + n;
			size_t vlen = eq != NULL ? n - klen - 1 : 0;
			int ignored;

			if (klen == 4 && strncasecmp(q, "port", 4) == 0) {
				if (route_number(v, vlen, 1, 65535, &out->port) < 0) {
					snprintf(err, errlen, "route \"%s\": bad port", text);
					return -1;
				}
			} else if (klen == 4 && strncasecmp(q, "pref", 4) == 0) {
				if (route_number(v, vlen, 0, 65535, &out->pref) < 0) {
					snprintf(err, errlen, "route \"%s\": bad pref", text);
					return -1;
				}
			} else if (klen == 3 && strncasecmp(q, "ttl", 3) == 0) {
				if (route_number(v, vlen, 0, 999999999, &ignored) < 0) {
					snprintf(err, errlen, "route \"%s\": bad ttl", text);
					return -1;
				}
			} else if (klen == 4 && strncasecmp(q, "type", 4) == 0) {
				if (!(vlen == 2 && strncasecmp(v, "mx", 2) == 0) &&
				    !(vlen == 1 && strncasecmp(v, "a", 1) == 0)) {
					snprintf(err, errlen, "route \"%s\": type is mx or a", text);
					return -1;
				}
			} else {
				snprintf(err, errlen, "route \"%s\": unknown parameter \"%.*s\"", text,
				         (int)klen, q);
				return -1;
			}
			q += n;
			if (*q == '&')
				q++;
		}
	} else if (*q != '\0') {
		snprintf(err, errlen, "route \"%s\": unexpected \"%s\"", text, q);
		return -1;
	}
	return 0;
}

int
conf_hostport_parse(const char *text, int default_port, struct sockaddr_storage *ss,
                    char *err, size_t errlen)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *p = text, *hend, *q;
	int port = default_port;
	size_t hlen;

	memset(ss, 0, sizeof(*ss));
	if (*p == '[') {
		hend = strchr(p + 1, ']');
		if (hend == NULL)
			goto bad;
		p++;
		q = hend + 1;
	} else {
		hend = strchr(p, ':');
		if (hend != NULL && strchr(hend + 1, ':') != NULL)
			hend = p + strlen(p);   /* a bare IPv6 address */
		else if (hend == NULL)
			hend = p + strlen(p);
		q = hend;
	}
	hlen = (size_t)(hend - p);
	if (hlen == 0 || hlen >= sizeof(host))
		goto bad;
	memcpy(host, p, hlen);
	host[hlen] = '\0';
	if (*q == ':') {
		if (route_number(q + 1, strlen(q + 1), 1, 65535, &port) < 0)
			goto bad;
	} else if (*q != '\0')
		goto bad;
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		return 0;
	}
bad:
	snprintf(err, errlen, "\"%s\" is not an IP address with an optional :port", text);
	return -1;
}

/*
 * netaddr.h - IP addresses, CIDR blocks and "host:port" listen names.
 *
 * cidr_parse reads "10.0.0.0/8", "::1/128", "2001:db8::/32" or a bare
 * address (a /32 or /128); cidr_match tests an address, treating an
 * IPv4-mapped IPv6 address (::ffff:a.b.c.d) as the IPv4 address it carries.
 * listen_addr_parse reads Momentum's Listen names: "127.0.0.1:2525",
 * "[::1]:2525", ":25" (every IPv4 and IPv6 address), and Unix socket paths
 * (listen_addr_is_unix: a name that starts with "/", "./" or "../", or
 * contains a '/' and no ':', such as "/run/impetus/submit.sock" or "var/run/submit.sock";
 * relative paths are relative to the working directory). Pure functions.
 */
#ifndef IMPETUS_LIB_NETADDR_H
#define IMPETUS_LIB_NETADDR_H

#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>

struct cidr {
	int family;                 /* AF_INET or AF_INET6 */
	unsigned char addr[16];     /* network bytes, 4 used for IPv4 */
	unsigned prefix;            /* bits */
};

/* cidr_parse: 0, or -1 with a reason in err. Host bits must be zero. */
int cidr_parse(const char *text, struct cidr *out, char *err, size_t errlen);
int cidr_match(const struct cidr *c, const struct sockaddr *sa);

/* listen_addr_is_unix: 1 when text names a Unix socket path, else 0. */
int listen_addr_is_unix(const char *text);
/* sockaddr_ip_key: the IP of sa as 16 bytes (IPv4 in the first 4, an
 * IPv4-mapped IPv6 address counted as IPv4) and its family, for tables
 * keyed by client address. -1 for a non-IP address (a Unix socket). */
int sockaddr_ip_key(const struct sockaddr *sa, unsigned char out[16], int *family);

/* listen_addr_parse: fill ss/len (AF_INET, AF_INET6 or AF_UNIX); 0, or -1
 * with a reason in err (a path too long for sun_path is an error). */
int listen_addr_parse(const char *text, struct sockaddr_storage *ss, socklen_t *len,
                      char *err, size_t errlen);

#endif

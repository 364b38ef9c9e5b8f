/*
 * inject.c - the benchmark's SMTP injector: C concurrent sessions (one thread
 * each, blocking sockets, PIPELINING), N messages in all, each with a unique
 * token, and the latency of every message (MAIL FROM written -> final reply
 * to the end of DATA) for the percentiles.
 *
 *   inject -H 127.0.0.1[,127.0.0.2...] -p PORT -n N -c C [-r RCPTS] [-s SIZE]
 *          [-D DOMAINS] [-T TOKEN] [-f SENDER] [-q]
 *
 * Message i goes to RCPTS recipients u<i>.<j>@d<i mod DOMAINS + 1>.test (all
 * in one domain, so a relay can deliver it in one transaction), with
 * "Message-Id: <TOKEN.i@inject.bench.test>" and "X-Bench-Token: TOKEN.i".
 * Its body is SIZE bytes of 78-byte lines. Session k connects to the k-th
 * host of -H (round robin) and sends messages until all N are taken; a
 * session whose connection fails or gets an unexpected reply stops and is
 * counted in "errors" (the messages it did not get a 250 for are not sent).
 *
 * Prints one JSON object: messages sent (250 after DATA), errors, start and
 * end on CLOCK_MONOTONIC (the clock of Python's time.monotonic), rate and
 * latency percentiles in milliseconds. Loopback targets only.
 *
 * Build: cc -O2 -pthread -o inject inject.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *hosts[64];
static int nhosts;
static int port, nmsg, conc = 50, rcpts = 1, size = 4096, ndomains = 100;
static const char *token = "t", *sender = "sender@bench.test";
static char *payload;
static size_t payload_len;
static double *lat;
static atomic_int next_msg, sent, errors;
static pthread_mutex_t err_mu = PTHREAD_MUTEX_INITIALIZER;
static char first_error[512];

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

struct conn {
	int fd;
	char buf[8192];
	size_t len, off;
};

static void set_error(const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&err_mu);
	if (!first_error[0]) {
		va_start(ap, fmt);
		vsnprintf(first_error, sizeof first_error, fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&err_mu);
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* One reply (multi-line folded); returns the code, -1 on EOF/error. */
static int read_reply(struct conn *c, char *last, size_t lastsz)
{
	for (;;) {
		/* a complete line in the buffer? */
		char *nl = memchr(c->buf + c->off, '\n', c->len - c->off);
		if (nl) {
			char *line = c->buf + c->off;
			size_t ll = (size_t)(nl - line) + 1;
			c->off += ll;
			if (ll < 4)
				return -1;
			if (line[3] == '-')
				continue;
			if (last) {
				size_t k = ll < lastsz ? ll : lastsz - 1;
				memcpy(last, line, k);
				last[k] = 0;
				while (k > 0 && (last[k - 1] == '\n' || last[k - 1] == '\r'))
					last[--k] = 0;
			}
			return (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
		}
		if (c->off > 0) {
			memmove(c->buf, c->buf + c->off, c->len - c->off);
			c->len -= c->off;
			c->off = 0;
		}
		if (c->len == sizeof c->buf)
			return -1;
		ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		c->len += (size_t)r;
	}
}

static void *session(void *arg)
{
	long k = (long)arg;
	struct conn c = { .fd = -1 };
	char reply[256];
	char *cmd = malloc(256 + (size_t)rcpts * 128), *hdr = malloc(1024);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int i = -1, code;

	inet_pton(AF_INET, hosts[k % nhosts], &sa.sin_addr);
	if ((c.fd = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
	    connect(c.fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		set_error("connect %s:%d: %s", hosts[k % nhosts], port, strerror(errno));
		goto fail;
	}
	int one = 1;
	setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if ((code = read_reply(&c, reply, sizeof reply)) != 220) {
		set_error("greeting: %d %s", code, reply);
		goto fail;
	}
	if (write_all(c.fd, "EHLO inject.bench.test\r\n", 24) < 0 ||
	    (code = read_reply(&c, reply, sizeof reply)) != 250) {
		set_error("EHLO: %d %s", code, reply);
		goto fail;
	}
	while ((i = atomic_fetch_add(&next_msg, 1)) < nmsg) {
		int dom = i % ndomains + 1;
		size_t n = (size_t)sprintf(cmd, "MAIL FROM:<%s>\r\n", sender);
		for (int j = 0; j < rcpts; j++)
			n += (size_t)sprintf(cmd + n, "RCPT TO:<u%d.%d@d%d.test>\r\n", i, j, dom);
		n += (size_t)sprintf(cmd + n, "DATA\r\n");
		double t0 = now();
		if (write_all(c.fd, cmd, n) < 0) {
			set_error("write: %s", strerror(errno));
			goto fail;
		}
		for (int j = 0; j < rcpts + 2; j++) {
			int want = j == rcpts + 1 ? 354 : 250;
			if ((code = read_reply(&c, reply, sizeof reply)) != want) {
				set_error("msg %d step %d: %d %s", i, j, code, reply);
				goto fail;
			}
		}
		size_t h = (size_t)snprintf(hdr, 1024,
		    "From: <%s>\r\nTo: <u%d.0@d%d.test>\r\nSubject: bench %s.%d\r\n"
		    "Message-Id: <%s.%d@inject.bench.test>\r\nX-Bench-Token: %s.%d\r\n\r\n",
		    sender, i, dom, token, i, token, i, token, i);
		if (write_all(c.fd, hdr, h) < 0 || write_all(c.fd, payload, payload_len) < 0) {
			set_error("write: %s", strerror(errno));
			goto fail;
		}
		if ((code = read_reply(&c, reply, sizeof reply)) != 250) {
			set_error("msg %d end of data: %d %s", i, code, reply);
			goto fail;
		}
		lat[i] = now() - t0;
		atomic_fetch_add(&sent, 1);
	}
	write_all(c.fd, "QUIT\r\n", 6);
	read_reply(&c, NULL, 0);
	close(c.fd);
	free(cmd);
	free(hdr);
	return NULL;
fail:
	atomic_fetch_add(&errors, 1);
	if (c.fd >= 0)
		close(c.fd);
	free(cmd);
	free(hdr);
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	char *hostlist = strdup("127.0.0.1");
	int opt, quiet = 0;
	while ((opt = getopt(argc, argv, "H:p:n:c:r:s:D:T:f:q")) != -1) {
		switch (opt) {
		case 'H': hostlist = strdup(optarg); break;
		case 'p': port = atoi(optarg); break;
		case 'n': nmsg = atoi(optarg); break;
		case 'c': conc = atoi(optarg); break;
		case 'r': rcpts = atoi(optarg); break;
		case 's': size = atoi(optarg); break;
		case 'D': ndomains = atoi(optarg); break;
		case 'T': token = optarg; break;
		case 'f': sender = optarg; break;
		case 'q': quiet = 1; break;
		default:
			fprintf(stderr, "usage: inject -H hosts -p port -n N -c C [-r R] [-s size] [-D domains] [-T token]\n");
			return 2;
		}
	}
	for (char *s = strtok(hostlist, ","); s && nhosts < 64; s = strtok(NULL, ","))
		hosts[nhosts++] = s;
	for (int h = 0; h < nhosts; h++)
		if (strncmp(hosts[h], "127.", 4) != 0) {
			fprintf(stderr, "inject: refusing non-loopback host %s\n", hosts[h]);
			return 2;
		}
	if (port <= 0 || nmsg <= 0 || conc <= 0 || rcpts <= 0 || ndomains <= 0 || nhosts == 0) {
		fprintf(stderr, "inject: -p, -n, -c, -r, -D must be positive\n");
		return 2;
	}
	/* body: 78-byte lines "XXXX...\r\n", then ".\r\n" */
	size_t lines = (size_t)(size + 77) / 78;
	if (lines == 0)
		lines = 1;
	payload_len = lines * 78 + 3;
	payload = malloc(payload_len);
	for (size_t l = 0; l < lines; l++) {
		memset(payload + l * 78, 'X', 76);
		memcpy(payload + l * 78 + 76, "\r\n", 2);
	}
	memcpy(payload + lines * 78, ".\r\n", 3);
	lat = calloc((size_t)nmsg, sizeof *lat);
	for (int i = 0; i < nmsg; i++)
		lat[i] = -1;

	pthread_t *th = calloc((size_t)conc, sizeof *th);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	double t0 = now();
	for (long k = 0; k < conc; k++)
		pthread_create(&th[k], &attr, session, (void *)k);
	for (int k = 0; k < conc; k++)
		pthread_join(th[k], NULL);
	double t1 = now();

	int ns = 0;
	for (int i = 0; i < nmsg; i++)
		if (lat[i] >= 0)
			lat[ns++] = lat[i];
	qsort(lat, (size_t)ns, sizeof *lat, cmp_double);
#define PCT(p) (ns ? lat[(size_t)((ns - 1) * (p))] * 1000.0 : -1.0)
	double sum = 0;
	for (int i = 0; i < ns; i++)
		sum += lat[i];
	printf("{\"sent\": %d, \"requested\": %d, \"errors\": %d, \"t_start\": %.6f, \"t_end\": %.6f, "
	       "\"inject_s\": %.3f, \"inject_rate\": %.1f, \"lat_ms_mean\": %.3f, \"lat_ms_p50\": %.3f, "
	       "\"lat_ms_p90\": %.3f, \"lat_ms_p99\": %.3f, \"lat_ms_max\": %.3f, \"first_error\": \"",
	       ns, nmsg, atomic_load(&errors), t0, t1, t1 - t0, ns / (t1 - t0),
	       ns ? sum / ns * 1000.0 : -1.0, PCT(0.5), PCT(0.9), PCT(0.99), PCT(1.0));
	for (const char *p = first_error; *p; p++)
		if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if ((unsigned char)*p >= 32)
			putchar(*p);
	printf("\"}\n");
	if (!quiet && atomic_load(&errors))
		fprintf(stderr, "inject: %d sessions failed; first: %s\n", atomic_load(&errors), first_error);
	return ns == nmsg ? 0 : 1;
}

/*
 * impetusctl.c - the console client of impetusd.
 *
 *   impetusctl [-s SOCKET] [-t SECONDS] COMMAND [ARG…]   one command, then exit
 *   impetusctl [-s SOCKET] [-t SECONDS]                  interactive: one command
 *                                                        per line ("impetus> "
 *                                                        prompt on a terminal)
 *
 * SOCKET is a Unix socket path or "host:port" (a TCP Listen of the
 * Control_Listener); default: $IMPETUSCTL_SOCKET, else
 * /run/impetus/control.sock when it exists, else var/run/control.sock (the
 * embedded default configuration's). The protocol is in
 * src/control/control_request.h: one request line, the answer's lines (a
 * leading '.' doubled), then ".ok" or ".error".
 *
 * Interactive mode keeps the session's commands: "history" lists them,
 * "!N" runs the N-th again, "quit" or "exit" (or end of input) leaves.
 *
 * Exit status (one-shot): 0 the command succeeded (its answer on stdout);
 * 1 it failed (the daemon's one-line reason on stderr); 2 usage error, or
 * the daemon cannot be reached or closed the connection (after "shutdown",
 * a closed connection is expected and the status is 0).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/netaddr.h"
#include "lib/strbuf.h"

#define DEFAULT_SOCKET_SYSTEM "/run/impetus/control.sock"
#define DEFAULT_SOCKET_LOCAL "var/run/control.sock"
#define LINE_MAX_BYTES 4096

struct ctl {
	int fd;
	int timeout_ms;                 /* per answer */
	char buf[65536];                /* bytes read, not yet used */
	size_t have;
};

static void usage(void);
static int ctl_connect(const char *where, char *err, size_t errlen);
static int ctl_run(struct ctl *c, const char *line, struct strbuf *answer, int *status);
static void request_join(int argc, char **argv, struct strbuf *out);

static void
usage(void)
{
	fputs("usage: impetusctl [-s socket|host:port] [-t seconds] [command [args...]]\n"
	      "       impetusctl help     lists the daemon's commands\n", stderr);
	exit(2);
}

static int
ctl_connect(const char *where, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd;

	if (listen_addr_parse(where, &ss, &len, err, errlen) < 0)
		return -1;
	if ((fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&ss, len) < 0) {
		snprintf(err, errlen, "cannot connect to %s: %s", where, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* One line of the answer into line (without LF); 1, 0 at EOF, -1 on error/timeout. */
static int
read_line(struct ctl *c, struct strbuf *line)
{
	strbuf_reset(line);
	for (;;) {
		char *nl = memchr(c->buf, '\n', c->have);
		if (nl != NULL) {
			size_t n = (size_t)(nl - c->buf);
			strbuf_append(line, c->buf, n);
			memmove(c->buf, nl + 1, c->have - n - 1);
			c->have -= n + 1;
			return 1;
		}
		if (c->have == sizeof(c->buf)) {        /* a very long line: pass it on in parts */
			strbuf_append(line, c->buf, c->have);
			c->have = 0;
		}
		struct pollfd p = { c->fd, POLLIN, 0 };
		int r = poll(&p, 1, c->timeout_ms);
		if (r == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		ssize_t got = read(c->fd, c->buf + c->have, sizeof(c->buf) - c->have);
		if (got == 0)
			return 0;
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		c->have += (size_t)got;
	}
}

/* Send line, read the answer. 0 with *status (0 ok, 1 error); -1 when the
 * connection failed or closed (errno; 0 for a close). */
static int
ctl_run(struct ctl *c, const char *line, struct strbuf *answer, int *status)
{
	struct strbuf l = STRBUF_INIT;
	size_t len = strlen(line), off = 0;

	while (off < len + 1) {
		const char *p = off < len ? line + off : "\n";
		size_t n = off < len ? len - off : 1;
		ssize_t w = write(c->fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		off += (size_t)w;
	}
	strbuf_reset(answer);
	for (;;) {
		int r = read_line(c, &l);
		if (r <= 0) {
			if (r == 0)
				errno = 0;
			strbuf_free(&l);
			return -1;
		}
		const char *t = strbuf_cstr(&l);
		if (strcmp(t, ".ok") == 0 || strcmp(t, ".error") == 0) {
			*status = t[1] == 'o' ? 0 : 1;
			strbuf_free(&l);
			return 0;
		}
		strbuf_puts(answer, t[0] == '.' ? t + 1 : t);
		strbuf_putc(answer, '\n');
	}
}

/* The words as one request line, quoting those that need it. */
static void
request_join(int argc, char **argv, struct strbuf *out)
{
	for (int i = 0; i < argc; i++) {
		const char *w = argv[i];
		int plain = w[0] != '\0' && strpbrk(w, " \t\"'\\") == NULL;
		if (i > 0)
			strbuf_putc(out, ' ');
		if (plain) {
			strbuf_puts(out, w);
			continue;
		}
		strbuf_putc(out, '"');
		for (; *w; w++) {
			if (*w == '"' || *w == '\\')
				strbuf_putc(out, '\\');
			if (*w == '\n')
				strbuf_puts(out, "\\n");
			else
				strbuf_putc(out, *w);
		}
		strbuf_putc(out, '"');
	}
}

static const char *
default_socket(void)
{
	const char *env = getenv("IMPETUSCTL_SOCKET");

	if (env != NULL && env[0] != '\0')
		return env;
	if (access(DEFAULT_SOCKET_SYSTEM, F_OK) == 0)
		return DEFAULT_SOCKET_SYSTEM;
	return DEFAULT_SOCKET_LOCAL;
}

static int
interactive(struct ctl *c)
{
	int tty = isatty(STDIN_FILENO);
	char **hist = NULL;
	size_t nhist = 0;
	char line[LINE_MAX_BYTES + 2];
	struct strbuf answer = STRBUF_INIT;
	int rc = 0;

	for (;;) {
		if (tty) {
			fputs("impetus> ", stdout);
			fflush(stdout);
		}
		if (fgets(line, sizeof(line), stdin) == NULL)
			break;
		line[strcspn(line, "\r\n")] = '\0';
		char *cmd = line + strspn(line, " \t");
		if (*cmd == '\0')
			continue;
		if (strcmp(cmd, "quit") == 0 || strcmp(cmd, "exit") == 0)
			break;
		if (strcmp(cmd, "history") == 0) {
			for (size_t i = 0; i < nhist; i++)
				printf("%5zu  %s\n", i + 1, hist[i]);
			fflush(stdout);
			continue;
		}
		if (cmd[0] == '!') {
			char *end;
			unsigned long n = strtoul(cmd + 1, &end, 10);
			if (*end != '\0' || n == 0 || n > nhist) {
				fprintf(stderr, "impetusctl: no command %s in the history\n", cmd);
				continue;
			}
			snprintf(line, sizeof(line), "%s", hist[n - 1]);
			cmd = line;
			if (tty)
				printf("%s\n", cmd);
		}
		hist = realloc(hist, (nhist + 1) * sizeof(*hist));
		if (hist == NULL || (hist[nhist] = strdup(cmd)) == NULL) {
			fputs("impetusctl: out of memory\n", stderr);
			exit(2);
		}
		nhist++;
		int status;
		if (ctl_run(c, cmd, &answer, &status) < 0) {
			if (errno == 0)
				fprintf(stderr, "impetusctl: the daemon closed the connection\n");
			else
				fprintf(stderr, "impetusctl: %s\n", strerror(errno));
			rc = strncmp(cmd, "shutdown", 8) == 0 ? 0 : 2;
			break;
		}
		fputs(strbuf_cstr(&answer), status == 0 ? stdout : stderr);
		fflush(stdout);
		rc = status;
	}
	for (size_t i = 0; i < nhist; i++)
		free(hist[i]);
	free(hist);
	strbuf_free(&answer);
	return rc;
}

int
main(int argc, char **argv)
{
	const char *where = NULL;
	struct ctl c = { .fd = -1, .timeout_ms = 60000 };
	char err[256];
	int opt, rc;

	while ((opt = getopt(argc, argv, "+s:t:h")) != -1) {
		switch (opt) {
		case 's':
			where = optarg;
			break;
		case 't':
			c.timeout_ms = atoi(optarg) * 1000;
			if (c.timeout_ms <= 0)
				usage();
			break;
		default:
			usage();
		}
	}
	if (where == NULL)
		where = default_socket();
	if ((c.fd = ctl_connect(where, err, sizeof(err))) < 0) {
		fprintf(stderr, "impetusctl: %s\n", err);
		return 2;
	}
	if (optind >= argc) {
		rc = interactive(&c);
	} else {
		struct strbuf rq = STRBUF_INIT, answer = STRBUF_INIT;
		int status;
		request_join(argc - optind, argv + optind, &rq);
		if (ctl_run(&c, strbuf_cstr(&rq), &answer, &status) < 0) {
			if (errno == 0 && strcmp(argv[optind], "shutdown") == 0) {
				rc = 0;
			} else {
				fprintf(stderr, "impetusctl: %s\n",
				        errno == 0 ? "the daemon closed the connection" : strerror(errno));
				rc = 2;
			}
		} else if (status == 0) {
			fputs(strbuf_cstr(&answer), stdout);
			rc = 0;
		} else {
			/* One clear line: the daemon's reason. */
			const char *t = strbuf_cstr(&answer);
			fprintf(stderr, "impetusctl: %.*s\n", (int)strcspn(t, "\n"), t);
			rc = 1;
		}
		strbuf_free(&rq);
		strbuf_free(&answer);
	}
	close(c.fd);
	return rc;
}

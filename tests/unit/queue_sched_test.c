/*
 * queue_sched_test.c - the scheduler in-process: domain records, DNS
 * states, host choice, connection limits, throttles and retry outcomes.
 *
 * Each test starts the real scheduler (queue_start) on a loop group of one,
 * with an I/O pool and a spool in a temporary folder, a fake DNS resolver
 * (queue_set_resolver_factory + dns_fake_*) whose answers the test sets,
 * and, where it helps, a frozen wall clock (queue_set_clock). Mail goes in
 * the way reception hands it over: a batch committed with
 * spool_batch_commit on the loop, then queue_submit. The MXs are real
 * listening sockets on 127.0.0.x run by a small SMTP responder thread that
 * counts sessions, concurrent sessions and messages. Outcomes are observed
 * through hook providers registered by the test: connection failures (flags,
 * address, domain, slot), connection successes, and the D / T / P records,
 * plus ec_message_set_next_attempt for the retry schedule.
 *
 * outbound_pick is also checked directly on hand-built domain records
 * (equal preferences, fewest sessions, failed, skipped, prohibited and
 * saturated hosts).
 *
 * Waits are a condition plus a deadline, never a fixed sleep, except where a
 * test checks that something does not happen.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <impetus/conn_errors.h>
#include <impetus/hook.h>
#include <impetus/hooks/core/ec_message_set_next_attempt.h>
#include <impetus/hooks/core/log_client_connection_failure.h>
#include <impetus/hooks/core/log_client_connection_success.h>
#include <impetus/hooks/core/log_delivery_v1.h>
#include <impetus/hooks/core/log_permanent_failure_v1.h>
#include <impetus/hooks/core/log_transient_failure_v1.h>
#include <impetus/message.h>

#include "conf/conf.h"
#include "conf/conf_core.h"
#include "delivery/outbound.h"
#include "dns/dns.h"
#include "event/loop.h"
#include "event/tpool.h"
#include "lib/strbuf.h"
#include "queue/domain.h"
#include "queue/queue.h"
#include "spool/spool.h"
#include "test.h"

/* ------------------------------------------------------------ events */

enum ev_kind { EV_FAIL, EV_CONN, EV_D, EV_T, EV_P, EV_NEXT };

struct ev {
	enum ev_kind kind;
	int flags;                          /* EV_FAIL: CONN_ERROR_* | CONN_ACTION_* */
	char addr[64];                      /* peer IP, "" = none */
	char domain[128];
	char rcpt[128];                     /* D/T/P/NEXT */
	int slot;
	char note[512];                     /* D/T/P: the reply or reason */
	int64_t t_ms;                       /* monotonic, when recorded */
	int64_t now_us;                     /* NEXT: the wall clock the scheduler used */
	int64_t next_us;                    /* NEXT: the next attempt */
	unsigned retries;                   /* T/NEXT/P */
};

#define EV_MAX 8192
static struct ev events[EV_MAX];
static size_t nevents;
static pthread_mutex_t ev_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ev_cv = PTHREAD_COND_INITIALIZER;

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
real_wall_us(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

static void
addr_text(const struct sockaddr *sa, char *out, size_t len)
{
	out[0] = '\0';
	if (sa == NULL)
		return;
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)len);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)len);
}

static void
ev_add(const struct ev *e)
{
	pthread_mutex_lock(&ev_mu);
	if (nevents < EV_MAX) {
		events[nevents] = *e;
		events[nevents].t_ms = mono_ms();
		nevents++;
	}
	pthread_cond_broadcast(&ev_cv);
	pthread_mutex_unlock(&ev_mu);
}

static void
ev_reset(void)
{
	pthread_mutex_lock(&ev_mu);
	nevents = 0;
	pthread_mutex_unlock(&ev_mu);
}

/* ev_find: the i-th (0-based) event of kind for domain (NULL = any) whose
 * flags & mask == want; copied into out. Returns 1 when found. */
static int
ev_find(enum ev_kind kind, const char *domain, int mask, int want, size_t nth, struct ev *out)
{
	int found = 0;

	pthread_mutex_lock(&ev_mu);
	for (size_t i = 0; i < nevents; i++) {
		const struct ev *e = &events[i];
		if (e->kind != kind || (domain != NULL && strcmp(e->domain, domain) != 0) ||
		    (e->flags & mask) != want)
			continue;
		if (nth-- == 0) {
			if (out != NULL)
				*out = *e;
			found = 1;
			break;
		}
	}
	pthread_mutex_unlock(&ev_mu);
	return found;
}

static size_t
ev_count(enum ev_kind kind, const char *domain, int mask, int want)
{
	size_t n = 0;

	pthread_mutex_lock(&ev_mu);
	for (size_t i = 0; i < nevents; i++)
		if (events[i].kind == kind && (domain == NULL || strcmp(events[i].domain, domain) == 0) &&
		    (events[i].flags & mask) == want)
			n++;
	pthread_mutex_unlock(&ev_mu);
	return n;
}

/* ev_count_addr: events of kind for domain at the peer ip. */
static size_t
ev_count_addr(enum ev_kind kind, const char *domain, const char *ip)
{
	size_t n = 0;

	pthread_mutex_lock(&ev_mu);
	for (size_t i = 0; i < nevents; i++)
		if (events[i].kind == kind && strcmp(events[i].domain, domain) == 0 &&
		    strcmp(events[i].addr, ip) == 0)
			n++;
	pthread_mutex_unlock(&ev_mu);
	return n;
}

/* Wait until cond holds (re-evaluated on every event and every 10 ms) or
 * timeout_ms passes; evaluates to 1 when it held. */
#define WAIT_UNTIL(cond, timeout_ms)                                          \
	({                                                                    \
		int64_t dl_ = mono_ms() + (timeout_ms);                       \
		int ok_;                                                      \
		while (!(ok_ = (cond)) && mono_ms() < dl_) {                  \
			struct timespec ts_;                                  \
			clock_gettime(CLOCK_REALTIME, &ts_);                  \
			ts_.tv_nsec += 10 * 1000000;                          \
			if (ts_.tv_nsec >= 1000000000) {                      \
				ts_.tv_sec++;                                 \
				ts_.tv_nsec -= 1000000000;                    \
			}                                                     \
			pthread_mutex_lock(&ev_mu);                           \
			pthread_cond_timedwait(&ev_cv, &ev_mu, &ts_);         \
			pthread_mutex_unlock(&ev_mu);                         \
		}                                                             \
		ok_;                                                          \
	})

/* ------------------------------------------------------ hook providers */

static void
on_conn_failure(void *closure, struct sockaddr *addr, int err, domain_record *dr, int slot,
                struct timeval *now)
{
	struct ev e;

	(void)closure;
	(void)now;
	memset(&e, 0, sizeof(e));
	e.kind = EV_FAIL;
	e.flags = err;
	e.slot = slot;
	addr_text(addr, e.addr, sizeof(e.addr));
	snprintf(e.domain, sizeof(e.domain), "%s", dr != NULL ? dr->domain : "");
	ev_add(&e);
}

static void
on_conn_success(void *closure, struct sockaddr *addr, domain_record *dr, int slot,
                struct timeval *now)
{
	struct ev e;

	(void)closure;
	(void)now;
	memset(&e, 0, sizeof(e));
	e.kind = EV_CONN;
	e.slot = slot;
	addr_text(addr, e.addr, sizeof(e.addr));
	snprintf(e.domain, sizeof(e.domain), "%s", dr != NULL ? dr->domain : "");
	ev_add(&e);
}

static void
record_msg(enum ev_kind kind, ec_message *msg, domain_record *dr, const char *note, int note_len)
{
	struct ev e;

	memset(&e, 0, sizeof(e));
	e.kind = kind;
	e.slot = ec_message_binding_slot(msg);
	e.retries = ec_message_num_retries(msg);
	addr_text(ec_message_remote_addr(msg), e.addr, sizeof(e.addr));
	snprintf(e.domain, sizeof(e.domain), "%s", dr != NULL ? dr->domain : "");
	snprintf(e.rcpt, sizeof(e.rcpt), "%s", ec_message_rcptto(msg));
	snprintf(e.note, sizeof(e.note), "%.*s", note_len, note);
	ev_add(&e);
}

static void
on_delivery(void *closure, ec_message *msg, domain_record *dr, struct timeval *now,
            const char *note, int note_len)
{
	(void)closure;
	(void)now;
	record_msg(EV_D, msg, dr, note, note_len);
}

static void
on_transient(void *closure, ec_message *msg, domain_record *dr, struct timeval *now,
             const char *note, int note_len)
{
	(void)closure;
	(void)now;
	record_msg(EV_T, msg, dr, note, note_len);
}

static void
on_permanent(void *closure, ec_message *msg, domain_record *dr, struct timeval *now,
             const char *note, int note_len)
{
	(void)closure;
	(void)now;
	record_msg(EV_P, msg, dr, note, note_len);
}

/* Records the default schedule and leaves it alone (returns 0). */
static int
on_next_attempt(void *closure, ec_message *msg, struct timeval *now, int *rv)
{
	struct ev e;
	struct timeval next;

	(void)closure;
	(void)now;
	(void)rv;
	memset(&e, 0, sizeof(e));
	e.kind = EV_NEXT;
	ec_message_get_next_attempt_time(msg, &next);
	e.next_us = (int64_t)next.tv_sec * 1000000 + next.tv_usec;
	e.now_us = queue_wall_us();
	e.retries = ec_message_num_retries(msg);
	snprintf(e.rcpt, sizeof(e.rcpt), "%s", ec_message_rcptto(msg));
	{
		domain_record *dr = ec_message_domain(msg);
		snprintf(e.domain, sizeof(e.domain), "%s", dr != NULL ? dr->domain : "");
	}
	ev_add(&e);
	return 0;
}

static void
hooks_register(void)
{
	static int done;

	if (done)
		return;
	done = 1;
	/* Outside any transaction: permanent for the whole run. */
	register_core_log_client_connection_failure_hook_last(on_conn_failure, NULL);
	register_core_log_client_connection_success_hook_last(on_conn_success, NULL);
	register_core_log_delivery_v1_hook_last(on_delivery, NULL);
	register_core_log_transient_failure_v1_hook_last(on_transient, NULL);
	register_core_log_permanent_failure_v1_hook_last(on_permanent, NULL);
	register_core_ec_message_set_next_attempt_hook_last(on_next_attempt, NULL);
}

/* ------------------------------------------------------------- MXs */

#define MX_CLIENTS 64

struct mx_client {
	int fd;
	char buf[8192];
	size_t len;
	int in_data;
};

struct mx {
	char ip[32];
	int port;
	int lfd;
	int wake[2];                        /* a byte on wake[1] stops the thread */
	pthread_t th;
	const char *rcpt_reply;             /* the reply to every RCPT */
	struct mx_client cl[MX_CLIENTS];
	atomic_int sessions;                /* accepted */
	atomic_int active;                  /* open now */
	atomic_int max_active;              /* most open at once */
	atomic_int messages;                /* transactions completed with 250 */
};

static void
mx_say(int fd, const char *line)
{
	char buf[600];
	int n = snprintf(buf, sizeof(buf), "%s\r\n", line);
	ssize_t off = 0;

	while (off < n) {
		ssize_t w = send(fd, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
		if (w <= 0)
			return;
		off += w;
	}
}

static void
mx_drop(struct mx *mx, struct mx_client *c)
{
	close(c->fd);
	c->fd = -1;
	c->len = 0;
	c->in_data = 0;
	atomic_fetch_sub(&mx->active, 1);
	pthread_mutex_lock(&ev_mu);
	pthread_cond_broadcast(&ev_cv);
	pthread_mutex_unlock(&ev_mu);
}

/* One command line (without CRLF); returns 0 to keep the session, -1 to close it. */
static int
mx_line(struct mx *mx, struct mx_client *c, const char *line)
{
	if (c->in_data) {
		if (strcmp(line, ".") == 0) {
			c->in_data = 0;
			atomic_fetch_add(&mx->messages, 1);     /* counted before the client can know */
			mx_say(c->fd, "250 2.0.0 queued");
			pthread_mutex_lock(&ev_mu);
			pthread_cond_broadcast(&ev_cv);
			pthread_mutex_unlock(&ev_mu);
		}
		return 0;
	}
	if (strncasecmp(line, "EHLO", 4) == 0 || strncasecmp(line, "HELO", 4) == 0)
		mx_say(c->fd, "250 mx.test");
	else if (strncasecmp(line, "MAIL", 4) == 0)
		mx_say(c->fd, "250 2.1.0 ok");
	else if (strncasecmp(line, "RCPT", 4) == 0)
		mx_say(c->fd, mx->rcpt_reply);
	else if (strncasecmp(line, "DATA", 4) == 0) {
		mx_say(c->fd, "354 go ahead");
		c->in_data = 1;
	} else if (strncasecmp(line, "QUIT", 4) == 0) {
		mx_say(c->fd, "221 2.0.0 bye");
		return -1;
	} else if (strncasecmp(line, "RSET", 4) == 0 || strncasecmp(line, "NOOP", 4) == 0)
		mx_say(c->fd, "250 2.0.0 ok");
	else
		mx_say(c->fd, "500 5.5.1 what");
	return 0;
}

static void
mx_read(struct mx *mx, struct mx_client *c)
{
	ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
	char *start, *eol;

	if (n <= 0) {
		mx_drop(mx, c);
		return;
	}
	c->len += (size_t)n;
	c->buf[c->len] = '\0';
	start = c->buf;
	while ((eol = strstr(start, "\r\n")) != NULL) {
		*eol = '\0';
		if (mx_line(mx, c, start) < 0) {
			mx_drop(mx, c);
			return;
		}
		start = eol + 2;
	}
	c->len -= (size_t)(start - c->buf);
	memmove(c->buf, start, c->len);
	if (c->len == sizeof(c->buf) - 1)
		c->len = 0;                     /* an endless line: forget it */
}

static void *
mx_run(void *arg)
{
	struct mx *mx = arg;

	for (;;) {
		struct pollfd pfd[2 + MX_CLIENTS];
		struct mx_client *who[2 + MX_CLIENTS];
		nfds_t n = 0;

		pfd[n].fd = mx->wake[0];
		pfd[n++].events = POLLIN;
		pfd[n].fd = mx->lfd;
		pfd[n++].events = POLLIN;
		for (int i = 0; i < MX_CLIENTS; i++)
			if (mx->cl[i].fd >= 0) {
				who[n] = &mx->cl[i];
				pfd[n].fd = mx->cl[i].fd;
				pfd[n++].events = POLLIN;
			}
		if (poll(pfd, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[0].revents)
			break;
		if (pfd[1].revents & POLLIN) {
			int fd = accept(mx->lfd, NULL, NULL);
			if (fd >= 0) {
				int slot = -1;
				for (int i = 0; i < MX_CLIENTS && slot < 0; i++)
					if (mx->cl[i].fd < 0)
						slot = i;
				if (slot < 0) {
					close(fd);
				} else {
					int a;
					mx->cl[slot].fd = fd;
					mx->cl[slot].len = 0;
					mx->cl[slot].in_data = 0;
					atomic_fetch_add(&mx->sessions, 1);
					a = atomic_fetch_add(&mx->active, 1) + 1;
					if (a > atomic_load(&mx->max_active))
						atomic_store(&mx->max_active, a);
					mx_say(fd, "220 mx.test ESMTP test responder");
				}
			}
		}
		for (nfds_t i = 2; i < n; i++)
			if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))
				mx_read(mx, who[i]);
	}
	for (int i = 0; i < MX_CLIENTS; i++)
		if (mx->cl[i].fd >= 0)
			close(mx->cl[i].fd);
	return NULL;
}

static int
mx_listen(const char *ip, int port)
{
	struct sockaddr_in sin;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	inet_pton(AF_INET, ip, &sin.sin_addr);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(fd, 64) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int mx_port;                     /* every MX of a test listens on it */

/* mx_start_all: MXs on ips[i], all on one port (Remote_SMTP_Port applies to
 * every MX of a domain); sets mx_port. Returns 0, or -1. */
static int
mx_start_all(struct mx *mxs, const char *const *ips, size_t n)
{
	for (int attempt = 0; attempt < 20; attempt++) {
		size_t ok = 0;
		int port = 0;
		for (; ok < n; ok++) {
			int fd = mx_listen(ips[ok], port);
			if (fd < 0)
				break;
			if (port == 0) {
				struct sockaddr_in sin;
				socklen_t len = sizeof(sin);
				getsockname(fd, (struct sockaddr *)&sin, &len);
				port = ntohs(sin.sin_port);
			}
			memset(&mxs[ok], 0, sizeof(mxs[ok]));
			mxs[ok].lfd = fd;
			mxs[ok].port = port;
			snprintf(mxs[ok].ip, sizeof(mxs[ok].ip), "%s", ips[ok]);
		}
		if (ok == n) {
			for (size_t i = 0; i < n; i++) {
				struct mx *mx = &mxs[i];
				mx->rcpt_reply = "250 2.1.5 ok";
				for (int j = 0; j < MX_CLIENTS; j++)
					mx->cl[j].fd = -1;
				if (pipe(mx->wake) < 0)
					return -1;
				pthread_create(&mx->th, NULL, mx_run, mx);
			}
			mx_port = port;
			return 0;
		}
		for (size_t i = 0; i < ok; i++)
			close(mxs[i].lfd);
	}
	return -1;
}

static void
mx_stop_all(struct mx *mxs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (write(mxs[i].wake[1], "x", 1) != 1)
			continue;
		pthread_join(mxs[i].th, NULL);
		close(mxs[i].wake[0]);
		close(mxs[i].wake[1]);
		close(mxs[i].lfd);
	}
}

/* A free port on ip: nothing listens there, connections are refused. */
static const char *const REFUSING_IP = "127.0.0.9";

/* ------------------------------------------------------ environment */

static struct loop_group *group;
static struct tpool *io;
static struct spool *sp;
static char spool_dir[64];
static struct dns_resolver *fake_dns;   /* the one loop's resolver */
static _Atomic int64_t frozen_wall_us;  /* the wall clock while frozen */

static struct dns_resolver *
make_resolver(struct event_base *base, void *arg)
{
	(void)arg;
	fake_dns = dns_fake_new(base);
	return fake_dns;
}

static int64_t
frozen_wall(void)
{
	return atomic_load(&frozen_wall_us);
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

/*
 * env_setup: install the configuration (common settings first, then extra,
 * with %d in both replaced by the MX port), start the loop, pool, spool and
 * scheduler. freeze: the scheduler's wall clock stands still at now.
 */
static int
env_setup(const char *extra, int freeze)
{
	struct conf_errors errs = { STRBUF_INIT, 0 };
	struct strbuf text = STRBUF_INIT;
	struct conf *c;
	char err[256];

	hooks_register();
	ev_reset();
	strbuf_printf(&text,
	              "TLS = no\n"
	              "EHLO_Hostname = \"client.test\"\n"
	              "Remote_SMTP_Port = %d\n"
	              "Idle_Timeout = 1\n"
	              "Connect_Timeout = 5\n"
	              "MX_Failures_To_Delay = 50\n",
	              mx_port > 0 ? mx_port : 25);
	strbuf_puts(&text, extra);
	c = conf_load_string(strbuf_cstr(&text), "sched.conf", &errs);
	CHECK(c != NULL, "config rejected: %s\n%s", strbuf_cstr(&errs.text), strbuf_cstr(&text));
	conf_errors_free(&errs);
	strbuf_free(&text);
	if (c == NULL)
		return -1;
	conf_install(c);

	snprintf(spool_dir, sizeof(spool_dir), "/tmp/queue_sched_test.XXXXXX");
	if (mkdtemp(spool_dir) == NULL) {
		CHECK(0, "mkdtemp: %s", strerror(errno));
		return -1;
	}
	group = loop_group_start(1, err, sizeof(err));
	CHECK(group != NULL, "loop group: %s", err);
	io = tpool_start(2, err, sizeof(err));
	CHECK(io != NULL, "pool: %s", err);
	if (group == NULL || io == NULL)
		return -1;
	sp = spool_open(spool_dir, io, err, sizeof(err));
	CHECK(sp != NULL, "spool: %s", err);
	if (sp == NULL)
		return -1;
	atomic_store(&frozen_wall_us, real_wall_us());
	queue_set_resolver_factory(make_resolver, NULL);
	queue_set_clock(NULL, freeze ? frozen_wall : NULL);
	if (queue_start(group, sp, io, NULL, err, sizeof(err)) < 0) {
		CHECK(0, "queue_start: %s", err);
		return -1;
	}
	return 0;
}

static void
env_teardown(void)
{
	queue_stop();
	spool_stop(sp);
	tpool_stop(io);
	loop_group_stop(group);
	queue_free();
	spool_close(sp);
	queue_set_clock(NULL, NULL);
	queue_set_resolver_factory(NULL, NULL);
	conf_install(NULL);
	imp_hook_reclaim();
	nftw(spool_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	group = NULL;
	io = NULL;
	sp = NULL;
	fake_dns = NULL;
}

/* on_loop: run fn(arg) on the scheduler's loop and wait for it. */
struct sync_call {
	void (*fn)(void *arg);
	void *arg;
	int done;
};

static void
sync_trampoline(void *arg)
{
	struct sync_call *s = arg;

	s->fn(s->arg);
	pthread_mutex_lock(&ev_mu);
	s->done = 1;
	pthread_cond_broadcast(&ev_cv);
	pthread_mutex_unlock(&ev_mu);
}

static void
on_loop(void (*fn)(void *), void *arg)
{
	struct sync_call s = { fn, arg, 0 };

	loop_post(loop_group_get(group, 0), sync_trampoline, &s);
	pthread_mutex_lock(&ev_mu);
	while (!s.done)
		pthread_cond_wait(&ev_cv, &ev_mu);
	pthread_mutex_unlock(&ev_mu);
}

/* ------------------------------------------------------------- DNS */

enum dns_op { DNS_OP_SET, DNS_OP_HOLD, DNS_OP_RELEASE, DNS_OP_QUERIES };

struct dns_job {
	enum dns_op op;
	const char *domain;
	struct dns_mx_result *res;
	unsigned queries;
};

static void
dns_job_run(void *arg)
{
	struct dns_job *j = arg;

	switch (j->op) {
	case DNS_OP_SET:
		dns_fake_set(fake_dns, j->domain, j->res);
		break;
	case DNS_OP_HOLD:
		dns_fake_hold(fake_dns, j->domain);
		break;
	case DNS_OP_RELEASE:
		dns_fake_release(fake_dns, j->domain);
		break;
	case DNS_OP_QUERIES:
		j->queries = dns_fake_queries(fake_dns, j->domain);
		break;
	}
}

/*
 * dns_set: the answer for domain: status, and for DNS_OK the hosts in spec,
 * "pref name ip[,ip...]" entries separated by ';'.
 */
static void
dns_set(const char *domain, enum dns_status st, const char *spec)
{
	struct dns_mx_result *res = dns_result_new(st, 300);
	char buf[1024], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", spec != NULL ? spec : "");
	for (char *ent = strtok_r(buf, ";", &save); ent != NULL; ent = strtok_r(NULL, ";", &save)) {
		unsigned pref;
		char name[128], ips[512], *s2 = NULL;
		if (sscanf(ent, " %u %127s %511s", &pref, name, ips) != 3)
			continue;
		struct dns_host *h = dns_result_add_host(res, name, pref);
		for (char *ip = strtok_r(ips, ",", &s2); ip != NULL; ip = strtok_r(NULL, ",", &s2))
			dns_host_add_addr(h, ip);
	}
	struct dns_job j = { DNS_OP_SET, domain, res, 0 };
	on_loop(dns_job_run, &j);
	dns_mx_result_free(res);
}

static void
dns_simple(enum dns_op op, const char *domain)
{
	struct dns_job j = { op, domain, NULL, 0 };

	on_loop(dns_job_run, &j);
}

static unsigned
dns_queries(const char *domain)
{
	struct dns_job j = { DNS_OP_QUERIES, domain, NULL, 0 };

	on_loop(dns_job_run, &j);
	return j.queries;
}

/* ------------------------------------------------------------ mail */

struct mail_job {
	char rcpt[128];
	int64_t received_s;                 /* reception time, 0 = now */
};

static atomic_int commit_failures;

static void
committed(struct spool_batch *b, int err, void *arg)
{
	(void)arg;
	if (err != 0) {
		atomic_fetch_add(&commit_failures, 1);
		spool_batch_free(b);
		return;
	}
	queue_submit(b);                    /* takes b, as reception does */
}

static void
mail_on_loop(void *arg)
{
	struct mail_job *j = arg;
	struct spool_batch *b = spool_batch_new(sp);
	static const char body[] = "Subject: queue_sched_test\r\n\r\nhello\r\n";
	struct timeval when = { (time_t)j->received_s, 0 };

	spool_batch_set_mail_from(b, "");   /* null sender: failures make no bounce */
	spool_batch_set_reception(b, 0, NULL, "", "local", j->received_s != 0 ? &when : NULL);
	spool_batch_add_rcpt(b, j->rcpt, NULL, 0, NULL);
	spool_batch_append(b, body, sizeof(body) - 1);
	spool_batch_commit(b, loop_current(), committed, NULL);
	free(j);
}

/* send_mail: one batch, one recipient, committed and submitted on the loop. */
static void
send_mail_at(const char *rcpt, int64_t received_s)
{
	struct mail_job *j = calloc(1, sizeof(*j));

	snprintf(j->rcpt, sizeof(j->rcpt), "%s", rcpt);
	j->received_s = received_s;
	loop_post(loop_group_get(group, 0), mail_on_loop, j);
}

static void
send_mail(const char *rcpt)
{
	send_mail_at(rcpt, 0);
}

static uint64_t
stat_received(void)
{
	struct queue_stats st;

	queue_stats(&st);
	return st.received;
}

static int
note_starts(const char *note, const char *prefix)
{
	return strncmp(note, prefix, strlen(prefix)) == 0;
}

/* ------------------------------------------------------------ tests */

static struct mx mxs[4];
static const char *const MX_IPS[] = { "127.0.0.2", "127.0.0.3" };

static int
mx_up(size_t n)
{
	int r = mx_start_all(mxs, MX_IPS, n);

	CHECK(r == 0, "cannot listen on 127.0.0.2/3: %s", strerror(errno));
	return r;
}

/* DNS pending: reported as MX_LOOKUP_PENDING (no action), then delivered. */
static void
test_dns_pending(void)
{
	struct ev e;

	if (mx_up(1) < 0)
		return;
	if (env_setup("", 0) == 0) {
		dns_simple(DNS_OP_HOLD, "pend.test");
		dns_set("pend.test", DNS_OK, "10 mx1.pend.test 127.0.0.2");
		send_mail("r@pend.test");
		CHECK(WAIT_UNTIL(ev_find(EV_FAIL, "pend.test", ~0, CONN_ERROR_MX_LOOKUP_PENDING, 0, &e),
		                 5000),
		      "MX_LOOKUP_PENDING report: got none, want one");
		if (ev_find(EV_FAIL, "pend.test", 0, 0, 0, &e)) {
			CHECK(e.flags == CONN_ERROR_MX_LOOKUP_PENDING,
			      "first report flags: got 0x%x, want 0x%x", e.flags, CONN_ERROR_MX_LOOKUP_PENDING);
			CHECK_STR(e.addr, "", "no address while DNS is pending");
			CHECK_INT(e.slot, 0, "slot of the default binding");
		}
		CHECK_INT(ev_count(EV_D, "pend.test", 0, 0), 0, "deliveries before the answer");
		dns_simple(DNS_OP_RELEASE, "pend.test");
		CHECK(WAIT_UNTIL(ev_count(EV_D, "pend.test", 0, 0) == 1, 5000),
		      "delivery after release: got %zu, want 1", ev_count(EV_D, "pend.test", 0, 0));
		if (ev_find(EV_D, "pend.test", 0, 0, 0, &e)) {
			CHECK_STR(e.addr, "127.0.0.2", "delivered to the MX");
			CHECK_STR(e.rcpt, "r@pend.test", "delivered recipient");
			CHECK(note_starts(e.note, "250"), "D note: got \"%s\", want 250 …", e.note);
		}
		CHECK_INT(atomic_load(&mxs[0].messages), 1, "messages at the MX");
		CHECK_INT(ev_count(EV_P, NULL, 0, 0) + ev_count(EV_T, NULL, 0, 0), 0, "failures");
		env_teardown();
	}
	mx_stop_all(mxs, 1);
}

/* Permanent DNS answers purge the domain with the right cause and note. */
static void
test_dns_permanent(void)
{
	static const struct {
		const char *domain;
		int set;                        /* 0: no answer set (the fake says NXDOMAIN) */
		enum dns_status st;
		int want_flags;
		const char *want_note;          /* prefix of the P note */
	} cases[] = {
		{ "nx.test", 0, DNS_NXDOMAIN, CONN_ERROR_MX_LOOKUP_FAILED | CONN_ACTION_PURGE_DOMAIN,
		  "554 5.4.4" },
		{ "nx2.test", 1, DNS_NXDOMAIN, CONN_ERROR_MX_LOOKUP_FAILED | CONN_ACTION_PURGE_DOMAIN,
		  "554 5.4.4" },
		{ "nullmx.test", 1, DNS_NULL_MX, CONN_ERROR_SMTP_NULL_MX | CONN_ACTION_PURGE_DOMAIN,
		  "556 5.1.10" },
		{ "noaddr.test", 1, DNS_NO_ADDRESS,
		  CONN_ERROR_MX_LOOKUP_FAILED | CONN_ACTION_PURGE_DOMAIN, "554 5.4.4" },
	};
	size_t n = sizeof(cases) / sizeof(cases[0]);

	if (env_setup("", 0) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		char rcpt[128];
		if (cases[i].set)
			dns_set(cases[i].domain, cases[i].st, NULL);
		for (int k = 0; k < 2; k++) {
			snprintf(rcpt, sizeof(rcpt), "r%d@%s", k, cases[i].domain);
			send_mail(rcpt);
		}
	}
	for (size_t i = 0; i < n; i++) {
		const char *d = cases[i].domain;
		struct ev e;
		CHECK(WAIT_UNTIL(ev_count(EV_P, d, 0, 0) == 2, 5000), "%s: P records got %zu, want 2", d,
		      ev_count(EV_P, d, 0, 0));
		CHECK(ev_find(EV_FAIL, d, CONN_ERROR_MASK, cases[i].want_flags & CONN_ERROR_MASK, 0, &e),
		      "%s: no failure report with cause 0x%x", d, cases[i].want_flags & CONN_ERROR_MASK);
		CHECK(ev_count(EV_FAIL, d, ~0, cases[i].want_flags) >= 1,
		      "%s: reports with flags 0x%x: got none (first: 0x%x)", d, cases[i].want_flags,
		      e.flags);
		for (size_t k = 0; ev_find(EV_P, d, 0, 0, k, &e); k++)
			CHECK(note_starts(e.note, cases[i].want_note), "%s: P note got \"%s\", want \"%s …\"",
			      d, e.note, cases[i].want_note);
		CHECK_INT(ev_count(EV_CONN, d, 0, 0), 0, d);
		CHECK_INT(ev_count(EV_T, d, 0, 0), 0, d);
	}
	env_teardown();
}

/* TEMPFAIL: MX_LOOKUP_FAILED without action until DNS_Failures_To_Purge, then the purge. */
static void
test_dns_tempfail(void)
{
	const char *d = "temp.test";
	struct ev e;

	if (env_setup("DNS_Failures_To_Purge = 2\n", 0) < 0)
		return;
	dns_set(d, DNS_TEMPFAIL, NULL);
	send_mail("r@temp.test");
	CHECK(WAIT_UNTIL(ev_count(EV_P, d, 0, 0) == 1, 8000), "P records: got %zu, want 1",
	      ev_count(EV_P, d, 0, 0));
	CHECK_INT(dns_queries(d), 2, "lookups before the purge (DNS_Failures_To_Purge)");
	CHECK(ev_count(EV_FAIL, d, ~0, CONN_ERROR_MX_LOOKUP_FAILED) >= 1,
	      "MX_LOOKUP_FAILED without action before the purge: got %zu, want >= 1",
	      ev_count(EV_FAIL, d, ~0, CONN_ERROR_MX_LOOKUP_FAILED));
	CHECK_INT(ev_count(EV_FAIL, d, ~0, CONN_ERROR_MX_LOOKUP_FAILED | CONN_ACTION_PURGE_DOMAIN), 1,
	          "MX_LOOKUP_FAILED|PURGE_DOMAIN reports");
	/* No purge before the second answer: the first failure report has no action. */
	if (ev_find(EV_FAIL, d, CONN_ERROR_MX_LOOKUP_FAILED, CONN_ERROR_MX_LOOKUP_FAILED, 0, &e))
		CHECK(e.flags == CONN_ERROR_MX_LOOKUP_FAILED, "first MX_LOOKUP_FAILED: got 0x%x, want 0x%x",
		      e.flags, CONN_ERROR_MX_LOOKUP_FAILED);
	if (ev_find(EV_P, d, 0, 0, 0, &e))
		CHECK(note_starts(e.note, "554 5.4.4"), "P note: got \"%s\", want \"554 5.4.4 …\"",
		      e.note);
	CHECK_INT(ev_count(EV_T, d, 0, 0), 0, "T records");
	env_teardown();
}

/* A worse preference waits while the better one works; used when it refuses. */
static void
test_mx_order(void)
{
	char cfg[256], spec[256];

	if (mx_up(2) < 0)
		return;
	snprintf(cfg, sizeof(cfg), "Host_Failure_Retry = 600\n");
	if (env_setup(cfg, 0) == 0) {
		struct ev e;
		dns_set("order.test", DNS_OK, "10 mx1.order.test 127.0.0.2; 20 mx2.order.test 127.0.0.3");
		snprintf(spec, sizeof(spec), "10 mx1.refuse.test %s; 20 mx2.refuse.test 127.0.0.3",
		         REFUSING_IP);
		dns_set("refuse.test", DNS_OK, spec);
		for (int i = 0; i < 3; i++) {
			char rcpt[64];
			snprintf(rcpt, sizeof(rcpt), "r%d@order.test", i);
			send_mail(rcpt);
		}
		CHECK(WAIT_UNTIL(ev_count(EV_D, "order.test", 0, 0) == 3, 5000),
		      "order.test deliveries: got %zu, want 3", ev_count(EV_D, "order.test", 0, 0));
		CHECK_INT(ev_count_addr(EV_D, "order.test", "127.0.0.2"), 3, "order.test via pref 10");
		CHECK_INT(ev_count_addr(EV_CONN, "order.test", "127.0.0.3"), 0,
		          "sessions to pref 20 while pref 10 works");
		CHECK_INT(atomic_load(&mxs[1].sessions), 0, "sessions at the pref 20 MX");

		send_mail("r@refuse.test");
		CHECK(WAIT_UNTIL(ev_count(EV_D, "refuse.test", 0, 0) == 1, 5000),
		      "refuse.test deliveries: got %zu, want 1", ev_count(EV_D, "refuse.test", 0, 0));
		CHECK_INT(ev_count_addr(EV_D, "refuse.test", "127.0.0.3"), 1, "refuse.test via pref 20");
		CHECK(ev_find(EV_FAIL, "refuse.test", CONN_ERROR_MASK, CONN_ERROR_CONNECT, 0, &e),
		      "refuse.test: no CONN_ERROR_CONNECT report");
		CHECK(e.flags == CONN_ERROR_CONNECT, "refused pref 10: flags got 0x%x, want 0x%x "
		      "(CONNECT, the next host is tried: no action)", e.flags, CONN_ERROR_CONNECT);
		CHECK_STR(e.addr, REFUSING_IP, "the refused address");
		CHECK_INT(ev_count(EV_T, NULL, 0, 0), 0, "T records");
		env_teardown();
	}
	mx_stop_all(mxs, 2);
}

/* Equal preferences share the sessions: both MXs get some. */
static void
test_spread_equal_pref(void)
{
	const char *d = "spread.test";

	if (mx_up(2) < 0)
		return;
	if (env_setup("", 0) == 0) {
		uint64_t base = stat_received();
		dns_simple(DNS_OP_HOLD, d);
		dns_set(d, DNS_OK, "10 mx1.spread.test 127.0.0.2; 10 mx2.spread.test 127.0.0.3");
		for (int i = 0; i < 48; i++) {
			char rcpt[64];
			snprintf(rcpt, sizeof(rcpt), "r%d@spread.test", i);
			send_mail(rcpt);
		}
		CHECK(WAIT_UNTIL(stat_received() - base == 48, 5000), "queued: got %llu, want 48",
		      (unsigned long long)(stat_received() - base));
		dns_simple(DNS_OP_RELEASE, d);
		CHECK(WAIT_UNTIL(ev_count(EV_D, d, 0, 0) == 48, 8000), "deliveries: got %zu, want 48",
		      ev_count(EV_D, d, 0, 0));
		size_t c2 = ev_count_addr(EV_CONN, d, "127.0.0.2"), c3 = ev_count_addr(EV_CONN, d, "127.0.0.3");
		CHECK(c2 >= 1 && c3 >= 1, "sessions per MX: got %zu and %zu, want both >= 1", c2, c3);
		size_t d2 = ev_count_addr(EV_D, d, "127.0.0.2"), d3 = ev_count_addr(EV_D, d, "127.0.0.3");
		CHECK(d2 >= 1 && d3 >= 1 && d2 + d3 == 48, "deliveries per MX: got %zu and %zu", d2, d3);
		env_teardown();
	}
	mx_stop_all(mxs, 2);
}

/* Max_Outbound_Connections caps the sessions of (domain, binding). */
static void
test_max_outbound_connections(void)
{
	const char *d = "maxc.test";

	if (mx_up(1) < 0)
		return;
	if (env_setup("Domain \"maxc.test\" { Max_Outbound_Connections = 2 }\n", 0) == 0) {
		uint64_t base = stat_received();
		dns_simple(DNS_OP_HOLD, d);
		dns_set(d, DNS_OK, "10 mx1.maxc.test 127.0.0.2");
		for (int i = 0; i < 48; i++) {       /* a goal of 3 without the cap */
			char rcpt[64];
			snprintf(rcpt, sizeof(rcpt), "r%d@maxc.test", i);
			send_mail(rcpt);
		}
		CHECK(WAIT_UNTIL(stat_received() - base == 48, 5000), "queued: got %llu, want 48",
		      (unsigned long long)(stat_received() - base));
		dns_simple(DNS_OP_RELEASE, d);
		CHECK(WAIT_UNTIL(ev_count(EV_D, d, 0, 0) == 48, 8000), "deliveries: got %zu, want 48",
		      ev_count(EV_D, d, 0, 0));
		CHECK_INT(atomic_load(&mxs[0].max_active), 2, "most concurrent sessions at the MX");
		CHECK_INT(ev_count(EV_CONN, d, 0, 0), 2, "sessions opened");
		env_teardown();
	}
	mx_stop_all(mxs, 1);
}

/* A Host stanza's Max_Outbound_Connections: HOST_MAX_REACHED, no action. */
static void
test_host_max_reached(void)
{
	const char *d = "hmax.test";

	if (mx_up(1) < 0)
		return;
	if (env_setup("Host \"mx1.hmax.test\" { Max_Outbound_Connections = 1 }\n", 0) == 0) {
		uint64_t base = stat_received();
		dns_simple(DNS_OP_HOLD, d);
		dns_set(d, DNS_OK, "10 mx1.hmax.test 127.0.0.2");
		for (int i = 0; i < 48; i++) {
			char rcpt[64];
			snprintf(rcpt, sizeof(rcpt), "r%d@hmax.test", i);
			send_mail(rcpt);
		}
		CHECK(WAIT_UNTIL(stat_received() - base == 48, 5000), "queued: got %llu, want 48",
		      (unsigned long long)(stat_received() - base));
		dns_simple(DNS_OP_RELEASE, d);
		CHECK(WAIT_UNTIL(ev_count(EV_FAIL, d, ~0, CONN_ERROR_HOST_MAX_REACHED) >= 1, 5000),
		      "HOST_MAX_REACHED (no action) reports: got none");
		CHECK(WAIT_UNTIL(ev_count(EV_D, d, 0, 0) == 48, 8000), "deliveries: got %zu, want 48",
		      ev_count(EV_D, d, 0, 0));
		CHECK_INT(atomic_load(&mxs[0].max_active), 1, "most concurrent sessions at the host");
		CHECK_INT(ev_count(EV_T, d, 0, 0) + ev_count(EV_P, d, 0, 0), 0, "failures");
		env_teardown();
	}
	mx_stop_all(mxs, 1);
}

/* Prohibited_Hosts and Skip_Hosts. */
static void
test_prohibited_and_skipped(void)
{
	struct ev e;

	if (mx_up(2) < 0)
		return;
	if (env_setup("Prohibited_Hosts = ( \"127.0.0.4/32\" \"127.0.0.5/32\" )\n"
	              "Skip_Hosts = ( \"127.0.0.2/32\" )\n", 0) == 0) {
		dns_set("proh.test", DNS_OK, "10 mx1.proh.test 127.0.0.4,127.0.0.5");
		dns_set("skip.test", DNS_OK, "10 mx1.skip.test 127.0.0.2; 20 mx2.skip.test 127.0.0.3");
		dns_set("mixed.test", DNS_OK, "10 mx1.mixed.test 127.0.0.4; 20 mx2.mixed.test 127.0.0.3");
		send_mail("a@proh.test");
		send_mail("b@proh.test");
		send_mail("r@skip.test");
		send_mail("r@mixed.test");
		CHECK(WAIT_UNTIL(ev_count(EV_P, "proh.test", 0, 0) == 2, 5000),
		      "proh.test P records: got %zu, want 2", ev_count(EV_P, "proh.test", 0, 0));
		CHECK(ev_find(EV_FAIL, "proh.test", CONN_ERROR_MASK, CONN_ERROR_PROHIBITED_IP, 0, &e),
		      "proh.test: no PROHIBITED_IP report");
		CHECK(e.flags == (CONN_ERROR_PROHIBITED_IP | CONN_ACTION_PURGE_DOMAIN),
		      "proh.test flags: got 0x%x, want 0x%x", e.flags,
		      CONN_ERROR_PROHIBITED_IP | CONN_ACTION_PURGE_DOMAIN);
		for (size_t k = 0; ev_find(EV_P, "proh.test", 0, 0, k, &e); k++)
			CHECK(note_starts(e.note, "551 5.4.6"), "proh.test P note: got \"%s\", want 551 5.4.6",
			      e.note);
		CHECK(WAIT_UNTIL(ev_count(EV_D, "skip.test", 0, 0) == 1 &&
		                 ev_count(EV_D, "mixed.test", 0, 0) == 1, 5000),
		      "skip.test / mixed.test deliveries: got %zu / %zu, want 1 / 1",
		      ev_count(EV_D, "skip.test", 0, 0), ev_count(EV_D, "mixed.test", 0, 0));
		CHECK_INT(ev_count_addr(EV_D, "skip.test", "127.0.0.3"), 1, "skip.test via the other MX");
		CHECK_INT(ev_count_addr(EV_CONN, "skip.test", "127.0.0.2"), 0, "sessions to the skipped MX");
		CHECK_INT(atomic_load(&mxs[0].sessions), 0, "sessions at 127.0.0.2");
		CHECK_INT(ev_count_addr(EV_D, "mixed.test", "127.0.0.3"), 1,
		          "mixed.test: a prohibited MX is passed over, the domain is not purged");
		CHECK_INT(ev_count(EV_P, "mixed.test", 0, 0) + ev_count(EV_P, "skip.test", 0, 0), 0,
		          "P records of usable domains");
		env_teardown();
	}
	mx_stop_all(mxs, 2);
}

/* Two domains falling back to one global Outbound_Throttle_Connections
 * share its bucket; their own declarations would not. */
static void
test_throttle_shared(void)
{
	static const struct {
		const char *name;
		const char *conf;
		int shared;
	} cases[] = {
		{ "global declaration", "Outbound_Throttle_Connections = \"1/1\"\n", 1 },
		{ "one declaration per domain",
		  "Domain \"thr1.test\" { Outbound_Throttle_Connections = \"1/1\" }\n"
		  "Domain \"thr2.test\" { Outbound_Throttle_Connections = \"1/1\" }\n", 0 },
	};

	if (mx_up(1) < 0)
		return;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ev e1, e2;
		if (env_setup(cases[i].conf, 0) < 0)
			break;
		{
			struct conf *c = conf_current();
			const struct conf_setting *s1 = conf_resolve(c, &conf_opt_outbound_throttle_connections,
			                                             0, "thr1.test");
			const struct conf_setting *s2 = conf_resolve(c, &conf_opt_outbound_throttle_connections,
			                                             0, "thr2.test");
			CHECK(s1 != NULL && s2 != NULL && (s1->throttle == s2->throttle) == cases[i].shared,
			      "%s: buckets %p and %p, want %s", cases[i].name,
			      s1 ? (void *)s1->throttle : NULL, s2 ? (void *)s2->throttle : NULL,
			      cases[i].shared ? "the same" : "different");
			conf_unref(c);
		}
		dns_set("thr1.test", DNS_OK, "10 mx1.thr.test 127.0.0.2");
		dns_set("thr2.test", DNS_OK, "10 mx1.thr.test 127.0.0.2");
		send_mail("r@thr1.test");
		send_mail("r@thr2.test");
		CHECK(WAIT_UNTIL(ev_count(EV_D, "thr1.test", 0, 0) == 1 &&
		                 ev_count(EV_D, "thr2.test", 0, 0) == 1, 5000),
		      "%s: deliveries got %zu / %zu, want 1 / 1", cases[i].name,
		      ev_count(EV_D, "thr1.test", 0, 0), ev_count(EV_D, "thr2.test", 0, 0));
		if (ev_find(EV_CONN, "thr1.test", 0, 0, 0, &e1) && ev_find(EV_CONN, "thr2.test", 0, 0, 0, &e2)) {
			int64_t gap = e1.t_ms > e2.t_ms ? e1.t_ms - e2.t_ms : e2.t_ms - e1.t_ms;
			if (cases[i].shared)
				CHECK(gap >= 800, "%s: sessions %lld ms apart, want >= 800 (one token per second "
				      "for both domains)", cases[i].name, (long long)gap);
			else
				CHECK(gap < 800, "%s: sessions %lld ms apart, want < 800 (a bucket each)",
				      cases[i].name, (long long)gap);
		}
		CHECK_INT(ev_count(EV_CONN, NULL, 0, 0), 2, cases[i].name);
		env_teardown();
	}
	mx_stop_all(mxs, 1);
}

/* A transient failure: next attempt = now + Retry_Interval (frozen clock). */
static void
test_retry_next_attempt(void)
{
	char spec[128];
	struct ev e;

	if (env_setup("Retry_Interval = 1200\nMax_Retry_Interval = 43200\n", 1) < 0)
		return;
	int64_t w = atomic_load(&frozen_wall_us);
	snprintf(spec, sizeof(spec), "10 mx1.retry.test %s", REFUSING_IP);
	dns_set("retry.test", DNS_OK, spec);
	send_mail("r@retry.test");
	/* The T record comes first, then the next attempt is computed. */
	CHECK(WAIT_UNTIL(ev_count(EV_T, "retry.test", 0, 0) == 1 &&
	                 ev_count(EV_NEXT, "retry.test", 0, 0) == 1, 5000),
	      "T records / next attempts: got %zu / %zu, want 1 / 1",
	      ev_count(EV_T, "retry.test", 0, 0), ev_count(EV_NEXT, "retry.test", 0, 0));
	if (ev_find(EV_T, "retry.test", 0, 0, 0, &e)) {
		CHECK(note_starts(e.note, "451 4.4.1"), "T note: got \"%s\", want 451 4.4.1 …", e.note);
		CHECK_INT(e.retries, 0, "retries in the T record (those before this attempt)");
	}
	if (ev_find(EV_FAIL, "retry.test", CONN_ERROR_MASK, CONN_ERROR_CONNECT, 0, &e)) {
		CHECK(e.flags == (CONN_ERROR_CONNECT | CONN_ACTION_REQUEUE1),
		      "refused, no other host: flags got 0x%x, want 0x%x", e.flags,
		      CONN_ERROR_CONNECT | CONN_ACTION_REQUEUE1);
		CHECK_STR(e.addr, REFUSING_IP, "the refused address");
	} else {
		CHECK(0, "no CONN_ERROR_CONNECT report");
	}
	if (ev_find(EV_NEXT, "retry.test", 0, 0, 0, &e)) {
		CHECK(e.next_us == w + 1200 * 1000000LL, "next attempt: got now%+lld µs, want now+%lld",
		      (long long)(e.next_us - w), 1200 * 1000000LL);
	} else {
		CHECK(0, "ec_message_set_next_attempt did not fire");
	}
	CHECK_INT(ev_count(EV_P, NULL, 0, 0), 0, "P records");
	env_teardown();
}

/* Message_Expiration reached at a transient failure: P 554 5.4.7, no T. */
static void
test_expiration(void)
{
	char spec[128];
	struct ev e;

	if (env_setup("Message_Expiration = 600\n", 1) < 0)
		return;
	int64_t now_s = atomic_load(&frozen_wall_us) / 1000000;
	snprintf(spec, sizeof(spec), "10 mx1.exp.test %s", REFUSING_IP);
	dns_set("exp.test", DNS_OK, spec);
	dns_set("young.test", DNS_OK, spec);
	send_mail_at("r@exp.test", now_s - 601);
	send_mail_at("r@young.test", now_s - 599);
	CHECK(WAIT_UNTIL(ev_count(EV_P, "exp.test", 0, 0) == 1 && ev_count(EV_T, "young.test", 0, 0) == 1,
	                 5000),
	      "exp.test P / young.test T: got %zu / %zu, want 1 / 1", ev_count(EV_P, "exp.test", 0, 0),
	      ev_count(EV_T, "young.test", 0, 0));
	if (ev_find(EV_P, "exp.test", 0, 0, 0, &e))
		CHECK(note_starts(e.note, QUEUE_NOTE_EXPIRED), "P note: got \"%s\", want \"%s …\"", e.note,
		      QUEUE_NOTE_EXPIRED);
	CHECK_INT(ev_count(EV_T, "exp.test", 0, 0), 0, "T records of the expired message");
	CHECK_INT(ev_count(EV_P, "young.test", 0, 0), 0, "P records of the young message");
	env_teardown();
}

/* Max_Retries with the real clock: T after 1 s, T after 2 s (doubling), then P. */
static void
test_retry_schedule_and_max_retries(void)
{
	char spec[128];
	struct ev e;
	const char *d = "maxr.test";

	if (env_setup("Retry_Interval = 1\nMax_Retry_Interval = 60\nMax_Retries = 2\n", 0) < 0)
		return;
	snprintf(spec, sizeof(spec), "10 mx1.maxr.test %s", REFUSING_IP);
	dns_set(d, DNS_OK, spec);
	send_mail("r@maxr.test");
	CHECK(WAIT_UNTIL(ev_count(EV_P, d, 0, 0) == 1, 8000), "P records: got %zu, want 1",
	      ev_count(EV_P, d, 0, 0));
	CHECK_INT(ev_count(EV_T, d, 0, 0), 2, "T records before the limit");
	for (unsigned k = 0; ev_find(EV_T, d, 0, 0, k, &e); k++)
		CHECK(e.retries == k, "T record %u: retries got %u, want %u", k + 1, e.retries, k);
	for (unsigned k = 0; k < 2; k++) {
		int64_t want = (int64_t)(1u << k) * 1000000;
		if (!ev_find(EV_NEXT, d, 0, 0, k, &e)) {
			CHECK(0, "next attempt %u not computed", k + 1);
			continue;
		}
		CHECK_INT(e.retries, k + 1, "retries at the next-attempt hook");
		CHECK(e.next_us - e.now_us <= want && e.next_us - e.now_us > want - 200000,
		      "retry %u: next attempt in %lld µs, want %lld", k + 1,
		      (long long)(e.next_us - e.now_us), (long long)want);
	}
	if (ev_find(EV_T, d, 0, 0, 1, &e)) {
		struct ev t1;
		if (ev_find(EV_T, d, 0, 0, 0, &t1))
			CHECK(e.t_ms - t1.t_ms >= 900, "second attempt %lld ms after the first, want >= 900",
			      (long long)(e.t_ms - t1.t_ms));
	}
	if (ev_find(EV_P, d, 0, 0, 0, &e)) {
		CHECK(note_starts(e.note, QUEUE_NOTE_RETRIES), "P note: got \"%s\", want \"%s …\"", e.note,
		      QUEUE_NOTE_RETRIES);
		CHECK_INT(e.retries, 2, "retries in the P record (those before this attempt)");
	}
	env_teardown();
}

/* ------------------------------------------------ outbound_pick */

struct pick_host {
	const char *name;
	unsigned pref;
	const char *ip;
	unsigned conns;                     /* sessions open to it */
	int failed;                         /* inside Host_Failure_Retry */
};

static void
test_pick(void)
{
	static const struct {
		const char *name;
		const char *conf;
		struct pick_host hosts[3];
		const char *want[4];            /* four picks in a row; NULL = none */
		unsigned prohibited, skipped, failed, at_max, total;
	} cases[] = {
		{ "equal prefs alternate", "",
		  { { "a.mx", 10, "127.0.0.2", 0, 0 }, { "b.mx", 10, "127.0.0.3", 0, 0 },
		    { "c.mx", 20, "127.0.0.4", 0, 0 } },
		  { "a.mx|b.mx", "other", "same-as-0", "same-as-1" }, 0, 0, 0, 0, 2 },
		{ "fewest sessions first", "",
		  { { "a.mx", 10, "127.0.0.2", 1, 0 }, { "b.mx", 10, "127.0.0.3", 0, 0 },
		    { "c.mx", 20, "127.0.0.4", 0, 0 } },
		  { "b.mx", "b.mx", "b.mx", "b.mx" }, 0, 0, 0, 0, 2 },
		{ "better prefs failed: the worse one", "",
		  { { "a.mx", 10, "127.0.0.2", 0, 1 }, { "b.mx", 10, "127.0.0.3", 0, 1 },
		    { "c.mx", 20, "127.0.0.4", 0, 0 } },
		  { "c.mx", "c.mx", "c.mx", "c.mx" }, 0, 0, 2, 0, 3 },
		{ "skipped address", "Skip_Hosts = ( \"127.0.0.2/32\" )\n",
		  { { "a.mx", 10, "127.0.0.2", 0, 0 }, { "b.mx", 10, "127.0.0.3", 0, 0 },
		    { "c.mx", 20, "127.0.0.4", 0, 0 } },
		  { "b.mx", "b.mx", "b.mx", "b.mx" }, 0, 1, 0, 0, 2 },
		{ "all prohibited", "Prohibited_Hosts = ( \"127.0.0.0/8\" )\n",
		  { { "a.mx", 10, "127.0.0.2", 0, 0 }, { "b.mx", 10, "127.0.0.3", 0, 0 },
		    { "c.mx", 20, "127.0.0.4", 0, 0 } },
		  { NULL, NULL, NULL, NULL }, 3, 0, 0, 0, 3 },
		{ "host at its limit", "Host \"a.mx\" { Max_Outbound_Connections = 1 }\n",
		  { { "a.mx", 10, "127.0.0.2", 1, 0 }, { "b.mx", 10, "127.0.0.3", 1, 0 },
		    { "c.mx", 20, "127.0.0.4", 0, 0 } },
		  { "b.mx", "b.mx", "b.mx", "b.mx" }, 0, 0, 0, 1, 2 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct conf_errors errs = { STRBUF_INIT, 0 };
		struct conf *c = conf_load_string(cases[i].conf, "pick.conf", &errs);
		struct dhost hosts[3];
		struct daddr addrs[3];
		struct domain d;
		const char *got[4];

		CHECK(c != NULL, "%s: config: %s", cases[i].name, strbuf_cstr(&errs.text));
		conf_errors_free(&errs);
		if (c == NULL)
			continue;
		memset(&d, 0, sizeof(d));
		memset(hosts, 0, sizeof(hosts));
		memset(addrs, 0, sizeof(addrs));
		d.pub.domain = "pick.test";
		for (int h = 0; h < 3; h++) {
			const struct pick_host *ph = &cases[i].hosts[h];
			struct sockaddr_in *sin = (struct sockaddr_in *)&addrs[h].sa;
			sin->sin_family = AF_INET;
			sin->sin_port = htons(25);
			inet_pton(AF_INET, ph->ip, &sin->sin_addr);
			addrs[h].conns = ph->conns;
			addrs[h].failed_until_ms = ph->failed ? 1000000 : 0;
			hosts[h].name = (char *)ph->name;
			hosts[h].pref = ph->pref;
			hosts[h].addrs = &addrs[h];
			hosts[h].naddrs = 1;
			hosts[h].conns = ph->conns;
		}
		d.hosts = hosts;
		d.nhosts = 3;
		for (int k = 0; k < 4; k++) {
			struct outbound_pick p;
			outbound_pick(&d, 0, c, 1000, &p);
			got[k] = p.host != NULL ? p.host->name : NULL;
			CHECK((p.host == NULL) == (p.addr == NULL), "%s: host and address go together",
			      cases[i].name);
			if (k == 0) {
				CHECK(p.prohibited == cases[i].prohibited && p.skipped == cases[i].skipped &&
				      p.failed == cases[i].failed && p.at_max == cases[i].at_max &&
				      p.total == cases[i].total,
				      "%s: counts got prohibited %u skipped %u failed %u at_max %u total %u, "
				      "want %u %u %u %u %u", cases[i].name, p.prohibited, p.skipped, p.failed,
				      p.at_max, p.total, cases[i].prohibited, cases[i].skipped,
				      cases[i].failed, cases[i].at_max, cases[i].total);
			}
		}
		for (int k = 0; k < 4; k++) {
			const char *w = cases[i].want[k];
			if (w != NULL && strcmp(w, "a.mx|b.mx") == 0)
				CHECK(got[k] != NULL && (strcmp(got[k], "a.mx") == 0 || strcmp(got[k], "b.mx") == 0),
				      "%s: pick %d got %s, want a.mx or b.mx", cases[i].name, k,
				      got[k] ? got[k] : "none");
			else if (w != NULL && strcmp(w, "other") == 0)
				CHECK(got[k] != NULL && got[0] != NULL && strcmp(got[k], got[0]) != 0 &&
				      strcmp(got[k], "c.mx") != 0,
				      "%s: pick %d got %s, want the other of a.mx/b.mx than %s", cases[i].name, k,
				      got[k] ? got[k] : "none", got[0] ? got[0] : "none");
			else if (w != NULL && strncmp(w, "same-as-", 8) == 0)
				CHECK(got[k] != NULL && got[w[8] - '0'] != NULL &&
				      strcmp(got[k], got[w[8] - '0']) == 0,
				      "%s: pick %d got %s, want %s (round robin)", cases[i].name, k,
				      got[k] ? got[k] : "none", got[w[8] - '0'] ? got[w[8] - '0'] : "none");
			else
				CHECK((w == NULL && got[k] == NULL) ||
				      (w != NULL && got[k] != NULL && strcmp(w, got[k]) == 0),
				      "%s: pick %d got %s, want %s", cases[i].name, k, got[k] ? got[k] : "none",
				      w ? w : "none");
		}
		conf_unref(c);
	}
}

/* Many addresses at one preference: the least loaded is chosen wherever it is
 * listed (here the 70th), never a worse preference. */
static void
test_pick_many_addresses(void)
{
	enum { N = 70 };
	struct conf_errors errs = { STRBUF_INIT, 0 };
	struct conf *c = conf_load_string("", "pick.conf", &errs);
	static struct daddr addrs[N], worse;
	struct dhost hosts[2];
	struct domain d;
	struct outbound_pick p;

	conf_errors_free(&errs);
	if (c == NULL)
		return;
	memset(hosts, 0, sizeof(hosts));
	memset(addrs, 0, sizeof(addrs));
	memset(&worse, 0, sizeof(worse));
	for (int i = 0; i < N; i++) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&addrs[i].sa;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(25);
		sin->sin_addr.s_addr = htonl(0x7f000100u + (uint32_t)i + 1);
		addrs[i].conns = i == N - 1 ? 0 : 1;
	}
	{
		struct sockaddr_in *sin = (struct sockaddr_in *)&worse.sa;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(25);
		sin->sin_addr.s_addr = htonl(0x7f000201u);
	}
	hosts[0].name = (char *)"big.mx";
	hosts[0].pref = 10;
	hosts[0].addrs = addrs;
	hosts[0].naddrs = N;
	hosts[0].conns = N - 1;
	hosts[1].name = (char *)"backup.mx";
	hosts[1].pref = 20;
	hosts[1].addrs = &worse;
	hosts[1].naddrs = 1;
	memset(&d, 0, sizeof(d));
	d.pub.domain = "pick.test";
	d.hosts = hosts;
	d.nhosts = 2;
	outbound_pick(&d, 0, c, 1000, &p);
	CHECK(p.host == &hosts[0], "host: got %s, want big.mx (pref 10 has usable addresses)",
	      p.host ? p.host->name : "none");
	CHECK(p.addr == &addrs[N - 1], "address: got index %td, want %d (the one without sessions)",
	      p.addr != NULL && p.host == &hosts[0] ? p.addr - addrs : (ptrdiff_t)-1, N - 1);
	conf_unref(c);
}

TEST_MAIN("queue_sched",
          TEST(test_pick), TEST(test_pick_many_addresses),
          TEST(test_dns_pending), TEST(test_dns_permanent), TEST(test_dns_tempfail),
          TEST(test_mx_order), TEST(test_spread_equal_pref), TEST(test_max_outbound_connections),
          TEST(test_host_max_reached), TEST(test_prohibited_and_skipped),
          TEST(test_throttle_shared), TEST(test_retry_next_attempt), TEST(test_expiration),
          TEST(test_retry_schedule_and_max_retries))

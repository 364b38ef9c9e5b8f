/*
 * bounce.c - RFC 3464 reports through the spool and the queues.
 *
 *   bounce_send   copy what the report needs, build it on the I/O pool,
 *                 store it as a new batch (MAIL FROM:<>, protocol
 *                 "internal"), hand it to queue_submit, call done
 *
 * The original is included as its header section, or whole when the
 * sender asked RET=FULL and it is under 1 MiB. A report that cannot be
 * stored is a paniclog line; done runs in every case.
 */
#include "delivery/bounce.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <impetus/message.h>

#include "conf/conf.h"
#include "conf/conf_core.h"
#include "delivery/dsn.h"
#include "event/tpool.h"
#include "lib/diag.h"
#include "lib/strbuf.h"
#include "lib/xalloc.h"
#include "queue/domain.h"
#include "queue/queue.h"

#define BOUNCE_ORIG_MAX (1024 * 1024)   /* bytes of a RET=FULL original included */

struct bounce_job {
	struct qbody *body;                 /* the original, referenced */
	struct dsn_rcpt *rcpts;             /* copies */
	char **strings;                     /* owned strings of rcpts */
	size_t nrcpt, nstrings;
	char remote[INET6_ADDRSTRLEN];      /* the MTA that answered, "" = none */
	char reporting_mta[256];
	char *orig;                         /* the original (or its headers), owned */
	size_t orig_len;
	int need_read;                      /* read orig from the spool on the pool */
	struct strbuf report;               /* the built message */
	int err;
	char reason[160];
	struct loop *origin;
	void (*done)(void *arg);
	void *arg;
};

static void build_work(void *arg);
static void build_done(void *arg);
static void stored(struct spool_batch *b, int err, void *arg);

static char *
keep(struct bounce_job *j, const char *s)
{
	if (s == NULL)
		return NULL;
	j->strings = xrealloc(j->strings, (j->nstrings + 1) * sizeof(*j->strings));
	return j->strings[j->nstrings++] = xstrdup(s);
}

/* The length of the header section of msg (through the empty line). */
static size_t
header_len(const char *msg, size_t len)
{
	for (size_t i = 0; i + 3 < len; i++)
		if (msg[i] == '\r' && msg[i + 1] == '\n' && msg[i + 2] == '\r' && msg[i + 3] == '\n')
			return i + 4;
	return len;
}

void
bounce_send(struct qbody *body, const struct bounce_rcpt *rcpts, size_t n,
            const struct sockaddr *remote, struct loop *origin,
            void (*done)(void *arg), void *arg)
{
	struct bounce_job *j = xcalloc(1, sizeof(*j));
	struct conf *c = conf_current();
	const struct conf_setting *ehlo = conf_global(c, &conf_opt_ehlo_hostname);
	time_t now = time(NULL);
	char status[DSN_STATUS_MAX];

	j->body = qbody_ref(body);
	j->origin = origin;
	j->done = done;
	j->arg = arg;
	memset(&j->report, 0, sizeof(j->report));
	if (ehlo != NULL && ehlo->s != NULL && ehlo->s[0] != '\0')
		snprintf(j->reporting_mta, sizeof(j->reporting_mta), "%s", ehlo->s);
	else if (gethostname(j->reporting_mta, sizeof(j->reporting_mta)) < 0)
		snprintf(j->reporting_mta, sizeof(j->reporting_mta), "localhost");
	j->reporting_mta[sizeof(j->reporting_mta) - 1] = '\0';
	conf_unref(c);
	if (remote != NULL)
		sockaddr_render_ip(remote, j->remote, sizeof(j->remote));
	j->rcpts = xcalloc(n, sizeof(*j->rcpts));
	j->nrcpt = n;
	for (size_t i = 0; i < n; i++) {
		j->rcpts[i].rcpt = keep(j, rcpts[i].rcpt);
		j->rcpts[i].orcpt = keep(j, rcpts[i].orcpt);
		j->rcpts[i].action = "failed";
		j->rcpts[i].status = keep(j, dsn_status_from_reply(rcpts[i].reply, status,
		                                                   sizeof(status)));
		j->rcpts[i].remote_mta = j->remote[0] != '\0' ? j->remote : NULL;
		j->rcpts[i].diagnostic = keep(j, rcpts[i].reply);
		j->rcpts[i].last_attempt = now;
	}
	/* The original: from memory when resident, else read on the pool. */
	{
		struct qmsg probe = { .body = body };
		const char *data = qmsg_data_hold(&probe);
		if (data != NULL) {
			size_t len = (size_t)body->size;
			if (!(body->ret == SPOOL_RET_FULL && len <= BOUNCE_ORIG_MAX))
				len = header_len(data, len);
			j->orig = xmalloc(len + 1);
			memcpy(j->orig, data, len);
			j->orig[len] = '\0';
			j->orig_len = len;
			qmsg_data_release(&probe);
		} else {
			j->need_read = 1;
		}
	}
	tpool_submit(queue_io(), build_work, build_done, j, origin);
}

static void
build_work(void *arg)
{
	struct bounce_job *j = arg;
	struct dsn_report r;

	if (j->need_read) {
		struct strbuf sb;
		memset(&sb, 0, sizeof(sb));
		if (spool_body_read(spool_base(queue_spool()), j->body->batch_id, &sb, j->reason,
		                    sizeof(j->reason)) == 0) {
			size_t len = sb.len;
			if (!(j->body->ret == SPOOL_RET_FULL && len <= BOUNCE_ORIG_MAX))
				len = header_len(sb.data != NULL ? sb.data : "", len);
			j->orig_len = len;
			j->orig = strbuf_steal(&sb);
		}
		strbuf_free(&sb);
	}
	memset(&r, 0, sizeof(r));
	r.reporting_mta = j->reporting_mta;
	r.return_path = j->body->mail_from;
	r.envid = j->body->envid;
	r.arrival = j->body->received.tv_sec;
	r.now = time(NULL);
	r.message_id_seed = j->body->batch_id;
	r.ret_full = j->body->ret == SPOOL_RET_FULL && j->orig_len == j->body->size;
	r.orig = j->orig;
	r.orig_len = j->orig != NULL ? j->orig_len : 0;
	r.max_orig_len = BOUNCE_ORIG_MAX;
	r.rcpts = j->rcpts;
	r.nrcpt = j->nrcpt;
	if (dsn_build(&r, &j->report) < 0) {
		j->err = errno != 0 ? errno : EINVAL;
		snprintf(j->reason, sizeof(j->reason), "cannot build the report");
	}
}

static void
job_free(struct bounce_job *j)
{
	for (size_t i = 0; i < j->nstrings; i++)
		free(j->strings[i]);
	free(j->strings);
	free(j->rcpts);
	free(j->orig);
	strbuf_free(&j->report);
	qbody_unref(j->body);
	free(j);
}

static void
build_done(void *arg)
{
	struct bounce_job *j = arg;
	struct spool_batch *b;
	struct timeval now;

	if (j->err != 0) {
		diag_warn("bounce: no report for batch %s: %s", j->body->batch_id, j->reason);
		j->done(j->arg);
		job_free(j);
		return;
	}
	b = spool_batch_new(queue_spool());
	gettimeofday(&now, NULL);
	if (spool_batch_set_mail_from(b, "") < 0 ||
	    spool_batch_add_rcpt(b, j->body->mail_from, NULL, 0, "default") < 0) {
		diag_warn("bounce: no report for batch %s: bad return path", j->body->batch_id);
		spool_batch_free(b);
		j->done(j->arg);
		job_free(j);
		return;
	}
	spool_batch_set_reception(b, 0, NULL, NULL, "internal", &now);
	spool_batch_append(b, j->report.data, j->report.len);
	spool_batch_commit(b, j->origin, stored, j);
}

static void
stored(struct spool_batch *b, int err, void *arg)
{
	struct bounce_job *j = arg;

	if (err != 0) {
		diag_warn("bounce: cannot store the report for batch %s: %s", j->body->batch_id,
		          strerror(err));
		spool_batch_free(b);
	} else {
		queue_submit(b);
	}
	j->done(j->arg);
	job_free(j);
}

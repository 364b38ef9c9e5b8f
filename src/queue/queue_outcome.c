/*
 * queue_outcome.c - what happens to a recipient-message after an attempt.
 *
 *   qmsg_delivered      log D, done in the spool, freed
 *   qmsg_transient      retry count, expiry check, log T, next attempt
 *                       (Retry_Interval doubling, ec_message_set_next_attempt),
 *                       state to the spool, into the delayed heap
 *   qmsg_failed(_group) log P, a bounce (delivery/bounce.h) unless
 *                       suppressed, done in the spool once the bounce is
 *                       stored, freed
 *
 * Runs on the message's loop; each function takes the message over (it is
 * unlinked from any queue here).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <impetus/binding.h>
#include <impetus/hooks/core/ec_message_set_next_attempt.h>
#include <impetus/hooks/core/generate_bounces.h>
#include <impetus/hooks/core/get_msg_expiration_params.h>
#include <impetus/hooks/core/log_delivery_v1.h>
#include <impetus/hooks/core/log_permanent_failure_v1.h>
#include <impetus/hooks/core/log_transient_failure_v1.h>

#include "conf/conf.h"
#include "conf/conf_core.h"
#include "delivery/bounce.h"
#include "event/loop.h"
#include "lib/diag.h"
#include "lib/xalloc.h"
#include "message/message.h"
#include "queue/domain.h"
#include "queue/queue_internal.h"

static void spool_written(int err, void *arg);
static void bounce_stored(void *arg);

static void
spool_written(int err, void *arg)
{
	(void)arg;
	if (err != 0)
		diag_warn("queue: cannot record a delivery outcome in the spool: %s", strerror(err));
}

void
qmsg_spool_done(struct qmsg *m, struct loop *origin)
{
	unsigned left = atomic_fetch_sub(&m->body->pending, 1);

	spool_rcpt_done_ex(queue_spool(), m->body->batch_id, m->index,
	                   left == 1 ? SPOOL_DONE_LAST : SPOOL_DONE_NOCHECK, origin,
	                   spool_written, NULL);
}

static void
view_attempt(struct ec_message *v, const struct qmsg *m, const struct sockaddr *remote, int stage)
{
	qmsg_view(m, v);
	if (remote != NULL)
		message_set_addr(&v->remote, remote);
	v->stage = stage;
}

void
qmsg_delivered(struct qmsg *m, const struct sockaddr *remote, const char *reply)
{
	struct domain *d = m->dom;
	struct ec_message v;
	struct timeval now;

	gettimeofday(&now, NULL);
	if (has_core_log_delivery_v1_hook()) {
		view_attempt(&v, m, remote, 9);
		call_core_log_delivery_v1_hook(&v, &d->pub, &now, reply, (int)strlen(reply));
	}
	domain_unlink(d, m);
	d->delivered++;
	QC_ADD(delivered, 1);
	qmsg_spool_done(m, d->ql->loop);
	qmsg_free(m);
}

void
qmsg_transient(struct qmsg *m, const struct sockaddr *remote, int stage, const char *reply)
{
	struct domain *d = m->dom;
	struct conf *c = conf_current();
	const char *dom = d->pub.domain;
	time_t expiration = (time_t)conf_resolve(c, &conf_opt_message_expiration, m->slot, dom)->i;
	time_t retry = (time_t)conf_resolve(c, &conf_opt_retry_interval, m->slot, dom)->i;
	int64_t max_retry = conf_resolve(c, &conf_opt_max_retry_interval, m->slot, dom)->i;
	int max_retries = queue_max_retries_parse(conf_resolve(c, &conf_opt_max_retries, m->slot,
	                                                       dom)->s);
	struct ec_message v;
	struct timeval now;
	const char *why;
	int64_t wall = queue_wall_us();

	conf_unref(c);
	gettimeofday(&now, NULL);
	domain_unlink(d, m);
	/* Records show the retries before this attempt; the count goes up after. */
	view_attempt(&v, m, remote, stage);
	if (has_core_get_msg_expiration_params_hook())
		call_core_get_msg_expiration_params_hook(&v, &expiration, &retry, &max_retries);
	if (queue_expired((wall / 1000000) - m->body->received.tv_sec, (int64_t)expiration,
	                  (unsigned)m->retries + 1, max_retries, &why)) {
		char note[600];
		snprintf(note, sizeof(note), "%s (last reply: %s)", why, reply);
		qmsg_failed(m, remote, stage, note);
		return;
	}
	if (has_core_log_transient_failure_v1_hook())
		call_core_log_transient_failure_v1_hook(&v, &d->pub, &now, reply, (int)strlen(reply));
	if (m->retries < UINT16_MAX)
		m->retries++;
	v.num_retries = m->retries;
	m->next_us = wall + queue_retry_delay_s(m->retries, (int64_t)retry, max_retry) * 1000000;
	if (has_core_ec_message_set_next_attempt_hook()) {
		int rv = 0;
		v.next_attempt.tv_sec = (time_t)(m->next_us / 1000000);
		v.next_attempt.tv_usec = (suseconds_t)(m->next_us % 1000000);
		if (call_core_ec_message_set_next_attempt_hook(&v, &now, &rv) != 0)
			m->next_us = (int64_t)v.next_attempt.tv_sec * 1000000 + v.next_attempt.tv_usec;
	}
	{
		struct spool_rcpt_state st = {
			.binding = config_get_binding_name_from_id(m->slot),
			.retries = m->retries,
			.next_attempt = { (time_t)(m->next_us / 1000000),
			                  (suseconds_t)(m->next_us % 1000000) },
		};
		spool_rcpt_update(queue_spool(), m->body->batch_id, m->index, &st, d->ql->loop,
		                  spool_written, NULL);
	}
	d->transient++;
	QC_ADD(transient, 1);
	domain_delay(d, m);
}

void
qmsg_failed(struct qmsg *m, const struct sockaddr *remote, int stage, const char *reply)
{
	qmsg_failed_group(&m, &reply, 1, remote, stage);
}

struct bounce_wait {                    /* originals waiting for their bounce to be stored */
	struct qloop *ql;
	struct qmsg **msgs;
	size_t n;
};

static void
bounce_stored(void *arg)
{
	struct bounce_wait *w = arg;

	for (size_t i = 0; i < w->n; i++) {
		struct qmsg *m = w->msgs[i];
		if (!w->ql->stopping)
			qmsg_spool_done(m, w->ql->loop);
		qmsg_free(m);
	}
	free(w->msgs);
	free(w);
}

/* Whether m's failure gets a bounce: a sender, Generate_Bounces, the hook, DSN NOTIFY. */
static int
wants_bounce(const struct conf *c, struct qmsg *m, struct ec_message *v)
{
	int enabled;

	if (m->body->mail_from[0] == '\0')
		return 0;
	if ((m->notify & SPOOL_NOTIFY_NEVER) ||
	    (m->notify != 0 && !(m->notify & SPOOL_NOTIFY_FAILURE)))
		return 0;
	enabled = (int)conf_resolve(c, &conf_opt_generate_bounces, m->slot, m->dom->pub.domain)->i;
	if (has_core_generate_bounces_hook()) {
		int e = enabled;
		if (call_core_generate_bounces_hook(v, &e) == GENERATE_BOUNCES_HOOK_OK)
			enabled = e;
	}
	return enabled;
}

void
qmsg_failed_group(struct qmsg **ms, const char *const *replies, size_t n,
                  const struct sockaddr *remote, int stage)
{
	struct conf *c = conf_current();
	struct bounce_rcpt *br = xcalloc(n, sizeof(*br));
	struct bounce_wait *w = xcalloc(1, sizeof(*w));
	struct timeval now;
	size_t nb = 0;

	gettimeofday(&now, NULL);
	w->msgs = xcalloc(n, sizeof(*w->msgs));
	for (size_t i = 0; i < n; i++) {
		struct qmsg *m = ms[i];
		struct domain *d = m->dom;
		struct ec_message v;

		domain_unlink(d, m);
		w->ql = d->ql;
		view_attempt(&v, m, remote, stage);
		if (has_core_log_permanent_failure_v1_hook())
			call_core_log_permanent_failure_v1_hook(&v, &d->pub, &now, replies[i],
			                                        (int)strlen(replies[i]));
		d->failed++;
		QC_ADD(failed, 1);
		if (wants_bounce(c, m, &v)) {
			br[nb].rcpt = m->rcpt;
			br[nb].orcpt = m->orcpt;
			br[nb].reply = replies[i];
			nb++;
		}
		w->msgs[w->n++] = m;
	}
	conf_unref(c);
	if (nb > 0) {
		QC_ADD(bounces, 1);
		bounce_send(ms[0]->body, br, nb, remote, ms[0]->dom->ql->loop, bounce_stored, w);
	} else {
		bounce_stored(w);
	}
	free(br);
}

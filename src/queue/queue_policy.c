/*
 * queue_policy.c - the scheduler's arithmetic, kept pure for unit tests.
 *
 *   queue_retry_delay_s       Retry_Interval doubling up to Max_Retry_Interval
 *   queue_max_retries_parse   Max_Retries text to a number (-1: no limit)
 *   queue_expired             Message_Expiration and Max_Retries
 *   queue_conn_goal           sessions wanted for a queue size
 *
 * No state, no allocation, any thread.
 */
#include "queue/domain.h"

#include <stdlib.h>
#include <strings.h>

/* Messages one session is expected to carry before another is worth opening. */
#define QUEUE_MSGS_PER_CONN 16

int64_t
queue_retry_delay_s(unsigned n, int64_t retry_interval_s, int64_t max_retry_interval_s)
{
	int64_t d = retry_interval_s > 0 ? retry_interval_s : 1;

	if (n == 0)
		n = 1;
	for (unsigned i = 1; i < n; i++) {
		if (d >= max_retry_interval_s)
			break;
		d *= 2;
	}
	if (max_retry_interval_s > 0 && d > max_retry_interval_s)
		d = max_retry_interval_s;
	return d;
}

int
queue_max_retries_parse(const char *text)
{
	if (text == NULL || strcasecmp(text, "auto") == 0 || strcasecmp(text, "none") == 0)
		return -1;
	return atoi(text);
}

int
queue_expired(int64_t age_s, int64_t expiration_s, unsigned retries, int max_retries,
              const char **why)
{
	if (expiration_s > 0 && age_s >= expiration_s) {
		*why = QUEUE_NOTE_EXPIRED;
		return 1;
	}
	if (max_retries >= 0 && retries > (unsigned)max_retries) {
		*why = QUEUE_NOTE_RETRIES;
		return 1;
	}
	return 0;
}

unsigned
queue_conn_goal(size_t nactive, int max_conns)
{
	size_t goal;

	if (nactive == 0)
		return 0;
	goal = (nactive + QUEUE_MSGS_PER_CONN - 1) / QUEUE_MSGS_PER_CONN;
	if (max_conns >= 0 && goal > (size_t)max_conns)
		goal = (size_t)max_conns;
	return (unsigned)goal;
}

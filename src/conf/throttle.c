/*
 * throttle.c - token buckets for Outbound_Throttle_* options.
 *
 * throttle_new / throttle_free create and destroy a bucket; throttle_take
 * and throttle_available refill it lazily from the elapsed time and act on
 * it under its mutex. Tokens are counted in millionths so that slow rates
 * ("1/3600") lose nothing to rounding.
 */
#include "conf/throttle.h"

#include <pthread.h>
#include <stdlib.h>

#include "lib/xalloc.h"

#define THROTTLE_UNIT 1000000ULL    /* micro-tokens per token */

struct throttle {
	pthread_mutex_t lock;
	uint64_t capacity;      /* micro-tokens when full (count * UNIT) */
	uint64_t credit;        /* micro-tokens available */
	uint64_t period_us;     /* µs to refill the whole bucket */
	uint64_t last_us;       /* time of the last refill, µs; 0 before the first take */
};

static void throttle_refill(struct throttle *t, uint64_t now_us);

struct throttle *
throttle_new(int64_t count, int64_t period_s)
{
	struct throttle *t = xcalloc(1, sizeof(*t));

	pthread_mutex_init(&t->lock, NULL);
	t->capacity = (uint64_t)(count > 0 ? count : 1) * THROTTLE_UNIT;
	t->credit = t->capacity;
	t->period_us = (uint64_t)(period_s > 0 ? period_s : 1) * 1000000ULL;
	return t;
}

void
throttle_free(struct throttle *t)
{
	if (t == NULL)
		return;
	pthread_mutex_destroy(&t->lock);
	free(t);
}

/* Add the credit earned since last_us: capacity per period_us. */
static void
throttle_refill(struct throttle *t, uint64_t now_us)
{
	if (t->last_us == 0 || now_us < t->last_us) {
		t->last_us = now_us;
		return;
	}
	uint64_t elapsed = now_us - t->last_us;
	if (elapsed >= t->period_us) {
		t->credit = t->capacity;
	} else {
		/* capacity * elapsed / period without overflow for sane values */
		unsigned __int128 earned = (unsigned __int128)t->capacity * elapsed / t->period_us;
		t->credit += (uint64_t)earned;
		if (t->credit > t->capacity)
			t->credit = t->capacity;
	}
	t->last_us = now_us;
}

int
throttle_take(struct throttle *t, uint64_t now_us, uint64_t *wait_us)
{
	int taken;

	pthread_mutex_lock(&t->lock);
	throttle_refill(t, now_us);
	if (t->credit >= THROTTLE_UNIT) {
		t->credit -= THROTTLE_UNIT;
		taken = 1;
	} else {
		uint64_t missing = THROTTLE_UNIT - t->credit;
		if (wait_us != NULL) {
			/* ceil(missing * period / capacity) */
			unsigned __int128 w = (unsigned __int128)missing * t->period_us + t->capacity - 1;
			*wait_us = (uint64_t)(w / t->capacity);
		}
		taken = 0;
	}
	pthread_mutex_unlock(&t->lock);
	return taken;
}

int64_t
throttle_available(struct throttle *t, uint64_t now_us)
{
	int64_t n;

	pthread_mutex_lock(&t->lock);
	throttle_refill(t, now_us);
	n = (int64_t)(t->credit / THROTTLE_UNIT);
	pthread_mutex_unlock(&t->lock);
	return n;
}

/*
 * throttle.h - token buckets for Outbound_Throttle_* options.
 *
 * A throttle of "N/S" allows N events per S seconds: a bucket of N tokens,
 * full at the start, refilled continuously at N/S tokens per second. One
 * bucket exists per declaration in the configuration, so every binding and
 * domain that falls back to the same declaration shares it (conf.h). Takes
 * are thread-safe: domains on different loops may share a bucket.
 */
#ifndef IMPETUS_CONF_THROTTLE_H
#define IMPETUS_CONF_THROTTLE_H

#include <stdint.h>

struct throttle;

/* throttle_new: count > 0 events per period_s > 0 seconds. */
struct throttle *throttle_new(int64_t count, int64_t period_s);
void throttle_free(struct throttle *t);
/* throttle_take: take one token at now_us (a monotonic clock in µs).
 * Returns 1 when taken; 0 when empty, with *wait_us set to the time until
 * the next token, so a caller can sleep exactly that long. */
int throttle_take(struct throttle *t, uint64_t now_us, uint64_t *wait_us);
/* throttle_available: whole tokens available at now_us (no take). */
int64_t throttle_available(struct throttle *t, uint64_t now_us);

#endif

/*
 * impetus/hooks/core/ec_message_set_next_attempt.h - the core hook ec_message_set_next_attempt.
 *
 * Provider:
 *   int core_ec_message_set_next_attempt
 *       (void *closure, ec_message *msg, struct timeval *now, int *rv)
 *
 * Fires:
 *   after a transient failure, when the message's next attempt is computed
 *   (default: Retry_Interval doubled per retry, capped by
 *   Max_Retry_Interval).
 *
 * Thread:
 *   the scheduler thread that owns the message's domain.
 *
 * Chain:
 *   the first provider returning 1 wins: it has set the time with
 *   ec_message_set_next_attempt_time() and *rv to 1 (success) or 0
 *   (failure); 0 from all gives the default schedule.
 *
 * Arguments:
 *   msg: the message, writable through ec_message_set_next_attempt_time
 *   only; now: the current time; rv: out parameter. Owned by the caller,
 *   valid during the call only.
 */
#ifndef IMPETUS_HOOKS_CORE_EC_MESSAGE_SET_NEXT_ATTEMPT_H
#define IMPETUS_HOOKS_CORE_EC_MESSAGE_SET_NEXT_ATTEMPT_H

#include <impetus/hook.h>
#include <impetus/types.h>
#include <sys/time.h>
#include <sys/time.h>
#include <impetus/message.h>

#ifdef __cplusplus
extern "C" {
#endif

IMP_DECLARE_HOOK(core, int, ec_message_set_next_attempt,
	(void *closure, ec_message *msg, struct timeval *now, int *rv),
	(ec_message *msg, struct timeval *now, int *rv),
	(IMP_HOOK_CLOSURE, msg, now, rv),
	if (IMP_HOOK_RETVAL != 0) IMP_HOOK_RETURN(IMP_HOOK_RETVAL))

#ifdef __cplusplus
}
#endif

#endif

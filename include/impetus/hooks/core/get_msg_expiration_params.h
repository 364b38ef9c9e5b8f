/*
 * impetus/hooks/core/get_msg_expiration_params.h - the core hook get_msg_expiration_params.
 *
 * Provider:
 *   int core_get_msg_expiration_params
 *       (void *closure, ec_message *msg, time_t *message_expiration, time_t *retry_interval, int *max_retries)
 *
 * Fires:
 *   whenever the core needs a message's expiry and retry parameters (after a
 *   failure, when it is queued).
 *
 * Thread:
 *   any thread. Providers must be thread-safe.
 *
 * Chain:
 *   the out parameters arrive holding the configured values
 *   (Message_Expiration, Retry_Interval, Max_Retries); a provider may change
 *   them. The first provider returning non-zero stops the chain.
 *
 * Arguments:
 *   msg: the message (Momentum passes an abstract_message; impetus has one
 *   message type); the out parameters: seconds, seconds, a count (-1 =
 *   derived from the expiry). Owned by the caller, valid during the call
 *   only.
 */
#ifndef IMPETUS_HOOKS_CORE_GET_MSG_EXPIRATION_PARAMS_H
#define IMPETUS_HOOKS_CORE_GET_MSG_EXPIRATION_PARAMS_H

#include <impetus/hook.h>
#include <impetus/types.h>
#include <sys/time.h>
#include <time.h>
#include <impetus/message.h>

#ifdef __cplusplus
extern "C" {
#endif

IMP_DECLARE_HOOK(core, int, get_msg_expiration_params,
	(void *closure, ec_message *msg, time_t *message_expiration, time_t *retry_interval, int *max_retries),
	(ec_message *msg, time_t *message_expiration, time_t *retry_interval, int *max_retries),
	(IMP_HOOK_CLOSURE, msg, message_expiration, retry_interval, max_retries),
	if (IMP_HOOK_RETVAL != 0) IMP_HOOK_RETURN(IMP_HOOK_RETVAL))

#ifdef __cplusplus
}
#endif

#endif

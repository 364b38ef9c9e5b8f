/*
 * impetus/hooks/core/log_transient_failure_v1.h - the core hook log_transient_failure_v1.
 *
 * Provider:
 *   void core_log_transient_failure_v1
 *       (void *closure, ec_message *msg, domain_record *dr, struct timeval *now, const char *note, int note_len)
 *
 * Fires:
 *   when a delivery attempt failed transiently (4xx, a broken session, a
 *   timeout) and the message goes back to the delayed queue (mainlog T
 *   record).
 *
 * Thread:
 *   any thread (the delivering loop). Providers must be thread-safe.
 *
 * Chain:
 *   void: every provider runs, in registration order.
 *
 * Arguments:
 *   msg: the message (ec_message_stage gives the connection stage,
 *   ec_message_num_retries the retries so far); dr: its domain record; now:
 *   may be NULL; note: the reply or the internal reason, note_len bytes.
 *   Owned by the caller, valid during the call only.
 */
#ifndef IMPETUS_HOOKS_CORE_LOG_TRANSIENT_FAILURE_V1_H
#define IMPETUS_HOOKS_CORE_LOG_TRANSIENT_FAILURE_V1_H

#include <impetus/hook.h>
#include <impetus/types.h>
#include <sys/time.h>
#include <impetus/message.h>

#ifdef __cplusplus
extern "C" {
#endif

IMP_DECLARE_VOID_HOOK(core, log_transient_failure_v1,
	(void *closure, ec_message *msg, domain_record *dr, struct timeval *now, const char *note, int note_len),
	(ec_message *msg, domain_record *dr, struct timeval *now, const char *note, int note_len),
	(IMP_HOOK_CLOSURE, msg, dr, now, note, note_len))

#ifdef __cplusplus
}
#endif

#endif

/*
 * impetus/hooks/core/log_permanent_failure_v1.h - the core hook log_permanent_failure_v1.
 *
 * Provider:
 *   void core_log_permanent_failure_v1
 *       (void *closure, ec_message *msg, domain_record *dr, struct timeval *now, const char *note, int note_len)
 *
 * Fires:
 *   when a message fails for good: a 5xx reply, expiry, too many retries, a
 *   purge or a console fail (mainlog P record, bouncelog B record); a bounce
 *   follows unless the return path is null.
 *
 * Thread:
 *   any thread (the delivering loop). Providers must be thread-safe.
 *
 * Chain:
 *   void: every provider runs, in registration order.
 *
 * Arguments:
 *   msg: the message; dr: its domain record (may be NULL for a message
 *   failed before routing); now: may be NULL; note: the reply or the
 *   internal reason, note_len bytes. Owned by the caller, valid during the
 *   call only.
 */
#ifndef IMPETUS_HOOKS_CORE_LOG_PERMANENT_FAILURE_V1_H
#define IMPETUS_HOOKS_CORE_LOG_PERMANENT_FAILURE_V1_H

#include <impetus/hook.h>
#include <impetus/types.h>
#include <sys/time.h>
#include <impetus/message.h>

#ifdef __cplusplus
extern "C" {
#endif

IMP_DECLARE_VOID_HOOK(core, log_permanent_failure_v1,
	(void *closure, ec_message *msg, domain_record *dr, struct timeval *now, const char *note, int note_len),
	(ec_message *msg, domain_record *dr, struct timeval *now, const char *note, int note_len),
	(IMP_HOOK_CLOSURE, msg, dr, now, note, note_len))

#ifdef __cplusplus
}
#endif

#endif

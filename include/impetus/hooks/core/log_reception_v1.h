/*
 * impetus/hooks/core/log_reception_v1.h - the core hook log_reception_v1.
 *
 * Provider:
 *   void core_log_reception_v1
 *       (void *closure, accept_construct *ac, ec_message *msg, struct timeval *now, const char *note, int note_len)
 *
 * Fires:
 *   once per recipient-message, after the message is on stable storage and
 *   before the 250 reply is sent (mainlog R record).
 *
 * Thread:
 *   any thread (the listener's loop). Providers must be thread-safe.
 *
 * Chain:
 *   void: every provider runs, in registration order.
 *
 * Arguments:
 *   ac: the inbound connection, NULL for local injection; msg: the message;
 *   now: the time of the event (may be NULL); note: protocol details, not
 *   NUL-terminated (note_len bytes), may be NULL. All owned by the caller,
 *   valid during the call only.
 */
#ifndef IMPETUS_HOOKS_CORE_LOG_RECEPTION_V1_H
#define IMPETUS_HOOKS_CORE_LOG_RECEPTION_V1_H

#include <impetus/hook.h>
#include <impetus/types.h>
#include <sys/time.h>
#include <impetus/message.h>

#ifdef __cplusplus
extern "C" {
#endif

IMP_DECLARE_VOID_HOOK(core, log_reception_v1,
	(void *closure, accept_construct *ac, ec_message *msg, struct timeval *now, const char *note, int note_len),
	(accept_construct *ac, ec_message *msg, struct timeval *now, const char *note, int note_len),
	(IMP_HOOK_CLOSURE, ac, msg, now, note, note_len))

#ifdef __cplusplus
}
#endif

#endif

/*
 * impetus/hooks/core/log_delivery_v1.h - the core hook log_delivery_v1.
 *
 * Provider:
 *   void core_log_delivery_v1
 *       (void *closure, ec_message *msg, domain_record *dr, struct timeval *now, const char *note, int note_len)
 *
 * Fires:
 *   when the remote MX accepted the message with a 2xx reply (mainlog D
 *   record); the message is then removed from the spool.
 *
 * Thread:
 *   any thread (the delivering loop). Providers must be thread-safe.
 *
 * Chain:
 *   void: every provider runs, in registration order.
 *
 * Arguments:
 *   msg: the delivered message (ec_message_remote_addr gives the peer); dr:
 *   its domain record; now: may be NULL; note: the remote reply, note_len
 *   bytes, not NUL-terminated. Owned by the caller, valid during the call
 *   only.
 */
#ifndef IMPETUS_HOOKS_CORE_LOG_DELIVERY_V1_H
#define IMPETUS_HOOKS_CORE_LOG_DELIVERY_V1_H

#include <impetus/hook.h>
#include <impetus/types.h>
#include <sys/time.h>
#include <impetus/message.h>

#ifdef __cplusplus
extern "C" {
#endif

IMP_DECLARE_VOID_HOOK(core, log_delivery_v1,
	(void *closure, ec_message *msg, domain_record *dr, struct timeval *now, const char *note, int note_len),
	(ec_message *msg, domain_record *dr, struct timeval *now, const char *note, int note_len),
	(IMP_HOOK_CLOSURE, msg, dr, now, note, note_len))

#ifdef __cplusplus
}
#endif

#endif

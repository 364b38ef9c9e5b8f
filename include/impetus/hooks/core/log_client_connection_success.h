/*
 * impetus/hooks/core/log_client_connection_success.h - the core hook log_client_connection_success.
 *
 * Provider:
 *   void core_log_client_connection_success
 *       (void *closure, struct sockaddr *addr, domain_record *dr, int binding_slot, struct timeval *now)
 *
 * Fires:
 *   for every outbound connection that is established (TCP connected, before
 *   the banner).
 *
 * Thread:
 *   any thread. Providers must be thread-safe.
 *
 * Chain:
 *   void: every provider runs, in registration order.
 *
 * Arguments:
 *   addr: the peer; dr: the destination domain record; binding_slot: the
 *   outbound binding; now: may be NULL. Owned by the caller, valid during
 *   the call only.
 */
#ifndef IMPETUS_HOOKS_CORE_LOG_CLIENT_CONNECTION_SUCCESS_H
#define IMPETUS_HOOKS_CORE_LOG_CLIENT_CONNECTION_SUCCESS_H

#include <impetus/hook.h>
#include <impetus/types.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <impetus/binding.h>

#ifdef __cplusplus
extern "C" {
#endif

IMP_DECLARE_VOID_HOOK(core, log_client_connection_success,
	(void *closure, struct sockaddr *addr, domain_record *dr, int binding_slot, struct timeval *now),
	(struct sockaddr *addr, domain_record *dr, int binding_slot, struct timeval *now),
	(IMP_HOOK_CLOSURE, addr, dr, binding_slot, now))

#ifdef __cplusplus
}
#endif

#endif

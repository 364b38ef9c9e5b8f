/*
 * impetus/hooks/core/log_client_connection_failure.h - the core hook log_client_connection_failure.
 *
 * Provider:
 *   void core_log_client_connection_failure
 *       (void *closure, struct sockaddr *addr, int err, domain_record *dr, int binding_slot, struct timeval *now)
 *
 * Fires:
 *   for every outbound connection attempt that fails: before a socket exists
 *   (DNS not ready or failed, null MX, every host prohibited, saturated or
 *   recently failed) and after (socket, non-blocking setup, bind to the
 *   binding's address, connect refused, network unreachable,
 *   Connect_Timeout).
 *
 * Thread:
 *   any thread. Providers must be thread-safe.
 *
 * Chain:
 *   void: every provider runs, in registration order.
 *
 * Arguments:
 *   addr: the peer tried, NULL when no address was chosen; err: exactly one
 *   CONN_ERROR_* cause plus the CONN_ACTION_* flags of what the scheduler
 *   does (impetus/conn_errors.h); dr: the destination domain record;
 *   binding_slot: the outbound binding (impetus/binding.h); now: the time of
 *   the event, may be NULL. Owned by the caller, valid during the call only.
 */
#ifndef IMPETUS_HOOKS_CORE_LOG_CLIENT_CONNECTION_FAILURE_H
#define IMPETUS_HOOKS_CORE_LOG_CLIENT_CONNECTION_FAILURE_H

#include <impetus/hook.h>
#include <impetus/types.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <impetus/conn_errors.h>
#include <impetus/binding.h>

#ifdef __cplusplus
extern "C" {
#endif

IMP_DECLARE_VOID_HOOK(core, log_client_connection_failure,
	(void *closure, struct sockaddr *addr, int err, domain_record *dr, int binding_slot, struct timeval *now),
	(struct sockaddr *addr, int err, domain_record *dr, int binding_slot, struct timeval *now),
	(IMP_HOOK_CLOSURE, addr, err, dr, binding_slot, now))

#ifdef __cplusplus
}
#endif

#endif

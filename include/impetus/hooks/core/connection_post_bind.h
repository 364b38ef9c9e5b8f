/*
 * impetus/hooks/core/connection_post_bind.h - the core hook connection_post_bind.
 *
 * Provider:
 *   int core_connection_post_bind
 *       (void *closure, domain_record *dr, int binding_slot, int fd, struct sockaddr *addr, int addr_len)
 *
 * Fires:
 *   after the outbound socket was bound to the binding's Bind_Address and
 *   before connect(): a provider may set socket options, or abort.
 *
 * Thread:
 *   the scheduler thread that owns dr.
 *
 * Chain:
 *   the first provider returning non-zero aborts the attempt (logged as
 *   CONN_ERROR_BIND with CONN_ACTION_REQUEUE1); 0 from all continues.
 *
 * Arguments:
 *   dr: the destination domain record; binding_slot: the binding; fd: the
 *   socket, still the core's (do not close it); addr, addr_len: the peer
 *   about to be connected. Valid during the call only.
 */
#ifndef IMPETUS_HOOKS_CORE_CONNECTION_POST_BIND_H
#define IMPETUS_HOOKS_CORE_CONNECTION_POST_BIND_H

#include <impetus/hook.h>
#include <impetus/types.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <impetus/binding.h>

#ifdef __cplusplus
extern "C" {
#endif

IMP_DECLARE_HOOK(core, int, connection_post_bind,
	(void *closure, domain_record *dr, int binding_slot, int fd, struct sockaddr *addr, int addr_len),
	(domain_record *dr, int binding_slot, int fd, struct sockaddr *addr, int addr_len),
	(IMP_HOOK_CLOSURE, dr, binding_slot, fd, addr, addr_len),
	if (IMP_HOOK_RETVAL != 0) IMP_HOOK_RETURN(IMP_HOOK_RETVAL))

#ifdef __cplusplus
}
#endif

#endif

/*
 * impetus/hooks/core/veto_host_connection.h - the core hook veto_host_connection.
 *
 * Provider:
 *   int core_veto_host_connection
 *       (void *closure, host_record *host, domain_record *dr, int binding_slot, int max_conns, int cur_conns)
 *
 * Fires:
 *   while choosing the host for a new outbound connection, for each
 *   candidate host within its limits.
 *
 * Thread:
 *   the scheduler thread that owns dr.
 *
 * Chain:
 *   the first provider returning non-zero vetoes the host (no new connection
 *   to it now); 0 from all lets the connection go ahead.
 *
 * Arguments:
 *   host: the candidate MX host; dr: the destination domain record;
 *   binding_slot: the binding; max_conns, cur_conns: the host's connection
 *   limit (-1 = none) and current count for this binding. Owned by the
 *   caller, valid during the call only.
 */
#ifndef IMPETUS_HOOKS_CORE_VETO_HOST_CONNECTION_H
#define IMPETUS_HOOKS_CORE_VETO_HOST_CONNECTION_H

#include <impetus/hook.h>
#include <impetus/types.h>
#include <sys/time.h>
#include <impetus/binding.h>

#ifdef __cplusplus
extern "C" {
#endif

IMP_DECLARE_HOOK(core, int, veto_host_connection,
	(void *closure, host_record *host, domain_record *dr, int binding_slot, int max_conns, int cur_conns),
	(host_record *host, domain_record *dr, int binding_slot, int max_conns, int cur_conns),
	(IMP_HOOK_CLOSURE, host, dr, binding_slot, max_conns, cur_conns),
	if (IMP_HOOK_RETVAL != 0) IMP_HOOK_RETURN(IMP_HOOK_RETVAL))

#ifdef __cplusplus
}
#endif

#endif

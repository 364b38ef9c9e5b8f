/*
 * impetus/hooks/core/generate_bounces.h - the core hook generate_bounces.
 *
 * Provider:
 *   int core_generate_bounces
 *       (void *closure, ec_message *mess, int *enabled)
 *
 * Fires:
 *   after a permanent failure, before the core builds an RFC 3464 bounce for
 *   the message.
 *
 * Thread:
 *   the scheduler thread that owns the message's domain.
 *
 * Chain:
 *   *enabled arrives as the configured choice (1: bounce); a provider may
 *   set it to 0 (no bounce) or 1. Returning GENERATE_BOUNCES_HOOK_OK stops
 *   the chain with *enabled as final; GENERATE_BOUNCES_HOOK_CONT passes to
 *   the next provider.
 *
 * Arguments:
 *   mess: the failed message; enabled: in/out. Owned by the caller, valid
 *   during the call only. Bounces are never generated for a null return
 *   path, whatever *enabled says.
 */
#ifndef IMPETUS_HOOKS_CORE_GENERATE_BOUNCES_H
#define IMPETUS_HOOKS_CORE_GENERATE_BOUNCES_H

#include <impetus/hook.h>
#include <impetus/types.h>
#include <sys/time.h>
#include <impetus/message.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GENERATE_BOUNCES_HOOK_CONT 0   /* let the next provider decide */
#define GENERATE_BOUNCES_HOOK_OK 1     /* decided: *enabled is final */

IMP_DECLARE_HOOK(core, int, generate_bounces,
	(void *closure, ec_message *mess, int *enabled),
	(ec_message *mess, int *enabled),
	(IMP_HOOK_CLOSURE, mess, enabled),
	if (IMP_HOOK_RETVAL != GENERATE_BOUNCES_HOOK_CONT) IMP_HOOK_RETURN(IMP_HOOK_RETVAL))

#ifdef __cplusplus
}
#endif

#endif

/*
 * impetus/hooks/core/smtp_error_classify.h - the core hook smtp_error_classify.
 *
 * Provider:
 *   int core_smtp_error_classify
 *       (void *closure, const char *response, const char *domain)
 *
 * Fires:
 *   when a failure is logged to the bouncelog: classifies the remote reply
 *   into Momentum's bounce classification codes (10 invalid recipient, 21
 *   DNS failure, 22 mailbox full, 50 mail block, 51 spam block, …).
 *
 * Thread:
 *   any thread. Providers must be thread-safe.
 *
 * Chain:
 *   the first provider returning a non-zero code wins; 0 from all (or none
 *   registered) leaves the built-in classifier to decide.
 *
 * Arguments:
 *   response: the remote reply or internal reason, NUL-terminated; domain:
 *   the recipient domain. Owned by the caller, valid during the call only.
 */
#ifndef IMPETUS_HOOKS_CORE_SMTP_ERROR_CLASSIFY_H
#define IMPETUS_HOOKS_CORE_SMTP_ERROR_CLASSIFY_H

#include <impetus/hook.h>
#include <impetus/types.h>
#include <sys/time.h>

#ifdef __cplusplus
extern "C" {
#endif

IMP_DECLARE_HOOK(core, int, smtp_error_classify,
	(void *closure, const char *response, const char *domain),
	(const char *response, const char *domain),
	(IMP_HOOK_CLOSURE, response, domain),
	if (IMP_HOOK_RETVAL != 0) IMP_HOOK_RETURN(IMP_HOOK_RETVAL))

#ifdef __cplusplus
}
#endif

#endif

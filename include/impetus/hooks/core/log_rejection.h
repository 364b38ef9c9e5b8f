/*
 * impetus/hooks/core/log_rejection.h - the core hook log_rejection.
 *
 * Provider:
 *   void core_log_rejection
 *       (void *closure, struct timeval *now, accept_construct *ac,
 *        validate_context *ctx, int phase, const char *fmt, va_list ap)
 *
 * Fires:
 *   when an inbound session or command is refused: a policy verdict, a
 *   relaying denial, a limit (sessions, size, recipients), a protocol
 *   violation (rejectlog record).
 *
 * Thread:
 *   any thread (the listener's loop). Providers must be thread-safe.
 *
 * Chain:
 *   void: every provider runs, in registration order. Each provider gets its
 *   own copy of the argument list (the generated call va_copy's it), so a
 *   provider may consume ap freely with vsnprintf or va_arg.
 *
 * Arguments:
 *   now: the time of the event, may be NULL; ac: the inbound connection;
 *   ctx: the session's policy context, may be NULL; phase: the
 *   VALIDATE_PHASE_* where it happened; fmt, ap: the reply text and its
 *   arguments (printf style). Owned by the caller, valid during the call.
 */
#ifndef IMPETUS_HOOKS_CORE_LOG_REJECTION_H
#define IMPETUS_HOOKS_CORE_LOG_REJECTION_H

#include <impetus/hook.h>
#include <impetus/types.h>
#include <stdarg.h>
#include <sys/time.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Where an inbound refusal happened (the rejectlog's P= field). */
enum validate_phase {
	VALIDATE_PHASE_CONNECT = 0,
	VALIDATE_PHASE_EHLO,
	VALIDATE_PHASE_MAILFROM,
	VALIDATE_PHASE_RCPTTO,
	VALIDATE_PHASE_DATA,
	VALIDATE_PHASE_DATA_SPOOL,
	VALIDATE_PHASE_DATA_SPOOL_EACH_RCPT,
	VALIDATE_PHASE_SET_BINDING,
	VALIDATE_PHASE_FINAL,
	VALIDATE_PHASE_AUTH,
};

/* validate_phase_name: "connect", "ehlo", "mailfrom", …; "unknown" otherwise. */
const char *validate_phase_name(int phase);

IMP_DECLARE_HOOK_COMMON_(core, void, log_rejection,
	(void *closure, struct timeval *now, accept_construct *ac, validate_context *ctx,
	 int phase, const char *fmt, va_list ap))

static inline void
call_core_log_rejection_hook(struct timeval *now, accept_construct *ac, validate_context *ctx,
                             int phase, const char *fmt, va_list ap)
{
	struct imp_hook_set *s;

	imp_hook_enter();
	s = atomic_load_explicit(&IMP_HOOK_HEAD(core, log_rejection).live, memory_order_acquire);
	for (size_t i = 0; s != NULL && i < s->n; i++) {
		va_list copy;
		va_copy(copy, ap);
		((imp_hook_core_log_rejection_func_t *)s->e[i].fn)(s->e[i].closure, now, ac, ctx,
		                                                     phase, fmt, copy);
		va_end(copy);
	}
	imp_hook_leave();
}

#ifdef __cplusplus
}
#endif

#endif

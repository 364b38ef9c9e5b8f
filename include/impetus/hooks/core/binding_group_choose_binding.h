/*
 * impetus/hooks/core/binding_group_choose_binding.h - the core hook binding_group_choose_binding.
 *
 * Provider:
 *   int core_binding_group_choose_binding
 *       (void *closure, ec_message *msg, const char *binding_group)
 *
 * Fires:
 *   during reception, once per recipient-message whose policy chose a
 *   binding group, to pick the binding inside it.
 *
 * Thread:
 *   any thread, off the scheduler: providers must be thread-safe.
 *
 * Chain:
 *   the first provider that returns a slot other than
 *   EC_BINDING_SLOT_UNBOUND wins; when all return EC_BINDING_SLOT_UNBOUND
 *   (or none is registered) the core picks one of the group's bindings at
 *   random, avoiding suspended ones.
 *
 * Arguments:
 *   msg: the message being received; binding_group: the group's name. Owned
 *   by the caller, valid during the call only. Return a slot of a binding of
 *   that group.
 */
#ifndef IMPETUS_HOOKS_CORE_BINDING_GROUP_CHOOSE_BINDING_H
#define IMPETUS_HOOKS_CORE_BINDING_GROUP_CHOOSE_BINDING_H

#include <impetus/hook.h>
#include <impetus/types.h>
#include <sys/time.h>
#include <impetus/message.h>
#include <impetus/binding.h>

#ifdef __cplusplus
extern "C" {
#endif

IMP_DECLARE_HOOK(core, int, binding_group_choose_binding,
	(void *closure, ec_message *msg, const char *binding_group),
	(ec_message *msg, const char *binding_group),
	(IMP_HOOK_CLOSURE, msg, binding_group),
	if (IMP_HOOK_RETVAL != EC_BINDING_SLOT_UNBOUND) IMP_HOOK_RETURN(IMP_HOOK_RETVAL))

#ifdef __cplusplus
}
#endif

#endif

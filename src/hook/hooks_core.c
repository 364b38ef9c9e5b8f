/*
 * hooks_core.c - the heads of the core hooks (impetus/hooks/core/) and
 * validate_phase_name. Each head is linked into the hook registry when the
 * daemon loads, so imp_hook_find sees every core hook.
 */
#include <impetus/hooks/core/binding_group_choose_binding.h>
#include <impetus/hooks/core/connection_post_bind.h>
#include <impetus/hooks/core/ec_message_set_next_attempt.h>
#include <impetus/hooks/core/generate_bounces.h>
#include <impetus/hooks/core/get_msg_expiration_params.h>
#include <impetus/hooks/core/log_client_connection_failure.h>
#include <impetus/hooks/core/log_client_connection_success.h>
#include <impetus/hooks/core/log_delivery_v1.h>
#include <impetus/hooks/core/log_permanent_failure_v1.h>
#include <impetus/hooks/core/log_reception_v1.h>
#include <impetus/hooks/core/log_rejection.h>
#include <impetus/hooks/core/log_transient_failure_v1.h>
#include <impetus/hooks/core/smtp_error_classify.h>
#include <impetus/hooks/core/veto_host_connection.h>

#include <stddef.h>

IMP_DEFINE_HOOK(core, binding_group_choose_binding);
IMP_DEFINE_HOOK(core, connection_post_bind);
IMP_DEFINE_HOOK(core, ec_message_set_next_attempt);
IMP_DEFINE_HOOK(core, generate_bounces);
IMP_DEFINE_HOOK(core, get_msg_expiration_params);
IMP_DEFINE_HOOK(core, log_client_connection_failure);
IMP_DEFINE_HOOK(core, log_client_connection_success);
IMP_DEFINE_HOOK(core, log_delivery_v1);
IMP_DEFINE_HOOK(core, log_permanent_failure_v1);
IMP_DEFINE_HOOK(core, log_reception_v1);
IMP_DEFINE_HOOK(core, log_rejection);
IMP_DEFINE_HOOK(core, log_transient_failure_v1);
IMP_DEFINE_HOOK(core, smtp_error_classify);
IMP_DEFINE_HOOK(core, veto_host_connection);

const char *
validate_phase_name(int phase)
{
	static const char *const names[] = {
		"connect", "ehlo", "mailfrom", "rcptto", "data", "data_spool",
		"data_spool_each_rcpt", "set_binding", "final_validation", "auth",
	};

	if (phase < 0 || (size_t)phase >= sizeof(names) / sizeof(names[0]))
		return "unknown";
	return names[phase];
}

/*
 * tmod.c - a test module for module_test.c, built as tmod_a.so and
 * tmod_b.so (TMOD_NAME; tmod_b without reload, TMOD_NO_RELOAD).
 *
 * Options: position = first|last (how it registers on
 * log_client_connection_failure), fail = true (init and reload fail with
 * "asked to fail"). Every life-cycle step and hook call is reported to
 * module_test_trace(), which the test executable exports. Verbs: "calls"
 * (hook calls seen, carried over by reload), "echo args…", "fail".
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include <impetus/config.h>
#include <impetus/hooks/core/log_client_connection_failure.h>
#include <impetus/module.h>

struct tmod {
	struct imp_module_instance *inst;
	atomic_ulong calls;             /* hook calls seen by this instance and its predecessors */
};

/* Defined by the test executable, resolved at dlopen time. */
void module_test_trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int tmod_init(struct imp_module_instance *inst, char *err, size_t errlen);
static int tmod_reload(struct imp_module_instance *inst, struct imp_module_instance *old,
                       char *err, size_t errlen) __attribute__((unused));
static void tmod_fini(struct imp_module_instance *inst);
static int tmod_start(struct imp_module_instance *inst, const char *how, char *err, size_t errlen);
static void tmod_on_failure(void *closure, struct sockaddr *addr, int err, domain_record *dr,
                            int binding_slot, struct timeval *now);
static int tmod_verb_calls(struct imp_module_instance *inst, int argc, char **argv,
                           struct imp_console_out *out);
static int tmod_verb_echo(struct imp_module_instance *inst, int argc, char **argv,
                          struct imp_console_out *out);
static int tmod_verb_fail(struct imp_module_instance *inst, int argc, char **argv,
                          struct imp_console_out *out);

static const char *const tmod_positions[] = { "first", "last", NULL };
static struct conf_option tmod_opt_position = {
	.name = "position", .type = CONF_T_ENUM, .def = "last", .enum_values = tmod_positions,
};
static struct conf_option tmod_opt_fail = {
	.name = "fail", .type = CONF_T_BOOL, .def = "false",
};
static struct conf_option *const tmod_options[] = { &tmod_opt_position, &tmod_opt_fail, NULL };

static const struct imp_console_verb tmod_verbs[] = {
	{ "calls", "hook calls seen", tmod_verb_calls },
	{ "echo", "print the arguments", tmod_verb_echo },
	{ "fail", "fail with status 2", tmod_verb_fail },
	{ NULL, NULL, NULL },
};

IMP_MODULE_DEFINE = {
	.abi_version = IMP_MODULE_ABI_VERSION,
	.name = TMOD_NAME,
	.description = "module_test's test module",
	.options = tmod_options,
	.init = tmod_init,
#ifndef TMOD_NO_RELOAD
	.reload = tmod_reload,
#endif
	.fini = tmod_fini,
	.verbs = tmod_verbs,
};

static int
tmod_start(struct imp_module_instance *inst, const char *how, char *err, size_t errlen)
{
	const struct conf_setting *pos = imp_module_setting(inst, &tmod_opt_position);
	const struct conf_setting *fail = imp_module_setting(inst, &tmod_opt_fail);
	struct tmod *t;

	module_test_trace("%s %s/%s", how, TMOD_NAME, imp_module_instance_name(inst));
	if (fail != NULL && fail->i) {
		snprintf(err, errlen, "asked to fail");
		return -1;
	}
	t = calloc(1, sizeof(*t));
	t->inst = inst;
	atomic_init(&t->calls, 0);
	imp_module_instance_set_data(inst, t);
	if (pos != NULL && pos->i == 0)
		register_core_log_client_connection_failure_hook_first(tmod_on_failure, t);
	else
		register_core_log_client_connection_failure_hook_last(tmod_on_failure, t);
	return 0;
}

static int
tmod_init(struct imp_module_instance *inst, char *err, size_t errlen)
{
	return tmod_start(inst, "init", err, errlen);
}

static int
tmod_reload(struct imp_module_instance *inst, struct imp_module_instance *old, char *err,
            size_t errlen)
{
	struct tmod *prev = imp_module_instance_data(old), *t;

	if (tmod_start(inst, "reload", err, errlen) != 0)
		return -1;
	t = imp_module_instance_data(inst);
	atomic_store(&t->calls, atomic_load(&prev->calls));
	return 0;
}

static void
tmod_fini(struct imp_module_instance *inst)
{
	module_test_trace("fini %s/%s", TMOD_NAME, imp_module_instance_name(inst));
	free(imp_module_instance_data(inst));
}

static void
tmod_on_failure(void *closure, struct sockaddr *addr, int err, domain_record *dr,
                int binding_slot, struct timeval *now)
{
	struct tmod *t = closure;

	atomic_fetch_add(&t->calls, 1);
	module_test_trace("call %s/%s", TMOD_NAME, imp_module_instance_name(t->inst));
}

static int
tmod_verb_calls(struct imp_module_instance *inst, int argc, char **argv,
                struct imp_console_out *out)
{
	struct tmod *t = imp_module_instance_data(inst);

	imp_console_printf(out, "%lu\n", atomic_load(&t->calls));
	return 0;
}

static int
tmod_verb_echo(struct imp_module_instance *inst, int argc, char **argv,
               struct imp_console_out *out)
{
	imp_console_printf(out, "%s:", imp_module_instance_name(inst));
	for (int i = 0; i < argc; i++)
		imp_console_printf(out, " %s", argv[i]);
	imp_console_printf(out, "\n");
	return 0;
}

static int
tmod_verb_fail(struct imp_module_instance *inst, int argc, char **argv,
               struct imp_console_out *out)
{
	imp_console_printf(out, "failing\n");
	return 2;
}

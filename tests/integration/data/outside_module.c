/*
 * outside_module.c - a module written from docs/modules.md and the public
 * headers alone, compiled outside impetus's build:
 *
 *     cc -shared -fPIC -I/path/to/impetus/include -o outside_module.so outside_module.c
 *
 * It registers first on log_client_connection_failure, has one option
 * (greeting) and one console verb (hello), and says what it does in the
 * paniclog, so that test_modules.py can see it load, reload and stop.
 */
#include <stdio.h>
#include <stdlib.h>

#include <impetus/hooks/core/log_client_connection_failure.h>
#include <impetus/module.h>

struct outside {
	struct imp_module_instance *inst;
	unsigned long failures;
};

static void
outside_on_failure(void *closure, struct sockaddr *addr, int err, domain_record *dr,
                   int binding_slot, struct timeval *now)
{
	struct outside *o = closure;
	char flags[256];

	__atomic_add_fetch(&o->failures, 1, __ATOMIC_RELAXED);
	conn_error_render(err, flags, sizeof(flags));
	imp_module_log_info(o->inst, "connection to %s failed: %s", dr ? dr->domain : "?", flags);
}

static struct conf_option outside_opt_greeting = {
	.name = "greeting",
	.type = CONF_T_STRING,
	.def = "hello",
	.help = "what init says",
};

static struct conf_option *const outside_options[] = { &outside_opt_greeting, NULL };

static int
outside_init(struct imp_module_instance *inst, char *err, size_t errlen)
{
	const struct conf_setting *greeting = imp_module_setting(inst, &outside_opt_greeting);
	struct outside *o = calloc(1, sizeof(*o));

	if (o == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	o->inst = inst;
	imp_module_instance_set_data(inst, o);
	register_core_log_client_connection_failure_hook_first(outside_on_failure, o);
	imp_module_log_info(inst, "init: %s, registered on log_client_connection_failure",
	                    greeting ? greeting->s : "(no greeting)");
	return 0;
}

static void
outside_fini(struct imp_module_instance *inst)
{
	imp_module_log_info(inst, "fini");
	free(imp_module_instance_data(inst));
}

static int
outside_hello(struct imp_module_instance *inst, int argc, char **argv,
              struct imp_console_out *out)
{
	imp_console_printf(out, "hello from %s\n", imp_module_instance_name(inst));
	return 0;
}

static const struct imp_console_verb outside_verbs[] = {
	{ "hello", "say hello", outside_hello },
	{ NULL, NULL, NULL },
};

IMP_MODULE_DEFINE = {
	.abi_version = IMP_MODULE_ABI_VERSION,
	.name = "outside_module",
	.description = "a module built outside the impetus tree",
	.options = outside_options,
	.init = outside_init,
	.fini = outside_fini,
	.verbs = outside_verbs,
};

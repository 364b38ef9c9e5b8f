/*
 * example.c - the template for module authors (docs/modules.md).
 *
 * Copy this file, rename the module, keep the shape. It shows every part of
 * a module: one option, two hook providers, a console verb, and the life
 * cycle (init, reload, fini). Configure it with
 *
 *     Module_Search_Path = ( "/usr/lib/impetus/modules" )
 *     example { log_deliveries = true }
 *
 * and ask it "example stats" on the console. What it does:
 *   - counts established outbound connections (log_client_connection_success);
 *   - counts deliveries (log_delivery_v1) and, with log_deliveries = true,
 *     writes one paniclog line per delivery.
 *
 * Functions: the descriptor (init, reload, fini, the verb "stats") and two
 * hook providers; all static. Ownership: init allocates the instance's
 * state, fini frees it. Errors: init fails only when memory is short.
 *
 * It includes nothing but the C library and <impetus/...>: a module must
 * build with `cc -shared -fPIC -I/path/to/impetus/include`.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include <impetus/config.h>                             /* struct conf_option */
#include <impetus/hooks/core/log_client_connection_success.h>
#include <impetus/hooks/core/log_delivery_v1.h>
#include <impetus/message.h>                            /* ec_message accessors */
#include <impetus/module.h>                             /* the descriptor and instance API */

/*
 * 1. State. One struct per instance: "example { }" and "example "two" { }"
 * are two instances, each with its own state. Hook providers run on any
 * thread, concurrently: counters are atomic, and anything more complex
 * needs a lock (see conn_failure_log.c).
 */
struct example {
	struct imp_module_instance *inst;   /* for imp_module_log_info */
	int log_deliveries;                 /* the option, read once by init */
	atomic_ulong connections;           /* log_client_connection_success calls */
	atomic_ulong deliveries;            /* log_delivery_v1 calls */
};

/* Static functions are declared first (impetus's style). */
static int example_init(struct imp_module_instance *inst, char *err, size_t errlen);
static int example_reload(struct imp_module_instance *inst, struct imp_module_instance *old,
                          char *err, size_t errlen);
static void example_fini(struct imp_module_instance *inst);
static void example_on_connection(void *closure, struct sockaddr *addr, domain_record *dr,
                                  int binding_slot, struct timeval *now);
static void example_on_delivery(void *closure, ec_message *msg, domain_record *dr,
                                struct timeval *now, const char *note, int note_len);
static int example_verb_stats(struct imp_module_instance *inst, int argc, char **argv,
                              struct imp_console_out *out);

/*
 * 2. Options. Each option is a static struct conf_option listed in the
 * descriptor; the loader registers it inside the module's stanza (scopes
 * left 0 means "my stanza"). Names are case-insensitive in the file. The
 * default is configuration text, parsed like a value in the file.
 */
static struct conf_option example_opt_log_deliveries = {
	.name = "log_deliveries",
	.type = CONF_T_BOOL,
	.def = "false",
	.help = "write a paniclog line for every delivery",
};

static struct conf_option *const example_options[] = {
	&example_opt_log_deliveries,
	NULL,                               /* the list ends with NULL */
};

/*
 * 3. Console verbs: "example stats". A verb prints with imp_console_printf
 * and returns 0, or non-zero after printing why it failed. argv[0] is the
 * verb's own name; its arguments follow.
 */
static const struct imp_console_verb example_verbs[] = {
	{ "stats", "connections and deliveries seen by this instance", example_verb_stats },
	{ NULL, NULL, NULL },               /* the list ends with a NULL name */
};

/*
 * 4. The descriptor: the one symbol impetus looks for. Its name must be the
 * file's name without ".so" and the stanza keyword. abi_version must be
 * IMP_MODULE_ABI_VERSION of the headers you built against: impetusd refuses
 * a module built for another ABI.
 */
IMP_MODULE_DEFINE = {
	.abi_version = IMP_MODULE_ABI_VERSION,
	.name = "example",
	.description = "counts connections and deliveries; the template for module authors",
	.options = example_options,
	.init = example_init,
	.reload = example_reload,           /* optional: without it, init runs on reload too */
	.fini = example_fini,               /* optional */
	.verbs = example_verbs,             /* optional */
};

/*
 * 5. init: once per instance per configuration generation, on the main
 * thread, inside a hook registration transaction. Read settings, allocate
 * state, register hooks. Registrations become visible to callers only when
 * the whole generation is accepted; if any module's init fails, everything
 * this generation registered is dropped and the running configuration
 * stays. On failure, write why into err, free what you allocated, and
 * return non-zero.
 */
static int
example_init(struct imp_module_instance *inst, char *err, size_t errlen)
{
	struct example *ex = calloc(1, sizeof(*ex));
	const struct conf_setting *s;

	if (ex == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	ex->inst = inst;
	/* imp_module_setting: this stanza's value, else the default (NULL when
	 * the option has none and is not set). Read the field of its type. */
	s = imp_module_setting(inst, &example_opt_log_deliveries);
	ex->log_deliveries = s != NULL && s->i != 0;
	atomic_init(&ex->connections, 0);
	atomic_init(&ex->deliveries, 0);
	imp_module_instance_set_data(inst, ex);

	/* The closure (ex) comes back as the providers' first argument. _first
	 * runs before the providers already registered, _last after them. */
	register_core_log_client_connection_success_hook_last(example_on_connection, ex);
	register_core_log_delivery_v1_hook_last(example_on_delivery, ex);
	imp_module_log_info(inst, "ready (log_deliveries %s)", ex->log_deliveries ? "on" : "off");
	return 0;
}

/*
 * 6. reload: called instead of init when the new configuration still has
 * this instance (same module, same instance name), so that state survives
 * a reload. It must register its hooks again, like init: the old
 * generation's registrations go away with it. The old instance is still
 * running (and its hooks still fire) until the new generation is
 * committed, and the new generation may yet be refused: copy or share
 * state, never take it away from old. Here the counters are copied, so
 * events counted by old between the copy and the commit are lost; to lose
 * nothing, share a reference-counted object (conn_failure_log does).
 */
static int
example_reload(struct imp_module_instance *inst, struct imp_module_instance *old, char *err,
               size_t errlen)
{
	struct example *prev = imp_module_instance_data(old);
	struct example *ex;

	if (example_init(inst, err, errlen) != 0)
		return -1;
	ex = imp_module_instance_data(inst);
	if (prev != NULL) {
		atomic_store(&ex->connections, atomic_load(&prev->connections));
		atomic_store(&ex->deliveries, atomic_load(&prev->deliveries));
	}
	return 0;
}

/*
 * 7. fini: on the main thread, after the instance's generation has been
 * replaced and no hook call can still be running its providers (or at
 * exit). Its hooks are already gone; free everything.
 */
static void
example_fini(struct imp_module_instance *inst)
{
	free(imp_module_instance_data(inst));
	imp_module_instance_set_data(inst, NULL);
}

/*
 * 8. Hook providers: any thread, concurrently, and fast - they run inside
 * the delivery path. Arguments belong to the caller and are valid only
 * during the call: copy what you keep. Never block (no network, no sleeping
 * locks held for long).
 */
static void
example_on_connection(void *closure, struct sockaddr *addr, domain_record *dr,
                      int binding_slot, struct timeval *now)
{
	struct example *ex = closure;

	atomic_fetch_add_explicit(&ex->connections, 1, memory_order_relaxed);
}

static void
example_on_delivery(void *closure, ec_message *msg, domain_record *dr, struct timeval *now,
                    const char *note, int note_len)
{
	struct example *ex = closure;

	atomic_fetch_add_explicit(&ex->deliveries, 1, memory_order_relaxed);
	if (ex->log_deliveries)
		imp_module_log_info(ex->inst, "delivered %s to %s: %.*s", ec_message_id(msg),
		                    dr != NULL ? dr->domain : "?", note_len, note ? note : "");
}

/* 9. The verb: main thread (the console's), while the instance is alive. */
static int
example_verb_stats(struct imp_module_instance *inst, int argc, char **argv,
                   struct imp_console_out *out)
{
	struct example *ex = imp_module_instance_data(inst);

	imp_console_printf(out, "instance %s: %lu connections, %lu deliveries\n",
	                   imp_module_instance_name(inst), atomic_load(&ex->connections),
	                   atomic_load(&ex->deliveries));
	return 0;
}

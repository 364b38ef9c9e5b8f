/*
 * impetus/module.h - loadable modules.
 *
 * A module is a shared object, <name>.so, found in Module_Search_Path and
 * loaded when the configuration has a stanza named after it:
 *
 *     Module_Search_Path = ( "/usr/lib/impetus/modules" )
 *     conn_failure_log { path = "/var/log/impetus/connfail.log" }
 *     conn_failure_log "second" { path = "/tmp/other.log" }      # a second instance
 *
 * It exports one symbol, IMP_MODULE_SYMBOL, a struct imp_module_desc whose
 * abi_version is IMP_MODULE_ABI_VERSION. A missing file, a missing symbol,
 * a wrong ABI version or a name that differs from the stanza's is a
 * configuration error naming the module.
 *
 * Life cycle, all on the main thread:
 *   - options: registered once, when the module is first loaded, inside the
 *     module's own stanza (an option's scopes left 0 mean "my stanza");
 *   - init(inst): for every stanza instance of every configuration
 *     generation that is installed (start and each reload), inside a hook
 *     registration transaction: read settings, open resources, register
 *     hooks (register_core_<hook>_hook_first/_last). A non-zero return
 *     refuses the whole generation (the running one stays) with err; the
 *     failing init frees what it allocated itself, the instances that
 *     succeeded get fini;
 *   - reload(inst, old): when set, called instead of init for an instance
 *     whose name also existed in the previous generation, so that state
 *     (open files, counters) can carry over with imp_module_instance_data.
 *     It registers its hooks again, like init. old keeps running (its hooks
 *     fire) until the new generation is committed, and the new generation
 *     may still be refused: copy or share state, never take it from old;
 *   - fini(inst): when the instance's generation has been replaced and no
 *     hook call can still be running its providers, or at exit. Hooks
 *     registered by init belong to the generation and are gone.
 *   - verbs: console commands, "<module>[:<instance>] <verb> args…"
 *     (issue 7's console; the daemon can dispatch them already); run gets
 *     argv[0] = the verb, then its arguments.
 *
 * Hook providers run on any thread, concurrently; everything else above on
 * the main thread. A module is loaded once per process and never unloaded.
 * docs/modules.md is the guide for module authors.
 *
 * In-tree modules (modules/) compile against include/impetus/ alone.
 */
#ifndef IMPETUS_MODULE_H
#define IMPETUS_MODULE_H

#include <stddef.h>
#include <stdint.h>

#include <impetus/config.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IMP_MODULE_ABI_VERSION 1
#define IMP_MODULE_SYMBOL imp_module_descriptor
#define IMP_MODULE_SYMBOL_NAME "imp_module_descriptor"

struct imp_module_instance;

/* Output of a console verb: imp_console_printf appends to the command's answer. */
struct imp_console_out;
void imp_console_printf(struct imp_console_out *out, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

struct imp_console_verb {
	const char *name;       /* "counts" in "conn_failure_log counts" */
	const char *usage;      /* one line: arguments and what it does */
	/* Returns 0, or non-zero after printing why it failed. */
	int (*run)(struct imp_module_instance *inst, int argc, char **argv,
	           struct imp_console_out *out);
};

struct imp_module_desc {
	uint32_t abi_version;                       /* IMP_MODULE_ABI_VERSION */
	const char *name;                           /* = the stanza keyword and <name>.so */
	const char *description;                    /* one line */
	struct conf_option *const *options;         /* NULL-terminated, or NULL */
	int (*init)(struct imp_module_instance *inst, char *err, size_t errlen);
	int (*reload)(struct imp_module_instance *inst, struct imp_module_instance *old,
	              char *err, size_t errlen);    /* optional */
	void (*fini)(struct imp_module_instance *inst); /* optional */
	const struct imp_console_verb *verbs;       /* terminated by { NULL }, or NULL */
};

/* Define a module's descriptor: IMP_MODULE_DEFINE = { .abi_version = …, … }; */
#define IMP_MODULE_DEFINE \
	__attribute__((visibility("default"))) const struct imp_module_desc IMP_MODULE_SYMBOL

/* The instance's stanza name ("second" above; the module name when unnamed). */
const char *imp_module_instance_name(const struct imp_module_instance *inst);
/* Module-private data of the instance (NULL until set). */
void *imp_module_instance_data(const struct imp_module_instance *inst);
void imp_module_instance_set_data(struct imp_module_instance *inst, void *data);
/* The value of opt for this instance: its stanza, then the global scope,
 * then opt's default; NULL when unset everywhere. */
const struct conf_setting *imp_module_setting(const struct imp_module_instance *inst,
                                              const struct conf_option *opt);

/* Diagnostics to the paniclog, prefixed "module NAME: " ("module NAME/INSTANCE: "
 * for a named instance). Any thread. */
void imp_module_log_info(const struct imp_module_instance *inst, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void imp_module_log_warn(const struct imp_module_instance *inst, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif

#endif

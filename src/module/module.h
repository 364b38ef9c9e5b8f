/*
 * module.h - the module loader: stanza resolution, instances per
 * configuration generation, console dispatch.
 *
 * Loading. module_loader_install() makes the configuration builder ask us
 * about every unknown global stanza keyword K: a built-in module named K
 * (module_builtin_add), else K.so from the first Module_Search_Path
 * directory that has one (dlopen RTLD_NOW | RTLD_LOCAL). The module's
 * descriptor (impetus/module.h) is checked - ABI version, name - and its
 * stanza (named after it, optional instance name, global scope only, its
 * own options) is registered. A module is loaded once per process and never
 * unloaded: later generations reuse its stanza, and its option definitions
 * stay valid for the registry.
 *
 * Generations. Module instances follow configuration generations:
 *
 *     g = module_generation_start(fresh, running, errs);  init / reload
 *     ... conf_try_install(fresh) ...
 *     module_generation_commit(g);                         hooks go live
 *     module_generation_finish(running);                   fini the old ones
 *
 * or module_generation_abort(g) instead of commit when the generation is
 * refused. start opens a hook registration transaction (impetus/hook.h) that
 * commit or abort closes: one generation at a time is being started. A
 * generation holds a reference on its configuration (settings point into
 * it) until it is finished.
 *
 * Finishing waits for the hook calls that can still reach the old
 * instances: fini runs at once when no call can see the replaced provider
 * arrays (imp_hook_reclaim() finds nothing waiting), else later, from
 * module_reclaim(), which the daemon calls every second. module_shutdown()
 * retires the last generation at exit.
 *
 * Threads: everything here runs on the main thread (the thread that builds
 * configurations), except what the module API functions of
 * impetus/module.h document. Errors: the resolver and
 * module_generation_start report in text that names the module; nothing
 * here logs (the daemon does, with module_generation_describe).
 */
#ifndef IMPETUS_MODULE_MODULE_H
#define IMPETUS_MODULE_MODULE_H

#include <stddef.h>

#include <impetus/module.h>

#include "conf/conf.h"
#include "lib/strbuf.h"

struct module_generation;

/* module_loader_install: make the configuration builder resolve unknown
 * global stanzas through the loader (idempotent). */
void module_loader_install(void);

/* module_resolve: the stanza resolver itself (conf_stanza_resolver_fn). */
const struct conf_stanza_def *module_resolve(const char *keyword, const char *const *search_path,
                                             size_t npath, char *err, size_t errlen);

/* module_builtin_add: a module linked into the daemon, found by name before
 * Module_Search_Path is searched. desc must outlive the process. Returns 0,
 * or -1 when desc is malformed or its name is taken. */
int module_builtin_add(const struct imp_module_desc *desc);

/* module_generation_start: create and init (or reload, from previous) an
 * instance for every module stanza of c, in file order, inside a new hook
 * registration transaction. Returns the generation, or NULL after aborting
 * the transaction and finishing what was created, with
 * "module X instance Y: why" at the stanza's location in errs. previous may
 * be NULL. Takes its own reference on c. */
struct module_generation *module_generation_start(struct conf *c,
                                                  const struct module_generation *previous,
                                                  struct conf_errors *errs);
/* module_generation_commit: publish g's hook registrations (commit). */
void module_generation_commit(struct module_generation *g);
/* module_generation_abort: discard a started, uncommitted generation: abort
 * its transaction, fini its instances, free it. NULL is allowed. */
void module_generation_abort(struct module_generation *g);
/* module_generation_finish: fini and free a generation replaced by a
 * committed one (now, or from module_reclaim once no hook call can still be
 * using it). NULL is allowed. */
void module_generation_finish(struct module_generation *old);
/* module_reclaim: imp_hook_reclaim(), then finish the generations waiting
 * for it. Returns the number of generations still waiting. */
size_t module_reclaim(void);
/* module_shutdown: at exit, with no hook caller left: withdraw g's hooks,
 * fini every instance still alive (g's and the waiting ones). */
void module_shutdown(struct module_generation *g);

/* module_generation_count / module_generation_instance: g's instances. */
size_t module_generation_count(const struct module_generation *g);
struct imp_module_instance *module_generation_instance(const struct module_generation *g,
                                                       size_t i);
/* module_generation_describe: one line per instance, for the paniclog:
 * "module NAME instance INST: initialized|reloaded (PATH | built-in)". */
void module_generation_describe(const struct module_generation *g, struct strbuf *out);

/* module_console_run: run "<module>[:<instance>] <verb> args…" (argv[0],
 * argv[1], …) on g's instance (the first of the module without
 * ":instance"); the verb gets argc - 1, argv + 1 (its own name first).
 * Output goes to out. Returns the verb's status, or 1 with a message that
 * lists what exists when the module, instance or verb is unknown. */
int module_console_run(const struct module_generation *g, int argc, char **argv,
                       struct strbuf *out);

#endif

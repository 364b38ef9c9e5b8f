/*
 * module_generation.c - module instances, one set per configuration
 * generation; the module API of impetus/module.h; console dispatch.
 *
 * Public functions (module.h):
 *   module_generation_start     init/reload every module stanza of a configuration
 *   module_generation_commit    publish the new instances' hook registrations
 *   module_generation_abort     discard a generation that was refused
 *   module_generation_finish    fini a replaced generation (now or once no call sees it)
 *   module_reclaim              reclaim hook arrays, finish what waited for that
 *   module_shutdown             withdraw every hook and fini everything, at exit
 *   module_generation_count / _instance / _describe
 *   module_console_run          "<module>[:<instance>] <verb> args…"
 * and for modules (impetus/module.h): imp_module_instance_name,
 * imp_module_instance_data / _set_data, imp_module_setting,
 * imp_module_log_info / _warn, imp_console_printf.
 *
 * Life cycle of a generation: start opens a hook registration transaction
 * and creates one instance per module stanza in file order, calling
 * reload(inst, old) when the module has reload and the previous generation
 * had an instance of the same module and name, init(inst) otherwise. The
 * first failure aborts the transaction, finis (in reverse order) the
 * instances that succeeded and reports "module X instance Y: why" at the
 * stanza. commit publishes the registrations; the replaced generation's
 * hooks are then gone, but a hook call that began before the commit may
 * still be running one of its providers, so finish queues it until
 * imp_hook_reclaim() reports that no call can see a replaced array any
 * more, and only then calls fini (reverse order) and frees it.
 *
 * Ownership: a generation owns its instances and a reference on its
 * configuration; an instance owns its label, the module owns its data
 * (freed by fini). Threads: main thread, except the imp_module_* and
 * imp_console_printf functions, which are safe on any thread.
 */
#include "module/module.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <impetus/hook.h>

#include "lib/diag.h"
#include "lib/xalloc.h"
#include "module/module_internal.h"

#define MODULE_ERR_MAX 512              /* bytes of an init/reload error text */
#define MODULE_SHUTDOWN_WAIT_MS 2000    /* longest wait for hook calls at exit */

struct imp_console_out {
	struct strbuf *sb;                  /* where imp_console_printf appends */
};

struct imp_module_instance {
	const struct module *mod;           /* the loaded module */
	const struct conf_scope *scope;     /* its stanza in the generation's configuration */
	const char *name;                   /* stanza name, or the module's name */
	char *label;                        /* "module NAME" or "module NAME/INSTANCE", owned */
	void *data;                         /* the module's own, set by init/reload */
	int live;                           /* init/reload succeeded: fini is due */
	int reloaded;                       /* made by reload(), not init() */
};

struct module_generation {
	struct conf *conf;                  /* a reference: settings point into it */
	struct imp_module_instance **inst;  /* in file order */
	size_t n;
	int txn_open;                       /* started, not yet committed or aborted */
	struct module_generation *next;     /* the finish queue */
};

static struct imp_module_instance *instance_new(const struct module *mod,
                                                const struct conf_scope *scope);
static const struct imp_module_instance *instance_find(const struct module_generation *g,
                                                       const struct module *mod,
                                                       const char *name);
static void generation_fini(struct module_generation *g);
static void list_modules(const struct module_generation *g, struct strbuf *out);
static void log_record(const struct imp_module_instance *inst, int warn, const char *fmt,
                       va_list ap) __attribute__((format(printf, 3, 0)));

static struct module_generation *finish_queue;  /* replaced, waiting for hook calls */
static struct module_generation **finish_tail = &finish_queue;

static struct imp_module_instance *
instance_new(const struct module *mod, const struct conf_scope *scope)
{
	struct imp_module_instance *inst = xcalloc(1, sizeof(*inst));

	inst->mod = mod;
	inst->scope = scope;
	inst->name = scope->name ? scope->name : mod->desc->name;
	inst->label = scope->name ? xasprintf("module %s/%s", mod->desc->name, scope->name)
	                          : xasprintf("module %s", mod->desc->name);
	return inst;
}

static const struct imp_module_instance *
instance_find(const struct module_generation *g, const struct module *mod, const char *name)
{
	for (size_t i = 0; g != NULL && i < g->n; i++)
		if (g->inst[i]->mod == mod && g->inst[i]->live && strcmp(g->inst[i]->name, name) == 0)
			return g->inst[i];
	return NULL;
}

struct module_generation *
module_generation_start(struct conf *c, const struct module_generation *previous,
                        struct conf_errors *errs)
{
	struct module_generation *g = xcalloc(1, sizeof(*g));
	const struct conf_scope *global = c->global;

	IMP_ASSERT(!imp_hook_txn_open());
	g->conf = conf_ref(c);
	g->inst = xcalloc(global->nchildren ? global->nchildren : 1, sizeof(*g->inst));
	imp_hook_txn_begin();
	g->txn_open = 1;
	for (size_t i = 0; i < global->nchildren; i++) {
		const struct conf_scope *s = global->children[i];
		const struct module *mod = module_by_def(s->def);
		char err[MODULE_ERR_MAX] = "";
		int rc = 0;

		if (mod == NULL)
			continue;
		const struct imp_module_desc *desc = mod->desc;
		struct imp_module_instance *inst = instance_new(mod, s);
		const struct imp_module_instance *old = instance_find(previous, mod, inst->name);
		g->inst[g->n++] = inst;
		if (old != NULL && desc->reload != NULL) {
			inst->reloaded = 1;
			/* The module API takes non-const instances; old is only read. */
			rc = desc->reload(inst, (struct imp_module_instance *)old, err, sizeof(err));
		} else if (desc->init != NULL) {
			rc = desc->init(inst, err, sizeof(err));
		}
		if (rc != 0) {
			err[sizeof(err) - 1] = '\0';
			conf_error(errs, &s->loc, "module %s instance %s: %s", desc->name, inst->name,
			           err[0] ? err : inst->reloaded ? "reload failed" : "init failed");
			module_generation_abort(g);
			return NULL;
		}
		inst->live = 1;
	}
	return g;
}

void
module_generation_commit(struct module_generation *g)
{
	IMP_ASSERT(g != NULL && g->txn_open);
	imp_hook_txn_commit();
	g->txn_open = 0;
}

/* fini the live instances in reverse order, then free g and its instances. */
static void
generation_fini(struct module_generation *g)
{
	for (size_t i = g->n; i-- > 0;) {
		struct imp_module_instance *inst = g->inst[i];
		if (inst->live && inst->mod->desc->fini != NULL)
			inst->mod->desc->fini(inst);
		free(inst->label);
		free(inst);
	}
	free(g->inst);
	conf_unref(g->conf);
	free(g);
}

void
module_generation_abort(struct module_generation *g)
{
	if (g == NULL)
		return;
	if (g->txn_open) {
		imp_hook_txn_abort();
		g->txn_open = 0;
	}
	/* Nothing it registered was ever published: no call can be using it. */
	generation_fini(g);
}

void
module_generation_finish(struct module_generation *old)
{
	if (old == NULL)
		return;
	IMP_ASSERT(!old->txn_open);
	old->next = NULL;
	*finish_tail = old;
	finish_tail = &old->next;
	module_reclaim();
}

size_t
module_reclaim(void)
{
	size_t waiting = 0;

	if (imp_hook_reclaim() == 0) {
		/* No call can still see a replaced array: the queued providers are idle. */
		while (finish_queue != NULL) {
			struct module_generation *g = finish_queue;
			finish_queue = g->next;
			generation_fini(g);
		}
		finish_tail = &finish_queue;
	}
	for (struct module_generation *g = finish_queue; g != NULL; g = g->next)
		waiting++;
	return waiting;
}

void
module_shutdown(struct module_generation *g)
{
	struct timespec pause = { 0, 10 * 1000 * 1000 };

	if (g != NULL) {
		/* An empty transaction keeps only the permanent registrations. */
		IMP_ASSERT(!g->txn_open);
		imp_hook_txn_begin();
		imp_hook_txn_commit();
		module_generation_finish(g);
	}
	for (int waited = 0; module_reclaim() > 0 && waited < MODULE_SHUTDOWN_WAIT_MS; waited += 10)
		nanosleep(&pause, NULL);
	/* Callers are gone by now; a call stuck in a provider loses. */
	while (finish_queue != NULL) {
		struct module_generation *q = finish_queue;
		finish_queue = q->next;
		generation_fini(q);
	}
	finish_tail = &finish_queue;
}

size_t
module_generation_count(const struct module_generation *g)
{
	return g ? g->n : 0;
}

struct imp_module_instance *
module_generation_instance(const struct module_generation *g, size_t i)
{
	return g != NULL && i < g->n ? g->inst[i] : NULL;
}

void
module_generation_describe(const struct module_generation *g, struct strbuf *out)
{
	for (size_t i = 0; g != NULL && i < g->n; i++) {
		const struct imp_module_instance *inst = g->inst[i];
		strbuf_printf(out, "module %s instance %s: %s (%s)\n", inst->mod->desc->name,
		              inst->name, inst->reloaded ? "reloaded" : "initialized",
		              inst->mod->path ? inst->mod->path : "built-in");
	}
}

/* "a, b" - the distinct module names of g, or "none are configured". */
static void
list_modules(const struct module_generation *g, struct strbuf *out)
{
	size_t listed = 0;

	for (size_t i = 0; g != NULL && i < g->n; i++) {
		const struct module *mod = g->inst[i]->mod;
		size_t j = 0;
		while (j < i && g->inst[j]->mod != mod)
			j++;
		if (j < i)
			continue;
		strbuf_printf(out, "%s%s", listed++ ? ", " : "", mod->desc->name);
	}
	if (listed == 0)
		strbuf_puts(out, "none are configured");
}

int
module_console_run(const struct module_generation *g, int argc, char **argv, struct strbuf *out)
{
	const struct imp_module_instance *inst = NULL;
	const struct imp_console_verb *verbs, *verb = NULL;
	int module_seen = 0;

	if (argc < 1) {
		strbuf_puts(out, "usage: <module>[:<instance>] <verb> [args…]; modules: ");
		list_modules(g, out);
		strbuf_putc(out, '\n');
		return 1;
	}
	const char *colon = strchr(argv[0], ':');
	size_t mlen = colon ? (size_t)(colon - argv[0]) : strlen(argv[0]);
	for (size_t i = 0; g != NULL && i < g->n && inst == NULL; i++) {
		const char *name = g->inst[i]->mod->desc->name;
		if (strlen(name) != mlen || strncasecmp(name, argv[0], mlen) != 0)
			continue;
		module_seen = 1;
		if (colon == NULL || strcmp(g->inst[i]->name, colon + 1) == 0)
			inst = g->inst[i];
	}
	if (inst == NULL && module_seen) {
		strbuf_printf(out, "module %.*s has no instance \"%s\"; instances:", (int)mlen,
		              argv[0], colon + 1);
		for (size_t i = 0; i < g->n; i++) {
			const char *name = g->inst[i]->mod->desc->name;
			if (strlen(name) == mlen && strncasecmp(name, argv[0], mlen) == 0)
				strbuf_printf(out, " %s", g->inst[i]->name);
		}
		strbuf_putc(out, '\n');
		return 1;
	}
	if (inst == NULL) {
		strbuf_printf(out, "unknown module \"%.*s\"; modules: ", (int)mlen, argv[0]);
		list_modules(g, out);
		strbuf_putc(out, '\n');
		return 1;
	}
	verbs = inst->mod->desc->verbs;
	for (size_t i = 0; argc >= 2 && verbs != NULL && verbs[i].name != NULL && verb == NULL; i++)
		if (strcasecmp(verbs[i].name, argv[1]) == 0)
			verb = &verbs[i];
	if (verb == NULL) {
		if (argc >= 2)
			strbuf_printf(out, "module %s: unknown verb \"%s\"; ", inst->mod->desc->name,
			              argv[1]);
		else
			strbuf_printf(out, "module %s: which verb? ", inst->mod->desc->name);
		if (verbs == NULL || verbs[0].name == NULL) {
			strbuf_puts(out, "it has none\n");
			return 1;
		}
		strbuf_puts(out, "verbs:\n");
		for (size_t i = 0; verbs[i].name != NULL; i++)
			strbuf_printf(out, "  %s %s%s%s\n", inst->mod->desc->name, verbs[i].name,
			              verbs[i].usage ? "  " : "", verbs[i].usage ? verbs[i].usage : "");
		return 1;
	}
	struct imp_console_out o = { out };
	/* The module API takes a non-const instance: verbs may update their state. */
	return verb->run((struct imp_module_instance *)inst, argc - 1, argv + 1, &o);
}

/* The module API (impetus/module.h). */

const char *
imp_module_instance_name(const struct imp_module_instance *inst)
{
	return inst->name;
}

void *
imp_module_instance_data(const struct imp_module_instance *inst)
{
	return inst->data;
}

void
imp_module_instance_set_data(struct imp_module_instance *inst, void *data)
{
	inst->data = data;
}

const struct conf_setting *
imp_module_setting(const struct imp_module_instance *inst, const struct conf_option *opt)
{
	/* An option never registered has no id of its own: refuse, do not guess. */
	if (opt == NULL || conf_option_at(opt->id) != opt)
		return NULL;
	return conf_resolve_chain(inst->scope, opt);
}

static void
log_record(const struct imp_module_instance *inst, int warn, const char *fmt, va_list ap)
{
	char text[1024];

	vsnprintf(text, sizeof(text), fmt, ap);
	if (warn)
		diag_warn("%s: %s", inst->label, text);
	else
		diag_info("%s: %s", inst->label, text);
}

void
imp_module_log_info(const struct imp_module_instance *inst, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_record(inst, 0, fmt, ap);
	va_end(ap);
}

void
imp_module_log_warn(const struct imp_module_instance *inst, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_record(inst, 1, fmt, ap);
	va_end(ap);
}

void
imp_console_printf(struct imp_console_out *out, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	strbuf_vprintf(out->sb, fmt, ap);
	va_end(ap);
}

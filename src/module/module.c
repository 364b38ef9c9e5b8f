/*
 * module.c - finding and loading modules: the configuration's stanza
 * resolver and the table of built-in modules.
 *
 * Public functions (module.h):
 *   module_loader_install  make the configuration builder ask us about unknown stanzas
 *   module_resolve         keyword -> stanza definition: built-in, else <keyword>.so
 *   module_builtin_add     a module linked into the daemon
 * and, for module_generation.c (module_internal.h):
 *   module_by_def          the loaded module behind a stanza definition
 *
 * A stanza keyword K that no one registered is looked up among the
 * built-in modules, then as K.so in each Module_Search_Path directory in
 * order (the first file found is the one used; K as written, then in lower
 * case). The shared object is opened with RTLD_NOW | RTLD_LOCAL - every
 * symbol it needs must resolve now, from the daemon's exported API, and
 * nothing it defines leaks into the next module - and must export
 * IMP_MODULE_SYMBOL, a descriptor with our ABI version and the name K
 * (compared case-insensitively). The module's stanza is then registered:
 * keyword = the module's name, an optional instance name, global scope
 * only, one scope bit of its own, the module's options inside it.
 *
 * Ownership: a loaded module (struct module, its handle, its path) lives
 * until the process exits: the configuration registry points at its stanza
 * and option definitions, so it is never dlclose'd once its stanza has been
 * offered to the registry. Built-in descriptors belong to their caller and
 * must outlive the process.
 *
 * Errors: module_resolve returns NULL with a one-line reason that starts
 * "module K: " (no K.so in the path, no descriptor symbol, a wrong ABI
 * version or name, the dynamic loader's own text for a broken file), or
 * with an empty reason for a keyword that cannot name a module (the stanza
 * is then simply unknown). Nothing here logs.
 *
 * Threads: the resolver runs on the thread that builds a configuration
 * (the main thread); a mutex keeps the tables consistent anyway.
 */
#include "module/module.h"

#include <ctype.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "lib/strbuf.h"
#include "lib/xalloc.h"
#include "module/module_internal.h"

#define MODULE_NAME_MAX 64          /* bytes in a module name */

struct module_builtin {
	const struct imp_module_desc *desc; /* the caller's, lives for the process */
	struct module_builtin *next;
};

static int module_name_ok(const char *name);
static struct module *module_find_loaded(const char *name);
static const struct imp_module_desc *module_find_builtin(const char *name);
static int module_check_desc(const struct imp_module_desc *desc, const char *keyword,
                             const char *origin, char *err, size_t errlen);
static struct module *module_adopt(const struct imp_module_desc *desc, void *handle,
                                   const char *path, const char *keyword, int *offered,
                                   char *err, size_t errlen);
static struct module *module_load_file(const char *keyword, const char *const *search_path,
                                       size_t npath, char *err, size_t errlen);
static char *module_find_file(const char *keyword, const char *const *search_path, size_t npath);

static pthread_mutex_t module_lock = PTHREAD_MUTEX_INITIALIZER;
static struct module *module_list;              /* every loaded module */
static struct module_builtin *module_builtins;  /* module_builtin_add's table */

void
module_loader_install(void)
{
	conf_set_stanza_resolver(module_resolve);
}

/* A module name is a file name without surprises: [A-Za-z0-9_-], not "-…". */
static int
module_name_ok(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > MODULE_NAME_MAX || name[0] == '-')
		return 0;
	for (const char *p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-')
			return 0;
	return 1;
}

static struct module *
module_find_loaded(const char *name)
{
	for (struct module *m = module_list; m != NULL; m = m->next)
		if (strcasecmp(m->desc->name, name) == 0)
			return m;
	return NULL;
}

static const struct imp_module_desc *
module_find_builtin(const char *name)
{
	for (struct module_builtin *b = module_builtins; b != NULL; b = b->next)
		if (strcasecmp(b->desc->name, name) == 0)
			return b->desc;
	return NULL;
}

const struct module *
module_by_def(const struct conf_stanza_def *def)
{
	const struct module *found = NULL;

	pthread_mutex_lock(&module_lock);
	for (struct module *m = module_list; m != NULL && found == NULL; m = m->next)
		if (&m->def == def)
			found = m;
	pthread_mutex_unlock(&module_lock);
	return found;
}

/* Is desc a descriptor impetus can use for the stanza keyword? origin names
 * where it came from in messages ("/path/x.so", "the built-in module"). */
static int
module_check_desc(const struct imp_module_desc *desc, const char *keyword, const char *origin,
                  char *err, size_t errlen)
{
	if (desc->abi_version != IMP_MODULE_ABI_VERSION) {
		snprintf(err, errlen, "module %s: ABI version %u, impetusd supports %d", keyword,
		         (unsigned)desc->abi_version, IMP_MODULE_ABI_VERSION);
		return -1;
	}
	if (desc->name == NULL || strcasecmp(desc->name, keyword) != 0) {
		snprintf(err, errlen, "module %s: %s says it is \"%s\"", keyword, origin,
		         desc->name ? desc->name : "(null)");
		return -1;
	}
	for (size_t i = 0; desc->verbs != NULL && desc->verbs[i].name != NULL; i++) {
		if (desc->verbs[i].run == NULL) {
			snprintf(err, errlen, "module %s: console verb \"%s\" has no function", keyword,
			         desc->verbs[i].name);
			return -1;
		}
	}
	for (size_t i = 0; desc->options != NULL && desc->options[i] != NULL; i++) {
		const char *name = desc->options[i]->name;
		if (name == NULL || name[0] == '\0') {
			snprintf(err, errlen, "module %s: option %zu has no name", keyword, i + 1);
			return -1;
		}
		for (size_t j = 0; j < i; j++) {
			if (strcasecmp(desc->options[j]->name, name) == 0) {
				snprintf(err, errlen, "module %s: option %s is listed twice", keyword, name);
				return -1;
			}
		}
	}
	return 0;
}

/*
 * Check desc and register its stanza; the new module, or NULL with err.
 * *offered becomes 1 once the registry has seen the definitions: from then
 * on the shared object must stay mapped, even on failure.
 */
static struct module *
module_adopt(const struct imp_module_desc *desc, void *handle, const char *path,
             const char *keyword, int *offered, char *err, size_t errlen)
{
	char why[256];
	uint32_t bit;

	*offered = 0;
	if (module_check_desc(desc, keyword, path ? path : "the built-in module", err, errlen) < 0)
		return NULL;
	if ((bit = conf_scope_allocate()) == 0) {
		snprintf(err, errlen, "module %s: too many modules loaded (no configuration scope left)",
		         keyword);
		return NULL;
	}
	struct module *m = xcalloc(1, sizeof(*m));
	m->desc = desc;
	m->handle = handle;
	m->path = path ? xstrdup(path) : NULL;
	m->def.keyword = desc->name;
	m->def.scope = bit;
	m->def.parents = CONF_SCOPE_GLOBAL;
	m->def.naming = CONF_NAME_OPTIONAL;
	m->def.repeatable = 0;
	m->def.options = desc->options;
	*offered = 1;
	if (conf_stanza_register(&m->def, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "module %s: %s", keyword, why);
		free(m->path);
		free(m);
		return NULL;
	}
	m->next = module_list;
	module_list = m;
	return m;
}

/* The first <dir>/<keyword>.so (then in lower case) that exists; caller frees. */
static char *
module_find_file(const char *keyword, const char *const *search_path, size_t npath)
{
	char lower[MODULE_NAME_MAX + 1];
	size_t len = strlen(keyword);

	for (size_t i = 0; i <= len; i++)
		lower[i] = (char)tolower((unsigned char)keyword[i]);
	for (size_t i = 0; i < npath; i++) {
		const char *dir = search_path[i][0] ? search_path[i] : ".";
		size_t dlen = strlen(dir);
		const char *sep = dlen > 0 && dir[dlen - 1] == '/' ? "" : "/";
		for (int pass = 0; pass < 2; pass++) {
			if (pass == 1 && strcmp(lower, keyword) == 0)
				break;
			char *path = xasprintf("%s%s%s.so", dir, sep, pass ? lower : keyword);
			if (access(path, F_OK) == 0)
				return path;
			free(path);
		}
	}
	return NULL;
}

static struct module *
module_load_file(const char *keyword, const char *const *search_path, size_t npath, char *err,
                 size_t errlen)
{
	char *path = module_find_file(keyword, search_path, npath);
	const struct imp_module_desc *desc;
	struct module *m;
	void *handle;
	int offered;

	if (path == NULL) {
		struct strbuf dirs = STRBUF_INIT;
		for (size_t i = 0; i < npath; i++)
			strbuf_printf(&dirs, "%s%s", i ? ", " : "", search_path[i]);
		snprintf(err, errlen, "module %s: no %s.so in %s", keyword, keyword,
		         npath ? strbuf_cstr(&dirs) : "Module_Search_Path (it is empty)");
		strbuf_free(&dirs);
		return NULL;
	}
	handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (handle == NULL) {
		const char *why = dlerror();
		snprintf(err, errlen, "module %s: %s", keyword, why ? why : path);
		free(path);
		return NULL;
	}
	dlerror();
	desc = dlsym(handle, IMP_MODULE_SYMBOL_NAME);
	if (desc == NULL) {
		snprintf(err, errlen, "module %s: %s has no %s symbol", keyword, path,
		         IMP_MODULE_SYMBOL_NAME);
		dlclose(handle);
		free(path);
		return NULL;
	}
	m = module_adopt(desc, handle, path, keyword, &offered, err, errlen);
	if (m == NULL && !offered)
		dlclose(handle);
	free(path);
	return m;
}

const struct conf_stanza_def *
module_resolve(const char *keyword, const char *const *search_path, size_t npath, char *err,
               size_t errlen)
{
	const struct imp_module_desc *builtin;
	struct module *m;
	int offered;

	if (errlen > 0)
		err[0] = '\0';
	if (!module_name_ok(keyword) || conf_option_find(keyword) != NULL)
		return NULL;            /* not a module's name: an unknown stanza */
	pthread_mutex_lock(&module_lock);
	m = module_find_loaded(keyword);
	if (m == NULL && (builtin = module_find_builtin(keyword)) != NULL)
		m = module_adopt(builtin, NULL, NULL, keyword, &offered, err, errlen);
	else if (m == NULL)
		m = module_load_file(keyword, search_path, npath, err, errlen);
	pthread_mutex_unlock(&module_lock);
	return m ? &m->def : NULL;
}

int
module_builtin_add(const struct imp_module_desc *desc)
{
	int rc = -1;

	if (desc == NULL || desc->name == NULL || !module_name_ok(desc->name) ||
	    desc->abi_version != IMP_MODULE_ABI_VERSION)
		return -1;
	pthread_mutex_lock(&module_lock);
	if (module_find_builtin(desc->name) == NULL && module_find_loaded(desc->name) == NULL) {
		struct module_builtin *b = xmalloc(sizeof(*b));
		b->desc = desc;
		b->next = module_builtins;
		module_builtins = b;
		rc = 0;
	}
	pthread_mutex_unlock(&module_lock);
	return rc;
}

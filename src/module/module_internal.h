/*
 * module_internal.h - shared between the files of src/module, not for others.
 *
 * A struct module is a loaded module: its descriptor (in its shared object
 * or in the daemon) and the stanza definition registered for it. Modules
 * are loaded once and never freed: the configuration registry keeps
 * pointers to their stanza and option definitions.
 */
#ifndef IMPETUS_MODULE_MODULE_INTERNAL_H
#define IMPETUS_MODULE_MODULE_INTERNAL_H

#include <impetus/module.h>

#include "conf/conf.h"

struct module {
	const struct imp_module_desc *desc; /* in the shared object, or linked in */
	void *handle;                       /* dlopen handle; NULL for a built-in */
	char *path;                         /* the file loaded, owned; NULL for a built-in */
	struct conf_stanza_def def;         /* registered: keyword desc->name, own scope bit */
	struct module *next;                /* every loaded module, newest first */
};

/* module_by_def: the loaded module whose stanza definition is def, or NULL. */
const struct module *module_by_def(const struct conf_stanza_def *def);

#endif

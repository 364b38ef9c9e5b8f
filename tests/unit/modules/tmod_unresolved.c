/*
 * tmod_unresolved.c - a module that needs a symbol nobody provides: dlopen
 * with RTLD_NOW fails ("undefined symbol: tmod_no_such_function").
 */
#include <stddef.h>

#include <impetus/module.h>

void tmod_no_such_function(void);

static int
tmod_unresolved_init(struct imp_module_instance *inst, char *err, size_t errlen)
{
	tmod_no_such_function();
	return 0;
}

IMP_MODULE_DEFINE = {
	.abi_version = IMP_MODULE_ABI_VERSION,
	.name = "tmod_unresolved",
	.init = tmod_unresolved_init,
};

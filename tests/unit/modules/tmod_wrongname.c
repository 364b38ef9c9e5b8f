/*
 * tmod_wrongname.c - a module whose descriptor names another module.
 */
#include <impetus/module.h>

IMP_MODULE_DEFINE = {
	.abi_version = IMP_MODULE_ABI_VERSION,
	.name = "someone_else",
};

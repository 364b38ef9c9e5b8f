/*
 * tmod_badabi.c - a module built for ABI version 7.
 */
#include <impetus/module.h>

IMP_MODULE_DEFINE = {
	.abi_version = 7,
	.name = "tmod_badabi",
};

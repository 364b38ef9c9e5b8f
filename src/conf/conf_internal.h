/*
 * conf_internal.h - shared between the files of src/conf, not for others.
 */
#ifndef IMPETUS_CONF_CONF_INTERNAL_H
#define IMPETUS_CONF_CONF_INTERNAL_H

#include "conf/conf.h"

/* conf_setting_convert: type-check v against opt and build a setting in a.
 * Returns NULL with an error (at v's location) in errs. */
struct conf_setting *conf_setting_convert(struct arena *a, const struct conf_option *opt,
                                          const struct conf_value *v,
                                          const struct conf_scope *scope,
                                          struct conf_errors *errs);
/* conf_scope_names: "global, Binding, Domain" for a scope mask. */
void conf_scope_names(uint32_t mask, struct strbuf *out);

#endif

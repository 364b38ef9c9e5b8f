/*
 * conf_parse_fuzz.c - libFuzzer target for the configuration parser and the
 * semantic layer on top of it (option types, scopes, regex domains,
 * bindings). Any input must give a tree or errors, never a crash, a leak or
 * undefined behaviour. Includes are refused (they would read the file
 * system); conf_parse_test covers them.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "conf/conf_core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conf_errors errs = { STRBUF_INIT, 0 };
	char *text = malloc(size + 1);
	struct conf *c;

	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	conf_registry_init();
	conf_parse_set_includes(0);
	c = conf_load_string(text, "<fuzz>", &errs);
	if (c != NULL) {
		/* Exercise the lookups over whatever was built. */
		for (size_t slot = 0; slot < c->nbindings; slot++) {
			conf_resolve(c, &conf_opt_max_outbound_connections, (int)slot, "d1.test");
			conf_resolve(c, &conf_opt_outbound_throttle_messages, (int)slot, "x.test");
			conf_resolve_host(c, &conf_opt_max_outbound_connections, (int)slot, "mx.test");
		}
		conf_unref(c);
	}
	conf_errors_free(&errs);
	free(text);
	return 0;
}

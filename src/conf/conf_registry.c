/*
 * conf_registry.c - the registry of option and stanza definitions.
 *
 * conf_option_register / conf_option_find / conf_option_count /
 * conf_option_at, conf_stanza_register / conf_stanza_find and
 * conf_scope_allocate. Definitions are registered on the main thread before
 * any configuration that uses them is built; the registry keeps pointers to
 * the caller's definitions (static storage in the core or a module, which
 * must outlive the registry) and owns the parsed defaults. Lookups are
 * case-insensitive hash probes.
 */
#include "conf/conf.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/conf_internal.h"
#include "lib/xalloc.h"

#define REGISTRY_HASH_SIZE 2048     /* slots; options + stanzas stay well below half */

struct registry_slot {
	const char *key;                /* NULL when empty */
	void *def;                      /* struct conf_option * or struct conf_stanza_def * */
};

static struct conf_option **reg_options;    /* by id */
static int reg_noptions;
static int reg_options_cap;
static struct registry_slot reg_option_hash[REGISTRY_HASH_SIZE];
static struct registry_slot reg_stanza_hash[REGISTRY_HASH_SIZE];
static int reg_nstanzas;
static uint32_t reg_next_scope = CONF_SCOPE_FIRST_DYNAMIC;
static struct arena reg_arena;              /* parsed defaults */
static struct conf_ast *reg_default_asts[1024]; /* kept alive: defaults point into them */
static int reg_ndefault_asts;

static uint32_t key_hash(const char *s);
static struct registry_slot *hash_probe(struct registry_slot *table, const char *key);

static uint32_t
key_hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++) {
		h ^= (uint32_t)tolower((unsigned char)*s);
		h *= 16777619u;
	}
	return h;
}

/* The slot holding key, or the empty slot where it would go. */
static struct registry_slot *
hash_probe(struct registry_slot *table, const char *key)
{
	uint32_t i = key_hash(key) & (REGISTRY_HASH_SIZE - 1);

	while (table[i].key != NULL && strcasecmp(table[i].key, key) != 0)
		i = (i + 1) & (REGISTRY_HASH_SIZE - 1);
	return &table[i];
}

static int option_register(struct conf_option *opt, int local, char *err, size_t errlen);

int
conf_option_register(struct conf_option *opt, char *err, size_t errlen)
{
	return option_register(opt, 0, err, errlen);
}

/* Register opt: into the global namespace, or (local) only into the id table. */
static int
option_register(struct conf_option *opt, int local, char *err, size_t errlen)
{
	struct registry_slot *slot = NULL;

	if (opt->name == NULL || opt->name[0] == '\0' || opt->scopes == 0) {
		snprintf(err, errlen, "option definition without a name or scopes");
		return -1;
	}
	if (reg_noptions >= REGISTRY_HASH_SIZE / 2) {
		snprintf(err, errlen, "too many options registered");
		return -1;
	}
	if (opt->type == CONF_T_ENUM && opt->enum_values == NULL) {
		snprintf(err, errlen, "option %s: an enum without values", opt->name);
		return -1;
	}
	if (!local) {
		slot = hash_probe(reg_option_hash, opt->name);
		if (slot->key != NULL) {
			snprintf(err, errlen, "option %s is already registered", opt->name);
			return -1;
		}
	}
	if (reg_arena.chunk_size == 0)
		arena_init(&reg_arena, 16384);
	opt->def_setting = NULL;
	if (opt->def != NULL) {
		struct conf_errors errs = { STRBUF_INIT, 0 };
		char *text = xasprintf("%s = %s", opt->name, opt->def);
		struct conf_ast *ast = conf_parse_string(text, strlen(text), "<default>", &errs);
		struct conf_setting *s = NULL;
		free(text);
		if (ast != NULL && ast->nitems == 1 && ast->items[0]->kind == CONF_ITEM_OPTION)
			s = conf_setting_convert(&reg_arena, opt, ast->items[0]->value, NULL, &errs);
		if (s == NULL || reg_ndefault_asts == (int)(sizeof(reg_default_asts) / sizeof(reg_default_asts[0]))) {
			snprintf(err, errlen, "option %s: bad default \"%s\": %s", opt->name, opt->def,
			         strbuf_cstr(&errs.text));
			conf_errors_free(&errs);
			conf_ast_free(ast);
			return -1;
		}
		s->loc.file = NULL;
		s->loc.line = s->loc.col = 0;
		reg_default_asts[reg_ndefault_asts++] = ast;
		opt->def_setting = s;
		conf_errors_free(&errs);
	}
	if (reg_noptions == reg_options_cap) {
		reg_options_cap = reg_options_cap ? reg_options_cap * 2 : 64;
		reg_options = xreallocarray(reg_options, (size_t)reg_options_cap, sizeof(*reg_options));
	}
	opt->id = reg_noptions;
	reg_options[reg_noptions++] = opt;
	if (slot != NULL) {
		slot->key = opt->name;
		slot->def = opt;
	}
	return 0;
}

const struct conf_option *
conf_option_find(const char *name)
{
	struct registry_slot *slot = hash_probe(reg_option_hash, name);

	return slot->key ? slot->def : NULL;
}

int
conf_option_count(void)
{
	return reg_noptions;
}

const struct conf_option *
conf_option_at(int id)
{
	return id >= 0 && id < reg_noptions ? reg_options[id] : NULL;
}

int
conf_stanza_register(const struct conf_stanza_def *def, char *err, size_t errlen)
{
	struct registry_slot *slot;

	if (def->keyword == NULL || def->scope == 0 || def->parents == 0) {
		snprintf(err, errlen, "stanza definition without a keyword, scope or parents");
		return -1;
	}
	if (reg_nstanzas >= REGISTRY_HASH_SIZE / 2) {
		snprintf(err, errlen, "too many stanzas registered");
		return -1;
	}
	if (strcasecmp(def->keyword, "include") == 0 ||
	    strcasecmp(def->keyword, "readonly_include") == 0 ||
	    conf_option_find(def->keyword) != NULL) {
		snprintf(err, errlen, "stanza keyword %s clashes with an option or include", def->keyword);
		return -1;
	}
	slot = hash_probe(reg_stanza_hash, def->keyword);
	if (slot->key != NULL) {
		snprintf(err, errlen, "stanza %s is already registered", def->keyword);
		return -1;
	}
	for (size_t i = 0; def->options != NULL && def->options[i] != NULL; i++) {
		struct conf_option *opt = def->options[i];
		for (size_t j = 0; j < i; j++) {
			if (strcasecmp(def->options[j]->name, opt->name) == 0) {
				snprintf(err, errlen, "stanza %s: option %s listed twice", def->keyword,
				         opt->name);
				return -1;
			}
		}
		if (opt->scopes == 0)
			opt->scopes = def->scope;
		if (option_register(opt, 1, err, errlen) < 0)
			return -1;
	}
	slot->key = def->keyword;
	slot->def = (void *)def;
	reg_nstanzas++;
	return 0;
}

const struct conf_stanza_def *
conf_stanza_find(const char *keyword)
{
	struct registry_slot *slot = hash_probe(reg_stanza_hash, keyword);

	return slot->key ? slot->def : NULL;
}

uint32_t
conf_scope_allocate(void)
{
	uint32_t bit = reg_next_scope;

	if (bit == 0)
		return 0;
	reg_next_scope <<= 1;       /* becomes 0 after bit 31: no more */
	return bit;
}

const struct conf_option *
conf_stanza_option_find(const struct conf_stanza_def *def, const char *name)
{
	for (size_t i = 0; def != NULL && def->options != NULL && def->options[i] != NULL; i++)
		if (strcasecmp(def->options[i]->name, name) == 0)
			return def->options[i];
	return NULL;
}

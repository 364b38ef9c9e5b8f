/*
 * conf.h - typed configuration: option registry, scope tree, generations.
 *
 * A configuration file (conf_parse.h) becomes a generation: an immutable,
 * reference-counted struct conf holding a tree of scopes (global, binding
 * groups, bindings, domains, hosts, listeners, module stanzas) and, in each
 * scope, the typed settings found there. Readers on any thread take a
 * reference (conf_current / conf_ref) and drop it when done; a reload builds
 * a new generation and swaps it in (conf_install) - a reader never sees a
 * half-built tree, and the old generation is freed when its last reader lets
 * go.
 *
 * Options are registered once, with a type, a default, the scopes where they
 * may appear and whether they may change on reload; modules add their own.
 * Unknown options and stanzas, values of the wrong type, options in the wrong
 * scope and duplicate settings are errors that name file:line:column.
 *
 * Outbound options fall back in Momentum's six steps (conf_resolve):
 *   1. a Domain inside the Binding stanza that sits inside its Binding_Group
 *   2. a Domain inside the top-level Binding stanza of the same name
 *   3. a Domain inside the Binding_Group
 *   4. the Binding itself (in-group stanza, then top-level stanza), then its
 *      Binding_Group
 *   5. a global Domain stanza
 *   6. the global value; then the option's default.
 * In each scope a literal domain stanza wins over regular expressions
 * ("/re/", tried in file order). Host options have their own chain
 * (conf_resolve_host). Throttle options resolve by reference: every lookup
 * that falls back to the same declaration gets the same setting and so the
 * same token bucket.
 */
#ifndef IMPETUS_CONF_CONF_H
#define IMPETUS_CONF_CONF_H

#include <regex.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <impetus/config.h>

#include "conf/conf_parse.h"

struct throttle;




/* A stanza kind: a keyword, the scope it opens, where it may appear. */
enum conf_naming {
	CONF_NAME_NONE,         /* Keyword { … } */
	CONF_NAME_OPTIONAL,     /* Keyword { … } or Keyword "name" { … } */
	CONF_NAME_REQUIRED,     /* Keyword "name" { … } */
};

struct conf_stanza_def {
	const char *keyword;    /* matched case-insensitively */
	uint32_t scope;         /* the CONF_SCOPE_* bit it opens */
	uint32_t parents;       /* scopes where it may appear */
	enum conf_naming naming;
	int repeatable;         /* several instances with the same name in one scope */
	struct conf_option *const *options; /* NULL-terminated options known only inside
	                                     * this stanza (a module's), or NULL; their
	                                     * scopes default to the stanza's own */
	/* check_name: validate the instance name inside a parent of kind
	 * parent_kind; 0, or -1 with a reason in err. NULL: any name. */
	int (*check_name)(const char *name, uint32_t parent_kind, char *err, size_t errlen);
};


struct conf_scope {
	uint32_t kind;                      /* CONF_SCOPE_* */
	const struct conf_stanza_def *def;  /* the stanza kind; NULL for the root */
	const char *keyword;                /* stanza keyword as defined; "global" for the root */
	const char *name;                   /* instance name, or NULL */
	struct conf_loc loc;
	const struct conf_scope *parent;
	const struct conf_setting **settings; /* sorted by option id */
	size_t nsettings;
	struct conf_scope **children;       /* stanzas inside, in file order */
	size_t nchildren;
	struct conf_scope **domains;        /* literal Domain children, sorted by name */
	size_t ndomains;
	struct conf_scope **domain_res;     /* regex Domain children, in file order */
	size_t ndomain_res;
	struct conf_scope **hosts;          /* literal Host children, sorted by name */
	size_t nhosts;
	struct conf_scope **host_res;       /* regex Host children, in file order */
	size_t nhost_res;
	int is_regex;                       /* Domain/Host given as "/re/" */
	regex_t re;                         /* compiled when is_regex */
};

/* A binding: a slot number indexes per-binding state everywhere. */
struct conf_binding {
	int present;                        /* configured in this generation */
	const char *name;
	int slot;                           /* process-wide, stable across reloads; 0 is "default" */
	size_t group_index;                 /* index into conf.groups (while building) */
	const struct conf_scope *in_group;  /* the stanza inside its group, or NULL */
	const struct conf_scope *top;       /* the top-level stanza, or NULL */
	struct conf_binding_group *group;
};

struct conf_binding_group {
	const char *name;
	const struct conf_scope *scope;     /* its stanza, or NULL ("default" unconfigured) */
	int *slots;                         /* member binding slots */
	size_t nslots;
};

struct conf {
	atomic_int refs;
	uint64_t generation;                /* 1, 2, … per process */
	char *source;                       /* file name, or the name given to a string */
	struct conf_ast *ast;               /* values point into it */
	struct arena arena;                 /* scopes, settings, tables */
	struct conf_scope *global;
	struct conf_binding *bindings;      /* indexed by slot; check .present */
	size_t nbindings;
	struct conf_binding_group *groups;  /* [0] is "default" */
	size_t ngroups;
	struct throttle **throttles;        /* every bucket, for freeing */
	size_t nthrottles;
};

#define CONF_BINDING_UNBOUND (-1)

/* Registry (main thread, before configurations that use them are built). */
int conf_option_register(struct conf_option *opt, char *err, size_t errlen);
const struct conf_option *conf_option_find(const char *name);
int conf_option_count(void);
const struct conf_option *conf_option_at(int id);
int conf_stanza_register(const struct conf_stanza_def *def, char *err, size_t errlen);
const struct conf_stanza_def *conf_stanza_find(const char *keyword);
/* A resolver for stanza keywords nobody registered (the module loader: a
 * stanza named after a module loads it). Called while a configuration is
 * built, on the thread building it, with the global Module_Search_Path. It
 * returns the stanza's definition, or NULL with a reason in err ("" when it
 * has nothing to say: the stanza is then "unknown"). */
typedef const struct conf_stanza_def *conf_stanza_resolver_fn(const char *keyword,
                                                             const char *const *search_path,
                                                             size_t npath, char *err,
                                                             size_t errlen);
void conf_set_stanza_resolver(conf_stanza_resolver_fn *fn);
/* conf_stanza_option_find: an option local to def, or NULL. */
const struct conf_option *conf_stanza_option_find(const struct conf_stanza_def *def,
                                                  const char *name);
/* conf_scope_allocate: a new scope bit for a module's stanza; 0 when none left. */
uint32_t conf_scope_allocate(void);
/* conf_registry_init: register the core options and stanzas (idempotent). */
void conf_registry_init(void);

/* Building generations. Both return NULL with errors in errs. */
struct conf *conf_load_file(const char *path, struct conf_errors *errs);
struct conf *conf_load_string(const char *text, const char *name, struct conf_errors *errs);

/* Reference counting; conf_unref frees at zero. Thread-safe. */
struct conf *conf_ref(struct conf *c);
void conf_unref(struct conf *c);

/* The running generation: conf_current returns it with a reference taken;
 * conf_install makes c current (taking over the caller's reference) and
 * drops the reference the process held on the previous one. */
struct conf *conf_current(void);
void conf_install(struct conf *c);
/* conf_try_install: install fresh (taking the caller's reference) unless it
 * changes a restart-only option of the running generation; then it is
 * dropped, the running generation stays, errs says why, and -1 returns. */
int conf_try_install(struct conf *fresh, struct conf_errors *errs);
/* conf_restart_changes: append to errs every CONF_F_RESTART option whose
 * global value differs between old and new. Returns the number found. */
int conf_restart_changes(const struct conf *old, const struct conf *new_conf,
                         struct conf_errors *errs);

/* Lookups. Each returns the setting that applies, or the option's default
 * setting, or NULL when the option is unset everywhere. */
const struct conf_setting *conf_scope_get(const struct conf_scope *s, const struct conf_option *opt);
const struct conf_setting *conf_resolve_chain(const struct conf_scope *s, const struct conf_option *opt);
const struct conf_setting *conf_resolve(const struct conf *c, const struct conf_option *opt,
                                        int binding_slot, const char *domain);
const struct conf_setting *conf_resolve_host(const struct conf *c, const struct conf_option *opt,
                                             int binding_slot, const char *host);
const struct conf_setting *conf_global(const struct conf *c, const struct conf_option *opt);

/* Scope navigation. */
const struct conf_scope *conf_scope_find_domain(const struct conf_scope *s, const char *domain);
const struct conf_scope *conf_scope_find_host(const struct conf_scope *s, const char *host);
/* conf_scope_children: the i-th child of kind `kind` (by file order), NULL past the end. */
const struct conf_scope *conf_scope_child(const struct conf_scope *s, uint32_t kind, size_t i);

/* Bindings. */
int conf_binding_slot(const struct conf *c, const char *name);      /* -1 if unknown */
const char *conf_binding_name(const struct conf *c, int slot);      /* NULL if unknown */
const struct conf_binding_group *conf_binding_group_find(const struct conf *c, const char *name);

/* conf_value_render: the value as configuration text (for messages, dumps). */
void conf_value_render(const struct conf_value *v, struct strbuf *out);
/* conf_setting_render: a setting's value as text ("unset" for NULL). */
void conf_setting_render(const struct conf_setting *s, struct strbuf *out);

#endif

/*
 * conf.c - configuration generations: building, lookups, installation.
 *
 * conf_load_file / conf_load_string turn a parsed tree into a generation
 * (scopes, typed settings, bindings, throttle buckets) or report every
 * error found; conf_ref / conf_unref count readers; conf_current /
 * conf_install swap the running generation; conf_restart_changes lists the
 * restart-only options a reload would change and conf_try_install refuses
 * such a generation; conf_scope_get,
 * conf_resolve_chain, conf_resolve (the six-step outbound fallback),
 * conf_resolve_host and conf_global look values up; conf_binding_slot /
 * conf_binding_name convert binding slots.
 *
 * A generation owns its tree, arena, compiled regexes and throttles; it is
 * immutable once built and freed by the last conf_unref.
 */
#include "conf/conf.h"

#include <ctype.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/binding_table.h"
#include "conf/conf_core.h"
#include "conf/conf_internal.h"
#include "conf/throttle.h"
#include "lib/xalloc.h"

struct conf_builder {
	struct conf *c;
	struct conf_errors *errs;
	size_t throttles_cap;
	const char *const *search_path;     /* Module_Search_Path, for the resolver */
	size_t nsearch_path;
};

struct scope_vec {
	struct conf_scope **v;
	size_t n, cap;
};

static void build_scope(struct conf_builder *b, struct conf_scope *scope,
                        struct conf_item **items, size_t nitems);
static void build_bindings(struct conf_builder *b);
static void conf_free(struct conf *c);
static int scope_name_cmp(const void *x, const void *y);
static const struct conf_scope *find_named(struct conf_scope **lit, size_t nlit,
                                           struct conf_scope **res, size_t nres,
                                           const char *name);

static conf_stanza_resolver_fn *conf_stanza_resolver;
static pthread_mutex_t conf_live_lock = PTHREAD_MUTEX_INITIALIZER;
static struct conf *conf_live;              /* the running generation */
static atomic_uint_fast64_t conf_generations;

static const char *
scope_label(const struct conf_scope *s)
{
	return s->parent == NULL ? "global scope" : s->keyword;
}

static int
setting_cmp(const void *x, const void *y)
{
	const struct conf_setting *a = *(const struct conf_setting *const *)x;
	const struct conf_setting *b = *(const struct conf_setting *const *)y;

	return (a->opt->id > b->opt->id) - (a->opt->id < b->opt->id);
}

static int
scope_name_cmp(const void *x, const void *y)
{
	const struct conf_scope *a = *(const struct conf_scope *const *)x;
	const struct conf_scope *b = *(const struct conf_scope *const *)y;

	return strcmp(a->name, b->name);
}

/* Domain and host names compare in lower case without a trailing dot. */
static char *
canonical_name(struct arena *a, const char *name)
{
	size_t len = strlen(name);
	char *p;

	if (len > 1 && name[len - 1] == '.')
		len--;
	p = arena_strndup(a, name, len);
	for (char *q = p; *q; q++)
		*q = (char)tolower((unsigned char)*q);
	return p;
}

static void
scope_vec_push(struct arena *a, struct scope_vec *vec, struct conf_scope *s)
{
	arena_grow_array(a, (void **)&vec->v, &vec->cap, vec->n, sizeof(*vec->v));
	vec->v[vec->n++] = s;
}

/*
 * Refuse the regular expressions that make glibc's regcomp() blow up in time
 * or memory: stacked repetition operators ("a++", "a*{2}") and large
 * counted repetitions, whose bounds multiply when nested. Domain and host
 * patterns never need either. Returns NULL, or what is wrong.
 */
static const char *
regex_refuse(const char *p, size_t len)
{
	uint64_t product = 1;
	int after_quant = 0, in_bracket = 0;

	if (len > 1024)
		return "longer than 1024 characters";
	for (size_t i = 0; i < len; i++) {
		char c = p[i];
		if (in_bracket) {
			if (c == ']' && in_bracket > 1)
				in_bracket = 0;
			else
				in_bracket++;
			continue;
		}
		if (c == '\\') {
			i++;
			after_quant = 0;
			continue;
		}
		if (c == '[') {
			in_bracket = 1;
			if (i + 1 < len && p[i + 1] == '^')
				i++;
			after_quant = 0;
			continue;
		}
		if (c == '*' || c == '+' || c == '?' || c == '{') {
			if (after_quant)
				return "stacked repetition operators (\"++\", \"*{n}\" …)";
			after_quant = 1;
			if (c == '{') {
				uint64_t bound = 0;
				for (i++; i < len && p[i] != '}'; i++) {
					if (p[i] >= '0' && p[i] <= '9') {
						uint64_t n = 0;
						while (i < len && p[i] >= '0' && p[i] <= '9' && n < 100000)
							n = n * 10 + (uint64_t)(p[i++] - '0');
						i--;
						if (n > bound)
							bound = n;
					}
				}
				product *= bound > 0 ? bound : 1;
				if (product > 1000)
					return "counted repetitions above 1000 in all";
			}
			continue;
		}
		after_quant = 0;
	}
	return NULL;
}

/* Compile "/re/" into s->re; returns 0 or -1 with an error. */
static int
compile_regex(struct conf_builder *b, struct conf_scope *s, const char *text,
              const struct conf_loc *loc)
{
	size_t len = strlen(text);
	const char *refused = regex_refuse(text + 1, len - 2);

	if (refused != NULL) {
		conf_error(b->errs, loc, "%s %s: regular expression refused: %s", s->keyword, text,
		           refused);
		return -1;
	}
	char *pattern = xstrndup(text + 1, len - 2);
	int rc = regcomp(&s->re, pattern, REG_EXTENDED | REG_ICASE | REG_NOSUB);

	free(pattern);
	if (rc != 0) {
		char msg[256];
		regerror(rc, &s->re, msg, sizeof(msg));
		conf_error(b->errs, loc, "%s %s: bad regular expression: %s", s->keyword, text, msg);
		return -1;
	}
	s->is_regex = 1;
	return 0;
}

static void
build_stanza(struct conf_builder *b, struct conf_scope *parent, struct conf_item *it,
             struct scope_vec *children, struct scope_vec *lits, struct scope_vec *res,
             struct scope_vec *hlits, struct scope_vec *hres)
{
	struct arena *a = &b->c->arena;
	const struct conf_stanza_def *def = conf_stanza_find(it->name);
	struct strbuf where = STRBUF_INIT;

	if (def == NULL && parent->kind == CONF_SCOPE_GLOBAL && conf_stanza_resolver != NULL) {
		char err[512] = "";
		def = conf_stanza_resolver(it->name, b->search_path, b->nsearch_path, err, sizeof(err));
		if (def == NULL && err[0] != '\0') {
			conf_error(b->errs, &it->loc, "%s", err);
			return;
		}
	}
	if (def == NULL) {
		conf_error(b->errs, &it->loc, "unknown stanza \"%s\"", it->name);
		return;
	}
	if (!(def->parents & parent->kind)) {
		conf_scope_names(def->parents, &where);
		conf_error(b->errs, &it->loc, "%s cannot appear in %s (it belongs in: %s)",
		           def->keyword, scope_label(parent), strbuf_cstr(&where));
		strbuf_free(&where);
		return;
	}
	if (def->naming == CONF_NAME_REQUIRED && it->instance == NULL) {
		conf_error(b->errs, &it->loc, "%s needs a name: %s \"name\" { … }", def->keyword,
		           def->keyword);
		return;
	}
	if (def->naming == CONF_NAME_NONE && it->instance != NULL) {
		conf_error(b->errs, &it->instance_loc, "%s takes no name: %s { … }", def->keyword,
		           def->keyword);
		return;
	}
	if (it->instance != NULL && it->instance[0] == '\0') {
		conf_error(b->errs, &it->instance_loc, "%s: the name is empty", def->keyword);
		return;
	}
	if (it->instance != NULL && def->check_name != NULL) {
		char why[256];
		if (def->check_name(it->instance, parent->kind, why, sizeof(why)) < 0) {
			conf_error(b->errs, &it->instance_loc, "%s: %s", def->keyword, why);
			return;
		}
	}

	struct conf_scope *s = arena_zalloc(a, sizeof(*s));
	s->kind = def->scope;
	s->def = def;
	s->keyword = def->keyword;
	s->loc = it->loc;
	s->parent = parent;
	if (it->instance != NULL) {
		if (def->scope == CONF_SCOPE_DOMAIN || def->scope == CONF_SCOPE_HOST) {
			size_t len = strlen(it->instance);
			if (len >= 2 && it->instance[0] == '/' && it->instance[len - 1] == '/') {
				s->name = arena_strdup(a, it->instance);
				if (compile_regex(b, s, it->instance, &it->instance_loc) < 0)
					return;
			} else {
				s->name = canonical_name(a, it->instance);
			}
		} else {
			s->name = it->instance;
		}
		if (def->scope == CONF_SCOPE_BINDING || def->scope == CONF_SCOPE_BINDING_GROUP) {
			if (strpbrk(s->name, " \t:") != NULL) {
				conf_error(b->errs, &it->instance_loc,
				           "%s name \"%s\" may not contain spaces or colons",
				           def->keyword, s->name);
				return;
			}
		}
	}
	/* Duplicates: same kind and name in the same scope. */
	if (!def->repeatable) {
		for (size_t i = 0; i < children->n; i++) {
			struct conf_scope *o = children->v[i];
			if (o->kind == s->kind &&
			    ((o->name == NULL && s->name == NULL) ||
			     (o->name != NULL && s->name != NULL && strcmp(o->name, s->name) == 0))) {
				conf_error(b->errs, &it->loc, "%s%s%s%s is already defined in this scope at %s:%d:%d",
				           def->keyword, s->name ? " \"" : "", s->name ? s->name : "",
				           s->name ? "\"" : "", o->loc.file, o->loc.line, o->loc.col);
				if (s->is_regex)
					regfree(&s->re);
				return;
			}
		}
	}
	scope_vec_push(a, children, s);
	if (s->kind == CONF_SCOPE_DOMAIN)
		scope_vec_push(a, s->is_regex ? res : lits, s);
	else if (s->kind == CONF_SCOPE_HOST)
		scope_vec_push(a, s->is_regex ? hres : hlits, s);
	build_scope(b, s, it->children, it->nchildren);
}

static void
build_scope(struct conf_builder *b, struct conf_scope *scope, struct conf_item **items,
            size_t nitems)
{
	struct arena *a = &b->c->arena;
	struct scope_vec children = { 0 }, lits = { 0 }, res = { 0 }, hlits = { 0 }, hres = { 0 };
	const struct conf_setting **settings = NULL;
	size_t nsettings = 0, cap = 0;

	for (size_t i = 0; i < nitems; i++) {
		struct conf_item *it = items[i];
		if (it->kind == CONF_ITEM_STANZA) {
			build_stanza(b, scope, it, &children, &lits, &res, &hlits, &hres);
			continue;
		}
		const struct conf_option *opt = conf_stanza_option_find(scope->def, it->name);
		if (opt == NULL)
			opt = conf_option_find(it->name);
		if (opt == NULL) {
			if (conf_stanza_find(it->name) != NULL)
				conf_error(b->errs, &it->loc, "%s is a stanza, not an option: %s { … }",
				           it->name, it->name);
			else
				conf_error(b->errs, &it->loc, "unknown option \"%s\"", it->name);
			continue;
		}
		if (!(opt->scopes & scope->kind)) {
			struct strbuf where = STRBUF_INIT;
			conf_scope_names(opt->scopes, &where);
			conf_error(b->errs, &it->loc, "%s is not allowed in %s (allowed in: %s)",
			           opt->name, scope_label(scope), strbuf_cstr(&where));
			strbuf_free(&where);
			continue;
		}
		int dup = 0;
		for (size_t j = 0; j < nsettings; j++) {
			if (settings[j]->opt == opt) {
				conf_error(b->errs, &it->loc, "%s is already set in this scope at %s:%d:%d",
				           opt->name, settings[j]->loc.file, settings[j]->loc.line,
				           settings[j]->loc.col);
				dup = 1;
				break;
			}
		}
		if (dup)
			continue;
		struct conf_setting *s = conf_setting_convert(a, opt, it->value, scope, b->errs);
		if (s == NULL)
			continue;
		s->loc = it->loc;
		if (opt->type == CONF_T_THROTTLE) {
			s->throttle = throttle_new(s->thr_count, s->thr_period_s);
			arena_grow_array(a, (void **)&b->c->throttles, &b->throttles_cap,
			                 b->c->nthrottles, sizeof(*b->c->throttles));
			b->c->throttles[b->c->nthrottles++] = s->throttle;
		}
		arena_grow_array(a, (void **)&settings, &cap, nsettings, sizeof(*settings));
		settings[nsettings++] = s;
	}
	if (nsettings > 1)
		qsort(settings, nsettings, sizeof(*settings), setting_cmp);
	scope->settings = settings;
	scope->nsettings = nsettings;
	scope->children = children.v;
	scope->nchildren = children.n;
	if (lits.n)
		qsort(lits.v, lits.n, sizeof(*lits.v), scope_name_cmp);
	if (hlits.n)
		qsort(hlits.v, hlits.n, sizeof(*hlits.v), scope_name_cmp);
	scope->domains = lits.v;
	scope->ndomains = lits.n;
	scope->domain_res = res.v;
	scope->ndomain_res = res.n;
	scope->hosts = hlits.v;
	scope->nhosts = hlits.n;
	scope->host_res = hres.v;
	scope->nhost_res = hres.n;
}

/* The entry of binding name in c, made present (slot from the process table). */
static struct conf_binding *
binding_get(struct conf_builder *b, const char *name, const struct conf_loc *loc)
{
	struct conf *c = b->c;
	int slot = binding_table_intern(name);

	if (slot < 0) {
		conf_error(b->errs, loc, "too many bindings (at most %d)", BINDING_SLOTS_MAX);
		return NULL;
	}
	if ((size_t)slot >= c->nbindings) {
		size_t n = (size_t)slot + 1;
		struct conf_binding *nb = arena_zalloc(&c->arena, n * sizeof(*nb));
		if (c->nbindings)
			memcpy(nb, c->bindings, c->nbindings * sizeof(*nb));
		c->bindings = nb;
		c->nbindings = n;
	}
	struct conf_binding *bd = &c->bindings[slot];
	if (!bd->present) {
		bd->present = 1;
		bd->name = name;
		bd->slot = slot;
	}
	return bd;
}

static void
build_bindings(struct conf_builder *b)
{
	struct conf *c = b->c;
	struct arena *a = &c->arena;
	size_t gcap = 0;

	/* Group 0 and slot 0 are "default", configured or not. */
	arena_grow_array(a, (void **)&c->groups, &gcap, 0, sizeof(*c->groups));
	memset(&c->groups[0], 0, sizeof(c->groups[0]));
	c->groups[0].name = "default";
	c->ngroups = 1;
	binding_get(b, "default", NULL);

	for (size_t i = 0; i < c->global->nchildren; i++) {
		const struct conf_scope *g = c->global->children[i];
		if (g->kind != CONF_SCOPE_BINDING_GROUP)
			continue;
		if (strcmp(g->name, "default") == 0) {
			c->groups[0].scope = g;
			continue;
		}
		arena_grow_array(a, (void **)&c->groups, &gcap, c->ngroups, sizeof(*c->groups));
		memset(&c->groups[c->ngroups], 0, sizeof(c->groups[0]));
		c->groups[c->ngroups].name = g->name;
		c->groups[c->ngroups].scope = g;
		c->ngroups++;
	}
	/* Group membership is kept as an index until the arrays stop moving. */
	for (size_t gi = 0; gi < c->ngroups; gi++) {
		const struct conf_scope *g = c->groups[gi].scope;
		for (size_t i = 0; g != NULL && i < g->nchildren; i++) {
			const struct conf_scope *s = g->children[i];
			if (s->kind != CONF_SCOPE_BINDING)
				continue;
			struct conf_binding *bd = binding_get(b, s->name, &s->loc);
			if (bd == NULL)
				continue;
			if (bd->in_group != NULL) {
				conf_error(b->errs, &s->loc,
				           "Binding \"%s\" is already a member of Binding_Group \"%s\" (%s:%d:%d); "
				           "a binding belongs to one group", s->name,
				           c->groups[bd->group_index].name,
				           bd->in_group->loc.file, bd->in_group->loc.line, bd->in_group->loc.col);
				continue;
			}
			bd->in_group = s;
			bd->group_index = gi;
		}
	}
	for (size_t i = 0; i < c->global->nchildren; i++) {
		const struct conf_scope *s = c->global->children[i];
		struct conf_binding *bd;
		if (s->kind == CONF_SCOPE_BINDING && (bd = binding_get(b, s->name, &s->loc)) != NULL)
			bd->top = s;
	}
	for (size_t i = 0; i < c->nbindings; i++)
		if (c->bindings[i].present)
			c->bindings[i].group = &c->groups[c->bindings[i].group_index];
	for (size_t gi = 0; gi < c->ngroups; gi++) {
		struct conf_binding_group *g = &c->groups[gi];
		size_t n = 0;
		for (size_t i = 0; i < c->nbindings; i++)
			if (c->bindings[i].present && c->bindings[i].group == g)
				n++;
		g->slots = arena_alloc(a, (n ? n : 1) * sizeof(int));
		for (size_t i = 0; i < c->nbindings; i++)
			if (c->bindings[i].present && c->bindings[i].group == g)
				g->slots[g->nslots++] = c->bindings[i].slot;
	}
}

void
conf_set_stanza_resolver(conf_stanza_resolver_fn *fn)
{
	conf_stanza_resolver = fn;
}

/* The global Module_Search_Path, wherever it is in the file (modules may be
 * named before it). A bad value is reported again by build_scope. */
static void
find_search_path(struct conf_builder *b, struct conf_ast *ast)
{
	struct conf_errors ignored = { STRBUF_INIT, 0 };
	const struct conf_setting *s = NULL;

	for (size_t i = 0; i < ast->nitems && s == NULL; i++) {
		struct conf_item *it = ast->items[i];
		if (it->kind == CONF_ITEM_OPTION && strcasecmp(it->name, conf_opt_module_search_path.name) == 0)
			s = conf_setting_convert(&b->c->arena, &conf_opt_module_search_path, it->value,
			                         NULL, &ignored);
	}
	conf_errors_free(&ignored);
	if (s == NULL)
		s = conf_opt_module_search_path.def_setting;
	if (s != NULL) {
		b->search_path = s->list;
		b->nsearch_path = s->nlist;
	}
}

static struct conf *
conf_build(struct conf_ast *ast, const char *source, struct conf_errors *errs)
{
	struct conf_builder b = { 0 };
	struct conf *c = xcalloc(1, sizeof(*c));
	int before = errs->count;

	conf_registry_init();
	atomic_init(&c->refs, 1);
	arena_init(&c->arena, 32768);
	c->ast = ast;
	c->source = xstrdup(source);
	c->global = arena_zalloc(&c->arena, sizeof(*c->global));
	c->global->kind = CONF_SCOPE_GLOBAL;
	c->global->keyword = "global";
	c->global->loc.file = c->source;
	b.c = c;
	b.errs = errs;
	find_search_path(&b, ast);
	build_scope(&b, c->global, ast->items, ast->nitems);
	build_bindings(&b);
	if (errs->count != before) {
		conf_free(c);
		return NULL;
	}
	c->generation = atomic_fetch_add(&conf_generations, 1) + 1;
	return c;
}

struct conf *
conf_load_file(const char *path, struct conf_errors *errs)
{
	struct conf_ast *ast = conf_parse_file(path, errs);

	return ast ? conf_build(ast, path, errs) : NULL;
}

struct conf *
conf_load_string(const char *text, const char *name, struct conf_errors *errs)
{
	struct conf_ast *ast = conf_parse_string(text, strlen(text), name, errs);

	return ast ? conf_build(ast, name, errs) : NULL;
}

static void
scope_free_regexes(struct conf_scope *s)
{
	if (s->is_regex)
		regfree(&s->re);
	for (size_t i = 0; i < s->nchildren; i++)
		scope_free_regexes(s->children[i]);
}

static void
conf_free(struct conf *c)
{
	if (c->global != NULL)
		scope_free_regexes(c->global);
	for (size_t i = 0; i < c->nthrottles; i++)
		throttle_free(c->throttles[i]);
	arena_free(&c->arena);
	conf_ast_free(c->ast);
	free(c->source);
	free(c);
}

struct conf *
conf_ref(struct conf *c)
{
	if (c != NULL)
		atomic_fetch_add(&c->refs, 1);
	return c;
}

void
conf_unref(struct conf *c)
{
	if (c != NULL && atomic_fetch_sub(&c->refs, 1) == 1)
		conf_free(c);
}

struct conf *
conf_current(void)
{
	struct conf *c;

	pthread_mutex_lock(&conf_live_lock);
	c = conf_ref(conf_live);
	pthread_mutex_unlock(&conf_live_lock);
	return c;
}

void
conf_install(struct conf *c)
{
	struct conf *old;

	/* Publish the running binding groups for config_get_binding_group_name_from_id. */
	for (size_t i = 0; c != NULL && i < c->nbindings; i++)
		if (c->bindings[i].present)
			binding_table_set_group((int)i, c->bindings[i].group->name);
	pthread_mutex_lock(&conf_live_lock);
	old = conf_live;
	conf_live = c;
	pthread_mutex_unlock(&conf_live_lock);
	conf_unref(old);
}

int
conf_try_install(struct conf *fresh, struct conf_errors *errs)
{
	struct conf *old = conf_current();

	if (old != NULL && conf_restart_changes(old, fresh, errs) > 0) {
		conf_unref(old);
		conf_unref(fresh);
		return -1;
	}
	conf_unref(old);
	conf_install(fresh);
	return 0;
}

/* The first setting of opt anywhere in the tree, in file order. */
static const struct conf_setting *
find_setting(const struct conf_scope *s, const struct conf_option *opt)
{
	const struct conf_setting *set = conf_scope_get(s, opt);

	for (size_t i = 0; set == NULL && i < s->nchildren; i++)
		set = find_setting(s->children[i], opt);
	return set;
}

/* Render every setting of opt in the tree as "path = value" lines. */
static void
collect_settings(const struct conf_scope *s, const struct conf_option *opt, struct strbuf *path,
                 struct strbuf *out)
{
	size_t mark = path->len;
	const struct conf_setting *set;

	if (s->parent != NULL)
		strbuf_printf(path, "%s%s%s ", s->keyword, s->name ? ":" : "", s->name ? s->name : "");
	for (size_t i = 0; i < s->nsettings; i++) {
		set = s->settings[i];
		if (set->opt != opt)
			continue;
		strbuf_printf(out, "%s%s = ", strbuf_cstr(path), opt->name);
		conf_setting_render(set, out);
		strbuf_putc(out, '\n');
	}
	for (size_t i = 0; i < s->nchildren; i++)
		collect_settings(s->children[i], opt, path, out);
	path->len = mark;
	if (path->data)
		path->data[mark] = '\0';
}

int
conf_restart_changes(const struct conf *old, const struct conf *new_conf, struct conf_errors *errs)
{
	int n = 0;

	for (int id = 0; id < conf_option_count(); id++) {
		const struct conf_option *opt = conf_option_at(id);
		struct strbuf path = STRBUF_INIT, a = STRBUF_INIT, b = STRBUF_INIT;
		if (!(opt->flags & CONF_F_RESTART))
			continue;
		collect_settings(old->global, opt, &path, &a);
		strbuf_reset(&path);
		collect_settings(new_conf->global, opt, &path, &b);
		if (strcmp(strbuf_cstr(&a), strbuf_cstr(&b)) != 0) {
			/* Point at the new setting, or say it was removed. */
			const struct conf_setting *where = find_setting(new_conf->global, opt);
			struct conf_loc loc = { new_conf->source, 0, 0 };
			if (where != NULL)
				loc = where->loc;
			conf_error(errs, &loc, "%s cannot change while impetusd runs%s; restart it to apply",
			           opt->name, where ? "" : " (it was removed)");
			n++;
		}
		strbuf_free(&path);
		strbuf_free(&a);
		strbuf_free(&b);
	}
	return n;
}

const struct conf_setting *
conf_scope_get(const struct conf_scope *s, const struct conf_option *opt)
{
	size_t lo = 0, hi;

	if (s == NULL)
		return NULL;
	hi = s->nsettings;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int id = s->settings[mid]->opt->id;
		if (id == opt->id)
			return s->settings[mid];
		if (id < opt->id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

const struct conf_setting *
conf_resolve_chain(const struct conf_scope *s, const struct conf_option *opt)
{
	for (; s != NULL; s = s->parent) {
		const struct conf_setting *set = conf_scope_get(s, opt);
		if (set != NULL)
			return set;
	}
	return opt->def_setting;
}

const struct conf_setting *
conf_global(const struct conf *c, const struct conf_option *opt)
{
	const struct conf_setting *set = conf_scope_get(c->global, opt);

	return set ? set : opt->def_setting;
}

static const struct conf_scope *
find_named(struct conf_scope **lit, size_t nlit, struct conf_scope **res, size_t nres,
           const char *name)
{
	char buf[256];
	size_t len = strlen(name);

	if (len > 1 && name[len - 1] == '.')
		len--;
	if (len >= sizeof(buf))
		len = sizeof(buf) - 1;
	for (size_t i = 0; i < len; i++)
		buf[i] = (char)tolower((unsigned char)name[i]);
	buf[len] = '\0';

	size_t lo = 0, hi = nlit;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int cmp = strcmp(buf, lit[mid]->name);
		if (cmp == 0)
			return lit[mid];
		if (cmp > 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = 0; i < nres; i++)
		if (regexec(&res[i]->re, buf, 0, NULL, 0) == 0)
			return res[i];
	return NULL;
}

const struct conf_scope *
conf_scope_find_domain(const struct conf_scope *s, const char *domain)
{
	if (s == NULL || domain == NULL)
		return NULL;
	return find_named(s->domains, s->ndomains, s->domain_res, s->ndomain_res, domain);
}

const struct conf_scope *
conf_scope_find_host(const struct conf_scope *s, const char *host)
{
	if (s == NULL || host == NULL)
		return NULL;
	return find_named(s->hosts, s->nhosts, s->host_res, s->nhost_res, host);
}

const struct conf_scope *
conf_scope_child(const struct conf_scope *s, uint32_t kind, size_t i)
{
	for (size_t j = 0; s != NULL && j < s->nchildren; j++)
		if (s->children[j]->kind == kind && i-- == 0)
			return s->children[j];
	return NULL;
}

static const struct conf_binding *
binding_at(const struct conf *c, int slot)
{
	if (slot < 0 || (size_t)slot >= c->nbindings || !c->bindings[slot].present)
		return NULL;
	return &c->bindings[slot];
}

const struct conf_setting *
conf_resolve(const struct conf *c, const struct conf_option *opt, int binding_slot,
             const char *domain)
{
	const struct conf_binding *bd = binding_at(c, binding_slot);
	const struct conf_scope *group = bd ? bd->group->scope : NULL;
	const struct conf_setting *s;

	if (domain != NULL && bd != NULL) {
		/* 1. domain in the binding inside its group; 2. domain in the
		 * top-level binding; 3. domain in the group. */
		if ((s = conf_scope_get(conf_scope_find_domain(bd->in_group, domain), opt)) != NULL)
			return s;
		if ((s = conf_scope_get(conf_scope_find_domain(bd->top, domain), opt)) != NULL)
			return s;
		if ((s = conf_scope_get(conf_scope_find_domain(group, domain), opt)) != NULL)
			return s;
	}
	if (bd != NULL) {
		/* 4. the binding itself, then its group. */
		if ((s = conf_scope_get(bd->in_group, opt)) != NULL)
			return s;
		if ((s = conf_scope_get(bd->top, opt)) != NULL)
			return s;
		if ((s = conf_scope_get(group, opt)) != NULL)
			return s;
	}
	/* 5. a global domain stanza; 6. the global value. */
	if (domain != NULL &&
	    (s = conf_scope_get(conf_scope_find_domain(c->global, domain), opt)) != NULL)
		return s;
	return conf_global(c, opt);
}

const struct conf_setting *
conf_resolve_host(const struct conf *c, const struct conf_option *opt, int binding_slot,
                  const char *host)
{
	const struct conf_binding *bd = binding_at(c, binding_slot);
	const struct conf_setting *s;

	if (bd != NULL) {
		if ((s = conf_scope_get(conf_scope_find_host(bd->in_group, host), opt)) != NULL)
			return s;
		if ((s = conf_scope_get(conf_scope_find_host(bd->group->scope, host), opt)) != NULL)
			return s;
		if ((s = conf_scope_get(conf_scope_find_host(bd->top, host), opt)) != NULL)
			return s;
	}
	return conf_scope_get(conf_scope_find_host(c->global, host), opt);
}

int
conf_binding_slot(const struct conf *c, const char *name)
{
	for (size_t i = 0; i < c->nbindings; i++)
		if (c->bindings[i].present && strcmp(c->bindings[i].name, name) == 0)
			return (int)i;
	return -1;
}

const char *
conf_binding_name(const struct conf *c, int slot)
{
	const struct conf_binding *bd = binding_at(c, slot);

	return bd ? bd->name : NULL;
}

const struct conf_binding_group *
conf_binding_group_find(const struct conf *c, const char *name)
{
	for (size_t i = 0; i < c->ngroups; i++)
		if (strcmp(c->groups[i].name, name) == 0)
			return &c->groups[i];
	return NULL;
}

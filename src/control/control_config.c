/*
 * control_config.c - the console's "config" verbs.
 *
 *   config set [scope…] <option> <value>   a new generation with the change
 *   config get [scope…] <option>           the value set in exactly that scope
 *   config eval [scope…] <option>          the value that applies there, and
 *                                          the scope (and file:line) it comes from
 *   config reload                          re-read the file (SIGHUP's path)
 *
 * scope: any of "global", "binding_group <g>", "binding <b>", "domain <d>",
 * in that order (Momentum's console syntax). A binding that lives in a
 * Binding_Group is addressed inside it.
 *
 * "config set" writes no file. It renders the running generation's syntax
 * tree (includes already expanded) back to text with the option set, or
 * replaced, in the named stanza (created when missing), builds a new
 * generation from that text (conf_load_string: every check of a file
 * applies), and hands it to the daemon, which installs it exactly as a
 * reload would (restart-only options refused, modules reloaded, the queues
 * told). Changes accumulate across "config set"s; "config reload" (or
 * SIGHUP) re-reads the file and so drops them, as Momentum does for
 * changes that were not written back.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/conf.h"
#include "conf/conf_parse.h"
#include "control/control_internal.h"
#include "lib/xalloc.h"

/* Appended to the source name of a generation built by "config set": its
 * line numbers are those of the rendered text, not of the file. */
#define CONSOLE_SUFFIX " (console)"

struct scope_path {
	const char *group;                  /* Binding_Group instance, or NULL */
	const char *binding;                /* Binding instance, or NULL */
	const char *domain;                 /* Domain instance, or NULL */
	int global;                         /* "global" was named */
};

struct path_step {
	const char *keyword;
	const char *instance;
};

static int parse_scope(struct control_cmd *cmd, int argc, char **argv, int *i,
                       struct scope_path *sp);
static void render_items(struct conf_item **items, size_t n, const struct path_step *path,
                         size_t npath, const char *opt, const char *value, int depth,
                         struct strbuf *out);

/* Reads the scope words from argv[*i]; leaves *i at the option name. */
static int
parse_scope(struct control_cmd *cmd, int argc, char **argv, int *i, struct scope_path *sp)
{
	memset(sp, 0, sizeof(*sp));
	while (*i < argc) {
		const char *w = argv[*i];
		const char **slot = NULL;
		if (strcasecmp(w, "global") == 0) {
			sp->global = 1;
			(*i)++;
			continue;
		}
		if (strcasecmp(w, "binding_group") == 0)
			slot = &sp->group;
		else if (strcasecmp(w, "binding") == 0)
			slot = &sp->binding;
		else if (strcasecmp(w, "domain") == 0)
			slot = &sp->domain;
		else
			return 0;
		if (*i + 1 >= argc) {
			control_cmd_fail(cmd, "config: %s needs a name", w);
			return -1;
		}
		*slot = argv[*i + 1];
		*i += 2;
	}
	return 0;
}

static void
quote(const char *s, struct strbuf *out)
{
	strbuf_putc(out, '"');
	for (; *s; s++) {
		switch (*s) {
		case '"': strbuf_puts(out, "\\\""); break;
		case '\\': strbuf_puts(out, "\\\\"); break;
		case '\n': strbuf_puts(out, "\\n"); break;
		case '\t': strbuf_puts(out, "\\t"); break;
		case '\r': strbuf_puts(out, "\\r"); break;
		default: strbuf_putc(out, *s); break;
		}
	}
	strbuf_putc(out, '"');
}

/* A value typed on the console: a list or parameters as written, else one word. */
static void
render_value_text(const char *v, struct strbuf *out)
{
	if (v[0] == '(' || v[0] == '[') {
		strbuf_puts(out, v);
		return;
	}
	for (const char *p = v; *p; p++)
		if (strchr(" \t\r\n#\"'={}[]()\\", *p) != NULL) {
			quote(v, out);
			return;
		}
	if (v[0] == '\0' || strncmp(v, "/*", 2) == 0)
		quote(v, out);
	else
		strbuf_puts(out, v);
}

static void
indent(int depth, struct strbuf *out)
{
	for (int i = 0; i < depth; i++)
		strbuf_puts(out, "  ");
}

/* The stanzas of path (from its first step) holding opt = value, as new text. */
static void
render_new(const struct path_step *path, size_t npath, const char *opt, const char *value,
           int depth, struct strbuf *out)
{
	if (npath == 0) {
		indent(depth, out);
		strbuf_printf(out, "%s = ", opt);
		render_value_text(value, out);
		strbuf_putc(out, '\n');
		return;
	}
	indent(depth, out);
	strbuf_printf(out, "%s ", path[0].keyword);
	quote(path[0].instance, out);
	strbuf_puts(out, " {\n");
	render_new(path + 1, npath - 1, opt, value, depth + 1, out);
	indent(depth, out);
	strbuf_puts(out, "}\n");
}

static void
render_items(struct conf_item **items, size_t n, const struct path_step *path, size_t npath,
             const char *opt, const char *value, int depth, struct strbuf *out)
{
	int placed = 0;

	for (size_t i = 0; i < n; i++) {
		struct conf_item *it = items[i];
		indent(depth, out);
		if (it->kind == CONF_ITEM_OPTION) {
			strbuf_printf(out, "%s = ", it->name);
			if (npath == 0 && opt != NULL && strcasecmp(it->name, opt) == 0 && !placed) {
				render_value_text(value, out);
				placed = 1;
			} else {
				conf_value_render(it->value, out);
			}
			strbuf_putc(out, '\n');
			continue;
		}
		int on_path = npath > 0 && opt != NULL && !placed &&
		              strcasecmp(it->name, path[0].keyword) == 0 && it->instance != NULL &&
		              strcmp(it->instance, path[0].instance) == 0;
		strbuf_puts(out, it->name);
		if (it->instance != NULL) {
			strbuf_putc(out, ' ');
			quote(it->instance, out);
		}
		strbuf_puts(out, " {\n");
		if (on_path) {
			render_items(it->children, it->nchildren, path + 1, npath - 1, opt, value,
			             depth + 1, out);
			placed = 1;
		} else {
			render_items(it->children, it->nchildren, NULL, 0, NULL, NULL, depth + 1, out);
		}
		indent(depth, out);
		strbuf_puts(out, "}\n");
	}
	if (opt != NULL && !placed)
		render_new(path, npath, opt, value, depth, out);
}

/* The stanza path of sp in c; -1 after answering an error. */
static int
scope_steps(struct control_cmd *cmd, const struct conf *c, const struct scope_path *sp,
            struct path_step *steps, size_t *n)
{
	*n = 0;
	if (sp->group != NULL) {
		if (conf_binding_group_find(c, sp->group) == NULL) {
			control_cmd_fail(cmd, "config: unknown binding_group \"%s\"", sp->group);
			return -1;
		}
		steps[(*n)++] = (struct path_step){ "Binding_Group", sp->group };
	}
	if (sp->binding != NULL) {
		int slot = conf_binding_slot(c, sp->binding);
		if (slot < 0) {
			control_cmd_fail(cmd, "config: unknown binding \"%s\"", sp->binding);
			return -1;
		}
		const struct conf_binding *bd = &c->bindings[slot];
		if (sp->group == NULL && bd->in_group != NULL)
			steps[(*n)++] = (struct path_step){ "Binding_Group", bd->group->name };
		if (sp->group != NULL && strcmp(bd->group->name, sp->group) != 0) {
			control_cmd_fail(cmd, "config: binding \"%s\" is not in binding_group \"%s\"",
			                 sp->binding, sp->group);
			return -1;
		}
		steps[(*n)++] = (struct path_step){ "Binding", sp->binding };
	}
	if (sp->domain != NULL)
		steps[(*n)++] = (struct path_step){ "Domain", sp->domain };
	return 0;
}

static void
config_set(struct control_cmd *cmd, int argc, char **argv)
{
	const struct control_ops *ops = control_ops_get();
	struct conf_errors errs = { STRBUF_INIT, 0 };
	struct scope_path sp;
	struct path_step steps[4];
	size_t nsteps;
	struct strbuf text = STRBUF_INIT;
	struct conf *c, *fresh;
	char *name;
	int i = 2;

	if (parse_scope(cmd, argc, argv, &i, &sp) < 0)
		return;
	if (argc - i != 2) {
		control_cmd_fail(cmd, "usage: config set [global] [binding_group g] [binding b] "
		                 "[domain d] <option> <value>");
		return;
	}
	if (conf_option_find(argv[i]) == NULL) {
		control_cmd_fail(cmd, "config: unknown option \"%s\"", argv[i]);
		return;
	}
	c = conf_current();
	if (scope_steps(cmd, c, &sp, steps, &nsteps) < 0) {
		conf_unref(c);
		return;
	}
	render_items(c->ast->items, c->ast->nitems, steps, nsteps, argv[i], argv[i + 1], 0, &text);
	{
		size_t sl = strlen(c->source), tl = strlen(CONSOLE_SUFFIX);
		int marked = sl >= tl && strcmp(c->source + sl - tl, CONSOLE_SUFFIX) == 0;
		name = xasprintf("%s%s", c->source, marked ? "" : CONSOLE_SUFFIX);
	}
	conf_unref(c);
	fresh = conf_load_string(strbuf_cstr(&text), name, &errs);
	free(name);
	strbuf_free(&text);
	if (fresh == NULL) {
		char *e = strbuf_steal(&errs.text), *nl = strchr(e, '\n');
		if (nl != NULL)
			*nl = '\0';
		/* The location is in the rendered text: the reason is what matters. */
		const char *why = strstr(e, "error: ");
		control_cmd_fail(cmd, "config set refused: %s", why != NULL ? why + 7 : e);
		free(e);
		conf_errors_free(&errs);
		return;
	}
	conf_errors_free(&errs);
	if (ops->install == NULL || ops->install(ops->arg, fresh, control_cmd_out(cmd)) < 0) {
		char *e = strbuf_steal(control_cmd_out(cmd));
		control_cmd_fail(cmd, "config set refused: %s", e);
		free(e);
		return;
	}
	strbuf_reset(control_cmd_out(cmd));
	c = conf_current();
	strbuf_printf(control_cmd_out(cmd), "%s set (generation %" PRIu64 ")\n",
	              conf_option_find(argv[i])->name, c->generation);
	conf_unref(c);
	control_cmd_done(cmd, 0);
}

/* "Binding_Group "g" > Binding "b"" for a setting's scope. */
static void
scope_describe(const struct conf_scope *s, struct strbuf *out)
{
	const struct conf_scope *chain[8];
	size_t n = 0;

	for (; s != NULL && s->parent != NULL && n < 8; s = s->parent)
		chain[n++] = s;
	if (n == 0) {
		strbuf_puts(out, "global");
		return;
	}
	while (n-- > 0) {
		strbuf_puts(out, chain[n]->keyword);
		if (chain[n]->name != NULL)
			strbuf_printf(out, " \"%s\"", chain[n]->name);
		if (n > 0)
			strbuf_puts(out, " > ");
	}
}

static void
config_show(struct control_cmd *cmd, int argc, char **argv, int eval)
{
	struct strbuf *o = control_cmd_out(cmd);
	const struct conf_option *opt;
	const struct conf_setting *s = NULL;
	const struct conf_scope *scope = NULL;
	struct scope_path sp;
	struct conf *c;
	int i = 2, slot = -1;

	if (parse_scope(cmd, argc, argv, &i, &sp) < 0)
		return;
	if (argc - i != 1) {
		control_cmd_fail(cmd, "usage: config %s [global] [binding_group g] [binding b] "
		                 "[domain d] <option>", argv[1]);
		return;
	}
	if ((opt = conf_option_find(argv[i])) == NULL) {
		control_cmd_fail(cmd, "config: unknown option \"%s\"", argv[i]);
		return;
	}
	c = conf_current();
	scope = c->global;
	if (sp.group != NULL) {
		const struct conf_binding_group *g = conf_binding_group_find(c, sp.group);
		if (g == NULL) {
			conf_unref(c);
			control_cmd_fail(cmd, "config: unknown binding_group \"%s\"", sp.group);
			return;
		}
		scope = g->scope;
	}
	if (sp.binding != NULL) {
		if ((slot = conf_binding_slot(c, sp.binding)) < 0) {
			conf_unref(c);
			control_cmd_fail(cmd, "config: unknown binding \"%s\"", sp.binding);
			return;
		}
		const struct conf_binding *bd = &c->bindings[slot];
		scope = bd->in_group != NULL ? bd->in_group : bd->top;
	}
	if (sp.domain != NULL)
		scope = scope != NULL ? conf_scope_find_domain(scope, sp.domain) : NULL;
	if (eval) {
		if (sp.domain != NULL || sp.binding != NULL)
			s = conf_resolve(c, opt, slot, sp.domain);
		else if (sp.group != NULL)
			s = scope != NULL ? conf_resolve_chain(scope, opt) : conf_global(c, opt);
		else
			s = conf_global(c, opt);
		if (s == NULL)
			s = opt->def_setting;
	} else {
		s = conf_scope_get(scope, opt);
	}
	strbuf_printf(o, "%s = ", opt->name);
	if (s == NULL) {
		strbuf_puts(o, eval ? "unset" : "unset in this scope");
	} else {
		conf_setting_render(s, o);
		if (s->scope == NULL) {
			strbuf_puts(o, "  (default)");
		} else {
			strbuf_puts(o, "  (from ");
			scope_describe(s->scope, o);
			if (s->loc.file != NULL)
				strbuf_printf(o, " at %s:%d", s->loc.file, s->loc.line);
			strbuf_putc(o, ')');
		}
	}
	strbuf_putc(o, '\n');
	conf_unref(c);
	control_cmd_done(cmd, 0);
}

static void
config_reload(struct control_cmd *cmd)
{
	const struct control_ops *ops = control_ops_get();
	struct strbuf *o = control_cmd_out(cmd);

	if (ops->reload == NULL || ops->reload(ops->arg, o) < 0) {
		char *e = strbuf_steal(o);
		control_cmd_fail(cmd, "reload refused: %s", e);
		free(e);
		return;
	}
	struct conf *c = conf_current();
	strbuf_reset(o);
	strbuf_printf(o, "configuration reloaded from %s (generation %" PRIu64 ")\n", c->source,
	              c->generation);
	conf_unref(c);
	control_cmd_done(cmd, 0);
}

void
control_config(struct control_cmd *cmd, int argc, char **argv)
{
	if (argc >= 2 && strcasecmp(argv[1], "set") == 0)
		config_set(cmd, argc, argv);
	else if (argc >= 2 && strcasecmp(argv[1], "get") == 0)
		config_show(cmd, argc, argv, 0);
	else if (argc >= 2 && strcasecmp(argv[1], "eval") == 0)
		config_show(cmd, argc, argv, 1);
	else if (argc == 2 && strcasecmp(argv[1], "reload") == 0)
		config_reload(cmd);
	else
		control_cmd_fail(cmd, "usage: config set|get|eval [scope…] <option> [value] | "
		                 "config reload");
}

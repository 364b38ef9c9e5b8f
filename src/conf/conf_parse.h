/*
 * conf_parse.h - the syntax of Momentum's ecelerity.conf, as a raw tree.
 *
 * The parser knows nothing of option names or scopes; conf.c gives the tree
 * its meaning. Grammar:
 *
 *   file    := item*
 *   item    := WORD '=' value                       option
 *            | WORD [STRING | WORD] '{' item* '}'   stanza, with or without instance
 *            | ('include' | 'readonly_include') (STRING | WORD)
 *   value   := STRING | WORD | '(' value* ')' | '[' ((WORD | STRING) '=' value)* ']'
 *
 * Comments: '#' to end of line, and non-nesting C comments. Strings in
 * double or single quotes, with backslash escapes \n \t \r \\ \" \'; any other
 * backslash stays as written, so "/^mx\.example\.test$/" means what it says. A bare
 * WORD is any run of characters other than white space and # " ' = { } [ ]
 * ( ), and it may not start a C comment. An include names a file or a
 * directory (its non-hidden regular files, in alphabetical order); relative
 * names are taken from the including file's directory.
 *
 * Every node carries file:line:column. All nodes live in the tree's arena
 * and die with conf_ast_free().
 */
#ifndef IMPETUS_CONF_CONF_PARSE_H
#define IMPETUS_CONF_CONF_PARSE_H

#include <stddef.h>

#include <impetus/config.h>

#include "lib/arena.h"
#include "lib/strbuf.h"


enum conf_value_kind {
	CONF_VAL_STRING,    /* a quoted string or a bare word */
	CONF_VAL_LIST,      /* ( v v … ) */
	CONF_VAL_PARAMS,    /* [ k = v … ] */
};

struct conf_param;

struct conf_value {
	enum conf_value_kind kind;
	struct conf_loc loc;
	char *str;                   /* STRING: the text, quotes and escapes removed */
	int quoted;                  /* STRING: written in quotes */
	struct conf_value **items;   /* LIST: the elements */
	size_t nitems;
	struct conf_param *params;   /* PARAMS: the pairs, in file order */
	size_t nparams;
};

struct conf_param {
	char *key;                   /* as written */
	struct conf_loc loc;
	struct conf_value *value;
};

enum conf_item_kind {
	CONF_ITEM_OPTION,
	CONF_ITEM_STANZA,
};

struct conf_item {
	enum conf_item_kind kind;
	struct conf_loc loc;          /* of the name */
	char *name;                   /* option name or stanza keyword, as written */
	struct conf_value *value;     /* OPTION: its value */
	char *instance;               /* STANZA: instance name, or NULL */
	struct conf_loc instance_loc; /* STANZA: where the instance name is */
	struct conf_item **children;  /* STANZA: the body, in file order */
	size_t nchildren;
};

struct conf_ast {
	struct arena arena;           /* owns every node and string */
	struct conf_item **items;     /* top-level items, includes expanded */
	size_t nitems;
	char **files;                 /* every file read, for reload checks */
	size_t nfiles;
	size_t files_cap;             /* allocated slots in files */
};

/* conf_errors: accumulated diagnostics, "file:line:col: error: text\n" each. */
struct conf_errors {
	struct strbuf text;
	int count;
};

#define CONF_ERRORS_MAX 50

void conf_error(struct conf_errors *e, const struct conf_loc *loc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void conf_errors_free(struct conf_errors *e);

/* conf_parse_file: parse path and its includes. Returns a tree (the caller
 * frees it with conf_ast_free), or NULL with at least one error in errs. */
struct conf_ast *conf_parse_file(const char *path, struct conf_errors *errs);
/* conf_parse_string: parse text as if read from a file named name; includes
 * are resolved against the working directory. */
struct conf_ast *conf_parse_string(const char *text, size_t len, const char *name,
                                   struct conf_errors *errs);
void conf_ast_free(struct conf_ast *ast);
/* conf_parse_set_includes: allow (1, the default) or refuse (0) include;
 * the fuzzer refuses, so that no input can make it read files. */
void conf_parse_set_includes(int allowed);

#endif

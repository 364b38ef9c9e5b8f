/*
 * conf_parse.c - lexer and recursive-descent parser for ecelerity.conf.
 *
 * conf_parse_file / conf_parse_string build a struct conf_ast (grammar in
 * conf_parse.h); conf_ast_free releases it; conf_error / conf_errors_free
 * collect diagnostics. A syntax error stops the parse of the whole tree (the
 * position of later errors would be guesses); the error names file, line,
 * column and what was expected. Nesting is limited (CONF_DEPTH_MAX) so that
 * hostile input cannot exhaust the stack, and so are includes (depth, cycles)
 * and file sizes. Everything allocated belongs to the tree's arena.
 */
#include "conf/conf_parse.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/xalloc.h"

#define CONF_DEPTH_MAX 64               /* nested stanzas, lists, params */
#define CONF_INCLUDE_DEPTH_MAX 16       /* nested includes */
#define CONF_FILE_MAX (16u << 20)       /* bytes per file */

enum conf_tok {
	TOK_EOF,
	TOK_WORD,
	TOK_STRING,
	TOK_EQ,
	TOK_LBRACE,
	TOK_RBRACE,
	TOK_LPAREN,
	TOK_RPAREN,
	TOK_LBRACK,
	TOK_RBRACK,
	TOK_ERROR,
};

struct conf_token {
	enum conf_tok kind;
	struct conf_loc loc;
	char *text;                 /* WORD, STRING: arena string */
};

struct conf_lexer {
	const char *buf;            /* file contents, not owned */
	size_t len;                 /* bytes in buf */
	size_t pos;                 /* next byte to read */
	int line;                   /* 1-based line of buf[pos] */
	int col;                    /* 1-based column of buf[pos] */
	const char *file;           /* arena string */
	const char *dir;            /* directory for relative includes, arena string */
};

struct conf_parser {
	struct conf_ast *ast;
	struct conf_errors *errs;
	struct conf_lexer lx;
	struct conf_token tok;      /* lookahead */
	int depth;                  /* current nesting */
	int include_depth;          /* current include nesting */
	char **include_stack;       /* realpaths of open files, for cycles */
	int failed;                 /* a syntax error was reported */
};

struct conf_item_vec {
	struct conf_item **v;
	size_t n;
	size_t cap;
};

static void lex_next(struct conf_parser *p);
static const char *tok_name(enum conf_tok kind);
static int parse_items(struct conf_parser *p, struct conf_item_vec *out, int in_stanza);
static struct conf_value *parse_value(struct conf_parser *p);
static int parse_include(struct conf_parser *p, const char *name,
                         const struct conf_loc *loc, struct conf_item_vec *out);
static int parse_buffer(struct conf_parser *p, const char *buf, size_t len,
                        const char *file, struct conf_item_vec *out);
static int read_file(const char *path, char **buf, size_t *len, char *err, size_t errlen);
static struct conf_ast *ast_new(void);

static int conf_includes_allowed = 1;   /* off in the fuzzer: no file system access */

void
conf_parse_set_includes(int allowed)
{
	conf_includes_allowed = allowed;
}
static void ast_add_file(struct conf_ast *ast, const char *path);

void
conf_error(struct conf_errors *e, const struct conf_loc *loc, const char *fmt, ...)
{
	va_list ap;

	e->count++;
	if (e->count > CONF_ERRORS_MAX)
		return;
	if (loc != NULL && loc->file != NULL)
		strbuf_printf(&e->text, "%s:%d:%d: error: ", loc->file, loc->line, loc->col);
	else
		strbuf_puts(&e->text, "error: ");
	va_start(ap, fmt);
	strbuf_vprintf(&e->text, fmt, ap);
	va_end(ap);
	strbuf_putc(&e->text, '\n');
	if (e->count == CONF_ERRORS_MAX)
		strbuf_puts(&e->text, "error: too many errors; stopping here\n");
}

void
conf_errors_free(struct conf_errors *e)
{
	strbuf_free(&e->text);
	e->count = 0;
}

static struct conf_ast *
ast_new(void)
{
	struct conf_ast *ast = xcalloc(1, sizeof(*ast));

	arena_init(&ast->arena, 32768);
	return ast;
}

void
conf_ast_free(struct conf_ast *ast)
{
	if (ast == NULL)
		return;
	arena_free(&ast->arena);
	free(ast);
}

static void
ast_add_file(struct conf_ast *ast, const char *path)
{
	arena_grow_array(&ast->arena, (void **)&ast->files, &ast->files_cap, ast->nfiles,
	                 sizeof(*ast->files));
	ast->files[ast->nfiles++] = arena_strdup(&ast->arena, path);
}

static int
is_word_char(int c)
{
	switch (c) {
	case ' ': case '\t': case '\r': case '\n': case '\f': case '\v':
	case '#': case '"': case '\'': case '=':
	case '{': case '}': case '[': case ']': case '(': case ')':
	case '\0':
		return 0;
	default:
		return 1;
	}
}

static void
lex_advance(struct conf_lexer *lx)
{
	if (lx->buf[lx->pos] == '\n') {
		lx->line++;
		lx->col = 1;
	} else {
		lx->col++;
	}
	lx->pos++;
}

static void
lex_error(struct conf_parser *p, const struct conf_loc *loc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
lex_error(struct conf_parser *p, const struct conf_loc *loc, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	conf_error(p->errs, loc, "%s", msg);
	p->failed = 1;
}

/* Skip white space and comments. Returns -1 on an unterminated comment. */
static int
lex_skip(struct conf_parser *p)
{
	struct conf_lexer *lx = &p->lx;

	for (;;) {
		if (lx->pos >= lx->len)
			return 0;
		char c = lx->buf[lx->pos];
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v') {
			lex_advance(lx);
		} else if (c == '#') {
			while (lx->pos < lx->len && lx->buf[lx->pos] != '\n')
				lex_advance(lx);
		} else if (c == '/' && lx->pos + 1 < lx->len && lx->buf[lx->pos + 1] == '*') {
			struct conf_loc start = { lx->file, lx->line, lx->col };
			lex_advance(lx);
			lex_advance(lx);
			for (;;) {
				if (lx->pos + 1 >= lx->len) {
					lex_error(p, &start, "unterminated comment (expected \"*/\")");
					return -1;
				}
				if (lx->buf[lx->pos] == '*' && lx->buf[lx->pos + 1] == '/') {
					lex_advance(lx);
					lex_advance(lx);
					break;
				}
				lex_advance(lx);
			}
		} else {
			return 0;
		}
	}
}

static void
lex_next(struct conf_parser *p)
{
	struct conf_lexer *lx = &p->lx;
	struct conf_token *t = &p->tok;

	t->text = NULL;
	if (lex_skip(p) < 0) {
		t->kind = TOK_ERROR;
		return;
	}
	t->loc.file = lx->file;
	t->loc.line = lx->line;
	t->loc.col = lx->col;
	if (lx->pos >= lx->len) {
		t->kind = TOK_EOF;
		return;
	}
	char c = lx->buf[lx->pos];
	switch (c) {
	case '=': t->kind = TOK_EQ; lex_advance(lx); return;
	case '{': t->kind = TOK_LBRACE; lex_advance(lx); return;
	case '}': t->kind = TOK_RBRACE; lex_advance(lx); return;
	case '(': t->kind = TOK_LPAREN; lex_advance(lx); return;
	case ')': t->kind = TOK_RPAREN; lex_advance(lx); return;
	case '[': t->kind = TOK_LBRACK; lex_advance(lx); return;
	case ']': t->kind = TOK_RBRACK; lex_advance(lx); return;
	case '"':
	case '\'': {
		struct strbuf sb = STRBUF_INIT;
		char quote = c;
		lex_advance(lx);
		for (;;) {
			if (lx->pos >= lx->len) {
				strbuf_free(&sb);
				lex_error(p, &t->loc, "unterminated string (expected a closing %c)", quote);
				t->kind = TOK_ERROR;
				return;
			}
			c = lx->buf[lx->pos];
			if (c == quote) {
				lex_advance(lx);
				break;
			}
			if (c == '\0') {
				struct conf_loc at = { lx->file, lx->line, lx->col };
				strbuf_free(&sb);
				lex_error(p, &at, "NUL byte inside a string");
				t->kind = TOK_ERROR;
				return;
			}
			if (c == '\\' && lx->pos + 1 < lx->len) {
				char next = lx->buf[lx->pos + 1];
				switch (next) {
				case 'n': c = '\n'; break;
				case 't': c = '\t'; break;
				case 'r': c = '\r'; break;
				case '\\': case '"': case '\'': c = next; break;
				default: next = 0; break;   /* "\." stays as written: regexes */
				}
				if (next != 0)
					lex_advance(lx);
			}
			strbuf_putc(&sb, c);
			lex_advance(lx);
		}
		t->kind = TOK_STRING;
		t->text = arena_strndup(&p->ast->arena, strbuf_cstr(&sb), sb.len);
		strbuf_free(&sb);
		return;
	}
	default:
		break;
	}
	if (c == '\0') {
		lex_error(p, &t->loc, "unexpected NUL byte");
		t->kind = TOK_ERROR;
		return;
	}
	size_t start = lx->pos;
	while (lx->pos < lx->len && is_word_char((unsigned char)lx->buf[lx->pos])) {
		if (lx->buf[lx->pos] == '/' && lx->pos + 1 < lx->len && lx->buf[lx->pos + 1] == '*')
			break;
		lex_advance(lx);
	}
	t->kind = TOK_WORD;
	t->text = arena_strndup(&p->ast->arena, lx->buf + start, lx->pos - start);
}

static const char *
tok_name(enum conf_tok kind)
{
	switch (kind) {
	case TOK_EOF: return "end of file";
	case TOK_WORD: return "a word";
	case TOK_STRING: return "a string";
	case TOK_EQ: return "\"=\"";
	case TOK_LBRACE: return "\"{\"";
	case TOK_RBRACE: return "\"}\"";
	case TOK_LPAREN: return "\"(\"";
	case TOK_RPAREN: return "\")\"";
	case TOK_LBRACK: return "\"[\"";
	case TOK_RBRACK: return "\"]\"";
	case TOK_ERROR: return "an error";
	}
	return "?";
}

static void
unexpected(struct conf_parser *p, const char *expected)
{
	if (p->tok.kind == TOK_ERROR)
		return;         /* the lexer already said what is wrong */
	if (p->tok.kind == TOK_WORD || p->tok.kind == TOK_STRING)
		lex_error(p, &p->tok.loc, "expected %s, found %s \"%.64s\"", expected,
		          tok_name(p->tok.kind), p->tok.text);
	else
		lex_error(p, &p->tok.loc, "expected %s, found %s", expected, tok_name(p->tok.kind));
}

static void
item_vec_push(struct conf_parser *p, struct conf_item_vec *vec, struct conf_item *item)
{
	arena_grow_array(&p->ast->arena, (void **)&vec->v, &vec->cap, vec->n, sizeof(*vec->v));
	vec->v[vec->n++] = item;
}

static struct conf_value *
parse_value(struct conf_parser *p)
{
	struct arena *a = &p->ast->arena;
	struct conf_value *v;

	if (p->depth >= CONF_DEPTH_MAX) {
		lex_error(p, &p->tok.loc, "nesting deeper than %d levels", CONF_DEPTH_MAX);
		return NULL;
	}
	v = arena_zalloc(a, sizeof(*v));
	v->loc = p->tok.loc;
	switch (p->tok.kind) {
	case TOK_WORD:
	case TOK_STRING:
		v->kind = CONF_VAL_STRING;
		v->str = p->tok.text;
		v->quoted = p->tok.kind == TOK_STRING;
		lex_next(p);
		return v;
	case TOK_LPAREN: {
		size_t cap = 0;
		v->kind = CONF_VAL_LIST;
		p->depth++;
		lex_next(p);
		while (p->tok.kind != TOK_RPAREN) {
			if (p->tok.kind != TOK_WORD && p->tok.kind != TOK_STRING &&
			    p->tok.kind != TOK_LPAREN && p->tok.kind != TOK_LBRACK) {
				unexpected(p, "a list element or \")\"");
				return NULL;
			}
			struct conf_value *item = parse_value(p);
			if (item == NULL)
				return NULL;
			arena_grow_array(a, (void **)&v->items, &cap, v->nitems, sizeof(*v->items));
			v->items[v->nitems++] = item;
		}
		p->depth--;
		lex_next(p);
		return v;
	}
	case TOK_LBRACK: {
		size_t cap = 0;
		v->kind = CONF_VAL_PARAMS;
		p->depth++;
		lex_next(p);
		while (p->tok.kind != TOK_RBRACK) {
			if (p->tok.kind != TOK_WORD && p->tok.kind != TOK_STRING) {
				unexpected(p, "a parameter name or \"]\"");
				return NULL;
			}
			struct conf_param param = { p->tok.text, p->tok.loc, NULL };
			lex_next(p);
			if (p->tok.kind != TOK_EQ) {
				unexpected(p, "\"=\" after the parameter name");
				return NULL;
			}
			lex_next(p);
			param.value = parse_value(p);
			if (param.value == NULL)
				return NULL;
			arena_grow_array(a, (void **)&v->params, &cap, v->nparams, sizeof(*v->params));
			v->params[v->nparams++] = param;
		}
		p->depth--;
		lex_next(p);
		return v;
	}
	default:
		unexpected(p, "a value (a word, a string, \"(\" or \"[\")");
		return NULL;
	}
}

/* Parse items until '}' (in_stanza) or end of input. Returns 0 or -1. */
static int
parse_items(struct conf_parser *p, struct conf_item_vec *out, int in_stanza)
{
	struct arena *a = &p->ast->arena;

	for (;;) {
		if (p->tok.kind == TOK_EOF) {
			if (in_stanza) {
				unexpected(p, "\"}\" to close the stanza");
				return -1;
			}
			return 0;
		}
		if (p->tok.kind == TOK_RBRACE) {
			if (in_stanza)
				return 0;
			unexpected(p, "an option or a stanza");
			return -1;
		}
		if (p->tok.kind != TOK_WORD) {
			unexpected(p, "an option name or a stanza keyword");
			return -1;
		}
		struct conf_token name = p->tok;
		lex_next(p);
		if (p->tok.kind == TOK_EQ) {
			struct conf_item *it = arena_zalloc(a, sizeof(*it));
			it->kind = CONF_ITEM_OPTION;
			it->loc = name.loc;
			it->name = name.text;
			lex_next(p);
			it->value = parse_value(p);
			if (it->value == NULL)
				return -1;
			item_vec_push(p, out, it);
			continue;
		}
		if ((strcasecmp(name.text, "include") == 0 ||
		     strcasecmp(name.text, "readonly_include") == 0) &&
		    (p->tok.kind == TOK_STRING || p->tok.kind == TOK_WORD)) {
			struct conf_token target = p->tok;
			/* Read the next token first: the include reuses the lexer. */
			struct conf_lexer saved = p->lx;
			int rc = parse_include(p, target.text, &target.loc, out);
			p->lx = saved;
			if (rc < 0)
				return -1;
			lex_next(p);
			continue;
		}
		struct conf_item *it = arena_zalloc(a, sizeof(*it));
		it->kind = CONF_ITEM_STANZA;
		it->loc = name.loc;
		it->name = name.text;
		if (p->tok.kind == TOK_STRING || p->tok.kind == TOK_WORD) {
			it->instance = p->tok.text;
			it->instance_loc = p->tok.loc;
			lex_next(p);
		}
		if (p->tok.kind != TOK_LBRACE) {
			if (it->instance == NULL)
				unexpected(p, "\"=\", an instance name or \"{\" after the name");
			else
				unexpected(p, "\"{\" to open the stanza");
			return -1;
		}
		if (p->depth >= CONF_DEPTH_MAX) {
			lex_error(p, &p->tok.loc, "nesting deeper than %d levels", CONF_DEPTH_MAX);
			return -1;
		}
		lex_next(p);
		struct conf_item_vec body = { NULL, 0, 0 };
		p->depth++;
		if (parse_items(p, &body, 1) < 0)
			return -1;
		p->depth--;
		lex_next(p);    /* the '}' */
		it->children = body.v;
		it->nchildren = body.n;
		item_vec_push(p, out, it);
	}
}

static int
parse_buffer(struct conf_parser *p, const char *buf, size_t len, const char *file,
             struct conf_item_vec *out)
{
	char *dircopy = xstrdup(file);

	p->lx.buf = buf;
	p->lx.len = len;
	p->lx.pos = 0;
	p->lx.line = 1;
	p->lx.col = 1;
	p->lx.file = arena_strdup(&p->ast->arena, file);
	p->lx.dir = arena_strdup(&p->ast->arena, dirname(dircopy));
	free(dircopy);
	lex_next(p);
	if (p->tok.kind == TOK_ERROR)
		return -1;
	return parse_items(p, out, 0);
}

static int
read_file(const char *path, char **buf, size_t *len, char *err, size_t errlen)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		snprintf(err, errlen, "cannot open \"%s\": %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "\"%s\" is not a regular file", path);
		close(fd);
		return -1;
	}
	if ((size_t)st.st_size > CONF_FILE_MAX) {
		snprintf(err, errlen, "\"%s\" is larger than %u bytes", path, CONF_FILE_MAX);
		close(fd);
		return -1;
	}
	*buf = xmalloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, *buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(err, errlen, "cannot read \"%s\": %s", path,
			         n < 0 ? strerror(errno) : "short read");
			free(*buf);
			close(fd);
			return -1;
		}
		got += (size_t)n;
	}
	close(fd);
	(*buf)[got] = '\0';
	*len = got;
	return 0;
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Parse one file (not a directory) into out, with cycle detection. */
static int
parse_one_file(struct conf_parser *p, const char *path, const struct conf_loc *from,
               struct conf_item_vec *out)
{
	char err[PATH_MAX + 128], *buf, *real;
	size_t len;
	int rc;

	if (p->include_depth >= CONF_INCLUDE_DEPTH_MAX) {
		lex_error(p, from, "includes nested deeper than %d levels", CONF_INCLUDE_DEPTH_MAX);
		return -1;
	}
	real = realpath(path, NULL);
	if (real == NULL) {
		lex_error(p, from, "cannot open \"%s\": %s", path, strerror(errno));
		return -1;
	}
	for (int i = 0; i < p->include_depth; i++) {
		if (strcmp(p->include_stack[i], real) == 0) {
			lex_error(p, from, "\"%s\" includes itself", path);
			free(real);
			return -1;
		}
	}
	if (read_file(path, &buf, &len, err, sizeof(err)) < 0) {
		lex_error(p, from, "%s", err);
		free(real);
		return -1;
	}
	ast_add_file(p->ast, path);
	p->include_stack[p->include_depth++] = real;
	rc = parse_buffer(p, buf, len, path, out);
	p->include_depth--;
	free(real);
	free(buf);
	return rc;
}

static int
parse_include(struct conf_parser *p, const char *name, const struct conf_loc *loc,
              struct conf_item_vec *out)
{
	struct stat st;
	char *path;
	int rc = 0;

	if (!conf_includes_allowed) {
		lex_error(p, loc, "include is disabled here");
		return -1;
	}
	if (name[0] == '/' || p->lx.dir == NULL)
		path = xstrdup(name);
	else
		path = xasprintf("%s/%s", p->lx.dir, name);
	if (stat(path, &st) < 0) {
		lex_error(p, loc, "cannot include \"%s\": %s", path, strerror(errno));
		free(path);
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		rc = parse_one_file(p, path, loc, out);
		free(path);
		return rc;
	}
	DIR *d = opendir(path);
	if (d == NULL) {
		lex_error(p, loc, "cannot include directory \"%s\": %s", path, strerror(errno));
		free(path);
		return -1;
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		char *full = xasprintf("%s/%s", path, de->d_name);
		if (stat(full, &st) == 0 && S_ISREG(st.st_mode)) {
			if (n == cap) {
				cap = cap ? cap * 2 : 16;
				names = xreallocarray(names, cap, sizeof(*names));
			}
			names[n++] = full;
		} else {
			free(full);
		}
	}
	closedir(d);
	if (n > 1)
		qsort(names, n, sizeof(*names), name_cmp);
	for (size_t i = 0; i < n; i++) {
		if (rc == 0 && parse_one_file(p, names[i], loc, out) < 0)
			rc = -1;
		free(names[i]);
	}
	free(names);
	free(path);
	return rc;
}

static struct conf_ast *
parse_finish(struct conf_parser *p, int rc, struct conf_item_vec *items)
{
	free(p->include_stack);
	if (rc < 0 || p->failed) {
		if (p->errs->count == 0)
			conf_error(p->errs, NULL, "configuration could not be parsed");
		conf_ast_free(p->ast);
		return NULL;
	}
	p->ast->items = items->v;
	p->ast->nitems = items->n;
	return p->ast;
}

struct conf_ast *
conf_parse_file(const char *path, struct conf_errors *errs)
{
	struct conf_parser p;
	struct conf_item_vec items = { NULL, 0, 0 };
	struct conf_loc none = { path, 0, 0 };
	int rc;

	memset(&p, 0, sizeof(p));
	p.ast = ast_new();
	p.errs = errs;
	p.include_stack = xcalloc(CONF_INCLUDE_DEPTH_MAX, sizeof(char *));
	rc = parse_one_file(&p, path, &none, &items);
	return parse_finish(&p, rc, &items);
}

struct conf_ast *
conf_parse_string(const char *text, size_t len, const char *name, struct conf_errors *errs)
{
	struct conf_parser p;
	struct conf_item_vec items = { NULL, 0, 0 };
	int rc;

	memset(&p, 0, sizeof(p));
	p.ast = ast_new();
	p.errs = errs;
	p.include_stack = xcalloc(CONF_INCLUDE_DEPTH_MAX, sizeof(char *));
	rc = parse_buffer(&p, text, len, name, &items);
	/* Includes from a string resolve against the working directory. */
	return parse_finish(&p, rc, &items);
}

/*
 * conf_parse_test.c - the ecelerity.conf syntax: values, stanzas, comments,
 * strings, includes, and errors that name file:line:column.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/conf_parse.h"
#include "lib/strbuf.h"
#include "test.h"

static struct conf_ast *
parse(const char *text, struct conf_errors *errs)
{
	return conf_parse_string(text, strlen(text), "t.conf", errs);
}

/* Render a tree compactly so that tables can state the expected shape. */
static void
render_value(const struct conf_value *v, struct strbuf *out)
{
	switch (v->kind) {
	case CONF_VAL_STRING:
		strbuf_printf(out, v->quoted ? "\"%s\"" : "%s", v->str);
		break;
	case CONF_VAL_LIST:
		strbuf_putc(out, '(');
		for (size_t i = 0; i < v->nitems; i++) {
			if (i)
				strbuf_putc(out, ' ');
			render_value(v->items[i], out);
		}
		strbuf_putc(out, ')');
		break;
	case CONF_VAL_PARAMS:
		strbuf_putc(out, '[');
		for (size_t i = 0; i < v->nparams; i++) {
			if (i)
				strbuf_putc(out, ' ');
			strbuf_printf(out, "%s=", v->params[i].key);
			render_value(v->params[i].value, out);
		}
		strbuf_putc(out, ']');
		break;
	}
}

static void
render_items(struct conf_item **items, size_t n, struct strbuf *out)
{
	for (size_t i = 0; i < n; i++) {
		const struct conf_item *it = items[i];
		if (i)
			strbuf_putc(out, ';');
		if (it->kind == CONF_ITEM_OPTION) {
			strbuf_printf(out, "%s=", it->name);
			render_value(it->value, out);
		} else {
			strbuf_printf(out, "%s%s%s{", it->name, it->instance ? ":" : "",
			              it->instance ? it->instance : "");
			render_items(it->children, it->nchildren, out);
			strbuf_putc(out, '}');
		}
	}
}

static void
test_shapes(void)
{
	static const struct {
		const char *text;
		const char *want;
	} cases[] = {
		{ "", "" },
		{ "A = 1", "A=1" },
		{ "A=1 B=2", "A=1;B=2" },
		{ "A = \"x y\"", "A=\"x y\"" },
		{ "A = 'single'", "A=\"single\"" },
		{ "A = \"esc \\\" \\\\ \\n\"", "A=\"esc \" \\ \n\"" },
		{ "A = ( \"a\" b )", "A=(\"a\" b)" },
		{ "A = ()", "A=()" },
		{ "A = [ k = v k2 = \"w\" ]", "A=[k=v k2=\"w\"]" },
		{ "A = [ k = ( 1 2 ) ]", "A=[k=(1 2)]" },
		{ "S { }", "S{}" },
		{ "S \"n\" { A = 1 }", "S:n{A=1}" },
		{ "S bare { T \"x\" { B = 2 } }", "S:bare{T:x{B=2}}" },
		{ "# c\nA = 1 # trailing\n", "A=1" },
		{ "/* multi\nline */ A = 1 /**/", "A=1" },
		{ "A = var/spool", "A=var/spool" },
		{ "A = 10.0.0.0/8", "A=10.0.0.0/8" },
		{ "A = x/*c*/", "A=x" },
		{ "Domain \"/.*\\.test$/\" { }", "Domain:/.*\\.test$/{}" },
		{ "a = 1\r\nb = 2\r\n", "a=1;b=2" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct conf_errors errs = { STRBUF_INIT, 0 };
		struct conf_ast *ast = parse(cases[i].text, &errs);
		struct strbuf got = STRBUF_INIT;
		CHECK(ast != NULL, "case %zu (%s): parse failed: %s", i, cases[i].text,
		      strbuf_cstr(&errs.text));
		if (ast != NULL) {
			render_items(ast->items, ast->nitems, &got);
			CHECK_STR(strbuf_cstr(&got), cases[i].want, cases[i].text);
		}
		strbuf_free(&got);
		conf_ast_free(ast);
		conf_errors_free(&errs);
	}
}

static void
test_errors(void)
{
	static const struct {
		const char *text;
		const char *want;       /* the first error line starts with this */
	} cases[] = {
		{ "A", "t.conf:1:2: error: expected \"=\", an instance name or \"{\"" },
		{ "A =", "t.conf:1:4: error: expected a value" },
		{ "A = (", "t.conf:1:6: error: expected a list element or \")\", found end of file" },
		{ "A = ( = )", "t.conf:1:7: error: expected a list element" },
		{ "A = [ k v ]", "t.conf:1:9: error: expected \"=\" after the parameter name" },
		{ "A = [ = ]", "t.conf:1:7: error: expected a parameter name" },
		{ "S {", "t.conf:1:4: error: expected \"}\" to close the stanza, found end of file" },
		{ "S { A = 1", "t.conf:1:10: error: expected \"}\" to close the stanza" },
		{ "}", "t.conf:1:1: error: expected an option or a stanza, found \"}\"" },
		{ "\n\n  A = \"open", "t.conf:3:7: error: unterminated string" },
		{ "A = 1 /* open", "t.conf:1:7: error: unterminated comment" },
		{ "S \"n\" A = 1", "t.conf:1:7: error: expected \"{\" to open the stanza, found a word \"A\"" },
		{ "= 1", "t.conf:1:1: error: expected an option name or a stanza keyword" },
		{ "A = )", "t.conf:1:5: error: expected a value" },
		{ "include \"/nonexistent/x.conf\"", "t.conf:1:9: error: cannot include \"/nonexistent/x.conf\"" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct conf_errors errs = { STRBUF_INIT, 0 };
		struct conf_ast *ast = parse(cases[i].text, &errs);
		CHECK(ast == NULL, "case %zu (%s): parsed, want an error", i, cases[i].text);
		const char *got = strbuf_cstr(&errs.text);
		CHECK(strncmp(got, cases[i].want, strlen(cases[i].want)) == 0,
		      "case %zu: got \"%s\", want prefix \"%s\"", i, got, cases[i].want);
		conf_ast_free(ast);
		conf_errors_free(&errs);
	}
}

static void
test_deep_nesting(void)
{
	struct conf_errors errs = { STRBUF_INIT, 0 };
	struct strbuf text = STRBUF_INIT;

	strbuf_puts(&text, "A = ");
	for (int i = 0; i < 10000; i++)
		strbuf_putc(&text, '(');
	struct conf_ast *ast = parse(strbuf_cstr(&text), &errs);
	CHECK(ast == NULL, "10000 nested lists parsed");
	CHECK(strstr(strbuf_cstr(&errs.text), "nesting deeper than") != NULL, "got \"%s\"",
	      strbuf_cstr(&errs.text));
	conf_errors_free(&errs);
	strbuf_free(&text);
}

static char tmpdir[] = "/tmp/impetus-conf-parse-XXXXXX";

static void
write_file(const char *rel, const char *text)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
	FILE *f = fopen(path, "w");
	CHECK(f != NULL, "cannot write %s", path);
	if (f != NULL) {
		fputs(text, f);
		fclose(f);
	}
}

static void
test_include(void)
{
	char path[512], sub[512];
	struct conf_errors errs = { STRBUF_INIT, 0 };
	struct strbuf got = STRBUF_INIT;

	snprintf(sub, sizeof(sub), "%s/conf.d", tmpdir);
	mkdir(sub, 0755);
	write_file("main.conf", "A = 1\ninclude \"part.conf\"\nS { include conf.d }\nZ = 9\n");
	write_file("part.conf", "B = 2\n");
	write_file("conf.d/20-b.conf", "D = 4\n");
	write_file("conf.d/10-a.conf", "C = 3\n");
	write_file("conf.d/.hidden", "HIDDEN = 1\n");
	snprintf(path, sizeof(path), "%s/main.conf", tmpdir);
	struct conf_ast *ast = conf_parse_file(path, &errs);
	CHECK(ast != NULL, "include: %s", strbuf_cstr(&errs.text));
	if (ast != NULL) {
		render_items(ast->items, ast->nitems, &got);
		CHECK_STR(strbuf_cstr(&got), "A=1;B=2;S{C=3;D=4};Z=9", "include order");
		CHECK_INT(ast->nfiles, 4, "files read");
	}
	conf_ast_free(ast);
	conf_errors_free(&errs);
	strbuf_free(&got);

	/* A syntax error inside an included file names that file. */
	write_file("bad.conf", "ok = 1\n  broken\n");
	write_file("main2.conf", "include bad.conf\n");
	snprintf(path, sizeof(path), "%s/main2.conf", tmpdir);
	ast = conf_parse_file(path, &errs);
	CHECK(ast == NULL, "included syntax error accepted");
	CHECK(strstr(strbuf_cstr(&errs.text), "/bad.conf:3:1: error:") != NULL,
	      "got \"%s\", want bad.conf:3:1", strbuf_cstr(&errs.text));
	conf_errors_free(&errs);

	/* An empty directory includes nothing. */
	snprintf(sub, sizeof(sub), "%s/empty.d", tmpdir);
	mkdir(sub, 0755);
	write_file("main3.conf", "A = 1\ninclude empty.d\n");
	snprintf(path, sizeof(path), "%s/main3.conf", tmpdir);
	ast = conf_parse_file(path, &errs);
	CHECK(ast != NULL && ast->nitems == 1, "empty include dir: %s", strbuf_cstr(&errs.text));
	conf_ast_free(ast);
	conf_errors_free(&errs);

	/* A cycle is an error, not a hang. */
	write_file("loop1.conf", "include loop2.conf\n");
	write_file("loop2.conf", "include loop1.conf\n");
	snprintf(path, sizeof(path), "%s/loop1.conf", tmpdir);
	ast = conf_parse_file(path, &errs);
	CHECK(ast == NULL, "include cycle accepted");
	CHECK(strstr(strbuf_cstr(&errs.text), "includes itself") != NULL, "got \"%s\"",
	      strbuf_cstr(&errs.text));
	conf_errors_free(&errs);

	/* A missing top-level file. */
	snprintf(path, sizeof(path), "%s/missing.conf", tmpdir);
	ast = conf_parse_file(path, &errs);
	CHECK(ast == NULL, "missing file accepted");
	CHECK(strstr(strbuf_cstr(&errs.text), "cannot open") != NULL, "got \"%s\"",
	      strbuf_cstr(&errs.text));
	conf_errors_free(&errs);
}

static void
test_locations(void)
{
	struct conf_errors errs = { STRBUF_INIT, 0 };
	struct conf_ast *ast = parse("# head\n  Alpha = ( x\n    \"y\" )\nS \"n\" {\n\tB = 1 }\n", &errs);

	CHECK(ast != NULL, "parse: %s", strbuf_cstr(&errs.text));
	if (ast == NULL)
		return;
	CHECK_INT(ast->items[0]->loc.line, 2, "Alpha line");
	CHECK_INT(ast->items[0]->loc.col, 3, "Alpha col");
	CHECK_INT(ast->items[0]->value->items[1]->loc.line, 3, "\"y\" line");
	CHECK_INT(ast->items[0]->value->items[1]->loc.col, 5, "\"y\" col");
	CHECK_INT(ast->items[1]->instance_loc.col, 3, "instance col");
	CHECK_INT(ast->items[1]->children[0]->loc.line, 5, "B line");
	CHECK_INT(ast->items[1]->children[0]->loc.col, 2, "B col");
	conf_ast_free(ast);
	conf_errors_free(&errs);
}

int
main(void)
{
	static const struct test_case cases[] = {
		TEST(test_shapes),
		TEST(test_errors),
		TEST(test_deep_nesting),
		TEST(test_include),
		TEST(test_locations),
	};
	int rc;
	char cmd[600];

	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	rc = test_run("conf_parse", cases, sizeof(cases) / sizeof(cases[0]));
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
	return rc;
}

/*
 * conf_value.c - typed values: conversion, rendering.
 *
 * conf_setting_convert checks a parsed value against its option's type and
 * bounds and builds the typed setting; conf_value_render and
 * conf_setting_render turn values back into configuration text. Settings
 * live in the arena given by the caller.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/conf_internal.h"
#include "lib/xalloc.h"

static int parse_int(const char *s, int64_t *out, int64_t unit_k, const char *suffixes);
static const char *type_name(enum conf_type t);

static const char *
type_name(enum conf_type t)
{
	switch (t) {
	case CONF_T_BOOL: return "a boolean (true or false)";
	case CONF_T_INT: return "an integer";
	case CONF_T_DURATION: return "a duration in seconds";
	case CONF_T_SIZE: return "a size in bytes";
	case CONF_T_STRING: return "a string";
	case CONF_T_ENUM: return "one of a fixed set of words";
	case CONF_T_LIST: return "a list ( \"a\" \"b\" )";
	case CONF_T_THROTTLE: return "a rate \"N\" or \"N/S\"";
	case CONF_T_PARAMS: return "a parameter array [ k = v ]";
	}
	return "?";
}

/*
 * Parse a non-negative decimal integer with an optional one-letter suffix.
 * suffixes is "smhd" (durations) or "kmg" (sizes); NULL allows none.
 * Returns 0, or -1 when malformed or out of range.
 */
static int
parse_int(const char *s, int64_t *out, int64_t unit_k, const char *suffixes)
{
	const char *p = s;
	int neg = 0;
	uint64_t v = 0;

	if (*p == '-' || *p == '+') {
		neg = *p == '-';
		p++;
	}
	if (!isdigit((unsigned char)*p))
		return -1;
	for (; isdigit((unsigned char)*p); p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	uint64_t mult = 1;
	if (*p != '\0') {
		if (suffixes == NULL || p[1] != '\0')
			return -1;
		int c = tolower((unsigned char)*p);
		if (strchr(suffixes, c) == NULL)
			return -1;
		if (unit_k == 60) {
			mult = c == 's' ? 1 : c == 'm' ? 60 : c == 'h' ? 3600 : 86400;
		} else {
			mult = c == 'k' ? 1024ULL : c == 'm' ? 1024ULL * 1024 : 1024ULL * 1024 * 1024;
		}
	}
	if (v > (uint64_t)INT64_MAX / mult)
		return -1;
	*out = (int64_t)(v * mult) * (neg ? -1 : 1);
	return 0;
}

struct conf_setting *
conf_setting_convert(struct arena *a, const struct conf_option *opt, const struct conf_value *v,
                     const struct conf_scope *scope, struct conf_errors *errs)
{
	struct conf_setting *s = arena_zalloc(a, sizeof(*s));

	s->opt = opt;
	s->loc = v->loc;
	s->scope = scope;
	s->raw = v;

	if (opt->type == CONF_T_LIST) {
		if (v->kind == CONF_VAL_STRING) {
			char why[256];
			if (opt->check != NULL && opt->check(v->str, why, sizeof(why)) < 0) {
				conf_error(errs, &v->loc, "%s: %s", opt->name, why);
				return NULL;
			}
			s->list = arena_alloc(a, sizeof(char *));
			s->list[0] = v->str;
			s->nlist = 1;
			return s;
		}
		if (v->kind != CONF_VAL_LIST)
			goto wrong_type;
		s->list = arena_alloc(a, (v->nitems ? v->nitems : 1) * sizeof(char *));
		for (size_t i = 0; i < v->nitems; i++) {
			if (v->items[i]->kind != CONF_VAL_STRING) {
				conf_error(errs, &v->items[i]->loc,
				           "%s: list elements must be words or strings", opt->name);
				return NULL;
			}
			s->list[i] = v->items[i]->str;
		}
		s->nlist = v->nitems;
		for (size_t i = 0; opt->check != NULL && i < s->nlist; i++) {
			char why[256];
			if (opt->check(s->list[i], why, sizeof(why)) < 0) {
				conf_error(errs, &v->items[i]->loc, "%s: %s", opt->name, why);
				return NULL;
			}
		}
		return s;
	}
	if (opt->type == CONF_T_PARAMS) {
		if (v->kind != CONF_VAL_PARAMS)
			goto wrong_type;
		return s;
	}
	if (v->kind != CONF_VAL_STRING)
		goto wrong_type;

	const char *text = v->str;
	switch (opt->type) {
	case CONF_T_BOOL:
		if (strcasecmp(text, "true") == 0 || strcasecmp(text, "yes") == 0 ||
		    strcasecmp(text, "on") == 0 || strcmp(text, "1") == 0) {
			s->i = 1;
		} else if (strcasecmp(text, "false") == 0 || strcasecmp(text, "no") == 0 ||
		           strcasecmp(text, "off") == 0 || strcmp(text, "0") == 0) {
			s->i = 0;
		} else {
			goto wrong_type;
		}
		return s;
	case CONF_T_INT:
	case CONF_T_DURATION:
	case CONF_T_SIZE: {
		int rc;
		if (opt->type == CONF_T_INT)
			rc = parse_int(text, &s->i, 0, NULL);
		else if (opt->type == CONF_T_DURATION)
			rc = parse_int(text, &s->i, 60, "smhd");
		else
			rc = parse_int(text, &s->i, 1024, "kmg");
		if (rc < 0)
			goto wrong_type;
		int64_t min = opt->min, max = opt->max;
		if (min == 0 && max == 0)
			max = INT64_MAX;
		if (s->i < min || s->i > max) {
			if (max == INT64_MAX)
				conf_error(errs, &v->loc, "%s: %s is below the minimum %" PRId64,
				           opt->name, text, min);
			else
				conf_error(errs, &v->loc, "%s: %s is out of range (%" PRId64 " to %" PRId64 ")",
				           opt->name, text, min, max);
			return NULL;
		}
		return s;
	}
	case CONF_T_STRING:
		s->s = text;
		if (opt->check != NULL) {
			char why[256];
			if (opt->check(text, why, sizeof(why)) < 0) {
				conf_error(errs, &v->loc, "%s: %s", opt->name, why);
				return NULL;
			}
		}
		return s;
	case CONF_T_ENUM:
		for (int i = 0; opt->enum_values[i] != NULL; i++) {
			if (strcasecmp(text, opt->enum_values[i]) == 0) {
				s->i = i;
				s->s = opt->enum_values[i];
				return s;
			}
		}
		{
			struct strbuf allowed = STRBUF_INIT;
			for (int i = 0; opt->enum_values[i] != NULL; i++) {
				if (i)
					strbuf_puts(&allowed, ", ");
				strbuf_puts(&allowed, opt->enum_values[i]);
			}
			conf_error(errs, &v->loc, "%s: \"%s\" is not one of: %s", opt->name, text,
			           strbuf_cstr(&allowed));
			strbuf_free(&allowed);
		}
		return NULL;
	case CONF_T_THROTTLE: {
		const char *slash = strchr(text, '/');
		char *count = arena_strndup(a, text, slash ? (size_t)(slash - text) : strlen(text));
		s->thr_period_s = 1;
		if (parse_int(count, &s->thr_count, 0, NULL) < 0 ||
		    (slash != NULL && parse_int(slash + 1, &s->thr_period_s, 0, NULL) < 0) ||
		    s->thr_count <= 0 || s->thr_period_s <= 0) {
			conf_error(errs, &v->loc,
			           "%s: expected \"N\" (per second) or \"N/S\" (N per S seconds) "
			           "with N and S above zero, found \"%s\"", opt->name, text);
			return NULL;
		}
		return s;
	}
	default:
		break;
	}
wrong_type:
	{
		struct strbuf got = STRBUF_INIT;
		conf_value_render(v, &got);
		conf_error(errs, &v->loc, "%s: expected %s, found %s", opt->name,
		           type_name(opt->type), strbuf_cstr(&got));
		strbuf_free(&got);
	}
	return NULL;
}

static void
render_string(const char *s, int quoted, struct strbuf *out)
{
	int needs = quoted || s[0] == '\0';

	for (const char *p = s; *p && !needs; p++)
		if (strchr(" \t\r\n#\"'={}[]()", *p) != NULL)
			needs = 1;
	if (!needs) {
		strbuf_puts(out, s);
		return;
	}
	strbuf_putc(out, '"');
	for (const char *p = s; *p; p++) {
		switch (*p) {
		case '"': strbuf_puts(out, "\\\""); break;
		case '\\': strbuf_puts(out, "\\\\"); break;
		case '\n': strbuf_puts(out, "\\n"); break;
		case '\t': strbuf_puts(out, "\\t"); break;
		case '\r': strbuf_puts(out, "\\r"); break;
		default: strbuf_putc(out, *p); break;
		}
	}
	strbuf_putc(out, '"');
}

void
conf_value_render(const struct conf_value *v, struct strbuf *out)
{
	switch (v->kind) {
	case CONF_VAL_STRING:
		render_string(v->str, v->quoted, out);
		break;
	case CONF_VAL_LIST:
		strbuf_putc(out, '(');
		for (size_t i = 0; i < v->nitems; i++) {
			strbuf_putc(out, ' ');
			conf_value_render(v->items[i], out);
		}
		strbuf_puts(out, " )");
		break;
	case CONF_VAL_PARAMS:
		strbuf_putc(out, '[');
		for (size_t i = 0; i < v->nparams; i++) {
			strbuf_putc(out, ' ');
			render_string(v->params[i].key, 0, out);
			strbuf_puts(out, " = ");
			conf_value_render(v->params[i].value, out);
		}
		strbuf_puts(out, " ]");
		break;
	}
}

void
conf_setting_render(const struct conf_setting *s, struct strbuf *out)
{
	if (s == NULL) {
		strbuf_puts(out, "unset");
		return;
	}
	conf_value_render(s->raw, out);
}

void
conf_scope_names(uint32_t mask, struct strbuf *out)
{
	static const struct { uint32_t bit; const char *name; } names[] = {
		{ CONF_SCOPE_GLOBAL, "global" },
		{ CONF_SCOPE_BINDING_GROUP, "Binding_Group" },
		{ CONF_SCOPE_BINDING, "Binding" },
		{ CONF_SCOPE_DOMAIN, "Domain" },
		{ CONF_SCOPE_HOST, "Host" },
		{ CONF_SCOPE_ESMTP_LISTENER, "ESMTP_Listener" },
		{ CONF_SCOPE_CONTROL_LISTENER, "Control_Listener" },
		{ CONF_SCOPE_LISTEN, "Listen" },
		{ CONF_SCOPE_PEER, "Peer" },
		{ CONF_SCOPE_SECURITY, "Security" },
		{ CONF_SCOPE_THREADPOOL, "ThreadPool" },
		{ CONF_SCOPE_EC_LOGGER, "ec_logger" },
		{ CONF_SCOPE_BOUNCE_LOGGER, "bounce_logger" },
	};
	int first = 1;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (mask & names[i].bit) {
			strbuf_printf(out, "%s%s", first ? "" : ", ", names[i].name);
			first = 0;
		}
	}
	if (mask & ~((CONF_SCOPE_FIRST_DYNAMIC << 0) - 1u))
		strbuf_printf(out, "%smodule stanzas", first ? "" : ", ");
}

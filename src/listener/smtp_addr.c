/*
 * smtp_addr.c - reverse and forward paths (RFC 5321 §4.1.2) and the
 * parameters of MAIL FROM and RCPT TO (RFC 1870, 6152, 3030, 6531, 3461,
 * 4954).
 *
 *   smtp_parse_path         "<[@route:]local@domain>" -> struct smtp_mailbox
 *                           and the parameter text after it.
 *   smtp_mailbox_render     struct smtp_mailbox -> "local@domain".
 *   smtp_parse_mail_params  SIZE BODY SMTPUTF8 RET ENVID AUTH.
 *   smtp_parse_rcpt_params  NOTIFY ORCPT.
 *   smtp_xtext_valid        RFC 3461 xtext.
 *
 * The parser walks the grammar once, left to right, so the domain can only
 * be what follows the '@' that ends the local part: a quoted '@', '%' or
 * '!' never moves it. Results are written into caller-owned structs;
 * nothing is allocated. Errors are enum smtp_parse_err values.
 */
#include "listener/smtp_parse.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* A cursor over the path being parsed. */
struct path_cursor {
	const char *s;          /* the argument */
	size_t len;             /* octets in s */
	size_t pos;             /* next octet to read */
	int allow_utf8;         /* SMTP_PATH_ALLOW_UTF8 was given */
	int saw_utf8;           /* a non-ASCII octet was accepted */
};

/* One "keyword[=value]" of a parameter list. */
struct esmtp_param {
	const char *key;        /* points into the list */
	size_t keylen;
	const char *value;      /* NULL when there is no "=" */
	size_t valuelen;
};

static size_t utf8_seq_len(const unsigned char *s, size_t len);
static int is_atext(int c);
static int is_alnum(int c);
static int is_upper_hex(char c);
static int cursor_peek(const struct path_cursor *c);
static int cursor_utf8(struct path_cursor *c);
static int parse_domain(struct path_cursor *c, char *out, size_t outsz, size_t *outlen);
static int parse_address_literal(struct path_cursor *c, char *out, size_t outsz,
                                 size_t *outlen);
static int parse_local(struct path_cursor *c, struct smtp_mailbox *mb, size_t *wirelen);
static int local_is_dot_atom(const char *s, int utf8);
static int next_param(const char **p, const char *end, struct esmtp_param *out, int *err);
static int key_is(const struct esmtp_param *pm, const char *name);
static int value_is(const struct esmtp_param *pm, const char *name);
static int copy_value(const struct esmtp_param *pm, char *out, size_t max);
static int parse_notify(const struct esmtp_param *pm, unsigned *notify);
static int parse_orcpt(const struct esmtp_param *pm, char *out);

/*
 * utf8_seq_len: the length of the well-formed UTF-8 sequence at s (2-4
 * octets; no overlong forms, surrogates or code points over U+10FFFF), or
 * 0 when s does not start one.
 */
static size_t
utf8_seq_len(const unsigned char *s, size_t len)
{
	size_t n;
	unsigned char lo = 0x80, hi = 0xbf;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4;
	else
		return 0;
	if (len < n)
		return 0;
	if (s[0] == 0xe0)
		lo = 0xa0;
	else if (s[0] == 0xed)
		hi = 0x9f;
	else if (s[0] == 0xf0)
		lo = 0x90;
	else if (s[0] == 0xf4)
		hi = 0x8f;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

static int
is_alnum(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int
is_upper_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

/* atext of RFC 5322 §3.2.3, ASCII only. */
static int
is_atext(int c)
{
	return is_alnum(c) || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

static int
cursor_peek(const struct path_cursor *c)
{
	return c->pos < c->len ? (unsigned char)c->s[c->pos] : -1;
}

/*
 * cursor_utf8: at a non-ASCII octet, the length of its UTF-8 sequence (the
 * cursor does not move), 0 when malformed. Sets saw_utf8.
 */
static int
cursor_utf8(struct path_cursor *c)
{
	size_t n = utf8_seq_len((const unsigned char *)c->s + c->pos, c->len - c->pos);

	if (n > 0)
		c->saw_utf8 = 1;
	return (int)n;
}

/*
 * parse_domain: Domain (dot-separated labels: Let-dig [Ldh-str], or U-labels
 * with non-ASCII octets) or an address literal, copied into out (truncated
 * at outsz - 1; *outlen is the full length).
 */
static int
parse_domain(struct path_cursor *c, char *out, size_t outsz, size_t *outlen)
{
	size_t start = c->pos, label_start, n;
	int ch, last;

	if (cursor_peek(c) == '[')
		return parse_address_literal(c, out, outsz, outlen);
	for (;;) {
		label_start = c->pos;
		last = -1;
		while ((ch = cursor_peek(c)) >= 0) {
			if (is_alnum(ch) || (ch == '-' && c->pos > label_start)) {
				last = ch;
				c->pos++;
			} else if (ch >= 0x80) {
				n = (size_t)cursor_utf8(c);
				if (n == 0)
					return SMTP_PARSE_PATH_SYNTAX;
				last = ch;
				c->pos += n;
			} else {
				break;
			}
		}
		if (c->pos == label_start || last == '-')
			return SMTP_PARSE_PATH_SYNTAX;
		if (c->pos - label_start > 63)
			return SMTP_PARSE_DOMAIN_TOO_LONG;
		if (cursor_peek(c) != '.')
			break;
		c->pos++;
	}
	*outlen = c->pos - start;
	n = *outlen < outsz ? *outlen : outsz - 1;
	memcpy(out, c->s + start, n);
	out[n] = '\0';
	return SMTP_PARSE_OK;
}

/* parse_address_literal: "[1.2.3.4]" or "[IPv6:…]"; other tags are refused. */
static int
parse_address_literal(struct path_cursor *c, char *out, size_t outsz, size_t *outlen)
{
	const char *close;
	char text[64];
	unsigned char addr[16];
	size_t start = c->pos, inner, n;

	close = memchr(c->s + c->pos, ']', c->len - c->pos);
	if (close == NULL)
		return SMTP_PARSE_PATH_SYNTAX;
	inner = (size_t)(close - (c->s + c->pos)) - 1;
	if (inner == 0 || inner >= sizeof(text))
		return SMTP_PARSE_PATH_SYNTAX;
	/* inet_pton stops at a NUL: "[1.2.3.4\0junk]" must not pass as 1.2.3.4. */
	if (memchr(c->s + c->pos + 1, '\0', inner) != NULL)
		return SMTP_PARSE_PATH_SYNTAX;
	memcpy(text, c->s + c->pos + 1, inner);
	text[inner] = '\0';
	if (strncasecmp(text, "IPv6:", 5) == 0) {
		if (inet_pton(AF_INET6, text + 5, addr) != 1)
			return SMTP_PARSE_PATH_SYNTAX;
	} else {
		/* inet_pton accepts exactly dotted quads of 0-255 without leading
		 * zeros; the grammar's Snum allows leading zeros, which nobody sends. */
		if (inet_pton(AF_INET, text, addr) != 1)
			return SMTP_PARSE_PATH_SYNTAX;
	}
	c->pos += inner + 2;
	*outlen = c->pos - start;
	n = *outlen < outsz ? *outlen : outsz - 1;
	memcpy(out, c->s + start, n);
	out[n] = '\0';
	return SMTP_PARSE_OK;
}

/*
 * parse_local: Dot-string or Quoted-string, decoded into mb->local (which
 * is large enough for anything under the length limits; longer input is
 * truncated and then refused by the caller). *wirelen is its length as
 * written.
 */
static int
parse_local(struct path_cursor *c, struct smtp_mailbox *mb, size_t *wirelen)
{
	size_t start = c->pos, o = 0, n;
	int ch;

	if (cursor_peek(c) == '"') {
		mb->quoted = 1;
		c->pos++;
		for (;;) {
			ch = cursor_peek(c);
			if (ch < 0)
				return SMTP_PARSE_PATH_SYNTAX;
			if (ch == '"') {
				c->pos++;
				break;
			}
			if (ch == '\\') {
				c->pos++;
				ch = cursor_peek(c);
				if (ch < 32 || ch > 126)
					return SMTP_PARSE_PATH_SYNTAX;
				n = 1;
			} else if (ch >= 32 && ch <= 126) {
				n = 1;
			} else if (ch >= 0x80) {
				n = (size_t)cursor_utf8(c);
				if (n == 0)
					return SMTP_PARSE_PATH_SYNTAX;
			} else {
				return SMTP_PARSE_PATH_SYNTAX;
			}
			if (o + n < sizeof(mb->local)) {
				memcpy(mb->local + o, c->s + c->pos, n);
				o += n;
			}
			c->pos += n;
		}
	} else {
		int need_atom = 1;      /* at the start or just after a dot */

		for (;;) {
			ch = cursor_peek(c);
			if (ch >= 0 && is_atext(ch)) {
				n = 1;
			} else if (ch >= 0x80) {
				n = (size_t)cursor_utf8(c);
				if (n == 0)
					return SMTP_PARSE_PATH_SYNTAX;
			} else if (ch == '.' && !need_atom) {
				need_atom = 1;
				n = 1;
				goto copy;
			} else {
				break;
			}
			need_atom = 0;
copy:
			if (o + n < sizeof(mb->local)) {
				memcpy(mb->local + o, c->s + c->pos, n);
				o += n;
			}
			c->pos += n;
		}
		if (need_atom)          /* empty, or ends with a dot */
			return SMTP_PARSE_PATH_SYNTAX;
	}
	mb->local[o] = '\0';
	*wirelen = c->pos - start;
	return SMTP_PARSE_OK;
}

int
smtp_parse_path(const char *arg, size_t len, int flags, struct smtp_mailbox *mb,
                const char **params, size_t *params_len)
{
	struct path_cursor c = { arg, len, 0, (flags & SMTP_PATH_ALLOW_UTF8) != 0, 0 };
	char route[SMTP_DOMAIN_MAX + 1];
	size_t open, locallen = 0, domlen = 0, routelen;
	int err;

	memset(mb, 0, sizeof(*mb));
	while (c.pos < len && (arg[c.pos] == ' ' || arg[c.pos] == '\t'))
		c.pos++;
	if (cursor_peek(&c) != '<')
		return SMTP_PARSE_PATH_SYNTAX;
	open = c.pos++;
	if (cursor_peek(&c) == '>') {
		if (!(flags & SMTP_PATH_ALLOW_NULL))
			return SMTP_PARSE_PATH_NULL;
		mb->null_path = 1;
		c.pos++;
		goto after;
	}
	/* A-d-l ":" — a source route, parsed for syntax and discarded. */
	if (cursor_peek(&c) == '@') {
		for (;;) {
			c.pos++;        /* the '@' */
			if (cursor_peek(&c) == '[')
				return SMTP_PARSE_PATH_SYNTAX;
			if ((err = parse_domain(&c, route, sizeof(route), &routelen)) != 0)
				return err;
			if (routelen > SMTP_DOMAIN_MAX)
				return SMTP_PARSE_DOMAIN_TOO_LONG;
			if (cursor_peek(&c) == ':') {
				c.pos++;
				break;
			}
			if (cursor_peek(&c) != ',')
				return SMTP_PARSE_PATH_SYNTAX;
			c.pos++;
			if (cursor_peek(&c) != '@')
				return SMTP_PARSE_PATH_SYNTAX;
		}
	}
	if ((err = parse_local(&c, mb, &locallen)) != 0)
		return err;
	if (cursor_peek(&c) == '@') {
		c.pos++;
		if ((err = parse_domain(&c, mb->domain, sizeof(mb->domain), &domlen)) != 0)
			return err;
	} else if (cursor_peek(&c) == '>' && (flags & SMTP_PATH_ALLOW_POSTMASTER) &&
	           !mb->quoted && open == c.pos - locallen - 1 &&
	           strcasecmp(mb->local, "postmaster") == 0) {
		mb->postmaster = 1;
	} else {
		return SMTP_PARSE_PATH_SYNTAX;
	}
	if (cursor_peek(&c) != '>')
		return SMTP_PARSE_PATH_SYNTAX;
	c.pos++;
	if (c.pos - open > SMTP_PATH_MAX)
		return SMTP_PARSE_PATH_TOO_LONG;
	if (locallen > SMTP_LOCAL_MAX)
		return SMTP_PARSE_LOCAL_TOO_LONG;
	if (domlen > SMTP_DOMAIN_MAX)
		return SMTP_PARSE_DOMAIN_TOO_LONG;
	if (c.saw_utf8) {
		mb->utf8 = 1;
		if (!c.allow_utf8)
			return SMTP_PARSE_UTF8_NOT_ALLOWED;
	}
after:
	if (c.pos < len && arg[c.pos] != ' ' && arg[c.pos] != '\t')
		return SMTP_PARSE_PATH_SYNTAX;
	while (c.pos < len && (arg[c.pos] == ' ' || arg[c.pos] == '\t'))
		c.pos++;
	if (params != NULL)
		*params = arg + c.pos;
	if (params_len != NULL)
		*params_len = len - c.pos;
	return SMTP_PARSE_OK;
}

/* local_is_dot_atom: 1 if s can be written without quotes. */
static int
local_is_dot_atom(const char *s, int utf8)
{
	int need_atom = 1;

	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '.') {
			if (need_atom)
				return 0;
			need_atom = 1;
		} else if (is_atext(ch) || (utf8 && ch >= 0x80)) {
			need_atom = 0;
		} else {
			return 0;
		}
	}
	return !need_atom;
}

size_t
smtp_mailbox_render(const struct smtp_mailbox *mb, char *buf, size_t len)
{
	char tmp[2 * sizeof(mb->local) + sizeof(mb->domain) + 4];
	size_t n = 0;

	if (mb->null_path) {
		tmp[0] = '\0';
	} else if (local_is_dot_atom(mb->local, 1)) {
		n = (size_t)snprintf(tmp, sizeof(tmp), "%s", mb->local);
	} else {
		tmp[n++] = '"';
		for (const char *s = mb->local; *s != '\0'; s++) {
			if (*s == '"' || *s == '\\')
				tmp[n++] = '\\';
			tmp[n++] = *s;
		}
		tmp[n++] = '"';
		tmp[n] = '\0';
	}
	if (!mb->null_path && !mb->postmaster)
		n += (size_t)snprintf(tmp + n, sizeof(tmp) - n, "@%s", mb->domain);
	if (len > 0) {
		size_t c = n < len ? n : len - 1;
		memcpy(buf, tmp, c);
		buf[c] = '\0';
	}
	return n;
}

int
smtp_xtext_valid(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '+') {
			if (i + 2 >= len || !is_upper_hex(s[i + 1]) || !is_upper_hex(s[i + 2]))
				return 0;
			i += 2;
		} else if (ch < 33 || ch > 126 || ch == '=') {
			return 0;
		}
	}
	return 1;
}

/*
 * next_param: the next "keyword[=value]" from *p (spaces skipped), moving
 * *p past it. Returns 1 with *out filled, 0 at the end, -1 with *err on a
 * syntax error.
 */
static int
next_param(const char **p, const char *end, struct esmtp_param *out, int *err)
{
	const char *s = *p;

	while (s < end && (*s == ' ' || *s == '\t'))
		s++;
	if (s == end) {
		*p = s;
		return 0;
	}
	out->key = s;
	if (!is_alnum((unsigned char)*s)) {
		*err = SMTP_PARSE_PARAM_SYNTAX;
		return -1;
	}
	while (s < end && (is_alnum((unsigned char)*s) || *s == '-'))
		s++;
	out->keylen = (size_t)(s - out->key);
	out->value = NULL;
	out->valuelen = 0;
	if (s < end && *s == '=') {
		out->value = ++s;
		/* esmtp-value: %d33-60 / %d62-126, and UTF-8 (RFC 6531) */
		while (s < end && *s != ' ' && *s != '\t') {
			unsigned char ch = (unsigned char)*s;
			if (ch < 33 || ch == '=' || ch == 127) {
				*err = SMTP_PARSE_PARAM_SYNTAX;
				return -1;
			}
			s++;
		}
		out->valuelen = (size_t)(s - out->value);
		if (out->valuelen == 0) {
			*err = SMTP_PARSE_PARAM_SYNTAX;
			return -1;
		}
	}
	if (s < end && *s != ' ' && *s != '\t') {
		*err = SMTP_PARSE_PARAM_SYNTAX;
		return -1;
	}
	*p = s;
	return 1;
}

static int
key_is(const struct esmtp_param *pm, const char *name)
{
	return strlen(name) == pm->keylen && strncasecmp(pm->key, name, pm->keylen) == 0;
}

static int
value_is(const struct esmtp_param *pm, const char *name)
{
	return pm->value != NULL && strlen(name) == pm->valuelen &&
	       strncasecmp(pm->value, name, pm->valuelen) == 0;
}

/* copy_value: a validated xtext value of at most max octets into out. */
static int
copy_value(const struct esmtp_param *pm, char *out, size_t max)
{
	if (pm->value == NULL)
		return SMTP_PARSE_PARAM_VALUE;
	if (pm->valuelen > max)
		return SMTP_PARSE_PARAM_TOO_LONG;
	if (!smtp_xtext_valid(pm->value, pm->valuelen))
		return SMTP_PARSE_PARAM_XTEXT;
	memcpy(out, pm->value, pm->valuelen);
	out[pm->valuelen] = '\0';
	return SMTP_PARSE_OK;
}

int
smtp_parse_mail_params(const char *params, size_t len, unsigned enabled,
                       struct smtp_mail_params *out)
{
	const char *p = params, *end = params + len;
	struct esmtp_param pm;
	unsigned seen = 0;
	int r, err = 0;

	enum { P_SIZE = 1, P_BODY = 2, P_UTF8 = 4, P_RET = 8, P_ENVID = 16, P_AUTH = 32 };
	static const struct {
		const char *name;
		unsigned bit;           /* P_* */
		unsigned need;          /* SMTP_EXT_* it needs */
	} known[] = {
		{ "SIZE", P_SIZE, SMTP_EXT_SIZE },
		{ "BODY", P_BODY, 0 },  /* the value decides */
		{ "SMTPUTF8", P_UTF8, SMTP_EXT_SMTPUTF8 },
		{ "RET", P_RET, SMTP_EXT_DSN },
		{ "ENVID", P_ENVID, SMTP_EXT_DSN },
		{ "AUTH", P_AUTH, SMTP_EXT_AUTH },
	};

	memset(out, 0, sizeof(*out));
	while ((r = next_param(&p, end, &pm, &err)) > 0) {
		unsigned bit = 0, need = 0;

		for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++) {
			if (key_is(&pm, known[k].name)) {
				bit = known[k].bit;
				need = known[k].need;
				break;
			}
		}
		if (bit == 0)
			return SMTP_PARSE_PARAM_UNKNOWN;
		if ((enabled & need) != need)
			return SMTP_PARSE_PARAM_DISABLED;
		if (seen & bit)
			return SMTP_PARSE_PARAM_DUPLICATE;
		seen |= bit;
		switch (bit) {
		case P_SIZE:
			if (pm.value == NULL || pm.valuelen > 20)
				return SMTP_PARSE_PARAM_VALUE;
			for (size_t i = 0; i < pm.valuelen; i++) {
				unsigned d = (unsigned)(pm.value[i] - '0');
				if (d > 9 || out->size > (UINT64_MAX - d) / 10)
					return SMTP_PARSE_PARAM_VALUE;
				out->size = out->size * 10 + d;
			}
			out->size_given = 1;
			break;
		case P_BODY:
			if (value_is(&pm, "7BIT")) {
				out->body = SMTP_BODY_7BIT;
			} else if (value_is(&pm, "8BITMIME")) {
				if (!(enabled & SMTP_EXT_8BITMIME))
					return SMTP_PARSE_PARAM_DISABLED;
				out->body = SMTP_BODY_8BITMIME;
			} else if (value_is(&pm, "BINARYMIME")) {
				if ((enabled & (SMTP_EXT_BINARYMIME | SMTP_EXT_CHUNKING)) !=
				    (SMTP_EXT_BINARYMIME | SMTP_EXT_CHUNKING))
					return SMTP_PARSE_PARAM_DISABLED;
				out->body = SMTP_BODY_BINARYMIME;
			} else {
				return SMTP_PARSE_PARAM_VALUE;
			}
			break;
		case P_UTF8:
			if (pm.value != NULL)
				return SMTP_PARSE_PARAM_VALUE;
			out->smtputf8 = 1;
			break;
		case P_RET:
			if (value_is(&pm, "FULL"))
				out->ret = SMTP_RET_FULL;
			else if (value_is(&pm, "HDRS"))
				out->ret = SMTP_RET_HDRS;
			else
				return SMTP_PARSE_PARAM_VALUE;
			break;
		case P_ENVID:
			if ((err = copy_value(&pm, out->envid, SMTP_ENVID_MAX)) != 0)
				return err;
			break;
		case P_AUTH:
			if (value_is(&pm, "<>")) {
				strcpy(out->auth, "<>");
			} else if ((err = copy_value(&pm, out->auth, SMTP_AUTH_MAX)) != 0) {
				return err;
			}
			break;
		}
	}
	return r < 0 ? err : SMTP_PARSE_OK;
}

/* parse_notify: "NEVER" or a comma list of SUCCESS, FAILURE, DELAY. */
static int
parse_notify(const struct esmtp_param *pm, unsigned *notify)
{
	static const struct { const char *name; unsigned bit; } words[] = {
		{ "NEVER", SMTP_NOTIFY_NEVER },
		{ "SUCCESS", SMTP_NOTIFY_SUCCESS },
		{ "FAILURE", SMTP_NOTIFY_FAILURE },
		{ "DELAY", SMTP_NOTIFY_DELAY },
	};
	const char *s, *end, *comma;
	size_t i;

	if (pm->value == NULL)
		return SMTP_PARSE_PARAM_VALUE;
	*notify = 0;
	for (s = pm->value, end = pm->value + pm->valuelen; s <= end; s = comma + 1) {
		comma = memchr(s, ',', (size_t)(end - s));
		if (comma == NULL)
			comma = end;
		for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
			if (strlen(words[i].name) == (size_t)(comma - s) &&
			    strncasecmp(words[i].name, s, (size_t)(comma - s)) == 0)
				break;
		if (i == sizeof(words) / sizeof(words[0]))
			return SMTP_PARSE_PARAM_VALUE;
		*notify |= words[i].bit;
	}
	if ((*notify & SMTP_NOTIFY_NEVER) && *notify != SMTP_NOTIFY_NEVER)
		return SMTP_PARSE_NOTIFY_CONFLICT;
	return SMTP_PARSE_OK;
}

/*
 * parse_orcpt: "addr-type;xtext" (RFC 3461 §4.2), addr-type an atom; for
 * addr-type "utf-8" (RFC 6533) well-formed UTF-8 is accepted in the address
 * as well.
 */
static int
parse_orcpt(const struct esmtp_param *pm, char *out)
{
	const char *semi;
	size_t typelen, i;
	int utf8type;

	if (pm->value == NULL)
		return SMTP_PARSE_PARAM_VALUE;
	if (pm->valuelen > SMTP_ORCPT_MAX)
		return SMTP_PARSE_PARAM_TOO_LONG;
	semi = memchr(pm->value, ';', pm->valuelen);
	if (semi == NULL || semi == pm->value || semi + 1 == pm->value + pm->valuelen)
		return SMTP_PARSE_PARAM_VALUE;
	typelen = (size_t)(semi - pm->value);
	for (i = 0; i < typelen; i++)
		if (!is_atext((unsigned char)pm->value[i]))
			return SMTP_PARSE_PARAM_VALUE;
	utf8type = typelen == 5 && strncasecmp(pm->value, "utf-8", 5) == 0;
	for (const char *s = semi + 1, *end = pm->value + pm->valuelen; s < end;) {
		const char *run = s;
		size_t n;

		while (s < end && (unsigned char)*s < 0x80)
			s++;
		if (!smtp_xtext_valid(run, (size_t)(s - run)))
			return SMTP_PARSE_PARAM_XTEXT;
		if (s == end)
			break;
		n = utf8_seq_len((const unsigned char *)s, (size_t)(end - s));
		if (!utf8type || n == 0)
			return SMTP_PARSE_PARAM_XTEXT;
		s += n;
	}
	memcpy(out, pm->value, pm->valuelen);
	out[pm->valuelen] = '\0';
	return SMTP_PARSE_OK;
}

int
smtp_parse_rcpt_params(const char *params, size_t len, unsigned enabled,
                       struct smtp_rcpt_params *out)
{
	const char *p = params, *end = params + len;
	struct esmtp_param pm;
	int seen_notify = 0, seen_orcpt = 0;
	int r, err = 0;

	memset(out, 0, sizeof(*out));
	while ((r = next_param(&p, end, &pm, &err)) > 0) {
		int *seen;

		if (key_is(&pm, "NOTIFY"))
			seen = &seen_notify;
		else if (key_is(&pm, "ORCPT"))
			seen = &seen_orcpt;
		else
			return SMTP_PARSE_PARAM_UNKNOWN;
		if (!(enabled & SMTP_EXT_DSN))
			return SMTP_PARSE_PARAM_DISABLED;
		if (*seen)
			return SMTP_PARSE_PARAM_DUPLICATE;
		*seen = 1;
		if (seen == &seen_notify)
			err = parse_notify(&pm, &out->notify);
		else
			err = parse_orcpt(&pm, out->orcpt);
		if (err != 0)
			return err;
	}
	return r < 0 ? err : SMTP_PARSE_OK;
}

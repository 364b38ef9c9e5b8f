/*
 * smtp_parse.c - SMTP command lines: the line reader, the command parser,
 * the BDAT argument and the error table.
 *
 *   smtp_line_init / smtp_line_next  split the input stream into lines.
 *   smtp_cmd_parse                   one line -> verb and argument.
 *   smtp_bdat_parse_arg              "BDAT <size> [LAST]".
 *   smtp_parse_strerror              every SMTP_PARSE_* error -> its reply.
 *
 * Nothing here allocates or keeps pointers: results point into the
 * caller's buffer. Paths and parameters are in smtp_addr.c, the DATA and
 * BDAT content rules in smtp_data.c; all share smtp_parse.h.
 */
#include "listener/smtp_parse.h"

#include <string.h>
#include <strings.h>

struct smtp_verb_def {
	const char *name;
	enum smtp_verb verb;
	int arg;                /* ARG_NONE, ARG_OPTIONAL or ARG_REQUIRED */
	const char *keyword;    /* "FROM:" / "TO:" that must follow, or NULL */
};

enum { ARG_NONE, ARG_OPTIONAL, ARG_REQUIRED };

struct smtp_err_def {
	int code;               /* SMTP reply code */
	const char *enhanced;   /* RFC 3463 status */
	const char *text;
};

static int is_space(char c);
static size_t skip_spaces(const char *s, size_t i, size_t len);

static const struct smtp_verb_def smtp_verbs[] = {
	{ "HELO",     SMTP_VERB_HELO,     ARG_REQUIRED, NULL },
	{ "EHLO",     SMTP_VERB_EHLO,     ARG_REQUIRED, NULL },
	{ "MAIL",     SMTP_VERB_MAIL,     ARG_REQUIRED, "FROM:" },
	{ "RCPT",     SMTP_VERB_RCPT,     ARG_REQUIRED, "TO:" },
	{ "DATA",     SMTP_VERB_DATA,     ARG_NONE,     NULL },
	{ "BDAT",     SMTP_VERB_BDAT,     ARG_REQUIRED, NULL },
	{ "RSET",     SMTP_VERB_RSET,     ARG_NONE,     NULL },
	{ "NOOP",     SMTP_VERB_NOOP,     ARG_OPTIONAL, NULL },
	{ "QUIT",     SMTP_VERB_QUIT,     ARG_NONE,     NULL },
	{ "VRFY",     SMTP_VERB_VRFY,     ARG_REQUIRED, NULL },
	{ "EXPN",     SMTP_VERB_EXPN,     ARG_REQUIRED, NULL },
	{ "HELP",     SMTP_VERB_HELP,     ARG_OPTIONAL, NULL },
	{ "STARTTLS", SMTP_VERB_STARTTLS, ARG_NONE,     NULL },
	{ "AUTH",     SMTP_VERB_AUTH,     ARG_REQUIRED, NULL },
};

static const struct smtp_err_def smtp_errs[SMTP_PARSE_ERR_MAX] = {
	[SMTP_PARSE_OK]               = { 250, "2.0.0", "OK" },
	[SMTP_PARSE_EMPTY]            = { 500, "5.5.2", "Error: bad syntax" },
	[SMTP_PARSE_UNKNOWN_CMD]      = { 500, "5.5.2", "Error: command not recognized" },
	[SMTP_PARSE_BAD_CHAR]         = { 500, "5.5.2", "Error: invalid character in command" },
	[SMTP_PARSE_LINE_TOO_LONG]    = { 500, "5.5.6", "Line too long" },
	[SMTP_PARSE_SYNTAX]           = { 501, "5.5.4", "Syntax error in parameters or arguments" },
	[SMTP_PARSE_ARG_MISSING]      = { 501, "5.5.4", "Syntax error: argument required" },
	[SMTP_PARSE_ARG_UNEXPECTED]   = { 501, "5.5.4", "Syntax error: no arguments allowed" },
	[SMTP_PARSE_PATH_SYNTAX]      = { 501, "5.1.3", "Bad address syntax" },
	[SMTP_PARSE_PATH_NULL]        = { 501, "5.1.3", "Null address not allowed here" },
	[SMTP_PARSE_PATH_TOO_LONG]    = { 501, "5.1.3", "Path too long" },
	[SMTP_PARSE_LOCAL_TOO_LONG]   = { 553, "5.1.3", "Local part too long" },
	[SMTP_PARSE_DOMAIN_TOO_LONG]  = { 553, "5.1.3", "Domain name too long" },
	[SMTP_PARSE_UTF8_NOT_ALLOWED] = { 553, "5.6.7", "Non-ASCII address requires SMTPUTF8" },
	[SMTP_PARSE_PARAM_SYNTAX]     = { 501, "5.5.4", "Bad parameter syntax" },
	[SMTP_PARSE_PARAM_UNKNOWN]    = { 555, "5.5.4", "Unsupported parameter" },
	[SMTP_PARSE_PARAM_DISABLED]   = { 555, "5.5.4", "Parameter not offered by this server" },
	[SMTP_PARSE_PARAM_DUPLICATE]  = { 501, "5.5.4", "Duplicate parameter" },
	[SMTP_PARSE_PARAM_VALUE]      = { 501, "5.5.4", "Bad parameter value" },
	[SMTP_PARSE_PARAM_XTEXT]      = { 501, "5.5.4", "Bad xtext in parameter value" },
	[SMTP_PARSE_PARAM_TOO_LONG]   = { 501, "5.5.4", "Parameter value too long" },
	[SMTP_PARSE_NOTIFY_CONFLICT]  = { 501, "5.5.4", "NOTIFY=NEVER cannot be combined" },
	[SMTP_PARSE_BDAT_SYNTAX]      = { 501, "5.5.4", "Syntax: BDAT <size> [LAST]" },
};

static int
is_space(char c)
{
	return c == ' ' || c == '\t';
}

static size_t
skip_spaces(const char *s, size_t i, size_t len)
{
	while (i < len && is_space(s[i]))
		i++;
	return i;
}

const char *
smtp_parse_strerror(int err, int *smtp_code, const char **enhanced)
{
	const struct smtp_err_def *e;
	static const struct smtp_err_def unknown = { 500, "5.5.0", "Error" };

	e = (err >= 0 && err < SMTP_PARSE_ERR_MAX && smtp_errs[err].text != NULL)
	    ? &smtp_errs[err] : &unknown;
	if (smtp_code != NULL)
		*smtp_code = e->code;
	if (enhanced != NULL)
		*enhanced = e->enhanced;
	return e->text;
}

void
smtp_line_init(struct smtp_line_reader *r, size_t max)
{
	r->max = max;
	r->skipping = 0;
}

enum smtp_line_status
smtp_line_next(struct smtp_line_reader *r, const char *buf, size_t len,
               size_t *consumed, const char **line, size_t *linelen)
{
	size_t max = r->max ? r->max : SMTP_LINE_MAX;
	size_t start = 0, scan, i;
	const char *lf;

	*line = NULL;
	*linelen = 0;
	if (r->skipping) {
		lf = memchr(buf, '\n', len);
		if (lf == NULL) {
			*consumed = len;
			return SMTP_LINE_MORE;
		}
		r->skipping = 0;
		start = (size_t)(lf - buf) + 1;
	}
	/* A line is acceptable when its LF is at most at offset max - 1. */
	scan = len - start < max ? len - start : max;
	lf = memchr(buf + start, '\n', scan);
	if (lf == NULL) {
		if (len - start < max) {
			*consumed = start;      /* only a skipped tail, if any */
			return SMTP_LINE_MORE;
		}
		/* max octets without LF: the line is too long; drop what we have. */
		lf = memchr(buf + start + scan, '\n', len - start - scan);
		if (lf == NULL) {
			r->skipping = 1;
			*consumed = len;
		} else {
			*consumed = (size_t)(lf - buf) + 1;
		}
		return SMTP_LINE_TOO_LONG;
	}
	i = (size_t)(lf - buf);
	*consumed = i + 1;
	*line = buf + start;
	*linelen = i - start;
	if (*linelen > 0 && buf[i - 1] == '\r')
		(*linelen)--;
	if (memchr(*line, '\0', *linelen) != NULL)
		return SMTP_LINE_NUL;
	return SMTP_LINE_OK;
}

int
smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *cmd)
{
	const struct smtp_verb_def *def = NULL;
	size_t vlen = 0, i, kwlen, end;

	cmd->verb = SMTP_VERB_UNKNOWN;
	cmd->arg = NULL;
	cmd->arglen = 0;
	if (len == 0)
		return SMTP_PARSE_EMPTY;
	if (memchr(line, '\0', len) != NULL)
		return SMTP_PARSE_BAD_CHAR;
	while (vlen < len && !is_space(line[vlen]))
		vlen++;
	for (i = 0; i < sizeof(smtp_verbs) / sizeof(smtp_verbs[0]); i++) {
		if (strlen(smtp_verbs[i].name) == vlen &&
		    strncasecmp(smtp_verbs[i].name, line, vlen) == 0) {
			def = &smtp_verbs[i];
			break;
		}
	}
	if (def == NULL)        /* also "MAILFROM:<x>": the verb is "MAILFROM:<x>" */
		return SMTP_PARSE_UNKNOWN_CMD;
	cmd->verb = def->verb;

	end = len;
	while (end > vlen && is_space(line[end - 1]))
		end--;
	i = skip_spaces(line, vlen, end);
	if (def->keyword != NULL && i < end) {
		kwlen = strlen(def->keyword);
		if (end - i < kwlen || strncasecmp(line + i, def->keyword, kwlen) != 0)
			return SMTP_PARSE_SYNTAX;
		i = skip_spaces(line, i + kwlen, end);
		if (i == end)
			return SMTP_PARSE_ARG_MISSING;
	}
	for (size_t j = i; j < end; j++)
		if ((unsigned char)line[j] < 0x20 && line[j] != '\t')
			return SMTP_PARSE_BAD_CHAR;
	if (i < end) {
		if (def->arg == ARG_NONE)
			return SMTP_PARSE_ARG_UNEXPECTED;
		cmd->arg = line + i;
		cmd->arglen = end - i;
	} else if (def->arg == ARG_REQUIRED) {
		return SMTP_PARSE_ARG_MISSING;
	}
	return SMTP_PARSE_OK;
}

int
smtp_bdat_parse_arg(const char *arg, size_t len, uint64_t *chunk_size, int *last)
{
	uint64_t n = 0;
	size_t i = 0;

	*chunk_size = 0;
	*last = 0;
	while (len > 0 && is_space(arg[len - 1]))
		len--;
	if (i >= len || arg[i] < '0' || arg[i] > '9')
		return SMTP_PARSE_BDAT_SYNTAX;
	for (; i < len && arg[i] >= '0' && arg[i] <= '9'; i++) {
		unsigned d = (unsigned)(arg[i] - '0');
		if (n > (UINT64_MAX - d) / 10)
			return SMTP_PARSE_BDAT_SYNTAX;
		n = n * 10 + d;
	}
	if (i < len) {
		if (!is_space(arg[i]))
			return SMTP_PARSE_BDAT_SYNTAX;
		i = skip_spaces(arg, i, len);
		if (len - i != 4 || strncasecmp(arg + i, "LAST", 4) != 0)
			return SMTP_PARSE_BDAT_SYNTAX;
		*last = 1;
	}
	*chunk_size = n;
	return SMTP_PARSE_OK;
}

/*
 * smtp_command_fuzz.c - libFuzzer target for the SMTP command side: the
 * line reader (fed in chunks chosen by the input), the command parser, paths,
 * MAIL / RCPT parameters, BDAT arguments and the error table, on arbitrary
 * bytes. Invariants: consumed never exceeds the input, lines stay inside
 * the buffer and under the limit, every error maps to a 5xx reply, and a
 * rendered mailbox parses back to the same local part and domain.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "listener/smtp_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_error(int err);
static void check_roundtrip(const struct smtp_mailbox *mb, int flags);
static void parse_arg(enum smtp_verb verb, const char *arg, size_t len, unsigned sel);

static void
check_error(int err)
{
	int code = 0;
	const char *enh = NULL;
	const char *text = smtp_parse_strerror(err, &code, &enh);

	if (text == NULL || enh == NULL || (err != 0 && (code < 500 || code > 599)))
		abort();
}

/* check_roundtrip: "<" render ">" gives the same mailbox, or a length error. */
static void
check_roundtrip(const struct smtp_mailbox *mb, int flags)
{
	char buf[1024], arg[1030];
	struct smtp_mailbox again;
	size_t n = smtp_mailbox_render(mb, buf, sizeof(buf));
	int err;

	if (n >= sizeof(buf) || strlen(buf) != n)
		abort();
	if (mb->null_path)
		return;
	arg[0] = '<';
	memcpy(arg + 1, buf, n);
	arg[n + 1] = '>';
	err = smtp_parse_path(arg, n + 2, flags | SMTP_PATH_ALLOW_UTF8, &again, NULL, NULL);
	if (err == SMTP_PARSE_LOCAL_TOO_LONG || err == SMTP_PARSE_PATH_TOO_LONG)
		return;
	if (err != 0 || strcmp(again.local, mb->local) != 0 ||
	    strcmp(again.domain, mb->domain) != 0)
		abort();
}

static void
parse_arg(enum smtp_verb verb, const char *arg, size_t len, unsigned sel)
{
	struct smtp_mailbox mb;
	struct smtp_mail_params mp;
	struct smtp_rcpt_params rp;
	const char *params = NULL;
	size_t plen = 0;
	unsigned ext = sel & 0x3ff;
	int flags = (int)(sel >> 10) & 7;
	int err;
	uint64_t chunk;
	int last;

	switch (verb) {
	case SMTP_VERB_MAIL:
	case SMTP_VERB_RCPT:
		err = smtp_parse_path(arg, len, flags, &mb, &params, &plen);
		check_error(err);
		if (err != 0)
			break;
		if (params < arg || params + plen != arg + len)
			abort();
		if (strlen(mb.local) > 255 || strlen(mb.domain) > SMTP_DOMAIN_MAX)
			abort();
		check_roundtrip(&mb, flags);
		if (verb == SMTP_VERB_MAIL) {
			err = smtp_parse_mail_params(params, plen, ext, &mp);
			if (err == 0 && (strlen(mp.envid) > SMTP_ENVID_MAX ||
			                 strlen(mp.auth) > SMTP_AUTH_MAX))
				abort();
		} else {
			err = smtp_parse_rcpt_params(params, plen, ext, &rp);
			if (err == 0 && strlen(rp.orcpt) > SMTP_ORCPT_MAX)
				abort();
		}
		check_error(err);
		break;
	case SMTP_VERB_BDAT:
		check_error(smtp_bdat_parse_arg(arg, len, &chunk, &last));
		break;
	default:
		break;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_line_reader r;
	char *buf;
	size_t have = 0, fed = 0, consumed, linelen, step;
	const char *line;
	enum smtp_line_status st;
	unsigned sel;

	if (size < 3)
		return 0;
	step = (size_t)data[0] % 64 + 1;        /* chunk size of the reader */
	sel = (unsigned)data[1] | (unsigned)data[2] << 8;
	data += 3;
	size -= 3;

	/* The whole input as one argument, too. */
	parse_arg(SMTP_VERB_MAIL, (const char *)data, size, sel);
	parse_arg(SMTP_VERB_RCPT, (const char *)data, size, sel);
	parse_arg(SMTP_VERB_BDAT, (const char *)data, size, sel);

	buf = malloc(size + 1);
	if (buf == NULL)
		return 0;
	smtp_line_init(&r, 0);
	while (fed < size || have > 0) {
		size_t n = size - fed < step ? size - fed : step;

		memcpy(buf + have, data + fed, n);   /* have + n <= size: nothing is lost */
		have += n;
		fed += n;
		for (;;) {
			st = smtp_line_next(&r, buf, have, &consumed, &line, &linelen);
			if (consumed > have)
				abort();
			if (st == SMTP_LINE_OK || st == SMTP_LINE_NUL) {
				struct smtp_cmd cmd;
				int err;

				if (line < buf || line + linelen > buf + consumed || linelen >= SMTP_LINE_MAX)
					abort();
				if ((st == SMTP_LINE_NUL) != (memchr(line, '\0', linelen) != NULL))
					abort();
				err = smtp_cmd_parse(line, linelen, &cmd);
				check_error(err);
				if (err == 0 && cmd.arglen > 0 &&
				    (cmd.arg < line || cmd.arg + cmd.arglen > line + linelen))
					abort();
				if (err == 0)
					parse_arg(cmd.verb, cmd.arg, cmd.arglen, sel);
			}
			memmove(buf, buf + consumed, have - consumed);
			have -= consumed;
			if (st == SMTP_LINE_MORE)
				break;
		}
		if (fed == size)
			break;
	}
	free(buf);
	return 0;
}

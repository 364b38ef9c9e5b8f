/*
 * smtp_parse.h - pure, resumable parsers for the SMTP server (RFC 5321).
 *
 * No sockets, no I/O, no logging: the session (smtp_session.c) owns the
 * buffers and feeds bytes in; these functions only look at what they are
 * given and never read past the length passed.
 *
 *   smtp_line_next          split a command stream into lines (CRLF, or a
 *                           bare LF as Postfix allows), refusing lines over
 *                           512 octets and flagging NUL bytes.
 *   smtp_cmd_parse          one command line -> verb and argument.
 *   smtp_parse_path         "<local@domain> params" of MAIL FROM / RCPT TO.
 *   smtp_mailbox_render     a parsed mailbox back to "local@domain".
 *   smtp_parse_mail_params  SIZE, BODY, SMTPUTF8, RET, ENVID, AUTH.
 *   smtp_parse_rcpt_params  NOTIFY, ORCPT.
 *   smtp_parse_strerror     an SMTP_PARSE_* error -> text, reply code and
 *                           enhanced status code.
 *   smtp_data_init/feed     the DATA body: only CRLF "." CRLF ends it.
 *   smtp_bdat_parse_arg     "BDAT <size> [LAST]".
 *   smtp_bdat_init/feed/finish  the same content rules for BDAT chunks.
 *
 * Error contract: the parsing calls return 0 (SMTP_PARSE_OK) or one of the
 * positive enum smtp_parse_err values; each maps to one reply with
 * smtp_parse_strerror. Output structs are fully written on success and
 * left in an unspecified (but safe) state on error.
 */
#ifndef IMPETUS_LISTENER_SMTP_PARSE_H
#define IMPETUS_LISTENER_SMTP_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "lib/strbuf.h"

/* RFC 5321 §4.5.3.1 limits, all in octets. */
#define SMTP_LINE_MAX       512     /* command line, CRLF included */
#define SMTP_TEXT_LINE_MAX  1000    /* DATA text line, CRLF included */
#define SMTP_LOCAL_MAX      64      /* local part, as written (quotes included) */
#define SMTP_DOMAIN_MAX     255     /* domain or address literal */
#define SMTP_PATH_MAX       256     /* "<" … ">" including the brackets */

/* Errors of the parsing calls. smtp_parse_strerror gives each one reply. */
enum smtp_parse_err {
	SMTP_PARSE_OK = 0,
	/* command lines */
	SMTP_PARSE_EMPTY,               /* 500 5.5.2 empty line */
	SMTP_PARSE_UNKNOWN_CMD,         /* 500 5.5.2 verb not recognised */
	SMTP_PARSE_BAD_CHAR,            /* 500 5.5.2 NUL or control byte in the command */
	SMTP_PARSE_LINE_TOO_LONG,       /* 500 5.5.6 over SMTP_LINE_MAX */
	SMTP_PARSE_SYNTAX,              /* 501 5.5.4 e.g. "MAIL" without "FROM:" */
	SMTP_PARSE_ARG_MISSING,         /* 501 5.5.4 e.g. "HELO" without a domain */
	SMTP_PARSE_ARG_UNEXPECTED,      /* 501 5.5.4 e.g. "DATA x" */
	/* paths */
	SMTP_PARSE_PATH_SYNTAX,         /* 501 5.1.3 bad address syntax */
	SMTP_PARSE_PATH_NULL,           /* 501 5.1.3 "<>" where not allowed */
	SMTP_PARSE_PATH_TOO_LONG,       /* 501 5.1.3 path over SMTP_PATH_MAX */
	SMTP_PARSE_LOCAL_TOO_LONG,      /* 553 5.1.3 local part over SMTP_LOCAL_MAX */
	SMTP_PARSE_DOMAIN_TOO_LONG,     /* 553 5.1.3 domain over SMTP_DOMAIN_MAX or label over 63 */
	SMTP_PARSE_UTF8_NOT_ALLOWED,    /* 553 5.6.7 non-ASCII address without SMTPUTF8 */
	/* MAIL / RCPT parameters */
	SMTP_PARSE_PARAM_SYNTAX,        /* 501 5.5.4 not keyword[=value] */
	SMTP_PARSE_PARAM_UNKNOWN,       /* 555 5.5.4 parameter not recognised */
	SMTP_PARSE_PARAM_DISABLED,      /* 555 5.5.4 its extension is not offered */
	SMTP_PARSE_PARAM_DUPLICATE,     /* 501 5.5.4 given twice */
	SMTP_PARSE_PARAM_VALUE,         /* 501 5.5.4 bad value (SIZE=x, BODY=x, RET=x) */
	SMTP_PARSE_PARAM_XTEXT,         /* 501 5.5.4 bad xtext in ENVID / ORCPT / AUTH */
	SMTP_PARSE_PARAM_TOO_LONG,      /* 501 5.5.4 ENVID over 100, ORCPT over 500 */
	SMTP_PARSE_NOTIFY_CONFLICT,     /* 501 5.5.4 NOTIFY=NEVER with other values */
	/* BDAT */
	SMTP_PARSE_BDAT_SYNTAX,         /* 501 5.5.4 not "<digits> [LAST]" */
	SMTP_PARSE_ERR_MAX
};

/* text, *smtp_code and *enhanced ("5.5.4") for an SMTP_PARSE_* value;
 * either out pointer may be NULL. An unknown value maps to 500 5.5.0. */
const char *smtp_parse_strerror(int err, int *smtp_code, const char **enhanced);

/* ---------------------------------------------------------------- lines */

enum smtp_line_status {
	SMTP_LINE_MORE,         /* no complete line yet: read more, call again */
	SMTP_LINE_OK,           /* *line / *linelen hold one line */
	SMTP_LINE_TOO_LONG,     /* a line over the limit was dropped: 500 5.5.6 */
	SMTP_LINE_NUL,          /* *line holds a line containing a NUL: 500 5.5.2 */
};

/*
 * The reader keeps only the "skipping the rest of a too-long line" state, so
 * a zeroed struct is ready to use (max 0 means SMTP_LINE_MAX). The caller
 * keeps unconsumed bytes at the front of its buffer and passes all of them
 * each time; after every call it drops *consumed bytes (also on MORE and
 * TOO_LONG, where bytes of an over-long line are thrown away so the buffer
 * stays bounded). *line points into buf and excludes the terminator (CRLF
 * or a bare LF); a CR not followed by LF stays part of the line.
 */
struct smtp_line_reader {
	size_t max;             /* octets per line including CRLF; 0 = SMTP_LINE_MAX */
	int skipping;           /* inside a too-long line: drop bytes up to its LF */
};

void smtp_line_init(struct smtp_line_reader *r, size_t max);
enum smtp_line_status smtp_line_next(struct smtp_line_reader *r, const char *buf, size_t len,
                                     size_t *consumed, const char **line, size_t *linelen);

/* ------------------------------------------------------------- commands */

enum smtp_verb {
	SMTP_VERB_UNKNOWN,
	SMTP_VERB_HELO,
	SMTP_VERB_EHLO,
	SMTP_VERB_MAIL,
	SMTP_VERB_RCPT,
	SMTP_VERB_DATA,
	SMTP_VERB_BDAT,
	SMTP_VERB_RSET,
	SMTP_VERB_NOOP,
	SMTP_VERB_QUIT,
	SMTP_VERB_VRFY,
	SMTP_VERB_EXPN,
	SMTP_VERB_HELP,
	SMTP_VERB_STARTTLS,
	SMTP_VERB_AUTH,
};

struct smtp_cmd {
	enum smtp_verb verb;
	const char *arg;        /* points into the line; trailing spaces removed */
	size_t arglen;          /* octets of arg; 0 when there is none */
};

/*
 * smtp_cmd_parse: line is one command line WITHOUT its terminator. Verbs are
 * case-insensitive and separated from the argument by one or more spaces
 * (a tab is tolerated too). "MAIL FROM:" and "RCPT TO:" are taken as one
 * keyword: arg is what follows the colon, leading spaces skipped.
 * Argument rules: HELO, EHLO, MAIL, RCPT, BDAT, VRFY, EXPN, AUTH need one
 * (SMTP_PARSE_ARG_MISSING); DATA, RSET, QUIT, STARTTLS take none
 * (SMTP_PARSE_ARG_UNEXPECTED); NOOP and HELP take an optional one.
 * An unrecognised verb gives SMTP_PARSE_UNKNOWN_CMD with cmd->verb
 * SMTP_VERB_UNKNOWN; cmd->verb is set whenever the verb was recognised,
 * even if the arguments are then refused.
 */
int smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *cmd);

/* -------------------------------------------------------------- paths */

/* flags of smtp_parse_path; passing 1 / 0 as "allow_null" keeps working. */
#define SMTP_PATH_ALLOW_NULL        0x1   /* "<>" accepted (MAIL FROM) */
#define SMTP_PATH_ALLOW_UTF8        0x2   /* SMTPUTF8: UTF-8 local parts and U-labels */
#define SMTP_PATH_ALLOW_POSTMASTER  0x4   /* "<Postmaster>" without a domain (RCPT TO) */

/*
 * A mailbox, fixed-size so it can be copied into a transaction. local is
 * the local part DECODED: a quoted-string's quotes and backslashes are
 * removed ("a@b"@c gives local a@b, domain c). domain is as written: dot
 * labels, or an address literal with its brackets ("[192.0.2.1]",
 * "[IPv6:2001:db8::1]"); its case is kept, compare it case-insensitively.
 * The domain is always the part after the mailbox's last unquoted '@' —
 * '%', '!' and quoted '@' are characters of the local part — and a source
 * route "@a,@b:" is accepted and discarded.
 */
struct smtp_mailbox {
	char local[256];        /* decoded local part, NUL-terminated */
	char domain[256];       /* domain or address literal, NUL-terminated */
	int null_path;          /* "<>": local and domain empty */
	int postmaster;         /* "<Postmaster>" without domain: domain empty */
	int quoted;             /* the local part was a quoted-string */
	int utf8;               /* local part or domain has non-ASCII (UTF-8) octets */
};

/*
 * smtp_parse_path: arg / len is the argument after "FROM:" or "TO:" (leading
 * spaces allowed). The path must be in angle brackets. On success *params /
 * *params_len (either may be NULL) give the rest of the argument after the
 * '>' and its spaces, for smtp_parse_mail_params / smtp_parse_rcpt_params;
 * anything after '>' other than spaces then parameters is a syntax error.
 * Non-ASCII octets must be well-formed UTF-8 and need SMTP_PATH_ALLOW_UTF8
 * (SMTP_PARSE_UTF8_NOT_ALLOWED otherwise). For MAIL the session can pass
 * SMTP_PATH_ALLOW_UTF8 when the extension is offered, then refuse with
 * SMTP_PARSE_UTF8_NOT_ALLOWED if mb->utf8 and the SMTPUTF8 parameter is absent.
 */
int smtp_parse_path(const char *arg, size_t len, int flags, struct smtp_mailbox *mb,
                    const char **params, size_t *params_len);

/*
 * smtp_mailbox_render: "local@domain" into buf (size len, NUL-terminated,
 * truncated if short); the local part is written as a quoted-string when it
 * is not a dot-atom. "" for the null path, "Postmaster" for the bare one.
 * Returns the length of the full rendering (like snprintf): >= len means
 * it was truncated. The result is at most 2 * 256 + 3 octets.
 */
size_t smtp_mailbox_render(const struct smtp_mailbox *mb, char *buf, size_t len);

/* --------------------------------------------------------- parameters */

/* Extensions a listener offers (bit set); also what the session lists in EHLO. */
enum smtp_ext {
	SMTP_EXT_PIPELINING          = 1u << 0,
	SMTP_EXT_SIZE                = 1u << 1,
	SMTP_EXT_8BITMIME            = 1u << 2,
	SMTP_EXT_ENHANCEDSTATUSCODES = 1u << 3,
	SMTP_EXT_SMTPUTF8            = 1u << 4,
	SMTP_EXT_DSN                 = 1u << 5,
	SMTP_EXT_STARTTLS            = 1u << 6,
	SMTP_EXT_AUTH                = 1u << 7,
	SMTP_EXT_CHUNKING            = 1u << 8,
	SMTP_EXT_BINARYMIME          = 1u << 9,   /* needs CHUNKING too */
};

enum smtp_body {
	SMTP_BODY_NONE,         /* no BODY= parameter (7BIT assumed) */
	SMTP_BODY_7BIT,
	SMTP_BODY_8BITMIME,
	SMTP_BODY_BINARYMIME,
};

enum smtp_ret {
	SMTP_RET_NONE,          /* no RET= parameter */
	SMTP_RET_FULL,
	SMTP_RET_HDRS,
};

#define SMTP_ENVID_MAX  100     /* RFC 3461 §4.4: octets of the xtext */
#define SMTP_ORCPT_MAX  500     /* RFC 3461 §4.2: octets of "type;xtext" */
#define SMTP_AUTH_MAX   500     /* RFC 4954 §5: octets of the AUTH= xtext */

/*
 * MAIL FROM parameters. Keywords are case-insensitive; each may appear
 * once. Values are kept as written (still xtext-encoded: they are relayed
 * that way), after validation.
 */
struct smtp_mail_params {
	uint64_t size;                  /* SIZE=, octets declared */
	int size_given;                 /* SIZE= was present */
	int body;                       /* enum smtp_body */
	int smtputf8;                   /* SMTPUTF8 was present */
	int ret;                        /* enum smtp_ret */
	char envid[SMTP_ENVID_MAX + 1]; /* ENVID= xtext, "" when absent */
	char auth[SMTP_AUTH_MAX + 1];   /* AUTH= xtext or "<>", "" when absent */
};

/* NOTIFY= values (bit set); 0 means no NOTIFY= parameter. */
#define SMTP_NOTIFY_NEVER   0x1
#define SMTP_NOTIFY_SUCCESS 0x2
#define SMTP_NOTIFY_FAILURE 0x4
#define SMTP_NOTIFY_DELAY   0x8

struct smtp_rcpt_params {
	unsigned notify;                /* SMTP_NOTIFY_* bits, 0 when absent */
	char orcpt[SMTP_ORCPT_MAX + 1]; /* ORCPT= "addr-type;xtext" as written, "" when absent */
};

/*
 * params / len as returned by smtp_parse_path: space-separated
 * keyword[=value]. enabled is the SMTP_EXT_* set the listener offers:
 * SIZE needs SMTP_EXT_SIZE, BODY=8BITMIME SMTP_EXT_8BITMIME, BODY=BINARYMIME
 * SMTP_EXT_BINARYMIME, SMTPUTF8 SMTP_EXT_SMTPUTF8, RET / ENVID / NOTIFY /
 * ORCPT SMTP_EXT_DSN, AUTH SMTP_EXT_AUTH (else SMTP_PARSE_PARAM_DISABLED).
 * BODY=7BIT is always allowed. out is zeroed first.
 */
int smtp_parse_mail_params(const char *params, size_t len, unsigned enabled,
                           struct smtp_mail_params *out);
int smtp_parse_rcpt_params(const char *params, size_t len, unsigned enabled,
                           struct smtp_rcpt_params *out);

/* smtp_xtext_valid: 1 if s / len is RFC 3461 xtext ("+" followed by two
 * upper-case hex digits for every '+', '=' and octets outside 33-126). */
int smtp_xtext_valid(const char *s, size_t len);

/* ---------------------------------------------------------------- DATA */

enum smtp_bare_lf_mode {
	SMTP_BARE_REJECT,       /* bare CR / LF marks the message bad (default) */
	SMTP_BARE_NORMALIZE,    /* bare CR / LF is written out as CRLF */
};

enum smtp_data_status {
	SMTP_DATA_MORE,                 /* end not found yet: feed more input */
	SMTP_DATA_DONE,                 /* end found, message good */
	SMTP_DATA_BAD_BARE,             /* end found; bare CR/LF (reject mode): 550 5.6.0 */
	SMTP_DATA_BAD_NUL,              /* end found; NUL in content: 550 5.6.0 */
	SMTP_DATA_BAD_LINE_TOO_LONG,    /* end found; a text line over 1000 octets: 550 5.6.0 */
	SMTP_DATA_BAD_TOO_BIG,          /* end found; over max_size: 552 5.3.4 */
};

/* text, reply code and enhanced status for a BAD status (or DONE: 250 2.0.0). */
const char *smtp_data_strerror(enum smtp_data_status st, int *smtp_code,
                               const char **enhanced);

/*
 * The DATA parser. Its state is a few scalars: it resumes at any byte. It
 * starts at the beginning of a line (the CRLF that ended the DATA command
 * counts as the leading CRLF, so ".\r\n" at once is an empty message).
 * Only CR LF "." CR LF ends the message; a line begun after a bare CR or LF
 * never ends it, and neither does a dot line closed by anything but CRLF.
 * Dot-unstuffing removes exactly one leading dot of each output line.
 * In SMTP_BARE_NORMALIZE mode a bare CR or bare LF becomes CRLF (and begins
 * a new output line, which is dot-unstuffed like any other but can never be
 * the end); in SMTP_BARE_REJECT mode the message is marked bad.
 * The message is also bad for a NUL, a text line over SMTP_TEXT_LINE_MAX
 * octets (CRLF included, stuffing dot not counted) or passing max_size
 * octets (0 = no limit): out then holds the first max_size octets at most
 * (cut inside a text run, never between CR and LF) and nothing more is
 * appended. A bad message is still read to its real end so the session
 * stays in sync.
 * When several faults occur the status is, by priority: TOO_BIG, NUL,
 * BARE, LINE_TOO_LONG.
 */
struct smtp_data_parser {
	int state;                      /* private: position in the end sequence */
	int mode;                       /* enum smtp_bare_lf_mode */
	unsigned faults;                /* private: faults seen so far */
	size_t max_size;                /* octets of content allowed; 0 = no limit */
	uint64_t bytes;                 /* octets of content (unstuffed, CRLF lines) */
	size_t line_len;                /* octets of the current output line so far */
	int done;                       /* the end was found: status is final */
};

void smtp_data_init(struct smtp_data_parser *p, enum smtp_bare_lf_mode mode, size_t max_size);
/*
 * smtp_data_feed: parse in / len, appending content to out (CRLF-terminated
 * lines, no bare CR or LF, never the final dot line). *consumed is the
 * octets used: all of len on MORE; on the end, the octets up to and
 * including the final CRLF, so pipelined commands after it stay unconsumed.
 * Once the end was found, later calls consume nothing and return the same
 * status; smtp_data_init starts the next message.
 */
enum smtp_data_status smtp_data_feed(struct smtp_data_parser *p, const char *in, size_t len,
                                     size_t *consumed, struct strbuf *out);
/* smtp_data_bytes: the message size in octets as received: content after
 * dot-unstuffing with CRLF line ends (RFC 1870's measure), counted also
 * past max_size. */
uint64_t smtp_data_bytes(const struct smtp_data_parser *p);

/* ---------------------------------------------------------------- BDAT */

/* smtp_bdat_parse_arg: "<1*DIGIT> [SP LAST]" (LAST case-insensitive);
 * 0 or SMTP_PARSE_BDAT_SYNTAX (also for a size over 2^64-1). */
int smtp_bdat_parse_arg(const char *arg, size_t len, uint64_t *chunk_size, int *last);

/*
 * The BDAT content checker: the DATA rules without dot-unstuffing or end
 * detection, resumable across chunks (a CRLF may straddle two chunks).
 * body SMTP_BODY_BINARYMIME passes content through verbatim: no bare CR/LF,
 * NUL or line-length checks (binary MIME may hold any octet), only
 * max_size. Otherwise the DATA rules apply (mode decides bare CR/LF).
 * Feed every chunk's payload; smtp_bdat_finish after the LAST chunk settles
 * a pending CR, ends an unterminated last line with CRLF (text bodies) and
 * returns DONE or a BAD status. out gets the content as for DATA.
 */
struct smtp_bdat_checker {
	int body;                       /* enum smtp_body of the transaction */
	int mode;                       /* enum smtp_bare_lf_mode */
	int pending_cr;                 /* private: chunk ended in CR */
	unsigned faults;                /* private: faults seen so far */
	size_t max_size;                /* octets of content allowed; 0 = no limit */
	uint64_t bytes;                 /* octets of content so far */
	size_t line_len;                /* octets of the current line so far */
};

void smtp_bdat_init(struct smtp_bdat_checker *c, int body, enum smtp_bare_lf_mode mode,
                    size_t max_size);
void smtp_bdat_feed(struct smtp_bdat_checker *c, const char *in, size_t len, struct strbuf *out);
enum smtp_data_status smtp_bdat_finish(struct smtp_bdat_checker *c, struct strbuf *out);
/* smtp_bdat_bytes: octets of content so far (after normalisation). */
uint64_t smtp_bdat_bytes(const struct smtp_bdat_checker *c);

#endif

/*
 * control_request.h - the console protocol: one request line in, a
 * multi-line answer and a status line out.
 *
 * Request: one line of at most CONTROL_LINE_MAX bytes ending in LF (a CR
 * before it is dropped), split into words at blanks. A word may be quoted
 * with "…" (backslash escapes \" \\ \n \t) or '…' (taken as written), so
 * that a note with spaces is one word. Control characters other than tab
 * are refused. At most CONTROL_ARGS_MAX words.
 *
 * Answer: the answer's text, one line at a time; a line that starts with
 * '.' is sent with one more '.' in front (the client removes it); then the
 * terminator line ".ok" or ".error". An error answer is one line saying
 * what went wrong.
 *
 *   control_request_parse   a request line into words (pure; fuzzed)
 *   control_answer_frame    an answer's text into protocol lines
 *
 * Memory: a parsed request owns its words (control_request_free).
 */
#ifndef IMPETUS_CONTROL_CONTROL_REQUEST_H
#define IMPETUS_CONTROL_CONTROL_REQUEST_H

#include <stddef.h>

#include "lib/strbuf.h"

#define CONTROL_LINE_MAX 4096               /* bytes of one request line, LF excluded */
#define CONTROL_ARGS_MAX 64                 /* words of one request */
#define CONTROL_END_OK ".ok"
#define CONTROL_END_ERROR ".error"

struct control_request {
	int argc;                           /* words */
	char **argv;                        /* argc words, then NULL; owned */
};

/* control_request_parse: split line[0..len) (no LF) into out. 0, or -1 with
 * a reason in err (unbalanced quote, control character, too long, too many
 * words); out is then empty. An empty or blank line gives argc 0. */
int control_request_parse(const char *line, size_t len, struct control_request *out,
                          char *err, size_t errlen);
void control_request_free(struct control_request *rq);

/* control_answer_frame: append text (lines; a missing final LF is added)
 * to out dot-stuffed, then the terminator for status (0 ok, else error). */
void control_answer_frame(const char *text, size_t len, int status, struct strbuf *out);

#endif

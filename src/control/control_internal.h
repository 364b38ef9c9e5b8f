/*
 * control_internal.h - shared by the files of src/control only.
 *
 * A command (struct control_cmd) is one request of a session: a verb gets
 * it with the request's words, appends its answer to control_cmd_out(), and
 * calls control_cmd_done() once - at once, or later from a callback on the
 * main loop. The command outlives its session when the client leaves first.
 */
#ifndef IMPETUS_CONTROL_CONTROL_INTERNAL_H
#define IMPETUS_CONTROL_CONTROL_INTERNAL_H

#include <time.h>

#include "control/control.h"
#include "lib/strbuf.h"

struct control_cmd;

struct strbuf *control_cmd_out(struct control_cmd *cmd);
/* control_cmd_done: send the answer with status (0 ok, else error); frees cmd. */
void control_cmd_done(struct control_cmd *cmd, int status);
/* control_cmd_fail: replace the answer with one line (printf) and send it as an error. */
void control_cmd_fail(struct control_cmd *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* control_cmd_shutdown_after: once this answer is written, stop the daemon. */
void control_cmd_shutdown_after(struct control_cmd *cmd);

/* The daemon's services and the main loop (control.c). */
const struct control_ops *control_ops_get(void);
struct loop *control_loop(void);
time_t control_started(void);           /* wall clock of control_start */

/* control_verbs.c: run the request argv on cmd (argc >= 1). */
void control_dispatch(struct control_cmd *cmd, int argc, char **argv);

/* control_config.c: "config set|get|eval|reload …" (argv[0] is "config"). */
void control_config(struct control_cmd *cmd, int argc, char **argv);

#endif

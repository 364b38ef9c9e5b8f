/*
 * control_request_fuzz.c - libFuzzer target for the console's request
 * parser (src/control/control_request.h): any bytes, split into lines as a
 * session splits them, must give words or a one-line error, never a crash,
 * a leak or undefined behaviour; the words must hold no control character
 * but tab/LF from escapes, and framing any text must end in a terminator.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "control/control_request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size;
	struct strbuf framed = STRBUF_INIT;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		struct control_request rq;
		char err[160];

		if (control_request_parse(p, len, &rq, err, sizeof(err)) == 0) {
			if (rq.argc < 0 || rq.argc > CONTROL_ARGS_MAX || (rq.argc > 0 && rq.argv == NULL))
				abort();
			for (int i = 0; i < rq.argc; i++)
				if (strlen(rq.argv[i]) > CONTROL_LINE_MAX)
					abort();
			control_request_free(&rq);
		} else if (err[0] == '\0' || rq.argc != 0) {
			abort();
		}
		p += len + (nl != NULL);
	}
	control_answer_frame((const char *)data, size, size & 1, &framed);
	if (framed.len < 4 || framed.data[framed.len - 1] != '\n')
		abort();
	strbuf_free(&framed);
	return 0;
}

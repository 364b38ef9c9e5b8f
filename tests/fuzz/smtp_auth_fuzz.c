/*
 * smtp_auth_fuzz.c - libFuzzer target for the AUTH payload decoders: the
 * mechanism line, base64, PLAIN fields and the users-file parser, on
 * arbitrary bytes. Invariants: decoding never writes past the room given,
 * a decoded PLAIN message's fields are NUL-free, 1..255 octets (authzid
 * 0..255) and re-encode to the input, and the users parser either fails
 * with a reason or returns a table.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "listener/smtp_auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_plain(const unsigned char *msg, size_t len)
{
	struct smtp_auth_creds c;

	if (smtp_auth_plain_decode(msg, len, &c) != 0)
		return;
	size_t z = strlen(c.authzid), u = strlen(c.user), p = strlen(c.pass);
	if (u == 0 || p == 0 || z > SMTP_AUTH_FIELD_MAX || u > SMTP_AUTH_FIELD_MAX ||
	    p > SMTP_AUTH_FIELD_MAX || z + u + p + 2 != len)
		abort();
	if (memcmp(msg, c.authzid, z) != 0 || memcmp(msg + z + 1, c.user, u) != 0 ||
	    memcmp(msg + z + u + 2, c.pass, p) != 0)
		abort();
	smtp_auth_creds_wipe(&c);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	enum smtp_auth_mech mech;
	const char *ir;
	size_t irlen, n;
	unsigned char out[SMTP_AUTH_LINE_MAX];
	char err[256];

	if (smtp_auth_mech_parse(text, size, &mech, &ir, &irlen) == 0 && ir != NULL &&
	    (ir < text || ir + irlen > text + size))
		abort();
	if (smtp_auth_b64_decode(text, size, out, sizeof(out), &n) == 0) {
		if (n > sizeof(out) || n > size / 4 * 3)
			abort();
		check_plain(out, n);
	}
	/* Also a small output buffer: the room limit must hold. */
	unsigned char small[5];
	if (smtp_auth_b64_decode(text, size, small, sizeof(small), &n) == 0 && n > sizeof(small))
		abort();
	check_plain(data, size);
	struct smtp_auth_users *u = smtp_auth_users_parse(text, size, err, sizeof(err));
	if (u != NULL)
		smtp_auth_users_unref(u);
	else if (err[0] == '\0')
		abort();
	return 0;
}

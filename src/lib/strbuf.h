/*
 * strbuf.h - a growable byte buffer, always NUL-terminated.
 *
 * The buffer owns its storage; strbuf_free releases it, strbuf_steal hands
 * it to the caller. Appends never fail (xalloc).
 */
#ifndef IMPETUS_LIB_STRBUF_H
#define IMPETUS_LIB_STRBUF_H

#include <stdarg.h>
#include <stddef.h>

struct strbuf {
	char *data;     /* NUL-terminated contents, NULL until the first append */
	size_t len;     /* bytes used, not counting the NUL */
	size_t cap;     /* bytes allocated */
};

#define STRBUF_INIT { NULL, 0, 0 }

void strbuf_append(struct strbuf *sb, const void *data, size_t len);
void strbuf_puts(struct strbuf *sb, const char *s);
void strbuf_putc(struct strbuf *sb, char c);
void strbuf_printf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void strbuf_vprintf(struct strbuf *sb, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
void strbuf_reset(struct strbuf *sb);
/* strbuf_cstr: the contents, "" for an empty buffer; valid until the next append. */
const char *strbuf_cstr(const struct strbuf *sb);
/* strbuf_steal: the contents as a malloc'd string the caller frees; sb is reset. */
char *strbuf_steal(struct strbuf *sb);
void strbuf_free(struct strbuf *sb);

#endif

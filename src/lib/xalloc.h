/*
 * xalloc.h - allocation that never returns NULL.
 *
 * The x* allocators abort the process with a paniclog line when memory is
 * exhausted: an MTA that cannot allocate cannot keep its promises, and
 * pretending otherwise spreads NULL checks that are never tested.
 */
#ifndef IMPETUS_LIB_XALLOC_H
#define IMPETUS_LIB_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *ptr, size_t size);
/* xreallocarray: realloc of nmemb * size with overflow check. */
void *xreallocarray(void *ptr, size_t nmemb, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* xasprintf: formatted allocation; the caller frees. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif

/*
 * arena.h - a region allocator for data that dies together.
 *
 * A configuration tree or generation allocates everything from one arena and
 * frees it in one call. Allocations never fail (xalloc) and are 16-byte
 * aligned. Not thread-safe: one owner at a time.
 */
#ifndef IMPETUS_LIB_ARENA_H
#define IMPETUS_LIB_ARENA_H

#include <stddef.h>

struct arena_chunk;

struct arena {
	struct arena_chunk *head;   /* newest chunk first */
	size_t chunk_size;          /* bytes per ordinary chunk */
	size_t total;               /* bytes handed out, for accounting */
};

void arena_init(struct arena *a, size_t chunk_size);
void *arena_alloc(struct arena *a, size_t size);          /* uninitialised */
void *arena_zalloc(struct arena *a, size_t size);         /* zeroed */
char *arena_strdup(struct arena *a, const char *s);
char *arena_strndup(struct arena *a, const char *s, size_t n);
/* arena_grow_array: *arr of *cap elements of size elem, grown to hold n+1. */
void arena_grow_array(struct arena *a, void **arr, size_t *cap, size_t n, size_t elem);
void arena_free(struct arena *a);

#endif

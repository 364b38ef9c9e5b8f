/*
 * arena.c - a region allocator for data that dies together.
 *
 * arena_init sets the chunk size; arena_alloc / arena_zalloc / arena_strdup /
 * arena_strndup carve from the newest chunk, opening a new chunk (or a
 * dedicated one for a large request) when it is full; arena_free releases
 * every chunk. The arena owns all memory it hands out.
 */
#include "lib/arena.h"

#include <stdlib.h>
#include <string.h>

#include "lib/xalloc.h"

struct arena_chunk {
	struct arena_chunk *next;   /* older chunk */
	size_t size;                /* usable bytes in data */
	size_t used;                /* bytes handed out */
	_Alignas(16) unsigned char data[];
};

void
arena_init(struct arena *a, size_t chunk_size)
{
	a->head = NULL;
	a->chunk_size = chunk_size ? chunk_size : 16384;
	a->total = 0;
}

void *
arena_alloc(struct arena *a, size_t size)
{
	struct arena_chunk *c = a->head;
	size_t need = (size + 15) & ~(size_t)15;

	if (need == 0)
		need = 16;
	if (c == NULL || c->size - c->used < need) {
		size_t csize = need > a->chunk_size / 4 ? need : a->chunk_size;
		c = xmalloc(sizeof(*c) + csize);
		c->size = csize;
		c->used = 0;
		if (csize == need && a->head != NULL) {
			/* A dedicated chunk: keep the current one open for small allocations. */
			c->next = a->head->next;
			a->head->next = c;
		} else {
			c->next = a->head;
			a->head = c;
		}
	}
	void *p = c->data + c->used;
	c->used += need;
	a->total += need;
	return p;
}

void *
arena_zalloc(struct arena *a, size_t size)
{
	void *p = arena_alloc(a, size);

	memset(p, 0, size);
	return p;
}

char *
arena_strndup(struct arena *a, const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *p = arena_alloc(a, len + 1);

	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

char *
arena_strdup(struct arena *a, const char *s)
{
	return arena_strndup(a, s, strlen(s));
}

void
arena_grow_array(struct arena *a, void **arr, size_t *cap, size_t n, size_t elem)
{
	if (n < *cap)
		return;
	size_t ncap = *cap ? *cap * 2 : 4;
	void *p = arena_alloc(a, ncap * elem);
	if (*arr != NULL)
		memcpy(p, *arr, *cap * elem);
	*arr = p;
	*cap = ncap;
}

void
arena_free(struct arena *a)
{
	struct arena_chunk *c = a->head, *next;

	while (c != NULL) {
		next = c->next;
		free(c);
		c = next;
	}
	a->head = NULL;
	a->total = 0;
}

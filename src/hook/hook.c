/*
 * hook.c - the hook runtime: registration, transactions, reclamation.
 *
 * imp_hook_register / imp_hook_unregister, imp_hook_txn_begin / _commit /
 * _abort / _open, imp_hook_reclaim, imp_hook_find, imp_hook_count and
 * imp_hook_reader_attach (impetus/hook.h).
 *
 * Provider arrays are copy-on-write: every change builds a new array. A
 * change outside a transaction is published at once; inside one it goes to
 * the head's staged array, and commit publishes every staged array. The
 * array a publish replaces is retired with the epoch of its replacement and
 * freed by imp_hook_reclaim once every thread is idle or has entered a later
 * epoch: a call marks its thread with the epoch it began in (seq_cst store)
 * before it loads the array (seq_cst load), so a reclaimer that sees the
 * thread idle, or in a later epoch, knows the thread cannot hold the old
 * array. Registration, commit and reclaim run on the main thread; the
 * registry lock only orders them against reader attachment.
 */
#include <impetus/hook.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lib/diag.h"
#include "lib/xalloc.h"

struct retired_set {
	struct imp_hook_set *set;       /* array no longer published */
	uint64_t epoch;                 /* freed once every reader is idle or later */
	struct retired_set *next;
};

__thread struct imp_hook_reader *imp_hook_self;
_Atomic uint64_t imp_hook_epoch = 1;

static pthread_mutex_t hook_lock = PTHREAD_MUTEX_INITIALIZER;
static struct imp_hook_head *hook_heads;        /* every head ever registered on */
static struct imp_hook_reader *_Atomic hook_readers;
static struct retired_set *hook_retired;
static int hook_txn;                            /* a transaction is open */

static struct imp_hook_set *set_copy(const struct imp_hook_set *s, int permanent_only);
static void publish(struct imp_hook_head *h, struct imp_hook_set *fresh);
static void head_link(struct imp_hook_head *h);

struct imp_hook_reader *
imp_hook_reader_attach(void)
{
	struct imp_hook_reader *r = xcalloc(1, sizeof(*r));

	atomic_init(&r->epoch, 0);
	/* Lock-free push: readers attach from any thread. */
	r->next = atomic_load(&hook_readers);
	while (!atomic_compare_exchange_weak(&hook_readers, &r->next, r))
		;
	imp_hook_self = r;
	return r;
}

void
imp_hook_head_link(struct imp_hook_head *h)
{
	pthread_mutex_lock(&hook_lock);
	head_link(h);
	pthread_mutex_unlock(&hook_lock);
}

static void
head_link(struct imp_hook_head *h)
{
	for (struct imp_hook_head *p = hook_heads; p != NULL; p = p->next)
		if (p == h)
			return;
	h->next = hook_heads;
	hook_heads = h;
}

/* A copy of s (all entries, or only the permanent ones), NULL when empty. */
static struct imp_hook_set *
set_copy(const struct imp_hook_set *s, int permanent_only)
{
	size_t n = 0;

	for (size_t i = 0; s != NULL && i < s->n; i++)
		if (!permanent_only || s->e[i].permanent)
			n++;
	if (n == 0)
		return NULL;
	struct imp_hook_set *c = xmalloc(sizeof(*c) + n * sizeof(c->e[0]));
	c->n = 0;
	for (size_t i = 0; i < s->n; i++)
		if (!permanent_only || s->e[i].permanent)
			c->e[c->n++] = s->e[i];
	return c;
}

/* Publish fresh as h's array; retire the one it replaces. */
static void
publish(struct imp_hook_head *h, struct imp_hook_set *fresh)
{
	struct imp_hook_set *old = atomic_exchange_explicit(&h->live, fresh, memory_order_seq_cst);

	if (old == NULL)
		return;
	struct retired_set *r = xmalloc(sizeof(*r));
	r->set = old;
	/* Calls that start from now on see fresh and record a later epoch. */
	r->epoch = atomic_fetch_add_explicit(&imp_hook_epoch, 1, memory_order_seq_cst);
	r->next = hook_retired;
	hook_retired = r;
}

void
imp_hook_register(struct imp_hook_head *h, void (*fn)(void), void *closure, int first)
{
	struct imp_hook_set *base, *fresh;
	size_t n;

	IMP_ASSERT(fn != NULL);
	pthread_mutex_lock(&hook_lock);
	head_link(h);
	if (hook_txn) {
		if (!h->staged_touched) {
			/* A transaction starts from the permanent registrations. */
			h->staged = set_copy(atomic_load(&h->live), 1);
			h->staged_touched = 1;
		}
		base = h->staged;
	} else {
		base = atomic_load(&h->live);
	}
	n = base ? base->n : 0;
	fresh = xmalloc(sizeof(*fresh) + (n + 1) * sizeof(fresh->e[0]));
	fresh->n = n + 1;
	struct imp_hook_entry e = { fn, closure, !hook_txn };
	if (first) {
		fresh->e[0] = e;
		if (n)
			memcpy(&fresh->e[1], base->e, n * sizeof(base->e[0]));
	} else {
		if (n)
			memcpy(fresh->e, base->e, n * sizeof(base->e[0]));
		fresh->e[n] = e;
	}
	if (hook_txn) {
		free(h->staged);        /* never published: no reader has it */
		h->staged = fresh;
	} else {
		publish(h, fresh);
	}
	pthread_mutex_unlock(&hook_lock);
}

int
imp_hook_unregister(struct imp_hook_head *h, void (*fn)(void), void *closure)
{
	struct imp_hook_set *cur, *fresh;
	int removed = 0;

	pthread_mutex_lock(&hook_lock);
	cur = hook_txn && h->staged_touched ? h->staged : atomic_load(&h->live);
	fresh = set_copy(cur, 0);
	if (fresh != NULL) {
		size_t j = 0;
		for (size_t i = 0; i < fresh->n; i++) {
			if (fresh->e[i].fn == fn && fresh->e[i].closure == closure)
				removed++;
			else
				fresh->e[j++] = fresh->e[i];
		}
		fresh->n = j;
		if (j == 0) {
			free(fresh);
			fresh = NULL;
		}
	}
	if (hook_txn && h->staged_touched) {
		free(h->staged);
		h->staged = fresh;
	} else if (removed) {
		publish(h, fresh);
	} else {
		free(fresh);
	}
	pthread_mutex_unlock(&hook_lock);
	return removed;
}

void
imp_hook_txn_begin(void)
{
	pthread_mutex_lock(&hook_lock);
	IMP_ASSERT(!hook_txn);
	hook_txn = 1;
	for (struct imp_hook_head *h = hook_heads; h != NULL; h = h->next) {
		h->staged = NULL;
		h->staged_touched = 0;
	}
	pthread_mutex_unlock(&hook_lock);
}

int
imp_hook_txn_open(void)
{
	int open;

	pthread_mutex_lock(&hook_lock);
	open = hook_txn;
	pthread_mutex_unlock(&hook_lock);
	return open;
}

void
imp_hook_txn_commit(void)
{
	pthread_mutex_lock(&hook_lock);
	IMP_ASSERT(hook_txn);
	for (struct imp_hook_head *h = hook_heads; h != NULL; h = h->next) {
		/* Untouched heads keep only their permanent providers. */
		struct imp_hook_set *fresh = h->staged_touched ? h->staged
		                                               : set_copy(atomic_load(&h->live), 1);
		struct imp_hook_set *cur = atomic_load(&h->live);
		if (!h->staged_touched && fresh != NULL && cur != NULL && fresh->n == cur->n) {
			free(fresh);    /* nothing changes: keep the published array */
		} else if (fresh != NULL || cur != NULL) {
			publish(h, fresh);
		}
		h->staged = NULL;
		h->staged_touched = 0;
	}
	hook_txn = 0;
	pthread_mutex_unlock(&hook_lock);
	imp_hook_reclaim();
}

void
imp_hook_txn_abort(void)
{
	pthread_mutex_lock(&hook_lock);
	IMP_ASSERT(hook_txn);
	for (struct imp_hook_head *h = hook_heads; h != NULL; h = h->next) {
		free(h->staged);
		h->staged = NULL;
		h->staged_touched = 0;
	}
	hook_txn = 0;
	pthread_mutex_unlock(&hook_lock);
}

size_t
imp_hook_reclaim(void)
{
	uint64_t oldest = UINT64_MAX;
	size_t waiting = 0;

	pthread_mutex_lock(&hook_lock);
	for (struct imp_hook_reader *r = atomic_load(&hook_readers); r != NULL; r = r->next) {
		uint64_t e = atomic_load_explicit(&r->epoch, memory_order_seq_cst);
		if (e != 0 && e < oldest)
			oldest = e;
	}
	/* A set retired at epoch E may be seen by calls that began at E or before. */
	for (struct retired_set **pp = &hook_retired; *pp != NULL;) {
		struct retired_set *r = *pp;
		if (r->epoch < oldest) {
			*pp = r->next;
			free(r->set);
			free(r);
		} else {
			waiting++;
			pp = &r->next;
		}
	}
	pthread_mutex_unlock(&hook_lock);
	return waiting;
}

struct imp_hook_head *
imp_hook_find(const char *scope, const char *name)
{
	struct imp_hook_head *found = NULL;

	pthread_mutex_lock(&hook_lock);
	for (struct imp_hook_head *h = hook_heads; h != NULL && found == NULL; h = h->next)
		if (strcmp(h->scope, scope) == 0 && strcmp(h->name, name) == 0)
			found = h;
	pthread_mutex_unlock(&hook_lock);
	return found;
}

size_t
imp_hook_count(struct imp_hook_head *h)
{
	struct imp_hook_set *s;
	size_t n;

	imp_hook_enter();
	s = atomic_load_explicit(&h->live, memory_order_acquire);
	n = s ? s->n : 0;
	imp_hook_leave();
	return n;
}

/*
 * binding_table.c - the process-wide binding slot table.
 *
 * binding_table_intern and binding_table_set_group (binding_table.h) write
 * it under a mutex; config_get_binding_id_from_name,
 * config_get_binding_name_from_id, config_get_binding_group_name_from_id and
 * config_get_binding_slot_count (impetus/binding.h) read it without locks:
 * names are published with release stores after they are complete, and
 * strings, once interned, are never freed.
 */
#include "conf/binding_table.h"

#include <impetus/binding.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "lib/xalloc.h"

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(const char *) slot_name[BINDING_SLOTS_MAX];     /* interned names */
static _Atomic(const char *) slot_group[BINDING_SLOTS_MAX];    /* interned group names */
static atomic_int slot_count;
static const char **groups_interned;    /* every group name handed out */
static size_t ngroups_interned;

static int
find_locked(const char *name, int n)
{
	for (int i = 0; i < n; i++) {
		const char *s = atomic_load_explicit(&slot_name[i], memory_order_acquire);
		if (s != NULL && strcmp(s, name) == 0)
			return i;
	}
	return -1;
}

static void
ensure_default(void)
{
	if (atomic_load(&slot_count) == 0) {
		atomic_store_explicit(&slot_name[0], "default", memory_order_release);
		atomic_store_explicit(&slot_group[0], "default", memory_order_release);
		atomic_store_explicit(&slot_count, 1, memory_order_release);
	}
}

int
binding_table_intern(const char *name)
{
	int slot, n;

	pthread_mutex_lock(&table_lock);
	ensure_default();
	n = atomic_load(&slot_count);
	slot = find_locked(name, n);
	if (slot < 0 && n < BINDING_SLOTS_MAX) {
		slot = n;
		atomic_store_explicit(&slot_name[slot], xstrdup(name), memory_order_release);
		atomic_store_explicit(&slot_group[slot], "default", memory_order_release);
		atomic_store_explicit(&slot_count, n + 1, memory_order_release);
	}
	pthread_mutex_unlock(&table_lock);
	return slot;
}

void
binding_table_set_group(int slot, const char *group)
{
	const char *interned = NULL;

	if (slot < 0 || slot >= BINDING_SLOTS_MAX)
		return;
	pthread_mutex_lock(&table_lock);
	for (size_t i = 0; i < ngroups_interned && interned == NULL; i++)
		if (strcmp(groups_interned[i], group) == 0)
			interned = groups_interned[i];
	if (interned == NULL) {
		groups_interned = xreallocarray(groups_interned, ngroups_interned + 1,
		                                sizeof(*groups_interned));
		interned = groups_interned[ngroups_interned++] = xstrdup(group);
	}
	atomic_store_explicit(&slot_group[slot], interned, memory_order_release);
	pthread_mutex_unlock(&table_lock);
}

ec_binding_slot
config_get_binding_id_from_name(const char *name)
{
	int n = atomic_load_explicit(&slot_count, memory_order_acquire);

	if (n == 0)
		return strcmp(name, "default") == 0 ? 0 : EC_BINDING_SLOT_UNBOUND;
	return find_locked(name, n);
}

const char *
config_get_binding_name_from_id(ec_binding_slot slot)
{
	if (slot == 0)
		return "default";
	if (slot < 0 || slot >= atomic_load_explicit(&slot_count, memory_order_acquire))
		return NULL;
	return atomic_load_explicit(&slot_name[slot], memory_order_acquire);
}

const char *
config_get_binding_group_name_from_id(ec_binding_slot slot)
{
	if (slot == 0 && atomic_load(&slot_count) == 0)
		return "default";
	if (slot < 0 || slot >= atomic_load_explicit(&slot_count, memory_order_acquire))
		return NULL;
	return atomic_load_explicit(&slot_group[slot], memory_order_acquire);
}

int
config_get_binding_slot_count(void)
{
	int n = atomic_load_explicit(&slot_count, memory_order_acquire);

	return n ? n : 1;
}

/*
 * impetus/binding.h - binding slots and names.
 *
 * A binding slot is the small integer that stands for a configured binding
 * everywhere on the outbound side (queues, connections, throttles, stats).
 * Slots are stable for the life of the process: a reload keeps every known
 * binding's slot and gives new bindings new ones. Slot 0 is "default".
 * These functions are safe on any thread; the names they return stay valid
 * for the life of the process.
 */
#ifndef IMPETUS_BINDING_H
#define IMPETUS_BINDING_H

#include <impetus/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Momentum's names. -1 (EC_BINDING_SLOT_UNBOUND) / NULL when unknown. */
ec_binding_slot config_get_binding_id_from_name(const char *name);
const char *config_get_binding_name_from_id(ec_binding_slot slot);
/* The binding group of a slot in the running configuration ("default" when
 * the binding is in none); NULL for an unknown slot. */
const char *config_get_binding_group_name_from_id(ec_binding_slot slot);
/* Slots handed out so far: valid slots are 0 .. count-1. */
int config_get_binding_slot_count(void);

#ifdef __cplusplus
}
#endif

#endif

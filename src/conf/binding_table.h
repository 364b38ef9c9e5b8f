/*
 * binding_table.h - the process-wide binding slot table behind
 * impetus/binding.h: slots are handed out once per name and never reused.
 */
#ifndef IMPETUS_CONF_BINDING_TABLE_H
#define IMPETUS_CONF_BINDING_TABLE_H

#define BINDING_SLOTS_MAX 16384

/* binding_table_intern: the slot of name, handed out now if new; -1 when the
 * table is full. Main thread (configuration building). */
int binding_table_intern(const char *name);
/* binding_table_set_group: record slot's group in the running configuration. */
void binding_table_set_group(int slot, const char *group);

#endif

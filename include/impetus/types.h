/*
 * impetus/types.h - the objects hooks pass around.
 *
 * ec_message        one recipient of one message (impetus/message.h)
 * domain_record     a routing domain: its queues, DNS state, counters. Modules
 *                   may read dr->domain; the rest is the core's.
 * host_record       an MX host of a domain; modules may read host->name.
 * accept_construct  an inbound connection (impetus/message.h accessors)
 * validate_context  the policy context of an inbound session
 * ec_binding_slot   the integer id of a configured binding (impetus/binding.h)
 *
 * Domain and host records belong to the event loop that created them: read
 * them only inside the hook call that handed them over, never keep them.
 */
#ifndef IMPETUS_TYPES_H
#define IMPETUS_TYPES_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ec_message ec_message;
typedef struct domain_record domain_record;
typedef struct host_record host_record;
typedef struct accept_construct accept_construct;
typedef struct validate_context validate_context;
typedef int ec_binding_slot;

#define EC_BINDING_SLOT_UNBOUND (-1)

struct domain_record {
	char *domain;           /* routing domain, lower case; must stay first */
};

struct host_record {
	char *name;             /* MX host name, lower case; must stay first */
};

#ifdef __cplusplus
}
#endif

#endif

/*
 * queue_binding.c - which binding a recipient-message goes out on.
 *
 *   queue_assign_binding   hook, X-Binding, X-Binding-Group, else default
 *
 * Runs on the reception loop before the batch is spooled (the binding name
 * is written with the recipient). Thread-safe: reads the configuration and
 * calls binding_group_choose_binding, whose providers must be thread-safe.
 */
#include "queue/queue.h"

#include <stdio.h>
#include <string.h>

#include <impetus/hooks/core/binding_group_choose_binding.h>

#include "conf/conf.h"
#include "conf/conf_core.h"
#include "message/message.h"

static int group_member(const struct conf_binding_group *g, const char *msg_id);

/* A member of g chosen by the message id (spreads a batch's recipients). */
static int
group_member(const struct conf_binding_group *g, const char *msg_id)
{
	uint64_t h = 1469598103934665603ull;

	if (g->nslots == 0)
		return -1;
	for (const char *p = msg_id; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	return g->slots[h % g->nslots];
}

int
queue_assign_binding(const struct conf *c, const struct queue_binding_request *rq,
                     int *is_default)
{
	const char *group = rq->header_group != NULL ? rq->header_group : "default";
	int slot = -1;

	*is_default = 0;
	if (has_core_binding_group_choose_binding_hook()) {
		struct ec_message view;

		memset(&view, 0, sizeof(view));
		atomic_init(&view.refs, 1);
		snprintf(view.id, sizeof(view.id), "%s", rq->msg_id);
		snprintf(view.batch_id, sizeof(view.batch_id), "%s", rq->batch_id);
		view.mailfrom = (char *)rq->mailfrom;
		view.rcptto = (char *)rq->rcpt;
		view.binding_slot = EC_BINDING_SLOT_UNBOUND;
		view.protocol = "esmtp";
		slot = call_core_binding_group_choose_binding_hook(&view, group);
		if (slot >= 0 && conf_binding_name(c, slot) != NULL)
			return slot;
		slot = -1;
	}
	if (rq->header_binding != NULL && (slot = conf_binding_slot(c, rq->header_binding)) >= 0)
		return slot;
	if (rq->header_group != NULL) {
		const struct conf_binding_group *g = conf_binding_group_find(c, rq->header_group);
		if (g != NULL && (slot = group_member(g, rq->msg_id)) >= 0)
			return slot;
	}
	*is_default = 1;
	if (conf_global(c, &conf_opt_default_binding)->i == QUEUE_DEFAULT_NONE)
		return -1;
	return 0;
}

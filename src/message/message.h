/*
 * message.h - the core's view of messages and inbound connections.
 *
 * struct ec_message is the recipient-message of impetus/message.h with every
 * field the core needs. message_new builds one (the listener and the spool
 * will, the tests do now); message_ref / message_unref count its owners;
 * the last unref frees it. Not thread-safe for writes: one owner at a time
 * changes a message (Momentum's "single thread-safe"); reads through
 * impetus/message.h are safe while a reference is held.
 */
#ifndef IMPETUS_MESSAGE_MESSAGE_H
#define IMPETUS_MESSAGE_MESSAGE_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <impetus/message.h>

#define MESSAGE_ID_LEN 24       /* text ids, NUL included */

struct ec_message {
	atomic_int refs;
	char id[MESSAGE_ID_LEN];            /* text id */
	char batch_id[MESSAGE_ID_LEN];      /* text id of the submission */
	uint64_t conn_id;                   /* inbound connection, 0 = local */
	char *mailfrom;                     /* reverse path, owned; "" = null */
	char *rcptto;                       /* recipient, owned */
	ec_binding_slot binding_slot;       /* EC_BINDING_SLOT_UNBOUND until assigned */
	domain_record *domain;              /* routing domain, not owned */
	size_t size;                        /* bytes of the body */
	unsigned num_retries;               /* delivery attempts that failed transiently */
	struct timeval reception;           /* when the 250 was given */
	struct timeval next_attempt;        /* when delivery is next tried */
	const char *protocol;               /* static string: "esmtp", … */
	struct sockaddr_storage recv_from;  /* injecting peer; family 0 = local */
	struct sockaddr_storage remote;     /* peer of the latest attempt; family 0 = none */
	int stage;                          /* connection stage of the latest attempt */
};

struct accept_construct {
	uint64_t conn_id;                   /* unique per inbound connection */
	struct sockaddr_storage remote;     /* the client */
	struct sockaddr_storage local;      /* our listening address */
};

/* message_new: a message with the given ids and envelope (copied). */
struct ec_message *message_new(const char *id, const char *batch_id, const char *mailfrom,
                               const char *rcptto);
struct ec_message *message_ref(struct ec_message *m);
void message_unref(struct ec_message *m);
/* message_set_addr: copy sa (NULL clears) into one of the message's addresses. */
void message_set_addr(struct sockaddr_storage *dst, const struct sockaddr *sa);

#endif

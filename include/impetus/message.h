/*
 * impetus/message.h - read access to messages and inbound connections.
 *
 * An ec_message is one recipient of one submitted message: each RCPT TO of
 * a transaction becomes its own ec_message with its own id, and all of them
 * share the transaction's batch id and body. Accessors are safe while the
 * caller holds the message (inside a hook call that handed it over). Strings
 * returned belong to the message.
 */
#ifndef IMPETUS_MESSAGE_H
#define IMPETUS_MESSAGE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include <impetus/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Identity */
const char *ec_message_id(const ec_message *m);         /* unique across restarts */
const char *ec_message_batch_id(const ec_message *m);   /* shared by one transaction */
uint64_t ec_message_conn_id(const ec_message *m);       /* inbound connection; 0 = local */

/* Envelope: addresses without angle brackets; "" is the null reverse path. */
const char *ec_message_mailfrom(const ec_message *m);
const char *ec_message_rcptto(const ec_message *m);

/* Routing and state */
ec_binding_slot ec_message_binding_slot(const ec_message *m);
domain_record *ec_message_domain(const ec_message *m);  /* NULL before routing */
size_t ec_message_size(const ec_message *m);            /* bytes of the stored body */
unsigned ec_message_num_retries(const ec_message *m);
time_t ec_message_reception_time(const ec_message *m);
const char *ec_message_protocol(const ec_message *m);   /* "esmtp", "rest", "internal"… */
const struct sockaddr *ec_message_received_from(const ec_message *m); /* NULL: local */
/* The peer and connection stage (log-formats stage codes 0-22) of the
 * latest delivery attempt; NULL / 0 before any attempt. */
const struct sockaddr *ec_message_remote_addr(const ec_message *m);
int ec_message_stage(const ec_message *m);
/* ec_message_set_next_attempt_time: for ec_message_set_next_attempt providers. */
void ec_message_set_next_attempt_time(ec_message *m, const struct timeval *when);
void ec_message_get_next_attempt_time(const ec_message *m, struct timeval *when);

/* Inbound connections */
const struct sockaddr *accept_construct_remote(const accept_construct *ac);
const struct sockaddr *accept_construct_local(const accept_construct *ac);
uint64_t accept_construct_conn_id(const accept_construct *ac);

/* sockaddr_render: "ip" (IPv6 without brackets) into buf; "" for NULL. */
const char *sockaddr_render_ip(const struct sockaddr *sa, char *buf, size_t len);
/* sockaddr_render_port: "ip:port" ("[ip6]:port" for IPv6); "" for NULL. */
const char *sockaddr_render_ip_port(const struct sockaddr *sa, char *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif

/*
 * message.c - recipient-messages and inbound connections: construction,
 * reference counting, and the accessors of impetus/message.h.
 *
 * message_new copies its strings; message_unref frees the message with its
 * last reference. sockaddr_render_ip / _ip_port format addresses for logs.
 */
#include "message/message.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/xalloc.h"

struct ec_message *
message_new(const char *id, const char *batch_id, const char *mailfrom, const char *rcptto)
{
	struct ec_message *m = xcalloc(1, sizeof(*m));

	atomic_init(&m->refs, 1);
	snprintf(m->id, sizeof(m->id), "%s", id);
	snprintf(m->batch_id, sizeof(m->batch_id), "%s", batch_id);
	m->mailfrom = xstrdup(mailfrom ? mailfrom : "");
	m->rcptto = xstrdup(rcptto);
	m->binding_slot = EC_BINDING_SLOT_UNBOUND;
	m->protocol = "esmtp";
	gettimeofday(&m->reception, NULL);
	m->next_attempt = m->reception;
	return m;
}

struct ec_message *
message_ref(struct ec_message *m)
{
	atomic_fetch_add(&m->refs, 1);
	return m;
}

void
message_unref(struct ec_message *m)
{
	if (m == NULL || atomic_fetch_sub(&m->refs, 1) != 1)
		return;
	free(m->mailfrom);
	free(m->rcptto);
	free(m);
}

void
message_set_addr(struct sockaddr_storage *dst, const struct sockaddr *sa)
{
	memset(dst, 0, sizeof(*dst));
	if (sa == NULL)
		return;
	if (sa->sa_family == AF_INET)
		memcpy(dst, sa, sizeof(struct sockaddr_in));
	else if (sa->sa_family == AF_INET6)
		memcpy(dst, sa, sizeof(struct sockaddr_in6));
	else if (sa->sa_family == AF_UNIX)
		dst->ss_family = AF_UNIX;       /* a local client: no address to keep */
}

static const struct sockaddr *
addr_or_null(const struct sockaddr_storage *ss)
{
	return ss->ss_family == 0 ? NULL : (const struct sockaddr *)ss;
}

const char *ec_message_id(const ec_message *m) { return m->id; }
const char *ec_message_batch_id(const ec_message *m) { return m->batch_id; }
uint64_t ec_message_conn_id(const ec_message *m) { return m->conn_id; }
const char *ec_message_mailfrom(const ec_message *m) { return m->mailfrom; }
const char *ec_message_rcptto(const ec_message *m) { return m->rcptto; }
ec_binding_slot ec_message_binding_slot(const ec_message *m) { return m->binding_slot; }
domain_record *ec_message_domain(const ec_message *m) { return m->domain; }
size_t ec_message_size(const ec_message *m) { return m->size; }
unsigned ec_message_num_retries(const ec_message *m) { return m->num_retries; }
time_t ec_message_reception_time(const ec_message *m) { return m->reception.tv_sec; }
const char *ec_message_protocol(const ec_message *m) { return m->protocol; }
int ec_message_stage(const ec_message *m) { return m->stage; }

const struct sockaddr *
ec_message_received_from(const ec_message *m)
{
	return addr_or_null(&m->recv_from);
}

const struct sockaddr *
ec_message_remote_addr(const ec_message *m)
{
	return addr_or_null(&m->remote);
}

void
ec_message_set_next_attempt_time(ec_message *m, const struct timeval *when)
{
	m->next_attempt = *when;
}

void
ec_message_get_next_attempt_time(const ec_message *m, struct timeval *when)
{
	*when = m->next_attempt;
}

const struct sockaddr *
accept_construct_remote(const accept_construct *ac)
{
	return addr_or_null(&ac->remote);
}

const struct sockaddr *
accept_construct_local(const accept_construct *ac)
{
	return addr_or_null(&ac->local);
}

uint64_t
accept_construct_conn_id(const accept_construct *ac)
{
	return ac->conn_id;
}

const char *
sockaddr_render_ip(const struct sockaddr *sa, char *buf, size_t len)
{
	if (len == 0)
		return buf;
	buf[0] = '\0';
	if (sa == NULL)
		return buf;
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, (socklen_t)len);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf, (socklen_t)len);
	return buf;
}

const char *
sockaddr_render_ip_port(const struct sockaddr *sa, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	if (len == 0)
		return buf;
	buf[0] = '\0';
	if (sa == NULL)
		return buf;
	sockaddr_render_ip(sa, ip, sizeof(ip));
	if (sa->sa_family == AF_INET)
		snprintf(buf, len, "%s:%u", ip, ntohs(((const struct sockaddr_in *)sa)->sin_port));
	else if (sa->sa_family == AF_INET6)
		snprintf(buf, len, "[%s]:%u", ip, ntohs(((const struct sockaddr_in6 *)sa)->sin6_port));
	return buf;
}

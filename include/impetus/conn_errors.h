/*
 * impetus/conn_errors.h - why an outbound connection attempt failed, and
 * what the scheduler does about it.
 *
 * log_client_connection_failure's err argument is a bit mask with exactly
 * one CONN_ERROR_* cause and the CONN_ACTION_* flags of the action taken
 * (none, REQUEUE1 or PURGE_DOMAIN). The numbers below are part of the ABI:
 * they never change.
 *
 *   cause                          action
 *   MX_LOOKUP_PENDING              none: wait for DNS, then try again
 *   MX_LOOKUP_FAILED               none, or PURGE_DOMAIN after DNS_Failures_To_Purge
 *                                  (at once on NXDOMAIN)
 *   SMTP_NULL_MX                   PURGE_DOMAIN (RFC 7505: 556 5.1.10)
 *   NO_MXS_REACHABLE               REQUEUE1
 *   PROHIBITED_IP                  PURGE_DOMAIN (551 5.4.6)
 *   HOST_MAX_REACHED               none: wait for a free slot
 *   SOCKET, IOCTL, BIND            REQUEUE1
 *   CONNECT, CONNECT_NETWORK,      the address is marked failed and the next host
 *   CONNECT_TIMEOUT                is tried; REQUEUE1 when none is left
 */
#ifndef IMPETUS_CONN_ERRORS_H
#define IMPETUS_CONN_ERRORS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CONN_ERROR_MX_LOOKUP_PENDING   0x00000001  /* MX/A resolution in flight */
#define CONN_ERROR_MX_LOOKUP_FAILED    0x00000002  /* SERVFAIL, timeout, NXDOMAIN */
#define CONN_ERROR_SMTP_NULL_MX        0x00000004  /* MX 0 . (RFC 7505) */
#define CONN_ERROR_NO_MXS_REACHABLE    0x00000008  /* every host failed recently */
#define CONN_ERROR_PROHIBITED_IP       0x00000010  /* every address in Prohibited_Hosts */
#define CONN_ERROR_HOST_MAX_REACHED    0x00000020  /* every host at its connection limit */
#define CONN_ERROR_SOCKET              0x00000040  /* socket() failed */
#define CONN_ERROR_IOCTL               0x00000080  /* non-blocking setup failed */
#define CONN_ERROR_BIND                0x00000100  /* bind() to Bind_Address failed */
#define CONN_ERROR_CONNECT             0x00000200  /* connection refused */
#define CONN_ERROR_CONNECT_NETWORK     0x00000400  /* network or host unreachable */
#define CONN_ERROR_CONNECT_TIMEOUT     0x00000800  /* no answer within Connect_Timeout */
#define CONN_ERROR_MASK                0x0000ffff

#define CONN_ACTION_REQUEUE1           0x00010000  /* one message: active -> delayed */
#define CONN_ACTION_PURGE_DOMAIN       0x00020000  /* every message of the domain fails */
#define CONN_ACTION_MASK               0xffff0000

/* conn_error_name: the name of one flag ("CONN_ERROR_CONNECT"), or NULL. */
const char *conn_error_name(int flag);
/* conn_error_render: the mask as "CONN_ERROR_CONNECT_TIMEOUT|CONN_ACTION_REQUEUE1"
 * (causes first, then actions, each in bit order; unknown bits as 0x…; "0"
 * for an empty mask). Writes at most len bytes including the NUL and returns
 * the length the whole text needs, like snprintf. */
size_t conn_error_render(int err, char *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif

/*
 * conf_core.h - the core's own options and stanzas.
 *
 * conf_registry_init() (conf.h) registers them; code reads them through
 * these definitions, e.g. conf_global(c, &conf_opt_spoolbase)->s.
 * docs/configuration.md lists every one with its type, default and scopes.
 */
#ifndef IMPETUS_CONF_CONF_CORE_H
#define IMPETUS_CONF_CONF_CORE_H

#include <stdint.h>
#include <sys/socket.h>

#include "conf/conf.h"

/* Process */
extern struct conf_option conf_opt_spoolbase;
extern struct conf_option conf_opt_pidfile;
extern struct conf_option conf_opt_event_loops;
extern struct conf_option conf_opt_user;
extern struct conf_option conf_opt_group;
extern struct conf_option conf_opt_module_search_path;
extern struct conf_option conf_opt_concurrency;         /* ThreadPool */
extern struct conf_option conf_opt_paniclog;            /* ec_logger */

/* Log writers (src/log/log.c): ec_logger and bounce_logger stanzas */
extern struct conf_option conf_opt_mainlog;             /* ec_logger */
extern struct conf_option conf_opt_rejectlog;           /* ec_logger */
extern struct conf_option conf_opt_jsonlog;             /* ec_logger */
extern struct conf_option conf_opt_bouncelog;           /* bounce_logger */
extern struct conf_option conf_opt_log_heartbeat;       /* both */
extern struct conf_option conf_opt_log_receptions;      /* ec_logger */
extern struct conf_option conf_opt_log_deliveries;      /* ec_logger */
extern struct conf_option conf_opt_log_transient_failures; /* both */
extern struct conf_option conf_opt_log_permanent_failures; /* both */
extern struct conf_option conf_opt_log_rejections;      /* ec_logger */

/* Inbound (ESMTP_Listener > Listen > Peer) */
extern struct conf_option conf_opt_smtp_extensions;
extern struct conf_option conf_opt_banner_hostname;
extern struct conf_option conf_opt_max_message_size;
extern struct conf_option conf_opt_max_recipients_per_message;
extern struct conf_option conf_opt_max_receptions_per_connection;
extern struct conf_option conf_opt_listener_sessions;
extern struct conf_option conf_opt_peer_sessions;
extern struct conf_option conf_opt_idle_time;
extern struct conf_option conf_opt_require_ehlo;
extern struct conf_option conf_opt_relay_hosts;
extern struct conf_option conf_opt_relay_domains;
extern struct conf_option conf_opt_open_relay;
extern struct conf_option conf_opt_bare_line_feed;
extern struct conf_option conf_opt_tls_certificate;
extern struct conf_option conf_opt_tls_key;
extern struct conf_option conf_opt_tls_ca;
extern struct conf_option conf_opt_auth_users_file;
extern struct conf_option conf_opt_auth_without_tls;
extern struct conf_option conf_opt_auth_max_failures;
extern struct conf_option conf_opt_auth_peer_max_failures;
extern struct conf_option conf_opt_auth_failure_window;

/* Outbound (six-step fallback) */
extern struct conf_option conf_opt_max_outbound_connections;
extern struct conf_option conf_opt_message_expiration;
extern struct conf_option conf_opt_retry_interval;
extern struct conf_option conf_opt_max_retry_interval;
extern struct conf_option conf_opt_outbound_throttle_messages;
extern struct conf_option conf_opt_outbound_throttle_connections;
extern struct conf_option conf_opt_suspend_delivery;
extern struct conf_option conf_opt_bind_address;
extern struct conf_option conf_opt_ehlo_hostname;
extern struct conf_option conf_opt_server_max_outbound_connections;
extern struct conf_option conf_opt_max_retries;
extern struct conf_option conf_opt_default_binding;
extern struct conf_option conf_opt_gateway;
extern struct conf_option conf_opt_routes;
extern struct conf_option conf_opt_remote_smtp_port;
extern struct conf_option conf_opt_dns_servers;
extern struct conf_option conf_opt_dns_timeout;
extern struct conf_option conf_opt_use_ipv6;
extern struct conf_option conf_opt_min_dns_ttl;
extern struct conf_option conf_opt_max_dns_ttl;
extern struct conf_option conf_opt_dns_failures_to_purge;
extern struct conf_option conf_opt_prohibited_hosts;
extern struct conf_option conf_opt_skip_hosts;
extern struct conf_option conf_opt_host_failure_retry;
extern struct conf_option conf_opt_mx_failures_to_delay;
extern struct conf_option conf_opt_connect_timeout_to_delay;
extern struct conf_option conf_opt_generate_bounces;
extern struct conf_option conf_opt_max_deliveries_per_connection;
extern struct conf_option conf_opt_max_recipients_per_batch;
extern struct conf_option conf_opt_idle_timeout;
extern struct conf_option conf_opt_connect_timeout;
extern struct conf_option conf_opt_ehlo_timeout;
extern struct conf_option conf_opt_mailfrom_timeout;
extern struct conf_option conf_opt_rcptto_timeout;
extern struct conf_option conf_opt_data_timeout;
extern struct conf_option conf_opt_body_timeout;
extern struct conf_option conf_opt_tls;
extern struct conf_option conf_opt_tls_verify;
extern struct conf_option conf_opt_metrics_domain_labels;

/* A next hop of Routes / Gateway: "smtp://host[:port][?port=P&pref=N]" or "host[:port]". */
struct conf_route {
	char host[256];                     /* name or IP literal (no brackets) */
	int port;                           /* 0 = Remote_SMTP_Port */
	int pref;                           /* preference, lower first; 0 by default */
};
/* conf_route_parse: 0, or -1 with a reason in err. */
int conf_route_parse(const char *text, struct conf_route *out, char *err, size_t errlen);
/* conf_hostport_parse: "ip", "ip:port", "[ip6]:port" into ss (default port);
 * 0, or -1 with a reason. */
int conf_hostport_parse(const char *text, int default_port, struct sockaddr_storage *ss,
                        char *err, size_t errlen);

/* The scope bit of the HTTP_Listener stanza (HTTP_Listener { Listen "ip:port" { } }),
 * allocated by conf_registry_init; Control_Listener has CONF_SCOPE_CONTROL_LISTENER.
 * Listen is allowed in ESMTP_Listener, Control_Listener and HTTP_Listener. */
extern uint32_t conf_scope_http_listener;

/* conf_default_text: the embedded default configuration. */
extern const char conf_default_text[];

#endif

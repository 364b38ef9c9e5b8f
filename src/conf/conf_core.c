/*
 * conf_core.c - the core's option and stanza definitions, and the embedded
 * default configuration.
 *
 * conf_registry_init registers everything here once (later calls do
 * nothing); a bad definition is our bug, so it asserts. Options here carry
 * Momentum's names and defaults (MOMENTUM.md §3-4).
 */
#include "conf/conf_core.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/diag.h"
#include "lib/netaddr.h"

#define OUTBOUND_AND_HOST (CONF_SCOPES_OUTBOUND | CONF_SCOPE_HOST)

struct conf_option conf_opt_spoolbase = {
	.name = "Spoolbase", .type = CONF_T_STRING, .def = "/var/spool/impetus",
	.scopes = CONF_SCOPE_GLOBAL, .flags = CONF_F_RESTART,
	.help = "directory of the spool; locked by the running instance",
};
struct conf_option conf_opt_pidfile = {
	.name = "Pidfile", .type = CONF_T_STRING, .def = "/run/impetusd.pid",
	.scopes = CONF_SCOPE_GLOBAL, .flags = CONF_F_RESTART,
	.help = "file holding the daemon's process id while it runs",
};
struct conf_option conf_opt_event_loops = {
	.name = "Event_Loops", .type = CONF_T_INT, .def = "0",
	.scopes = CONF_SCOPE_GLOBAL, .flags = CONF_F_RESTART, .min = 0, .max = 256,
	.help = "number of event-loop threads; 0 means one per online core",
};
struct conf_option conf_opt_user = {
	.name = "User", .type = CONF_T_STRING,
	.scopes = CONF_SCOPE_GLOBAL | CONF_SCOPE_SECURITY, .flags = CONF_F_RESTART,
	.help = "user to run as after binding sockets, when started as root",
};
struct conf_option conf_opt_group = {
	.name = "Group", .type = CONF_T_STRING,
	.scopes = CONF_SCOPE_GLOBAL | CONF_SCOPE_SECURITY, .flags = CONF_F_RESTART,
	.help = "group to run as after binding sockets (default: the user's group)",
};
struct conf_option conf_opt_module_search_path = {
	.name = "Module_Search_Path", .type = CONF_T_LIST, .def = "( \"" IMPETUS_MODULE_DIR "\" )",
	.scopes = CONF_SCOPE_GLOBAL,
	.help = "directories searched, in order, for <module>.so when a stanza names a module",
};
struct conf_option conf_opt_concurrency = {
	.name = "Concurrency", .type = CONF_T_INT, .def = "4",
	.scopes = CONF_SCOPE_THREADPOOL, .flags = CONF_F_RESTART, .min = 1, .max = 1024,
	.help = "threads in a thread pool",
};
struct conf_option conf_opt_paniclog = {
	.name = "Paniclog", .type = CONF_T_STRING,
	.scopes = CONF_SCOPE_EC_LOGGER,
	.help = "file for warnings, errors and notable events",
};

#define LOGGER_SCOPES (CONF_SCOPE_EC_LOGGER | CONF_SCOPE_BOUNCE_LOGGER)

struct conf_option conf_opt_mainlog = {
	.name = "Mainlog", .type = CONF_T_STRING,
	.scopes = CONF_SCOPE_EC_LOGGER,
	.help = "file for reception, delivery and failure records (R, D, T, P)",
};
struct conf_option conf_opt_rejectlog = {
	.name = "Rejectlog", .type = CONF_T_STRING,
	.scopes = CONF_SCOPE_EC_LOGGER,
	.help = "file for inbound rejection records",
};
struct conf_option conf_opt_jsonlog = {
	.name = "Jsonlog", .type = CONF_T_STRING,
	.scopes = CONF_SCOPE_EC_LOGGER,
	.help = "file for every mainlog and rejectlog event as one JSON object per line",
};
struct conf_option conf_opt_bouncelog = {
	.name = "Bouncelog", .type = CONF_T_STRING,
	.scopes = CONF_SCOPE_BOUNCE_LOGGER,
	.help = "file for bounce records with their classification code",
};
struct conf_option conf_opt_log_heartbeat = {
	.name = "Heartbeat", .type = CONF_T_DURATION, .def = "60",
	.scopes = LOGGER_SCOPES, .min = 0, .max = INT32_MAX,
	.help = "seconds between heartbeat records in the logger's files; 0 = none",
};
struct conf_option conf_opt_log_receptions = {
	.name = "Log_Receptions", .type = CONF_T_BOOL, .def = "true",
	.scopes = CONF_SCOPE_EC_LOGGER,
	.help = "write reception (R) records",
};
struct conf_option conf_opt_log_deliveries = {
	.name = "Log_Deliveries", .type = CONF_T_BOOL, .def = "true",
	.scopes = CONF_SCOPE_EC_LOGGER,
	.help = "write delivery (D) records",
};
struct conf_option conf_opt_log_transient_failures = {
	.name = "Log_Transient_Failures", .type = CONF_T_BOOL, .def = "true",
	.scopes = LOGGER_SCOPES,
	.help = "write transient failure records (mainlog T; bouncelog T)",
};
struct conf_option conf_opt_log_permanent_failures = {
	.name = "Log_Permanent_Failures", .type = CONF_T_BOOL, .def = "true",
	.scopes = LOGGER_SCOPES,
	.help = "write permanent failure records (mainlog P; bouncelog B)",
};
struct conf_option conf_opt_log_rejections = {
	.name = "Log_Rejections", .type = CONF_T_BOOL, .def = "true",
	.scopes = CONF_SCOPE_EC_LOGGER,
	.help = "write rejection records",
};

struct conf_option conf_opt_max_outbound_connections = {
	.name = "Max_Outbound_Connections", .type = CONF_T_INT, .def = "32",
	.scopes = OUTBOUND_AND_HOST, .min = -1, .max = INT32_MAX,
	.help = "concurrent connections per binding and domain (per host in Host scope, -1 = no limit)",
};
struct conf_option conf_opt_message_expiration = {
	.name = "Message_Expiration", .type = CONF_T_DURATION, .def = "86400",
	.scopes = CONF_SCOPES_OUTBOUND, .min = 0, .max = INT32_MAX,
	.help = "seconds after reception when undelivered mail fails",
};
struct conf_option conf_opt_retry_interval = {
	.name = "Retry_Interval", .type = CONF_T_DURATION, .def = "1200",
	.scopes = CONF_SCOPES_OUTBOUND, .min = 1, .max = INT32_MAX,
	.help = "first retry delay after a transient failure; doubles per retry",
};
struct conf_option conf_opt_max_retry_interval = {
	.name = "Max_Retry_Interval", .type = CONF_T_DURATION, .def = "43200",
	.scopes = CONF_SCOPES_OUTBOUND, .min = 1, .max = INT32_MAX,
	.help = "longest retry delay",
};
struct conf_option conf_opt_outbound_throttle_messages = {
	.name = "Outbound_Throttle_Messages", .type = CONF_T_THROTTLE,
	.scopes = OUTBOUND_AND_HOST,
	.help = "messages per second (\"N\") or per S seconds (\"N/S\"); one bucket per declaration",
};
struct conf_option conf_opt_outbound_throttle_connections = {
	.name = "Outbound_Throttle_Connections", .type = CONF_T_THROTTLE,
	.scopes = OUTBOUND_AND_HOST,
	.help = "new connections per second (\"N\") or per S seconds (\"N/S\"); one bucket per declaration",
};
struct conf_option conf_opt_suspend_delivery = {
	.name = "Suspend_Delivery", .type = CONF_T_BOOL, .def = "false",
	.scopes = CONF_SCOPES_OUTBOUND,
	.help = "stop delivery attempts in this scope",
};
struct conf_option conf_opt_bind_address = {
	.name = "Bind_Address", .type = CONF_T_STRING,
	.scopes = CONF_SCOPE_BINDING,
	.help = "source address of the binding's outbound connections",
};
struct conf_option conf_opt_ehlo_hostname = {
	.name = "EHLO_Hostname", .type = CONF_T_STRING,
	.scopes = CONF_SCOPES_OUTBOUND,
	.help = "name given in EHLO/HELO on outbound connections",
};


/* Outbound: limits, routing, DNS, retries, the SMTP client (src/queue, src/delivery). */
#define GLOBAL_AND_DOMAIN (CONF_SCOPE_GLOBAL | CONF_SCOPE_DOMAIN)

static const char *const default_binding_modes[] = { "normal", "suspended", "none", NULL };
static const char *const tls_modes[] = { "no", "ifavailable", "required", NULL };
static const char *const tls_verify_modes[] = { "no", "ca", "host", NULL };

static int check_max_retries(const char *value, char *err, size_t errlen);
static int check_route(const char *value, char *err, size_t errlen);
static int check_dns_server(const char *value, char *err, size_t errlen);
static int check_cidr(const char *value, char *err, size_t errlen);

struct conf_option conf_opt_server_max_outbound_connections = {
	.name = "Server_Max_Outbound_Connections", .type = CONF_T_INT, .def = "20000",
	.scopes = CONF_SCOPE_GLOBAL | CONF_SCOPE_BINDING_GROUP | CONF_SCOPE_BINDING,
	.min = 1, .max = INT32_MAX,
	.help = "concurrent outbound connections of the whole server (or of a binding)",
};
struct conf_option conf_opt_max_retries = {
	.name = "Max_Retries", .type = CONF_T_STRING, .def = "auto",
	.scopes = CONF_SCOPES_OUTBOUND, .check = check_max_retries,
	.help = "transient failures before a message fails: a number, \"auto\" (expiry decides) or \"none\"",
};
struct conf_option conf_opt_default_binding = {
	.name = "Default_Binding", .type = CONF_T_ENUM, .def = "normal",
	.enum_values = default_binding_modes, .scopes = CONF_SCOPE_GLOBAL,
	.help = "mail that no policy binds: normal (delivered), suspended (held), none (451 to the injector)",
};
struct conf_option conf_opt_gateway = {
	.name = "Gateway", .type = CONF_T_STRING,
	.scopes = GLOBAL_AND_DOMAIN,
	.help = "smart host for the domain's mail (a name, resolved as MX then A, or an IP, with an optional :port)",
};
struct conf_option conf_opt_routes = {
	.name = "Routes", .type = CONF_T_LIST,
	.scopes = GLOBAL_AND_DOMAIN, .check = check_route,
	.help = "explicit next hops: ( \"smtp://host?port=P&pref=N\" \"smtp://ip:port\" … )",
};
struct conf_option conf_opt_remote_smtp_port = {
	.name = "Remote_SMTP_Port", .type = CONF_T_INT, .def = "25",
	.scopes = CONF_SCOPES_OUTBOUND, .min = 1, .max = 65535,
	.help = "TCP port of the remote MXs",
};
struct conf_option conf_opt_dns_servers = {
	.name = "DNS_Servers", .type = CONF_T_LIST,
	.scopes = CONF_SCOPE_GLOBAL, .flags = CONF_F_RESTART, .check = check_dns_server,
	.help = "resolvers (\"ip\" or \"ip:port\"); unset: the system's /etc/resolv.conf",
};
struct conf_option conf_opt_dns_timeout = {
	.name = "DNS_Timeout", .type = CONF_T_INT, .def = "2000",
	.scopes = CONF_SCOPE_GLOBAL, .flags = CONF_F_RESTART, .min = 10, .max = 60000,
	.help = "milliseconds per DNS try (two tries per server)",
};
struct conf_option conf_opt_use_ipv6 = {
	.name = "Use_IPv6", .type = CONF_T_BOOL, .def = "false",
	.scopes = CONF_SCOPE_GLOBAL, .flags = CONF_F_RESTART,
	.help = "also resolve AAAA records and deliver over IPv6",
};
struct conf_option conf_opt_min_dns_ttl = {
	.name = "Min_DNS_TTL", .type = CONF_T_DURATION, .def = "0",
	.scopes = CONF_SCOPE_GLOBAL, .min = 0, .max = INT32_MAX,
	.help = "shortest time a DNS answer is kept",
};
struct conf_option conf_opt_max_dns_ttl = {
	.name = "Max_DNS_TTL", .type = CONF_T_DURATION, .def = "86400",
	.scopes = CONF_SCOPE_GLOBAL, .min = 0, .max = INT32_MAX,
	.help = "longest time a DNS answer is kept",
};
struct conf_option conf_opt_dns_failures_to_purge = {
	.name = "DNS_Failures_To_Purge", .type = CONF_T_INT, .def = "10",
	.scopes = CONF_SCOPES_OUTBOUND, .min = 1, .max = INT32_MAX,
	.help = "consecutive transient DNS failures after which the domain's mail fails",
};
struct conf_option conf_opt_prohibited_hosts = {
	.name = "Prohibited_Hosts", .type = CONF_T_LIST, .def = "( )",
	.scopes = CONF_SCOPE_GLOBAL, .check = check_cidr,
	.help = "CIDR blocks never delivered to (mail routed there fails: 551 5.4.6)",
};
struct conf_option conf_opt_skip_hosts = {
	.name = "Skip_Hosts", .type = CONF_T_LIST, .def = "( )",
	.scopes = CONF_SCOPES_OUTBOUND, .check = check_cidr,
	.help = "CIDR blocks skipped when choosing an MX address (the domain's other hosts are tried)",
};
struct conf_option conf_opt_host_failure_retry = {
	.name = "Host_Failure_Retry", .type = CONF_T_DURATION, .def = "120",
	.scopes = CONF_SCOPES_OUTBOUND, .min = 0, .max = INT32_MAX,
	.help = "seconds an address that failed is not tried again",
};
struct conf_option conf_opt_mx_failures_to_delay = {
	.name = "MX_Failures_To_Delay", .type = CONF_T_INT, .def = "50",
	.scopes = CONF_SCOPES_OUTBOUND, .min = 0, .max = INT32_MAX,
	.help = "consecutive connection failures on every MX after which the domain's active mail is delayed (0: never)",
};
struct conf_option conf_opt_connect_timeout_to_delay = {
	.name = "Connect_Timeout_To_Delay", .type = CONF_T_DURATION, .def = "900",
	.scopes = CONF_SCOPES_OUTBOUND, .min = 0, .max = INT32_MAX,
	.help = "seconds of failing connections without a success after which the domain's active mail is delayed (0: never)",
};
struct conf_option conf_opt_generate_bounces = {
	.name = "Generate_Bounces", .type = CONF_T_BOOL, .def = "true",
	.scopes = CONF_SCOPES_OUTBOUND,
	.help = "send an RFC 3464 report to the sender of mail that fails",
};
struct conf_option conf_opt_max_deliveries_per_connection = {
	.name = "Max_Deliveries_Per_Connection", .type = CONF_T_INT, .def = "0",
	.scopes = CONF_SCOPES_OUTBOUND, .min = 0, .max = INT32_MAX,
	.help = "transactions per outbound session before it closes (0: no limit)",
};
struct conf_option conf_opt_max_recipients_per_batch = {
	.name = "Max_Recipients_Per_Batch", .type = CONF_T_INT, .def = "100",
	.scopes = CONF_SCOPES_OUTBOUND, .min = 1, .max = 1000,
	.help = "recipients of one message sent in one outbound transaction",
};
struct conf_option conf_opt_idle_timeout = {
	.name = "Idle_Timeout", .type = CONF_T_DURATION, .def = "5",
	.scopes = CONF_SCOPES_OUTBOUND, .min = 0, .max = 3600,
	.help = "seconds an outbound session waits for more mail before it closes",
};
struct conf_option conf_opt_connect_timeout = {
	.name = "Connect_Timeout", .type = CONF_T_DURATION, .def = "300",
	.scopes = CONF_SCOPES_OUTBOUND, .min = 1, .max = 3600,
	.help = "seconds for the TCP connection and the banner",
};
struct conf_option conf_opt_ehlo_timeout = {
	.name = "EHLO_Timeout", .type = CONF_T_DURATION, .def = "300",
	.scopes = CONF_SCOPES_OUTBOUND, .min = 1, .max = 3600,
	.help = "seconds for the EHLO (and STARTTLS) replies",
};
struct conf_option conf_opt_mailfrom_timeout = {
	.name = "MailFrom_Timeout", .type = CONF_T_DURATION, .def = "300",
	.scopes = CONF_SCOPES_OUTBOUND, .min = 1, .max = 3600,
	.help = "seconds for the MAIL FROM reply",
};
struct conf_option conf_opt_rcptto_timeout = {
	.name = "RcptTo_Timeout", .type = CONF_T_DURATION, .def = "300",
	.scopes = CONF_SCOPES_OUTBOUND, .min = 1, .max = 3600,
	.help = "seconds for each RCPT TO reply",
};
struct conf_option conf_opt_data_timeout = {
	.name = "Data_Timeout", .type = CONF_T_DURATION, .def = "120",
	.scopes = CONF_SCOPES_OUTBOUND, .min = 1, .max = 3600,
	.help = "seconds for the DATA (354) reply",
};
struct conf_option conf_opt_body_timeout = {
	.name = "Body_Timeout", .type = CONF_T_DURATION, .def = "600",
	.scopes = CONF_SCOPES_OUTBOUND, .min = 1, .max = 7200,
	.help = "seconds to send the body and read the final reply",
};
struct conf_option conf_opt_tls = {
	.name = "TLS", .type = CONF_T_ENUM, .def = "ifavailable", .enum_values = tls_modes,
	.scopes = CONF_SCOPES_OUTBOUND,
	.help = "STARTTLS on outbound sessions: no, ifavailable, required",
};
struct conf_option conf_opt_tls_verify = {
	.name = "TLS_Verify", .type = CONF_T_ENUM, .def = "no", .enum_values = tls_verify_modes,
	.scopes = CONF_SCOPES_OUTBOUND,
	.help = "outbound certificate check: no, ca (chain), host (chain and MX name)",
};

struct conf_option conf_opt_metrics_domain_labels = {
	.name = "Metrics_Domain_Labels", .type = CONF_T_INT, .def = "100",
	.scopes = CONF_SCOPE_GLOBAL, .min = 0, .max = 100000,
	.help = "most domains given their own labels in /metrics (the busiest; the rest sum under _other)",
};

static int
check_max_retries(const char *value, char *err, size_t errlen)
{
	char *end;
	long n;

	if (strcasecmp(value, "auto") == 0 || strcasecmp(value, "none") == 0)
		return 0;
	n = strtol(value, &end, 10);
	if (*value != '\0' && *end == '\0' && n >= 0 && n <= 100000)
		return 0;
	snprintf(err, errlen, "\"%s\" is not a number of retries, \"auto\" or \"none\"", value);
	return -1;
}

static int
check_route(const char *value, char *err, size_t errlen)
{
	struct conf_route r;

	return conf_route_parse(value, &r, err, errlen);
}

static int
check_dns_server(const char *value, char *err, size_t errlen)
{
	struct sockaddr_storage ss;

	return conf_hostport_parse(value, 53, &ss, err, errlen);
}


/* Inbound: ESMTP_Listener > Listen > Peer (most specific CIDR) > global. */
#define LISTENER_SCOPES (CONF_SCOPE_GLOBAL | CONF_SCOPE_ESMTP_LISTENER | CONF_SCOPE_LISTEN | \
                         CONF_SCOPE_PEER)
static const char *const bare_lf_modes[] = { "reject", "normalize", NULL };

static int
check_cidr(const char *value, char *err, size_t errlen)
{
	struct cidr c;

	return cidr_parse(value, &c, err, errlen);
}

/* The names SMTP_Extensions knows (smtp_session.c maps them to SMTP_EXT_* bits). */
static const char *const smtp_extension_names[] = {
	"PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "DSN",
	"CHUNKING", "BINARYMIME", "STARTTLS", "AUTH", NULL,
};

static int
check_smtp_extension(const char *value, char *err, size_t errlen)
{
	size_t used;

	for (size_t i = 0; smtp_extension_names[i] != NULL; i++)
		if (strcasecmp(value, smtp_extension_names[i]) == 0)
			return 0;
	used = (size_t)snprintf(err, errlen, "unknown extension \"%.40s\" (known:", value);
	for (size_t i = 0; smtp_extension_names[i] != NULL && used < errlen; i++)
		used += (size_t)snprintf(err + used, errlen - used, " %s", smtp_extension_names[i]);
	if (used < errlen)
		snprintf(err + used, errlen - used, ")");
	return -1;
}

struct conf_option conf_opt_smtp_extensions = {
	.name = "SMTP_Extensions", .type = CONF_T_LIST,
	.def = "( \"PIPELINING\" \"SIZE\" \"8BITMIME\" \"ENHANCEDSTATUSCODES\" \"SMTPUTF8\" "
	       "\"DSN\" \"CHUNKING\" \"STARTTLS\" \"AUTH\" )",
	.scopes = LISTENER_SCOPES,
	.help = "ESMTP extensions advertised and accepted (STARTTLS needs TLS_Certificate, "
	        "AUTH needs Auth_Users_File)",
	.check = check_smtp_extension,
};
struct conf_option conf_opt_banner_hostname = {
	.name = "Banner_Hostname", .type = CONF_T_STRING,
	.scopes = LISTENER_SCOPES,
	.help = "name in the 220 banner, EHLO reply and Received: header (default: the host name)",
};
struct conf_option conf_opt_max_message_size = {
	.name = "Max_Message_Size", .type = CONF_T_SIZE, .def = "20M",
	.scopes = LISTENER_SCOPES, .min = 0, .max = INT64_MAX / 2,
	.help = "largest message accepted, in bytes (0 = no limit; SIZE advertises it)",
};
struct conf_option conf_opt_max_recipients_per_message = {
	.name = "Max_Recipients_Per_Message", .type = CONF_T_INT, .def = "1000",
	.scopes = LISTENER_SCOPES, .min = 0, .max = 1000000,
	.help = "recipients accepted per transaction (0 = no limit)",
};
struct conf_option conf_opt_max_receptions_per_connection = {
	.name = "Max_Receptions_Per_Connection", .type = CONF_T_INT, .def = "0",
	.scopes = LISTENER_SCOPES, .min = 0, .max = INT32_MAX,
	.help = "messages accepted per connection (0 = no limit)",
};
struct conf_option conf_opt_listener_sessions = {
	.name = "Listener_Sessions", .type = CONF_T_INT, .def = "0",
	.scopes = CONF_SCOPE_GLOBAL | CONF_SCOPE_ESMTP_LISTENER | CONF_SCOPE_LISTEN,
	.min = 0, .max = INT32_MAX,
	.help = "concurrent sessions per Listen address (0 = no limit); over it: 421 4.4.5",
};
struct conf_option conf_opt_peer_sessions = {
	.name = "Peer_Sessions", .type = CONF_T_INT, .def = "0",
	.scopes = LISTENER_SCOPES, .min = 0, .max = INT32_MAX,
	.help = "concurrent sessions per client address (0 = no limit); over it: 421 4.4.5",
};
struct conf_option conf_opt_idle_time = {
	.name = "Idle_Time", .type = CONF_T_DURATION, .def = "300",
	.scopes = LISTENER_SCOPES, .min = 1, .max = 86400,
	.help = "seconds a session may wait for the client in any state",
};
struct conf_option conf_opt_require_ehlo = {
	.name = "Require_EHLO", .type = CONF_T_BOOL, .def = "false",
	.scopes = LISTENER_SCOPES,
	.help = "refuse MAIL before HELO/EHLO",
};
struct conf_option conf_opt_relay_hosts = {
	.name = "Relay_Hosts", .type = CONF_T_LIST, .def = "( )",
	.scopes = LISTENER_SCOPES,
	.help = "client CIDR blocks allowed to relay to any domain",
	.check = check_cidr,
};
struct conf_option conf_opt_relay_domains = {
	.name = "Relay_Domains", .type = CONF_T_LIST, .def = "( )",
	.scopes = LISTENER_SCOPES,
	.help = "recipient domains accepted from anyone (\"*.example.test\" covers subdomains)",
};
struct conf_option conf_opt_open_relay = {
	.name = "Open_Relay", .type = CONF_T_BOOL, .def = "false",
	.scopes = LISTENER_SCOPES,
	.help = "accept any recipient from this scope's clients",
};
struct conf_option conf_opt_bare_line_feed = {
	.name = "Bare_Line_Feed", .type = CONF_T_ENUM, .def = "reject", .enum_values = bare_lf_modes,
	.scopes = LISTENER_SCOPES,
	.help = "a bare CR or LF in DATA: reject the message, or normalize it to CRLF",
};

struct conf_option conf_opt_tls_certificate = {
	.name = "TLS_Certificate", .type = CONF_T_STRING,
	.scopes = LISTENER_SCOPES,
	.help = "PEM certificate (chain) for STARTTLS; STARTTLS is offered only where one is set",
	/* .check is set by the listener layer: listener_register_checks() */
};
struct conf_option conf_opt_tls_key = {
	.name = "TLS_Key", .type = CONF_T_STRING,
	.scopes = LISTENER_SCOPES,
	.help = "PEM private key of TLS_Certificate (default: read from the certificate file)",
	/* .check is set by the listener layer: listener_register_checks() */
};
struct conf_option conf_opt_tls_ca = {
	.name = "TLS_CA", .type = CONF_T_STRING,
	.scopes = LISTENER_SCOPES,
	.help = "PEM CA certificates for client certificates (asked for, never required)",
	/* .check is set by the listener layer: listener_register_checks() */
};
struct conf_option conf_opt_auth_users_file = {
	.name = "Auth_Users_File", .type = CONF_T_STRING,
	.scopes = LISTENER_SCOPES,
	.help = "file of \"user:crypt-hash\" lines for AUTH PLAIN and LOGIN; read per generation",
	/* .check is set by the listener layer: listener_register_checks() */
};
struct conf_option conf_opt_auth_without_tls = {
	.name = "Auth_Without_TLS", .type = CONF_T_BOOL, .def = "false",
	.scopes = LISTENER_SCOPES,
	.help = "offer AUTH before STARTTLS (e.g. in a Peer scope for loopback)",
};
struct conf_option conf_opt_auth_max_failures = {
	.name = "Auth_Max_Failures", .type = CONF_T_INT, .def = "3",
	.scopes = LISTENER_SCOPES, .min = 1, .max = 1000,
	.help = "failed AUTH attempts per connection; the last one gets 421 4.7.0 and the close",
};
struct conf_option conf_opt_auth_peer_max_failures = {
	.name = "Auth_Peer_Max_Failures", .type = CONF_T_INT, .def = "10",
	.scopes = LISTENER_SCOPES, .min = 0, .max = INT32_MAX,
	.help = "failed AUTH attempts per client address within Auth_Failure_Window (0 = no limit)",
};
struct conf_option conf_opt_auth_failure_window = {
	.name = "Auth_Failure_Window", .type = CONF_T_DURATION, .def = "600",
	.scopes = LISTENER_SCOPES, .min = 1, .max = 86400,
	.help = "seconds over which Auth_Peer_Max_Failures counts",
};

static struct conf_option *const core_options[] = {
	&conf_opt_spoolbase,
	&conf_opt_pidfile,
	&conf_opt_event_loops,
	&conf_opt_user,
	&conf_opt_group,
	&conf_opt_module_search_path,
	&conf_opt_concurrency,
	&conf_opt_paniclog,
	&conf_opt_mainlog,
	&conf_opt_rejectlog,
	&conf_opt_jsonlog,
	&conf_opt_bouncelog,
	&conf_opt_log_heartbeat,
	&conf_opt_log_receptions,
	&conf_opt_log_deliveries,
	&conf_opt_log_transient_failures,
	&conf_opt_log_permanent_failures,
	&conf_opt_log_rejections,
	&conf_opt_smtp_extensions,
	&conf_opt_banner_hostname,
	&conf_opt_max_message_size,
	&conf_opt_max_recipients_per_message,
	&conf_opt_max_receptions_per_connection,
	&conf_opt_listener_sessions,
	&conf_opt_peer_sessions,
	&conf_opt_idle_time,
	&conf_opt_require_ehlo,
	&conf_opt_relay_hosts,
	&conf_opt_relay_domains,
	&conf_opt_open_relay,
	&conf_opt_bare_line_feed,
	&conf_opt_tls_certificate,
	&conf_opt_tls_key,
	&conf_opt_tls_ca,
	&conf_opt_auth_users_file,
	&conf_opt_auth_without_tls,
	&conf_opt_auth_max_failures,
	&conf_opt_auth_peer_max_failures,
	&conf_opt_auth_failure_window,
	&conf_opt_max_outbound_connections,
	&conf_opt_message_expiration,
	&conf_opt_retry_interval,
	&conf_opt_max_retry_interval,
	&conf_opt_outbound_throttle_messages,
	&conf_opt_outbound_throttle_connections,
	&conf_opt_suspend_delivery,
	&conf_opt_bind_address,
	&conf_opt_ehlo_hostname,
	&conf_opt_server_max_outbound_connections,
	&conf_opt_max_retries,
	&conf_opt_default_binding,
	&conf_opt_gateway,
	&conf_opt_routes,
	&conf_opt_remote_smtp_port,
	&conf_opt_dns_servers,
	&conf_opt_dns_timeout,
	&conf_opt_use_ipv6,
	&conf_opt_min_dns_ttl,
	&conf_opt_max_dns_ttl,
	&conf_opt_dns_failures_to_purge,
	&conf_opt_prohibited_hosts,
	&conf_opt_skip_hosts,
	&conf_opt_host_failure_retry,
	&conf_opt_mx_failures_to_delay,
	&conf_opt_connect_timeout_to_delay,
	&conf_opt_generate_bounces,
	&conf_opt_max_deliveries_per_connection,
	&conf_opt_max_recipients_per_batch,
	&conf_opt_idle_timeout,
	&conf_opt_connect_timeout,
	&conf_opt_ehlo_timeout,
	&conf_opt_mailfrom_timeout,
	&conf_opt_rcptto_timeout,
	&conf_opt_data_timeout,
	&conf_opt_body_timeout,
	&conf_opt_tls,
	&conf_opt_tls_verify,
	&conf_opt_metrics_domain_labels,
};

/* A Listen name: "address:port", or a Unix socket path (listen_addr_is_unix). */
static int
check_listen_name(const char *name, uint32_t parent_kind, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t len;

	return listen_addr_parse(name, &ss, &len, err, errlen);
}

static int
check_peer_name(const char *name, uint32_t parent_kind, char *err, size_t errlen)
{
	struct cidr c;

	return cidr_parse(name, &c, err, errlen);
}

/* The scope bit of HTTP_Listener (allocated at registration; config.h has none). */
uint32_t conf_scope_http_listener;

/* Listen's parents get HTTP_Listener's bit at registration: not const. */
static struct conf_stanza_def core_stanzas[] = {
	{ "Binding_Group", CONF_SCOPE_BINDING_GROUP, CONF_SCOPE_GLOBAL, CONF_NAME_REQUIRED, 0, NULL, NULL },
	{ "Binding", CONF_SCOPE_BINDING, CONF_SCOPE_GLOBAL | CONF_SCOPE_BINDING_GROUP,
	  CONF_NAME_REQUIRED, 0, NULL, NULL },
	{ "Domain", CONF_SCOPE_DOMAIN,
	  CONF_SCOPE_GLOBAL | CONF_SCOPE_BINDING_GROUP | CONF_SCOPE_BINDING, CONF_NAME_REQUIRED, 0, NULL, NULL },
	{ "Host", CONF_SCOPE_HOST,
	  CONF_SCOPE_GLOBAL | CONF_SCOPE_BINDING_GROUP | CONF_SCOPE_BINDING, CONF_NAME_REQUIRED, 0, NULL, NULL },
	{ "Security", CONF_SCOPE_SECURITY, CONF_SCOPE_GLOBAL, CONF_NAME_NONE, 0, NULL, NULL },
	{ "ThreadPool", CONF_SCOPE_THREADPOOL, CONF_SCOPE_GLOBAL, CONF_NAME_REQUIRED, 0, NULL, NULL },
	{ "ec_logger", CONF_SCOPE_EC_LOGGER, CONF_SCOPE_GLOBAL, CONF_NAME_OPTIONAL, 0, NULL, NULL },
	{ "ESMTP_Listener", CONF_SCOPE_ESMTP_LISTENER, CONF_SCOPE_GLOBAL, CONF_NAME_OPTIONAL, 0, NULL, NULL },
	{ "Control_Listener", CONF_SCOPE_CONTROL_LISTENER, CONF_SCOPE_GLOBAL, CONF_NAME_OPTIONAL, 0,
	  NULL, NULL },
	{ "HTTP_Listener", 0 /* conf_scope_http_listener */, CONF_SCOPE_GLOBAL, CONF_NAME_OPTIONAL,
	  0, NULL, NULL },
	{ "Listen", CONF_SCOPE_LISTEN, CONF_SCOPE_ESMTP_LISTENER | CONF_SCOPE_CONTROL_LISTENER,
	  CONF_NAME_REQUIRED, 0, NULL, check_listen_name },
	{ "Peer", CONF_SCOPE_PEER, CONF_SCOPE_ESMTP_LISTENER | CONF_SCOPE_LISTEN, CONF_NAME_REQUIRED, 0,
	  NULL, check_peer_name },
	{ "bounce_logger", CONF_SCOPE_BOUNCE_LOGGER, CONF_SCOPE_GLOBAL, CONF_NAME_OPTIONAL, 0, NULL, NULL },
};

static pthread_once_t registry_once = PTHREAD_ONCE_INIT;

static void
registry_init_once(void)
{
	char err[256];

	for (size_t i = 0; i < sizeof(core_options) / sizeof(core_options[0]); i++)
		if (conf_option_register(core_options[i], err, sizeof(err)) < 0)
			diag_fatal("core option table: %s", err);
	if ((conf_scope_http_listener = conf_scope_allocate()) == 0)
		diag_fatal("core stanza table: no scope bit left for HTTP_Listener");
	for (size_t i = 0; i < sizeof(core_stanzas) / sizeof(core_stanzas[0]); i++) {
		if (strcmp(core_stanzas[i].keyword, "HTTP_Listener") == 0)
			core_stanzas[i].scope = conf_scope_http_listener;
		if (core_stanzas[i].scope == CONF_SCOPE_LISTEN)
			core_stanzas[i].parents |= conf_scope_http_listener;
	}
	for (size_t i = 0; i < sizeof(core_stanzas) / sizeof(core_stanzas[0]); i++)
		if (conf_stanza_register(&core_stanzas[i], err, sizeof(err)) < 0)
			diag_fatal("core stanza table: %s", err);
}

void
conf_registry_init(void)
{
	pthread_once(&registry_once, registry_init_once);
}

const char conf_default_text[] =
	"# impetus embedded default configuration: loopback only, everything under ./var/\n"
	"Spoolbase = \"var/spool\"\n"
	"Pidfile = \"var/run/impetusd.pid\"\n"
	"Relay_Hosts = ( \"127.0.0.0/8\" \"::1\" )\n"
	"ESMTP_Listener {\n"
	"  Listen \"127.0.0.1:2525\" { }\n"
	"  Listen \"var/run/submit.sock\" { }   # local submission (impetus-sendmail)\n"
	"}\n"
	"Control_Listener {\n"
	"  Listen \"var/run/control.sock\" { }  # the console (impetusctl)\n"
	"}\n"

	"ec_logger {\n"
	"  Paniclog = \"var/log/paniclog.ec\"\n"
	"  Mainlog = \"var/log/mainlog.ec\"\n"
	"  Rejectlog = \"var/log/rejectlog.ec\"\n"
	"}\n"
	"bounce_logger {\n"
	"  Bouncelog = \"var/log/bouncelog.ec\"\n"
	"}\n";

/*
 * log_format.c - Momentum's log record layouts and the jsonlog objects.
 *
 * Public functions (log_format.h):
 *   log_format_time             the record's Unix time
 *   log_format_reply_code       the leading 3-digit code of a reply
 *   log_record_from_message     gather a message event from the accessors
 *   log_reject_from_hook        gather a rejection
 *   log_format_mainlog          R, D, T, P records
 *   log_format_bouncelog        B and T records
 *   log_format_rejectlog        key="value" rejection records
 *   log_format_json_message     message events as JSON
 *   log_format_json_rejection   rejections as JSON
 *   log_format_heartbeat_*      M, M1 and Marker 1 records
 *
 * Formatters are pure: they write into the caller's buffer with snprintf's
 * contract (see log_format.h) and allocate nothing. In the '@' layouts a
 * field never breaks the record: control characters become a space (a run
 * of CR/LF one space), and '@' becomes '_' in every field but the last
 * (the response, which may hold addresses). JSON strings are escaped
 * completely; bytes that are not UTF-8 become U+FFFD.
 */
#include "log/log_format.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <impetus/binding.h>
#include <impetus/hooks/core/log_rejection.h>

/* A record being built: bytes past cap are counted, not written. */
struct log_line {
	char *p;            /* the caller's buffer */
	size_t cap;         /* its size, NUL included */
	size_t n;           /* bytes the record needs so far */
};

static void line_putc(struct log_line *l, char c);
static void line_put(struct log_line *l, const char *s, size_t len);
static void line_puts(struct log_line *l, const char *s);
static void line_printf(struct log_line *l, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static size_t line_end(struct log_line *l);
static void put_field(struct log_line *l, const char *s, size_t len, int keep_at);
static void put_sep_field(struct log_line *l, const char *s);
static void put_addr_fields(struct log_line *l, const char *addr);
static size_t response_trim(const char *s, size_t len);
static void put_msg_head(struct log_line *l, const struct log_msg_record *r, char type);
static void json_string(struct log_line *l, const char *s, size_t len);
static void json_key_str(struct log_line *l, const char *key, const char *s);
static void json_key_u64(struct log_line *l, const char *key, uint64_t v);
static void json_key_i64(struct log_line *l, const char *key, int64_t v);
static size_t utf8_valid_len(const unsigned char *s, size_t len);

static void
line_putc(struct log_line *l, char c)
{
	if (l->n + 1 < l->cap)
		l->p[l->n] = c;
	l->n++;
}

static void
line_put(struct log_line *l, const char *s, size_t len)
{
	if (l->n + 1 < l->cap) {
		size_t room = l->cap - 1 - l->n;
		memcpy(l->p + l->n, s, len < room ? len : room);
	}
	l->n += len;
}

static void
line_puts(struct log_line *l, const char *s)
{
	line_put(l, s, strlen(s));
}

static void
line_printf(struct log_line *l, const char *fmt, ...)
{
	char tmp[64];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		line_put(l, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

static size_t
line_end(struct log_line *l)
{
	if (l->cap > 0)
		l->p[l->n < l->cap ? l->n : l->cap - 1] = '\0';
	return l->n;
}

/* One '@'-layout field: controls become spaces, '@' '_' unless keep_at. */
static void
put_field(struct log_line *l, const char *s, size_t len, int keep_at)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\r' || c == '\n') {
			while (i + 1 < len && (s[i + 1] == '\r' || s[i + 1] == '\n'))
				i++;
			line_putc(l, ' ');
		} else if (c < 0x20 || c == 0x7f) {
			line_putc(l, ' ');
		} else if (c == '@' && !keep_at) {
			line_putc(l, '_');
		} else {
			line_putc(l, (char)c);
		}
	}
}

static void
put_sep_field(struct log_line *l, const char *s)
{
	line_putc(l, '@');
	if (s != NULL)
		put_field(l, s, strlen(s), 0);
}

/* "@local@domain", split at the last '@'; "@@" for the null sender. */
static void
put_addr_fields(struct log_line *l, const char *addr)
{
	const char *at = addr ? strrchr(addr, '@') : NULL;

	line_putc(l, '@');
	if (addr == NULL) {
		line_putc(l, '@');
		return;
	}
	if (at == NULL) {
		put_field(l, addr, strlen(addr), 0);
		line_putc(l, '@');
		return;
	}
	put_field(l, addr, (size_t)(at - addr), 0);
	line_putc(l, '@');
	put_field(l, at + 1, strlen(at + 1), 0);
}

/* The length of s without trailing white space, controls and NULs. */
static size_t
response_trim(const char *s, size_t len)
{
	if (s == NULL)
		return 0;
	while (len > 0 && ((unsigned char)s[len - 1] <= ' ' || s[len - 1] == 0x7f))
		len--;
	return len;
}

/* "time@msgid@batchid@connid@TYPE" */
static void
put_msg_head(struct log_line *l, const struct log_msg_record *r, char type)
{
	line_printf(l, "%lld", (long long)r->time);
	put_sep_field(l, r->msg_id);
	put_sep_field(l, r->batch_id);
	line_printf(l, "@%" PRIu64 "@%c", r->conn_id, type);
}

time_t
log_format_time(const struct timeval *now)
{
	return now != NULL ? now->tv_sec : time(NULL);
}

int
log_format_reply_code(const char *text, size_t len)
{
	if (text == NULL || len < 3)
		return 0;
	for (int i = 0; i < 3; i++)
		if (!isdigit((unsigned char)text[i]))
			return 0;
	if (len > 3 && isdigit((unsigned char)text[3]))
		return 0;
	if (text[0] < '1' || text[0] > '5')
		return 0;
	return (text[0] - '0') * 100 + (text[1] - '0') * 10 + (text[2] - '0');
}

void
log_record_from_message(struct log_msg_record *r, char type, const accept_construct *ac,
                        const ec_message *m, const domain_record *dr,
                        const struct timeval *now, const char *note, int note_len)
{
	const domain_record *mdr = ec_message_domain(m);
	ec_binding_slot slot = ec_message_binding_slot(m);
	const char *at;

	memset(r, 0, sizeof(*r));
	r->type = type;
	r->time = log_format_time(now);
	r->msg_id = ec_message_id(m);
	r->batch_id = ec_message_batch_id(m);
	r->conn_id = ec_message_conn_id(m);
	if (r->conn_id == 0 && ac != NULL)
		r->conn_id = accept_construct_conn_id(ac);
	r->rcpt = ec_message_rcptto(m);
	r->mailfrom = ec_message_mailfrom(m);
	if (dr != NULL && dr->domain != NULL)
		r->dest_domain = dr->domain;
	else if (mdr != NULL && mdr->domain != NULL)
		r->dest_domain = mdr->domain;
	else
		r->dest_domain = (at = strrchr(r->rcpt, '@')) ? at + 1 : "";
	r->size = ec_message_size(m);
	r->stage = ec_message_stage(m);
	/* The body went out in stages 8 (sending) and 9 (reading the reply). */
	r->bytes_sent = r->stage == 8 || r->stage == 9 ? r->size : 0;
	r->binding_group = config_get_binding_group_name_from_id(slot);
	r->binding = config_get_binding_name_from_id(slot);
	if (r->binding_group == NULL)
		r->binding_group = "default";
	if (r->binding == NULL)
		r->binding = "default";
	r->retries = ec_message_num_retries(m);
	r->secs = (int64_t)r->time - (int64_t)ec_message_reception_time(m);
	if (r->secs < 0)
		r->secs = 0;
	r->proto = ec_message_protocol(m);
	if (r->proto == NULL)
		r->proto = "";
	sockaddr_render_ip(ac != NULL ? accept_construct_remote(ac) : ec_message_received_from(m),
	                   r->src_ip, sizeof(r->src_ip));
	sockaddr_render_ip(ec_message_remote_addr(m), r->remote_ip, sizeof(r->remote_ip));
	r->response = note;
	r->response_len = note == NULL ? 0 : note_len < 0 ? strlen(note) : (size_t)note_len;
}

void
log_reject_from_hook(struct log_reject_record *r, const struct timeval *now,
                     const accept_construct *ac, int phase, const char *module,
                     const char *message, size_t len)
{
	memset(r, 0, sizeof(*r));
	r->time = log_format_time(now);
	if (ac != NULL) {
		sockaddr_render_ip_port(accept_construct_remote(ac), r->remote, sizeof(r->remote));
		sockaddr_render_ip_port(accept_construct_local(ac), r->local, sizeof(r->local));
		r->conn_id = accept_construct_conn_id(ac);
	}
	r->phase = validate_phase_name(phase);
	r->module = module;
	r->message = message;
	r->message_len = message ? len : 0;
	r->code = log_format_reply_code(message, r->message_len);
}

size_t
log_format_mainlog(char *buf, size_t len, const struct log_msg_record *r)
{
	struct log_line l = { buf, len, 0 };

	put_msg_head(&l, r, r->type);
	switch (r->type) {
	case 'R':
		put_addr_fields(&l, r->rcpt);
		put_addr_fields(&l, r->mailfrom);
		put_sep_field(&l, r->src_ip);
		line_printf(&l, "@%" PRIu64, r->size);
		put_sep_field(&l, r->proto);
		put_sep_field(&l, r->binding_group);
		put_sep_field(&l, r->binding);
		break;
	case 'D':
		put_sep_field(&l, r->dest_domain);
		line_printf(&l, "@%" PRIu64, r->size);
		put_sep_field(&l, r->binding_group);
		put_sep_field(&l, r->binding);
		line_printf(&l, "@%u@%lld", r->retries, (long long)r->secs);
		put_sep_field(&l, r->remote_ip);
		break;
	default:    /* 'T', 'P' */
		put_sep_field(&l, r->dest_domain);
		line_printf(&l, "@%" PRIu64, r->bytes_sent);
		put_sep_field(&l, r->binding_group);
		put_sep_field(&l, r->binding);
		line_printf(&l, "@%d@%u@%lld", r->stage, r->retries, (long long)r->secs);
		put_sep_field(&l, r->remote_ip);
		line_putc(&l, '@');
		put_field(&l, r->response, response_trim(r->response, r->response_len), 1);
		break;
	}
	line_putc(&l, '\n');
	return line_end(&l);
}

size_t
log_format_bouncelog(char *buf, size_t len, const struct log_msg_record *r)
{
	struct log_line l = { buf, len, 0 };

	put_msg_head(&l, r, r->type == 'T' ? 'T' : 'B');
	put_addr_fields(&l, r->rcpt);
	put_addr_fields(&l, r->mailfrom);
	put_sep_field(&l, r->binding_group);
	put_sep_field(&l, r->binding);
	line_printf(&l, "@%d@%d@%" PRIu64, r->stage, r->bounce_class, r->size);
	put_sep_field(&l, r->remote_ip);
	line_putc(&l, '@');
	put_field(&l, r->response, response_trim(r->response, r->response_len), 1);
	line_putc(&l, '\n');
	return line_end(&l);
}

size_t
log_format_rejectlog(char *buf, size_t len, const struct log_reject_record *r)
{
	struct log_line l = { buf, len, 0 };

	line_printf(&l, "%lld: R=\"", (long long)r->time);
	line_puts(&l, r->remote);
	line_puts(&l, "\" L=\"");
	line_puts(&l, r->local);
	line_printf(&l, "\" C=\"%" PRIu64 "\" P=\"", r->conn_id);
	put_field(&l, r->phase ? r->phase : "", r->phase ? strlen(r->phase) : 0, 1);
	line_puts(&l, "\" E=");
	if (r->code != 0)
		line_printf(&l, "%d", r->code);
	line_puts(&l, " M=");
	put_field(&l, r->module ? r->module : "", r->module ? strlen(r->module) : 0, 1);
	line_putc(&l, ' ');
	put_field(&l, r->message, response_trim(r->message, r->message_len), 1);
	line_putc(&l, '\n');
	return line_end(&l);
}

size_t
log_format_heartbeat_mainlog(char *buf, size_t len, time_t t)
{
	struct log_line l = { buf, len, 0 };

	line_printf(&l, "%lld@@@@M\n", (long long)t);
	return line_end(&l);
}

size_t
log_format_heartbeat_bouncelog(char *buf, size_t len, time_t t)
{
	struct log_line l = { buf, len, 0 };

	line_printf(&l, "%lld@@@@M1\n", (long long)t);
	return line_end(&l);
}

size_t
log_format_heartbeat_rejectlog(char *buf, size_t len, time_t t)
{
	struct log_line l = { buf, len, 0 };

	line_printf(&l, "%lld: Marker 1\n", (long long)t);
	return line_end(&l);
}

/* The length of the valid UTF-8 sequence at s, 0 when it is not one. */
static size_t
utf8_valid_len(const unsigned char *s, size_t len)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t need;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		need = 1;
	else if (c >= 0xe0 && c <= 0xef)
		need = 2;
	else if (c >= 0xf0 && c <= 0xf4)
		need = 3;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0;              /* no overlong forms */
	else if (c == 0xed)
		hi = 0x9f;              /* no surrogates */
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;              /* nothing above U+10FFFF */
	if (len < need + 1 || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i <= need; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return need + 1;
}

static void
json_string(struct log_line *l, const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;

	line_putc(l, '"');
	for (size_t i = 0; s != NULL && i < len;) {
		unsigned char c = u[i];
		size_t n;
		switch (c) {
		case '"': line_puts(l, "\\\""); i++; continue;
		case '\\': line_puts(l, "\\\\"); i++; continue;
		case '\b': line_puts(l, "\\b"); i++; continue;
		case '\f': line_puts(l, "\\f"); i++; continue;
		case '\n': line_puts(l, "\\n"); i++; continue;
		case '\r': line_puts(l, "\\r"); i++; continue;
		case '\t': line_puts(l, "\\t"); i++; continue;
		default: break;
		}
		if (c < 0x20) {
			line_printf(l, "\\u%04x", c);
			i++;
		} else if ((n = utf8_valid_len(u + i, len - i)) == 0) {
			line_puts(l, "\\ufffd");
			i++;
		} else {
			line_put(l, s + i, n);
			i += n;
		}
	}
	line_putc(l, '"');
}

static void
json_key_str(struct log_line *l, const char *key, const char *s)
{
	line_printf(l, ",\"%s\":", key);
	json_string(l, s ? s : "", s ? strlen(s) : 0);
}

static void
json_key_u64(struct log_line *l, const char *key, uint64_t v)
{
	line_printf(l, ",\"%s\":%" PRIu64, key, v);
}

static void
json_key_i64(struct log_line *l, const char *key, int64_t v)
{
	line_printf(l, ",\"%s\":%" PRId64, key, v);
}

size_t
log_format_json_message(char *buf, size_t len, const struct log_msg_record *r)
{
	struct log_line l = { buf, len, 0 };
	char id[24];

	switch (r->type) {
	case 'R': line_puts(&l, "{\"type\":\"reception\""); break;
	case 'D': line_puts(&l, "{\"type\":\"delivery\""); break;
	case 'T': line_puts(&l, "{\"type\":\"transient_failure\""); break;
	default: line_puts(&l, "{\"type\":\"permanent_failure\""); break;
	}
	json_key_i64(&l, "time", (int64_t)r->time);
	json_key_str(&l, "msg_id", r->msg_id);
	json_key_str(&l, "batch_id", r->batch_id);
	snprintf(id, sizeof(id), "%" PRIu64, r->conn_id);
	json_key_str(&l, "conn_id", id);
	json_key_str(&l, "rcpt_to", r->rcpt);
	json_key_str(&l, "mail_from", r->mailfrom);
	if (r->type == 'R') {
		json_key_str(&l, "src_ip", r->src_ip);
		json_key_u64(&l, "size", r->size);
		json_key_str(&l, "protocol", r->proto);
		json_key_str(&l, "binding_group", r->binding_group);
		json_key_str(&l, "binding", r->binding);
	} else {
		json_key_str(&l, "dest_domain", r->dest_domain);
		json_key_u64(&l, "size", r->size);
		if (r->type != 'D')
			json_key_u64(&l, "bytes_sent", r->bytes_sent);
		json_key_str(&l, "binding_group", r->binding_group);
		json_key_str(&l, "binding", r->binding);
		if (r->type != 'D')
			json_key_i64(&l, "stage", r->stage);
		json_key_u64(&l, "retries", r->retries);
		json_key_i64(&l, "secs", r->secs);
		json_key_str(&l, "remote_ip", r->remote_ip);
		if (r->type != 'D')
			json_key_i64(&l, "bounce_class", r->bounce_class);
		line_puts(&l, ",\"response\":");
		json_string(&l, r->response, response_trim(r->response, r->response_len));
	}
	line_puts(&l, "}\n");
	return line_end(&l);
}

size_t
log_format_json_rejection(char *buf, size_t len, const struct log_reject_record *r)
{
	struct log_line l = { buf, len, 0 };
	char id[24];

	line_puts(&l, "{\"type\":\"rejection\"");
	json_key_i64(&l, "time", (int64_t)r->time);
	json_key_str(&l, "remote", r->remote);
	json_key_str(&l, "local", r->local);
	snprintf(id, sizeof(id), "%" PRIu64, r->conn_id);
	json_key_str(&l, "conn_id", id);
	json_key_str(&l, "phase", r->phase);
	if (r->code != 0)
		json_key_i64(&l, "code", r->code);
	else
		line_puts(&l, ",\"code\":null");
	json_key_str(&l, "module", r->module);
	line_puts(&l, ",\"message\":");
	json_string(&l, r->message, response_trim(r->message, r->message_len));
	line_puts(&l, "}\n");
	return line_end(&l);
}

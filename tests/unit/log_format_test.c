/*
 * log_format_test.c - the log record layouts field by field (mainlog R, D,
 * T, P; bouncelog B, T; rejectlog; heartbeats), fields that carry '@',
 * newlines and control characters, a null sender, an IPv6 peer, the
 * snprintf contract, jsonlog objects checked by a small JSON parser, and
 * the bounce classification table (with and without smtp_error_classify
 * providers).
 */
#include <arpa/inet.h>
#include <impetus/hooks/core/log_rejection.h>
#include <impetus/hooks/core/smtp_error_classify.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "log/log_format.h"
#include "message/message.h"
#include "test.h"

#define NOW 1064868656

/* A record split at '@' into at most max fields; the last keeps the rest. */
struct fields {
	char buf[8192];
	const char *f[40];
	size_t n;
};

static void
split(struct fields *out, const char *line, size_t max)
{
	size_t len = strlen(line);
	char *p;

	if (len > 0 && line[len - 1] == '\n')
		len--;
	memcpy(out->buf, line, len);
	out->buf[len] = '\0';
	out->n = 0;
	p = out->buf;
	out->f[out->n++] = p;
	while (out->n < max && (p = strchr(p, '@')) != NULL) {
		*p++ = '\0';
		out->f[out->n++] = p;
	}
}

static void
check_fields(const char *line, const char *const *want, size_t nwant, const char *what)
{
	struct fields fs;
	char ctx[128];

	CHECK(strchr(line, '\n') == line + strlen(line) - 1, "%s: one newline, at the end: %s",
	      what, line);
	split(&fs, line, nwant);
	CHECK_INT(fs.n, nwant, what);
	for (size_t i = 0; i < nwant && i < fs.n; i++) {
		snprintf(ctx, sizeof(ctx), "%s field %zu", what, i);
		CHECK_STR(fs.f[i], want[i], ctx);
	}
}

static void
set_ip(struct sockaddr_storage *ss, const char *ip, unsigned port)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(ip, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		inet_pton(AF_INET6, ip, &s6->sin6_addr);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		inet_pton(AF_INET, ip, &s4->sin_addr);
	}
}

static struct ec_message *
sample_message(const char *from, const char *rcpt)
{
	struct ec_message *m = message_new("00/00-25004-31B987F3", "00/00-03736-F4101B54", from, rcpt);

	m->conn_id = 4532;
	m->size = 201;
	m->reception.tv_sec = NOW - 18;
	m->binding_slot = 0;
	set_ip(&m->recv_from, "10.0.1.1", 40000);
	return m;
}

static void
test_mainlog_reception(void)
{
	struct ec_message *m = sample_message("info@postalengine.com", "bob@example.fict");
	struct timeval now = { NOW, 500000 };
	struct log_msg_record r;
	char line[1024];
	static const char *const want[] = {
		"1064868656", "00/00-25004-31B987F3", "00/00-03736-F4101B54", "4532", "R",
		"bob", "example.fict", "info", "postalengine.com", "10.0.1.1", "201", "esmtp",
		"default", "default",
	};

	log_record_from_message(&r, 'R', NULL, m, NULL, &now, NULL, 0);
	CHECK(log_format_mainlog(line, sizeof(line), &r) < sizeof(line), "fits");
	check_fields(line, want, 14, "R");
	message_unref(m);
}

static void
test_mainlog_reception_null_sender_ac(void)
{
	struct ec_message *m = sample_message("", "Bob.Smith@Example.Fict");
	struct accept_construct ac;
	struct timeval now = { NOW, 0 };
	struct log_msg_record r;
	char line[1024];
	static const char *const want[] = {
		"1064868656", "00/00-25004-31B987F3", "00/00-03736-F4101B54", "77", "R",
		"Bob.Smith", "Example.Fict", "", "", "2001:db8::25", "201", "esmtp",
		"default", "default",
	};

	m->conn_id = 0;     /* taken from the connection */
	memset(&ac, 0, sizeof(ac));
	ac.conn_id = 77;
	set_ip(&ac.remote, "2001:db8::25", 5555);
	log_record_from_message(&r, 'R', &ac, m, NULL, &now, NULL, 0);
	log_format_mainlog(line, sizeof(line), &r);
	check_fields(line, want, 14, "R null sender");
	message_unref(m);
}

static void
test_mainlog_delivery(void)
{
	struct ec_message *m = sample_message("info@postalengine.com", "bob@example.fict");
	struct domain_record dr = { "postalengine.com" };
	struct timeval now = { NOW, 0 };
	struct log_msg_record r;
	char line[1024];
	static const char *const want[] = {
		"1064868656", "00/00-25004-31B987F3", "00/00-03736-F4101B54", "4532", "D",
		"postalengine.com", "201", "default", "default", "2", "18", "2001:db8::1",
	};

	m->num_retries = 2;
	set_ip(&m->remote, "2001:db8::1", 25);
	log_record_from_message(&r, 'D', NULL, m, &dr, &now, "250 ok", 6);
	log_format_mainlog(line, sizeof(line), &r);
	check_fields(line, want, 12, "D");
	message_unref(m);
}

static void
test_mainlog_failures(void)
{
	struct ec_message *m = sample_message("info@postalengine.com", "bob@example.fict");
	struct timeval now = { NOW, 0 };
	struct log_msg_record r;
	char line[1024];
	static const char note[] = "550-5.1.1 <bob@example.fict>: user unknown\r\n"
	                           "550 5.1.1 see https://x/?a@b\r\n";
	static const char *const want_t[] = {
		"1064868656", "00/00-25004-31B987F3", "00/00-03736-F4101B54", "4532", "T",
		"example.fict", "0", "default", "default", "5", "0", "18", "10.0.0.1",
		"550-5.1.1 <bob@example.fict>: user unknown 550 5.1.1 see https://x/?a@b",
	};
	static const char *const want_p[] = {
		"1064868656", "00/00-25004-31B987F3", "00/00-03736-F4101B54", "4532", "P",
		"example.fict", "201", "default", "default", "9", "3", "18", "10.0.0.1",
		"552 No such account",
	};

	m->stage = 5;
	set_ip(&m->remote, "10.0.0.1", 25);
	/* dr NULL, no routing domain: the recipient's domain. */
	log_record_from_message(&r, 'T', NULL, m, NULL, &now, note, (int)strlen(note));
	log_format_mainlog(line, sizeof(line), &r);
	check_fields(line, want_t, 14, "T");

	m->stage = 9;
	m->num_retries = 3;
	log_record_from_message(&r, 'P', NULL, m, NULL, &now, "552 No such account\n", -1);
	log_format_mainlog(line, sizeof(line), &r);
	check_fields(line, want_p, 14, "P");
	message_unref(m);
}

static void
test_fields_never_break(void)
{
	struct log_msg_record r;
	char line[1024];
	static const char *const want[] = {
		"1700000000", "id_with_at new line", "b x", "1", "D", "dom_ain", "5",
		"group_a", "bind ing", "0", "0", "",
	};

	memset(&r, 0, sizeof(r));
	r.type = 'D';
	r.time = 1700000000;
	r.msg_id = "id@with@at\r\nnew\nline";
	r.batch_id = "b\tx";
	r.conn_id = 1;
	r.dest_domain = "dom@ain";
	r.size = 5;
	r.binding_group = "group@a";
	r.binding = "bind\ring";
	log_format_mainlog(line, sizeof(line), &r);
	/* Every '@' of a field but the last is '_'; CR/LF runs are one space. */
	CHECK(strncmp(line, "1700000000@id_with_at new line@", 31) == 0, "got %s", line);
	check_fields(line, want, 12, "sanitized D");
}

static void
test_bouncelog(void)
{
	struct ec_message *m = sample_message("info@postalengine.com", "johndoe@example.fict");
	struct timeval now = { NOW, 0 };
	struct log_msg_record r;
	char line[1024];
	static const char *const want_b[] = {
		"1064868656", "00/00-25004-31B987F3", "00/00-03736-F4101B54", "4532", "B",
		"johndoe", "example.fict", "info", "postalengine.com", "default", "default", "21",
		"24", "201", "10.0.0.1", "554 5.4.7 [internal] exceeded max time without delivery",
	};
	static const char *const want_t[] = {
		"1064868656", "00/00-25004-31B987F3", "00/00-03736-F4101B54", "4532", "T",
		"johndoe", "example.fict", "", "", "default", "default", "4",
		"70", "201", "", "451 4.3.0 try later <postmaster@example.fict>",
	};

	m->stage = 21;
	set_ip(&m->remote, "10.0.0.1", 25);
	log_record_from_message(&r, 'P', NULL, m, NULL, &now,
	                        "554 5.4.7 [internal] exceeded max time without delivery", -1);
	r.bounce_class = log_classify_builtin("554 5.4.7 [internal] exceeded max time without delivery");
	log_format_bouncelog(line, sizeof(line), &r);
	check_fields(line, want_b, 16, "B");
	message_unref(m);

	m = sample_message("", "johndoe@example.fict");
	m->stage = 4;
	log_record_from_message(&r, 'T', NULL, m, NULL, &now,
	                        "451 4.3.0 try later <postmaster@example.fict>\r\n", -1);
	r.bounce_class = log_classify_builtin(r.response);
	log_format_bouncelog(line, sizeof(line), &r);
	check_fields(line, want_t, 16, "bounce T");
	message_unref(m);
}

static void
test_rejectlog(void)
{
	struct accept_construct ac;
	struct log_reject_record r;
	struct timeval now = { 1236672125, 0 };
	char line[1024];
	static const char msg[] = "550 5.7.1 relaying denied\r\n";

	memset(&ac, 0, sizeof(ac));
	ac.conn_id = 18;
	set_ip(&ac.remote, "10.79.25.142", 42601);
	set_ip(&ac.local, "10.79.25.142", 25);
	log_reject_from_hook(&r, &now, &ac, VALIDATE_PHASE_MAILFROM, "core", msg, strlen(msg));
	CHECK_INT(r.code, 550, "code");
	log_format_rejectlog(line, sizeof(line), &r);
	CHECK_STR(line, "1236672125: R=\"10.79.25.142:42601\" L=\"10.79.25.142:25\" C=\"18\" "
	          "P=\"mailfrom\" E=550 M=core 550 5.7.1 relaying denied\n", "rejectlog");

	set_ip(&ac.remote, "2001:db8::9", 1025);
	set_ip(&ac.local, "2001:db8::1", 25);
	log_reject_from_hook(&r, &now, &ac, 42, "policy", "too many\nerrors", 15);
	log_format_rejectlog(line, sizeof(line), &r);
	CHECK_STR(line, "1236672125: R=\"[2001:db8::9]:1025\" L=\"[2001:db8::1]:25\" C=\"18\" "
	          "P=\"unknown\" E= M=policy too many errors\n", "rejectlog without code");
}

static void
test_reply_code(void)
{
	static const struct {
		const char *text;
		int want;
	} cases[] = {
		{ "550 5.1.1 user unknown", 550 }, { "421-busy", 421 }, { "250", 250 },
		{ "5500 x", 0 }, { "55 x", 0 }, { "abc", 0 }, { "", 0 }, { "650 x", 0 },
		{ " 550 x", 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CHECK_INT(log_format_reply_code(cases[i].text, strlen(cases[i].text)), cases[i].want,
		          cases[i].text);
	CHECK_INT(log_format_reply_code(NULL, 0), 0, "NULL");
}

static void
test_heartbeats(void)
{
	char line[64];

	CHECK_INT(log_format_heartbeat_mainlog(line, sizeof(line), 1251470342), 16, "M len");
	CHECK_STR(line, "1251470342@@@@M\n", "mainlog heartbeat");
	log_format_heartbeat_bouncelog(line, sizeof(line), 1251222268);
	CHECK_STR(line, "1251222268@@@@M1\n", "bouncelog heartbeat");
	log_format_heartbeat_rejectlog(line, sizeof(line), 1252064908);
	CHECK_STR(line, "1252064908: Marker 1\n", "rejectlog heartbeat");
}

static void
test_snprintf_contract(void)
{
	struct ec_message *m = sample_message("info@postalengine.com", "bob@example.fict");
	struct timeval now = { NOW, 0 };
	struct log_msg_record r;
	char full[1024], small[20];
	size_t n, n2;

	log_record_from_message(&r, 'T', NULL, m, NULL, &now, "451 4.4.1 later", -1);
	n = log_format_mainlog(full, sizeof(full), &r);
	CHECK_INT(n, strlen(full), "length returned");
	n2 = log_format_mainlog(small, sizeof(small), &r);
	CHECK_INT(n2, n, "needed length when truncated");
	CHECK_INT(strlen(small), sizeof(small) - 1, "truncated and NUL-terminated");
	CHECK(strncmp(small, full, sizeof(small) - 1) == 0, "prefix %s", small);
	n2 = log_format_json_message(small, sizeof(small), &r);
	CHECK(n2 >= sizeof(small), "json needs more: %zu", n2);
	CHECK_INT(log_format_json_message(NULL, 0, &r), n2, "json with no buffer");
	message_unref(m);
}

/* A small JSON checker: one object of string keys to strings, integers,
 * null, true or false; strings decoded into UTF-8. */
struct json_obj {
	char keys[32][32];
	char vals[32][1024];
	int is_str[32];
	size_t n;
};

static int
json_hex(const char **p, unsigned *v)
{
	*v = 0;
	for (int i = 0; i < 4; i++) {
		char c = (*p)[i];
		*v <<= 4;
		if (c >= '0' && c <= '9')
			*v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			*v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			*v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*p += 4;
	return 0;
}

static int
json_put_utf8(char *out, size_t *n, size_t cap, unsigned cp)
{
	char tmp[4];
	size_t k;

	if (cp < 0x80) {
		tmp[0] = (char)cp;
		k = 1;
	} else if (cp < 0x800) {
		tmp[0] = (char)(0xc0 | (cp >> 6));
		tmp[1] = (char)(0x80 | (cp & 0x3f));
		k = 2;
	} else {
		if (cp >= 0xd800 && cp <= 0xdfff)
			return -1;
		tmp[0] = (char)(0xe0 | (cp >> 12));
		tmp[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		tmp[2] = (char)(0x80 | (cp & 0x3f));
		k = 3;
	}
	if (*n + k >= cap)
		return -1;
	memcpy(out + *n, tmp, k);
	*n += k;
	return 0;
}

/* A string at *p (after its opening quote) into out; -1 if invalid. */
static int
json_str(const char **p, char *out, size_t cap)
{
	size_t n = 0;
	const unsigned char *s;

	for (;;) {
		unsigned char c = (unsigned char)**p;
		if (c == '"') {
			(*p)++;
			out[n] = '\0';
			return 0;
		}
		if (c < 0x20)
			return -1;          /* raw control character (or the end) */
		if (c == '\\') {
			unsigned cp;
			char e = (*p)[1];
			*p += 2;
			switch (e) {
			case '"': cp = '"'; break;
			case '\\': cp = '\\'; break;
			case '/': cp = '/'; break;
			case 'b': cp = '\b'; break;
			case 'f': cp = '\f'; break;
			case 'n': cp = '\n'; break;
			case 'r': cp = '\r'; break;
			case 't': cp = '\t'; break;
			case 'u':
				if (json_hex(p, &cp) < 0)
					return -1;
				break;
			default:
				return -1;
			}
			if (json_put_utf8(out, &n, cap, cp) < 0)
				return -1;
			continue;
		}
		/* Raw bytes must be well-formed UTF-8 (a strict check). */
		s = (const unsigned char *)*p;
		size_t k = c < 0x80 ? 1 : (c >= 0xc2 && c <= 0xdf) ? 2 : (c >= 0xe0 && c <= 0xef) ? 3
		         : (c >= 0xf0 && c <= 0xf4) ? 4 : 0;
		if (k == 0)
			return -1;
		for (size_t i = 1; i < k; i++)
			if (s[i] < 0x80 || s[i] > 0xbf)
				return -1;
		if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f) ||
		    (c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f))
			return -1;
		if (n + k >= cap)
			return -1;
		memcpy(out + n, s, k);
		n += k;
		*p += k;
	}
}

static int
json_parse(const char *line, struct json_obj *o)
{
	const char *p = line;

	o->n = 0;
	if (*p++ != '{')
		return -1;
	for (;;) {
		if (o->n == 32 || *p++ != '"' || json_str(&p, o->keys[o->n], sizeof(o->keys[0])) < 0)
			return -1;
		if (*p++ != ':')
			return -1;
		if (*p == '"') {
			p++;
			if (json_str(&p, o->vals[o->n], sizeof(o->vals[0])) < 0)
				return -1;
			o->is_str[o->n] = 1;
		} else {
			size_t k = 0;
			if (strncmp(p, "null", 4) == 0 || strncmp(p, "true", 4) == 0) {
				k = 4;
			} else if (strncmp(p, "false", 5) == 0) {
				k = 5;
			} else {
				if (*p == '-')
					k++;
				if (p[k] < '0' || p[k] > '9' || (p[k] == '0' && p[k + 1] >= '0' && p[k + 1] <= '9'))
					return -1;
				while (p[k] >= '0' && p[k] <= '9')
					k++;
			}
			memcpy(o->vals[o->n], p, k);
			o->vals[o->n][k] = '\0';
			o->is_str[o->n] = 0;
			p += k;
		}
		o->n++;
		if (*p == ',') {
			p++;
			continue;
		}
		if (*p++ != '}')
			return -1;
		break;
	}
	return strcmp(p, "\n") == 0 ? 0 : -1;
}

static const char *
json_get(const struct json_obj *o, const char *key, int want_str)
{
	for (size_t i = 0; i < o->n; i++)
		if (strcmp(o->keys[i], key) == 0)
			return o->is_str[i] == want_str ? o->vals[i] : NULL;
	return NULL;
}

static void
test_json_message(void)
{
	struct ec_message *m = sample_message("", "bob@example.fict");
	struct domain_record dr = { "example.fict" };
	struct timeval now = { NOW, 0 };
	struct log_msg_record r;
	struct json_obj o;
	char line[4096];
	/* Quotes, backslashes, controls, valid UTF-8, and bytes that are not. */
	static const char note[] = "550 \"no\" \\ user\x01\t\xc3\xa9\xf0\x9f\x98\x80 "
	                           "\xff|\xc0\xaf|\xed\xa0\x80|\xe2\x82|\xf4\x90\x80\x80|\r\n";
	static const char want_resp[] = "550 \"no\" \\ user\x01\t\xc3\xa9\xf0\x9f\x98\x80 "
	                                "\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd|"
	                                "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|"
	                                "\xef\xbf\xbd\xef\xbf\xbd|"
	                                "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|";
	static const struct {
		char type;
		const char *name;
	} types[] = {
		{ 'D', "delivery" }, { 'T', "transient_failure" }, { 'P', "permanent_failure" },
	};

	m->stage = 9;
	m->num_retries = 1;
	set_ip(&m->remote, "2001:db8::1", 25);
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		log_record_from_message(&r, types[i].type, NULL, m, &dr, &now, note,
		                        (int)sizeof(note) - 1);
		r.bounce_class = 10;
		log_format_json_message(line, sizeof(line), &r);
		CHECK(json_parse(line, &o) == 0, "valid JSON: %s", line);
		CHECK_STR(json_get(&o, "type", 1), types[i].name, "type");
		CHECK_STR(json_get(&o, "time", 0), "1064868656", "time");
		CHECK_STR(json_get(&o, "msg_id", 1), "00/00-25004-31B987F3", "msg_id");
		CHECK_STR(json_get(&o, "batch_id", 1), "00/00-03736-F4101B54", "batch_id");
		CHECK_STR(json_get(&o, "conn_id", 1), "4532", "conn_id");
		CHECK_STR(json_get(&o, "rcpt_to", 1), "bob@example.fict", "rcpt_to");
		CHECK_STR(json_get(&o, "mail_from", 1), "", "mail_from");
		CHECK_STR(json_get(&o, "dest_domain", 1), "example.fict", "dest_domain");
		CHECK_STR(json_get(&o, "size", 0), "201", "size");
		CHECK_STR(json_get(&o, "binding_group", 1), "default", "binding_group");
		CHECK_STR(json_get(&o, "binding", 1), "default", "binding");
		CHECK_STR(json_get(&o, "retries", 0), "1", "retries");
		CHECK_STR(json_get(&o, "secs", 0), "18", "secs");
		CHECK_STR(json_get(&o, "remote_ip", 1), "2001:db8::1", "remote_ip");
		CHECK_STR(json_get(&o, "response", 1), want_resp, "response");
		if (types[i].type == 'D') {
			CHECK(json_get(&o, "stage", 0) == NULL, "no stage in D");
		} else {
			CHECK_STR(json_get(&o, "stage", 0), "9", "stage");
			CHECK_STR(json_get(&o, "bytes_sent", 0), "201", "bytes_sent");
			CHECK_STR(json_get(&o, "bounce_class", 0), "10", "bounce_class");
		}
	}

	log_record_from_message(&r, 'R', NULL, m, NULL, &now, NULL, 0);
	log_format_json_message(line, sizeof(line), &r);
	CHECK(json_parse(line, &o) == 0, "valid JSON: %s", line);
	CHECK_STR(json_get(&o, "type", 1), "reception", "type");
	CHECK_STR(json_get(&o, "src_ip", 1), "10.0.1.1", "src_ip");
	CHECK_STR(json_get(&o, "protocol", 1), "esmtp", "protocol");
	CHECK_STR(json_get(&o, "size", 0), "201", "size");
	message_unref(m);
}

static void
test_json_every_byte(void)
{
	struct log_msg_record r;
	struct json_obj o;
	char line[8192], text[256];

	/* Every byte value once: the result must parse, whatever it holds. */
	for (int i = 0; i < 255; i++)
		text[i] = (char)(i + 1);
	memset(&r, 0, sizeof(r));
	r.type = 'P';
	r.msg_id = text;
	r.response = text;
	r.response_len = 255;
	text[255] = '\0';
	log_format_json_message(line, sizeof(line), &r);
	CHECK(json_parse(line, &o) == 0, "valid JSON with every byte");
	CHECK(strchr(line, '\n') == line + strlen(line) - 1, "one line");
}

static void
test_json_rejection(void)
{
	struct accept_construct ac;
	struct log_reject_record r;
	struct json_obj o;
	struct timeval now = { 1236672125, 0 };
	char line[1024];
	static const char msg[] = "550 5.7.1 \"relaying\" denied";

	memset(&ac, 0, sizeof(ac));
	ac.conn_id = 18;
	set_ip(&ac.remote, "10.79.25.142", 42601);
	set_ip(&ac.local, "2001:db8::1", 25);
	log_reject_from_hook(&r, &now, &ac, VALIDATE_PHASE_RCPTTO, "core", msg, strlen(msg));
	log_format_json_rejection(line, sizeof(line), &r);
	CHECK(json_parse(line, &o) == 0, "valid JSON: %s", line);
	CHECK_STR(json_get(&o, "type", 1), "rejection", "type");
	CHECK_STR(json_get(&o, "time", 0), "1236672125", "time");
	CHECK_STR(json_get(&o, "remote", 1), "10.79.25.142:42601", "remote");
	CHECK_STR(json_get(&o, "local", 1), "[2001:db8::1]:25", "local");
	CHECK_STR(json_get(&o, "conn_id", 1), "18", "conn_id");
	CHECK_STR(json_get(&o, "phase", 1), "rcptto", "phase");
	CHECK_STR(json_get(&o, "code", 0), "550", "code");
	CHECK_STR(json_get(&o, "module", 1), "core", "module");
	CHECK_STR(json_get(&o, "message", 1), "550 5.7.1 \"relaying\" denied", "message");

	log_reject_from_hook(&r, &now, NULL, VALIDATE_PHASE_CONNECT, "core", "go away", 7);
	log_format_json_rejection(line, sizeof(line), &r);
	CHECK(json_parse(line, &o) == 0, "valid JSON: %s", line);
	CHECK_STR(json_get(&o, "code", 0), "null", "no code");
	CHECK_STR(json_get(&o, "remote", 1), "", "no connection");
}

static void
test_classify_table(void)
{
	static const struct {
		const char *reply;
		int want;
	} cases[] = {
		/* Invalid recipient. */
		{ "550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown", 10 },
		{ "550 5.1.1 The email account that you tried to reach does not exist.", 10 },
		{ "550 No such user here", 10 },
		{ "553 5.1.3 Bad recipient address syntax", 10 },
		{ "550 5.1.1 <spam.team@example.com>: mailbox unavailable", 10 },
		{ "550 5.4.4 [internal] NULL MX domain does not accept mail", 10 },
		{ "554 5.2.1 mailbox disabled for this recipient", 10 },
		/* DNS. */
		{ "554 5.4.4 [internal] Domain Lookup Failed", 21 },
		{ "454 4.4.4 [internal] no MX or A for domain", 21 },
		{ "450 4.1.2 <a@b.invalid>: Recipient address rejected: Domain not found", 21 },
		{ "550 5.1.2 bad destination system", 21 },
		/* Mailbox full. */
		{ "552 5.2.2 Mailbox full", 22 },
		{ "452 4.2.2 The email account that you tried to reach is over quota", 22 },
		{ "550 5.2.2 user is over their storage limit", 22 },
		/* Too large. */
		{ "552 5.3.4 Message size exceeds fixed maximum message size", 23 },
		{ "552 message too big", 23 },
		/* Timeout. */
		{ "554 5.4.7 [internal] exceeded max time without delivery", 24 },
		{ "554 5.4.7 [internal] exceeded max retries without delivery", 24 },
		{ "450 4.4.1 [internal] Connection Timed Out", 24 },
		{ "451 4.4.2 [internal] no banner", 24 },
		{ "451 4.4.2 [internal] no RCPT TO response", 24 },
		{ "554 5.4.5 [internal] Delivery not attempted (message expired)", 24 },
		/* Admin. */
		{ "550 5.7.1 [internal] discarded by policy", 25 },
		{ "554 5.7.0 [internal] Message manually purged", 25 },
		{ "551 5.4.6 [internal] Private/Loopback Address", 25 },
		{ "451 4.4.1 [internal] manually delayed domain", 25 },
		/* Blocks. */
		{ "550 5.7.1 Service unavailable; client host blocked using zen.spamhaus.org", 51 },
		{ "554 Your IP is listed in a DNSBL", 51 },
		{ "421 4.7.0 IP has a poor reputation, try later", 51 },
		{ "550 5.7.1 Message rejected as spam", 52 },
		{ "554 5.7.1 This message contains a virus", 52 },
		{ "552 5.7.0 Our system detected an illegal attachment on your message", 53 },
		{ "550 5.7.1 Relaying denied", 54 },
		{ "554 5.7.1 <x@y>: Relay access denied", 54 },
		{ "550 5.7.1 Unauthenticated email is not accepted due to DMARC policy", 50 },
		{ "554 5.7.1 Access denied", 50 },
		{ "550 5.7.26 sender not authenticated", 50 },
		/* Generic. */
		{ "554 5.0.0 Service unavailable", 40 },
		{ "550 5.5.0 no valid recipients", 30 },
		{ "550 Out of office: back Monday", 60 },
		/* Transient and undetermined. */
		{ "421 4.4.0 [internal] no MXs for this domain could be reached at this time", 70 },
		{ "451 4.4.1 [internal] No valid hosts (unable to make any connections)", 70 },
		{ "450 4.2.0 <bob@example.com>: Recipient address rejected: Greylisted", 70 },
		{ "452 4.5.3 Error: too many recipients", 70 },
		{ "550 something we have never seen", 1 },
		{ "hello", 1 },
		{ "", 1 },
	};
	char ctx[160];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(ctx, sizeof(ctx), "classify \"%s\"", cases[i].reply);
		CHECK_INT(log_classify_builtin(cases[i].reply), cases[i].want, ctx);
	}
	CHECK_INT(log_classify_builtin(NULL), 1, "NULL");
	CHECK_STR(log_classify_name(10), "Invalid Recipient", "name 10");
	CHECK_STR(log_classify_name(54), "Relaying Denied", "name 54");
	CHECK_STR(log_classify_name(7), "Unknown", "name 7");
}

static int
custom_classifier(void *closure, const char *response, const char *domain)
{
	(void)closure;
	if (domain != NULL && strcmp(domain, "custom.example") == 0)
		return 99;
	if (strstr(response, "frobnicated") != NULL)
		return LOG_BC_SUBSCRIBE;
	return 0;
}

static void
test_classify_hook(void)
{
	CHECK_INT(log_classify("550 frobnicated", "example.com"), 1, "no provider");
	register_core_smtp_error_classify_hook_last(custom_classifier, NULL);
	CHECK_INT(log_classify("550 frobnicated", "example.com"), 80, "provider's code");
	CHECK_INT(log_classify("550 5.1.1 user unknown", "custom.example"), 99, "per domain");
	CHECK_INT(log_classify("550 5.1.1 user unknown", "example.com"), 10,
	          "provider says 0: built-in");
	imp_hook_unregister(&IMP_HOOK_HEAD(core, smtp_error_classify),
	                    (void (*)(void))custom_classifier, NULL);
	imp_hook_reclaim();
	CHECK_INT(log_classify("550 frobnicated", "example.com"), 1, "provider gone");
}

TEST_MAIN("log_format",
	TEST(test_mainlog_reception),
	TEST(test_mainlog_reception_null_sender_ac),
	TEST(test_mainlog_delivery),
	TEST(test_mainlog_failures),
	TEST(test_fields_never_break),
	TEST(test_bouncelog),
	TEST(test_rejectlog),
	TEST(test_reply_code),
	TEST(test_heartbeats),
	TEST(test_snprintf_contract),
	TEST(test_json_message),
	TEST(test_json_every_byte),
	TEST(test_json_rejection),
	TEST(test_classify_table),
	TEST(test_classify_hook))

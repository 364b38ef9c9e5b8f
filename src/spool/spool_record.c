/*
 * spool_record.c - encoding and parsing of batch files (format in
 * spool_record.h and docs/spool.md).
 *
 * Public functions:
 *   spool_crc32c           CRC32C, hardware (SSE4.2) when the CPU has it
 *   spool_record_head      the magic and HEAD record
 *   spool_record_begin/end frame a record in a strbuf
 *   spool_field_*          append a field to the record being built
 *   spool_record_state     a complete STATE record
 *   spool_record_parse     parse a whole file image
 *   spool_head_parse       parse the magic and HEAD record
 *   spool_meta_parse       parse the records after the body
 *   spool_batch_info_free  free a parse result
 *
 * The parser trusts nothing: every length is checked against what is left,
 * every record's CRC is checked before its payload is looked at, strings
 * must not hold NUL bytes, recipients come in index order and the END record
 * must count them. A bad record before END makes the file BAD; a bad record
 * after END is a torn append (the process died while writing it): the file
 * is usable up to that record (TORN). Results are copied into an arena owned
 * by the info; nothing points into the input. Errors fill err; no logging.
 */
#include "spool/spool_record.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/xalloc.h"

/* A cursor over the fields of one payload. */
struct spool_cursor {
	const uint8_t *p;               /* next byte */
	size_t left;                    /* bytes after p */
};

/* One field as read from a payload. */
struct spool_field {
	unsigned tag;                   /* field tag */
	const uint8_t *val;             /* value bytes, inside the input */
	size_t len;                     /* bytes of value */
};

static void spool_crc_init(void);
static uint32_t spool_crc_sw(uint32_t crc, const uint8_t *p, size_t len);
static uint32_t get_u32(const uint8_t *p);
static uint64_t get_u64(const uint8_t *p);
static void put_u32(uint8_t *p, uint32_t v);
static void put_u64(uint8_t *p, uint64_t v);
static int field_next(struct spool_cursor *c, struct spool_field *f);
static int field_u64(const struct spool_field *f, uint64_t *v);
static const char *field_str(struct arena *a, const struct spool_field *f);
static int field_peer(const struct spool_field *f, struct sockaddr_storage *ss);
static int record_next(struct spool_cursor *c, unsigned *type, struct spool_cursor *payload);
static int parse_env(struct spool_batch_info *info, struct spool_cursor *pl, char *err, size_t errlen);
static int parse_rcpt(struct spool_batch_info *info, struct spool_cursor *pl, size_t *cap,
    char *err, size_t errlen);
static int parse_state(struct spool_batch_info *info, struct spool_cursor *pl);

static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void
spool_crc_init(void)
{
	uint32_t c;
	int i, j;

	for (i = 0; i < 256; i++) {
		c = (uint32_t)i;
		for (j = 0; j < 8; j++)
			c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		crc_table[0][i] = c;
	}
	for (i = 0; i < 256; i++)
		for (j = 1; j < 8; j++)
			crc_table[j][i] = (crc_table[j - 1][i] >> 8) ^
			    crc_table[0][crc_table[j - 1][i] & 0xff];
}

/* spool_crc_sw: slicing-by-8 on a pre-inverted crc. */
static uint32_t
spool_crc_sw(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len >= 8) {
		uint32_t lo = crc ^ get_u32(p), hi = get_u32(p + 4);

		crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
		    crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
		    crc_table[3][hi & 0xff] ^ crc_table[2][(hi >> 8) & 0xff] ^
		    crc_table[1][(hi >> 16) & 0xff] ^ crc_table[0][hi >> 24];
		p += 8;
		len -= 8;
	}
	while (len-- > 0)
		crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

#if defined(__x86_64__)
static uint32_t spool_crc_hw(uint32_t crc, const uint8_t *p, size_t len);

__attribute__((target("sse4.2"))) static uint32_t
spool_crc_hw(uint32_t crc, const uint8_t *p, size_t len)
{
	uint64_t c = crc;

	while (len >= 8) {
		uint64_t v;

		memcpy(&v, p, 8);
		c = __builtin_ia32_crc32di(c, v);
		p += 8;
		len -= 8;
	}
	crc = (uint32_t)c;
	while (len-- > 0)
		crc = __builtin_ia32_crc32qi(crc, *p++);
	return crc;
}
#endif

uint32_t
spool_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	crc = ~crc;
#if defined(__x86_64__)
	if (__builtin_cpu_supports("sse4.2"))
		return ~spool_crc_hw(crc, p, len);
#endif
	pthread_once(&crc_once, spool_crc_init);
	return ~spool_crc_sw(crc, p, len);
}

static uint32_t
get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t
get_u64(const uint8_t *p)
{
	return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

static void
put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void
put_u64(uint8_t *p, uint64_t v)
{
	put_u32(p, (uint32_t)v);
	put_u32(p + 4, (uint32_t)(v >> 32));
}

void
spool_record_head(uint8_t out[SPOOL_BODY_OFF], uint64_t body_len, uint32_t body_crc)
{
	uint8_t *r = out + SPOOL_MAGIC_LEN;

	memcpy(out, SPOOL_MAGIC, SPOOL_MAGIC_LEN);
	put_u32(r, SPOOL_HEAD_PAYLOAD);
	r[4] = SPOOL_REC_HEAD;
	put_u32(r + 5, SPOOL_FORMAT_VERSION);
	put_u32(r + 9, 0);                      /* flags */
	put_u64(r + 13, body_len);
	put_u32(r + 21, body_crc);
	put_u32(r + 25, 0);                     /* reserved */
	put_u32(r + 5 + SPOOL_HEAD_PAYLOAD, spool_crc32c(0, r, 5 + SPOOL_HEAD_PAYLOAD));
}

size_t
spool_record_begin(struct strbuf *sb, enum spool_rec_type type)
{
	uint8_t hdr[5] = { 0, 0, 0, 0, (uint8_t)type };
	size_t off = sb->len;

	strbuf_append(sb, hdr, sizeof(hdr));
	return off;
}

void
spool_record_end(struct strbuf *sb, size_t off)
{
	uint8_t crc[4];
	uint8_t *r = (uint8_t *)sb->data + off;

	put_u32(r, (uint32_t)(sb->len - off - 5));
	put_u32(crc, spool_crc32c(0, r, sb->len - off));
	strbuf_append(sb, crc, sizeof(crc));
}

void
spool_field_bytes(struct strbuf *sb, unsigned tag, const void *p, size_t n)
{
	uint8_t hdr[3];

	if (n > 0xffff)
		n = 0xffff;
	hdr[0] = (uint8_t)tag;
	hdr[1] = (uint8_t)n;
	hdr[2] = (uint8_t)(n >> 8);
	strbuf_append(sb, hdr, sizeof(hdr));
	strbuf_append(sb, p, n);
}

void
spool_field_u64(struct strbuf *sb, unsigned tag, uint64_t v)
{
	uint8_t b[8];

	put_u64(b, v);
	spool_field_bytes(sb, tag, b, sizeof(b));
}

void
spool_field_str(struct strbuf *sb, unsigned tag, const char *s)
{
	spool_field_bytes(sb, tag, s, strlen(s));
}

/* Peer value: u8 family (4 or 6), u16 port (network order), address, and
 * for IPv6 a u32 scope id (LE). */
void
spool_field_peer(struct strbuf *sb, unsigned tag, const struct sockaddr *sa)
{
	uint8_t v[1 + 2 + 16 + 4];

	if (sa == NULL)
		return;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		v[0] = 4;
		memcpy(v + 1, &in->sin_port, 2);
		memcpy(v + 3, &in->sin_addr, 4);
		spool_field_bytes(sb, tag, v, 7);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		v[0] = 6;
		memcpy(v + 1, &in6->sin6_port, 2);
		memcpy(v + 3, &in6->sin6_addr, 16);
		put_u32(v + 19, in6->sin6_scope_id);
		spool_field_bytes(sb, tag, v, 23);
	}
}

void
spool_record_state(struct strbuf *sb, unsigned index, const struct spool_rcpt_state *st)
{
	size_t off = spool_record_begin(sb, SPOOL_REC_STATE);

	spool_field_u64(sb, SPOOL_STATE_INDEX, index);
	spool_field_u64(sb, SPOOL_STATE_FLAGS, st->flags);
	if (!(st->flags & SPOOL_STATE_DONE)) {
		spool_field_u64(sb, SPOOL_STATE_RETRIES, st->retries);
		spool_field_u64(sb, SPOOL_STATE_NEXT_SEC, (uint64_t)(int64_t)st->next_attempt.tv_sec);
		spool_field_u64(sb, SPOOL_STATE_NEXT_USEC, (uint64_t)(int64_t)st->next_attempt.tv_usec);
		spool_field_str(sb, SPOOL_STATE_BINDING, st->binding ? st->binding : "");
	}
	spool_record_end(sb, off);
}

/* field_next: the next field of a payload: 1, 0 at the end, -1 when malformed. */
static int
field_next(struct spool_cursor *c, struct spool_field *f)
{
	size_t n;

	if (c->left == 0)
		return 0;
	if (c->left < 3)
		return -1;
	n = (size_t)c->p[1] | (size_t)c->p[2] << 8;
	if (n > c->left - 3)
		return -1;
	f->tag = c->p[0];
	f->val = c->p + 3;
	f->len = n;
	c->p += 3 + n;
	c->left -= 3 + n;
	return 1;
}

static int
field_u64(const struct spool_field *f, uint64_t *v)
{
	if (f->len != 8)
		return -1;
	*v = get_u64(f->val);
	return 0;
}

/* field_str: the value as a string in a, or NULL when it holds a NUL. */
static const char *
field_str(struct arena *a, const struct spool_field *f)
{
	if (memchr(f->val, '\0', f->len) != NULL)
		return NULL;
	return arena_strndup(a, (const char *)f->val, f->len);
}

static int
field_peer(const struct spool_field *f, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (f->len == 7 && f->val[0] == 4) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;

		in->sin_family = AF_INET;
		memcpy(&in->sin_port, f->val + 1, 2);
		memcpy(&in->sin_addr, f->val + 3, 4);
		return 0;
	}
	if (f->len == 23 && f->val[0] == 6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

		in6->sin6_family = AF_INET6;
		memcpy(&in6->sin6_port, f->val + 1, 2);
		memcpy(&in6->sin6_addr, f->val + 3, 16);
		in6->sin6_scope_id = get_u32(f->val + 19);
		return 0;
	}
	return -1;
}

/*
 * record_next: frame the next record: 1 with its type and payload, 0 at the
 * end of input, -1 when it is cut short, over-long or fails its CRC.
 */
static int
record_next(struct spool_cursor *c, unsigned *type, struct spool_cursor *payload)
{
	uint32_t n;

	if (c->left == 0)
		return 0;
	if (c->left < SPOOL_REC_OVERHEAD)
		return -1;
	n = get_u32(c->p);
	if (n > SPOOL_RECORD_MAX || n > c->left - SPOOL_REC_OVERHEAD)
		return -1;
	if (spool_crc32c(0, c->p, 5 + (size_t)n) != get_u32(c->p + 5 + n))
		return -1;
	*type = c->p[4];
	payload->p = c->p + 5;
	payload->left = n;
	c->p += SPOOL_REC_OVERHEAD + n;
	c->left -= SPOOL_REC_OVERHEAD + n;
	return 1;
}

int
spool_head_parse(const void *buf, size_t len, uint64_t *body_len, uint32_t *body_crc,
    char *err, size_t errlen)
{
	const uint8_t *p = buf, *r = p + SPOOL_MAGIC_LEN;
	uint32_t version;

	if (len < SPOOL_BODY_OFF) {
		snprintf(err, errlen, "file too short (%zu bytes)", len);
		return -1;
	}
	if (memcmp(p, SPOOL_MAGIC, SPOOL_MAGIC_LEN) != 0) {
		snprintf(err, errlen, "bad magic");
		return -1;
	}
	if (get_u32(r) != SPOOL_HEAD_PAYLOAD || r[4] != SPOOL_REC_HEAD ||
	    spool_crc32c(0, r, 5 + SPOOL_HEAD_PAYLOAD) != get_u32(r + 5 + SPOOL_HEAD_PAYLOAD)) {
		snprintf(err, errlen, "bad head record");
		return -1;
	}
	version = get_u32(r + 5);
	if (version != SPOOL_FORMAT_VERSION) {
		snprintf(err, errlen, "unsupported format version %u", version);
		return -1;
	}
	*body_len = get_u64(r + 13);
	*body_crc = get_u32(r + 21);
	return 0;
}

int
spool_record_parse(const void *buf, size_t len, struct spool_batch_info **out,
    char *err, size_t errlen)
{
	const uint8_t *p = buf;
	uint64_t body_len;
	uint32_t body_crc;
	int rc;

	*out = NULL;
	if (spool_head_parse(buf, len, &body_len, &body_crc, err, errlen) < 0)
		return SPOOL_PARSE_BAD;
	if (body_len > len - SPOOL_BODY_OFF) {
		snprintf(err, errlen, "body cut short (%zu of %llu bytes)", len - SPOOL_BODY_OFF,
		    (unsigned long long)body_len);
		return SPOOL_PARSE_BAD;
	}
	if (spool_crc32c(0, p + SPOOL_BODY_OFF, (size_t)body_len) != body_crc) {
		snprintf(err, errlen, "body checksum mismatch");
		return SPOOL_PARSE_BAD;
	}
	rc = spool_meta_parse(p + SPOOL_BODY_OFF + body_len, len - SPOOL_BODY_OFF - (size_t)body_len,
	    body_len, body_crc, out, err, errlen);
	return rc;
}

static int
parse_env(struct spool_batch_info *info, struct spool_cursor *pl, char *err, size_t errlen)
{
	struct spool_field f;
	uint64_t v;
	int r, have_id = 0, bad = 0;
	const char *s;

	while ((r = field_next(pl, &f)) > 0) {
		switch (f.tag) {
		case SPOOL_ENV_BATCH_ID:
			if (f.len != SPOOL_ID_CHARS)
				bad = 1;
			else {
				memcpy(info->batch_id, f.val, SPOOL_ID_CHARS);
				info->batch_id[SPOOL_ID_CHARS] = '\0';
				bad |= !spool_id_valid(info->batch_id);
				have_id = 1;
			}
			break;
		case SPOOL_ENV_MAIL_FROM:
		case SPOOL_ENV_ENVID:
		case SPOOL_ENV_HELO:
		case SPOOL_ENV_PROTOCOL:
			if ((s = field_str(&info->mem, &f)) == NULL) {
				bad = 1;
				break;
			}
			if (f.tag == SPOOL_ENV_MAIL_FROM)
				info->mail_from = s;
			else if (f.tag == SPOOL_ENV_ENVID)
				info->envid = s;
			else if (f.tag == SPOOL_ENV_HELO)
				info->helo = s;
			else
				info->protocol = s;
			break;
		case SPOOL_ENV_RET:
		case SPOOL_ENV_FLAGS:
		case SPOOL_ENV_CONN_ID:
		case SPOOL_ENV_RECV_SEC:
		case SPOOL_ENV_RECV_USEC:
			if (field_u64(&f, &v) < 0) {
				bad = 1;
				break;
			}
			if (f.tag == SPOOL_ENV_RET)
				info->ret = v <= SPOOL_RET_HDRS ? (int)v : SPOOL_RET_UNSET;
			else if (f.tag == SPOOL_ENV_FLAGS)
				info->flags = (unsigned)v;
			else if (f.tag == SPOOL_ENV_CONN_ID)
				info->conn_id = v;
			else if (f.tag == SPOOL_ENV_RECV_SEC)
				info->received.tv_sec = (time_t)(int64_t)v;
			else
				info->received.tv_usec = (suseconds_t)(v % 1000000u);
			break;
		case SPOOL_ENV_PEER:
			bad |= field_peer(&f, &info->peer) < 0;
			break;
		default:
			break;                  /* a later minor revision's field */
		}
	}
	if (r < 0 || bad || !have_id || info->mail_from == NULL) {
		snprintf(err, errlen, "bad envelope record");
		return -1;
	}
	if (info->helo == NULL)
		info->helo = "";
	if (info->protocol == NULL)
		info->protocol = "";
	return 0;
}

static int
parse_rcpt(struct spool_batch_info *info, struct spool_cursor *pl, size_t *cap,
    char *err, size_t errlen)
{
	struct spool_rcpt_info ri;
	struct spool_field f;
	uint64_t v, index = UINT64_MAX;
	int r, bad = 0, have_id = 0;
	const char *s;

	memset(&ri, 0, sizeof(ri));
	while ((r = field_next(pl, &f)) > 0) {
		switch (f.tag) {
		case SPOOL_RCPT_INDEX:
		case SPOOL_RCPT_NOTIFY:
			if (field_u64(&f, &v) < 0)
				bad = 1;
			else if (f.tag == SPOOL_RCPT_INDEX)
				index = v;
			else
				ri.notify = (unsigned)v;
			break;
		case SPOOL_RCPT_ID:
			if (f.len != SPOOL_ID_CHARS)
				bad = 1;
			else {
				memcpy(ri.id, f.val, SPOOL_ID_CHARS);
				ri.id[SPOOL_ID_CHARS] = '\0';
				bad |= !spool_id_valid(ri.id);
				have_id = 1;
			}
			break;
		case SPOOL_RCPT_ADDR:
		case SPOOL_RCPT_ORCPT:
		case SPOOL_RCPT_BINDING:
			if ((s = field_str(&info->mem, &f)) == NULL)
				bad = 1;
			else if (f.tag == SPOOL_RCPT_ADDR)
				ri.rcpt = s;
			else if (f.tag == SPOOL_RCPT_ORCPT)
				ri.orcpt = s;
			else
				ri.state.binding = s;
			break;
		default:
			break;
		}
	}
	if (r < 0 || bad || !have_id || ri.rcpt == NULL || index != info->nrcpt) {
		snprintf(err, errlen, "bad recipient record #%zu", info->nrcpt);
		return -1;
	}
	ri.index = (unsigned)index;
	if (ri.state.binding == NULL)
		ri.state.binding = "";
	arena_grow_array(&info->mem, (void **)&info->rcpts, cap, info->nrcpt, sizeof(ri));
	info->rcpts[info->nrcpt++] = ri;
	return 0;
}

/* parse_state: apply a STATE record; -1 when its fields are malformed. */
static int
parse_state(struct spool_batch_info *info, struct spool_cursor *pl)
{
	struct spool_field f;
	struct spool_rcpt_state st;
	uint64_t v, index = UINT64_MAX, flags = 0;
	uint64_t retries = 0, next_sec = 0, next_usec = 0;
	int r, bad = 0, have_retries = 0, have_next = 0;
	const char *binding = NULL;

	while ((r = field_next(pl, &f)) > 0) {
		switch (f.tag) {
		case SPOOL_STATE_INDEX:
		case SPOOL_STATE_FLAGS:
		case SPOOL_STATE_RETRIES:
		case SPOOL_STATE_NEXT_SEC:
		case SPOOL_STATE_NEXT_USEC:
			if (field_u64(&f, &v) < 0) {
				bad = 1;
				break;
			}
			if (f.tag == SPOOL_STATE_INDEX)
				index = v;
			else if (f.tag == SPOOL_STATE_FLAGS)
				flags = v;
			else if (f.tag == SPOOL_STATE_RETRIES) {
				retries = v;
				have_retries = 1;
			} else if (f.tag == SPOOL_STATE_NEXT_SEC) {
				next_sec = v;
				have_next = 1;
			} else
				next_usec = v;
			break;
		case SPOOL_STATE_BINDING:
			if ((binding = field_str(&info->mem, &f)) == NULL)
				bad = 1;
			break;
		default:
			break;
		}
	}
	if (r < 0 || bad)
		return -1;
	if (index >= info->nrcpt)
		return 0;               /* names no recipient: ignored (writers check) */
	st = info->rcpts[index].state;
	if (have_retries)
		st.retries = retries > 0xffffffffu ? 0xffffffffu : (unsigned)retries;
	if (have_next) {
		st.next_attempt.tv_sec = (time_t)(int64_t)next_sec;
		st.next_attempt.tv_usec = (suseconds_t)(next_usec % 1000000u);
	}
	if (binding != NULL)
		st.binding = binding;
	st.flags |= (unsigned)flags & SPOOL_STATE_DONE;  /* done is final */
	info->rcpts[index].state = st;
	return 0;
}

int
spool_meta_parse(const void *meta, size_t len, uint64_t body_len, uint32_t body_crc,
    struct spool_batch_info **out, char *err, size_t errlen)
{
	struct spool_cursor c = { meta, len }, pl;
	struct spool_batch_info *info;
	struct spool_field f;
	const uint8_t *rec_start;
	size_t cap = 0;
	unsigned type;
	uint64_t nrcpt = UINT64_MAX;
	int r, stage = 0;       /* 0: want ENV, 1: RCPT or END, 2: after END */

	*out = NULL;
	info = xcalloc(1, sizeof(*info));
	arena_init(&info->mem, 1024);
	info->body_off = SPOOL_BODY_OFF;
	info->body_len = body_len;
	info->body_crc = body_crc;
	for (;;) {
		rec_start = c.p;
		r = record_next(&c, &type, &pl);
		if (r == 0)
			break;
		if (r < 0 && stage < 2) {
			snprintf(err, errlen, "%s at offset %llu",
			    c.left < SPOOL_REC_OVERHEAD || get_u32(c.p) > c.left - SPOOL_REC_OVERHEAD ?
			    "record cut short" : "bad record (checksum or length)",
			    (unsigned long long)(SPOOL_BODY_OFF + body_len +
			    (uint64_t)(c.p - (const uint8_t *)meta)));
			goto bad;
		}
		if (r < 0) {
			/* A torn append: keep what came before it. */
			info->valid_len = SPOOL_BODY_OFF + body_len +
			    (uint64_t)(rec_start - (const uint8_t *)meta);
			info->nrcpt_total = info->nrcpt;
			*out = info;
			return SPOOL_PARSE_TORN;
		}
		if (stage == 0) {
			if (type != SPOOL_REC_ENV) {
				snprintf(err, errlen, "first record is not the envelope");
				goto bad;
			}
			if (parse_env(info, &pl, err, errlen) < 0)
				goto bad;
			stage = 1;
		} else if (stage == 1) {
			if (type == SPOOL_REC_RCPT) {
				if (parse_rcpt(info, &pl, &cap, err, errlen) < 0)
					goto bad;
			} else if (type == SPOOL_REC_END) {
				while ((r = field_next(&pl, &f)) > 0)
					if (f.tag == SPOOL_END_NRCPT && field_u64(&f, &nrcpt) < 0)
						r = -1;
				if (r < 0 || nrcpt != info->nrcpt || nrcpt == 0) {
					snprintf(err, errlen, "bad end record (%zu recipients)",
					    info->nrcpt);
					goto bad;
				}
				stage = 2;
			} else {
				snprintf(err, errlen, "unexpected record type %u", type);
				goto bad;
			}
		} else if (type == SPOOL_REC_STATE) {
			if (parse_state(info, &pl) < 0) {
				snprintf(err, errlen, "bad state record");
				goto bad;
			}
		}
		/* Other record types after END: a later revision's, skipped. */
	}
	if (stage < 2) {
		snprintf(err, errlen, "no end record");
		goto bad;
	}
	info->valid_len = SPOOL_BODY_OFF + body_len + len;
	info->nrcpt_total = info->nrcpt;
	*out = info;
	return SPOOL_PARSE_OK;
bad:
	spool_batch_info_free(info);
	return SPOOL_PARSE_BAD;
}

void
spool_batch_info_free(struct spool_batch_info *info)
{
	if (info == NULL)
		return;
	arena_free(&info->mem);
	free(info);
}

/*
 * spool_record.h - the on-disk format of a batch file (docs/spool.md).
 *
 *   "IMPSPOOL"                    8 bytes of magic
 *   HEAD record                   format version, body length, body CRC32C
 *   body                          the message, raw (dot-unstuffed CRLF lines)
 *   ENV record                    the envelope
 *   RCPT record x N               recipients, index 0 .. N-1 in order
 *   END record                    N: the base region is complete
 *   STATE record ...              appended later: per-recipient state, done
 *
 * A record is: u32 payload length (LE), u8 type, payload, u32 CRC32C of the
 * length, type and payload. A payload is a sequence of fields: u8 tag, u16
 * length (LE), value; integers are u64 LE. Unknown fields are skipped.
 *
 * Encoding helpers append to a strbuf; the parser reads one file image from
 * memory, copies what it keeps and never trusts a length. Pure functions,
 * thread-safe, no I/O, no logging.
 */
#ifndef IMPETUS_SPOOL_SPOOL_RECORD_H
#define IMPETUS_SPOOL_SPOOL_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "lib/strbuf.h"
#include "spool/spool.h"

#define SPOOL_MAGIC          "IMPSPOOL"
#define SPOOL_MAGIC_LEN      8
#define SPOOL_FORMAT_VERSION 1
#define SPOOL_REC_OVERHEAD   9          /* length, type, CRC */
#define SPOOL_HEAD_PAYLOAD   24         /* version, flags, body length, body CRC, reserved */
#define SPOOL_BODY_OFF       (SPOOL_MAGIC_LEN + SPOOL_REC_OVERHEAD + SPOOL_HEAD_PAYLOAD)
#define SPOOL_RECORD_MAX     (1u << 20) /* largest record payload accepted */
#define SPOOL_META_MAX       (64u << 20)/* largest meta region (after the body) read */

/* Record types. */
enum spool_rec_type {
	SPOOL_REC_HEAD = 'H',
	SPOOL_REC_ENV = 'E',
	SPOOL_REC_RCPT = 'R',
	SPOOL_REC_END = 'Z',
	SPOOL_REC_STATE = 'S',
};

/* Field tags, per record type. */
enum spool_env_tag {
	SPOOL_ENV_BATCH_ID = 1, SPOOL_ENV_MAIL_FROM = 2, SPOOL_ENV_ENVID = 3,
	SPOOL_ENV_RET = 4, SPOOL_ENV_FLAGS = 5, SPOOL_ENV_CONN_ID = 6, SPOOL_ENV_PEER = 7,
	SPOOL_ENV_HELO = 8, SPOOL_ENV_PROTOCOL = 9, SPOOL_ENV_RECV_SEC = 10,
	SPOOL_ENV_RECV_USEC = 11,
};
enum spool_rcpt_tag {
	SPOOL_RCPT_INDEX = 1, SPOOL_RCPT_ID = 2, SPOOL_RCPT_ADDR = 3, SPOOL_RCPT_ORCPT = 4,
	SPOOL_RCPT_NOTIFY = 5, SPOOL_RCPT_BINDING = 6,
};
enum spool_end_tag { SPOOL_END_NRCPT = 1 };
enum spool_state_tag {
	SPOOL_STATE_INDEX = 1, SPOOL_STATE_FLAGS = 2, SPOOL_STATE_RETRIES = 3,
	SPOOL_STATE_NEXT_SEC = 4, SPOOL_STATE_NEXT_USEC = 5, SPOOL_STATE_BINDING = 6,
};

/* Parse results. */
enum spool_parse_status {
	SPOOL_PARSE_BAD = -1,   /* corrupt: quarantine */
	SPOOL_PARSE_OK = 0,     /* every byte parsed */
	SPOOL_PARSE_TORN = 1,   /* usable; the bytes from info->valid_len on are a torn tail */
};

/* spool_crc32c: CRC32C (Castagnoli) of buf, continuing from crc (0 to start). */
uint32_t spool_crc32c(uint32_t crc, const void *buf, size_t len);

/* spool_record_head: the magic and HEAD record, SPOOL_BODY_OFF bytes. */
void spool_record_head(uint8_t out[SPOOL_BODY_OFF], uint64_t body_len, uint32_t body_crc);
/* spool_record_begin: start a record of type in sb; returns its offset for _end. */
size_t spool_record_begin(struct strbuf *sb, enum spool_rec_type type);
/* spool_record_end: fill in the length and append the CRC of the record at off. */
void spool_record_end(struct strbuf *sb, size_t off);
/* Fields of the record being built. Strings longer than 65535 bytes are cut. */
void spool_field_u64(struct strbuf *sb, unsigned tag, uint64_t v);
void spool_field_str(struct strbuf *sb, unsigned tag, const char *s);
void spool_field_bytes(struct strbuf *sb, unsigned tag, const void *p, size_t n);
/* spool_field_peer: an address (AF_INET / AF_INET6 only; others are not written). */
void spool_field_peer(struct strbuf *sb, unsigned tag, const struct sockaddr *sa);
/* spool_record_state: a complete STATE record for recipient index. */
void spool_record_state(struct strbuf *sb, unsigned index, const struct spool_rcpt_state *st);

/*
 * spool_record_parse: parse one whole file image. On OK or TORN *out is a
 * new info (every recipient, done ones included; free it with
 * spool_batch_info_free); on BAD *out is NULL and err says why.
 */
int spool_record_parse(const void *buf, size_t len, struct spool_batch_info **out,
    char *err, size_t errlen);
/*
 * spool_head_parse: check the magic and HEAD record at the start of a file
 * (len >= SPOOL_BODY_OFF). 0 with the body length and CRC, or -1 and err.
 */
int spool_head_parse(const void *buf, size_t len, uint64_t *body_len, uint32_t *body_crc,
    char *err, size_t errlen);
/*
 * spool_meta_parse: parse the region after the body (ENV .. END, STATE...)
 * of a file whose body is body_len bytes; the body itself is not checked.
 * Same results as spool_record_parse.
 */
int spool_meta_parse(const void *meta, size_t len, uint64_t body_len, uint32_t body_crc,
    struct spool_batch_info **out, char *err, size_t errlen);

#endif

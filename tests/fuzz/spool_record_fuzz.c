/*
 * spool_record_fuzz.c - libFuzzer target for the spool record reader
 * (src/spool/spool_record.c). Any file image must parse, parse with a torn
 * tail, or be refused, never crash, leak or read out of bounds. What parses
 * is checked for consistency: recipients indexed 0..n-1, strings
 * terminated, the valid length within the input. The meta-only path (what
 * spool_rcpt_done reads) gets the same bytes after the head.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/diag.h"
#include "spool/spool_record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_info(const struct spool_batch_info *info, size_t size)
{
	size_t i;

	IMP_ASSERT(info->nrcpt == info->nrcpt_total && info->nrcpt > 0);
	IMP_ASSERT(spool_id_valid(info->batch_id));
	IMP_ASSERT(strlen(info->mail_from) <= size && strlen(info->helo) <= size);
	for (i = 0; i < info->nrcpt; i++) {
		IMP_ASSERT(info->rcpts[i].index == i);
		IMP_ASSERT(spool_id_valid(info->rcpts[i].id));
		IMP_ASSERT(strlen(info->rcpts[i].rcpt) <= size);
		IMP_ASSERT(strlen(info->rcpts[i].state.binding) <= size);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct spool_batch_info *info = NULL;
	uint64_t body_len;
	uint32_t body_crc;
	char err[160];
	uint8_t *copy = malloc(size ? size : 1);     /* exact size: ASan sees overreads */
	int st;

	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	st = spool_record_parse(copy, size, &info, err, sizeof(err));
	IMP_ASSERT(st == SPOOL_PARSE_BAD || st == SPOOL_PARSE_OK || st == SPOOL_PARSE_TORN);
	IMP_ASSERT((st == SPOOL_PARSE_BAD) == (info == NULL));
	if (info != NULL) {
		check_info(info, size);
		IMP_ASSERT(info->valid_len <= size);
		IMP_ASSERT(st != SPOOL_PARSE_OK || info->valid_len == size);
	}
	spool_batch_info_free(info);

	/* The meta-only reader: the bytes after the head, body skipped. */
	if (spool_head_parse(copy, size, &body_len, &body_crc, err, sizeof(err)) == 0) {
		st = spool_meta_parse(copy + SPOOL_BODY_OFF, size - SPOOL_BODY_OFF, body_len,
		    body_crc, &info, err, sizeof(err));
		IMP_ASSERT((st == SPOOL_PARSE_BAD) == (info == NULL));
		if (info != NULL)
			check_info(info, size);
		spool_batch_info_free(info);
	}
	free(copy);
	return 0;
}

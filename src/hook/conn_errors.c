/*
 * conn_errors.c - names of the CONN_ERROR_* and CONN_ACTION_* flags.
 *
 * conn_error_name and conn_error_render (impetus/conn_errors.h). Pure
 * functions, safe on any thread.
 */
#include <impetus/conn_errors.h>

#include <stdio.h>
#include <string.h>

static const struct {
	int flag;
	const char *name;
} conn_flag_names[] = {
	{ CONN_ERROR_MX_LOOKUP_PENDING, "CONN_ERROR_MX_LOOKUP_PENDING" },
	{ CONN_ERROR_MX_LOOKUP_FAILED, "CONN_ERROR_MX_LOOKUP_FAILED" },
	{ CONN_ERROR_SMTP_NULL_MX, "CONN_ERROR_SMTP_NULL_MX" },
	{ CONN_ERROR_NO_MXS_REACHABLE, "CONN_ERROR_NO_MXS_REACHABLE" },
	{ CONN_ERROR_PROHIBITED_IP, "CONN_ERROR_PROHIBITED_IP" },
	{ CONN_ERROR_HOST_MAX_REACHED, "CONN_ERROR_HOST_MAX_REACHED" },
	{ CONN_ERROR_SOCKET, "CONN_ERROR_SOCKET" },
	{ CONN_ERROR_IOCTL, "CONN_ERROR_IOCTL" },
	{ CONN_ERROR_BIND, "CONN_ERROR_BIND" },
	{ CONN_ERROR_CONNECT, "CONN_ERROR_CONNECT" },
	{ CONN_ERROR_CONNECT_NETWORK, "CONN_ERROR_CONNECT_NETWORK" },
	{ CONN_ERROR_CONNECT_TIMEOUT, "CONN_ERROR_CONNECT_TIMEOUT" },
	{ CONN_ACTION_REQUEUE1, "CONN_ACTION_REQUEUE1" },
	{ CONN_ACTION_PURGE_DOMAIN, "CONN_ACTION_PURGE_DOMAIN" },
};

const char *
conn_error_name(int flag)
{
	for (size_t i = 0; i < sizeof(conn_flag_names) / sizeof(conn_flag_names[0]); i++)
		if (conn_flag_names[i].flag == flag)
			return conn_flag_names[i].name;
	return NULL;
}

size_t
conn_error_render(int err, char *buf, size_t len)
{
	unsigned mask = (unsigned)err, known = 0;
	size_t need = 0;
	char unknown[16];

	if (len > 0)
		buf[0] = '\0';
#define EMIT(text)                                                            \
	do {                                                                  \
		const char *t_ = (text);                                      \
		size_t tl_ = strlen(t_);                                      \
		if (need > 0) {                                               \
			if (need + 1 < len) {                                 \
				buf[need] = '|';                              \
				buf[need + 1] = '\0';                         \
			}                                                     \
			need++;                                               \
		}                                                             \
		if (need < len) {                                             \
			size_t room_ = len - need - 1;                        \
			size_t n_ = tl_ < room_ ? tl_ : room_;                \
			memcpy(buf + need, t_, n_);                           \
			buf[need + n_] = '\0';                                \
		}                                                             \
		need += tl_;                                                  \
	} while (0)

	/* The table lists causes before actions, each in bit order. */
	for (size_t i = 0; i < sizeof(conn_flag_names) / sizeof(conn_flag_names[0]); i++) {
		known |= (unsigned)conn_flag_names[i].flag;
		if (mask & (unsigned)conn_flag_names[i].flag)
			EMIT(conn_flag_names[i].name);
	}
	for (int bit = 0; bit < 32; bit++) {
		unsigned f = 1u << bit;
		if ((mask & f) && !(known & f)) {
			snprintf(unknown, sizeof(unknown), "0x%x", f);
			EMIT(unknown);
		}
	}
	if (mask == 0)
		EMIT("0");
#undef EMIT
	return need;
}

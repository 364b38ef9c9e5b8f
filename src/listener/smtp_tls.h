/*
 * smtp_tls.h - TLS for the SMTP server (STARTTLS, RFC 3207) with OpenSSL 3.
 *
 *   smtp_tls_check_certificate / _key / _ca  option checks: the PEM file
 *                           loads (TLS_Certificate, TLS_Key, TLS_CA)
 *   smtp_tls_ctx_get        the SSL_CTX of a (certificate, key, CA) set for
 *                           a configuration generation: built on first use,
 *                           cached per generation, one per distinct set
 *   smtp_tls_error_text     the last OpenSSL errors as one line (clears them)
 *
 * Ownership: smtp_tls_ctx_get returns a context with a reference for the
 * caller (SSL_CTX_free it); the cache keeps its own until a newer
 * generation asks. Nothing here logs; errors come back as text.
 */
#ifndef IMPETUS_LISTENER_SMTP_TLS_H
#define IMPETUS_LISTENER_SMTP_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

int smtp_tls_check_certificate(const char *path, char *err, size_t errlen);
int smtp_tls_check_key(const char *path, char *err, size_t errlen);
int smtp_tls_check_ca(const char *path, char *err, size_t errlen);

/*
 * smtp_tls_ctx_get: key NULL means the key is in the certificate file; ca
 * may be NULL (no client certificates asked for). Returns the context, or
 * NULL with err (a failure is cached too: *first_error is 1 only for the
 * call that met it, so the caller logs it once). Any thread.
 */
SSL_CTX *smtp_tls_ctx_get(uint64_t gen, const char *cert, const char *key, const char *ca,
                          int *first_error, char *err, size_t errlen);

void smtp_tls_error_text(char *buf, size_t len);

#endif

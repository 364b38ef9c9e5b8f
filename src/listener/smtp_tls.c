/*
 * smtp_tls.c - OpenSSL contexts for STARTTLS, and checks of the PEM files.
 *
 * See smtp_tls.h. A context is built the first time a session of a
 * configuration generation needs it (one per distinct certificate, key and
 * CA set) and cached under a mutex; when a newer generation asks, the older
 * entries drop the cache's reference (SSL objects of running sessions hold
 * their own). Contexts allow TLS 1.2 and later, refuse renegotiation, and
 * ask for a client certificate only when TLS_CA is set, never requiring one.
 */
#include "listener/smtp_tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/xalloc.h"

struct tls_cache_entry {
	uint64_t gen;                   /* configuration generation */
	char *cert, *key, *ca;          /* paths, owned; key and ca may be NULL */
	SSL_CTX *ctx;                   /* one reference; NULL when building failed */
	char *error;                    /* why it failed, owned */
	struct tls_cache_entry *next;
};

static int verify_accept(int preverify_ok, X509_STORE_CTX *x);
static SSL_CTX *ctx_build(const char *cert, const char *key, const char *ca, char *err,
                          size_t errlen);

static pthread_mutex_t tls_cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tls_cache_entry *tls_cache;

void
smtp_tls_error_text(char *buf, size_t len)
{
	unsigned long e;
	size_t used = 0;

	buf[0] = '\0';
	while ((e = ERR_get_error()) != 0 && used + 2 < len) {
		char one[256];
		ERR_error_string_n(e, one, sizeof(one));
		int n = snprintf(buf + used, len - used, "%s%s", used ? "; " : "", one);
		if (n < 0)
			break;
		used += (size_t)n;
	}
	ERR_clear_error();
	if (buf[0] == '\0')
		snprintf(buf, len, "unknown TLS error");
}

static BIO *
open_pem(const char *path, char *err, size_t errlen)
{
	BIO *b = BIO_new_file(path, "r");

	if (b == NULL) {
		int e = errno;
		ERR_clear_error();
		snprintf(err, errlen, "cannot open \"%s\": %s", path, strerror(e ? e : ENOENT));
	}
	return b;
}

int
smtp_tls_check_certificate(const char *path, char *err, size_t errlen)
{
	BIO *b = open_pem(path, err, errlen);
	X509 *x;

	if (b == NULL)
		return -1;
	x = PEM_read_bio_X509(b, NULL, NULL, NULL);
	BIO_free(b);
	if (x == NULL) {
		ERR_clear_error();
		snprintf(err, errlen, "\"%s\" holds no PEM certificate", path);
		return -1;
	}
	X509_free(x);
	return 0;
}

int
smtp_tls_check_key(const char *path, char *err, size_t errlen)
{
	BIO *b = open_pem(path, err, errlen);
	EVP_PKEY *k;

	if (b == NULL)
		return -1;
	k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
	BIO_free(b);
	if (k == NULL) {
		ERR_clear_error();
		snprintf(err, errlen, "\"%s\" holds no (unencrypted) PEM private key", path);
		return -1;
	}
	EVP_PKEY_free(k);
	return 0;
}

int
smtp_tls_check_ca(const char *path, char *err, size_t errlen)
{
	return smtp_tls_check_certificate(path, err, errlen);
}

/* Client certificates are asked for, never required: accept whatever comes. */
static int
verify_accept(int preverify_ok, X509_STORE_CTX *x)
{
	return 1;
}

static SSL_CTX *
ctx_build(const char *cert, const char *key, const char *ca, char *err, size_t errlen)
{
	static const unsigned char sid_ctx[] = "impetus";
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	char why[512];

	if (ctx == NULL)
		goto ssl_error;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
	                    SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		smtp_tls_error_text(why, sizeof(why));
		snprintf(err, errlen, "TLS_Certificate \"%s\": %s", cert, why);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key ? key : cert, SSL_FILETYPE_PEM) != 1) {
		smtp_tls_error_text(why, sizeof(why));
		snprintf(err, errlen, "TLS_Key \"%s\": %s", key ? key : cert, why);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ERR_clear_error();
		snprintf(err, errlen, "TLS_Key \"%s\" does not match TLS_Certificate \"%s\"",
		         key ? key : cert, cert);
		goto fail;
	}
	if (ca != NULL) {
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
		if (names == NULL || SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
			if (names != NULL)
				sk_X509_NAME_pop_free(names, X509_NAME_free);
			smtp_tls_error_text(why, sizeof(why));
			snprintf(err, errlen, "TLS_CA \"%s\": %s", ca, why);
			goto fail;
		}
		SSL_CTX_set_client_CA_list(ctx, names);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_accept);
	}
	return ctx;
ssl_error:
	smtp_tls_error_text(why, sizeof(why));
	snprintf(err, errlen, "TLS context: %s", why);
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

static int
same_path(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static void
entry_free(struct tls_cache_entry *e)
{
	SSL_CTX_free(e->ctx);
	free(e->cert);
	free(e->key);
	free(e->ca);
	free(e->error);
	free(e);
}

SSL_CTX *
smtp_tls_ctx_get(uint64_t gen, const char *cert, const char *key, const char *ca,
                 int *first_error, char *err, size_t errlen)
{
	struct tls_cache_entry *e, **pp;
	SSL_CTX *ctx = NULL;

	*first_error = 0;
	pthread_mutex_lock(&tls_cache_lock);
	for (pp = &tls_cache; (e = *pp) != NULL;) {
		if (e->gen < gen) {
			*pp = e->next;
			entry_free(e);
			continue;
		}
		pp = &e->next;
	}
	for (e = tls_cache; e != NULL; e = e->next)
		if (e->gen == gen && strcmp(e->cert, cert) == 0 && same_path(e->key, key) &&
		    same_path(e->ca, ca))
			break;
	if (e == NULL) {
		char why[1024];
		e = xcalloc(1, sizeof(*e));
		e->gen = gen;
		e->cert = xstrdup(cert);
		e->key = key ? xstrdup(key) : NULL;
		e->ca = ca ? xstrdup(ca) : NULL;
		e->ctx = ctx_build(cert, key, ca, why, sizeof(why));
		if (e->ctx == NULL) {
			e->error = xstrdup(why);
			*first_error = 1;
		}
		e->next = tls_cache;
		tls_cache = e;
	}
	if (e->ctx != NULL) {
		SSL_CTX_up_ref(e->ctx);
		ctx = e->ctx;
	} else {
		snprintf(err, errlen, "%s", e->error);
	}
	pthread_mutex_unlock(&tls_cache_lock);
	return ctx;
}

/*
 * smtp_auth.c - SMTP AUTH payloads, users tables and failure accounting.
 *
 * See smtp_auth.h for the functions. Ownership: users tables are
 * reference-counted (the cache holds one reference per generation, every
 * session and verification job one more); the peer failure table and the
 * verification pool are process-wide and live until exit. Nothing here
 * logs: callers do, and never with a password.
 */
#include "listener/smtp_auth.h"

#include <crypt.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "event/tpool.h"
#include "lib/strbuf.h"
#include "lib/netaddr.h"
#include "lib/xalloc.h"

#define AUTH_USERS_FILE_MAX (16u << 20) /* bytes of a users file we agree to read */
#define AUTH_POOL_THREADS 2             /* workers running crypt_r */
#define PEER_FAIL_BUCKETS 1024          /* buckets of the failure table */
#define PEER_FAIL_MAX_ENTRIES 100000    /* addresses tracked at most */

struct auth_user {
	char *name;                     /* owned */
	char *hash;                     /* crypt(3) string, owned */
};

struct smtp_auth_users {
	atomic_int refs;
	struct auth_user *users;        /* sorted by name */
	size_t n;
};

struct users_cache_entry {
	uint64_t gen;                   /* configuration generation */
	char *path;                     /* owned */
	struct smtp_auth_users *users;  /* one reference; NULL when loading failed */
	char *error;                    /* why loading failed, owned */
	struct users_cache_entry *next;
};

struct verify_job {
	struct smtp_auth_users *users;  /* referenced */
	char user[SMTP_AUTH_FIELD_MAX + 1];
	char pass[SMTP_AUTH_FIELD_MAX + 1]; /* wiped after use */
	int ok;                         /* the verdict */
	smtp_auth_verify_fn done;
	void *arg;
};

struct peer_fail {
	unsigned char addr[16];         /* IPv4 in the first 4 bytes */
	int family;
	long failures;                  /* in the current window */
	time_t window_start;            /* seconds since the epoch */
	struct peer_fail *next;
};

static int user_cmp(const void *a, const void *b);
static int ct_equal(const char *a, const char *b);
static void verify_work(void *arg);
static void verify_done(void *arg);

/* A valid SHA-512 crypt hash of a random password: unknown users are
 * checked against it so that they cost as much as known ones. */
static const char dummy_hash[] =
	"$6$impetusdummysal$bei2Ob/3dRfLgsoaYtwZgrp0rtsKaTvsve8ebcyeflDSgVzutDBXrv2FIvLT5ReSwR6lGcdhcJAezQWQ1yhqz1";

static pthread_mutex_t users_cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct users_cache_entry *users_cache;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static struct tpool *verify_pool;
static pthread_mutex_t peer_lock = PTHREAD_MUTEX_INITIALIZER;
static struct peer_fail *peer_table[PEER_FAIL_BUCKETS];
static size_t peer_entries;

/* -------------------------------------------------------------- parsers */

int
smtp_auth_mech_parse(const char *arg, size_t len, enum smtp_auth_mech *mech, const char **ir,
                     size_t *irlen)
{
	size_t n = 0;

	*mech = SMTP_AUTH_MECH_UNKNOWN;
	*ir = NULL;
	*irlen = 0;
	while (n < len && arg[n] != ' ')
		n++;
	if (n == 0)
		return -1;
	if (n == 5 && strncasecmp(arg, "PLAIN", 5) == 0)
		*mech = SMTP_AUTH_MECH_PLAIN;
	else if (n == 5 && strncasecmp(arg, "LOGIN", 5) == 0)
		*mech = SMTP_AUTH_MECH_LOGIN;
	if (n == len)
		return 0;
	size_t start = n + 1;
	if (start >= len)
		return -1;
	for (size_t i = start; i < len; i++)
		if (arg[i] == ' ')
			return -1;
	*ir = arg + start;
	*irlen = len - start;
	return 0;
}

static int
b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int
smtp_auth_b64_decode(const char *in, size_t len, unsigned char *out, size_t outmax,
                     size_t *outlen)
{
	size_t o = 0;

	*outlen = 0;
	if (len % 4 != 0)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		int v[4], pad = 0;
		for (int k = 0; k < 4; k++) {
			unsigned char c = (unsigned char)in[i + k];
			if (c == '=') {
				/* Padding only in the last quantum, only at its end. */
				if (i + 4 != len || k < 2)
					return -1;
				pad++;
				v[k] = 0;
				continue;
			}
			if (pad > 0 || (v[k] = b64_value(c)) < 0)
				return -1;
		}
		unsigned long q = ((unsigned long)v[0] << 18) | ((unsigned long)v[1] << 12) |
		                  ((unsigned long)v[2] << 6) | (unsigned long)v[3];
		size_t take = 3 - (size_t)pad;
		if (o + take > outmax)
			return -1;
		out[o++] = (unsigned char)(q >> 16);
		if (take > 1)
			out[o++] = (unsigned char)(q >> 8);
		if (take > 2)
			out[o++] = (unsigned char)q;
	}
	*outlen = o;
	return 0;
}

void
smtp_auth_creds_wipe(struct smtp_auth_creds *c)
{
	explicit_bzero(c, sizeof(*c));
}

int
smtp_auth_plain_decode(const unsigned char *msg, size_t len, struct smtp_auth_creds *out)
{
	const unsigned char *nul1, *nul2;
	size_t zlen, clen, plen;

	memset(out, 0, sizeof(*out));
	nul1 = memchr(msg, '\0', len);
	if (nul1 == NULL)
		return -1;
	nul2 = memchr(nul1 + 1, '\0', len - (size_t)(nul1 + 1 - msg));
	if (nul2 == NULL)
		return -1;
	zlen = (size_t)(nul1 - msg);
	clen = (size_t)(nul2 - nul1 - 1);
	plen = len - (size_t)(nul2 + 1 - msg);
	if (memchr(nul2 + 1, '\0', plen) != NULL)
		return -1;
	if (zlen > SMTP_AUTH_FIELD_MAX || clen == 0 || clen > SMTP_AUTH_FIELD_MAX || plen == 0 ||
	    plen > SMTP_AUTH_FIELD_MAX)
		return -1;
	memcpy(out->authzid, msg, zlen);
	memcpy(out->user, nul1 + 1, clen);
	memcpy(out->pass, nul2 + 1, plen);
	return 0;
}

/* ---------------------------------------------------------------- users */

static int
user_cmp(const void *a, const void *b)
{
	return strcmp(((const struct auth_user *)a)->name, ((const struct auth_user *)b)->name);
}

static void
users_free(struct smtp_auth_users *u)
{
	for (size_t i = 0; i < u->n; i++) {
		free(u->users[i].name);
		explicit_bzero(u->users[i].hash, strlen(u->users[i].hash));
		free(u->users[i].hash);
	}
	free(u->users);
	free(u);
}

struct smtp_auth_users *
smtp_auth_users_parse(const char *text, size_t len, char *err, size_t errlen)
{
	struct smtp_auth_users *u = xcalloc(1, sizeof(*u));
	size_t cap = 0, pos = 0;
	int lineno = 0;

	atomic_init(&u->refs, 1);
	while (pos < len) {
		const char *line = text + pos, *nl = memchr(line, '\n', len - pos);
		size_t llen = nl ? (size_t)(nl - line) : len - pos;
		pos += llen + (nl ? 1 : 0);
		lineno++;
		if (llen > 0 && line[llen - 1] == '\r')
			llen--;
		if (llen == 0 || line[0] == '#')
			continue;
		const char *colon = memchr(line, ':', llen);
		if (colon == NULL) {
			snprintf(err, errlen, "line %d: expected user:hash", lineno);
			goto fail;
		}
		size_t ulen = (size_t)(colon - line), hlen = llen - ulen - 1;
		if (ulen == 0 || ulen > SMTP_AUTH_FIELD_MAX) {
			snprintf(err, errlen, "line %d: the user name must be 1 to %d octets", lineno,
			         SMTP_AUTH_FIELD_MAX);
			goto fail;
		}
		for (size_t i = 0; i < llen; i++)
			if (line[i] == '\0' || isspace((unsigned char)line[i]) ||
			    (i > ulen && line[i] == ':')) {
				snprintf(err, errlen, "line %d: white space, NUL or a second ':'", lineno);
				goto fail;
			}
		char *hash = xstrndup(colon + 1, hlen);
		if (hlen == 0 || hash[0] != '$' || crypt_checksalt(hash) != CRYPT_SALT_OK) {
			snprintf(err, errlen, "line %d: not a password hash that crypt(3) supports "
			         "(use openssl passwd -6 or mkpasswd)", lineno);
			free(hash);
			goto fail;
		}
		if (u->n == cap) {
			cap = cap ? cap * 2 : 16;
			u->users = xreallocarray(u->users, cap, sizeof(*u->users));
		}
		u->users[u->n].name = xstrndup(line, ulen);
		u->users[u->n].hash = hash;
		u->n++;
	}
	if (u->n > 1)
		qsort(u->users, u->n, sizeof(*u->users), user_cmp);
	for (size_t i = 1; i < u->n; i++)
		if (strcmp(u->users[i - 1].name, u->users[i].name) == 0) {
			snprintf(err, errlen, "user \"%s\" is listed twice", u->users[i].name);
			goto fail;
		}
	return u;
fail:
	users_free(u);
	return NULL;
}

struct smtp_auth_users *
smtp_auth_users_load(const char *path, char *err, size_t errlen)
{
	struct strbuf sb = STRBUF_INIT;
	char buf[8192], why[256];
	size_t n;
	FILE *f = fopen(path, "re");

	if (f == NULL) {
		snprintf(err, errlen, "cannot open \"%s\": %s", path, strerror(errno));
		return NULL;
	}
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
		strbuf_append(&sb, buf, n);
		if (sb.len > AUTH_USERS_FILE_MAX)
			break;
	}
	int bad = ferror(f), e = errno;
	fclose(f);
	explicit_bzero(buf, sizeof(buf));
	if (bad || sb.len > AUTH_USERS_FILE_MAX) {
		snprintf(err, errlen, "cannot read \"%s\": %s", path,
		         bad ? strerror(e) : "file too large");
		strbuf_free(&sb);
		return NULL;
	}
	struct smtp_auth_users *u = smtp_auth_users_parse(sb.data ? sb.data : "", sb.len, why,
	                                                  sizeof(why));
	if (u == NULL)
		snprintf(err, errlen, "\"%s\" %s", path, why);
	if (sb.data != NULL)
		explicit_bzero(sb.data, sb.len);
	strbuf_free(&sb);
	return u;
}

int
smtp_auth_users_check_file(const char *path, char *err, size_t errlen)
{
	struct smtp_auth_users *u = smtp_auth_users_load(path, err, errlen);

	if (u == NULL)
		return -1;
	smtp_auth_users_unref(u);
	return 0;
}

size_t
smtp_auth_users_count(const struct smtp_auth_users *u)
{
	return u->n;
}

struct smtp_auth_users *
smtp_auth_users_ref(struct smtp_auth_users *u)
{
	atomic_fetch_add(&u->refs, 1);
	return u;
}

void
smtp_auth_users_unref(struct smtp_auth_users *u)
{
	if (u != NULL && atomic_fetch_sub(&u->refs, 1) == 1)
		users_free(u);
}

struct smtp_auth_users *
smtp_auth_users_get(uint64_t gen, const char *path, int *first_error, char *err, size_t errlen)
{
	struct users_cache_entry *e, **pp;
	struct smtp_auth_users *u = NULL;

	*first_error = 0;
	pthread_mutex_lock(&users_cache_lock);
	/* Entries of older generations go: their sessions hold their own references. */
	for (pp = &users_cache; (e = *pp) != NULL;) {
		if (e->gen < gen) {
			*pp = e->next;
			smtp_auth_users_unref(e->users);
			free(e->path);
			free(e->error);
			free(e);
			continue;
		}
		pp = &e->next;
	}
	for (e = users_cache; e != NULL; e = e->next)
		if (e->gen == gen && strcmp(e->path, path) == 0)
			break;
	if (e == NULL) {
		char why[512];
		e = xcalloc(1, sizeof(*e));
		e->gen = gen;
		e->path = xstrdup(path);
		e->users = smtp_auth_users_load(path, why, sizeof(why));
		if (e->users == NULL) {
			e->error = xstrdup(why);
			*first_error = 1;
		}
		e->next = users_cache;
		users_cache = e;
	}
	if (e->users != NULL)
		u = smtp_auth_users_ref(e->users);
	else
		snprintf(err, errlen, "%s", e->error);
	pthread_mutex_unlock(&users_cache_lock);
	return u;
}

/* Constant-time equality of two NUL-terminated strings (their lengths are not secret). */
static int
ct_equal(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned char diff = 0;

	if (la != lb)
		return 0;
	for (size_t i = 0; i < la; i++)
		diff |= (unsigned char)(a[i] ^ b[i]);
	return diff == 0;
}

int
smtp_auth_users_verify(const struct smtp_auth_users *u, const char *user, const char *pass)
{
	struct auth_user key = { (char *)user, NULL };
	const struct auth_user *found = u->n ? bsearch(&key, u->users, u->n, sizeof(*u->users),
	                                               user_cmp) : NULL;
	const char *hash = found ? found->hash : dummy_hash;
	struct crypt_data *cd = xcalloc(1, sizeof(*cd));
	const char *out = crypt_r(pass, hash, cd);
	int ok = found != NULL && out != NULL && out[0] != '*' && ct_equal(out, hash);

	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return ok;
}

static void
pool_start(void)
{
	char err[256];

	verify_pool = tpool_start(AUTH_POOL_THREADS, err, sizeof(err));
}

static void
verify_work(void *arg)
{
	struct verify_job *j = arg;

	j->ok = smtp_auth_users_verify(j->users, j->user, j->pass);
	explicit_bzero(j->pass, sizeof(j->pass));
}

static void
verify_done(void *arg)
{
	struct verify_job *j = arg;

	j->done(j->ok, j->user, j->arg);
	smtp_auth_users_unref(j->users);
	free(j);
}

void
smtp_auth_verify_async(struct smtp_auth_users *u, const char *user, const char *pass,
                       struct loop *origin, smtp_auth_verify_fn done, void *arg)
{
	struct verify_job *j = xcalloc(1, sizeof(*j));

	j->users = smtp_auth_users_ref(u);
	snprintf(j->user, sizeof(j->user), "%s", user);
	snprintf(j->pass, sizeof(j->pass), "%s", pass);
	j->done = done;
	j->arg = arg;
	pthread_once(&pool_once, pool_start);
	if (verify_pool == NULL) {
		/* No worker thread to be had: check here rather than not at all. */
		verify_work(j);
		verify_done(j);
		return;
	}
	tpool_submit(verify_pool, verify_work, verify_done, j, origin);
}

/* ------------------------------------------------------ failures per client */


/* The bucket of key, with its expired entries dropped; caller holds peer_lock. */
static struct peer_fail **
peer_bucket(const unsigned char key[16], long window_s, time_t now)
{
	uint32_t h = 2166136261u;

	for (int i = 0; i < 16; i++)
		h = (h ^ key[i]) * 16777619u;
	struct peer_fail **head = &peer_table[h % PEER_FAIL_BUCKETS], **pp = head, *p;
	while ((p = *pp) != NULL) {
		if (now - p->window_start >= window_s) {
			*pp = p->next;
			free(p);
			peer_entries--;
			continue;
		}
		pp = &p->next;
	}
	return head;
}

long
smtp_auth_peer_failures(const struct sockaddr *addr, long window_s, time_t now)
{
	unsigned char key[16];
	int family;
	long n = 0;

	if (sockaddr_ip_key(addr, key, &family) < 0)
		return 0;
	pthread_mutex_lock(&peer_lock);
	for (struct peer_fail *p = *peer_bucket(key, window_s, now); p != NULL; p = p->next)
		if (p->family == family && memcmp(p->addr, key, 16) == 0)
			n = p->failures;
	pthread_mutex_unlock(&peer_lock);
	return n;
}

void
smtp_auth_peer_fail(const struct sockaddr *addr, long window_s, time_t now)
{
	unsigned char key[16];
	int family;
	struct peer_fail *p, **head;

	if (sockaddr_ip_key(addr, key, &family) < 0)
		return;
	pthread_mutex_lock(&peer_lock);
	head = peer_bucket(key, window_s, now);
	for (p = *head; p != NULL; p = p->next)
		if (p->family == family && memcmp(p->addr, key, 16) == 0)
			break;
	if (p == NULL && peer_entries < PEER_FAIL_MAX_ENTRIES) {
		p = xcalloc(1, sizeof(*p));
		memcpy(p->addr, key, 16);
		p->family = family;
		p->window_start = now;
		p->next = *head;
		*head = p;
		peer_entries++;
	}
	if (p != NULL)
		p->failures++;
	pthread_mutex_unlock(&peer_lock);
}

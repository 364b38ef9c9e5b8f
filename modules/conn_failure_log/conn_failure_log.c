/*
 * conn_failure_log.c - one line per failed outbound connection attempt.
 *
 *     conn_failure_log { path = "/var/log/impetus/connfail.log" }
 *     conn_failure_log "second" { path = "/tmp/other.log"  log_successes = true }
 *
 * Registers on the core hook log_client_connection_failure (last, after any
 * provider registered first) and appends to `path`, for every failure:
 *
 *     time@domain@binding@peer@flags
 *     1764070000@d1.test@default@127.0.0.2:25@CONN_ERROR_CONNECT|CONN_ACTION_REQUEUE1
 *
 * time: Unix seconds of the event; domain: the destination domain; binding:
 * the binding's name ("" for a slot no configuration knows); peer: the
 * address tried, "ip:port" or "[ip6]:port", "" when no address was chosen
 * (DNS pending or failed, null MX, every host prohibited or saturated);
 * flags: the cause and the action, as conn_error_render writes them.
 *
 * With `log_successes = true` (default false) the instance also registers on
 * log_client_connection_success and writes one line per established
 * connection in the same layout, with the flags field `SUCCESS`:
 *
 *     1764070000@d1.test@default@127.0.0.2:25@SUCCESS
 *
 * Successes are not counted by the console verbs below (they count failures).
 *
 * It also counts failures per domain for the console:
 *     conn_failure_log counts     one line per domain: "domain count", sorted
 *     conn_failure_log reset      forget the counts
 * A reload keeps the counts: the new instance shares the old one's table.
 *
 * This is a simple synchronous writer, unlike the core log writers (which
 * buffer and never block a loop thread): each line is one write(2) to an
 * O_APPEND descriptor, made under a mutex, on the thread that fired the
 * hook. Connection failures are rare next to deliveries, and the line is
 * on disk (in the page cache) when the hook returns; a slow disk, though,
 * slows the event loop that reports the failure. There is no reopen: a
 * reload opens the file again (rotate by renaming, then reload).
 *
 * Functions: the descriptor (init, reload, fini, two verbs) and the two hook
 * providers; everything else is static. Ownership: an instance owns its
 * descriptor, its path and a reference on the shared counts table, all
 * released by fini. Errors: init/reload fail with a message when path is
 * unset or cannot be opened; a failed write is reported once to the
 * paniclog, then again only after a write succeeded.
 *
 * Built against include/impetus/ alone, like every in-tree module.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <impetus/binding.h>
#include <impetus/config.h>
#include <impetus/conn_errors.h>
#include <impetus/hooks/core/log_client_connection_failure.h>
#include <impetus/hooks/core/log_client_connection_success.h>
#include <impetus/message.h>
#include <impetus/module.h>

#define CFL_LINE_MAX 1024           /* bytes of one log line, newline included */
#define CFL_BUCKETS_MIN 64          /* initial hash buckets of the counts table */

/* One domain's count. */
struct cfl_count {
	char *domain;                   /* owned */
	uint64_t n;                     /* failures since the start or the last reset */
	struct cfl_count *next;         /* same bucket */
};

/* Per-domain counts, shared by an instance and its successors across reloads. */
struct cfl_counts {
	pthread_mutex_t lock;           /* guards everything below */
	atomic_int refs;                /* instances holding it */
	struct cfl_count **buckets;
	size_t nbuckets;                /* a power of two */
	size_t n;                       /* domains */
};

/* One instance: the hook's closure. */
struct cfl {
	struct imp_module_instance *inst;
	char *path;                     /* the log file, owned */
	int fd;                         /* O_APPEND */
	pthread_mutex_t write_lock;     /* one line at a time */
	int write_failing;              /* a failure was reported; reset by a success */
	struct cfl_counts *counts;      /* a reference */
};

static int cfl_init(struct imp_module_instance *inst, char *err, size_t errlen);
static int cfl_reload(struct imp_module_instance *inst, struct imp_module_instance *old,
                      char *err, size_t errlen);
static void cfl_fini(struct imp_module_instance *inst);
static int cfl_start(struct imp_module_instance *inst, struct cfl_counts *counts, char *err,
                     size_t errlen);
static void cfl_on_failure(void *closure, struct sockaddr *addr, int err, domain_record *dr,
                           int binding_slot, struct timeval *now);
static void cfl_on_success(void *closure, struct sockaddr *addr, domain_record *dr,
                           int binding_slot, struct timeval *now);
static void cfl_log(struct cfl *cfl, const struct sockaddr *addr, const char *flags,
                    domain_record *dr, int binding_slot, const struct timeval *now);
static int cfl_verb_counts(struct imp_module_instance *inst, int argc, char **argv,
                           struct imp_console_out *out);
static int cfl_verb_reset(struct imp_module_instance *inst, int argc, char **argv,
                          struct imp_console_out *out);
static struct cfl_counts *counts_new(void);
static struct cfl_counts *counts_ref(struct cfl_counts *c);
static void counts_unref(struct cfl_counts *c);
static void counts_clear(struct cfl_counts *c);
static void counts_add(struct cfl_counts *c, const char *domain);
static uint32_t domain_hash(const char *s);
static int count_cmp(const void *x, const void *y);
static int write_line(struct cfl *cfl, const char *line, size_t len);

static struct conf_option cfl_opt_path = {
	.name = "path", .type = CONF_T_STRING,
	.help = "file that receives one line per failed outbound connection (required)",
};

static struct conf_option cfl_opt_log_successes = {
	.name = "log_successes", .type = CONF_T_BOOL, .def = "false",
	.help = "also write one line (flags SUCCESS) per established outbound connection",
};

static struct conf_option *const cfl_options[] = { &cfl_opt_path, &cfl_opt_log_successes, NULL };

static const struct imp_console_verb cfl_verbs[] = {
	{ "counts", "failures per domain since the start or the last reset", cfl_verb_counts },
	{ "reset", "forget the per-domain counts", cfl_verb_reset },
	{ NULL, NULL, NULL },
};

IMP_MODULE_DEFINE = {
	.abi_version = IMP_MODULE_ABI_VERSION,
	.name = "conn_failure_log",
	.description = "one line per failed outbound connection, and per-domain counts",
	.options = cfl_options,
	.init = cfl_init,
	.reload = cfl_reload,
	.fini = cfl_fini,
	.verbs = cfl_verbs,
};

/* The counts table. */

static struct cfl_counts *
counts_new(void)
{
	struct cfl_counts *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->buckets = calloc(CFL_BUCKETS_MIN, sizeof(*c->buckets));
	if (c->buckets == NULL) {
		free(c);
		return NULL;
	}
	c->nbuckets = CFL_BUCKETS_MIN;
	pthread_mutex_init(&c->lock, NULL);
	atomic_init(&c->refs, 1);
	return c;
}

static struct cfl_counts *
counts_ref(struct cfl_counts *c)
{
	atomic_fetch_add(&c->refs, 1);
	return c;
}

static void
counts_unref(struct cfl_counts *c)
{
	if (c == NULL || atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	counts_clear(c);
	free(c->buckets);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* Drop every entry (caller holds the lock, or is the last user). */
static void
counts_clear(struct cfl_counts *c)
{
	for (size_t i = 0; i < c->nbuckets; i++) {
		struct cfl_count *e = c->buckets[i], *next;
		for (; e != NULL; e = next) {
			next = e->next;
			free(e->domain);
			free(e);
		}
		c->buckets[i] = NULL;
	}
	c->n = 0;
}

static uint32_t
domain_hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

/* One more failure for domain; on allocation failure the event is not counted. */
static void
counts_add(struct cfl_counts *c, const char *domain)
{
	struct cfl_count *e;
	size_t i;

	pthread_mutex_lock(&c->lock);
	i = domain_hash(domain) & (c->nbuckets - 1);
	for (e = c->buckets[i]; e != NULL; e = e->next)
		if (strcmp(e->domain, domain) == 0)
			break;
	if (e != NULL) {
		e->n++;
		pthread_mutex_unlock(&c->lock);
		return;
	}
	if (c->n >= c->nbuckets) {
		/* Grow to keep chains short; keep the old table if memory is short. */
		size_t nb = c->nbuckets * 2;
		struct cfl_count **fresh = calloc(nb, sizeof(*fresh));
		if (fresh != NULL) {
			for (size_t j = 0; j < c->nbuckets; j++) {
				struct cfl_count *x = c->buckets[j], *next;
				for (; x != NULL; x = next) {
					next = x->next;
					size_t k = domain_hash(x->domain) & (nb - 1);
					x->next = fresh[k];
					fresh[k] = x;
				}
			}
			free(c->buckets);
			c->buckets = fresh;
			c->nbuckets = nb;
			i = domain_hash(domain) & (nb - 1);
		}
	}
	if ((e = calloc(1, sizeof(*e))) != NULL && (e->domain = strdup(domain)) != NULL) {
		e->n = 1;
		e->next = c->buckets[i];
		c->buckets[i] = e;
		c->n++;
	} else {
		free(e);
	}
	pthread_mutex_unlock(&c->lock);
}

/* The instance. */

static int
cfl_start(struct imp_module_instance *inst, struct cfl_counts *counts, char *err, size_t errlen)
{
	const struct conf_setting *path = imp_module_setting(inst, &cfl_opt_path);
	const struct conf_setting *succ = imp_module_setting(inst, &cfl_opt_log_successes);
	struct cfl *cfl;

	if (path == NULL || path->s == NULL || path->s[0] == '\0') {
		snprintf(err, errlen, "path is not set: conn_failure_log { path = \"/var/log/connfail.log\" }");
		return -1;
	}
	if ((cfl = calloc(1, sizeof(*cfl))) == NULL || (cfl->path = strdup(path->s)) == NULL) {
		snprintf(err, errlen, "out of memory");
		free(cfl);
		return -1;
	}
	cfl->fd = open(cfl->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (cfl->fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", cfl->path, strerror(errno));
		free(cfl->path);
		free(cfl);
		return -1;
	}
	cfl->counts = counts != NULL ? counts_ref(counts) : counts_new();
	if (cfl->counts == NULL) {
		snprintf(err, errlen, "out of memory");
		close(cfl->fd);
		free(cfl->path);
		free(cfl);
		return -1;
	}
	cfl->inst = inst;
	pthread_mutex_init(&cfl->write_lock, NULL);
	imp_module_instance_set_data(inst, cfl);
	register_core_log_client_connection_failure_hook_last(cfl_on_failure, cfl);
	if (succ != NULL && succ->i) {
		register_core_log_client_connection_success_hook_last(cfl_on_success, cfl);
		imp_module_log_info(inst, "writing failed and successful connections to %s",
		                    cfl->path);
	} else {
		imp_module_log_info(inst, "writing failed connections to %s", cfl->path);
	}
	return 0;
}

static int
cfl_init(struct imp_module_instance *inst, char *err, size_t errlen)
{
	return cfl_start(inst, NULL, err, errlen);
}

/* The old instance keeps running until the new generation is committed, and
 * the new one may still be refused: share the counts, take nothing away. */
static int
cfl_reload(struct imp_module_instance *inst, struct imp_module_instance *old, char *err,
           size_t errlen)
{
	struct cfl *prev = imp_module_instance_data(old);

	return cfl_start(inst, prev ? prev->counts : NULL, err, errlen);
}

static void
cfl_fini(struct imp_module_instance *inst)
{
	struct cfl *cfl = imp_module_instance_data(inst);

	if (cfl == NULL)
		return;
	close(cfl->fd);
	counts_unref(cfl->counts);
	pthread_mutex_destroy(&cfl->write_lock);
	free(cfl->path);
	free(cfl);
	imp_module_instance_set_data(inst, NULL);
}

/* Append one line with one write(2); 0, or -1 with errno. */
static int
write_line(struct cfl *cfl, const char *line, size_t len)
{
	int rc = 0;

	pthread_mutex_lock(&cfl->write_lock);
	while (len > 0) {
		ssize_t n = write(cfl->fd, line, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = -1;
			break;
		}
		/* A short write (disk full) leaves a partial line; the rest follows. */
		line += n;
		len -= (size_t)n;
	}
	if (rc < 0 && !cfl->write_failing) {
		int saved = errno;
		cfl->write_failing = 1;
		imp_module_log_warn(cfl->inst, "cannot write to %s: %s", cfl->path, strerror(saved));
	} else if (rc == 0) {
		cfl->write_failing = 0;
	}
	pthread_mutex_unlock(&cfl->write_lock);
	return rc;
}

/* One line: time@domain@binding@peer@flags. */
static void
cfl_log(struct cfl *cfl, const struct sockaddr *addr, const char *flags, domain_record *dr,
        int binding_slot, const struct timeval *now)
{
	char line[CFL_LINE_MAX], peer[64];
	const char *domain = dr != NULL && dr->domain != NULL ? dr->domain : "";
	const char *binding = config_get_binding_name_from_id(binding_slot);
	struct timeval tv;
	int n;

	if (now != NULL)
		tv = *now;
	else
		gettimeofday(&tv, NULL);
	sockaddr_render_ip_port(addr, peer, sizeof(peer));
	n = snprintf(line, sizeof(line), "%lld@%s@%s@%s@%s\n", (long long)tv.tv_sec, domain,
	             binding ? binding : "", peer, flags);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line)) {
		n = (int)sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	write_line(cfl, line, (size_t)n);
}

/* The hook providers: any thread. */
static void
cfl_on_failure(void *closure, struct sockaddr *addr, int err, domain_record *dr,
               int binding_slot, struct timeval *now)
{
	struct cfl *cfl = closure;
	char flags[512];

	conn_error_render(err, flags, sizeof(flags));
	counts_add(cfl->counts, dr != NULL && dr->domain != NULL ? dr->domain : "");
	cfl_log(cfl, addr, flags, dr, binding_slot, now);
}

static void
cfl_on_success(void *closure, struct sockaddr *addr, domain_record *dr, int binding_slot,
               struct timeval *now)
{
	cfl_log(closure, addr, "SUCCESS", dr, binding_slot, now);
}

/* Console verbs. */

static int
count_cmp(const void *x, const void *y)
{
	const struct cfl_count *a = *(const struct cfl_count *const *)x;
	const struct cfl_count *b = *(const struct cfl_count *const *)y;

	return strcmp(a->domain, b->domain);
}

static int
cfl_verb_counts(struct imp_module_instance *inst, int argc, char **argv,
                struct imp_console_out *out)
{
	struct cfl *cfl = imp_module_instance_data(inst);
	struct cfl_counts *c = cfl->counts;
	struct cfl_count **v;
	size_t k = 0;

	pthread_mutex_lock(&c->lock);
	v = calloc(c->n ? c->n : 1, sizeof(*v));
	if (v == NULL) {
		pthread_mutex_unlock(&c->lock);
		imp_console_printf(out, "out of memory\n");
		return 1;
	}
	for (size_t i = 0; i < c->nbuckets; i++)
		for (struct cfl_count *e = c->buckets[i]; e != NULL; e = e->next)
			v[k++] = e;
	qsort(v, k, sizeof(*v), count_cmp);
	for (size_t i = 0; i < k; i++)
		imp_console_printf(out, "%s %llu\n", v[i]->domain, (unsigned long long)v[i]->n);
	pthread_mutex_unlock(&c->lock);
	free(v);
	return 0;
}

static int
cfl_verb_reset(struct imp_module_instance *inst, int argc, char **argv,
               struct imp_console_out *out)
{
	struct cfl *cfl = imp_module_instance_data(inst);

	pthread_mutex_lock(&cfl->counts->lock);
	counts_clear(cfl->counts);
	pthread_mutex_unlock(&cfl->counts->lock);
	imp_console_printf(out, "counts reset\n");
	return 0;
}

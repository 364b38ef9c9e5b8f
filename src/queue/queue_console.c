/*
 * queue_console.c - snapshots of the queues for the console and metrics.
 *
 *   queue_collect   rows per (domain, binding) from every loop
 *
 * Each loop fills its part of the snapshot on its own thread (posted); the
 * last one to finish posts the result to the origin loop. Memory: the
 * snapshot owns copies of the names and is freed after fn returns.
 */
#include "queue/queue_console.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <impetus/binding.h>

#include "event/loop.h"
#include "lib/xalloc.h"
#include "queue/domain.h"
#include "queue/queue_internal.h"

struct collect_part {
	struct queue_row *rows;
	size_t n, cap;
	char **names;                       /* owned strings */
	size_t nnames;
};

struct collect_job {
	struct loop *origin;
	queue_collect_fn fn;
	void *arg;
	int nparts;
	atomic_int left;
	struct collect_part *parts;
};

static void collect_on_loop(void *arg);
static void collect_done(void *arg);

struct collect_one {
	struct collect_job *job;
	int index;
};

static const char *
keep(struct collect_part *p, const char *s)
{
	p->names = xrealloc(p->names, (p->nnames + 1) * sizeof(*p->names));
	return p->names[p->nnames++] = xstrdup(s != NULL ? s : "");
}

static struct queue_row *
row_new(struct collect_part *p)
{
	if (p->n == p->cap) {
		p->cap = p->cap ? p->cap * 2 : 64;
		p->rows = xrealloc(p->rows, p->cap * sizeof(*p->rows));
	}
	memset(&p->rows[p->n], 0, sizeof(p->rows[p->n]));
	return &p->rows[p->n++];
}

static const char *
dns_name(int state)
{
	switch (state) {
	case DD_PENDING: return "pending";
	case DD_READY: return "ready";
	case DD_FAILED: return "failed";
	default: return "none";
	}
}

static void
collect_on_loop(void *arg)
{
	struct collect_one *one = arg;
	struct collect_job *job = one->job;
	struct collect_part *p = &job->parts[one->index];
	struct qloop *ql = queue_loop_at(one->index);

	if (ql != NULL && !ql->stopping) {
		for (size_t i = 0; i < ql->table_size; i++)
			for (struct domain *d = ql->table[i]; d != NULL; d = d->hnext) {
				struct queue_row *r = row_new(p);
				const char *name = keep(p, d->pub.domain);
				r->domain = name;
				r->slot = -1;
				r->binding = "";
				r->delayed = d->ndelayed;
				r->delivered = d->delivered;
				r->transient = d->transient;
				r->failed = d->failed;
				r->dns = dns_name(d->dns);
				r->nhosts = (unsigned)d->nhosts;
				for (size_t s = 0; s < d->nbinds; s++) {
					struct dbind *b = &d->binds[s];
					if (b->nactive == 0 && b->nconns == 0)
						continue;
					r = row_new(p);
					r->domain = name;
					r->slot = (int)s;
					r->binding = keep(p, config_get_binding_name_from_id((int)s));
					r->active = b->nactive;
					r->conns = b->nconns;
					r->dns = "";
				}
			}
	}
	free(one);
	if (atomic_fetch_sub(&job->left, 1) == 1)
		loop_post(job->origin, collect_done, job);
}

static void
collect_done(void *arg)
{
	struct collect_job *job = arg;
	struct queue_row *all = NULL;
	size_t n = 0;

	for (int i = 0; i < job->nparts; i++)
		n += job->parts[i].n;
	if (n > 0)
		all = xmalloc(n * sizeof(*all));
	n = 0;
	for (int i = 0; i < job->nparts; i++) {
		if (job->parts[i].n > 0)
			memcpy(all + n, job->parts[i].rows, job->parts[i].n * sizeof(*all));
		n += job->parts[i].n;
	}
	job->fn(all, n, job->arg);
	free(all);
	for (int i = 0; i < job->nparts; i++) {
		for (size_t k = 0; k < job->parts[i].nnames; k++)
			free(job->parts[i].names[k]);
		free(job->parts[i].names);
		free(job->parts[i].rows);
	}
	free(job->parts);
	free(job);
}

void
queue_collect(struct loop *origin, queue_collect_fn fn, void *arg)
{
	struct collect_job *job = xcalloc(1, sizeof(*job));
	int n = queue_loop_count();

	job->origin = origin;
	job->fn = fn;
	job->arg = arg;
	job->nparts = n;
	job->parts = xcalloc(n > 0 ? (size_t)n : 1, sizeof(*job->parts));
	if (n == 0) {
		loop_post(origin, collect_done, job);
		return;
	}
	atomic_init(&job->left, n);
	for (int i = 0; i < n; i++) {
		struct collect_one *one = xcalloc(1, sizeof(*one));
		one->job = job;
		one->index = i;
		loop_post(queue_loop_at(i)->loop, collect_on_loop, one);
	}
}

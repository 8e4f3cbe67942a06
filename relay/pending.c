/* pending.c: metrics of the open Kafka transaction's records, counted when it commits. */
#include "pending.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "metrics.h"
#include "xalloc.h"

/* Exactly-once: a record went into the open Kafka transaction. */
void pending_add(eos_pending_metrics *p, const in_flight *f)
{
	p->records[f->topic]++;
	p->bytes[f->topic] += f->bytes;
	p->dead_letters += f->dead_letter;
	p->any = true;
	if (p->n_runs > 0 && p->runs[p->n_runs - 1].start_ms == f->start_ms) {
		p->runs[p->n_runs - 1].n++;
		return;
	}
	if (p->n_runs == p->cap_runs) {
		size_t ncap = p->cap_runs ? p->cap_runs * 2 : 256;
		p->runs = xrealloc(p->runs, ncap * sizeof(*p->runs));
		p->cap_runs = ncap;
	}
	p->runs[p->n_runs].start_ms = f->start_ms;
	p->runs[p->n_runs++].n = 1;
}

/* The open Kafka transaction was aborted (or given up): its records were not published. */
void pending_drop(eos_pending_metrics *p)
{
	if (!p->any)
		return;
	memset(p->records, 0, sizeof(p->records));
	memset(p->bytes, 0, sizeof(p->bytes));
	p->dead_letters = 0;
	p->n_runs = 0;
	p->any = false;
}

/* The open Kafka transaction committed: its records count as published now. */
void pending_publish(eos_pending_metrics *p)
{
	int64_t now = clock_wall_ms();

	if (!p->any)
		return;
	for (unsigned t = 0; t < METRICS_TOPIC_SLOTS; t++)
		if (p->records[t])
			metrics_published(t, p->records[t], p->bytes[t]);
	metrics_dead_letters(p->dead_letters);
	for (size_t i = 0; i < p->n_runs; i++)
		metrics_latency(now - p->runs[i].start_ms, p->runs[i].n);
	pending_drop(p);
}

void pending_free(eos_pending_metrics *p)
{
	free(p->runs);
	memset(p, 0, sizeof(*p));
}

/* progress.c: the ring of in-flight transactions whose completed prefix gives the flush LSN. */
#include "progress.h"

#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

#define PROGRESS_INITIAL_CAP 1024

static progress_txn *slot_of(const progress *p, uint64_t seq) { return &p->ring[seq & (p->cap - 1)]; }

void progress_init(progress *p, lsn_t start)
{
	memset(p, 0, sizeof(*p));
	p->cap = PROGRESS_INITIAL_CAP;
	p->ring = xcalloc(p->cap, sizeof(progress_txn));
	p->acked = start;
}

void progress_free(progress *p)
{
	free(p->ring);
	p->ring = NULL;
}

/* Doubles the ring, moving live entries to their places under the new mask. */
static void grow(progress *p)
{
	size_t ncap = p->cap * 2;
	progress_txn *nring = xcalloc(ncap, sizeof(progress_txn));
	for (uint64_t s = p->head; s < p->tail; s++)
		nring[s & (ncap - 1)] = *slot_of(p, s);
	free(p->ring);
	p->ring = nring;
	p->cap = ncap;
}

/* Retires finished transactions from the head, moving acked forward. */
static void advance(progress *p)
{
	while (p->head < p->tail) {
		progress_txn *t = slot_of(p, p->head);
		if (!t->committed || t->pending > 0)
			break;
		if (t->nextlsn > p->acked)
			p->acked = t->nextlsn;
		p->head++;
	}
}

uint64_t progress_begin(progress *p, lsn_t nextlsn)
{
	if (p->tail - p->head == p->cap)
		grow(p);
	uint64_t seq = p->tail++;
	progress_txn *t = slot_of(p, seq);
	t->nextlsn = nextlsn;
	t->pending = 0;
	t->committed = false;
	return seq;
}

/* True for a transaction still in the ring (not a record outside any, nor a forgotten one). */
static bool live(const progress *p, uint64_t seq) { return seq >= p->head && seq < p->tail; }

void progress_produced(progress *p, uint64_t seq)
{
	if (!live(p, seq))
		return;
	slot_of(p, seq)->pending++;
	p->in_flight++;
}

void progress_commit(progress *p, uint64_t seq)
{
	if (!live(p, seq))
		return;
	slot_of(p, seq)->committed = true;
	advance(p);
}

void progress_acked(progress *p, uint64_t seq)
{
	if (seq < p->head || seq >= p->tail)
		return; /* a report for a transaction forgotten by a rewind */
	slot_of(p, seq)->pending--;
	p->in_flight--;
	advance(p);
}

void progress_lost(progress *p, uint64_t seq)
{
	if (seq < p->head || seq >= p->tail)
		return;
	p->in_flight--;
}

bool progress_idle(const progress *p) { return p->head == p->tail; }

void progress_skip_to(progress *p, lsn_t lsn)
{
	if (progress_idle(p) && lsn > p->acked)
		p->acked = lsn;
}

void progress_reset(progress *p)
{
	p->head = p->tail;
	p->in_flight = 0;
}

/* horizon.c: commit times and recent outbox xids of what a checkpoint covers (see horizon.h). */
#include "horizon.h"

#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

void horizon_init(horizon *h, int64_t window_ms)
{
	memset(h, 0, sizeof(*h));
	h->window_us = window_ms * 1000;
}

void horizon_free(horizon *h)
{
	free(h->q);
	memset(h, 0, sizeof(*h));
}

static void push(horizon *h, horizon_txn t)
{
	if (h->n == h->cap) {
		h->cap = h->cap ? h->cap * 2 : 256;
		h->q = xrealloc(h->q, h->cap * sizeof(*h->q));
	}
	h->q[h->n++] = t;
}

/* Keeps the entries keep() accepts, in order. */
static void filter(horizon *h, bool (*keep)(const horizon *, const horizon_txn *, lsn_t, int64_t),
		   lsn_t lsn, int64_t t)
{
	size_t w = 0;
	for (size_t i = 0; i < h->n; i++)
		if (keep(h, &h->q[i], lsn, t))
			h->q[w++] = h->q[i];
	h->n = w;
}

void horizon_load(horizon *h, const checkpoint_recovery *rec, lsn_t lsn)
{
	h->n = 0;
	h->committed_lsn = lsn;
	h->committed_us = rec ? rec->commit_us : 0;
	h->deletes_in_txn = rec && rec->deletes_in_txn;
	/* Not recorded: nothing is known of what came before lsn. */
	h->xids_after = rec && rec->xids_after ? rec->xids_after : lsn;
	for (size_t i = 0; rec && i < rec->n_xids; i++)
		push(h, (horizon_txn){.nextlsn = rec->ends ? rec->ends[i] : lsn,
				      .commit_us = rec->commit_us, .xid = rec->xids[i], .outbox = true,
				      .end_known = rec->ends != NULL});
	if (h->committed_us > h->newest_us)
		h->newest_us = h->committed_us;
}

void horizon_txn_read(horizon *h, lsn_t nextlsn, int64_t commit_us, uint32_t xid)
{
	if (commit_us > 0 && commit_us < h->newest_us && h->newest_us - commit_us > h->max_disorder_us)
		h->max_disorder_us = h->newest_us - commit_us;
	if (commit_us > h->newest_us)
		h->newest_us = commit_us;
	push(h, (horizon_txn){.nextlsn = nextlsn, .commit_us = commit_us, .xid = xid,
			      .end_known = true});
}

void horizon_outbox_row(horizon *h)
{
	if (h->n > 0)
		h->q[h->n - 1].outbox = true;
}

void horizon_outbox_delete(horizon *h)
{
	if (h->n > 0 && h->q[h->n - 1].outbox)
		h->deletes_in_txn = true;
}

/* The newest commit time a checkpoint at lsn covers. */
static int64_t newest_covered(const horizon *h, lsn_t lsn)
{
	int64_t t = h->committed_us;
	for (size_t i = 0; i < h->n; i++)
		if (h->q[i].nextlsn <= lsn && h->q[i].commit_us > t)
			t = h->q[i].commit_us;
	return t;
}

/* An outbox transaction covered at lsn whose commit time lies in the window below t. */
static bool listed(const horizon *h, const horizon_txn *q, lsn_t lsn, int64_t t)
{
	return q->outbox && q->nextlsn <= lsn && q->commit_us > t - h->window_us;
}

/* Covered at lsn, wrote outbox rows, but left the window below t: no longer listed. */
static bool dropped(const horizon *h, const horizon_txn *q, lsn_t lsn, int64_t t)
{
	return q->outbox && q->nextlsn <= lsn && !listed(h, q, lsn, t);
}

/* Lists the xids (and, when all are known, their ends) of the entries listed at lsn below t. */
static void fill_xids(const horizon *h, lsn_t lsn, int64_t t, checkpoint_recovery *out)
{
	bool all_known = true;

	out->xids = xmalloc((h->n + 1) * sizeof(uint32_t));
	out->ends = xmalloc((h->n + 1) * sizeof(lsn_t));
	for (size_t i = 0; i < h->n; i++) {
		if (dropped(h, &h->q[i], lsn, t) && h->q[i].nextlsn > out->xids_after)
			out->xids_after = h->q[i].nextlsn;
		if (!listed(h, &h->q[i], lsn, t))
			continue;
		all_known = all_known && h->q[i].end_known;
		out->ends[out->n_xids] = h->q[i].nextlsn;
		out->xids[out->n_xids++] = h->q[i].xid;
	}
	if (!all_known) {
		free(out->ends);
		out->ends = NULL;
	}
}

void horizon_fill(const horizon *h, lsn_t lsn, checkpoint_recovery *out)
{
	int64_t t = newest_covered(h, lsn);

	free(out->xids);
	free(out->ends);
	out->xids = NULL;
	out->ends = NULL;
	out->n_xids = 0;
	out->commit_us = t;
	out->window_ms = h->window_us / 1000;
	out->deletes_in_txn = h->deletes_in_txn;
	out->xids_after = h->xids_after;
	if (t > 0)
		fill_xids(h, lsn, t, out);
}

/* After a commit at lsn: entries beyond it, and covered outbox ones still in the window. */
static bool still_needed(const horizon *h, const horizon_txn *q, lsn_t lsn, int64_t t)
{
	return q->nextlsn > lsn || listed(h, q, lsn, t);
}

void horizon_committed(horizon *h, const checkpoint_recovery *rec, lsn_t lsn)
{
	h->committed_lsn = lsn;
	if (rec->commit_us > h->committed_us)
		h->committed_us = rec->commit_us;
	if (rec->xids_after > h->xids_after)
		h->xids_after = rec->xids_after;
	filter(h, still_needed, lsn, h->committed_us);
}

/* Read before the committed checkpoint (and so covered by it). */
static bool covered(const horizon *h, const horizon_txn *q, lsn_t lsn, int64_t t)
{
	(void)h;
	(void)t;
	return q->nextlsn <= lsn;
}

void horizon_rewind(horizon *h) { filter(h, covered, h->committed_lsn, 0); }

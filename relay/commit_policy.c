/* commit_policy.c: when the open Kafka transaction commits: one rule, from facts the loop gathers. */
#include "commit_policy.h"

/* Due by size, age or idle input, before the catch-up stretch is considered. */
static bool due_by_bounds(const commit_facts *f, const commit_limits *lim)
{
	if (f->records >= lim->max_records)
		return true;
	if (f->age_ms >= lim->max_ms && (!f->in_pg_txn || f->age_ms >= COMMIT_SPLIT_AGE_MS))
		return true;
	return f->input_idle && !f->in_pg_txn;
}

/* Catching up, a transaction due only by its age is left open a little longer. */
static bool stretched(const commit_facts *f, const commit_limits *lim)
{
	if ((f->input_idle && !f->in_pg_txn) || f->records >= lim->max_records)
		return false;
	return f->age_ms < COMMIT_CATCHUP_MS && f->behind_ms >= COMMIT_STRETCH_BEHIND_MS;
}

bool commit_policy_due(const commit_facts *f, const commit_limits *lim)
{
	if (f->holding)
		return false;
	if (f->split_end && !f->open && !f->in_pg_txn)
		return true;
	if (!f->open || !due_by_bounds(f, lim))
		return false;
	return !stretched(f, lim);
}

/* Records a gathered transaction aims at: COMMIT_GATHER_RECORDS, or more with a longer maximum. */
int64_t commit_policy_gather_records(int64_t gather_max_ms)
{
	int64_t at_ref_rate = gather_max_ms * COMMIT_GATHER_REF_RATE / 1000;

	return at_ref_rate > COMMIT_GATHER_RECORDS ? at_ref_rate : COMMIT_GATHER_RECORDS;
}

int64_t commit_policy_gather_ms(const gather_facts *f, int64_t gather_max_ms)
{
	int64_t want = gather_max_ms;
	double records = (double)commit_policy_gather_records(gather_max_ms);

	if (!f->between || gather_max_ms <= 0 || f->behind_ms >= COMMIT_STRETCH_BEHIND_MS)
		return 0;
	if (f->rate > 0 && records * 1000.0 / f->rate < (double)want)
		want = (int64_t)(records * 1000.0 / f->rate);
	return f->since_commit_ms < want ? want - f->since_commit_ms : 0;
}

double commit_policy_rate(double rate, uint64_t records, int64_t cycle_ms)
{
	double sample = (double)records * 1000.0 / (double)(cycle_ms > 0 ? cycle_ms : 1);

	return rate > 0 ? rate + (sample - rate) / 4 : sample;
}

/* commit_policy.h: when the open Kafka transaction commits: one rule, from facts the loop gathers. */
#ifndef RELAY_COMMIT_POLICY_H
#define RELAY_COMMIT_POLICY_H

#include <stdbool.h>
#include <stdint.h>

/* What the rule looks at; the caller reads the clock, so the rule itself is pure. */
typedef struct {
	bool open;         /* a Kafka transaction is open */
	bool in_pg_txn;    /* the relay is reading inside a PostgreSQL transaction */
	bool holding;      /* a group of records that must share one Kafka transaction is unfinished */
	bool input_idle;   /* the stream has nothing more to read right now */
	bool split_end;    /* a split transaction's last part is committed: only its end is missing */
	uint64_t records;  /* records in the open Kafka transaction */
	int64_t age_ms;    /* how long it has been open */
	int64_t behind_ms; /* how long ago the transaction being read committed (-1: unknown) */
} commit_facts;

/* relay.transaction_max_records and relay.transaction_max_ms. */
typedef struct {
	uint64_t max_records;
	int64_t max_ms;
} commit_limits;

/*
 * True when the open Kafka transaction (with its checkpoint) should commit now:
 * - never while a group is unfinished (half a group is never committed);
 * - at once for a split transaction's missing end, when no Kafka transaction is open and the
 *   relay is not inside a PostgreSQL transaction;
 * - at its record bound, even inside a PostgreSQL transaction (how a big one is split);
 * - by age between PostgreSQL transactions, inside one only once COMMIT_SPLIT_AGE_MS old;
 * - when input is idle between PostgreSQL transactions;
 * - but catching up (behind by COMMIT_STRETCH_BEHIND_MS or more), one due only by its age stays
 *   open up to COMMIT_CATCHUP_MS: each commit stops reading, and nobody waits for these rows yet.
 */
bool commit_policy_due(const commit_facts *f, const commit_limits *lim);

/*
 * By age alone, a Kafka transaction commits between PostgreSQL transactions; inside one only
 * once it is this old (a huge transaction arriving slowly), so that a checkpoint rarely falls
 * inside a transaction: a lost slot's recovery cannot be exact there (docs/exactly-once.md).
 */
#define COMMIT_SPLIT_AGE_MS 5000
/* Far behind (a backlog, not a hiccup of live traffic) ... */
#define COMMIT_STRETCH_BEHIND_MS 2000
/* ... a transaction due only by its age stays open this long. */
#define COMMIT_CATCHUP_MS 1000

/* What decides how long the stream is left to gather before it is read (the caller reads the clock). */
typedef struct {
	bool between;            /* no Kafka or PostgreSQL transaction open, no group unfinished */
	int64_t since_commit_ms; /* since the last commit began (the stream was not read from then) */
	double rate;             /* records per second of the recent Kafka transactions (0: none) */
	int64_t behind_ms;       /* how long ago the last transaction read committed (-1: unknown) */
} gather_facts;

/*
 * Milliseconds to leave the stream unread before reading on (0: read now). Each Kafka
 * transaction costs the relay a fixed 3 to 5 ms of CPU over its threads (librdkafka 2.0.2's main
 * thread spins through the 1 ms timer of each partition registration; the broker threads' and
 * the relay's own wake-ups: docs/performance.md), so at low rates one per handful of rows would
 * cost more than the rows. Between transactions, rows gather (unread, in the socket) until the
 * last commit began long enough ago for commit_policy_gather_records(gather_max_ms) of them at
 * the recent rate, at most gather_max_ms (relay.transaction_gather_ms; 0: never). At high rates
 * a commit takes longer than that and nothing waits: the rule follows the rate.
 * Catching up (behind by COMMIT_STRETCH_BEHIND_MS or more, more than any gathering leaves it)
 * nothing waits either: the rows are already there, and waiting would only slow the catch-up.
 */
int64_t commit_policy_gather_ms(const gather_facts *f, int64_t gather_max_ms);

/*
 * The rate estimate after a commit of records records, cycle_ms after the one before began:
 * a moving average (a quarter of each new sample), the first sample taken as it is.
 */
double commit_policy_rate(double rate, uint64_t records, int64_t cycle_ms);

/*
 * Records per Kafka transaction the gathering aims at: COMMIT_GATHER_RECORDS, or with a longer
 * gather_max_ms as many as come in it at COMMIT_GATHER_REF_RATE rows/s. So the default (25 ms)
 * waits as long as 32 rows take, at most 25 ms (6.4 ms at 5,000 rows/s), and a user who raises
 * the maximum to cut the CPU gets the whole of it up to 1,000 rows/s and proportionally less
 * above (64 ms: 64 rows, 57 us of CPU per row at 1,000 rows/s instead of 128; docs/performance.md).
 * gather_max_ms is within the key's range, 0 to 1000 (config.c), so nothing here overflows.
 */
int64_t commit_policy_gather_records(int64_t gather_max_ms);

/* Records per Kafka transaction the gathering aims at least (below it, a commit's cost dominates). */
#define COMMIT_GATHER_RECORDS 32
/* The rate at which the whole of a longer maximum is waited (rows per second). */
#define COMMIT_GATHER_REF_RATE 1000

#endif

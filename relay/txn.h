/* txn.h: the loop's Kafka transactions: when one commits, with its checkpoint, and what it counts. */
#ifndef RELAY_TXN_H
#define RELAY_TXN_H

#include <stdbool.h>
#include <stdint.h>

#include "relay_state.h"

/* eos_commit with snapshot and backfill progress attached, counted in the metrics. */
outcome txn_commit(relay *r);
/* eos_abort, counted. */
outcome txn_abort(relay *r);
/* Commits the open Kafka transaction when it is due (input_idle: nothing more to read now). */
outcome txn_maybe_commit(relay *r, bool input_idle);
/* Waits out the coordinator's gap after a commit before the next transaction's first record. */
outcome txn_wait_gap(relay *r);
/*
 * Between Kafka transactions (exactly-once), how many ms the stream should stay unread so that
 * the next transaction gathers more rows at a low rate (commit_policy_gather_ms); 0: read now.
 */
int64_t txn_gather_ms(const relay *r);
/* True while reading transactions that committed at least behind_ms ago. */
bool txn_behind_by(const relay *r, int64_t behind_ms);
/*
 * The records of one source row go into one Kafka transaction: nothing commits from
 * txn_group_begin to txn_group_end. A group left unfinished by an error keeps hold_commit set,
 * so the session's end aborts the open transaction instead of committing half a group.
 */
void txn_group_begin(relay *r);
/* Ends a group that went out whole (e: how it went); a source row is counted for split transactions. */
outcome txn_group_end(relay *r, outcome e, bool source_row);
/* eos_start's callback between slices of a blocking Kafka call: -1 gives up (a stop). */
int txn_init_tick(void *ctx);

#endif

/* gate.h: where publishing waits for postgresql.wait_for_standbys (standby_gate.h says why). */
#ifndef RELAY_GATE_H
#define RELAY_GATE_H

#include "relay_state.h"

/*
 * At a transaction's BEGIN, before anything of it is produced: its commit (ending at nextlsn)
 * must be on enough standbys first. When it is not, the open Kafka transaction (whose
 * transactions passed here already) commits, and the wait holds nothing open in Kafka: no
 * transaction.timeout.ms to outlast, no read_committed consumer held back. OUTCOME_STOP on a
 * stop request, OUTCOME_RETRY when the server cannot be asked, OUTCOME_FATAL when waiting
 * cannot help.
 */
outcome gate_before_begin(relay *r, lsn_t nextlsn);

/*
 * Before a Kafka commit (txn_commit): the WAL it covers must be on enough standbys. Usually
 * known already (gate_before_begin); a backfill's or snapshot's records wait here, with the
 * Kafka transaction open, at most half of transaction.timeout.ms. OUTCOME_REWIND: not
 * committed, the caller aborts.
 */
outcome gate_before_commit(relay *r);

/* An idle checkpoint may go out: the standbys have its position already (never waits). */
bool gate_idle_checkpoint_ok(relay *r);

#endif

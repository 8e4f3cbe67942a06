/* gate.h: where publishing waits for postgresql.wait_for_standbys (standby_gate.h says why). */
#ifndef RELAY_GATE_H
#define RELAY_GATE_H

#include "relay_state.h"

/*
 * Before a Kafka transaction opens for a record: the WAL the record comes from (to the end of
 * its transaction's commit) must be on enough standbys first, and the wait holds nothing open
 * in Kafka (no transaction.timeout.ms to outlast, no read_committed consumer held back).
 * Records that join an open Kafka transaction do not ask: gate_before_commit asks for all it
 * holds. OUTCOME_STOP on a stop request, OUTCOME_RETRY when the server cannot be asked,
 * OUTCOME_FATAL when waiting cannot help.
 */
outcome gate_before_open(relay *r);

/*
 * Before a Kafka commit (txn_commit): the WAL it covers must be on enough standbys. With the
 * Kafka transaction open it waits at most 2 s (and half of transaction.timeout.ms); longer, or
 * when the server cannot be asked, OUTCOME_RETRY: not committed, the session ends, settles what
 * is in flight and aborts it (no purge), and reading again gate_before_open waits with nothing
 * open. A stop that outlasts its deadline: OUTCOME_REWIND. Asked once per Kafka transaction.
 */
outcome gate_before_commit(relay *r);

/* An idle checkpoint may go out: the standbys have its position already (never waits). */
bool gate_idle_checkpoint_ok(relay *r);

#endif

/* txtopic.h: the transaction topic: a BEGIN and an END record for each PostgreSQL transaction. */
#ifndef RELAY_TXTOPIC_H
#define RELAY_TXTOPIC_H

#include "relay_state.h"

/*
 * Before the first record of the PostgreSQL transaction being read (r->tx): its BEGIN record
 * on relay.transaction_topic (none when that is ""), in the open Kafka transaction. Marks the
 * transaction begun either way, and whether its BEGIN went out (kept by split checkpoints: a
 * restart with the topic on sends the BEGIN that did not go out before the next record).
 */
outcome txtopic_begin(relay *r);
/*
 * At its C record, for a transaction that published records: its END record with the count of
 * records per topic and in total, in the Kafka transaction that completes it (the caller holds
 * commits until the transaction is marked read whole, so END never commits without that).
 * Nothing when relay.transaction_topic is "" or nothing was published.
 */
outcome txtopic_end(relay *r);

#endif

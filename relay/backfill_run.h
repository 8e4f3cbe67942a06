/* backfill_run.h: a backfill's rows published through the loop, then the checkpoint that ends it. */
#ifndef RELAY_BACKFILL_RUN_H
#define RELAY_BACKFILL_RUN_H

#include <stddef.h>

#include "relay_state.h"

/*
 * Publishes the planned backfill's rows in Kafka transactions (each with its progress), then the
 * checkpoint that ends it: OUTCOME_OK when it is done; OUTCOME_RETRY after a stop (what is open
 * is committed first) or a failure (back to what Kafka committed); OUTCOME_FATAL when a row
 * cannot be published and relay.on_error = stop (or the producer failed); err says why.
 */
outcome backfill_run(relay *r, char *err, size_t errlen);
/* Lets the backfill's queries serve Kafka and the watchdog while they run (r outlives r->bf). */
void backfill_run_attach(relay *r);

#endif

/* slot_start.h: where a session starts: the slot against the checkpoint, first start, a lost slot. */
#ifndef RELAY_SLOT_START_H
#define RELAY_SLOT_START_H

#include <stddef.h>

#include "relay_state.h"

/*
 * Exactly-once: the slot checked against the checkpoint in Kafka, which is read at the first
 * session and whenever the slot is not where this process left it. Creates the slot on a first
 * start, recovers after a lost one (planning a backfill), or refuses with err
 * (docs/exactly-once.md).
 */
outcome slot_start_prepare(relay *r, char *err, size_t errlen);

#endif

/* publish_change.h: a captured change's records: envelope, tombstone, key change as one unit. */
#ifndef RELAY_PUBLISH_CHANGE_H
#define RELAY_PUBLISH_CHANGE_H

#include <stddef.h>

#include "relay_state.h"
#include "w2j.h"

/*
 * A change of captured table t as one group: a key change checked whole (published whole or
 * dead-lettered whole), or its envelope record and tombstone; snapshots learn of its key.
 */
stream_end publish_change(relay *r, const capture_table *t, const w2j_record *rec,
			  const char *data, size_t len);

#endif

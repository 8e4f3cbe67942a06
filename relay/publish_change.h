/* publish_change.h: a captured table's records: a change (envelope, tombstone, key change), a snapshot row. */
#ifndef RELAY_PUBLISH_CHANGE_H
#define RELAY_PUBLISH_CHANGE_H

#include <stddef.h>

#include "relay_state.h"
#include "snapshot.h"
#include "w2j.h"

/*
 * A change of captured table t as one group: a key change checked whole (published whole or
 * dead-lettered whole), or its envelope record and tombstone; snapshots learn of its key.
 */
outcome publish_change(relay *r, const capture_table *t, const w2j_record *rec,
			  const char *data, size_t len);
/* One row of a snapshot chunk whose watermark is rec: published, or dead-lettered. */
outcome publish_snapshot_row(relay *r, const capture_table *t, const w2j_record *rec,
				const snapshot_row *row);

#endif

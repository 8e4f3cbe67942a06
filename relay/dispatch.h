/* dispatch.h: each wal2json record to its handler, as PostgreSQL's apply_dispatch does. */
#ifndef RELAY_DISPATCH_H
#define RELAY_DISPATCH_H

#include <stdint.h>

#include "relay_state.h"
#include "w2j.h"

/* One message of the replication stream (a record or a keepalive), handled. */
outcome dispatch_message(relay *r, const pg_msg *msg);
/*
 * Between transactions with nothing in flight: moves the safe position (at-least-once's acked,
 * exactly-once's done_lsn) to the last keepalive's walEnd, when no record came after it. The
 * loop calls it again once the last acks are in: a keepalive that came while records were still
 * in flight is the only word of idle WAL (the server sends no other until more WAL is written).
 */
void dispatch_skip_idle(relay *r);
/* A B record's commit time in us since 1970 (0 when absent or not PostgreSQL's form). */
int64_t dispatch_commit_us(const w2j_record *rec);

#endif

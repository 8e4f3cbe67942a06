/* standby_gate.h: Kafka commits held back until chosen standbys have flushed the WAL they cover. */
#ifndef RELAY_STANDBY_GATE_H
#define RELAY_STANDBY_GATE_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "config.h"
#include "lsn.h"

/*
 * PostgreSQL before 17 decodes a transaction as soon as its commit is flushed locally, before
 * any standby has it; a failover to a standby that lacks it leaves its published events without
 * a transaction (phantoms). With postgresql.wait_for_standbys the relay commits a Kafka
 * transaction covering WAL up to lsn only once wait_for_standbys_count of the named standbys
 * report a flush position at or past lsn in pg_stat_replication (PostgreSQL 17's
 * synchronized_standby_slots does the same inside the server).
 *
 * The positions are read on a connection of the gate's own to the server the stream reads
 * (host and port given): read on another server (a multi-host conninfo finding a new primary),
 * they would say nothing about the WAL the relay read. The connection lives for one session.
 */
typedef struct standby_gate standby_gate;

typedef enum {
	GATE_OPEN,  /* lsn may be committed */
	GATE_WAIT,  /* not flushed by enough standbys yet: ask again a little later */
	GATE_ERROR, /* the server could not be asked (err says why): do not commit */
} gate_state;

standby_gate *standby_gate_new(void);
void standby_gate_free(standby_gate *g);

/* A session ended: the next check connects again, to the server the new session reads. */
void standby_gate_reset(standby_gate *g);

/* True when cfg names standbys to wait for. */
bool standby_gate_on(const relay_config *cfg);

/*
 * Whether lsn is flushed by enough standbys: answered from the last reading when it covers lsn,
 * else read again from the server at host:port (the stream's). Never blocks longer than a
 * query; GATE_ERROR leaves a message in err.
 */
gate_state standby_gate_check(standby_gate *g, const relay_config *cfg, const char *host,
			      const char *port, lsn_t lsn, char *err, size_t errlen);

/* What the last reading said, for a log line: "pg2 0/3000060, pg3 absent" (or ""). */
const char *standby_gate_seen(const standby_gate *g);

/*
 * The flush position that count of the n standbys have reached: the count-th highest of
 * flushed[] (reordered), or LSN_INVALID when fewer than count are there. Pure.
 */
lsn_t standby_gate_quorum(lsn_t *flushed, int n, int count);

#endif

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
 * a transaction (phantoms). With postgresql.wait_for_standbys, WAL up to lsn may be published
 * only once wait_for_standbys_count of the named standbys report a flush position at or past
 * lsn in pg_stat_replication (PostgreSQL 17's synchronized_standby_slots does the same inside
 * the server).
 *
 * The positions must be read on the server the records came from: on another one (a
 * multi-host conninfo or a virtual IP finding a new primary) they would say nothing about that
 * WAL. So the gate connects to the host, address and port of the server given, and when the
 * stream's walsender pid is given it checks that this walsender is in the same
 * pg_stat_replication result. A different server, or other settings, start it afresh.
 */
typedef struct standby_gate standby_gate;

typedef enum {
	GATE_OPEN,  /* lsn may be published */
	GATE_WAIT,  /* not flushed by enough standbys yet: ask again a little later */
	GATE_ERROR, /* the server could not be asked (err says why): do not commit */
} gate_state;

/* Where the records came from: the server (as libpq connected to it) and the stream's walsender. */
typedef struct {
	const char *host, *hostaddr, *port; /* PQhost, PQhostaddr ("" or NULL: none), PQport */
	int walsender_pid;                  /* PQbackendPID of the replication connection; 0: none */
} gate_server;

/* An empty gate (not connected); freed with standby_gate_free. */
standby_gate *standby_gate_new(void);
void standby_gate_free(standby_gate *g);

/* Forgets the server and what it said: the next check connects again. */
void standby_gate_reset(standby_gate *g);

/* True when cfg names standbys to wait for. */
bool standby_gate_on(const relay_config *cfg);

/*
 * Whether lsn is flushed by enough standbys: answered from the last reading when it covers lsn
 * (and the server and settings are the same), else read again from the server. The connection
 * has keepalives, tcp_user_timeout and a statement timeout of 5 s: a server that went away
 * costs at most that. A broken connection is tried once more. GATE_ERROR leaves a message in
 * err; *fatal is set when waiting cannot help (the role cannot see the positions).
 */
gate_state standby_gate_check(standby_gate *g, const relay_config *cfg, const gate_server *srv,
			      lsn_t lsn, bool *fatal, char *err, size_t errlen);

/* What the last reading said, for a log line: "pg2 0/3000060, pg3 not connected" (or ""). */
const char *standby_gate_seen(const standby_gate *g);

/*
 * The flush position that count of the n standbys have reached: the count-th highest of
 * flushed[] (reordered), or LSN_INVALID when fewer than count are there. Pure.
 */
lsn_t standby_gate_quorum(lsn_t *flushed, int n, int count);

/* Most names postgresql.wait_for_standbys may hold (config.c checks it). */
#define GATE_MAX_STANDBYS 64

#endif

/* session.h: the life of a session: open, settle, stream, end; one place decides what follows. */
#ifndef RELAY_SESSION_H
#define RELAY_SESSION_H

#include <stddef.h>
#include <libpq-fe.h>

#include "relay_state.h"

/* What follows a session's end, by its outcome (outcome): one row each. */
typedef enum {
	SESSION_SHUT_DOWN,  /* a stop: commit what is whole, drain, confirm, exit 0 */
	SESSION_EXIT,       /* fatal: confirm what Kafka took, exit non-zero (3 when fenced) */
	SESSION_RECONNECT,  /* the server was lost: commit what is whole, connect again */
	SESSION_READ_AGAIN, /* Kafka refused: drop what is queued, abort, back off, read again */
} session_next;

/* The step that follows a session that ended with e. */
session_next session_next_step(outcome e);
/*
 * Runs sessions until a stop or a fatal error: each connects, streams, and on trouble settles
 * and reconnects. Returns the exit code (relay.h's RELAY_EXIT_*).
 */
int session_run_all(relay *r);
/* The normal connection for catalog reads and snapshots, (re)opened when needed; NULL (err) if down. */
PGconn *session_sql(relay *r, char *err, size_t errlen);

#endif

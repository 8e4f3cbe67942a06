/* session.h: the life of a session: open, settle, stream, end; one place decides what follows. */
#ifndef RELAY_SESSION_H
#define RELAY_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <libpq-fe.h>

#include "relay_state.h"

/* What follows a session's end, by its outcome (outcome) and session_facts: one row each. */
typedef enum {
	SESSION_SHUT_DOWN,  /* a stop: commit what is whole, drain, confirm, exit 0 */
	SESSION_EXIT,       /* fatal: confirm what Kafka took, exit non-zero (3 when fenced) */
	SESSION_RECONNECT,  /* the server was lost: commit what is whole, connect again */
	SESSION_READ_AGAIN, /* Kafka refused: drop what is queued, abort, back off, read again */
	SESSION_STAND_BY,   /* relay.takeover = "wait", another relay is active (fenced this one,
			     * or took the lock): confirm what this one committed, let go of the
			     * slot, the lock and the producer, stand by again with fresh parts */
	SESSION_START_OVER, /* the broker aborted a transaction open longer than
			     * transaction.timeout.ms (Kafka was unreachable): the producer failed
			     * for good, with no other relay; start again with fresh parts, as a
			     * restarted process would, from the checkpoint Kafka committed */
} session_next;

/* What besides the outcome decides the next step: who else is on the slot, and the setting. */
typedef struct {
	bool fenced;    /* the producer was fenced: a relay with the same transactional.id started
			 * Kafka transactions after this one (nothing more can commit) */
	bool expired;   /* the producer failed for good (fenced, or an invalid state) after its
			 * transaction outlived transaction.timeout.ms: the broker's own abort
			 * bumped the epoch (eos.h's eos_expired) */
	bool lock_lost; /* relay.takeover = "wait": another relay took the active/passive lock */
	bool wait;      /* relay.takeover = "wait": active/passive, a loser stands by again */
} session_facts;

/*
 * The step that follows a session that ended with e (pure). A stop always shuts down. A
 * producer ended by the broker's own abort of an expired transaction starts over. With
 * relay.takeover = "wait", being fenced or losing the lock means standing by again;
 * otherwise a fenced producer is an exit (3: the newer relay keeps the slot) whatever the
 * outcome, since nothing can commit with it any more.
 */
session_next session_next_step(outcome e, session_facts f);

/* Not exit codes: session_run_all ended to stand by again, or to start over; its caller builds
 * fresh parts either way. */
#define SESSION_RUN_STAND_BY (-1)
#define SESSION_RUN_START_OVER (-2)

/*
 * Runs sessions until a stop, a fatal error or (relay.takeover = "wait") losing the slot to
 * another relay: each connects, streams, and on trouble settles and reconnects. With "wait" it
 * first stands by until it is the active relay (standby.h), and lets go of the lock at the end. Returns the exit code (relay.h's
 * RELAY_EXIT_*), SESSION_RUN_STAND_BY or SESSION_RUN_START_OVER.
 */
int session_run_all(relay *r);
/* The normal connection for catalog reads and snapshots, (re)opened when needed; NULL (err) if down. */
PGconn *session_sql(relay *r, char *err, size_t errlen);

#endif

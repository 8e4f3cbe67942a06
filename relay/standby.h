/* standby.h: active/passive (relay.takeover = "wait"): one active relay per slot, the others stand by. */
#ifndef RELAY_STANDBY_H
#define RELAY_STANDBY_H

#include <stdbool.h>
#include <stddef.h>

#include "relay_state.h"

/* How often a relay standing by looks again (ms): the takeover waits at most this long. */
#define STANDBY_POLL_MS 500

/*
 * Who is active: the relay holding the active/passive lock, a PostgreSQL advisory lock
 * (pg_try_advisory_lock(STANDBY_LOCK_CLASS, hashtext(slot)) in the slot's database), held on a
 * connection of its own for as long as the relay is active. The slot itself cannot serve: it
 * is free whenever the active relay is not streaming (connecting, reading its checkpoint,
 * creating the slot, backfilling), and a relay that took it then would fence the active one.
 */
#define STANDBY_LOCK_CLASS 1868722808 /* "obrx" */

/* Who holds the lock, or the slot (pg_locks / pg_replication_slots with pg_stat_activity). */
typedef struct {
	bool held;
	long pid;          /* the backend holding it (the holder's connection); 0 if not shown */
	char app[64];      /* its application_name (a relay's: outbox-relay[PID]@HOST); "" unknown */
	char addr[64];     /* its client address; "" for a Unix socket or when not shown */
} standby_holder;

/*
 * What a relay standing by says of a holder (pure): "outbox-relay[811]@db2 (10.0.0.6, backend
 * PID 4242)", "backend PID 4242" when nothing else is shown, "nobody" when not held.
 */
void standby_holder_text(const standby_holder *h, char *buf, size_t len);
/*
 * Stands by until this relay may be the active one, before it starts Kafka transactions (so it
 * fences nobody): takes the lock (trying every STANDBY_POLL_MS while another relay holds it),
 * then waits until the slot is no longer streamed (a relay killed a moment ago may still be
 * seen on it; a session that stays 2 s while this relay holds the lock belongs to a relay
 * frozen or cut off, and is ended with pg_terminate_backend, asked again at each look). Meanwhile it answers SIGTERM at once, feeds the systemd watchdog, says
 * "standby" in the metrics (/readyz: 503 standby) and, once another relay is seen active, tells
 * systemd READY=1 with a STATUS= line naming it (standing by is a running state, not a start
 * that times out). An unreachable server is waited out the same way.
 * OUTCOME_OK when the lock is held and the slot free, OUTCOME_STOP on a stop request.
 */
outcome standby_wait(relay *r);
/*
 * At the start of each session of the active relay: the lock is still held (asked on its
 * connection), or taken again when that connection was lost (a server restart). OUTCOME_OK; OUTCOME_RETRY (err) when the server
 * cannot be reached; OUTCOME_RETRY with r->lock_lost set when another relay holds it now.
 */
outcome standby_keep_lock(relay *r, char *err, size_t errlen);
/*
 * While streaming (checked at most once a second): false once the lock's connection broke,
 * so the session ends and standby_keep_lock decides who is active.
 */
bool standby_lock_alive(relay *r);
/* Lets go of the lock (closes its connection). */
void standby_release(relay *r);
/*
 * A session started streaming: after a standby that saw another relay active, logs one line
 * ("took over slot ...", with how long after the lock was taken) and counts the takeover in
 * the metrics. Nothing otherwise.
 */
void standby_took_over(relay *r);

#endif

/* standby.h: active/passive (relay.takeover = "wait"): standing by until the slot is free. */
#ifndef RELAY_STANDBY_H
#define RELAY_STANDBY_H

#include <stdbool.h>
#include <stddef.h>

#include "relay_state.h"

/* How often a relay standing by looks at the slot (ms): the takeover waits at most this long. */
#define STANDBY_POLL_MS 500

/* What pg_replication_slots (and pg_stat_activity, for its holder) say of the slot. */
typedef struct {
	bool exists;
	bool active;
	long pid;          /* the walsender holding the slot; 0 if none or not shown */
	char holder[64];   /* its application_name (a relay's: outbox-relay[PID]@HOST); "" unknown */
	char addr[64];     /* its client address; "" for a Unix socket or when not shown */
} standby_slot;

/*
 * True when the slot may be taken: not active, or missing (the relay then creates it, or
 * refuses, as its configuration says). Pure.
 */
bool standby_slot_free(const standby_slot *s);
/*
 * Who holds the slot, for the log and systemd's status line (pure), e.g.
 * "held by PID 4242 (outbox-relay[811]@db2, 10.0.0.6)"; "free" when it is not held.
 */
void standby_holder_text(const standby_slot *s, char *buf, size_t len);
/*
 * Stands by (relay.takeover = "wait") before Kafka transactions are started, so that no running
 * relay is fenced: looks at the slot every STANDBY_POLL_MS over the normal connection until it
 * is free. Meanwhile it answers SIGTERM at once, feeds the systemd watchdog, says "standby" in
 * the metrics (/readyz: 503 standby) and, once another relay is seen holding the slot, tells
 * systemd READY=1 with a STATUS= line naming the holder (a standby is a running state, not a
 * start that times out). The server being unreachable is waited out the same way.
 * OUTCOME_OK when the slot is free (the next session takes it), OUTCOME_STOP on a stop request.
 */
outcome standby_wait(relay *r);
/*
 * A session started streaming: after a standby that saw another relay hold the slot, logs one
 * line ("took over slot ...", with how long after the slot was found free) and counts the
 * takeover in the metrics. Nothing otherwise.
 */
void standby_took_over(relay *r);

#endif

/* loop.h: the event loop: waits on every wake-up source, reads the stream, commits when due. */
#ifndef RELAY_LOOP_H
#define RELAY_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#include "relay_state.h"

/*
 * Waits for the replication socket (when read_pg), Kafka events, the status timer and the
 * watchdog, at most until deadline (a clock_mono_ms time, or -1); then serves Kafka events and
 * the status timer. -1 when waiting itself failed.
 */
int loop_wait(relay *r, bool read_pg, int64_t deadline);
/*
 * A stop request ends the stream at the next transaction boundary (a clean stop leaves no
 * half-published transaction); relay.shutdown_timeout_ms bounds the wait for it, from the first
 * call after the request (which sets r->stop_deadline).
 */
bool loop_should_stop(relay *r);

/* SIGHUP received: the file is read again and what may change is applied (between steps). */
void loop_take_reload(relay *r);
/* Streams until something ends the session: its outcome (never OUTCOME_OK). */
outcome loop_stream(relay *r);
/* Waits until Kafka has reported every record handed to it, or the deadline (-1: none). */
bool loop_drain(relay *r, int64_t deadline);

#endif

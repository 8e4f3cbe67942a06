/* status.h: the flush position told to the server (and systemd), and the lag warning. */
#ifndef RELAY_STATUS_H
#define RELAY_STATUS_H

#include <stdbool.h>
#include <stdint.h>

#include "relay_state.h"

/* What may be confirmed: committed in Kafka (exactly-once) or acknowledged (at-least-once). */
lsn_t status_flush_lsn(const relay *r);
/*
 * Sends a status update when forced, when the interval passed, or soon after the flush
 * position moved; also systemd's STATUS= line and the lag check. -1 when the connection is lost
 * (r->pg_lost is set; the stream loop acts on it).
 */
int status_send(relay *r, bool force);
/* Milliseconds until the next status update is due (a deadline for the loop's wait). */
int64_t status_due_in(const relay *r);

#endif

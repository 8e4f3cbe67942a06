/* notify.h: tells systemd (Type=notify) the relay's state: ready, status, reloading, stopping, alive. */
#ifndef RELAY_NOTIFY_H
#define RELAY_NOTIFY_H

#include <stdint.h>

/*
 * Every function is cheap and safe to call whether or not the relay runs under systemd: without
 * $NOTIFY_SOCKET (a terminal, the tests) or in a build without libsystemd (no HAVE_LIBSYSTEMD)
 * nothing is sent. Failures to send are ignored (one warning in the log); none of them ever
 * stops the relay. All are meant for the relay's single thread.
 */

/*
 * READY=1. Call when the replication stream is open and the Kafka producer is up, i.e. right
 * after connect_stream() logged "streaming from slot ..." (in exactly-once mode that is after the
 * checkpoint was loaded). Until then systemd keeps the unit "activating" and `systemctl start`
 * waits; TimeoutStartSec bounds that wait. Calling it again after every reconnection is
 * harmless, and it is required once more after notify_reloading() to end the reload.
 */
void notify_ready(void);

/*
 * STATUS=<text>: one line `systemctl status` shows. Call on each state change (not streaming and
 * why, streaming, stopping) and, while streaming, every few seconds at most: systemd announces
 * each new text on D-Bus, so once per postgresql.status_interval_ms suits, not once per flush
 * (e.g. "streaming; confirmed 0/16B3748; 1200 records published"). A text equal to the last one
 * is not sent again. Newlines become spaces; at most 255 characters are kept.
 */
void notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * RELOADING=1 with MONOTONIC_USEC (systemd 253 and later want both; 252 ignores the second).
 * Call when a SIGHUP is picked up, before reading the file again; call notify_ready() when the
 * reload is over, whether the new file was applied or refused.
 */
void notify_reloading(void);

/*
 * STOPPING=1. Call once, when a stop request (SIGTERM/SIGINT) is acted on, before waiting for
 * Kafka's acknowledgements (at the start of shut_down()); also before leaving on a fatal error
 * is fine. systemd then reports the unit as "deactivating" while the relay drains.
 */
void notify_stopping(void);

/*
 * WATCHDOG=1, at most once per half of the watchdog interval (WatchdogSec; more frequent calls
 * return at once), and only after the first notify_ready(): systemd arms the watchdog at READY=1,
 * so startup (connecting, loading the checkpoint) is bounded by TimeoutStartSec instead, and
 * calls before that are no-ops. Call it at every turn of the main loop and between the slices
 * of every wait: wait_events() and eos_tick() cover the stream, the reconnection backoff, the
 * drain on shutdown and blocking Kafka transactions. Call it only from places that prove
 * progress (the loop turns), never from a timer or another thread: if the loop hangs, systemd
 * must notice (it then sends SIGABRT and, with Restart=on-failure, starts the relay again).
 */
void notify_watchdog(void);

/*
 * The longest the main loop may sleep between two notify_watchdog() calls, in milliseconds: a
 * quarter of WatchdogSec (so that, with the half-interval rate limit above, a ping goes out at
 * least every three quarters of it); 0 when no watchdog is set. Cap every poll timeout with it:
 *     int64_t wd = notify_watchdog_interval_ms();
 *     if (wd > 0 && timeout > wd) timeout = wd;
 */
int64_t notify_watchdog_interval_ms(void);

#endif

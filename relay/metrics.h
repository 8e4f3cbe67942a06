/* metrics.h: Prometheus metrics and health checks over HTTP (relay.metrics_listen). */
#ifndef RELAY_METRICS_H
#define RELAY_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "lsn.h"

/*
 * The HTTP server runs in libmicrohttpd's own thread and only reads. Everything below that
 * changes a value is for the main thread only (the single writer): relaxed atomic loads and
 * stores, no locks, no allocation (the topic table is fixed-size). One set per process.
 */

/* Topics get their own series up to this many; later ones share the "(other)" series. */
#define METRICS_MAX_TOPICS 64
#define METRICS_TOPIC_OTHER METRICS_MAX_TOPICS
#define METRICS_TOPIC_SLOTS (METRICS_MAX_TOPICS + 1)
/* Not a valid Kafka topic name, so it cannot clash with one. */
#define METRICS_OTHER_LABEL "(other)"

/*
 * Checks relay.metrics_listen: "" (off), "host:port", ":port" (127.0.0.1) or "[v6addr]:port".
 * 0 with host and port filled in (host "" when off), or -1 with *why set to a static reason.
 */
int metrics_parse_listen(const char *text, char *host, size_t hostlen, char *port, size_t portlen,
			 const char **why);

/*
 * Notes the process start time (outbox_relay_start_time_seconds, once per process), then binds
 * listen and starts the server thread; -1 with a message (bind errors say why).
 */
int metrics_start(const char *listen, char *err, size_t errlen);
/* Stops the server thread (if started) and closes the socket. */
void metrics_stop(void);

/* The series index of a topic (registers it on first sight): a hash lookup, main thread only. */
unsigned metrics_topic(const char *topic);

void metrics_published(unsigned topic, uint64_t records, uint64_t bytes);
void metrics_dead_letters(uint64_t n);
void metrics_rows_read(uint64_t n);
void metrics_txn_committed(void);
void metrics_txn_aborted(void);
void metrics_reconnect(void);
/* n records published latency_ms after their PostgreSQL commit (negative: clock skew, as 0). */
void metrics_latency(int64_t latency_ms, uint64_t n);

/* Newest server WAL position known, and the position confirmed to the server. */
void metrics_set_wal_end(lsn_t lsn);
void metrics_set_confirmed(lsn_t lsn);
/* WAL the server keeps for the slot, from the periodic check (relay.lag_warn_mb). */
void metrics_set_retained_wal(uint64_t bytes);
/* Commit time (ms since the epoch) of the newest transaction read; clears caught-up. */
void metrics_set_read_commit_time(int64_t ms);
/* The largest commit-time disorder the stream showed (us; see horizon.h). */
void metrics_set_commit_disorder(int64_t us);
/* Tables a capture pattern takes that cannot be captured (their changes are dead-lettered). */
void metrics_set_refused_tables(uint64_t n);
/* Publishing asked postgresql.wait_for_standbys; it took us (the query, and any wait). */
void metrics_standby_wait(int64_t us);
/* Rows a backfill put into committed Kafka transactions. */
void metrics_backfilled(uint64_t n);
/* Published transactions found beyond a failover's fork (phantoms; slot_start.c). */
void metrics_phantoms(uint64_t n);
/*
 * A failover's fork left published events beyond it (the "timeline fork" error line), named or
 * not: counted once per fork, since metrics_phantoms cannot count what the checkpoint does not name.
 */
void metrics_fork_with_phantoms(void);
/* A backfill runs (open_session): not ready, and not stuck either. */
void metrics_set_backfilling(bool backfilling);
/* The delivery mode for outbox_relay_info (set once, before metrics_start; default at-least-once). */
void metrics_set_delivery(bool exactly_once);
/* The server said it has nothing more to send: the replication lag is 0 until the next read. */
void metrics_set_caught_up(void);
/* Standing by while another relay holds the slot (relay.takeover = "wait"; /readyz: 503 standby). */
void metrics_set_standby(bool standby);
/* A relay that stood by took the slot over and streams. */
void metrics_takeover(void);
/* Another relay took the slot over from this one (fenced in Kafka, or its active/passive lock taken). */
void metrics_fenced(void);
/* The broker aborted a transaction that outlived transaction.timeout.ms; the relay starts over. */
void metrics_kafka_transaction_expired(void);
/* n snapshot rows (op r) went into a committed Kafka transaction. */
void metrics_snapshot_rows(uint64_t n);
/* Tables queued for a snapshot, the one in progress included (0: no snapshot running). */
void metrics_set_snapshot_tables(uint64_t n);
/* Streaming with the producer up (/readyz answers 200), or not (503). */
void metrics_set_ready(bool ready);
bool metrics_ready(void);

/* The exposition text (Prometheus text format 0.0.4), malloc'd; NULL when out of memory. */
char *metrics_render(size_t *len);

#endif

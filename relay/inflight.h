/* inflight.h: the records librdkafka holds, each with what its delivery report needs. */
#ifndef RELAY_INFLIGHT_H
#define RELAY_INFLIGHT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lsn.h"
#include "route.h"

/* A record that is not a source row's (a snapshot row, a checkpoint, a dead letter). */
#define NO_ROW UINT64_MAX

/*
 * What a delivery report needs to know about its record: its PostgreSQL transaction (for the
 * tracker) and, for the metrics, its topic series, size, dead-letter flag and start time.
 */
typedef struct {
	uint64_t seq;     /* PostgreSQL transaction (progress), UINT64_MAX: none */
	int64_t start_ms; /* its commit time (or when read, without one), for the latency */
	uint64_t bytes;   /* key and value */
	uint32_t held;    /* what it takes in librdkafka's queue (relay.max_in_flight_bytes) */
	uint16_t topic;   /* metrics_topic() */
	bool dead_letter;
	bool alone;       /* produced while looking for a refused record: nothing else in its batch */
	lsn_t txn_end;    /* its source row: the transaction's commit end and the row's ordinal */
	uint64_t row;     /* (NO_ROW: not a source row's record) */
} in_flight;

/*
 * The table of records in flight. A record's opaque is its slot's index; slots are reused
 * through a free list, and the table only grows when more records are in flight than ever
 * before (no allocation per record). A zeroed table is empty.
 */
typedef struct {
	in_flight *slots;
	uint32_t *free_ids;
	size_t cap, n_free;
} in_flight_table;

/* A free slot's index (the table grows when none is free; out of memory aborts). */
uint32_t inflight_take(in_flight_table *t);
/* Gives a slot back: its record was reported, or never handed to Kafka. */
void inflight_give(in_flight_table *t, uint32_t id);
/* Frees the table; it is empty (zeroed) afterwards. */
void inflight_free(in_flight_table *t);
/* Memory a record takes in librdkafka until its delivery report: what the in-flight limit counts. */
uint32_t inflight_record_held(const route_msg *m);

#endif

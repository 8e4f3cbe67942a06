/* pending.h: metrics of the open Kafka transaction's records, counted when it commits. */
#ifndef RELAY_PENDING_H
#define RELAY_PENDING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "inflight.h"
#include "metrics.h"

/*
 * Records of the open Kafka transaction (exactly-once): published only once it commits, so
 * they are counted then, with their latency. A zeroed value is empty.
 */
typedef struct {
	uint64_t records[METRICS_TOPIC_SLOTS];
	uint64_t bytes[METRICS_TOPIC_SLOTS];
	uint64_t dead_letters;
	struct latency_run {
		int64_t start_ms;
		uint64_t n;
	} *runs; /* records by start time, in produce order: one run per PostgreSQL transaction */
	size_t n_runs, cap_runs;
	bool any;
} eos_pending_metrics;

/* A record went into the open Kafka transaction. */
void pending_add(eos_pending_metrics *p, const in_flight *f);
/* The open Kafka transaction was aborted (or given up): its records were not published. */
void pending_drop(eos_pending_metrics *p);
/* The open Kafka transaction committed: its records count as published now (metrics.h). */
void pending_publish(eos_pending_metrics *p);
/* Frees what p holds. */
void pending_free(eos_pending_metrics *p);

#endif

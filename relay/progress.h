/* progress.h: which PostgreSQL position Kafka has fully acknowledged, from delivery reports. */
#ifndef RELAY_PROGRESS_H
#define RELAY_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lsn.h"

/*
 * One entry per PostgreSQL transaction, in commit order, from its B record until Kafka has
 * acknowledged all its records and all earlier transactions are done. Records carry the
 * transaction's sequence number as their delivery opaque; entries live in a ring indexed by it.
 */
typedef struct {
	lsn_t nextlsn;     /* end of the commit record: the position to confirm */
	uint64_t pending;  /* records produced and not yet acknowledged */
	bool committed;    /* the C record was seen: no more records will come */
} progress_txn;

typedef struct {
	progress_txn *ring;
	size_t cap;        /* a power of two */
	uint64_t head;     /* sequence number of the oldest unfinished transaction */
	uint64_t tail;     /* sequence number the next transaction gets */
	lsn_t acked;       /* nextlsn of the newest transaction done, with all before it */
	uint64_t in_flight; /* records produced and not yet acknowledged, all transactions */
} progress;

void progress_init(progress *p, lsn_t start);
void progress_free(progress *p);
/* A transaction begins (B record); returns its sequence number. */
uint64_t progress_begin(progress *p, lsn_t nextlsn);
/* One more record of transaction seq was handed to Kafka. */
void progress_produced(progress *p, uint64_t seq);
/* The C record of seq was seen. */
void progress_commit(progress *p, uint64_t seq);
/* Kafka acknowledged one record of seq. */
void progress_acked(progress *p, uint64_t seq);
/* Kafka refused a record of seq: the transaction stays unfinished, so acked never passes it. */
void progress_lost(progress *p, uint64_t seq);
/* True when no transaction is open or waiting for Kafka. */
bool progress_idle(const progress *p);
/* Moves acked forward to a position with nothing before it left (an idle keepalive's). */
void progress_skip_to(progress *p, lsn_t lsn);
/* Forgets every unfinished transaction (after a rewind: they will be read again). */
void progress_reset(progress *p);

#endif

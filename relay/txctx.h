/* txctx.h: the transaction context of published records: xid, commit LSN, index, counts per topic. */
#ifndef RELAY_TXCTX_H
#define RELAY_TXCTX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lsn.h"
#include "strbuf.h"

/* The header names (docs/privacy.md, "Transaction context"). */
#define TXCTX_H_XID "pg_xid"
#define TXCTX_H_LSN "pg_commit_lsn"
#define TXCTX_H_INDEX "pg_txn_index"
/* Most bytes the three headers add to a record on the wire (names, values, varints). */
#define TXCTX_HEADERS_ROOM 96

/* Records one PostgreSQL transaction published to one topic so far. */
typedef struct {
	char *topic; /* owned */
	uint64_t n;
} txctx_topic;

/*
 * The PostgreSQL transaction being published: its xid and commit position (its B record's
 * nextlsn), how many records it published so far (the next record's index) and to which
 * topics, and whether its BEGIN record went out. Pure bookkeeping: no I/O.
 */
typedef struct {
	uint64_t xid;
	lsn_t commit_lsn;
	int64_t commit_ms;  /* its commit time (0: unknown) */
	uint64_t records;   /* counted so far: the next record's index */
	bool begun;         /* its BEGIN was handled (published when the transaction topic is on) */
	bool begin_sent;    /* its BEGIN record went out on the transaction topic */
	bool uncounted;     /* restarted without counts of its earlier parts: none are kept */
	txctx_topic *topics;
	size_t n_topics, cap_topics;
	size_t last;        /* the topic counted last (a cheap first guess) */
} txctx;

/* The three header values of one record, as text in the struct itself (no allocation). */
typedef struct {
	char xid[24];
	char lsn[LSN_TEXT_MAX];
	char index[24];
} txctx_headers;

void txctx_free(txctx *t);
/* A new PostgreSQL transaction (its B record): nothing counted yet. */
void txctx_begin(txctx *t, uint64_t xid, lsn_t commit_lsn, int64_t commit_ms);
/* Fills out with the headers of the transaction's next record (its index: the count so far). */
void txctx_peek(const txctx *t, txctx_headers *out);
/* Counts one more record of the transaction to topic: once Kafka took it. */
void txctx_count(txctx *t, const char *topic);
/* The transaction's id on the transaction topic: "<xid>:<commit LSN>", into buf (64 bytes). */
const char *txctx_id(const txctx *t, char *buf, size_t len);
/* The BEGIN record's value (JSON) into out. */
void txctx_begin_json(const txctx *t, strbuf *out);
/* The END record's value (JSON): the count per topic and in total. */
void txctx_end_json(const txctx *t, strbuf *out);
/*
 * What a checkpoint keeps of a split transaction after rows of its rows were read:
 * {"records":N,"rows":R,"begun":B,"topics":{"t":n,...}} (malloc'd; B: begin_sent); NULL when
 * uncounted.
 */
char *txctx_counts_json(const txctx *t, uint64_t rows);
/*
 * Whether text is counts txctx_counts_json could have written: an object with "records" and
 * "rows" (counts), "begun" (a boolean), "topics" (an object of counts adding up to records,
 * without overflow). rows (NULL: not wanted) gets its "rows" when valid.
 */
bool txctx_counts_valid(const char *text, uint64_t *rows);
/*
 * Starts the counts from what a checkpoint kept (txctx_counts_json's text; NULL: nothing)
 * after rows of the transaction's rows were read; its BEGIN counts as handled only when it went
 * out (else the next record sends it, the topic being on now). -1 when the text is not valid or kept another number of rows (then nothing is
 * counted). NULL or -1 leave the transaction uncounted.
 */
int txctx_restore(txctx *t, const char *json, uint64_t rows);

#endif

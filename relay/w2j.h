/* w2j.h: decoder of wal2json format-version 2 records into spans (no copies, values kept as text). */
#ifndef RELAY_W2J_H
#define RELAY_W2J_H

#include <stdbool.h>
#include <stdint.h>

#include "json_scan.h"
#include "lsn.h"

/* Record kinds, named by wal2json's "action" letter. */
typedef enum {
	W2J_BEGIN = 'B',
	W2J_COMMIT = 'C',
	W2J_INSERT = 'I',
	W2J_UPDATE = 'U',
	W2J_DELETE = 'D',
	W2J_MESSAGE = 'M',
	W2J_TRUNCATE = 'T',
} w2j_action;

/* One decoded record; spans point into the buffer given to w2j_decode and live as long as it. */
typedef struct {
	w2j_action action;
	bool has_xid;
	uint64_t xid;
	lsn_t lsn;     /* start of the change's WAL record (for B and C: of the commit record) */
	lsn_t nextlsn; /* B and C: end of the commit record, the position to confirm */
	json_span timestamp;
	json_span schema;
	json_span table;
	json_span columns;  /* I, U: array of {name, type, value} */
	/* The columns as w2j_decode read them (valid until its next call in this thread), or NULL
	 * when it did not keep them (too many, or not shaped as columns): iterate columns then. */
	const struct w2j_column *cols;
	size_t n_cols;
	json_span identity; /* U, D: the old key (or whole old row with REPLICA IDENTITY FULL) */
	bool transactional; /* M */
	json_span prefix;   /* M */
	json_span content;  /* M */
} w2j_record;

/* One column of a columns/identity array; type is absent (JSON_NONE) without include-types. */
typedef struct w2j_column {
	json_span name;
	json_span type;
	json_span value;
} w2j_column;

/* Most columns w2j_decode keeps for a record (a wider row is read again by iterating). */
#define W2J_KEPT_COLUMNS 64

/*
 * Decodes one record. Returns 0, or -1 with *why set to a static reason when the text is not a
 * well-formed wal2json v2 record (bad JSON, unknown action, a required field missing).
 */
int w2j_decode(const char *buf, size_t len, w2j_record *rec, const char **why);

/* Iterates a columns or identity array: w2j_columns_open, then w2j_columns_next until 0. */
int w2j_columns_open(json_cursor *it, const json_span *array);
/* 1: a column was read; 0: end; -1: malformed column object. */
int w2j_columns_next(json_cursor *it, w2j_column *col);

#endif

/* timeline.h: PostgreSQL timeline histories, and what a fork before the checkpoint means for it. */
#ifndef RELAY_TIMELINE_H
#define RELAY_TIMELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint.h"
#include "lsn.h"
#include "strbuf.h"

/*
 * A promoted standby starts a new timeline. Its history file (TIMELINE_HISTORY <tli> on a
 * replication connection) has one line per ancestor timeline, oldest first:
 * "parentTLI<TAB>switchpoint<TAB>reason", the switchpoint being where the parent ended in this
 * server's history (the end of the last record the standby had; the child begins there). Blank
 * lines and lines starting with '#' (after leading white space) are comments. It is read as
 * PostgreSQL reads it (readTimeLineHistory): the parent timelines increase strictly and are all
 * below the file's own timeline.
 */
typedef enum {
	TIMELINE_ANCESTOR,     /* the timeline asked for is an ancestor: *end is where it ended */
	TIMELINE_NOT_ANCESTOR, /* it is not in the history (another branch, or not older) */
	TIMELINE_MALFORMED,    /* the text is not a history file of timeline current */
} timeline_found;

/*
 * Where timeline tli ended in the history (text, len bytes, not NUL-terminated) of timeline
 * current. Pure: no allocation; any input is safe (it is fuzzed).
 */
timeline_found timeline_switchpoint(const char *text, size_t len, uint32_t current, uint32_t tli,
				    lsn_t *end);

/*
 * What the relay published beyond a fork: the transactions of the checkpoint's timeline that
 * committed after the switchpoint, which the new timeline does not have (phantom events).
 */
typedef struct {
	uint32_t *xids;        /* listed outbox transactions that end after the fork, ascending
				* (malloc'd) */
	size_t n_xids;
	bool partial;          /* a transaction published in parts ends after it: */
	uint32_t partial_xid;  /* its xid (0: not recorded, by an older relay) */
	uint64_t partial_rows; /* how many of its rows are in Kafka */
	bool unnamed;          /* the checkpoint records no commit positions: none can be named */
	bool maybe_more;       /* the fork lies further back than the list reaches */
} timeline_phantoms;

void timeline_phantoms_free(timeline_phantoms *ph);

/*
 * Cuts a checkpoint back to a fork at lsn fork: what lies beyond it is put into *ph (zeroed
 * first), the position becomes min(cp->lsn, fork), a partial transaction ending beyond the fork
 * is dropped, and rec loses the xids ending beyond it (on the new timeline those xids are free
 * again and may name other transactions). rec's commit time stays. Returns true when anything
 * published lies beyond the fork (cp->lsn or a partial transaction past it).
 */
bool timeline_cut(checkpoint *cp, checkpoint_recovery *rec, lsn_t fork, timeline_phantoms *ph);

/*
 * Appends ascending xids to out, consecutive ones as a run ("7, 9-12"), and stops after the run
 * that brings what it appended to max bytes or more (a log line has a limit). Returns how many
 * xids it wrote; call again with the rest (and a fresh line) for the others.
 */
size_t timeline_format_xids(strbuf *out, const uint32_t *xids, size_t n, size_t max);

#endif

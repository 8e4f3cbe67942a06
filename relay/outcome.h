/* outcome.h: what a step asks for next: the one result every stage of the relay returns. */
#ifndef RELAY_OUTCOME_H
#define RELAY_OUTCOME_H

/*
 * One vocabulary for every step (the loop's stages, the session's set-up, Kafka transactions):
 * session.c's end_of_session is the one place that acts on how a session ended.
 */
typedef enum {
	OUTCOME_OK,     /* done: go on */
	OUTCOME_STOP,   /* SIGTERM or SIGINT: stop cleanly */
	OUTCOME_RETRY,  /* the server or a connection was lost or did not answer: keep what is
			 * whole, connect again (set-up steps: after a backoff) */
	OUTCOME_REWIND, /* Kafka refused for a reason that may pass: the open Kafka transaction is
			 * (or will be) aborted, read again from what Kafka committed */
	OUTCOME_FATAL,  /* nothing to retry: exit non-zero (the log says why) */
} outcome;

#endif

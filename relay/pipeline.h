/* pipeline.h: the stages a built record passes before it is produced: transform, then encode. */
#ifndef RELAY_PIPELINE_H
#define RELAY_PIPELINE_H

#include "record.h"

/*
 * The stages after build, in order: transform (transform.h), then encode (encode.h). Every
 * builder's record passes here before its size is checked and before it is produced, so those
 * see the bytes that go out. The builders check UTF-8 of outbox rows and changes themselves
 * (route.c, capture.c; a snapshot row's and a key change's after this stage): a transform that
 * writes text must write UTF-8. ENCODE_OK (0), or with *why: ENCODE_REJECT (-1: the row is
 * dead-lettered, or stops the relay, like any row that cannot be published), ENCODE_HOLD (a
 * service the format needs is down: read again later) or ENCODE_STOP (encode.h).
 *
 *   stream -> decode (w2j) -> dispatch -> build (route, capture) -> pipeline_finish ->
 *   produce (publish) -> delivery report (inflight) -> commit (txn) -> confirm (status)
 */
int pipeline_finish(record_kind kind, const char *source, route_msg *m, const char **why);
/* The same in a format of the configuration ("json", "avro"; NULL: JSON). */
int pipeline_finish_as(record_kind kind, const char *source, const char *format, route_msg *m,
		       const char **why);

#endif

/* transform.h: the transform stage: changes a built record's fields before it is encoded. */
#ifndef RELAY_TRANSFORM_H
#define RELAY_TRANSFORM_H

#include "record.h"

/*
 * Applies the transforms configured for the record's source, in order. Today there are none:
 * the record passes unchanged. This is where field protection of identity data goes: a
 * transform rewrites rec->msg (its buffers are the transform's own until its next call).
 * 0, or -1 with *why when the record must not be published as it is (it is dead-lettered).
 */
int transform_apply(record *rec, const char **why);

#endif

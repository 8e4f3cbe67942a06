/* inflight.c: the records librdkafka holds, each with what its delivery report needs. */
#include "inflight.h"

#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

/*
 * What librdkafka holds per queued record besides its key and value (its message structure,
 * the header list): counted against relay.max_in_flight_bytes, so the limit bounds memory.
 */
#define RECORD_OVERHEAD 256
#define HEADER_OVERHEAD 32

/* Slots are taken from the free list; only more records in flight than ever before grow it. */
uint32_t inflight_take(in_flight_table *t)
{
	if (t->n_free == 0) {
		size_t ncap = t->cap ? t->cap * 2 : 1024;
		t->slots = xrealloc(t->slots, ncap * sizeof(*t->slots));
		t->free_ids = xrealloc(t->free_ids, ncap * sizeof(*t->free_ids));
		for (size_t i = ncap; i > t->cap; i--)
			t->free_ids[t->n_free++] = (uint32_t)(i - 1);
		t->cap = ncap;
	}
	return t->free_ids[--t->n_free];
}

void inflight_give(in_flight_table *t, uint32_t id) { t->free_ids[t->n_free++] = id; }

void inflight_free(in_flight_table *t)
{
	free(t->slots);
	free(t->free_ids);
	memset(t, 0, sizeof(*t));
}

/* Memory a record takes in librdkafka until its delivery report: what the in-flight limit counts. */
uint32_t inflight_record_held(const route_msg *m)
{
	size_t n = RECORD_OVERHEAD + m->key_len + m->value_len;
	for (size_t i = 0; i < m->n_headers; i++)
		n += HEADER_OVERHEAD + m->headers[i].name_len + m->headers[i].value_len;
	return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

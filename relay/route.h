/* route.h: turns a decoded outbox row into a Kafka record (topic, key, value, headers). */
#ifndef RELAY_ROUTE_H
#define RELAY_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "w2j.h"

typedef struct {
	const char *name;
	size_t name_len;
	const char *value; /* NULL for a JSON null */
	size_t value_len;
} route_header;

/* A record ready to produce; pointers stay valid until the router's next call. */
typedef struct {
	const char *topic; /* NUL-terminated */
	const char *key;   /* NULL: no key */
	size_t key_len;
	const char *value; /* NULL: a null value */
	size_t value_len;
	route_header *headers;
	size_t n_headers;
} route_msg;

typedef struct router router;

/* Compiles the topic template and table list; NULL with a message in err when they are invalid. */
router *router_new(const relay_config *cfg, char *err, size_t errlen);
void router_free(router *r);
/* True when the record is a change of one of the configured outbox tables. */
bool router_is_outbox(const router *r, const w2j_record *rec);
/*
 * Maps an outbox insert to a record. Returns 0, or -1 with *why set when the row cannot be
 * published as it is (a missing column, a headers value that is not a JSON object, a topic
 * name Kafka would reject).
 */
int router_outbox(router *r, const w2j_record *rec, route_msg *out, const char **why);

#endif

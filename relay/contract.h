/* contract.h: the contracts of event types: Avro schema files <event_type>.avsc and <event_type>.v<N>.avsc, compiled. */
#ifndef RELAY_CONTRACT_H
#define RELAY_CONTRACT_H

#include <stddef.h>

#include "avjson.h"
#include "registry.h"
#include "route.h"

/* One schema file: the contract of one event type at one version. */
typedef struct {
	char *event_type;
	int version;     /* N of <event_type>.v<N>.avsc; 0 for <event_type>.avsc (events without one) */
	char *file;      /* the file's name in the directory, for messages */
	avjson_codec *codec;
} contract;

/* Every contract of a schema directory. */
typedef struct contract_set contract_set;

/*
 * Reads and compiles every .avsc file of dir (each parsed and checked now). NULL with err naming
 * the file and what is wrong, or the directory when it cannot be read. dir NULL: an empty set.
 */
contract_set *contract_set_load(const char *dir, char *err, size_t errlen);
/* The same for cfg's schema_registry.schema_dir, err starting "FILE:LINE: " (where it is set). */
contract_set *contract_set_load_cfg(const relay_config *cfg, char *err, size_t errlen);
/*
 * The contracts kept in the schema registry (schema_registry.contract_prefix, docs/schemas.md):
 * every subject <prefix><event_type>, its version N the contract of event_type at version N, its
 * latest version also the contract of events without a version. REGISTRY_OK with *out;
 * REGISTRY_DOWN with err (no answer, 5xx, 401, 404: try again); REGISTRY_REFUSED with err (the
 * registry will not list subjects or versions (400, 403, 405), a schema that is not Avro or that
 * libavro refuses, or no subject with that prefix).
 */
registry_result contract_set_fetch(registry *reg, const char *prefix, contract_set **out, char *err,
				   size_t errlen);
/*
 * For a format whose contracts come from the registry: fetches them into *set once (*set NULL
 * until then), as contract_set_fetch; REGISTRY_OK when they are there (fetched now or before).
 */
registry_result contract_set_ensure(contract_set **set, registry *reg, const char *prefix,
				    char *why, size_t whylen);
void contract_set_free(contract_set *s);
/* How many contracts the set holds (NULL: none); contract_at(s, i) for i below that. */
size_t contract_set_count(const contract_set *s);
const contract *contract_at(const contract_set *s, size_t i);
/*
 * The index of the contract of a record: its event_type header and its schema_version (the
 * sources[].schema_version column or envelope member, route.h; never a header of the headers
 * object; absent or null: the unversioned file). -1 with a reason in why (no event type, a version that
 * is not a positive integer, no file for that type or version).
 */
long contract_find(const contract_set *s, const route_msg *m, char *why, size_t whylen);

#endif

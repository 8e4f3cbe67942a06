/* contract.h: the contracts of event types: Avro schema files <event_type>.avsc and <event_type>.v<N>.avsc, compiled. */
#ifndef RELAY_CONTRACT_H
#define RELAY_CONTRACT_H

#include <stddef.h>

#include "avjson.h"
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
void contract_set_free(contract_set *s);
/* How many contracts the set holds; contract_at(s, i) for i below that. */
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

/* encode_contract.h: the JSON format with a contract: the value published unchanged once it fits its event type's Avro schema. */
#ifndef RELAY_ENCODE_CONTRACT_H
#define RELAY_ENCODE_CONTRACT_H

#include <stddef.h>

#include "config.h"
#include "record.h"

/*
 * The format's state: every schema file of cfg->schema_dir read and compiled (contract.h); a bad
 * file stops the start with its name; no registry is needed. With schema_registry.contract_prefix
 * the contracts are the registry's instead, fetched by encode_contract_start. NULL with err.
 */
void *encode_contract_setup(const relay_config *cfg, char *err, size_t errlen);
/*
 * Before streaming: the registry's contracts fetched (ENCODE_OK; a registry that is down is
 * logged and asked again at the first event, which holds back), or ENCODE_STOP with err (none
 * with the prefix, one that does not compile, a registry that will not list them).
 */
int encode_contract_start(void *state, const relay_config *cfg, char *err, size_t errlen);
/* Frees the schemas. */
void encode_contract_teardown(void *state);
/*
 * Checks the record's JSON value against the schema of its event_type and schema_version
 * headers (contract_find) without changing a byte of it: ENCODE_OK, or ENCODE_REJECT with *why
 * naming the field and the rule (or the missing schema file). A tombstone (NULL value) passes.
 * ENCODE_HOLD / ENCODE_STOP while the registry's contracts cannot be fetched.
 */
int encode_contract(void *state, record *rec, const char **why);

#endif

/* encode_contract.c: the JSON format with a contract: the value published unchanged once it fits its event type's Avro schema. */
#include "encode_contract.h"

#include <stdlib.h>

#include "avjson.h"
#include "contract.h"
#include "encode.h"
#include "log.h"
#include "registry.h"
#include "xalloc.h"

/* The format's state: the contracts, and room for the reason of a refusal. */
typedef struct {
	contract_set *contracts; /* NULL while those of the registry are not fetched yet */
	registry *reg;           /* with schema_registry.contract_prefix: where they are */
	const char *prefix;
	char why[512];
} contract_state;

void *encode_contract_setup(const relay_config *cfg, char *err, size_t errlen)
{
	contract_state *st = xcalloc(1, sizeof(*st));

	if (cfg->contract_prefix[0]) { /* fetched at start (encode_contract_start) */
		st->prefix = cfg->contract_prefix;
		registry_tls tls = {cfg->registry_ca_file, cfg->registry_cert_file,
				    cfg->registry_key_file, cfg->registry_key_password};
		st->reg = registry_new(cfg->registry_url, cfg->registry_user, cfg->registry_password,
				       &tls, cfg->registry_timeout_ms, false);
	} else if (!(st->contracts = contract_set_load_cfg(cfg, err, errlen))) {
		free(st);
		return NULL;
	}
	return st;
}

/* Contracts in the registry: fetched now, or (the registry down) before the first event. */
int encode_contract_start(void *state, const relay_config *cfg, char *err, size_t errlen)
{
	contract_state *st = state;
	(void)cfg;

	if (!st->reg)
		return ENCODE_OK;
	registry_result rr = contract_set_ensure(&st->contracts, st->reg, st->prefix, err, errlen);
	if (rr == REGISTRY_DOWN) {
		log_warn("cannot fetch the contracts from the schema registry at start: %s; starting "
			 "anyway: the first event with a contract waits for them (the stream holds back)",
			 err);
		return ENCODE_OK;
	}
	return rr == REGISTRY_OK ? ENCODE_OK : ENCODE_STOP;
}

void encode_contract_teardown(void *state)
{
	contract_state *st = state;

	contract_set_free(st->contracts);
	registry_free(st->reg);
	free(st);
}

/* The check is the Avro conversion itself (the same rules, docs/schemas.md); its bytes are dropped. */
int encode_contract(void *state, record *rec, const char **why)
{
	contract_state *st = state;
	const route_msg *m = rec->msg;
	char *out;
	size_t len;
	long ci;
	registry_result rr;

	if (!m->value)
		return ENCODE_OK;
	if (st->reg && (rr = contract_set_ensure(&st->contracts, st->reg, st->prefix, st->why,
						 sizeof(st->why))) != REGISTRY_OK)
		return *why = st->why, rr == REGISTRY_DOWN ? ENCODE_HOLD : ENCODE_STOP;
	if ((ci = contract_find(st->contracts, m, st->why, sizeof(st->why))) < 0 ||
	    avjson_encode(contract_at(st->contracts, (size_t)ci)->codec, m->value, m->value_len, 0,
			  &out, &len, st->why, sizeof(st->why)) < 0)
		return *why = st->why, ENCODE_REJECT;
	return ENCODE_OK;
}

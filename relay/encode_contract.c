/* encode_contract.c: the JSON format with a contract: the value published unchanged once it fits its event type's Avro schema. */
#include "encode_contract.h"

#include <stdlib.h>

#include "avjson.h"
#include "contract.h"
#include "encode.h"
#include "xalloc.h"

/* The format's state: the contracts, and room for the reason of a refusal. */
typedef struct {
	contract_set *contracts;
	char why[512];
} contract_state;

void *encode_contract_setup(const relay_config *cfg, char *err, size_t errlen)
{
	contract_state *st = xcalloc(1, sizeof(*st));

	if (!(st->contracts = contract_set_load_cfg(cfg, err, errlen))) {
		free(st);
		return NULL;
	}
	return st;
}

void encode_contract_teardown(void *state)
{
	contract_state *st = state;

	contract_set_free(st->contracts);
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

	if (!m->value)
		return ENCODE_OK;
	if ((ci = contract_find(st->contracts, m, st->why, sizeof(st->why))) < 0 ||
	    avjson_encode(contract_at(st->contracts, (size_t)ci)->codec, m->value, m->value_len, 0,
			  &out, &len, st->why, sizeof(st->why)) < 0)
		return *why = st->why, ENCODE_REJECT;
	return ENCODE_OK;
}

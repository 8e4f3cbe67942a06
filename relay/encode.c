/* encode.c: the encode stage: a built, transformed record into the bytes of its format. */
#include "encode.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "encode_avro.h"
#include "encode_contract.h"
#include "encode_json.h"
#include "xalloc.h"

/* Every format: a new one is one module and one row here. */
static const encoder formats[] = {
	{"json", NULL, NULL, encode_json, NULL},
	{"avro", encode_avro_setup, encode_avro_teardown, encode_avro, encode_avro_start},
	/* json with sources[].contract = true: not a name the configuration accepts as a format */
	{"json-contract", encode_contract_setup, encode_contract_teardown, encode_contract,
	 encode_contract_start},
};
#define N_FORMATS (sizeof(formats) / sizeof(formats[0]))

struct encoders {
	void *state[N_FORMATS]; /* each format's, NULL when it has none or is not used */
};

const encoder *encode_find(const char *name)
{
	for (size_t i = 0; i < N_FORMATS; i++)
		if (strcmp(formats[i].name, name) == 0)
			return &formats[i];
	return NULL;
}

/* True when some outbox source or capture entry of the configuration uses the format. */
static bool format_used(const relay_config *cfg, const char *name)
{
	if (strcmp(name, "avro") == 0)
		return cfg->any_avro || cfg->capture_avro;
	if (strcmp(name, "json-contract") == 0)
		return cfg->any_contract;
	return true;
}

encoders *encode_new(const relay_config *cfg, char *err, size_t errlen)
{
	encoders *e = xcalloc(1, sizeof(*e));

	for (size_t i = 0; i < N_FORMATS; i++) {
		if (!formats[i].setup || !format_used(cfg, formats[i].name))
			continue;
		if (!(e->state[i] = formats[i].setup(cfg, err, errlen))) {
			encode_free(e);
			return NULL;
		}
	}
	return e;
}

void encode_free(encoders *e)
{
	if (!e)
		return;
	for (size_t i = 0; i < N_FORMATS; i++)
		if (e->state[i])
			formats[i].teardown(e->state[i]);
	free(e);
}

int encode_start(encoders *e, const relay_config *cfg, char *err, size_t errlen)
{
	for (size_t i = 0; i < N_FORMATS; i++) {
		int rc = e->state[i] && formats[i].start ? formats[i].start(e->state[i], cfg, err, errlen)
							 : ENCODE_OK;
		if (rc != ENCODE_OK)
			return rc;
	}
	return ENCODE_OK;
}

/* A record without a format is JSON. */
int encode_record(encoders *e, record *rec, const char **why)
{
	const encoder *f = rec->format ? encode_find(rec->format) : NULL;

	if (!f)
		f = &formats[0];
	return f->encode(e->state[f - formats], rec, why);
}

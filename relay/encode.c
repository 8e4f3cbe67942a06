/* encode.c: the encode stage: a built, transformed record into the bytes of its format. */
#include "encode.h"

#include <string.h>

#include "encode_avro.h"
#include "encode_json.h"

/* Every format: a new one is one module and one row here. */
static const encoder encoders[] = {
	{"json", encode_json},
	{"avro", encode_avro},
};

const encoder *encode_find(const char *name)
{
	for (size_t i = 0; i < sizeof(encoders) / sizeof(encoders[0]); i++)
		if (strcmp(encoders[i].name, name) == 0)
			return &encoders[i];
	return NULL;
}

/* Only Avro has state (schemas, the registry client); JSON needs nothing. */
int encode_setup(const relay_config *cfg, char *err, size_t errlen)
{
	return cfg->any_avro ? encode_avro_setup(cfg, err, errlen) : 0;
}

void encode_teardown(void) { encode_avro_teardown(); }

/* A record without a format is JSON: captured tables and snapshot rows (for now). */
int encode_record(record *rec, const char **why)
{
	const encoder *e = rec->format ? encode_find(rec->format) : NULL;

	return (e ? e : &encoders[0])->encode(rec, why);
}

/* encode.c: the encode stage: a built, transformed record into the bytes of its format. */
#include "encode.h"

#include <string.h>

#include "encode_json.h"

/* Every format: a new one (Avro) is one module and one row here. */
static const encoder encoders[] = {
	{"json", encode_json},
};

const encoder *encode_find(const char *name)
{
	for (size_t i = 0; i < sizeof(encoders) / sizeof(encoders[0]); i++)
		if (strcmp(encoders[i].name, name) == 0)
			return &encoders[i];
	return NULL;
}

/* Every source is JSON until formats can be configured per source. */
int encode_record(record *rec, const char **why)
{
	return encode_find("json")->encode(rec, why);
}

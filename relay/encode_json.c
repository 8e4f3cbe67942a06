/* encode_json.c: the JSON format: the record as the build stage wrote it (UTF-8 JSON text). */
#include "encode_json.h"

/* Byte for byte what route.c and capture.c built: the JSON format's contract since 0.1. */
int encode_json(void *state, record *rec, const char **why)
{
	(void)state;
	(void)rec;
	(void)why;
	return 0;
}

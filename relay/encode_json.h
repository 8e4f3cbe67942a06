/* encode_json.h: the JSON format: the record as the build stage wrote it (UTF-8 JSON text). */
#ifndef RELAY_ENCODE_JSON_H
#define RELAY_ENCODE_JSON_H

#include "record.h"

/* JSON: the builders write JSON already, so the record is left as it is; always 0. */
int encode_json(void *state, record *rec, const char **why);

#endif

/* jansson_oracle.c: jansson's parse of a fuzz input, the reference fuzz_json compares against. */
#include "jansson_oracle.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

oracle_kind jansson_oracle(const char *buf, size_t len, char **str, size_t *str_len)
{
	json_error_t err;
	json_t *j = json_loadb(buf, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
	oracle_kind k = ORACLE_REJECTED;

	*str = NULL;
	*str_len = 0;
	if (!j)
		return k;
	switch (json_typeof(j)) {
	case JSON_OBJECT: k = ORACLE_OBJECT; break;
	case JSON_ARRAY: k = ORACLE_ARRAY; break;
	case JSON_STRING:
		k = ORACLE_STRING;
		*str_len = json_string_length(j);
		*str = malloc(*str_len ? *str_len : 1);
		if (*str_len)
			memcpy(*str, json_string_value(j), *str_len);
		break;
	case JSON_INTEGER:
	case JSON_REAL: k = ORACLE_NUMBER; break;
	case JSON_TRUE: k = ORACLE_TRUE; break;
	case JSON_FALSE: k = ORACLE_FALSE; break;
	case JSON_NULL: k = ORACLE_NULL; break;
	}
	json_decref(j);
	return k;
}

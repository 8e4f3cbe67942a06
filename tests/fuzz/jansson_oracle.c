/* jansson_oracle.c: jansson's parse of a fuzz input, the reference fuzz_json compares against. */
#include "jansson_oracle.h"

#include <jansson.h>
#include <stdbool.h>
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

/* True when an array index part (digits, no leading zero, at most 9) is idx. */
static bool oracle_index_is(const char *part, size_t n, size_t idx)
{
	if (n > 9 || strspn(part, "0123456789") != n || (n > 1 && part[0] == '0') || n == 0)
		return false;
	return strtoul(part, NULL, 10) == idx;
}

/* A value the path reached: null, or a string starting with one of the replacement marks. */
static bool oracle_value_replaced(const json_t *v, const char *marks)
{
	if (json_is_null(v))
		return true;
	return json_is_string(v) && json_string_length(v) > 0 &&
	       strchr(marks, json_string_value(v)[0]) != NULL;
}

/* Walks v along parts[depth..]: every value reached must be replaced. */
static bool oracle_walk(const json_t *v, const char *const *parts, const size_t *lens, int depth,
			int n_parts, const char *marks)
{
	const char *part = parts[depth];
	size_t n = lens[depth];
	bool all = n == 1 && part[0] == '*', last = depth + 1 == n_parts;

	if (json_is_object(v)) {
		for (void *it = json_object_iter((json_t *)v); it;
		     it = json_object_iter_next((json_t *)v, it)) {
			const json_t *m = json_object_iter_value(it);
			if (!all && (json_object_iter_key_len(it) != n ||
				     memcmp(json_object_iter_key(it), part, n) != 0))
				continue;
			if (last ? !oracle_value_replaced(m, marks)
				 : !oracle_walk(m, parts, lens, depth + 1, n_parts, marks))
				return false;
		}
	} else if (json_is_array(v)) {
		for (size_t i = 0; i < json_array_size(v); i++) {
			const json_t *m = json_array_get(v, i);
			if (!all && !oracle_index_is(part, n, i))
				continue;
			if (last ? !oracle_value_replaced(m, marks)
				 : !oracle_walk(m, parts, lens, depth + 1, n_parts, marks))
				return false;
		}
	}
	return true;
}

bool jansson_oracle_replaced(const char *buf, size_t len, const char *const *parts,
			     const size_t *lens, int n_parts, const char *marks)
{
	json_error_t err;
	json_t *j = json_loadb(buf, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
	bool ok;

	if (!j)
		return false;
	ok = n_parts == 0 || oracle_walk(j, parts, lens, 0, n_parts, marks);
	json_decref(j);
	return ok;
}

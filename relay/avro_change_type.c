/* avro_change_type.c: a PostgreSQL column type (format_type's text) mapped to the Avro type of captured tables. */
#include "avro_change_type.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One type name (without typmod) and its kind. */
typedef struct {
	const char *name;
	avro_change_kind kind;
} type_row;

/* The mapped names; everything else is ACT_STRING (its text). */
static const type_row types[] = {
	{"smallint", ACT_INT},
	{"integer", ACT_INT},
	{"bigint", ACT_LONG},
	{"oid", ACT_LONG},
	{"real", ACT_FLOAT},
	{"double precision", ACT_DOUBLE},
	{"numeric", ACT_VARDECIMAL},
	{"boolean", ACT_BOOLEAN},
	{"bytea", ACT_BYTES},
	{"date", ACT_DATE},
	{"timestamp without time zone", ACT_LOCAL_TS},
	{"timestamp with time zone", ACT_TS},
	{"time without time zone", ACT_TIME},
	{"uuid", ACT_UUID},
	{"json", ACT_JSON},
	{"jsonb", ACT_JSON},
	{"interval", ACT_INTERVAL},
};

/* The built-in range types: their bounds' kind and the record's name. */
static const struct {
	const char *pg, *record;
	avro_change_kind of;
} ranges[] = {
	{"int4range", "Int4Range", ACT_INT},
	{"int8range", "Int8Range", ACT_LONG},
	{"numrange", "NumRange", ACT_VARDECIMAL},
	{"tsrange", "TsRange", ACT_LOCAL_TS},
	{"tstzrange", "TstzRange", ACT_TS},
	{"daterange", "DateRange", ACT_DATE},
};
#define N_RANGES (sizeof(ranges) / sizeof(ranges[0]))

/*
 * The name without its typmod: "timestamp(3) with time zone" -> "timestamp with time zone",
 * "numeric(10,2)" -> "numeric" (with the typmod's numbers in *a, *b; -1 when absent).
 */
static void strip_typmod(const char *in, size_t len, char *out, size_t cap, int *a, int *b)
{
	size_t k = 0;

	*a = *b = -1;
	for (size_t i = 0; i < len && k + 1 < cap; i++) {
		if (in[i] != '(') {
			out[k++] = in[i];
			continue;
		}
		char *end;
		*a = (int)strtol(in + i + 1, &end, 10);
		if (*end == ',')
			*b = (int)strtol(end + 1, &end, 10);
		const char *close = memchr(in + i, ')', len - i);
		if (!close)
			break;
		i = (size_t)(close - in);
	}
	out[k] = '\0';
}

void avro_change_map(const char *pg_type, avro_change_type *out)
{
	char base[128];
	size_t len = pg_type ? strlen(pg_type) : 0;
	int a, b;

	memset(out, 0, sizeof(*out));
	out->kind = ACT_STRING;
	if (!pg_type || len >= sizeof(base))
		return;
	if (len > 2 && strcmp(pg_type + len - 2, "[]") == 0) {
		out->dims = 1;
		len -= 2;
	}
	strip_typmod(pg_type, len, base, sizeof(base), &a, &b);
	if (strncmp(base, "interval ", 9) == 0)
		base[8] = '\0'; /* "interval day to second": the fields limit the value, not its text */
	if (strcmp(base, "box") == 0)
		out->dims = 0; /* box[] separates elements with ';': kept as its text */
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(types[i].name, base) == 0)
			out->kind = types[i].kind;
	for (size_t i = 0; i < N_RANGES; i++)
		if (strcmp(ranges[i].pg, base) == 0) {
			out->kind = ACT_RANGE;
			out->range_of = ranges[i].of;
		}
	if (out->kind == ACT_VARDECIMAL && a > 0) { /* numeric(p,s): PostgreSQL prints both */
		out->kind = ACT_DECIMAL;
		out->precision = a;
		out->scale = b < 0 ? 0 : b;
		if (b < 0) /* numeric(3,-2) holds 12300: five digits, none after the point */
			out->precision = a - b;
		if (b > a) /* numeric(2,5) holds 0.00012: Avro needs precision >= scale */
			out->precision = b;
	}
}

void avro_change_map_column(const char *pg_type, int attndims, avro_change_type *out)
{
	avro_change_map(pg_type, out);
	if (out->dims > 0 && attndims > 1)
		out->dims = attndims;
}

static void scalar_json(strbuf *b, avro_change_kind kind, const avro_change_type *t,
			uint64_t *defined);

/*
 * True the first time a schema names the record of bit (defined: the schema's named records so
 * far), which it then has; false when it is defined already.
 */
static bool first_use(uint64_t *defined, unsigned bit)
{
	if (*defined & (UINT64_C(1) << bit))
		return false;
	*defined |= UINT64_C(1) << bit;
	return true;
}

/* A named record of the namespace: its definition the first time, its full name after. */
static bool named_record(strbuf *b, const char *name, uint64_t *defined, unsigned bit)
{
	if (!first_use(defined, bit)) {
		strbuf_addf(b, "\"" AVRO_CHANGE_NAMESPACE ".%s\"", name);
		return false;
	}
	strbuf_addf(b, "{\"type\":\"record\",\"name\":\"%s\",\"namespace\":\"" AVRO_CHANGE_NAMESPACE
		    "\",\"fields\":[", name);
	return true;
}

/* A range's record: its bounds nullable (null: unbounded), the flags PostgreSQL prints. */
static void range_json(strbuf *b, const avro_change_type *t, uint64_t *defined)
{
	size_t i = 0;

	while (i + 1 < N_RANGES && ranges[i].of != t->range_of)
		i++;
	if (!named_record(b, ranges[i].record, defined, 32 + (unsigned)t->range_of))
		return;
	STRBUF_ADD_LIT(b, "{\"name\":\"lower\",\"type\":[\"null\",");
	scalar_json(b, t->range_of, t, defined);
	STRBUF_ADD_LIT(b, "]},{\"name\":\"upper\",\"type\":[\"null\",");
	scalar_json(b, t->range_of, t, defined);
	STRBUF_ADD_LIT(b, "]},{\"name\":\"lower_inclusive\",\"type\":\"boolean\"},"
			  "{\"name\":\"upper_inclusive\",\"type\":\"boolean\"},"
			  "{\"name\":\"empty\",\"type\":\"boolean\"}]}");
}

/* The element's or column's own type of kind (not an array). */
static void scalar_json(strbuf *b, avro_change_kind kind, const avro_change_type *t,
			uint64_t *defined)
{
	switch (kind) {
	case ACT_INT: STRBUF_ADD_LIT(b, "\"int\""); break;
	case ACT_LONG: STRBUF_ADD_LIT(b, "\"long\""); break;
	case ACT_FLOAT: STRBUF_ADD_LIT(b, "\"float\""); break;
	case ACT_DOUBLE: STRBUF_ADD_LIT(b, "\"double\""); break;
	case ACT_BOOLEAN: STRBUF_ADD_LIT(b, "\"boolean\""); break;
	case ACT_BYTES: STRBUF_ADD_LIT(b, "\"bytes\""); break;
	case ACT_DECIMAL:
		strbuf_addf(b, "{\"type\":\"bytes\",\"logicalType\":\"decimal\",\"precision\":%d,"
			    "\"scale\":%d}", t->precision, t->scale);
		break;
	case ACT_VARDECIMAL:
		if (named_record(b, "VariableScaleDecimal", defined, ACT_VARDECIMAL))
			STRBUF_ADD_LIT(b, "{\"name\":\"scale\",\"type\":\"int\"},"
					  "{\"name\":\"value\",\"type\":\"bytes\"}]}");
		break;
	case ACT_INTERVAL:
		if (named_record(b, "Interval", defined, ACT_INTERVAL))
			STRBUF_ADD_LIT(b, "{\"name\":\"months\",\"type\":\"int\"},{\"name\":\"days\","
					  "\"type\":\"int\"},{\"name\":\"microseconds\",\"type\":\"long\"}]}");
		break;
	case ACT_RANGE: range_json(b, t, defined); break;
	case ACT_DATE: STRBUF_ADD_LIT(b, "{\"type\":\"int\",\"logicalType\":\"date\"}"); break;
	case ACT_LOCAL_TS:
		STRBUF_ADD_LIT(b, "{\"type\":\"long\",\"logicalType\":\"local-timestamp-micros\"}");
		break;
	case ACT_TS: STRBUF_ADD_LIT(b, "{\"type\":\"long\",\"logicalType\":\"timestamp-micros\"}"); break;
	case ACT_TIME: STRBUF_ADD_LIT(b, "{\"type\":\"long\",\"logicalType\":\"time-micros\"}"); break;
	case ACT_UUID: STRBUF_ADD_LIT(b, "{\"type\":\"string\",\"logicalType\":\"uuid\"}"); break;
	case ACT_STRING:
	case ACT_JSON: STRBUF_ADD_LIT(b, "\"string\""); break;
	}
}

void avro_change_type_json(strbuf *b, const avro_change_type *t, uint64_t *defined)
{
	uint64_t own = 0;

	if (!defined)
		defined = &own;
	for (int d = 0; d < t->dims; d++)
		STRBUF_ADD_LIT(b, "{\"type\":\"array\",\"items\":");
	if (t->dims > 0)
		STRBUF_ADD_LIT(b, "[\"null\",");
	scalar_json(b, t->kind, t, defined);
	if (t->dims > 0)
		STRBUF_ADD_LIT(b, "]");
	for (int d = 0; d < t->dims; d++)
		STRBUF_ADD_LIT(b, "}");
}

void avro_change_name(strbuf *b, const char *name, size_t len)
{
	if (len == 0 || (name[0] >= '0' && name[0] <= '9'))
		strbuf_addc(b, '_');
	for (size_t i = 0; i < len; i++) {
		char ch = name[i];
		bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			  (ch >= '0' && ch <= '9') || ch == '_';
		strbuf_addc(b, ok ? ch : '_');
	}
}

/* pgvalue.c: SQL expressions printing values as wal2json does (snapshots and backfills). */
#include "pgvalue.h"

#include <stdio.h>

/* Type OIDs (pg_type.dat) that decide how a value is printed. */
#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_INT2 21
#define OID_INT4 23
#define OID_OID 26
#define OID_JSON 114
#define OID_FLOAT4 700
#define OID_FLOAT8 701
#define OID_NUMERIC 1700
#define OID_JSONB 3802
#define OID_BPCHAR 1042

void pgvalue_expr(char *out, size_t len, const char *qcol, unsigned oid, bool json_as_text)
{
	switch (oid) {
	case OID_OID: /* row_to_json prints an oid as a string; wal2json as a number */
		snprintf(out, len, "t.%s::int8", qcol);
		break;
	case OID_BPCHAR: /* ::text drops char(n)'s padding; its output function (wal2json's) keeps it */
		snprintf(out, len, "CASE WHEN t.%s IS NULL THEN NULL ELSE format('%%s', t.%s) END", qcol,
			 qcol);
		break;
	case OID_JSON:
	case OID_JSONB:
		snprintf(out, len, json_as_text ? "t.%s::text" : "t.%s", qcol);
		break;
	case OID_INT2:
	case OID_INT4:
	case OID_INT8:
	case OID_BOOL:
		snprintf(out, len, "t.%s", qcol);
		break;
	case OID_FLOAT4:
	case OID_FLOAT8:
	case OID_NUMERIC: /* wal2json prints NaN and infinities as null */
		snprintf(out, len, "CASE WHEN t.%s::text IN ('NaN', 'Infinity', '-Infinity') THEN NULL "
			 "ELSE t.%s END", qcol, qcol);
		break;
	case OID_BYTEA:
		snprintf(out, len, "encode(t.%s, 'hex')", qcol);
		break;
	default:
		snprintf(out, len, "t.%s::text", qcol);
	}
}

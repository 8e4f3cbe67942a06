/* fuzz_w2j.c: libFuzzer target for relay/w2j.c: decode a wal2json record, iterate its columns and identity. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "w2j.h"

static void columns(const json_span *array, const char *buf, size_t len)
{
	json_cursor it;
	w2j_column col;
	int r;

	/* Only changes (I U D T) promise arrays; B, C and M records may carry anything there. */
	if (array->kind != JSON_ARRAY)
		return;
	FUZZ_CHECK(w2j_columns_open(&it, array) == 0);
	while ((r = w2j_columns_next(&it, &col)) == 1) {
		FUZZ_CHECK(col.name.kind == JSON_STRING);
		fuzz_span_inside(&col.name, buf, len);
		fuzz_span_inside(&col.type, buf, len);
		fuzz_span_inside(&col.value, buf, len);
		fuzz_unescape(&col.name, NULL);
		if (col.type.kind == JSON_STRING)
			fuzz_unescape(&col.type, NULL);
		if (col.value.kind == JSON_STRING)
			fuzz_unescape(&col.value, NULL);
	}
	FUZZ_CHECK(r == 0 || r == -1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	const char *why = NULL;
	w2j_record rec;

	if (w2j_decode(buf, size, &rec, &why) < 0) {
		FUZZ_CHECK(why != NULL);
		return 0;
	}
	FUZZ_CHECK(strchr("BCIUDMT", (int)rec.action) != NULL && rec.action != 0);
	if (rec.action == W2J_BEGIN || rec.action == W2J_COMMIT)
		FUZZ_CHECK(rec.nextlsn != LSN_INVALID);
	if (rec.action == W2J_INSERT || rec.action == W2J_UPDATE)
		FUZZ_CHECK(rec.columns.kind == JSON_ARRAY);
	if (rec.action == W2J_DELETE)
		FUZZ_CHECK(rec.identity.kind == JSON_ARRAY);
	if (strchr("IUDT", (int)rec.action)) {
		FUZZ_CHECK(rec.schema.kind == JSON_STRING && rec.table.kind == JSON_STRING);
		FUZZ_CHECK(rec.columns.kind == JSON_NONE || rec.columns.kind == JSON_ARRAY ||
			   rec.action == W2J_DELETE || rec.action == W2J_TRUNCATE);
		FUZZ_CHECK(rec.identity.kind == JSON_NONE || rec.identity.kind == JSON_ARRAY);
	}
	if (rec.action == W2J_MESSAGE)
		FUZZ_CHECK(rec.prefix.kind == JSON_STRING && rec.content.kind == JSON_STRING);
	const json_span *spans[] = {&rec.timestamp, &rec.schema, &rec.table, &rec.columns,
				    &rec.identity, &rec.prefix, &rec.content};
	for (size_t i = 0; i < sizeof(spans) / sizeof(spans[0]); i++) {
		fuzz_span_inside(spans[i], buf, size);
		if (spans[i]->kind == JSON_STRING)
			fuzz_unescape(spans[i], NULL);
	}
	columns(&rec.columns, buf, size);
	columns(&rec.identity, buf, size);
	return 0;
}

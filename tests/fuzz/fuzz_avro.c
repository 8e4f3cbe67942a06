/* fuzz_avro.c: libFuzzer target for relay/avjson.c: any JSON payload against schemas of every Avro type, read back by libavro. */
#include <avro.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "avjson.h"
#include "fuzz.h"

/* Schemas the payloads are converted by: every type, logical types, unions, a recursive record. */
static const char *const schemas[] = {
	"{\"type\":\"record\",\"name\":\"E\",\"namespace\":\"f\",\"fields\":["
	"{\"name\":\"i\",\"type\":\"int\"},{\"name\":\"l\",\"type\":\"long\"},"
	"{\"name\":\"s\",\"type\":\"string\"},{\"name\":\"b\",\"type\":\"boolean\"},"
	"{\"name\":\"f\",\"type\":\"float\"},{\"name\":\"d\",\"type\":\"double\"},"
	"{\"name\":\"y\",\"type\":\"bytes\"},{\"name\":\"x\",\"type\":{\"type\":\"fixed\",\"name\":\"X\",\"size\":3}},"
	"{\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"K\",\"symbols\":[\"A\",\"B\"]}},"
	"{\"name\":\"a\",\"type\":{\"type\":\"array\",\"items\":[\"null\",\"long\",\"string\"]}},"
	"{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":\"double\"}},"
	"{\"name\":\"n\",\"type\":[\"null\",\"X\",\"K\",{\"type\":\"record\",\"name\":\"R\",\"fields\":"
	"[{\"name\":\"z\",\"type\":\"int\"}]}]}]}",
	"{\"type\":\"record\",\"name\":\"D\",\"fields\":["
	"{\"name\":\"dec\",\"type\":{\"type\":\"bytes\",\"logicalType\":\"decimal\",\"precision\":30,\"scale\":4}},"
	"{\"name\":\"fx\",\"type\":{\"type\":\"fixed\",\"name\":\"F\",\"size\":4,\"logicalType\":\"decimal\",\"precision\":9,\"scale\":2}},"
	"{\"name\":\"ts\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-millis\"}},"
	"{\"name\":\"us\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-micros\"}},"
	"{\"name\":\"day\",\"type\":{\"type\":\"int\",\"logicalType\":\"date\"}},"
	"{\"name\":\"opt\",\"type\":[\"null\",{\"type\":\"bytes\",\"logicalType\":\"decimal\",\"precision\":5,\"scale\":0}],\"default\":null}]}",
	("{\"type\":\"record\",\"name\":\"Node\",\"fields\":[{\"name\":\"v\",\"type\":\"long\"},"
	 "{\"name\":\"next\",\"type\":[\"null\",\"Node\"]},{\"name\":\"kids\",\"type\":{\"type\":\"array\",\"items\":\"Node\"}}]}"),
};
#define N_SCHEMAS (sizeof(schemas) / sizeof(schemas[0]))

/* Converts the input (after its first byte, which picks the schema) and checks the outcome. */
static void convert(avjson_codec *c, avro_value_t *readback, const char *json, size_t len)
{
	char why[256], *out;
	size_t n, again = 0;

	if (avjson_encode(c, json, len, 5, &out, &n, why, sizeof(why)) < 0) {
		/* Refused: always with a reason naming the payload or a field. */
		FUZZ_CHECK(strncmp(why, "field ", 6) == 0 || strncmp(why, "the payload: ", 13) == 0);
		return;
	}
	/* Accepted: libavro reads the bytes back whole by the same schema, and writes as many. */
	FUZZ_CHECK(n >= 5);
	avro_reader_t r = avro_reader_memory(out + 5, (int64_t)(n - 5));
	avro_value_reset(readback);
	FUZZ_CHECK(avro_value_read(r, readback) == 0);
	FUZZ_CHECK(avro_value_sizeof(readback, &again) == 0 && again == n - 5);
	avro_reader_free(r);
}

/* A codec and a read-back value per input, freed after it: their leaks would show. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	avro_schema_t s;
	avro_value_t readback;

	if (size < 1)
		return 0;
	const char *schema = schemas[data[0] % N_SCHEMAS];
	avjson_codec *c = avjson_new(schema, strlen(schema), err, sizeof(err));
	FUZZ_CHECK(c != NULL);
	FUZZ_CHECK(avro_schema_from_json_length(schema, strlen(schema), &s) == 0);
	avro_value_iface_t *iface = avro_generic_class_from_schema(s);
	FUZZ_CHECK(avro_generic_value_new(iface, &readback) == 0);
	convert(c, &readback, (const char *)data + 1, size - 1);
	/* A second payload through the same codec: its reused value must not keep the first's. */
	convert(c, &readback, (const char *)data + 1, size - 1);
	avro_value_decref(&readback);
	avro_value_iface_decref(iface);
	avro_schema_decref(s);
	avjson_free(c);
	return 0;
}

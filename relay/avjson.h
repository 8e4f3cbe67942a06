/* avjson.h: JSON text to Avro binary by an Avro schema (libavro), refusing what does not fit exactly. */
#ifndef RELAY_AVJSON_H
#define RELAY_AVJSON_H

#include <stdbool.h>
#include <stddef.h>

/*
 * One Avro schema, compiled for converting JSON payloads: libavro's schema and generic value,
 * plus what libavro does not keep (logical types: decimal, date, timestamp-millis,
 * timestamp-micros). Not thread-safe: one codec converts one payload at a time.
 */
typedef struct avjson_codec avjson_codec;

/*
 * Parses a schema (JSON text of an .avsc file). NULL with a message in err when it is not valid
 * JSON or not a valid Avro schema. The codec keeps a canonical text of the schema (compact JSON,
 * members in the file's order): the one text sent to a registry.
 */
avjson_codec *avjson_new(const char *schema_json, size_t len, char *err, size_t errlen);
void avjson_free(avjson_codec *c);
/* The canonical schema text (NUL-terminated), valid until avjson_free. */
const char *avjson_schema_text(const avjson_codec *c);
/*
 * The full name (namespace.name) of the schema's top-level type when it is named (record, enum,
 * fixed); NULL for other schemas. Valid until avjson_free.
 */
const char *avjson_schema_name(const avjson_codec *c);
/*
 * Converts one JSON text into Avro binary by the schema (docs/schemas.md has the mapping).
 * On success returns 0 and sets *out to a buffer owned by the codec, valid until its next call:
 * prefix bytes left for the caller (the wire format's header), then *out_len - prefix bytes of
 * Avro. On a payload that does not fit returns -1 with a reason naming the field and the rule
 * in why (NUL-terminated, cut to whylen).
 */
int avjson_encode(avjson_codec *c, const char *json, size_t len, size_t prefix, char **out,
		  size_t *out_len, char *why, size_t whylen);

/*
 * An Avro decimal's bytes: nd decimal digits (the unscaled value, most significant first, no
 * sign) as big-endian two's complement of minimal length, negated when neg, right-aligned in
 * out[cap - len, cap) (the rest zeroed). Returns len; cap must hold nd / 2 + 2 bytes.
 */
size_t avjson_decimal_bytes(const char *digits, size_t nd, bool neg, unsigned char *out, size_t cap);

#endif

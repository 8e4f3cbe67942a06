/* avjson.c: JSON text to Avro binary by an Avro schema (libavro), refusing what does not fit exactly. */
#include "avjson.h"

#include <avro.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avjson_schema.h"
#include "json_scan.h"
#include "pgtime.h"
#include "xalloc.h"

#define TRAIL_MAX 64 /* steps of the path kept for reasons; deeper ones are left out */

/* One step of the path to the value being converted: a member's key (a span of the payload,
 * still escaped, or a schema's field name) or, with key.ptr NULL, an array index. */
typedef struct {
	json_span key;
	long index;
} avjson_step;

struct avjson_codec {
	avjson_schema sch;          /* canonical text and nodes */
	avro_schema_t schema;       /* libavro's, owned (avro_schema_decref) */
	avro_value_iface_t *iface;  /* owned (avro_value_iface_decref) */
	avro_value_t value;         /* the payload being built, reused (avro_value_decref) */
	bool has_value;
	avro_writer_t writer;       /* memory writer over buf, created at the first encode */
	char *buf;                  /* the output: prefix, then Avro binary */
	size_t cap;
	char *scratch;              /* decoded strings and number texts of the current value */
	size_t scratch_cap;
	avjson_step trail[TRAIL_MAX]; /* the path to the value being converted */
	size_t trail_n;             /* its length (may exceed TRAIL_MAX: those steps are not kept) */
	char path[256];             /* its text ("a.b[2]"), made for a reason only */
	const char *record_end;     /* where the last record converted ended in the JSON text */
	int depth;                  /* of put_value calls */
	char *why;
	size_t whylen;
};

/* libavro's schema for the canonical text (libavro's judgement of it); -1 with err. */
static int parse_libavro_schema(avjson_codec *c, char *err, size_t errlen)
{
	/* libavro owns the parsed schema; we hold one reference (avro_schema_decref in free). */
	if (avro_schema_from_json_length(c->sch.text, strlen(c->sch.text), &c->schema) != 0) {
		snprintf(err, errlen, "not a valid Avro schema: %s", avro_strerror());
		c->schema = NULL;
		return -1;
	}
	return 0;
}

/* libavro's class and value for the parsed schema; -1 with err. Only for a schema our compile
 * accepted: a record that must contain itself (unchecked when the compile stopped at another
 * fault) would make libavro recurse until the stack runs out. */
static int make_libavro_value(avjson_codec *c, char *err, size_t errlen)
{
	c->iface = avro_generic_class_from_schema(c->schema);
	if (!c->iface || avro_generic_value_new(c->iface, &c->value) != 0) {
		snprintf(err, errlen, "libavro cannot build values of the schema: %s", avro_strerror());
		return -1;
	}
	c->has_value = true;
	return 0;
}

avjson_codec *avjson_new(const char *schema_json, size_t len, char *err, size_t errlen)
{
	avjson_codec *c = xcalloc(1, sizeof(*c));

	int compiled = avjson_schema_compile(schema_json, len, &c->sch, err, errlen);
	/* libavro judges the schema first (its message is the better one), then our compile's. */
	if (!c->sch.text || parse_libavro_schema(c, err, errlen) < 0 || compiled < 0 ||
	    make_libavro_value(c, err, errlen) < 0) {
		avjson_free(c);
		return NULL;
	}
	return c;
}

void avjson_free(avjson_codec *c)
{
	if (!c)
		return;
	avjson_schema_free(&c->sch);
	if (c->has_value)
		avro_value_decref(&c->value);
	if (c->iface)
		avro_value_iface_decref(c->iface);
	if (c->schema)
		avro_schema_decref(c->schema);
	if (c->writer)
		avro_writer_free(c->writer);
	free(c->buf);
	free(c->scratch);
	free(c);
}

const char *avjson_schema_text(const avjson_codec *c) { return c->sch.text; }

const char *avjson_schema_name(const avjson_codec *c) { return c->sch.root ? c->sch.root->fullname : NULL; }

/* ---- converting a payload ---- */

/* The text of the path ("address.zip", "tags[1]"), cut to c->path's size. */
static void path_text(avjson_codec *c)
{
	size_t at = 0, n = c->trail_n < TRAIL_MAX ? c->trail_n : TRAIL_MAX, room = sizeof(c->path) - 1;
	char key[256];

	for (size_t i = 0; i < n && at < room; i++) {
		const avjson_step *s = &c->trail[i];
		if (!s->key.ptr) {
			int w = snprintf(c->path + at, sizeof(c->path) - at, "[%ld]", s->index);
			at = w < 0 ? at : at + (size_t)w > room ? room : at + (size_t)w;
			continue;
		}
		const char *t = s->key.ptr;
		long len = (long)s->key.len;
		if (s->key.escaped) { /* decoding never grows the text */
			len = s->key.len < sizeof(key) ? json_unescape(&s->key, key) : -1;
			t = len < 0 ? "?" : key;
			len = len < 0 ? 1 : len;
		}
		if (at > 0)
			c->path[at++] = '.';
		size_t k = (size_t)len < room - at ? (size_t)len : room - at;
		memcpy(c->path + at, t, k);
		at += k;
	}
	c->path[at] = '\0';
}

/* Writes the reason (the field's path, then what is wrong); always -1. */
__attribute__((format(printf, 2, 3))) static int fail(avjson_codec *c, const char *fmt, ...)
{
	char what[256];
	va_list ap;

	path_text(c);
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (c->path[0])
		snprintf(c->why, c->whylen, "field %s: %s", c->path, what);
	else
		snprintf(c->why, c->whylen, "the payload: %s", what);
	return -1;
}

/* How a JSON value is named in reasons. */
static const char *kind_name(json_kind k)
{
	switch (k) {
	case JSON_STRING: return "a string";
	case JSON_NUMBER: return "a number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	case JSON_NULL: return "null";
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	default: return "nothing";
	}
}

/* The Avro type's name in reasons. */
static const char *type_name(const avjson_node *n)
{
	static const char *const names[] = {
		[AVRO_STRING] = "string", [AVRO_BYTES] = "bytes",   [AVRO_INT32] = "int",
		[AVRO_INT64] = "long",    [AVRO_FLOAT] = "float",   [AVRO_DOUBLE] = "double",
		[AVRO_BOOLEAN] = "boolean", [AVRO_NULL] = "null",   [AVRO_RECORD] = "record",
		[AVRO_ENUM] = "enum",     [AVRO_FIXED] = "fixed",   [AVRO_MAP] = "map",
		[AVRO_ARRAY] = "array",   [AVRO_UNION] = "union",
	};
	if (n->logical == AVJ_DECIMAL)
		return "decimal";
	if (n->logical == AVJ_DATE)
		return "date";
	if (n->logical == AVJ_TS_MILLIS)
		return "timestamp-millis";
	if (n->logical == AVJ_TS_MICROS)
		return "timestamp-micros";
	return (size_t)n->type < sizeof(names) / sizeof(names[0]) && names[n->type] ? names[n->type]
										 : "?";
}

/* The decoded text of a string span (or a number's text), NUL-terminated, in the scratch. */
static const char *span_text(avjson_codec *c, const json_span *j, size_t *len)
{
	if (c->scratch_cap < j->len + 1) {
		c->scratch_cap = j->len + 1 > 256 ? j->len + 1 : 256;
		c->scratch = xrealloc(c->scratch, c->scratch_cap);
	}
	long n = (long)j->len;
	if (j->kind == JSON_STRING && j->escaped)
		n = json_unescape(j, c->scratch);
	else
		memcpy(c->scratch, j->ptr, j->len);
	if (n < 0)
		return NULL;
	c->scratch[n] = '\0';
	*len = (size_t)n;
	return c->scratch;
}

/* True when a number's text is an integer (no fraction, no exponent). */
static bool is_integer(const json_span *j)
{
	return j->kind == JSON_NUMBER && !memchr(j->ptr, '.', j->len) && !memchr(j->ptr, 'e', j->len) &&
	       !memchr(j->ptr, 'E', j->len);
}

/*
 * The value of a JSON number of at most 18 digits, a minus at most before them (exact in 64
 * bits), read without strtoll's copy and locale; false for any other text (strtoll decides).
 */
static bool short_integer(const json_span *j, int64_t *out)
{
	const char *p = j->ptr, *end = j->ptr + j->len;
	bool neg = p < end && *p == '-';
	int64_t v = 0;

	p += neg;
	if (p == end || end - p > 18)
		return false;
	for (; p < end; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (*p - '0');
	}
	*out = neg ? -v : v;
	return true;
}

/* A JSON integer within [lo, hi]; -1 with the reason otherwise. */
static int get_integer(avjson_codec *c, const avjson_node *n, const json_span *j, int64_t lo,
		       int64_t hi, int64_t *out)
{
	size_t len;
	char *end;

	if (j->kind != JSON_NUMBER)
		return fail(c, "expected %s, got %s", type_name(n), kind_name(j->kind));
	if (short_integer(j, out) && *out >= lo && *out <= hi)
		return 0;
	if (!is_integer(j))
		return fail(c, "%s needs an integer, got %.*s", type_name(n), (int)(j->len > 40 ? 40 : j->len),
			    j->ptr);
	const char *t = span_text(c, j, &len);
	errno = 0;
	long long v = strtoll(t, &end, 10);
	if (errno == ERANGE || *end || v < lo || v > hi)
		return fail(c, "%s does not fit in %s", t, type_name(n));
	*out = v;
	return 0;
}

/* A date: "YYYY-MM-DD" (days since the epoch) or an integer number of days. */
static int put_date(avjson_codec *c, const avjson_node *n, avro_value_t *v, const json_span *j)
{
	static const unsigned mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int64_t days;
	unsigned y, m, d;
	size_t len;
	int used = 0;

	if (j->kind != JSON_STRING) {
		if (get_integer(c, n, j, INT32_MIN, INT32_MAX, &days) < 0)
			return -1;
		return avro_value_set_int(v, (int32_t)days);
	}
	const char *t = span_text(c, j, &len);
	if (!t || len != 10 || sscanf(t, "%4u-%2u-%2u%n", &y, &m, &d, &used) != 3 || used != 10 ||
	    m < 1 || m > 12 || d < 1 || d > mdays[m - 1] ||
	    (m == 2 && d == 29 && (y % 4 || (y % 100 == 0 && y % 400))))
		return fail(c, "date needs YYYY-MM-DD or a number of days");
	return avro_value_set_int(v, (int32_t)pgtime_days_from_civil(y, m, d));
}

/* A timestamp: an integer (ms or µs since the epoch) or a PostgreSQL/RFC 3339 text with offset. */
static int put_timestamp(avjson_codec *c, const avjson_node *n, avro_value_t *v, const json_span *j)
{
	int64_t t;
	size_t len;

	if (j->kind != JSON_STRING) {
		if (get_integer(c, n, j, INT64_MIN, INT64_MAX, &t) < 0)
			return -1;
		return avro_value_set_long(v, t);
	}
	const char *s = span_text(c, j, &len);
	bool ok = s && (n->logical == AVJ_TS_MILLIS ? pgtime_parse(s, len, &t)
						    : pgtime_parse_us(s, len, &t));
	if (!ok)
		return fail(c, "%s needs a timestamp with a UTC offset or an integer", type_name(n));
	if (n->logical == AVJ_TS_MILLIS) {
		int64_t us;
		if (pgtime_parse_us(s, len, &us) && us % 1000 != 0)
			return fail(c, "timestamp-millis cannot hold the microseconds of %s", s);
	}
	return avro_value_set_long(v, t);
}

/*
 * A JSON number of at most 15 digits, none after an exponent: m / 10^k with m and 10^k exact
 * doubles (m < 2^53, k <= 15), so one IEEE division rounds it correctly: the double strtod
 * gives, at a tenth of its cost (Clinger's fast path; scores and amounts mostly look like
 * this). NAN when the text is not of that form: strtod decides.
 */
static double short_decimal(const char *t, size_t len)
{
	static const double p10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8,
				     1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
	uint64_t m = 0;
	int digits = 0, frac = -1;
	size_t i = *t == '-';

	for (; i < len; i++) {
		if (t[i] == '.' && frac < 0) {
			frac = 0;
			continue;
		}
		if (t[i] < '0' || t[i] > '9' || ++digits > 15)
			return NAN;
		m = m * 10 + (uint64_t)(t[i] - '0');
		frac += frac >= 0;
	}
	if (digits == 0 || frac == 0)
		return NAN;
	double d = (double)m / p10[frac < 0 ? 0 : frac];
	return *t == '-' ? -d : d;
}

/* A float or a double: a JSON number within the type's range (the nearest value). */
static int put_real(avjson_codec *c, const avjson_node *n, avro_value_t *v, const json_span *j)
{
	size_t len;
	char *end;

	if (j->kind != JSON_NUMBER)
		return fail(c, "expected %s, got %s", type_name(n), kind_name(j->kind));
	double quick = short_decimal(j->ptr, j->len); /* below 1e15: within a float's range too */
	if (!isnan(quick))
		return n->type == AVRO_FLOAT ? avro_value_set_float(v, (float)quick)
					     : avro_value_set_double(v, quick);
	const char *t = span_text(c, j, &len);
	errno = 0;
	double d = strtod(t, &end);
	if (*end || !isfinite(d) || (n->type == AVRO_FLOAT && !isfinite((float)d)))
		return fail(c, "%.40s is beyond the range of %s", t, type_name(n));
	if (errno == ERANGE && d == 0 && strpbrk(t, "123456789"))
		return fail(c, "%.40s is too small for %s (it would become 0)", t, type_name(n));
	return n->type == AVRO_FLOAT ? avro_value_set_float(v, (float)d) : avro_value_set_double(v, d);
}

/* ---- decimals: the unscaled value as big-endian two's complement ---- */

/* The digits of a decimal text scaled to scale, without leading zeros; -1 with the reason. */
static int decimal_digits(avjson_codec *c, const avjson_node *n, const char *t, bool *neg,
			  char *digits, size_t *nd)
{
	long frac = 0, exp = 0;
	bool dot = false, any = false;
	size_t k = 0;
	const char *p = t;

	*neg = *p == '-';
	p += *neg || *p == '+';
	for (; *p && *p != 'e' && *p != 'E'; p++) {
		if (*p == '.' && !dot) {
			dot = true;
			continue;
		}
		if (*p < '0' || *p > '9')
			return fail(c, "decimal needs a number, got \"%.40s\"", t);
		any = true;
		frac += dot;
		if (k > 0 || *p != '0') {
			if (k > (size_t)n->precision + 1100)
				return fail(c, "%.40s has more than %ld digits", t, n->precision);
			digits[k++] = *p;
		}
	}
	if (*p) {
		char *end;
		errno = 0;
		exp = strtol(p + 1, &end, 10);
		if (*end || p[1] == '\0' || errno == ERANGE || exp > 10000 || exp < -10000)
			return fail(c, "decimal needs a number, got \"%.40s\"", t);
	}
	if (!any)
		return fail(c, "decimal needs a number, got \"%.40s\"", t);
	long shift = n->scale - (frac - exp);
	for (; shift < 0; shift++) { /* fewer fraction digits: only zeros may go */
		if (k > 0 && digits[k - 1] != '0')
			return fail(c, "%.40s has more than %ld fraction digits (decimal scale %ld)", t,
				    n->scale, n->scale);
		if (k > 0)
			k--;
	}
	if (k > 0 && k + (size_t)shift > (size_t)n->precision)
		return fail(c, "%.40s has more than %ld digits (decimal precision %ld)", t,
			    n->precision, n->precision);
	for (; k > 0 && shift > 0; shift--)
		digits[k++] = '0';
	*nd = k;
	return 0;
}

/* 10^k for the k digits (at most nine) of one step of avjson_decimal_bytes. */
static const uint32_t POW10[] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000,
				 1000000000};

/*
 * The magnitude of nd decimal digits as little-endian base-2^32 limbs, nine digits a step: a
 * numeric of 147,000 digits takes a fraction of a second, where a digit and a byte a step took
 * seconds. Returns the number of limbs used (0 for zero).
 */
static size_t decimal_limbs(const char *digits, size_t nd, uint32_t *limb)
{
	size_t nl = 0;

	for (size_t i = 0; i < nd;) {
		size_t k = nd - i < 9 ? nd - i : 9;
		uint64_t carry = 0; /* below 2^32 throughout: limb * 10^9 + carry < 2^64 */
		for (size_t end = i + k; i < end; i++)
			carry = carry * 10 + (uint64_t)(digits[i] - '0');
		for (size_t l = 0; l < nl; l++) {
			uint64_t x = (uint64_t)limb[l] * POW10[k] + carry;
			limb[l] = (uint32_t)x;
			carry = x >> 32;
		}
		if (carry)
			limb[nl++] = (uint32_t)carry;
	}
	return nl;
}

size_t avjson_decimal_bytes(const char *digits, size_t nd, bool neg, unsigned char *out, size_t cap)
{
	uint32_t stack[64];
	size_t max = cap / 4 + 2, len = 0;
	uint32_t *limb = max <= 64 ? stack : xcalloc(max, sizeof(*limb));
	size_t nl = decimal_limbs(digits, nd, limb);

	memset(out, 0, cap);
	for (size_t l = 0; l < nl; l++) /* the bytes past cap are zeros of the top limb */
		for (unsigned s = 0; s < 32 && len < cap; s += 8)
			out[cap - ++len] = (unsigned char)(limb[l] >> s);
	if (limb != stack)
		free(limb);
	while (len > 1 && out[cap - len] == 0)
		len--;
	if (len == 0)
		len = 1; /* zero: one 0 byte */
	if (out[cap - len] & 0x80) /* room for the sign bit */
		len++;
	if (neg) {
		unsigned carry = 1;
		for (size_t b = cap; b-- > cap - len;) {
			unsigned x = (unsigned char)~out[b] + carry;
			out[b] = (unsigned char)x;
			carry = x >> 8;
		}
	}
	return len;
}

/* A decimal: a JSON number or a numeric string, exactly at the schema's scale and precision. */
static int put_decimal(avjson_codec *c, const avjson_node *n, avro_value_t *v, const json_span *j)
{
	size_t len, nd = 0;
	bool neg;

	if (j->kind != JSON_NUMBER && j->kind != JSON_STRING)
		return fail(c, "expected decimal, got %s", kind_name(j->kind));
	const char *t = span_text(c, j, &len);
	if (!t)
		return fail(c, "the string holds an invalid escape");
	size_t cap = len + (size_t)n->precision + 1200;
	if (n->type == AVRO_FIXED && (size_t)n->size > cap)
		cap = (size_t)n->size;
	char *digits = xmalloc(cap);
	unsigned char *bytes = xmalloc(cap);
	int rc = decimal_digits(c, n, t, &neg, digits, &nd);
	if (rc == 0) {
		size_t bl = avjson_decimal_bytes(digits, nd, neg, bytes, cap);
		unsigned char *start = bytes + cap - bl;
		if (n->type == AVRO_BYTES) {
			rc = avro_value_set_bytes(v, start, bl); /* libavro copies the bytes */
		} else if ((int64_t)bl > n->size) {
			rc = fail(c, "the decimal does not fit in fixed(%lld)", (long long)n->size);
		} else { /* sign-extended to the fixed size; libavro copies */
			memset(bytes + cap - n->size, neg ? 0xff : 0, (size_t)n->size - bl);
			rc = avro_value_set_fixed(v, bytes + cap - n->size, (size_t)n->size);
		}
	}
	free(digits);
	free(bytes);
	return rc;
}

/* bytes or fixed: a string of code points up to U+00FF (Avro's JSON encoding of bytes). */
static int put_bytes(avjson_codec *c, const avjson_node *n, avro_value_t *v, const json_span *j)
{
	size_t len, k = 0;

	if (n->logical == AVJ_DECIMAL)
		return put_decimal(c, n, v, j);
	if (j->kind != JSON_STRING)
		return fail(c, "expected %s, got %s", type_name(n), kind_name(j->kind));
	const unsigned char *s = (const unsigned char *)span_text(c, j, &len);
	if (!s)
		return fail(c, "the string holds an invalid escape");
	unsigned char *raw = (unsigned char *)c->scratch; /* decoding never grows the text */
	for (size_t i = 0; i < len; i++) {
		if (s[i] < 0x80)
			raw[k++] = s[i];
		else if ((s[i] == 0xc2 || s[i] == 0xc3) && i + 1 < len)
			raw[k++] = (unsigned char)(((s[i] & 0x03) << 6) | (s[i + 1] & 0x3f)), i++;
		else
			return fail(c, "%s needs characters up to U+00FF (one per byte)", type_name(n));
	}
	if (n->type == AVRO_FIXED && (int64_t)k != n->size)
		return fail(c, "fixed(%lld) needs %lld bytes, got %zu", (long long)n->size,
			    (long long)n->size, k);
	/* libavro copies the bytes into the value. */
	return n->type == AVRO_FIXED ? avro_value_set_fixed(v, raw, k) : avro_value_set_bytes(v, raw, k);
}

/* A string (unescaped; libavro copies it, size counting the NUL). */
static int put_string(avjson_codec *c, const avjson_node *n, avro_value_t *v, const json_span *j)
{
	size_t len;

	if (j->kind != JSON_STRING)
		return fail(c, "expected %s, got %s", type_name(n), kind_name(j->kind));
	const char *s = span_text(c, j, &len);
	if (!s)
		return fail(c, "the string holds an invalid escape");
	return avro_value_set_string_len(v, s, len + 1);
}

/* An enum: a string that is one of the symbols. */
static int put_enum(avjson_codec *c, const avjson_node *n, avro_value_t *v, const json_span *j)
{
	size_t len;

	if (j->kind != JSON_STRING)
		return fail(c, "expected enum %s, got %s", n->fullname, kind_name(j->kind));
	const char *s = span_text(c, j, &len);
	int idx = s ? avro_schema_enum_get_by_name(avro_value_get_schema(v), s) : -1;
	if (idx < 0)
		return fail(c, "\"%.60s\" is not a symbol of enum %s", s ? s : "", n->fullname);
	return avro_value_set_enum(v, idx);
}

static int put_value(avjson_codec *c, const avjson_node *n, avro_value_t *v, const json_span *j);
static int put_kind(avjson_codec *c, const avjson_node *n, avro_value_t *v, const json_span *j);

/*
 * One more step of the path: a key (a string span; NULL for the array index) kept as it is in
 * the payload, its text made only for a reason (this runs for every field of every event).
 * Returns the length to go back to with path_pop.
 */
static size_t path_push(avjson_codec *c, const json_span *key, long index)
{
	if (c->trail_n < TRAIL_MAX) {
		avjson_step *s = &c->trail[c->trail_n];
		s->key = key ? *key : (json_span){.ptr = NULL};
		s->index = index;
	}
	return c->trail_n++;
}

/* The same for a schema's field name. */
static size_t path_push_name(avjson_codec *c, const char *name)
{
	json_span k = {.kind = JSON_STRING, .ptr = name, .len = strlen(name)};
	return path_push(c, &k, 0);
}

/* Back to the path before the step path_push returned old for. */
static void path_pop(avjson_codec *c, size_t old) { c->trail_n = old; }

/* An array: each element by the items' type. */
static int put_array(avjson_codec *c, const avjson_node *n, avro_value_t *v, const json_span *j)
{
	json_cursor cur;
	json_span e;
	avro_value_t elem;
	int rc;
	long i = 0;

	if (j->kind != JSON_ARRAY || json_array_open(&cur, j) < 0)
		return fail(c, "expected array, got %s", kind_name(j->kind));
	while ((rc = json_array_next(&cur, &e)) == 1) {
		size_t old = path_push(c, NULL, i++);
		if (avro_value_append(v, &elem, NULL) != 0)
			return fail(c, "libavro: %s", avro_strerror());
		if (put_value(c, n->kids[0], &elem, &e) < 0)
			return -1;
		path_pop(c, old);
	}
	return rc < 0 ? fail(c, "malformed JSON") : 0;
}

/* A map: each member's value by the values' type (keys unescaped). */
static int put_map(avjson_codec *c, const avjson_node *n, avro_value_t *v, const json_span *j)
{
	json_cursor cur;
	json_span k, e;
	avro_value_t elem;
	size_t len;
	int rc, is_new = 0;

	if (j->kind != JSON_OBJECT || json_object_open(&cur, j) < 0)
		return fail(c, "expected map, got %s", kind_name(j->kind));
	while ((rc = json_object_next(&cur, &k, &e)) == 1) {
		const char *key = span_text(c, &k, &len);
		if (!key)
			return fail(c, "a key holds an invalid escape");
		size_t old = path_push(c, &k, 0);
		/* libavro copies the key. */
		if (avro_value_add(v, key, &elem, NULL, &is_new) != 0)
			return fail(c, "libavro: %s", avro_strerror());
		if (!is_new)
			return fail(c, "the key occurs twice");
		if (put_value(c, n->kids[0], &elem, &e) < 0)
			return -1;
		path_pop(c, old);
	}
	return rc < 0 ? fail(c, "malformed JSON") : 0;
}

/* A field the payload leaves out: null when its type allows null, else the payload is refused. */
static int put_absent(avjson_codec *c, const avjson_node *n, avro_value_t *v, const char *name)
{
	avro_value_t b;
	size_t old = path_push_name(c, name);

	if (n->type == AVRO_NULL)
		return path_pop(c, old), avro_value_set_null(v);
	for (size_t i = 0; n->type == AVRO_UNION && i < n->n; i++)
		if (n->kids[i]->type == AVRO_NULL) {
			path_pop(c, old);
			return avro_value_set_branch(v, (int)i, &b) || avro_value_set_null(&b);
		}
	return fail(c, "missing, and %s is not nullable", type_name(n));
}

/* True when a key without escapes is field i of the record (lengths first: most differ there). */
static bool key_is(const json_span *k, const avjson_node *n, size_t i)
{
	return k->len == n->name_lens[i] && memcmp(k->ptr, n->names[i], k->len) == 0;
}

/*
 * The index of a record's field by name: SIZE_MAX when there is none. jsonb hands payloads over
 * with their keys in its own order (shorter keys first), rarely the schema's, so this runs for
 * most fields: a plain scan of the names of a small record costs a third of libavro's lookup
 * by name (hashing, its own scan); larger records use libavro's. put_record tries its guesses
 * first.
 */
static size_t field_index(avjson_codec *c, const avjson_node *n, avro_value_t *v,
			  const json_span *k)
{
	size_t idx, len;

	if (n->n <= 32 && !k->escaped) { /* the key as it is in the payload: no copy */
		for (idx = 0; idx < n->n; idx++) /* the first letters tell most names apart */
			if (key_is(k, n, idx))
				return idx;
		return SIZE_MAX;
	}
	avro_value_t f; /* libavro wants somewhere to put the field */
	const char *name = span_text(c, k, &len);
	if (!name || avro_value_get_by_name(v, name, &f, &idx) != 0 || idx >= n->n)
		return SIZE_MAX;
	return idx;
}

/*
 * The field a member at position pos of the payload is: the one at pos in the last payload (jsonb
 * orders the keys of one event type alike every time), else the one after the previous member's
 * (the schema's order), else a search. SIZE_MAX when there is none. Without guesses (two fields
 * of one name) the same field as without them.
 */
static size_t member_field(avjson_codec *c, const avjson_node *n, avro_value_t *v,
			   const json_span *k, size_t pos, size_t next)
{
	if (n->guess && !k->escaped && pos < n->n && key_is(k, n, n->guess[pos]))
		return n->guess[pos];
	size_t idx = !k->escaped && next < n->n && key_is(k, n, next) ? next : field_index(c, n, v, k);
	if (n->guess && pos < n->n && idx != SIZE_MAX)
		n->guess[pos] = idx;
	return idx;
}

/* A record: every member a field of the schema, every non-nullable field present. */
static int put_record(avjson_codec *c, const avjson_node *n, avro_value_t *v, const json_span *j)
{
	json_cursor cur;
	json_span k, e;
	avro_value_t f;
	size_t idx, pos = 0;
	int rc;

	if (j->kind != JSON_OBJECT || json_object_open(&cur, j) < 0)
		return fail(c, "expected record %s, got %s", n->fullname, kind_name(j->kind));
	unsigned char few[64] = {0};
	unsigned char *seen = n->n <= sizeof(few) ? few : xcalloc(n->n, 1);
	size_t next = 0;
	while ((rc = json_object_next(&cur, &k, &e)) == 1) {
		size_t old = path_push(c, &k, 0);
		idx = member_field(c, n, v, &k, pos++, next);
		next = idx + 1;
		if (idx == SIZE_MAX || avro_value_get_by_index(v, idx, &f, NULL) != 0)
			rc = fail(c, "not a field of record %s", n->fullname);
		else if (seen[idx]++)
			rc = fail(c, "occurs twice");
		else
			rc = put_value(c, n->kids[idx], &f, &e);
		if (rc < 0)
			break;
		path_pop(c, old);
	}
	c->record_end = cur.p; /* past the closing brace when rc == 0 */
	for (size_t i = 0; rc == 0 && i < n->n; i++)
		if (!seen[i] && (avro_value_get_by_index(v, i, &f, NULL) != 0 ||
				 put_absent(c, n->kids[i], &f, n->names[i]) != 0))
			rc = -1;
	if (seen != few)
		free(seen);
	return rc < 0 ? (c->why[0] ? -1 : fail(c, "malformed JSON")) : 0;
}

/* Whether an integer text fits the branch (int: 32 bits, long: 64). */
static bool integer_fits(avjson_codec *c, const avjson_node *b, const json_span *j)
{
	size_t len;
	char *end;

	if (!is_integer(j))
		return false;
	errno = 0;
	long long x = strtoll(span_text(c, j, &len), &end, 10);
	return errno != ERANGE && (b->type == AVRO_INT64 || (x >= INT32_MIN && x <= INT32_MAX));
}

/* Whether a string is a symbol of the enum branch i of the union value u. */
static bool enum_has(avjson_codec *c, avro_value_t *u, size_t i, const json_span *j)
{
	size_t len;
	const char *s = span_text(c, j, &len);
	avro_schema_t e = avro_schema_union_branch(avro_value_get_schema(u), (int)i);

	return s && e && avro_schema_enum_get_by_name(e, s) >= 0;
}

/* Whether branch i (node b) of the union value u takes this JSON value (the first that does). */
static bool branch_takes(avjson_codec *c, avro_value_t *u, size_t i, const avjson_node *b,
			 const json_span *j)
{
	switch (j->kind) {
	case JSON_NULL: return b->type == AVRO_NULL;
	case JSON_TRUE:
	case JSON_FALSE: return b->type == AVRO_BOOLEAN;
	case JSON_ARRAY: return b->type == AVRO_ARRAY;
	case JSON_OBJECT: return b->type == AVRO_RECORD || b->type == AVRO_MAP;
	case JSON_NUMBER:
		if (b->type == AVRO_INT32 || b->type == AVRO_INT64)
			return integer_fits(c, b, j);
		return b->type == AVRO_FLOAT || b->type == AVRO_DOUBLE || b->logical == AVJ_DECIMAL;
	case JSON_STRING:
		if (b->type == AVRO_ENUM)
			return enum_has(c, u, i, j);
		return b->type == AVRO_STRING || b->type == AVRO_BYTES || b->type == AVRO_FIXED ||
		       b->logical != AVJ_PLAIN;
	default: return false;
	}
}

/* A union: the first branch that takes the JSON value's kind (docs/schemas.md). */
static int put_union(avjson_codec *c, const avjson_node *n, avro_value_t *v, const json_span *j)
{
	avro_value_t b;

	for (size_t i = 0; i < n->n; i++)
		if (branch_takes(c, v, i, n->kids[i], j)) {
			if (avro_value_set_branch(v, (int)i, &b) != 0)
				return fail(c, "libavro: %s", avro_strerror());
			return put_value(c, n->kids[i], &b, j);
		}
	return fail(c, "no branch of the union takes %s", kind_name(j->kind));
}

/* One JSON value into v by the node's type: 0, -1 with the reason, or libavro's error code. */
static int put_kind(avjson_codec *c, const avjson_node *n, avro_value_t *v, const json_span *j)
{
	int64_t x;
	int rc;

	switch (n->type) {
	case AVRO_NULL:
		rc = j->kind == JSON_NULL ? avro_value_set_null(v) : fail(c, "expected null, got %s", kind_name(j->kind));
		break;
	case AVRO_BOOLEAN:
		rc = j->kind == JSON_TRUE || j->kind == JSON_FALSE
			     ? avro_value_set_boolean(v, j->kind == JSON_TRUE)
			     : fail(c, "expected boolean, got %s", kind_name(j->kind));
		break;
	case AVRO_INT32:
		if (n->logical == AVJ_DATE)
			return put_date(c, n, v, j);
		rc = get_integer(c, n, j, INT32_MIN, INT32_MAX, &x);
		rc = rc < 0 ? rc : avro_value_set_int(v, (int32_t)x);
		break;
	case AVRO_INT64:
		if (n->logical == AVJ_TS_MILLIS || n->logical == AVJ_TS_MICROS)
			return put_timestamp(c, n, v, j);
		rc = get_integer(c, n, j, INT64_MIN, INT64_MAX, &x);
		rc = rc < 0 ? rc : avro_value_set_long(v, x);
		break;
	case AVRO_FLOAT:
	case AVRO_DOUBLE: return put_real(c, n, v, j);
	case AVRO_STRING: return put_string(c, n, v, j);
	case AVRO_BYTES:
	case AVRO_FIXED: return put_bytes(c, n, v, j);
	case AVRO_ENUM: return put_enum(c, n, v, j);
	case AVRO_ARRAY: return put_array(c, n, v, j);
	case AVRO_MAP: return put_map(c, n, v, j);
	case AVRO_RECORD: return put_record(c, n, v, j);
	case AVRO_UNION: return put_union(c, n, v, j);
	default: return fail(c, "unsupported Avro type");
	}
	return rc;
}

/* One JSON value into v by the node's type; -1 with the reason (libavro's errors too). */
static int put_value(avjson_codec *c, const avjson_node *n, avro_value_t *v, const json_span *j)
{
	if (++c->depth > 200) /* a recursive schema cannot make the C stack follow a deep payload */
		return fail(c, "nested deeper than 200 levels");
	int rc = put_kind(c, n, v, j);
	c->depth--;
	if (rc > 0)
		return fail(c, "libavro: %s", avro_strerror());
	return rc;
}

/* Room for prefix + size bytes of output (the memory writer points into it). */
static void reserve_output(avjson_codec *c, size_t need)
{
	if (c->cap >= need)
		return;
	c->cap = need > 4096 ? need * 2 : 4096;
	c->buf = xrealloc(c->buf, c->cap);
}

/* True when the JSON text is one valid value and nothing else (whitespace aside). */
static bool valid_json(const char *json, size_t len)
{
	json_cursor cur;
	json_span v;

	json_cursor_init(&cur, json, len);
	return json_read_value(&cur, &v) == 0 && json_at_end(&cur);
}

/*
 * The payload converted into c->value. An object for a record schema (every outbox payload) is
 * read once, by put_record as it converts it: reading it whole first to find its end would scan
 * every string twice (a third of the conversion's cost). Whatever is not valid JSON is refused
 * as "not valid JSON" before any field's reason, as a check of the whole text first would.
 */
static int convert(avjson_codec *c, const char *json, size_t len)
{
	json_cursor cur;
	json_span root;
	size_t ws = 0;

	while (ws < len && (json[ws] == ' ' || json[ws] == '\t' || json[ws] == '\n' || json[ws] == '\r'))
		ws++;
	if (ws < len && json[ws] == '{' && c->sch.root->type == AVRO_RECORD) {
		root = (json_span){.kind = JSON_OBJECT, .ptr = json + ws, .len = len - ws};
		c->record_end = NULL;
		if (put_value(c, c->sch.root, &c->value, &root) == 0) {
			json_cursor_init(&cur, c->record_end, (size_t)(json + len - c->record_end));
			if (json_at_end(&cur))
				return 0;
		}
		if (valid_json(json, len)) /* the field's reason stands */
			return -1;
		c->trail_n = 0;
		return fail(c, "not valid JSON");
	}
	json_cursor_init(&cur, json, len);
	if (json_read_value(&cur, &root) < 0 || !json_at_end(&cur))
		return fail(c, "not valid JSON");
	return put_value(c, c->sch.root, &c->value, &root);
}

/*
 * Writes c->value as Avro binary after prefix bytes of c->buf; its size in *size. First into the
 * room the buffer has (Avro is mostly smaller than its JSON): libavro refuses to write past the
 * end, and only then is the exact size asked for (avro_value_sizeof walks the whole value, a
 * tenth of the conversion's cost when done for every payload).
 */
static int write_value(avjson_codec *c, size_t prefix, size_t hint, size_t *size)
{
	reserve_output(c, prefix + hint + 64);
	for (int pass = 0; pass < 2; pass++) {
		int64_t room = (int64_t)(c->cap - prefix);
		if (!c->writer)
			c->writer = avro_writer_memory(c->buf + prefix, room);
		else
			avro_writer_memory_set_dest(c->writer, c->buf + prefix, room);
		/* libavro writes into our buffer; it keeps no reference past this use of the writer. */
		if (!c->writer)
			break;
		if (avro_value_write(c->writer, &c->value) == 0) {
			*size = (size_t)avro_writer_tell(c->writer);
			return 0;
		}
		if (pass == 0 && avro_value_sizeof(&c->value, size) == 0)
			reserve_output(c, prefix + *size + 1);
	}
	return fail(c, "libavro: %s", avro_strerror());
}

int avjson_encode(avjson_codec *c, const char *json, size_t len, size_t prefix, char **out,
		  size_t *out_len, char *why, size_t whylen)
{
	size_t size = 0;

	c->why = why;
	c->whylen = whylen;
	why[0] = '\0';
	c->trail_n = 0;
	c->depth = 0;
	if (c->sch.has_lists) /* else every field is set again, each string over its last text */
		avro_value_reset(&c->value);
	if (convert(c, json, len) < 0 || write_value(c, prefix, len, &size) < 0)
		return -1;
	*out = c->buf;
	*out_len = prefix + size;
	return 0;
}

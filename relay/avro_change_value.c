/* avro_change_value.c: one column value of a captured change (wal2json's JSON or PostgreSQL's text) into an Avro value. */
#include "avro_change_value.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avjson.h"
#include "pgtext.h"
#include "pgtime.h"
#include "xalloc.h"

#define US_PER_DAY INT64_C(86400000000)

/* Writes a reason and returns -1. */
static int fail(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
	return -1;
}

/* True when text[0..len) is exactly word. */
static bool text_is(const char *text, size_t len, const char *word)
{
	return strlen(word) == len && memcmp(text, word, len) == 0;
}

/* An integer within [lo, hi], the whole text; false otherwise. */
static bool parse_int(const char *text, size_t len, int64_t lo, int64_t hi, int64_t *out)
{
	char buf[32], *end;

	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, text, len);
	buf[len] = '\0';
	errno = 0;
	long long v = strtoll(buf, &end, 10);
	if (*end || errno == ERANGE || v < lo || v > hi || buf[0] == ' ')
		return false;
	*out = v;
	return true;
}

/* A float or double; NaN and the infinities as PostgreSQL prints them (array elements). */
static int set_real(avro_value_t *v, bool is_float, const char *text, size_t len, char *why,
		    size_t whylen)
{
	char buf[400], *end;

	if (len == 0 || len >= sizeof(buf))
		return fail(why, whylen, "not a number: %.40s", text);
	memcpy(buf, text, len);
	buf[len] = '\0';
	double d = strtod(buf, &end);
	if (*end || buf[0] == ' ')
		return fail(why, whylen, "not a number: %.40s", buf);
	return is_float ? avro_value_set_float(v, (float)d) : avro_value_set_double(v, d);
}

/* ---- dates and times: days and microseconds, proleptic Gregorian (as PostgreSQL) ---- */

/* Reads n digits (exactly) at *p; false when they are not there. */
static bool digits(const char **p, const char *end, int n, int64_t *out)
{
	*out = 0;
	for (int i = 0; i < n; i++, (*p)++) {
		if (*p >= end || **p < '0' || **p > '9')
			return false;
		*out = *out * 10 + (**p - '0');
	}
	return true;
}

/* "YYYY-MM-DD" (four or more year digits) at *p; the year as written (BC handled by the caller). */
static bool read_date(const char **p, const char *end, int64_t *y, int64_t *m, int64_t *d)
{
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int n = 0;

	while (*p + n < end && (*p)[n] >= '0' && (*p)[n] <= '9')
		n++;
	if (n < 4 || n > 7 || !digits(p, end, n, y) || *p >= end || *(*p)++ != '-' ||
	    !digits(p, end, 2, m) || *p >= end || *(*p)++ != '-' || !digits(p, end, 2, d))
		return false;
	return *m >= 1 && *m <= 12 && *d >= 1 && *d <= mdays[*m - 1];
}

/* "HH:MM:SS[.f{1,6}]" at *p into microseconds of the day (24:00:00 allowed, as PostgreSQL). */
static bool read_clock(const char **p, const char *end, int64_t *us)
{
	int64_t h, mi, s, frac = 0;
	int n = 0;

	if (!digits(p, end, 2, &h) || *p >= end || *(*p)++ != ':' || !digits(p, end, 2, &mi) ||
	    *p >= end || *(*p)++ != ':' || !digits(p, end, 2, &s))
		return false;
	if (*p < end && **p == '.') {
		for ((*p)++; *p < end && **p >= '0' && **p <= '9' && n < 6; (*p)++, n++)
			frac = frac * 10 + (**p - '0');
		if (n == 0 || (*p < end && **p >= '0' && **p <= '9'))
			return false;
		for (; n < 6; n++)
			frac *= 10;
	}
	*us = ((h * 60 + mi) * 60 + s) * 1000000 + frac;
	return h <= 24 && mi < 60 && s < 60 && *us <= US_PER_DAY;
}

/* "+HH[:MM[:SS]]" or "-..." at *p into seconds east of UTC. */
static bool read_offset(const char **p, const char *end, int64_t *secs)
{
	int64_t h, m = 0, s = 0;
	int sign = **p == '-' ? -1 : 1;

	(*p)++;
	if (!digits(p, end, 2, &h))
		return false;
	if (*p < end && **p == ':' && (++*p, !digits(p, end, 2, &m)))
		return false;
	if (*p < end && **p == ':' && (++*p, !digits(p, end, 2, &s)))
		return false;
	*secs = sign * ((h * 60 + m) * 60 + s);
	return true;
}

/* " BC" at *p: the year is 1 - year (there is no year 0 in the text). */
static void read_era(const char **p, const char *end, int64_t *y)
{
	if (end - *p == 3 && memcmp(*p, " BC", 3) == 0) {
		*y = 1 - *y;
		*p = end;
	}
}

/*
 * A date, timestamp or timestamptz as PostgreSQL prints it (DateStyle ISO) into days (date) or
 * microseconds since the epoch (UTC for timestamptz, the wall clock for timestamp); infinity and
 * -infinity are PostgreSQL's own extremes (INT32_MAX/MIN days, INT64_MAX/MIN microseconds).
 */
static int set_datetime(avro_value_t *v, avro_change_kind kind, const char *text, size_t len,
			char *why, size_t whylen)
{
	const char *p = text, *end = text + len;
	int64_t y, m, d, us = 0, off = 0;

	if (text_is(text, len, "infinity") || text_is(text, len, "-infinity")) {
		bool pos = text[0] == 'i';
		if (kind == ACT_DATE)
			return avro_value_set_int(v, pos ? INT32_MAX : INT32_MIN);
		return avro_value_set_long(v, pos ? INT64_MAX : INT64_MIN);
	}
	if (!read_date(&p, end, &y, &m, &d))
		return fail(why, whylen, "not a date as PostgreSQL prints it: %.40s", text);
	if (kind != ACT_DATE && (p >= end || *p++ != ' ' || !read_clock(&p, end, &us)))
		return fail(why, whylen, "not a timestamp as PostgreSQL prints it: %.40s", text);
	if (kind == ACT_TS && (p >= end || (*p != '+' && *p != '-') || !read_offset(&p, end, &off)))
		return fail(why, whylen, "not a timestamp with a UTC offset: %.40s", text);
	read_era(&p, end, &y);
	if (p != end)
		return fail(why, whylen, "unexpected text after the %s: %.40s",
			    kind == ACT_DATE ? "date" : "timestamp", text);
	int64_t days = pgtime_days_from_civil(y, (unsigned)m, (unsigned)d);
	if (kind == ACT_DATE && (days <= INT32_MIN || days >= INT32_MAX))
		return fail(why, whylen, "%.40s is out of the range of days since 1970 in 32 bits", text);
	if (kind == ACT_DATE)
		return avro_value_set_int(v, (int32_t)days);
	int64_t at;
	if (__builtin_mul_overflow(days, US_PER_DAY, &at) || __builtin_add_overflow(at, us, &at) ||
	    __builtin_sub_overflow(at, off * 1000000, &at))
		return fail(why, whylen, "%.40s is out of the range of microseconds since 1970 in "
			    "64 bits", text);
	return avro_value_set_long(v, at);
}

/* A time of day into microseconds since midnight. */
static int set_time(avro_value_t *v, const char *text, size_t len, char *why, size_t whylen)
{
	const char *p = text;
	int64_t us;

	if (!read_clock(&p, text + len, &us) || p != text + len)
		return fail(why, whylen, "not a time as PostgreSQL prints it: %.40s", text);
	return avro_value_set_long(v, us);
}

/* ---- decimals: the unscaled value as big-endian two's complement ---- */

/*
 * numeric(p,s)'s text ("-12.50") scaled to s: the unscaled digits without leading zeros. A text
 * with more fraction digits than s (other than zeros) or more than p digits is refused.
 */
static int decimal_digits(const avro_change_type *t, const char *text, size_t len, bool *neg,
			  char *dig, size_t *nd, char *why, size_t whylen)
{
	size_t i = 0, k = 0;
	long frac = -1;

	*neg = len > 0 && text[0] == '-';
	i = *neg || (len > 0 && text[0] == '+');
	if (i == len)
		return fail(why, whylen, "not a decimal number: %.40s", text);
	for (; i < len; i++) {
		if (text[i] == '.' && frac < 0) {
			frac = 0;
			continue;
		}
		if (text[i] < '0' || text[i] > '9')
			return fail(why, whylen, "decimal(%d,%d) has no value for %.40s (only numbers)",
				    t->precision, t->scale, text);
		if (frac >= 0 && frac++ >= t->scale) {
			if (text[i] != '0')
				return fail(why, whylen, "%.40s has more than %d fraction digits "
					    "(decimal scale %d): never rounded", text, t->scale, t->scale);
			continue;
		}
		if (k > 0 || text[i] != '0')
			dig[k++] = text[i];
	}
	for (long f = frac < 0 ? 0 : frac; f < t->scale; f++)
		if (k > 0)
			dig[k++] = '0';
	if ((long)k > t->precision)
		return fail(why, whylen, "%.40s has more than %d digits (decimal precision %d)", text,
			    t->precision, t->precision);
	*nd = k;
	return 0;
}

/* numeric(p,s) as Avro decimal bytes. */
static int set_decimal(avro_value_t *v, const avro_change_type *t, const char *text, size_t len,
		       char *why, size_t whylen)
{
	char dig_stack[256];
	unsigned char bytes_stack[256];
	size_t cap = len + (size_t)t->scale + 4, nd = 0;
	bool small = cap <= sizeof(dig_stack); /* the usual case: no allocation per value */
	char *dig = small ? dig_stack : xmalloc(cap);
	unsigned char *bytes = small ? bytes_stack : xmalloc(cap);
	bool neg;
	int rc = decimal_digits(t, text, len, &neg, dig, &nd, why, whylen);

	if (rc == 0) {
		size_t bl = avjson_decimal_bytes(dig, nd, neg, bytes, cap);
		rc = avro_value_set_bytes(v, bytes + cap - bl, bl); /* libavro copies them */
	}
	if (!small) {
		free(dig);
		free(bytes);
	}
	return rc;
}

/* The field at index i of record v (its fields are set by index). */
static int field(avro_value_t *v, size_t i, avro_value_t *out, char *why, size_t whylen)
{
	if (avro_value_get_by_index(v, i, out, NULL) != 0)
		return fail(why, whylen, "libavro: %s", avro_strerror());
	return 0;
}

/*
 * numeric without typmod as record VariableScaleDecimal: scale is the fraction digits as
 * PostgreSQL prints them (its display scale: "1.50" is 150 at scale 2), value the unscaled
 * integer as big-endian two's complement. NaN and the infinities have no such value.
 */
static int set_vardecimal(avro_value_t *v, const char *text, size_t len, char *why, size_t whylen)
{
	char dig_stack[256];
	unsigned char bytes_stack[256];
	size_t i, k = 0, seen = 0, cap = len + 2;
	bool neg = len > 0 && text[0] == '-', small = cap <= sizeof(dig_stack);
	char *dig = small ? dig_stack : xmalloc(cap);
	unsigned char *bytes = small ? bytes_stack : xmalloc(cap);
	long scale = -1;
	avro_value_t f;
	int rc = 0;

	for (i = neg || (len > 0 && text[0] == '+'); i < len && rc == 0; i++) {
		if (text[i] == '.' && scale < 0) {
			scale = 0;
		} else if (text[i] < '0' || text[i] > '9') {
			rc = fail(why, whylen, "a VariableScaleDecimal has no value for %.40s (only "
				  "numbers)", text);
		} else {
			seen++;
			scale += scale >= 0;
			if (k > 0 || text[i] != '0')
				dig[k++] = text[i];
		}
	}
	if (rc == 0 && seen == 0)
		rc = fail(why, whylen, "not a decimal number: %.40s", text);
	if (rc == 0)
		rc = field(v, 0, &f, why, whylen) || avro_value_set_int(&f, scale < 0 ? 0 : (int32_t)scale);
	if (rc == 0) {
		size_t bl = avjson_decimal_bytes(dig, k, neg, bytes, cap);
		rc = field(v, 1, &f, why, whylen) || avro_value_set_bytes(&f, bytes + cap - bl, bl);
	}
	if (!small) {
		free(dig);
		free(bytes);
	}
	return rc ? -1 : 0;
}

/* interval as record Interval {months, days, microseconds}: PostgreSQL's own three fields. */
static int set_interval(avro_value_t *v, const char *text, size_t len, char *why, size_t whylen)
{
	pgtext_interval iv;
	avro_value_t f;

	if (!pgtext_interval_parse(text, len, &iv))
		return fail(why, whylen, "not an interval as PostgreSQL prints it (IntervalStyle "
			    "postgres) within 32-bit months and days: %.40s", text);
	if (field(v, 0, &f, why, whylen) || avro_value_set_int(&f, iv.months) ||
	    field(v, 1, &f, why, whylen) || avro_value_set_int(&f, iv.days) ||
	    field(v, 2, &f, why, whylen) || avro_value_set_long(&f, iv.us))
		return -1;
	return 0;
}

static int set_typed(avro_value_t *v, const avro_change_type *t, const char *text, size_t len,
		     char *why, size_t whylen);

/* A range's bound (field i): null when unbounded, else its text by the bound's kind. */
static int set_bound(avro_value_t *rec, size_t i, avro_change_kind kind, bool none,
		     const strbuf *text, char *why, size_t whylen)
{
	avro_change_type bt = {.kind = kind};
	avro_value_t f, branch;

	if (field(rec, i, &f, why, whylen) || avro_value_set_branch(&f, none ? 0 : 1, &branch))
		return -1;
	if (none)
		return avro_value_set_null(&branch);
	return set_typed(&branch, &bt, text->s, text->len, why, whylen);
}

/* A range as record {lower, upper, lower_inclusive, upper_inclusive, empty}. */
static int set_range(avro_value_t *v, const avro_change_type *t, const char *text, size_t len,
		     char *why, size_t whylen)
{
	strbuf lower = {0}, upper = {0};
	pgtext_range r;
	avro_value_t f;
	int rc;

	if (!pgtext_range_parse(text, len, &r, &lower, &upper))
		rc = fail(why, whylen, "not a range as PostgreSQL prints it: %.40s", text);
	else
		rc = set_bound(v, 0, t->range_of, r.empty || r.lower_inf, &lower, why, whylen) ||
		     set_bound(v, 1, t->range_of, r.empty || r.upper_inf, &upper, why, whylen) ||
		     field(v, 2, &f, why, whylen) || avro_value_set_boolean(&f, r.lower_inc) ||
		     field(v, 3, &f, why, whylen) || avro_value_set_boolean(&f, r.upper_inc) ||
		     field(v, 4, &f, why, whylen) || avro_value_set_boolean(&f, r.empty);
	strbuf_free(&lower);
	strbuf_free(&upper);
	return rc ? -1 : 0;
}

/* A hex digit's value, or -1. */
static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
		: c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* bytea: hex (wal2json: without \x; PostgreSQL's text: with it) into bytes. */
static int set_bytes(avro_value_t *v, const char *text, size_t len, char *why, size_t whylen)
{
	if (len >= 2 && text[0] == '\\' && text[1] == 'x')
		text += 2, len -= 2;
	if (len % 2)
		return fail(why, whylen, "bytea needs hex digits in pairs");
	unsigned char stack[512];
	unsigned char *raw = len / 2 < sizeof(stack) ? stack : xmalloc(len / 2 + 1);
	int rc = 0;
	for (size_t i = 0; i < len && rc == 0; i += 2) {
		int hi = hexval(text[i]), lo = hexval(text[i + 1]);
		if (hi < 0 || lo < 0)
			rc = fail(why, whylen, "bytea needs hex digits");
		else
			raw[i / 2] = (unsigned char)(hi << 4 | lo);
	}
	if (rc == 0)
		rc = avro_value_set_bytes(v, raw, len / 2); /* libavro copies them */
	if (raw != stack)
		free(raw);
	return rc;
}

/* Sets v from one value's text, by the numeric, time and binary kinds (strings elsewhere). */
static int set_typed(avro_value_t *v, const avro_change_type *t, const char *text, size_t len,
		     char *why, size_t whylen)
{
	int64_t n;

	switch (t->kind) {
	case ACT_INT:
		if (!parse_int(text, len, INT32_MIN, INT32_MAX, &n))
			return fail(why, whylen, "not an int: %.40s", text);
		return avro_value_set_int(v, (int32_t)n);
	case ACT_LONG:
		if (!parse_int(text, len, INT64_MIN, INT64_MAX, &n))
			return fail(why, whylen, "not a long: %.40s", text);
		return avro_value_set_long(v, n);
	case ACT_FLOAT:
	case ACT_DOUBLE: return set_real(v, t->kind == ACT_FLOAT, text, len, why, whylen);
	case ACT_DECIMAL: return set_decimal(v, t, text, len, why, whylen);
	case ACT_BOOLEAN:
		if (text_is(text, len, "true") || text_is(text, len, "t"))
			return avro_value_set_boolean(v, 1);
		if (text_is(text, len, "false") || text_is(text, len, "f"))
			return avro_value_set_boolean(v, 0);
		return fail(why, whylen, "not a boolean: %.40s", text);
	case ACT_BYTES: return set_bytes(v, text, len, why, whylen);
	case ACT_DATE:
	case ACT_LOCAL_TS:
	case ACT_TS: return set_datetime(v, t->kind, text, len, why, whylen);
	case ACT_TIME: return set_time(v, text, len, why, whylen);
	case ACT_VARDECIMAL: return set_vardecimal(v, text, len, why, whylen);
	case ACT_INTERVAL: return set_interval(v, text, len, why, whylen);
	case ACT_RANGE: return set_range(v, t, text, len, why, whylen);
	default: return avro_value_set_string_len(v, text, len + 1); /* libavro copies; size with NUL */
	}
}

/* ---- arrays: PostgreSQL's array text, nested to the column's dimensions ---- */

/* What one array conversion reads: the element type, the whole text (for reasons), a buffer. */
typedef struct {
	const avro_change_type *el; /* the element's type (dims 0) */
	int dims;                   /* the column's */
	const char *text;
	strbuf *scratch;
	char *why;
	size_t whylen;
} array_walk;

/* True for the texts of a numeric NaN or infinity (kept as null, as wal2json prints them). */
static bool numeric_not_finite(const strbuf *el)
{
	return text_is(el->s, el->len, "NaN") || text_is(el->s, el->len, "Infinity") ||
	       text_is(el->s, el->len, "-Infinity");
}

/* One element at *p into item (a ["null", T] union). */
static int set_element(avro_value_t *item, array_walk *w, const char **p, const char *end)
{
	strbuf *el = w->scratch;
	avro_value_t branch;
	bool is_null;

	if (!pgtext_array_element(p, end, el, &is_null))
		return fail(w->why, w->whylen, "a malformed array: %.40s", w->text);
	if (is_null || (w->el->kind == ACT_VARDECIMAL && numeric_not_finite(el)))
		return avro_value_set_branch(item, 0, &branch) || avro_value_set_null(&branch);
	if (avro_value_set_branch(item, 1, &branch) != 0)
		return fail(w->why, w->whylen, "libavro: %s", avro_strerror());
	if (w->el->kind == ACT_BYTES && !(el->len >= 2 && el->s[0] == '\\' && el->s[1] == 'x'))
		return fail(w->why, w->whylen, "a bytea array element without the \\x of hex output "
			    "(bytea_output = escape?): %.40s", w->text);
	return set_typed(&branch, w->el, el->s, el->len, w->why, w->whylen);
}

/*
 * One level of an array's text at *p ("{...}") into v: with depth 1 its elements, else arrays of
 * depth - 1. A level of another depth than the column's dimensions is refused, never flattened.
 */
static int set_level(avro_value_t *v, array_walk *w, int depth, const char **p, const char *end)
{
	if (*p >= end || *(*p)++ != '{')
		return fail(w->why, w->whylen, "a malformed array: %.40s", w->text);
	if (*p < end && **p == '}')
		return (*p)++, 0; /* empty: PostgreSQL's empty array has no dimensions */
	for (;;) {
		avro_value_t item;
		bool nested = *p < end && **p == '{';
		if (nested != (depth > 1))
			return fail(w->why, w->whylen, "an array of %s dimensions than the column's %d "
				    "(attndims): %.40s", nested ? "more" : "fewer", w->dims, w->text);
		if (avro_value_append(v, &item, NULL) != 0)
			return fail(w->why, w->whylen, "libavro: %s", avro_strerror());
		if ((nested ? set_level(&item, w, depth - 1, p, end) : set_element(&item, w, p, end)) != 0)
			return -1;
		if (*p < end && **p == '}')
			return (*p)++, 0;
		if (*p >= end || *(*p)++ != ',')
			return fail(w->why, w->whylen, "a malformed array: %.40s", w->text);
	}
}

/* An array column: PostgreSQL's text "{a,"b c",NULL}" (or "{{1,2},{3,4}}") into nested arrays. */
static int set_array(avro_value_t *v, const avro_change_type *t, const char *text, size_t len,
		     char *why, size_t whylen)
{
	const char *p = text, *end = text + len;
	avro_change_type el_type = *t;
	strbuf el = {0};
	array_walk w = {&el_type, t->dims, text, &el, why, whylen};

	el_type.dims = 0;
	if (len > 0 && text[0] == '[') {
		strbuf_free(&el);
		return fail(why, whylen, "an array with bounds other than 1 (\"[m:n]={...}\") has no "
			    "Avro mapping: %.40s", text);
	}
	int rc = set_level(v, &w, t->dims, &p, end);
	strbuf_free(&el);
	if (rc == 0 && p != end)
		rc = fail(why, whylen, "a malformed array: %.40s", text);
	return rc ? -1 : 0;
}

int avro_change_text_set_type(avro_value_t *v, const avro_change_type *t, const char *text,
			      size_t len, char *why, size_t whylen)
{
	char *copy = xmalloc(len + 1); /* libavro's string setter needs the NUL after it */
	memcpy(copy, text, len);
	copy[len] = '\0';
	int rc = t->dims > 0 ? set_array(v, t, copy, len, why, whylen)
			     : set_typed(v, t, copy, len, why, whylen);
	free(copy);
	return rc;
}

int avro_change_text_set(avro_value_t *v, avro_change_kind kind, const char *text, size_t len,
			 char *why, size_t whylen)
{
	avro_change_type t = {.kind = kind, .precision = 38, .scale = 10};
	return avro_change_text_set_type(v, &t, text, len, why, whylen);
}

int avro_change_value_set(avro_value_t *v, const avro_change_type *t, const json_span *j,
			  strbuf *scratch, char *why, size_t whylen)
{
	const char *text = j->ptr;
	size_t len = j->len;

	strbuf_reset(scratch);
	if (t->kind == ACT_JSON && t->dims == 0 && j->kind == JSON_STRING) {
		/* json's value in the envelope is the JSON itself: a JSON string keeps its quotes */
		strbuf_addc(scratch, '"');
		strbuf_addn(scratch, j->ptr, j->len);
		strbuf_addc(scratch, '"');
		return avro_value_set_string_len(v, scratch->s, scratch->len + 1);
	}
	if (j->kind == JSON_STRING) {
		long n = json_unescape(j, strbuf_room(scratch, j->len + 1));
		if (n < 0)
			return fail(why, whylen, "the string holds an invalid escape");
		strbuf_setlen(scratch, (size_t)n);
		text = scratch->s;
		len = scratch->len;
	} else {
		strbuf_addn(scratch, j->ptr, j->len); /* NUL-terminated for the parsers */
		text = scratch->s;
	}
	if (t->dims > 0)
		return set_array(v, t, text, len, why, whylen);
	return set_typed(v, t, text, len, why, whylen);
}

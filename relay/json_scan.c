/* json_scan.c: a zero-copy, validating JSON scanner; strict RFC 8259 grammar, no recursion. */
#include "json_scan.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

/* Deepest nesting a skipped value may have; deeper input is reported as malformed. */
#define JSON_MAX_DEPTH 16384

static void skip_ws(json_cursor *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t'))
		c->p++;
}

static bool is_hex(char ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/*
 * How many of the eight bytes at p come before the first quote, backslash or control character
 * (8: none of them is one). Zero-byte tests on a word flag the first such byte exactly (a borrow
 * only runs upwards, past it), so the lowest flag is the answer.
 */
static unsigned plain_run(const char *p)
{
	const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
	uint64_t v, q, b, m;

	memcpy(&v, p, sizeof(v));
	q = v ^ (ones * '"');
	b = v ^ (ones * '\\');
	m = (((q - ones) & ~q) | ((b - ones) & ~b) | ((v - ones * 0x20) & ~v)) & high;
	return m ? (unsigned)__builtin_ctzll(m) / 8 : 8;
}
#define JSON_WORDS 1
#endif

#if defined(__SSE2__)
#include <emmintrin.h>
/*
 * The same for the sixteen bytes at p (16: none is a quote, backslash or control character):
 * x86-64 always has SSE2, and a string's plain run (a value of a few hundred bytes) takes half
 * the steps of the word-at-a-time scan.
 */
static unsigned plain_run16(const char *p)
{
	const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
	const __m128i ctl = _mm_set1_epi8(0x1f);
	__m128i hit = _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
				   _mm_cmpeq_epi8(v, _mm_set1_epi8('\\')));

	/* Unsigned v <= 0x1f: the larger of v and 0x1f is 0x1f. */
	hit = _mm_or_si128(hit, _mm_cmpeq_epi8(_mm_max_epu8(v, ctl), ctl));
	unsigned m = (unsigned)_mm_movemask_epi8(hit);
	return m ? (unsigned)__builtin_ctz(m) : 16;
}
#define JSON_SSE2 1
#endif

/* The first quote, backslash or control character from p on, as far as whole blocks reach (the
 * byte loop of scan_string does the rest, and everything where neither block scan is built). */
static const char *skip_plain(const char *p, const char *end)
{
#ifdef JSON_SSE2
	while (end - p >= 16) {
		unsigned n = plain_run16(p);
		if (n < 16)
			return p + n;
		p += 16;
	}
#endif
#ifdef JSON_WORDS
	while (end - p >= 8) {
		unsigned n = plain_run(p);
		if (n < 8)
			return p + n;
		p += 8;
	}
#endif
	(void)end;
	return p;
}

/* Scans a string starting at the opening quote; leaves the cursor after the closing quote. */
static int scan_string(json_cursor *c, json_span *out)
{
	const char *p = c->p + 1;
	bool escaped = false;

	while (p < c->end) {
		p = skip_plain(p, c->end);
		if (p >= c->end)
			break;
		unsigned char ch = (unsigned char)*p;
		if (ch == '"') {
			out->kind = JSON_STRING;
			out->ptr = c->p + 1;
			out->len = (size_t)(p - out->ptr);
			out->escaped = escaped;
			c->p = p + 1;
			return 0;
		}
		if (ch < 0x20)
			return -1;
		if (ch == '\\') {
			escaped = true;
			if (p + 1 >= c->end)
				return -1;
			switch (p[1]) {
			case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
				p += 2;
				break;
			case 'u':
				if (p + 6 > c->end || !is_hex(p[2]) || !is_hex(p[3]) || !is_hex(p[4]) ||
				    !is_hex(p[5]))
					return -1;
				p += 6;
				break;
			default:
				return -1;
			}
			continue;
		}
		p++;
	}
	return -1;
}

static const char *scan_digits(const char *p, const char *end)
{
	while (p < end && *p >= '0' && *p <= '9')
		p++;
	return p;
}

/* Scans a number by the JSON grammar; its text is kept as it is (no conversion, no rounding). */
static int scan_number(json_cursor *c, json_span *out)
{
	const char *p = c->p, *end = c->end, *q;

	if (p < end && *p == '-')
		p++;
	if (p >= end)
		return -1;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		p = scan_digits(p, end);
	else
		return -1;
	if (p < end && *p == '.') {
		q = scan_digits(p + 1, end);
		if (q == p + 1)
			return -1;
		p = q;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		q = scan_digits(p, end);
		if (q == p)
			return -1;
		p = q;
	}
	out->kind = JSON_NUMBER;
	out->ptr = c->p;
	out->len = (size_t)(p - c->p);
	out->escaped = false;
	c->p = p;
	return 0;
}

static int scan_literal(json_cursor *c, const char *word, size_t n, json_kind kind, json_span *out)
{
	if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0)
		return -1;
	out->kind = kind;
	out->ptr = c->p;
	out->len = n;
	out->escaped = false;
	c->p += n;
	return 0;
}

/* Reads a scalar at the cursor (no object or array). */
static int scan_scalar(json_cursor *c, json_span *out)
{
	switch (*c->p) {
	case '"':
		return scan_string(c, out);
	case 't':
		return scan_literal(c, "true", 4, JSON_TRUE, out);
	case 'f':
		return scan_literal(c, "false", 5, JSON_FALSE, out);
	case 'n':
		return scan_literal(c, "null", 4, JSON_NULL, out);
	default:
		return scan_number(c, out);
	}
}

/*
 * Skips a whole object or array and validates it, iteratively: a bit stack remembers whether each
 * open level is an object (1) or an array (0); expect_key/after_value track where we are.
 */
static int scan_container(json_cursor *c, json_span *out)
{
	uint8_t stack[JSON_MAX_DEPTH / 8];
	const char *start = c->p;
	size_t depth = 0;
	json_span tmp;

	for (;;) {
		/* At a value position. */
		skip_ws(c);
		if (c->p >= c->end)
			return -1;
		if (*c->p == '{' || *c->p == '[') {
			bool is_obj = *c->p == '{';
			if (depth >= JSON_MAX_DEPTH)
				return -1;
			if (is_obj)
				stack[depth / 8] |= (uint8_t)(1u << (depth % 8));
			else
				stack[depth / 8] &= (uint8_t)~(1u << (depth % 8));
			depth++;
			c->p++;
			skip_ws(c);
			if (c->p < c->end && *c->p == (is_obj ? '}' : ']')) {
				c->p++;
				depth--;
				goto after_value;
			}
			if (is_obj)
				goto read_key;
			continue;
		}
		if (scan_scalar(c, &tmp) < 0)
			return -1;
	after_value:
		if (depth == 0)
			break;
		skip_ws(c);
		if (c->p >= c->end)
			return -1;
		{
			bool in_obj = (stack[(depth - 1) / 8] >> ((depth - 1) % 8)) & 1u;
			if (*c->p == ',') {
				c->p++;
				if (in_obj)
					goto read_key;
				continue;
			}
			if (*c->p != (in_obj ? '}' : ']'))
				return -1;
			c->p++;
			depth--;
			goto after_value;
		}
	read_key:
		skip_ws(c);
		if (c->p >= c->end || *c->p != '"' || scan_string(c, &tmp) < 0)
			return -1;
		skip_ws(c);
		if (c->p >= c->end || *c->p != ':')
			return -1;
		c->p++;
	}
	out->kind = *start == '{' ? JSON_OBJECT : JSON_ARRAY;
	out->ptr = start;
	out->len = (size_t)(c->p - start);
	out->escaped = false;
	return 0;
}

void json_cursor_init(json_cursor *c, const char *buf, size_t len)
{
	c->p = buf;
	c->end = buf + len;
	c->first = true;
}

int json_read_value(json_cursor *c, json_span *out)
{
	skip_ws(c);
	if (c->p >= c->end)
		return -1;
	if (*c->p == '{' || *c->p == '[')
		return scan_container(c, out);
	return scan_scalar(c, out);
}

bool json_at_end(json_cursor *c)
{
	skip_ws(c);
	return c->p == c->end;
}

/* Steps into the object or array at the cursor, for iteration in place (no pre-scan). */
static int enter(json_cursor *c, char open)
{
	skip_ws(c);
	if (c->p >= c->end || *c->p != open)
		return -1;
	c->p++;
	c->first = true;
	return 0;
}

int json_enter_object(json_cursor *c) { return enter(c, '{'); }

int json_enter_array(json_cursor *c) { return enter(c, '['); }

int json_object_open(json_cursor *c, const json_span *obj)
{
	if (obj->kind != JSON_OBJECT)
		return -1;
	json_cursor_init(c, obj->ptr, obj->len);
	return enter(c, '{');
}

int json_array_open(json_cursor *c, const json_span *arr)
{
	if (arr->kind != JSON_ARRAY)
		return -1;
	json_cursor_init(c, arr->ptr, arr->len);
	return enter(c, '[');
}

/* Moves past the comma between items, or past the closing bracket: 1 item follows, 0 end. */
static int next_item(json_cursor *c, char close)
{
	skip_ws(c);
	if (c->p >= c->end)
		return -1;
	if (*c->p == close) {
		/* The enclosing container (if iterated in place) has now had an item. */
		c->p++;
		c->first = false;
		return 0;
	}
	if (!c->first) {
		if (*c->p != ',')
			return -1;
		c->p++;
	}
	c->first = false;
	return 1;
}

int json_object_next_key(json_cursor *c, json_span *key)
{
	int r = next_item(c, '}');
	if (r <= 0)
		return r;
	skip_ws(c);
	if (c->p >= c->end || *c->p != '"' || scan_string(c, key) < 0)
		return -1;
	skip_ws(c);
	if (c->p >= c->end || *c->p != ':')
		return -1;
	c->p++;
	return 1;
}

int json_object_next(json_cursor *c, json_span *key, json_span *val)
{
	int r = json_object_next_key(c, key);
	if (r <= 0)
		return r;
	return json_read_value(c, val) < 0 ? -1 : 1;
}

int json_array_next(json_cursor *c, json_span *val)
{
	int r = next_item(c, ']');
	if (r <= 0)
		return r;
	return json_read_value(c, val) < 0 ? -1 : 1;
}

int json_array_next_enter(json_cursor *c)
{
	int r = next_item(c, ']');
	if (r <= 0)
		return r;
	return enter(c, '{') < 0 ? -1 : 1;
}

static unsigned hex4(const char *p)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		char ch = p[i];
		v <<= 4;
		if (ch >= '0' && ch <= '9')
			v |= (unsigned)(ch - '0');
		else if (ch >= 'a' && ch <= 'f')
			v |= (unsigned)(ch - 'a' + 10);
		else
			v |= (unsigned)(ch - 'A' + 10);
	}
	return v;
}

static size_t put_utf8(char *out, uint32_t cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xE0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* Decodes one \uXXXX escape (with its low surrogate when it is a high one); -1 if unpaired. */
static long unescape_u(const char **pp, const char *end, char *out)
{
	const char *p = *pp;
	uint32_t cp = hex4(p + 2);

	p += 6;
	if (cp >= 0xD800 && cp <= 0xDBFF) {
		if (end - p < 6 || p[0] != '\\' || p[1] != 'u')
			return -1;
		uint32_t lo = hex4(p + 2);
		if (lo < 0xDC00 || lo > 0xDFFF)
			return -1;
		cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
		p += 6;
	} else if (cp >= 0xDC00 && cp <= 0xDFFF) {
		return -1;
	}
	*pp = p;
	return (long)put_utf8(out, cp);
}

long json_unescape(const json_span *s, char *out)
{
	const char *p = s->ptr, *end = s->ptr + s->len;
	char *o = out;

	if (!s->escaped) {
		memcpy(out, s->ptr, s->len);
		return (long)s->len;
	}
	while (p < end) {
		const char *bs = memchr(p, '\\', (size_t)(end - p));
		size_t plain = bs ? (size_t)(bs - p) : (size_t)(end - p);
		memcpy(o, p, plain);
		o += plain;
		p += plain;
		if (!bs)
			break;
		/* The scanner checked the escape's shape already. */
		switch (p[1]) {
		case 'b': *o++ = '\b'; p += 2; break;
		case 'f': *o++ = '\f'; p += 2; break;
		case 'n': *o++ = '\n'; p += 2; break;
		case 'r': *o++ = '\r'; p += 2; break;
		case 't': *o++ = '\t'; p += 2; break;
		case 'u': {
			long n = unescape_u(&p, end, o);
			if (n < 0)
				return -1;
			o += n;
			break;
		}
		default: *o++ = p[1]; p += 2; break;
		}
	}
	return (long)(o - out);
}

bool json_key_is(const json_span *key, const char *name, size_t name_len)
{
	return key->len == name_len && memcmp(key->ptr, name, name_len) == 0;
}

bool json_string_is(const json_span *s, const char *text, size_t n)
{
	char stack[512];
	char *buf = stack;
	bool same;

	if (!s->escaped)
		return s->len == n && memcmp(s->ptr, text, n) == 0;
	/* Decoding only shrinks: a shorter span cannot hold the text, and an escape yields at
	 * least one byte from at most six characters. */
	if (s->len < n || s->len > 6 * n)
		return false;
	if (s->len > sizeof(stack))
		buf = xmalloc(s->len); /* never "not equal" for want of memory */
	long d = json_unescape(s, buf);
	same = d == (long)n && memcmp(buf, text, n) == 0;
	if (buf != stack)
		free(buf);
	return same;
}

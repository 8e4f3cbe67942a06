/* pgtext.c: PostgreSQL's output texts of intervals, ranges and array elements, parsed exactly. */
#include "pgtext.h"

#include <string.h>
#include <strings.h>

/* Reads [+-]digits at *p into *out (at most 18 digits: no overflow); false for none or more. */
static bool read_signed(const char **p, const char *end, int64_t *out, bool *neg)
{
	int n = 0;

	*out = 0;
	*neg = *p < end && **p == '-';
	if (*p < end && (**p == '-' || **p == '+'))
		(*p)++;
	for (; *p < end && **p >= '0' && **p <= '9'; (*p)++, n++) {
		if (n == 18)
			return false;
		*out = *out * 10 + (**p - '0');
	}
	if (*neg)
		*out = -*out;
	return n > 0;
}

/* True when the text at *p is word (then *p moves past it). */
static bool eat(const char **p, const char *end, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(end - *p) < n || memcmp(*p, word, n) != 0)
		return false;
	*p += n;
	return true;
}

/* "[+-]H+:MM:SS[.f{1,6}]" at *p into signed microseconds (hours are not bounded by a day). */
static bool read_time(const char **p, const char *end, int64_t *us)
{
	int64_t h, mi, s, frac = 0, t;
	bool neg, neg2;
	int n = 0;

	if (!read_signed(p, end, &h, &neg) || !eat(p, end, ":") || !read_signed(p, end, &mi, &neg2) ||
	    neg2 || mi >= 60 || !eat(p, end, ":") || !read_signed(p, end, &s, &neg2) || neg2 ||
	    s >= 60)
		return false;
	if (eat(p, end, ".")) {
		for (; *p < end && **p >= '0' && **p <= '9' && n < 6; (*p)++, n++)
			frac = frac * 10 + (**p - '0');
		if (n == 0 || (*p < end && **p >= '0' && **p <= '9'))
			return false;
		for (; n < 6; n++)
			frac *= 10;
	}
	/* signed all along: the most negative interval (-2562047788:00:54.775808) is INT64_MIN */
	int64_t rest = (mi * 60 + s) * 1000000 + frac;
	if (__builtin_mul_overflow(h, INT64_C(3600000000), &t))
		return false;
	return neg ? !__builtin_sub_overflow(t, rest, us) : !__builtin_add_overflow(t, rest, us);
}

/*
 * Adds n units ("year", "mon", "day", each also plural) to *months or *days; false for another
 * unit. n is within 32 bits and the caller checks the sums after each unit: nothing overflows.
 */
static bool add_unit(const char **p, const char *end, int64_t n, int64_t *months, int64_t *days)
{
	if (eat(p, end, "year")) {
		*months += n * 12;
	} else if (eat(p, end, "mon")) {
		*months += n;
	} else if (eat(p, end, "day")) {
		*days += n;
	} else {
		return false;
	}
	if (*p < end && **p == 's')
		(*p)++;
	return true;
}

bool pgtext_interval_parse(const char *text, size_t len, pgtext_interval *out)
{
	const char *p = text, *end = text + len;
	int64_t months = 0, days = 0, us = 0;

	while (p < end) {
		const char *at = p;
		int64_t n;
		bool neg;
		if (read_signed(&p, end, &n, &neg) && eat(&p, end, " ")) {
			if (n < INT32_MIN || n > INT32_MAX || !add_unit(&p, end, n, &months, &days))
				return false;
		} else { /* the time part: last */
			p = at;
			if (!read_time(&p, end, &us) || p != end)
				return false;
		}
		if (p < end && (!eat(&p, end, " ") || p == end))
			return false;
		if (months < INT32_MIN || months > INT32_MAX || days < INT32_MIN || days > INT32_MAX)
			return false;
	}
	if (len == 0)
		return false;
	out->months = (int32_t)months;
	out->days = (int32_t)days;
	out->us = us;
	return true;
}

/*
 * One bound at *p up to (not past) stop (',' or a closing bracket): empty means unbounded,
 * else quoted parts and backslash escapes are undone into b.
 */
static bool read_bound(const char **p, const char *end, const char *stops, strbuf *b, bool *inf)
{
	bool quoted = false;

	strbuf_reset(b);
	strbuf_addn(b, "", 0);
	*inf = *p < end && strchr(stops, **p) != NULL;
	for (; *p < end && (quoted || !strchr(stops, **p)); (*p)++) {
		if (**p == '\\') {
			if (++*p >= end)
				return false;
			strbuf_addc(b, **p);
		} else if (**p == '"' && quoted && *p + 1 < end && (*p)[1] == '"') {
			strbuf_addc(b, *(++*p));
		} else if (**p == '"') {
			quoted = !quoted;
		} else {
			strbuf_addc(b, **p);
		}
	}
	return !quoted && *p < end;
}

bool pgtext_range_parse(const char *text, size_t len, pgtext_range *r, strbuf *lower,
			strbuf *upper)
{
	const char *p = text, *end = text + len;

	memset(r, 0, sizeof(*r));
	strbuf_reset(lower);
	strbuf_reset(upper);
	if (len == 5 && strncasecmp(text, "empty", 5) == 0) {
		r->empty = true;
		return true;
	}
	if (p >= end || (*p != '[' && *p != '('))
		return false;
	r->lower_inc = *p++ == '[';
	if (!read_bound(&p, end, ",", lower, &r->lower_inf) || *p++ != ',' ||
	    !read_bound(&p, end, ")]", upper, &r->upper_inf))
		return false;
	r->upper_inc = *p++ == ']';
	return p == end;
}

bool pgtext_array_element(const char **p, const char *end, strbuf *el, bool *is_null)
{
	bool quoted = *p < end && **p == '"';

	strbuf_reset(el);
	strbuf_addn(el, "", 0);
	if (quoted) {
		for ((*p)++; *p < end && **p != '"'; (*p)++) {
			if (**p == '\\' && ++*p >= end)
				return false;
			strbuf_addc(el, **p);
		}
		if (*p >= end)
			return false;
		(*p)++;
	} else {
		for (; *p < end && !strchr(",}", **p); (*p)++) {
			if (strchr("{\"\\", **p)) /* array_out quotes an element that has them */
				return false;
			strbuf_addc(el, **p);
		}
		if (el->len == 0)
			return false;
	}
	*is_null = !quoted && el->len == 4 && strncasecmp(el->s, "NULL", 4) == 0;
	return *p < end && (**p == ',' || **p == '}');
}

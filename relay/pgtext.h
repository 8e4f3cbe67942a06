/* pgtext.h: PostgreSQL's output texts of intervals, ranges and array elements, parsed exactly. */
#ifndef RELAY_PGTEXT_H
#define RELAY_PGTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "strbuf.h"

/* An interval as PostgreSQL stores it: months, days and microseconds, each with its own sign. */
typedef struct {
	int32_t months, days;
	int64_t us;
} pgtext_interval;

/*
 * Parses an interval's text in IntervalStyle postgres ("1 year 2 mons -3 days +04:05:06.789",
 * "-00:00:01", "00:00:00"). False when the text is not exactly that, or a field does not fit
 * (months in 32 bits after years * 12 + months, days in 32 bits, microseconds in 64).
 */
bool pgtext_interval_parse(const char *text, size_t len, pgtext_interval *out);

/* A range's flags, as range_out prints them. */
typedef struct {
	bool empty;
	bool lower_inf, upper_inf; /* an unbounded side (its bound's text is then empty) */
	bool lower_inc, upper_inc; /* '[' and ']' */
} pgtext_range;

/*
 * Parses a range's text ("[1,5)", "(,5]", "empty", "[\"2026-01-01 00:00:00+00\",)") into its
 * flags and the bounds' texts, unquoted and unescaped (range_parse_bound's rules: a backslash
 * takes the next character, "" in quotes is one "). False when the text is not a range.
 */
bool pgtext_range_parse(const char *text, size_t len, pgtext_range *r, strbuf *lower,
			strbuf *upper);

/*
 * One element of an array's text at *p (array_out's rules: quoted with backslash escapes, or
 * bare up to ',' or '}'), unquoted into el; *is_null for a bare NULL. *p moves past it, to the
 * ',' or '}' after it. False when no element starts at *p, it is malformed, or neither follows.
 */
bool pgtext_array_element(const char **p, const char *end, strbuf *el, bool *is_null);

#endif

/* pgtime.h: PostgreSQL's timestamptz text, as wal2json and the ::text cast print it. */
#ifndef RELAY_PGTIME_H
#define RELAY_PGTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Parses PostgreSQL's ISO timestamptz text ("2026-11-22 10:00:00.123456+01", offsets "+05:30"
 * and "+05:30:15" too) into ms since the epoch. False when the text is not exactly that: the
 * whole text is consumed, fields are range-checked, fractions beyond ms are dropped.
 */
bool pgtime_parse(const char *text, size_t len, int64_t *ms_out);
/* Days from 1970-01-01 to a proleptic Gregorian date (PostgreSQL's calendar; any year, month
 * 1..12, day 1..31: the caller checks the day exists). Howard Hinnant's days_from_civil. */
int64_t pgtime_days_from_civil(int64_t y, unsigned m, unsigned d);
/* The same in microseconds (PostgreSQL's precision: commit times compared exactly). */
bool pgtime_parse_us(const char *text, size_t len, int64_t *us_out);

#endif

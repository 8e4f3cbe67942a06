/* pgtime.c: PostgreSQL timestamptz text to ms since the epoch (routing's record timestamps,
 * the delivery latency metric). */
#include "pgtime.h"

/* One calendar for every date the relay converts (routing times, Avro dates and timestamps). */
int64_t pgtime_days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

/* Reads n digits; -1 if any is not a digit. */
static int digits(const char *p, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (p[i] - '0');
	}
	return v;
}

/* The text must be exactly PostgreSQL's ISO form (see pgtime.h). */
bool pgtime_parse_us(const char *t, size_t len, int64_t *out)
{
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int y, mo, d, h, mi, s, us = 0, off[3] = {0, 0, 0};
	size_t i = 19;

	if (len < 22 || t[4] != '-' || t[7] != '-' || (t[10] != ' ' && t[10] != 'T') || t[13] != ':' ||
	    t[16] != ':')
		return false;
	y = digits(t, 4), mo = digits(t + 5, 2), d = digits(t + 8, 2);
	h = digits(t + 11, 2), mi = digits(t + 14, 2), s = digits(t + 17, 2);
	if (y < 0 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h < 0 || h > 23 || mi < 0 ||
	    mi > 59 || s < 0 || s > 60)
		return false;
	if (t[i] == '.') {
		int scale = 100000;
		for (i++; i < len && t[i] >= '0' && t[i] <= '9'; i++, scale /= 10)
			us += (t[i] - '0') * scale;
	}
	if (i >= len || (t[i] != '+' && t[i] != '-'))
		return false;
	int sign = t[i++] == '-' ? -1 : 1;
	for (int k = 0; k < 3 && i < len; k++) {
		if (k > 0 && t[i++] != ':')
			return false;
		if (len - i < 2 || (off[k] = digits(t + i, 2)) < 0)
			return false;
		i += 2;
	}
	if (i != len)
		return false;
	int64_t secs = pgtime_days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + s;
	*out = (secs - sign * (off[0] * 3600 + off[1] * 60 + off[2])) * 1000000 + us;
	return true;
}

/* Milliseconds, rounded down, for record timestamps and latencies. */
bool pgtime_parse(const char *t, size_t len, int64_t *out)
{
	int64_t us;
	if (!pgtime_parse_us(t, len, &us))
		return false;
	*out = us >= 0 ? us / 1000 : -((-us + 999) / 1000);
	return true;
}

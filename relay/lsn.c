/* lsn.c: PostgreSQL LSN text form ("16/B374D848") to and from 64-bit positions. */
#include "lsn.h"

#include <stdio.h>

/* Reads up to 8 hex digits; returns the number read, 0 when there is none. */
static size_t parse_hex32(const char *p, size_t len, uint32_t *out)
{
	uint32_t v = 0;
	size_t i = 0;

	for (; i < len && i < 8; i++) {
		char ch = p[i];
		unsigned d;
		if (ch >= '0' && ch <= '9')
			d = (unsigned)(ch - '0');
		else if (ch >= 'A' && ch <= 'F')
			d = (unsigned)(ch - 'A' + 10);
		else if (ch >= 'a' && ch <= 'f')
			d = (unsigned)(ch - 'a' + 10);
		else
			break;
		v = (v << 4) | d;
	}
	*out = v;
	return i;
}

bool lsn_parse(const char *text, size_t len, lsn_t *out)
{
	uint32_t hi, lo;
	size_t n = parse_hex32(text, len, &hi);

	if (n == 0 || n >= len || text[n] != '/')
		return false;
	size_t m = parse_hex32(text + n + 1, len - n - 1, &lo);
	if (m == 0 || n + 1 + m != len)
		return false;
	*out = ((lsn_t)hi << 32) | lo;
	return true;
}

const char *lsn_format(lsn_t lsn, char *buf)
{
	snprintf(buf, LSN_TEXT_MAX, "%X/%X", (unsigned)(lsn >> 32), (unsigned)(lsn & 0xFFFFFFFFu));
	return buf;
}

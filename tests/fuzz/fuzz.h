/* fuzz.h: checks shared by the libFuzzer targets (spans inside the input, strings decoded). */
#ifndef RELAY_FUZZ_H
#define RELAY_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_scan.h"

/* The entry point libFuzzer calls with each input (the only function a target defines for it). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Stops with a message: libFuzzer reports the abort as a crash and saves the input. */
#define FUZZ_CHECK(cond)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* A value span (when present) lies inside [buf, buf+len); a string's quotes around it too. */
static inline void fuzz_span_inside(const json_span *s, const char *buf, size_t len)
{
	if (s->kind == JSON_NONE)
		return;
	FUZZ_CHECK(s->kind >= JSON_STRING && s->kind <= JSON_ARRAY);
	FUZZ_CHECK(s->ptr != NULL);
	FUZZ_CHECK(s->ptr >= buf && s->len <= len && (size_t)(s->ptr - buf) <= len - s->len);
	if (s->kind == JSON_STRING) {
		FUZZ_CHECK(s->ptr > buf && s->ptr[-1] == '"');
		FUZZ_CHECK((size_t)(s->ptr - buf) + s->len < len && s->ptr[s->len] == '"');
		FUZZ_CHECK(s->escaped == (memchr(s->ptr, '\\', s->len) != NULL));
	} else {
		FUZZ_CHECK(s->len > 0);
	}
}

/*
 * Decodes a string span into a buffer of exactly span->len bytes (ASan sees any write past it)
 * and checks what json_unescape promises: never longer, identical when nothing is escaped.
 * Returns the decoded length or -1; *out (malloc'd, free it) holds the text.
 */
static inline long fuzz_unescape(const json_span *s, char **out)
{
	char *dec = malloc(s->len ? s->len : 1);
	long n;

	FUZZ_CHECK(dec != NULL);
	n = json_unescape(s, dec);
	FUZZ_CHECK(n >= -1 && n <= (long)s->len);
	if (!s->escaped)
		FUZZ_CHECK(n == (long)s->len && memcmp(dec, s->ptr, s->len) == 0);
	if (out)
		*out = dec;
	else
		free(dec);
	return n;
}

/* Reads every byte of a region, so that ASan checks that all of it is addressable. */
static inline unsigned fuzz_touch(const void *p, size_t len)
{
	const volatile unsigned char *b = p;
	unsigned sum = 0;
	for (size_t i = 0; i < len; i++)
		sum += b[i];
	return sum;
}

#endif

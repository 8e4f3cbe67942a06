/* strbuf.h: a growing NUL-terminated string (SQL text built piece by piece). */
#ifndef RELAY_STRBUF_H
#define RELAY_STRBUF_H

#include <stddef.h>

typedef struct {
	char *s;  /* always NUL-terminated once anything was added; NULL before */
	size_t len, cap;
} strbuf;

/* Appends text. */
void strbuf_add(strbuf *b, const char *text);
/* Appends printf-style text. */
void strbuf_addf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The text ("" when empty); the buffer keeps it. */
const char *strbuf_str(const strbuf *b);
void strbuf_free(strbuf *b);

#endif

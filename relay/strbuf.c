/* strbuf.c: a growing string (see strbuf.h). */
#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "xalloc.h"

/* Doubles past the need, so that appending byte by byte stays linear. */
void strbuf_grow(strbuf *b, size_t n)
{
	if (b->len + n + 1 <= b->cap)
		return;
	b->cap = (b->len + n + 1) * 2;
	b->s = xrealloc(b->s, b->cap);
}

void strbuf_add(strbuf *b, const char *text) { strbuf_addn(b, text, strlen(text)); }

/* Formats twice (length, then text) so that no text is cut at a guessed size. */
void strbuf_addf(strbuf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n <= 0)
		return;
	strbuf_grow(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

char *strbuf_room(strbuf *b, size_t n)
{
	strbuf_grow(b, n);
	return b->s + b->len;
}

void strbuf_setlen(strbuf *b, size_t len)
{
	if (!b->s)
		strbuf_grow(b, 0);
	b->len = len;
	b->s[len] = '\0';
}

void strbuf_reset(strbuf *b)
{
	b->len = 0;
	if (b->s)
		b->s[0] = '\0';
}

const char *strbuf_str(const strbuf *b) { return b->s ? b->s : ""; }

char *strbuf_detach(strbuf *b)
{
	char *s = b->s ? b->s : xstrdup("");
	b->s = NULL;
	b->len = b->cap = 0;
	return s;
}

void strbuf_free(strbuf *b)
{
	free(b->s);
	b->s = NULL;
	b->len = b->cap = 0;
}

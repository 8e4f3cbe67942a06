/* strbuf.h: a growing NUL-terminated string: the one builder of SQL, JSON and option texts. */
#ifndef RELAY_STRBUF_H
#define RELAY_STRBUF_H

#include <stddef.h>
#include <string.h>

/*
 * Zero-initialise it (strbuf b = {0}); it grows with xrealloc (out of memory aborts: see
 * xalloc.h), so no append can fail or cut the text. s may hold NUL bytes added by strbuf_addn.
 */
typedef struct {
	char *s;  /* always NUL-terminated once anything was added; NULL before */
	size_t len, cap;
} strbuf;

/* Makes room for n more bytes and the terminator (the slow path of the appends). */
void strbuf_grow(strbuf *b, size_t n);

/* Appends n bytes (the hot path of change capture: inline, no strlen). */
static inline void strbuf_addn(strbuf *b, const void *p, size_t n)
{
	if (b->len + n + 1 > b->cap)
		strbuf_grow(b, n);
	memcpy(b->s + b->len, p, n);
	b->len += n;
	b->s[b->len] = '\0';
}

/* Appends one byte. */
static inline void strbuf_addc(strbuf *b, char c) { strbuf_addn(b, &c, 1); }

/* Appends a string literal (its length known at compile time). */
#define STRBUF_ADD_LIT(b, lit) strbuf_addn((b), (lit), sizeof(lit) - 1)

/* Appends NUL-terminated text. */
void strbuf_add(strbuf *b, const char *text);
/* Appends printf-style text, whole whatever its length. */
void strbuf_addf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*
 * Room for n bytes at b->s + b->len (for a writer such as json_unescape); the caller then sets
 * the new length with strbuf_setlen. The returned pointer is valid until the next append.
 */
char *strbuf_room(strbuf *b, size_t n);
/* Sets the length (at most what strbuf_room made room for) and writes the terminator. */
void strbuf_setlen(strbuf *b, size_t len);
/* Empties the text, keeping the memory for the next one. */
void strbuf_reset(strbuf *b);
/* The text ("" when empty); the buffer keeps it. */
const char *strbuf_str(const strbuf *b);
/* Hands the text (malloc'd, "" when empty) to the caller and leaves the buffer empty. */
char *strbuf_detach(strbuf *b);
void strbuf_free(strbuf *b);

#endif

/* unit.h: what every unit test includes: cmocka (its headers in the order it needs) and helpers. */
#ifndef RELAY_UNIT_H
#define RELAY_UNIT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json_scan.h"

/* One line of a loaded text file (without its newline). */
typedef struct {
	const char *ptr;
	size_t len;
} unit_line;

/* A text file read whole (NUL-terminated) and split into lines. */
typedef struct {
	char *text;
	size_t len;
	unit_line *lines;
	size_t n_lines;
} unit_file;

/* Reads a whole file (relative to the repo root, where the tests run); fails the test if absent. */
static inline char *unit_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0;

	if (!f)
		fail_msg("cannot open %s (run the tests from the repository root)", path);
	for (;;) {
		if (n + 4096 + 1 > cap) {
			cap = (cap + 4096) * 2;
			buf = realloc(buf, cap);
			assert_non_null(buf);
		}
		size_t got = fread(buf + n, 1, cap - n - 1, f);
		n += got;
		if (got == 0)
			break;
	}
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* Loads a file and splits it at '\n'; a last line without newline counts, an empty tail not. */
static inline void unit_load_lines(unit_file *uf, const char *path)
{
	size_t cap = 0;
	const char *p, *end;

	memset(uf, 0, sizeof(*uf));
	uf->text = unit_read_file(path, &uf->len);
	p = uf->text;
	end = uf->text + uf->len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *stop = nl ? nl : end;
		if (uf->n_lines == cap) {
			cap = cap ? cap * 2 : 64;
			uf->lines = realloc(uf->lines, cap * sizeof(unit_line));
			assert_non_null(uf->lines);
		}
		uf->lines[uf->n_lines].ptr = p;
		uf->lines[uf->n_lines].len = (size_t)(stop - p);
		uf->n_lines++;
		p = nl ? nl + 1 : end;
	}
}

static inline void unit_file_free(unit_file *uf)
{
	free(uf->text);
	free(uf->lines);
	memset(uf, 0, sizeof(*uf));
}

/* A heap copy of len bytes, so that ASan catches any read past the end of the input. */
static inline char *unit_dup(const char *p, size_t len)
{
	char *d = malloc(len ? len : 1);
	assert_non_null(d);
	if (len)
		memcpy(d, p, len);
	return d;
}

/* Compares bytes with a readable failure message (texts shown up to 200 bytes). */
static inline void unit_bytes_equal(const char *got, size_t got_len, const char *want, size_t want_len,
				    const char *what, const char *file, int line)
{
	if (got_len == want_len && (want_len == 0 || memcmp(got, want, want_len) == 0))
		return;
	print_error("%s:%d: %s: got [%.*s] (%zu bytes), want [%.*s] (%zu bytes)\n", file, line, what,
		    (int)(got_len > 200 ? 200 : got_len), got ? got : "", got_len,
		    (int)(want_len > 200 ? 200 : want_len), want, want_len);
	fail();
}

/* The raw text of a span (still escaped for strings) equals a literal. */
#define assert_span_text(span, kind_, lit)                                                         \
	do {                                                                                       \
		assert_int_equal((span).kind, (kind_));                                            \
		unit_bytes_equal((span).ptr, (span).len, (lit), sizeof(lit) - 1, "span " #span,    \
				 __FILE__, __LINE__);                                              \
	} while (0)

/* Bytes (pointer and length) equal a literal, which may hold NULs. */
#define assert_bytes(ptr_, len_, lit)                                                              \
	unit_bytes_equal((ptr_), (len_), (lit), sizeof(lit) - 1, #ptr_, __FILE__, __LINE__)

/* The decoded text of a string span equals a literal (which may hold NUL bytes). */
#define assert_span_decoded(span, lit)                                                             \
	do {                                                                                       \
		assert_int_equal((span).kind, JSON_STRING);                                        \
		char *dec_ = malloc((span).len + 1);                                               \
		assert_non_null(dec_);                                                             \
		long n_ = json_unescape(&(span), dec_);                                            \
		assert_true(n_ >= 0);                                                              \
		unit_bytes_equal(dec_, (size_t)n_, (lit), sizeof(lit) - 1, "decoded " #span,       \
				 __FILE__, __LINE__);                                              \
		free(dec_);                                                                        \
	} while (0)

/* Writes text to a new temporary file and returns its malloc'd path (unlink and free it). */
static inline char *unit_temp_file(const char *text)
{
	char tmpl[] = "/tmp/relay-unit-XXXXXX";
	int fd = mkstemp(tmpl);
	size_t len = strlen(text);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
	return strdup(tmpl);
}

#endif

/* protect.h: JSON path selection and rewriting: finds the protected fields of a JSON text and rewrites them. */
#ifndef RELAY_PROTECT_H
#define RELAY_PROTECT_H

#include <stdbool.h>
#include <stddef.h>

#include "strbuf.h"

/* The most parts a path may have (config.c checks the same). */
#define PROTECT_MAX_DEPTH 16

/*
 * One compiled JSON path (RFC 6901: "/a/b", "~1" is '/', "~0" is '~'): its decoded parts. A
 * part "*" takes every member of an object or element of an array; digits also take the
 * element of an array at that index. rule orders the paths: when several take one value, the
 * lowest rule's does (first rule wins); drop removes the member or element.
 */
typedef struct {
	char *parts[PROTECT_MAX_DEPTH];
	size_t lens[PROTECT_MAX_DEPTH];
	int depth;
	int rule;
	bool drop;
	bool literal; /* parts are names (columns): "*" is a name, not every member */
} protect_path;

/* Compiles text into p (free it with protect_path_free): 0, or -1 when it is not such a path. */
int protect_path_parse(const char *text, int rule, bool drop, protect_path *p);
/*
 * Compiles a path of literal parts (a column: {"after", name}), no escapes read: each part takes
 * only the member of that name ("*" too: a column may be named so).
 */
void protect_path_literal(protect_path *p, const char *const *parts, int depth, int rule, bool drop);
void protect_path_free(protect_path *p);

/*
 * Writes the JSON value that replaces a protected one into out, from its clear text (a string's
 * decoded text, is_string true; else the value's JSON text): 0, or -1 with *why (the record is
 * refused).
 */
typedef int (*protect_value_fn)(void *ctx, const protect_path *p, const char *clear, size_t len,
				bool is_string, strbuf *out, const char **why);

/* A rewriter's scratch (reused across texts). */
typedef struct protect_rw protect_rw;

protect_rw *protect_rw_new(void);
void protect_rw_free(protect_rw *rw);

/*
 * Rewrites the JSON text json[0..len): the values the paths take are replaced by what fn writes
 * (a null stays null: there is nothing in it), or dropped; everything else is copied byte for
 * byte. 1 with the new text in out (reset first), 0 when no path took a value (out untouched),
 * -1 with *why when the text is not JSON or fn refused.
 */
int protect_rewrite(protect_rw *rw, const char *json, size_t len, const protect_path *const *paths,
		    size_t n_paths, protect_value_fn fn, void *ctx, strbuf *out, const char **why);

#endif

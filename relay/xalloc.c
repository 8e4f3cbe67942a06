/* xalloc.c: malloc, calloc, realloc and strdup that log and abort when memory runs out. */
#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

/* The one place out of memory is reported: a log line, then abort (see xalloc.h). */
static void *checked(void *p)
{
	if (!p) {
		log_error("out of memory");
		abort();
	}
	return p;
}

void *xmalloc(size_t n) { return checked(malloc(n ? n : 1)); }

void *xcalloc(size_t count, size_t size) { return checked(calloc(count ? count : 1, size ? size : 1)); }

void *xrealloc(void *p, size_t n) { return checked(realloc(p, n ? n : 1)); }

char *xstrdup(const char *s) { return checked(strdup(s)); }

char *xstrndup(const char *s, size_t n) { return checked(strndup(s, n)); }

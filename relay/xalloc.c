/* xalloc.c: malloc, calloc, realloc and strdup that log and abort when memory runs out; glibc's set-up. */
#include "xalloc.h"

#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

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

/* A user who set glibc.malloc.mxfast (one of GLIBC_TUNABLES' colon-separated items) meant it. */
bool xalloc_mxfast_chosen(const char *tunables)
{
	static const char name[] = "glibc.malloc.mxfast=";

	for (const char *p = tunables; p && (p = strstr(p, name)); p += sizeof(name) - 1)
		if (p == tunables || p[-1] == ':')
			return true;
	return false;
}

/*
 * Fastbins keep freed small chunks apart and hand them back last-freed-first; a record's chunks
 * come back only when its delivery report is served, so each reuse reads a cold chunk (and,
 * the process having threads, takes an atomic exchange). Without fastbins a record's freed
 * chunks merge and the next records are carved from them in order: micro's produce stage went
 * from about 7.1 to 4.6 µs per row at its depth of 20,000 (docs/performance.md). The per-thread cache still serves the
 * hottest sizes.
 */
void xalloc_tune(void)
{
#ifdef __GLIBC__
	if (xalloc_mxfast_chosen(getenv("GLIBC_TUNABLES")))
		return;
	if (mallopt(M_MXFAST, 0) != 1)
		log_debug("mallopt(M_MXFAST, 0) refused: glibc's fastbins stay on");
#endif
}

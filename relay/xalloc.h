/* xalloc.h: allocation that cannot fail quietly: out of memory is logged and aborts the relay. */
#ifndef RELAY_XALLOC_H
#define RELAY_XALLOC_H

#include <stdbool.h>
#include <stddef.h>

/*
 * The relay cannot go on without memory, and a half-built record must never be published, so
 * these log "out of memory" and abort (systemd restarts the relay; the slot was not confirmed
 * past anything unpublished).
 */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
/* At most n bytes of s (fewer at a NUL), NUL-terminated. */
char *xstrndup(const char *s, size_t n);

/*
 * Sets glibc's allocator up for the relay's traffic: fastbins off (M_MXFAST 0), so the small
 * chunks librdkafka takes for every record (the message, its header list, one per header) and
 * gives back thousands of records later merge again and are handed out in address order. Call
 * once at start, before librdkafka's threads. A user's GLIBC_TUNABLES naming glibc.malloc.mxfast
 * wins; other C libraries are left as they are (under ASan, whose allocator replaces glibc's,
 * it changes nothing).
 */
void xalloc_tune(void);

/* True when GLIBC_TUNABLES text (NULL: unset) sets glibc.malloc.mxfast itself. */
bool xalloc_mxfast_chosen(const char *tunables);

#endif

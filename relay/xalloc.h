/* xalloc.h: allocation that cannot fail quietly: out of memory is logged and aborts the relay. */
#ifndef RELAY_XALLOC_H
#define RELAY_XALLOC_H

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

#endif

/* lsn.h: PostgreSQL WAL positions (LSNs): parsing and printing the "X/Y" text form. */
#ifndef RELAY_LSN_H
#define RELAY_LSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint64_t lsn_t;

#define LSN_INVALID ((lsn_t)0)
/* Enough for "FFFFFFFF/FFFFFFFF" and the terminator. */
#define LSN_TEXT_MAX 18

/* Parses "X/Y" (hex, as PostgreSQL prints it) from a buffer of len bytes; false if malformed. */
bool lsn_parse(const char *text, size_t len, lsn_t *out);
/* Writes "X/Y" into buf (LSN_TEXT_MAX bytes) and returns buf, for use in log arguments. */
const char *lsn_format(lsn_t lsn, char *buf);

#endif

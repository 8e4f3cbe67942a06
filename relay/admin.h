/* admin.h: the operator's subcommands: preflight (is the setup right?) and status (where is it?). */
#ifndef RELAY_ADMIN_H
#define RELAY_ADMIN_H

#include <stdbool.h>

#include "config.h"

/* Checks the server and the broker, one line per check with the fix; 0 when all pass, 1 else. */
int admin_preflight(const relay_config *cfg);
/* Prints the slot, the confirmed position, retained WAL, the checkpoint and whether a relay is
 * connected; as JSON with json. 0, or 1 when the database cannot be reached. */
int admin_status(const relay_config *cfg, bool json);
/*
 * Asks the relay of cfg's slot to snapshot tables (schema.table, each captured by the file):
 * writes a request message into the WAL, which the relay reads in order. 0, 1 on failure
 * (named on stderr), 2 when a table is not one the file captures.
 */
int admin_request_snapshot(const relay_config *cfg, const char *const *tables, int n);

#endif

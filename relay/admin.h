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

#endif

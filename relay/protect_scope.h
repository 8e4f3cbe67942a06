/* protect_scope.h: checks the protect rules' columns against the captured tables the catalog gave. */
#ifndef RELAY_PROTECT_SCOPE_H
#define RELAY_PROTECT_SCOPE_H

#include <stdbool.h>
#include <stddef.h>

#include "capture.h"
#include "config.h"

/*
 * Checks each column of cfg's protect rules against the n captured tables (read from the
 * catalog at the session's start): -1 with one line in err ("FILE:LINE: protect[i].columns:
 * ...") when a column is in no table the rule's tables patterns take (a typo protects
 * nothing), when it is a key column and the hash key is missing (can_hash false: a protected
 * key column is hashed in record keys), or when it is a key column and snapshots would
 * store their position (key values) in clear (clear_snapshots: snapshots run and there is
 * no encryption key to seal the position in the checkpoint topic with).
 */
int protect_scope_check(const relay_config *cfg, capture_table *const *tables, int n,
			bool can_hash, bool clear_snapshots, char *err, size_t errlen);

#endif

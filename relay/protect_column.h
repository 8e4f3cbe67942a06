/* protect_column.h: which protect rule takes one column of a captured table, and its action. */
#ifndef RELAY_PROTECT_COLUMN_H
#define RELAY_PROTECT_COLUMN_H

#include "config.h"
#include "protect_action.h"

/*
 * The action of the rule that protects column (its name in the catalog) of the captured table
 * named table ("schema.table"): the first of cfg's protect rules (the first in the file wins, as
 * in the transform stage) whose tables patterns take table and whose columns name column; -1
 * when no rule does. For the encoders, whose output types follow from it (a protected value is
 * a string, a dropped one is not there); in a record key a protected column is hashed whatever
 * the action (docs/privacy.md). cfg NULL: -1.
 */
int protect_column_action(const relay_config *cfg, const char *table, const char *column);

#endif
